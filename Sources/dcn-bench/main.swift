// dcn-bench: fixture verification and benchmarks.
import ArgumentParser
import DCNCommandLine
import DCNAnnotations
import DCNBench
import DCNVerify
import DCNConfig
import DCNDistributed
import DCNRun
import DCNTensor
import DCNTraining
import Foundation

@main
struct DCNBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcn-bench",
        abstract: "Verify ops against reference fixtures and measure their speed.",
        subcommands: [Verify.self, Ops.self, BLASKernels.self, RoI.self, Eval.self, TrainStep.self, Detect.self, DumpTraining.self, Allreduce.self, DataLoad.self])
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run each fixture's op and print PASS/FAIL with the worst relative L2 error.")

    @Argument(help: "Fixture files (safetensors with an 'op' in their metadata).")
    var files: [String]

    @Option(help: "Largest relative L2 error that passes.")
    var tolerance: Double = 1e-5

    @Flag(help: "Print every compared tensor.")
    var verbose = false

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one fixture file") }
    }

    func run() throws {
        var failures = 0
        for path in files {
            do {
                let result = try verifyFixture(path: path)
                let ok = result.passed(tolerance: tolerance)
                if !ok { failures += 1 }
                print("\(ok ? "PASS" : "FAIL")  \(result.op.padding(toLength: 26, withPad: " ", startingAt: 0)) worst \(String(format: "%.2e", result.worst))  \(path)")
                if verbose || !ok {
                    for c in result.comparisons { print("      \(c.name): \(String(format: "%.3e", c.relativeError))") }
                }
            } catch {
                failures += 1
                print("FAIL  \(path): \(error)")
            }
        }
        print("\(files.count - failures) passed, \(failures) failed")
        if failures > 0 { throw ExitCode(1) }
    }
}

struct Ops: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time conv2d and modulated deform_conv2d (fwd, fwd+bwd) at the standard shapes.")

    @OptionGroup var threadOptions: ThreadOptions

    @OptionGroup var convKernelOptions: ConvKernelOptions

    @Option(parsing: .unconditional, help: "Timed repetitions per measurement (the median is reported).")
    var repeats: Int = 5

    @Flag(help: "One JSON object per line instead of a table.")
    var json = false

    @Option(name: .customLong("shape"), parsing: .unconditionalSingleValue, help: "A layer shape C,H,W to time instead of the standard ones (repeatable).")
    var shapes: [String] = []

    func parsedShapes() throws -> [(channels: Int, height: Int, width: Int)] {
        if shapes.isEmpty { return standardOpShapes }
        return try shapes.map { text in
            let parts = text.split(separator: ",").compactMap { Int($0) }
            guard parts.count == 3, parts.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("--shape '\(text)': expected three positive integers C,H,W")
            }
            // The modulated deformable layer's forward and backward: its input, output and their
            // gradients (4 C HW), offsets and masks with theirs (54 HW), and the columns (9 C HW) twice.
            let (c, h, w) = (Double(parts[0]), Double(parts[1]), Double(parts[2]))
            if let problem = System.memoryProblem(bytes: 4 * (22 * c * h * w + 54 * h * w), for: "the layer \(text)") {
                throw ValidationError("--shape '\(text)': \(problem); give a smaller C,H,W")
            }
            return (parts[0], parts[1], parts[2])
        }
    }

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        _ = try parsedShapes()
    }

    func run() throws {
        var sgemmRate = 0.0
        var rows: [String: Double] = [:]  // "op pass C" -> ms
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if !json { print("shape (C, HxW)      op              pass        ms   GFLOP/s  %sgemm") }
        threadOptions.apply()
        try convKernelOptions.apply()
        try runOpsBenchmark(shapes: try parsedShapes(), repeats: repeats) { t in
            if json {
                print(String(decoding: try! encoder.encode(t), as: UTF8.self))
                return
            }
            if t.op == "sgemm" {
                sgemmRate = t.gflops
                print("sgemm \(t.n!)^3: \(String(format: "%.1f", t.gflops)) GFLOP/s on \(t.threads) threads, \(t.blas!) \(t.core!) kernels")
                return
            }
            rows["\(t.op) \(t.pass!) \(t.channels!)"] = t.ms!
            let shape = "\(t.channels!), \(t.height!)x\(t.width!)".padding(toLength: 19, withPad: " ", startingAt: 0)
            print("\(shape) \(t.op.padding(toLength: 15, withPad: " ", startingAt: 0)) \(t.pass!.padding(toLength: 8, withPad: " ", startingAt: 0)) \(String(format: "%8.1f %8.1f %6.0f%%", t.ms!, t.gflops, 100 * t.gflops / sgemmRate))")
            if t.op == "deform_conv2d", t.pass == "fwd+bwd", let conv = rows["conv2d fwd+bwd \(t.channels!)"] {
                print("    deform/conv fwd+bwd: \(String(format: "%.2fx", t.ms! / conv))")
            }
        }
    }
}

struct BLASKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blas",
        abstract: "Each OpenBLAS kernel this CPU runs, switched in turn in this process: the sgemm rate and whether the models' products give the same bits on 1 and N threads.")

    @OptionGroup var threadOptions: ThreadOptions

    @Option(parsing: .upToNextOption, help: "Cores to run (default: every one this CPU supports, e.g. Prescott Haswell Zen SkylakeX Cooperlake).")
    var cores: [String] = []

    @Option(parsing: .unconditional, help: "Size n of the timed n x n x n sgemm.")
    var size: Int = 2048

    @Flag(help: "One JSON object per line instead of a table.")
    var json = false

    func validate() throws {
        if size < 1 { throw ValidationError("--size must be at least 1") }
        if let problem = System.memoryProblem(bytes: 12 * Double(size) * Double(size), for: "three \(size) x \(size) matrices") {
            throw ValidationError("--size \(size): \(problem)")
        }
    }

    func run() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let cpu = CPUFeatures.current
        threadOptions.apply()
        if !json {
            print("\(BLASKernel.version); CPU \(cpu.description); loaded \(BLASKernel.selection.loaded), running \(BLASKernel.selection.running)")
            print("core         sgemm \(size)^3 GFLOP/s   same bits on 1 and \(threadOptions.threads) threads (\(blasDeterminismShapes.count) products of the models)")
        }
        try runBLASKernelBenchmark(cores: cores.isEmpty ? runnableCores(cpu) : cores, threads: threadOptions.threads, n: size) { r in
            if json {
                print(String(decoding: try! encoder.encode(r), as: UTF8.self))
                return
            }
            let bits = r.differingProducts.isEmpty ? "yes" : "no: " + r.differingProducts.joined(separator: ", ")
            print("\((r.core + (r.selected ? " *" : "")).padding(toLength: 12, withPad: " ", startingAt: 0)) \(String(format: "%10.1f", r.gflops))           \(bits)")
        }
        if !json { print("* the core this process runs") }
    }
}

struct RoI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roi",
        abstract: "Time RoIAlign, RoIPool and modulated deformable RoI pooling (fwd, bwd) at the detector's size, and NMS of 12,000 proposals.")

    @OptionGroup var threadOptions: ThreadOptions

    @Option(parsing: .unconditional, help: "Timed repetitions per measurement (the median is reported).")
    var repeats: Int = 5

    @Flag(help: "One JSON object per line instead of a table.")
    var json = false

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if !json {
            print("7x7 bins, stride 16, 2x2 samples per bin; median of \(repeats) on \(threadOptions.threads) threads; \(BLASKernel.kernels)")
            print("op         pass  size                                     ms")
        }
        threadOptions.apply()
        try runRoIBenchmark(repeats: repeats) { t in
            if json {
                print(String(decoding: try! encoder.encode(t), as: UTF8.self))
                return
            }
            let size = t.op == "nms"
                ? "\(t.boxes!) boxes, IoU \(t.iou!), kept \(t.kept!)"
                : "\(t.rois!) RoIs, C \(t.channels!), \(t.height!)x\(t.width!)"
            print("\(t.op.padding(toLength: 10, withPad: " ", startingAt: 0)) \((t.pass ?? "fwd").padding(toLength: 5, withPad: " ", startingAt: 0)) \(size.padding(toLength: 34, withPad: " ", startingAt: 0)) \(String(format: "%8.2f", t.ms))")
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time COCO bbox evaluation on a generated val2017-sized case (5,000 images, 500,000 detections).")

    @Option(help: "Folder for the generated files (default: a temporary folder).")
    var directory: String?

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Also time Foundation's JSONDecoder on the results file, for comparison.")
    var compareJSONDecoder = false

    func run() throws {
        let r = try runEvalBenchmark(directory: directory, threads: threadOptions.threads, compareJSONDecoder: compareJSONDecoder)
        print("case: \(r.images) images, \(r.groundTruths) ground-truth boxes (\(r.crowd) crowd), \(r.detections) detections, results file \(r.resultsFileBytes / 1_000_000) MB")
        if directory != nil { print("files: \(r.groundTruthPath) \(r.resultsPath)") }
        r.summary.forEach { print($0) }
        print(String(format: "load %.2f s, evaluate %.2f s, total %.2f s on %d threads", r.loadSeconds, r.evaluateSeconds, r.totalSeconds, r.threads))
        if let d = r.jsonDecoderSeconds { print(String(format: "Foundation JSONDecoder on the results file alone: %.2f s", d)) }
    }
}

/// The largest `train-step --batch` (data.images_per_batch's bound).
let maxBenchBatch = 1024

struct TrainStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step",
        abstract: "Seconds per training iteration of a config's detector by phase, and peak memory.",
        discussion: """
            Under mpirun (mpirun -np N dcn-bench train-step --batch B ...) B is the global batch: each process
            trains on B/N of the images with the gradients summed as dcn-train sums them, and the report adds
            the communication the backward pass did not hide and the gradient sum's bandwidth.
            """)

    @OptionGroup var configOptions: ConfigOptions

    @Option(parsing: .unconditional, help: "Input height (default: data.min_size[0]).")
    var height: Int?

    @Option(parsing: .unconditional, help: "Input width (default: about 1.52 x the height, a multiple of 32, within data.max_size).")
    var width: Int?

    @Option(parsing: .unconditional, help: "Images per step.")
    var batch: Int = 1

    @Option(parsing: .unconditional, help: "Timed steps after one warm-up step (the median is reported).")
    var steps: Int = 3

    @OptionGroup var threadOptions: ThreadOptions

    @OptionGroup var convKernelOptions: ConvKernelOptions

    @Flag(help: "Also time the same detector with regular convolutions in every stage (the ratio is printed).")
    var baseline = false

    @Flag(help: "Also print the backbone's seconds per stage and layer kind (conv 1x1, conv 3x3, mdconv 3x3 and the part of it its offset branch takes, norm, relu and add), forward and backward.")
    var layers = false

    @Flag(help: "Replace the RPN's proposals by boxes around the objects, as a trained RPN gives, so the heads see their full quota of positive RoIs.")
    var proposalsNearObjects = false

    @Flag(help: "Record the deformation statistics dcn-train logs (every step here) and print their cost.")
    var deformationStatistics = false

    @Option(help: "Write the warm-up step's (summed) gradient to this safetensors file (rank 0).")
    var gradientOut: String?

    func validate() throws {
        if batch < 1 || steps < 1 { throw ValidationError("--batch and --steps must be at least 1") }
        // As data.images_per_batch; the replicas' memory is checked when they are built.
        if batch > maxBenchBatch { throw ValidationError("--batch \(batch): at most \(maxBenchBatch) images per step") }
        if let height, !(32...8192).contains(height) { throw ValidationError("--height \(height): expected 32 to 8192 pixels") }
        if let width, !(32...8192).contains(width) { throw ValidationError("--width \(width): expected 32 to 8192 pixels") }
        if let gradientOut {
            var read = ReadFiles()
            read.add(configOptions.config, as: "the config given to --config")
            if let problem = outputProblem(gradientOut, read: read) { throw ValidationError("--gradient-out \(gradientOut): \(problem)") }
        }
    }

    func run() throws {
        let experiment: ExperimentConfig
        do { experiment = try loadConfig(path: configOptions.config, overrides: configOptions.overrides) } catch let e as ConfigErrors {
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            throw ExitCode(2)
        }
        let h = height ?? experiment.data.minSize[0]
        let w = width ?? min(experiment.data.maxSize, (h * 152 / 100 + 31) / 32 * 32)
        var runs = [(config: experiment, label: "configured")]
        if baseline {
            var regular = experiment
            regular.backbone.deformableStages = []
            regular.backbone.convType = .regular
            runs.append((regular, "regular convs"))
        }
        var results: [TrainStepResult] = []
        threadOptions.apply()
        try convKernelOptions.apply()
        // As dcn-train runs its steps.
        System.keepFreedMemoryForReuse()
        let group = ProcessGroup.world
        guard batch % group.size == 0 else {
            throw ValidationError("--batch \(batch) is the global batch: it must be a multiple of the \(group.size) processes")
        }
        // Only rank 0 prints (every process runs the same steps).
        func say(_ line: String) { if group.isRoot { print(line) } }
        // The limit the backbone's products are measured against, in the same run.
        let sgemmRate = measureSgemm(n: 2048)
        say(String(format: "sgemm 2048^3: %.1f GFLOP/s on %d threads, %@ %@ kernels", sgemmRate, Threads.count,
                   BLASKernel.version, BLASKernel.coreName))
        for r in runs {
            let result = try runTrainStepBenchmark(config: r.config, label: r.label, height: h, width: w, batch: batch, steps: steps,
                                                   proposalsNearObjects: proposalsNearObjects, group: group, gradientOut: gradientOut,
                                                   deformationStatistics: deformationStatistics)
            results.append(result)
            let processes = group.isDistributed ? "\(group.size) processes x " : ""
            say("\(result.label): \(result.batch) x \(result.height)x\(result.width), \(processes)\(result.threads) threads, \(BLASKernel.kernels)")
            if result.replicas > 1 {
                say("  \(result.replicas) replicas of the model per process, one image each, \(min(result.replicas, result.threads)) at a time "
                    + "(phases and layers: replica 0's)")
            }
            for (name, seconds) in result.phases { say("  " + name.padding(toLength: 16, withPad: " ", startingAt: 0) + String(format: "%8.3f s", seconds)) }
            say(String(format: "  step            %8.3f s   peak memory %.2f GB (rank 0)", result.stepSeconds, Double(result.peakResidentBytes) / 1e9))
            if let d = result.deformationSeconds {
                say(String(format: "  deformation statistics %.4f s per step (CPU time of the tallies and the summary): %.2f%% of the step", d, 100 * d / result.stepSeconds))
            }
            let backboneSeconds = result.phases.filter { $0.name.hasPrefix("backbone") }.map(\.seconds).reduce(0, +)
            let gflop = 2 * Double(result.backboneMultiplyAdds.forward + result.backboneMultiplyAdds.backward) / 1e9
            // Replicas running at once each do their image in replica 0's time.
            let rate = gflop / backboneSeconds * Double(min(result.replicas, result.threads)) / Double(result.replicas)
            say(String(format: "  backbone: %.1f GFLOP (forward %.1f, backward %.1f) in %.3f s per process: %.1f GFLOP/s, %.0f%% of the sgemm rate",
                       gflop, 2 * Double(result.backboneMultiplyAdds.forward) / 1e9, 2 * Double(result.backboneMultiplyAdds.backward) / 1e9,
                       backboneSeconds, rate, 100 * rate / sgemmRate))
            if layers { printLayers(result.layers, say: say) }
            if group.isDistributed {
                let sum = try runAllreduceBenchmark(group: group, floats: result.gradientFloats, repeats: 3)
                say(String(format: "  communication not hidden by the backward pass %.3f s (%.1f%% of the step; medians): gradient sums %.3f s (%.1f%%), "
                           + "the loss counts' sum %.3f s (mostly waiting for the slowest forward pass)",
                           result.communicationWaitSeconds, 100 * result.communicationWaitSeconds / result.stepSeconds,
                           result.gradientWaitSeconds, 100 * result.gradientWaitSeconds / result.stepSeconds,
                           result.lossSumWaitSeconds))
                say(String(format: "  gradient sum alone: %d floats (%.0f MB) in %.3f s, %.2f GB/s", result.gradientFloats,
                           Double(result.gradientFloats) * 4 / 1e6, sum, Double(result.gradientFloats) * 4 / sum / 1e9))
            }
        }
        if results.count == 2 && group.isRoot {
            print(String(format: "configured / regular step time: %.2fx", results[0].stepSeconds / results[1].stepSeconds))
        }
    }
}

struct DumpTraining: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump-training",
        abstract: "Run the first steps of a classification config as dcn-train does and dump them for scripts/pytorch_twin.py.",
        discussion: """
            Writes into --out: weights_step0.safetensors (every parameter and buffer), parameters.json (each one's
            learning-rate multiplier and weight decay), recipe.json, batches/step_NNNN.safetensors (the images as the
            network sees them and the labels), gradients_stepNNNN.safetensors for --gradient-steps, steps.jsonl (per
            step: loss, learning rate, each gradient's norm, each deformable layer's mean |offset| and mean
            modulation) and the weights after the last step.
            """)

    @OptionGroup var configOptions: ConfigOptions

    @Option(parsing: .unconditional, help: "Training steps to run and dump.")
    var steps: Int = 300

    @Option(parsing: .unconditional, help: "Steps whose full gradients are written, comma-separated (1-based).")
    var gradientSteps: String = "1"

    @Option(help: "Output folder (created).")
    var out: String

    @Flag(inversion: .prefixedNo, help: "Write each step's batch (the twin needs them; --no-batches for long runs read through steps.jsonl).")
    var batches = true

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if steps < 1 { throw ValidationError("--steps must be at least 1") }
        if parsedGradientSteps == nil { throw ValidationError("--gradient-steps \(gradientSteps): expected positive integers separated by commas") }
    }

    var parsedGradientSteps: Set<Int>? {
        let parts = gradientSteps.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.allSatisfy({ ($0 ?? 0) >= 1 }) else { return nil }
        return Set(parts.compactMap { $0 })
    }

    func run() throws {
        let experiment: ExperimentConfig
        do { experiment = try loadConfig(path: configOptions.config, overrides: configOptions.overrides) } catch let e as ConfigErrors {
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            throw ExitCode(2)
        }
        threadOptions.apply()
        try dumpTraining(config: experiment, steps: steps, folder: out, gradientSteps: parsedGradientSteps!, writeBatches: batches)
    }
}

/// The per-layer seconds as a table: one row per stage and layer kind, forward and backward.
func printLayers(_ layers: [(name: String, seconds: Double)], say: (String) -> Void) {
    var rows: [String] = [], cells: [String: (fwd: Double, bwd: Double)] = [:]
    for (name, seconds) in layers {
        let pass = name.hasSuffix(" bwd") ? "bwd" : "fwd"
        let row = String(name.dropLast(4))
        if cells[row] == nil { rows.append(row); cells[row] = (0, 0) }
        if pass == "fwd" { cells[row]!.fwd += seconds } else { cells[row]!.bwd += seconds }
    }
    // Stages in order, and within a stage the costliest kind first.
    let stageOf = { (row: String) in String(row.prefix { $0 != " " }) }
    let stages = rows.map(stageOf).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    say("  " + "layer".padding(toLength: 34, withPad: " ", startingAt: 0) + "     fwd       bwd     total")
    var total = (fwd: 0.0, bwd: 0.0)
    for stage in stages {
        for row in rows.filter({ stageOf($0) == stage }).sorted(by: { cells[$0]!.fwd + cells[$0]!.bwd > cells[$1]!.fwd + cells[$1]!.bwd }) {
            let c = cells[row]!
            // "res4 mdconv 3x3: its offset branch" is a part of the mdconv row, not added again.
            if !row.contains(": its ") { total.fwd += c.fwd; total.bwd += c.bwd }
            say("  " + row.padding(toLength: 34, withPad: " ", startingAt: 0) + String(format: "%8.3f  %8.3f  %8.3f s", c.fwd, c.bwd, c.fwd + c.bwd))
        }
    }
    say("  " + "all layers".padding(toLength: 34, withPad: " ", startingAt: 0) + String(format: "%8.3f  %8.3f  %8.3f s", total.fwd, total.bwd, total.fwd + total.bwd))
}

struct DataLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Time loading an instances_train2017-sized COCO file (118k images, 860k objects) and its peak memory.")

    @Option(help: "Folder for the generated file (kept and reused; default: a temporary folder).")
    var directory: String?

    func run() throws {
        let r = try runDataLoadBenchmark(directory: directory)
        print("file: \(r.annotationPath) (\(r.fileBytes / 1_000_000) MB, \(r.images) images, \(r.objects) objects)")
        if r.generateSeconds > 0 { print(String(format: "generated in %.1f s", r.generateSeconds)) }
        print(String(format: "Dataset.coco load: %.2f s, peak memory %.2f GB%@", r.seconds, Double(r.peakRSSBytes) / 1e9,
                     r.peakResetSupported ? "" : " (process peak; the peak could not be reset)"))
    }
}

struct Allreduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Time the gradient sum alone: MPI_Allreduce of a float buffer over the processes (run it under mpirun).",
        discussion: """
            Example: mpirun -np 2 dcn-bench allreduce --floats 43000000
            Prints the median seconds (slowest process), the algorithm bandwidth (buffer bytes / time) and
            the bus bandwidth (2 (N - 1) / N of it, what a ring moves per process).
            """)

    @Option(parsing: .unconditional, help: "Floats in the buffer (default: about R-50 Faster R-CNN's trainable parameters).")
    var floats: Int = 43_000_000

    @Option(parsing: .unconditional, help: "Timed repetitions after one warm-up.")
    var repeats: Int = 5

    func validate() throws {
        if floats < 1 || floats > Int(Int32.max) { throw ValidationError("--floats must be between 1 and 2^31 - 1") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let group = ProcessGroup.world
        let seconds = try runAllreduceBenchmark(group: group, floats: floats, repeats: repeats)
        guard group.isRoot else { return }
        let bytes = Double(floats) * 4
        if !group.isDistributed { print("one process: nothing to sum (start it with mpirun -np N)") }
        let bus = group.size > 1 ? bytes * 2 * Double(group.size - 1) / Double(group.size) / seconds / 1e9 : 0
        print(String(format: "allreduce of %d floats (%.0f MB) over %d processes: %.4f s, algorithm bandwidth %.2f GB/s, bus bandwidth %.2f GB/s",
                     floats, bytes / 1e6, group.size, seconds, bytes / seconds / 1e9, bus))
    }
}


struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect",
        abstract: "Per-image latency of whole detectors, ours against onnxruntime on the exported model (alternated, same input), by part, and our peak memory.",
        discussion: """
            Each config's detector gets the seeded weights of `dcn-export check-weights --seed 0` and detects one synthetic \
            image (--height x --width, normalised). onnxruntime runs the models `dcn-export onnx` writes of the same weights \
            (--part backbone, proposals and detector) through scripts/bench_onnxruntime.py with the \
            python of --ort-python (`make check-onnx` creates .venv-onnx): CPU provider, --threads intra-op threads, \
            ORT_ENABLE_ALL. Each repetition runs ours, then each onnxruntime model; the medians are reported. The parts: \
            backbone, RPN + proposals (onnxruntime: proposals model minus backbone model), RoI heads (detector minus \
            proposals). Without --config: the regular R-50 (faster_rcnn_r50_roialign), R-50 mdconv@c3~c5 with roialign, and \
            R-50 mdconv@c3~c5 + mdpool.
            """)

    @Option(name: .customLong("config"), help: "A detector config (repeatable; default: the three R-50 detectors above).")
    var configs: [String] = []

    @OptionGroup var overrideOptions: OverrideOptions

    @Option(parsing: .unconditional, help: "Input height (the shorter side).")
    var height: Int = 800

    @Option(parsing: .unconditional, help: "Input width.")
    var width: Int = 1216

    @Option(parsing: .unconditional, help: "Timed repetitions after one warm-up (medians are reported).")
    var repeats: Int = 5

    @OptionGroup var threadOptions: ThreadOptions

    @OptionGroup var convKernelOptions: ConvKernelOptions

    @Option(help: ArgumentHelp("The python with onnxruntime.", valueName: "file"))
    var ortPython: String = ".venv-onnx/bin/python"

    @Option(help: ArgumentHelp("onnxruntime's timing server.", valueName: "file"))
    var ortScript: String = "scripts/bench_onnxruntime.py"

    @Flag(help: "Ours only.")
    var noOnnxruntime = false

    @Flag(help: "Also print our backbone's seconds per stage and layer kind.")
    var layers = false

    @Flag(help: "Also print onnxruntime's seconds per part and op type (its profiler).")
    var ops = false

    /// The default cases: (config, its own --set overrides, label).
    static let defaultCases = [
        ("configs/coco/faster_rcnn_r50_roialign.yaml", [String](), "R-50, regular convs, roialign"),
        ("configs/coco/faster_rcnn_r50_mdconv_c3-c5_mdpool.yaml", ["roi_head.extractor=roialign"], "R-50, mdconv@c3~c5, roialign"),
        ("configs/coco/faster_rcnn_r50_mdconv_c3-c5_mdpool.yaml", [], "R-50, mdconv@c3~c5 + mdpool"),
    ]

    var cases: [(String, [String], String)] {
        if configs.isEmpty { return Self.defaultCases.map { ($0.0, $0.1 + overrideOptions.overrides, $0.2) } }
        return configs.map { ($0, overrideOptions.overrides, (($0 as NSString).lastPathComponent as NSString).deletingPathExtension) }
    }

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        if !(32...4096).contains(height) || !(32...4096).contains(width) { throw ValidationError("--height and --width: expected 32 to 4096 pixels") }
        for (config, _, _) in cases {
            if let problem = fileReadProblem(config) { throw ValidationError("--config \(config): \(problem); expected a detector config (YAML)") }
        }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)  // a dead onnxruntime server is reported, not fatal
        var experiments: [(ExperimentConfig, String)] = []
        for (config, overrides, label) in cases {
            do {
                let e = try loadConfig(path: config, overrides: overrides)
                guard e.model.task == .detection else { throw ValidationError("--config \(config): not a detector (model.task: \(e.model.task.rawValue))") }
                experiments.append((e, label + " (" + ([config] + overrides.map { "--set " + $0 }).joined(separator: " ") + ")"))
            } catch let e as ConfigErrors {
                FileHandle.standardError.write(Data((e.description + "\n").utf8))
                throw ExitCode(2)
            }
        }
        threadOptions.apply()
        try convKernelOptions.apply()
        System.keepFreedMemoryForReuse()
        let kernel = BLASKernel.kernels
        print("dcn-bench detect: 1 image \(height)x\(width), median of \(repeats) after a warm-up, ours and onnxruntime alternated on the same input, "
              + "\(Threads.count) threads each; weights of dcn-export check-weights --seed 0")
        print("PyTorch: no twin of the whole detector (scripts/pytorch_train_step.py times the backbone's training step only)")
        let ort = noOnnxruntime ? nil : ORTRunner(python: ortPython, script: ortScript)
        for (experiment, label) in experiments {
            print("\(label):")
            let r = try runDetectBenchmark(config: experiment, label: label, height: height, width: width, repeats: repeats, ort: ort,
                                           layers: layers) { FileHandle.standardError.write(Data(("  " + $0 + "\n").utf8)) }
            for note in r.notes { print("  " + note) }
            printDetectResult(r, kernel: kernel)
            if layers { printLayers(r.layers.map { ($0.name, $0.seconds) }, say: { print($0) }) }
            if ops, let o = r.ort {
                print("  onnxruntime by part and op type (its profiler, kernel seconds per run):")
                for part in detectParts + ["other"] {
                    let list = o.profiledOps.filter { $0.part == part && $0.ms >= 0.5 }.map { $0.op + " " + seconds3($0.ms / 1000) }
                    if !list.isEmpty { print("    \(part): " + list.joined(separator: ", ")) }
                }
            }
        }
    }
}

/// "1.234".
func seconds3(_ s: Double) -> String { String(format: "%.3f", s) }

/// The table of one `dcn-bench detect` case: per part ours, onnxruntime and the ratio, the whole
/// detector with the kernels and versions, every run, memory and counts.
func printDetectResult(_ r: DetectBenchResult, kernel: String) {
    let ortParts: [Double?] = r.ort.map { o in o.parts.prefix(o.part == "detector" ? 3 : 2).map { Optional($0) } } ?? []
    print("  part                ours        onnxruntime   ours / onnxruntime" + (r.ort == nil ? "" : " (its parts: its latency split as its profiler splits it)"))
    for (i, name) in detectParts.enumerated() {
        var line = "  " + name.padding(toLength: 18, withPad: " ", startingAt: 0) + "  " + seconds3(r.oursParts[i]) + " s"
        if i < ortParts.count, let theirs = ortParts[i] {
            line += "     " + seconds3(theirs) + " s     " + String(format: "%.2fx", r.oursParts[i] / theirs)
            if r.oursParts[i] > theirs { line += "  <- onnxruntime faster" }
        } else {
            line += "         -"
        }
        print(line)
    }
    if let o = r.ort, o.parts[3] > 0.0005 {
        print("  (onnxruntime's reshapes and layout reorders outside the named parts: " + seconds3(o.parts[3]) + " s)")
    }
    var whole = "  whole detector: ours " + seconds3(r.oursSeconds) + " s (" + kernel + ", \(r.threads) threads)"
    if let o = r.ort {
        let theirs = ", " + o.version + " " + seconds3(o.seconds) + " s (intra-op \(r.threads) threads, ORT_ENABLE_ALL)"
        if o.part == "detector" {
            whole += theirs + ": ours / onnxruntime " + String(format: "%.2fx", r.oursSeconds / o.seconds)
        } else {
            whole += "; up to the proposals" + theirs + " against ours " + seconds3(r.oursParts[0] + r.oursParts[1]) + " s: "
                + String(format: "%.2fx", (r.oursParts[0] + r.oursParts[1]) / o.seconds)
        }
    } else {
        whole += ", onnxruntime: not run"
    }
    print(whole)
    var runs = "  runs: ours " + r.oursRuns.map(seconds3).joined(separator: " ")
    if let o = r.ort { runs += "; onnxruntime (\(o.part)) " + o.runs.map(seconds3).joined(separator: " ") }
    print(runs)
    var memory = String(format: "  ours: peak memory %.2f GB", Double(r.oursPeakBytes) / 1e9)
    if !r.peakIsOwn { memory += " (process peak)" }
    memory += "; \(r.proposals) proposals, \(r.detections) detections"
    if let o = r.ort {
        memory += String(format: "; onnxruntime's process: peak memory %.2f GB", Double(o.peakBytes) / 1e9)
        if let d = o.detections { memory += ", \(d) detections" }
    }
    print(memory)
}

/// `--conv-kernels`: which kernels run the forward convolutions' products, to compare them in one build.
struct ConvKernelOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Forward convolutions' kernels: best (ours on AVX-512 CPUs, where they measured faster, and "
                               + "Winograd's F(2x2,3x3) for inference's 3x3 stride-1 convolutions of 128 channels or more), "
                               + "direct (the same without Winograd's), openblas (OpenBLAS runs every product, Winograd's "
                               + "included: what CPUs without AVX-512 run) or openblas-direct (im2col and OpenBLAS, as before "
                               + "any of ours). OpenBLAS's own core: OPENBLAS_CORETYPE.", valueName: "kernels"))
    var convKernels: String = "best"

    func apply() throws {
        do { try OwnProduct.choose(convKernels) } catch { throw ValidationError("\(error)") }
    }
}
