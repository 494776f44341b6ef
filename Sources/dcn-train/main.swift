// dcn-train: trains a DCNv2 detector from a YAML config, or prints its parameters and FLOPs.
import ArgumentParser
import DCNConfig
import DCNModels
import DCNTensor
import DCNTraining
import Foundation

@main
struct DCNTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcn-train",
        abstract: "Train a Deformable ConvNets v2 Faster R-CNN on the CPU.",
        discussion: """
            Examples:
              dcn-train --config configs/demo.yaml
              dcn-train --config configs/coco/faster_rcnn_r50_mdconv_c3-c5_mdpool.yaml --set solver.base_lr=0.01
              dcn-train --config configs/demo.yaml --summary --json
            Config errors are reported as `file: key.path (line L, column C): message` with exit status 2.
            """)

    @Option(help: "The experiment config (YAML).")
    var config: String

    @Option(name: .customLong("set"), help: "Override a config value: --set solver.base_lr=0.01 (repeatable).")
    var overrides: [String] = []

    @Option(help: "Continue from this checkpoint (or an output folder's `latest`).")
    var resume: String?

    @Option(help: "Threads for our loops and OpenBLAS (default: all cores).")
    var threads: Int?

    @Flag(help: "Print parameters and FLOPs per component at the configured input size, then exit.")
    var summary = false

    @Flag(help: "With --summary: print JSON on stdout.")
    var json = false

    @Flag(help: "Train into an output folder that already holds another run (its files are overwritten).")
    var force = false

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if json && !summary { throw ValidationError("--json goes with --summary") }
        if resume != nil && force { throw ValidationError("--resume continues a run; --force starts one over: give one of them") }
    }

    func run() throws {
        if let threads { Threads.set(threads) }
        let experiment: ExperimentConfig
        do {
            experiment = try loadConfig(path: config, overrides: overrides)
        } catch let errors as ConfigErrors {
            FileHandle.standardError.write(Data((errors.description + "\n").utf8))
            throw ExitCode(2)
        }
        if summary {
            let classes = defaultClassCount(experiment)
            let model = try FasterRCNN(spec: detectorSpec(experiment, classes: classes))
            let size = summaryInputSize(experiment)
            let s = try ModelSummary(model: model, height: size.height, width: size.width)
            print(json ? s.json : s.table)
            return
        }
        do {
            try train(config: experiment, configPath: config, resume: resume, force: force)
        } catch let error as TrainingError {
            FileHandle.standardError.write(Data("dcn-train: \(error)\n".utf8))
            throw ExitCode(error.exitCode)
        }
    }
}
