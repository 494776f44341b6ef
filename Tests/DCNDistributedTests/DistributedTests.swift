// Data-parallel training and evaluation under mpirun (2 processes on this machine, loopback only):
// the tools run as child processes, so nothing here changes the test process.
import DCNConfig
import DCNData
import DCNModels
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

/// sqrt(sum (a - b)^2 / sum a^2) over the tensors named in both files whose names start with `prefix`.
func relativeDifference(_ a: String, _ b: String, prefix: String = "") throws -> Double {
    let fa = try SafeTensorsFile(path: a), fb = try SafeTensorsFile(path: b)
    var num = 0.0, den = 0.0, compared = 0
    for name in fa.names where name.hasPrefix(prefix) && fb.entry(name) != nil {
        let x = try fa.doubles(name).values, y = try fb.doubles(name).values
        for (u, v) in zip(x, y) { num += (u - v) * (u - v); den += u * u }
        compared += 1
    }
    #expect(compared > 0, "no tensors named \(prefix)* in both \(a) and \(b)")
    return (num / max(den, 1e-300)).squareRoot()
}

@Suite(.serialized) struct DataParallelRuns {
    /// The demo detector (mdconv, mdpool, mimicking, mask branch): one step's gradient summed over
    /// two processes, each with half of the global batch, is the one-process gradient. A process
    /// trains each of its images on a replica of the model and adds their gradients in image order,
    /// as 2 processes do: with 2 images the bits are the same; with 4 (2 replicas in each of 2
    /// processes) the order of the additions differs.
    @Test func twoProcessesSumTheOneProcessGradient() throws {
        let dir = temporaryDirectory("mpi-gradient")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for batch in [2, 4] {
            let arguments = ["train-step", "--config", repositoryPath("configs/demo.yaml"), "--height", "96", "--width", "128",
                             "--batch", "\(batch)", "--steps", "1", "--threads", "1", "--proposals-near-objects"]
            let one = try ToolRun.run("dcn-bench", arguments + ["--gradient-out", dir + "/one\(batch).safetensors"], ranks: nil, folder: dir,
                                      name: "one\(batch)")
            let two = try ToolRun.run("dcn-bench", arguments + ["--gradient-out", dir + "/two\(batch).safetensors"], ranks: 2, folder: dir,
                                      name: "two\(batch)")
            #expect(one.process.terminationStatus == 0 && two.process.terminationStatus == 0, "\(one.errors)\n\(two.errors)")
            #expect(two.output.contains("2 processes x 1 threads") && two.output.contains("communication not hidden"), "\(two.output)")
            #expect(one.output.contains("\(batch) replicas of the model per process"), "\(one.output)")
            let difference = try relativeDifference(dir + "/one\(batch).safetensors", dir + "/two\(batch).safetensors")
            if batch == 2 {
                #expect(difference == 0, "2 images: relative L2 difference of the gradients: \(difference)")
            } else {
                #expect(difference < 1e-6, "4 images: relative L2 difference of the gradients: \(difference)")
            }
        }
    }

    /// 10 iterations on 2 processes against 1 process; two 2-process runs; checkpoints resumed
    /// across process counts. The process of a 1-process run trains each of the batch's 2 images on
    /// a replica of the model and adds the 2 gradients, as 2 processes of one image each do: the
    /// same arithmetic, so the same bits (not only within the issue's 1e-5).
    @Test func twoProcessesTrainAsOneAndResumeAcrossProcessCounts() throws {
        let dir = temporaryDirectory("mpi-train")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = try distributedData(dir)
        func train(_ name: String, ranks: Int?, _ extra: [String] = []) throws -> ToolRun {
            let run = try ToolRun.run("dcn-train", trainArguments(settings, ["output.dir=\(dir)/\(name)"]) + extra, ranks: ranks,
                                      folder: dir, name: name)
            #expect(run.process.terminationStatus == 0, "\(name): \(run.output)\n\(run.errors)")
            return run
        }
        let final = RunFiles.finalCheckpoint
        /// Whether two runs' final weights are the same bits (reporting their relative L2 difference otherwise).
        func sameWeights(_ a: String, _ b: String) throws {
            let first = try SafeTensorsFile(path: "\(dir)/\(a)/\(final)"), second = try SafeTensorsFile(path: "\(dir)/\(b)/\(final)")
            let differing = try first.names.filter { name in
                guard name.hasPrefix("model.") else { return false }
                return try first.doubles(name).values != second.doubles(name).values
            }
            let drift = try relativeDifference("\(dir)/\(a)/\(final)", "\(dir)/\(b)/\(final)", prefix: "model.")
            #expect(differing.isEmpty, "\(a) and \(b): \(differing.count) weights differ (relative L2 \(drift)), first \(differing.first ?? "")")
        }
        let one = try train("one", ranks: nil)
        #expect(one.output.contains("one image per replica of the model"), "\(one.output)")
        let two = try train("two", ranks: 2)
        _ = try train("again", ranks: 2)
        try sameWeights("one", "two")
        try sameWeights("two", "again")
        // Rank 0 alone logged: one line per iteration, and one progress line each.
        let lines = try String(contentsOfFile: "\(dir)/two/\(RunFiles.metrics)", encoding: .utf8).split(separator: "\n")
        let oneLines = try String(contentsOfFile: "\(dir)/one/\(RunFiles.metrics)", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == oneLines.count)
        #expect(two.output.components(separatedBy: "[10/10]").count == 2, "\(two.output)")
        #expect(two.output.contains("training finished") && two.output.contains("img/s"))
        // The 2-process checkpoint of iteration 5 resumed in one process, and the other way round.
        let five = RunFiles.checkpoint(iteration: 5)
        _ = try train("two-then-one", ranks: nil, ["--resume", "\(dir)/two/\(five)"])
        _ = try train("one-then-two", ranks: 2, ["--resume", "\(dir)/one/\(five)"])
        // Each continues as the uninterrupted run.
        try sameWeights("one", "two-then-one")
        try sameWeights("one", "one-then-two")
    }

    /// A global batch that the processes cannot share evenly is refused with a message naming the key.
    @Test func aBatchThatDoesNotSplitIsRefused() throws {
        let dir = temporaryDirectory("mpi-split")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = try distributedData(dir)
        let run = try ToolRun.run("dcn-train", trainArguments(settings, ["output.dir=\(dir)/out", "data.images_per_batch=3"]), ranks: 2,
                                  folder: dir, name: "odd")
        #expect(run.process.terminationStatus != 0)
        #expect(run.errors.contains("data.images_per_batch is 3") && run.errors.contains("multiple of the 2 processes"), "\(run.errors)")
    }

    /// One process killed in the middle of a run: every process ends within 30 s with a message
    /// naming the rank, and the last checkpoint still loads.
    @Test func killingOneProcessStopsEveryProcess() throws {
        let dir = temporaryDirectory("mpi-kill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = try distributedData(dir)
        let run = try ToolRun("dcn-train", trainArguments(settings, ["output.dir=\(dir)/out", "solver.max_iter=100000", "solver.steps=[]",
                                                                      "solver.checkpoint_period=3"]),
                              ranks: 2, folder: dir, name: "run")
        defer { if run.process.isRunning { kill(run.process.processIdentifier, SIGKILL) } }
        let checkpointed = eventually(within: 120) {
            FileManager.default.fileExists(atPath: "\(dir)/out/\(RunFiles.checkpoint(iteration: 6))") || !run.process.isRunning
        }
        #expect(checkpointed && run.process.isRunning, "\(run.output)\n\(run.errors)")
        // Rank 1: the child of mpirun whose environment says so.
        let rank1 = childProcesses(of: run.process.processIdentifier).first { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/environ", encoding: .isoLatin1)) ?? "").split(separator: "\0").contains("OMPI_COMM_WORLD_RANK=1")
        }
        #expect(rank1 != nil, "no rank 1 among mpirun's children")
        if let rank1 { kill(rank1, SIGKILL) }
        let status = run.exitStatus(within: 30)
        #expect(status != nil && status != 0, "mpirun's status: \(String(describing: status))")
        #expect(run.errors.contains("rank 1") || run.output.contains("rank 1"), "\(run.output)\n\(run.errors)")
        // Every process is gone, and the newest checkpoint loads.
        #expect(childProcesses(of: run.process.processIdentifier).isEmpty)
        let config = try loadConfig(path: repositoryPath("configs/demo.yaml"), overrides: settings)
        let model = try buildModel(config, classes: 6)
        let state = try Checkpoint.load(path: "\(dir)/out/\(RunFiles.latest)", into: model.parameters, optimizer: nil)
        #expect(state.iteration >= 6 && state.iteration % 3 == 0)
        print("killed rank 1 after iteration \(state.iteration)'s checkpoint; mpirun: \(run.errors.split(separator: "\n").filter { $0.contains("rank") })")
    }

    /// `mpirun -np 2 dcn-eval model`: the same detections, byte for byte, and the same numbers.
    @Test func twoProcessEvaluationGivesTheOneProcessNumbers() throws {
        let dir = temporaryDirectory("mpi-eval")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (settings, _) = try trainTinyDemo(dir)
        func evaluate(_ name: String, ranks: Int?) throws -> (results: Data, metrics: [String: Double]) {
            let arguments = ["model", "--config", repositoryPath("configs/demo.yaml"), "--checkpoint", "\(dir)/out/\(RunFiles.finalCheckpoint)",
                             "--results", "\(dir)/\(name)_results.json", "--threads", "1"] + settings.flatMap { ["--set", $0] }
            let run = try ToolRun.run("dcn-eval", arguments, ranks: ranks, folder: dir, name: name)
            #expect(run.process.terminationStatus == 0, "\(name): \(run.output)\n\(run.errors)")
            let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)_metrics.json")))
            return (try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)_results.json")), (metrics as? [String: Double]) ?? [:])
        }
        let one = try evaluate("one", ranks: nil), two = try evaluate("two", ranks: 2)
        #expect(one.results == two.results)
        #expect(one.metrics == two.metrics && one.metrics.count == 24, "\(one.metrics)\n\(two.metrics)")
        let detections = try JSONSerialization.jsonObject(with: one.results) as? [Any]
        #expect((detections?.count ?? 0) > 0, "the model should detect something")
    }
}

/// The processes whose parent is `pid`.
func childProcesses(of pid: pid_t) -> [pid_t] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { child in
        guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 && Int32(fields[1]) == pid
    }
}
