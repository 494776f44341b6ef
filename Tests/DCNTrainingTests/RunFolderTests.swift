// Nothing hangs, nothing crashes, no run is lost or mixed: the output folder's lock, --force, resuming
// another folder's checkpoint, stop requests (SIGINT, SIGTERM), temporaries of killed runs, paths
// that cannot be used, and dcn-train itself as a process (signals go to the child, never to us).
import DCNAnnotations
import DCNConfig
import DCNPictures
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

/// Names in `folder`, sorted.
func folderNames(_ folder: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
}

/// Loads every checkpoint of `folder` (and `latest`) into a model of `config`; returns their iterations by name.
func loadEveryCheckpoint(_ folder: String, config: ExperimentConfig) throws -> [String: Int] {
    let model = try buildModel(config, classes: 6)
    var iterations: [String: Int] = [:]
    for name in folderNames(folder) where RunFiles.isCheckpoint(name) {
        iterations[name] = try Checkpoint.load(path: folder + "/" + name, into: model.parameters, optimizer: nil).iteration
    }
    return iterations
}

func expectTrainingError(_ exitCode: Int32, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected a TrainingError", sourceLocation: sourceLocation)
    } catch let error as TrainingError {
        #expect(error.exitCode == exitCode, "\(error.message)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(error.message.contains(fragment), "'\(fragment)' missing in: \(error.message)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected a TrainingError, got \(error)", sourceLocation: sourceLocation)
    }
}

@Test func runFilesAndTheirTemporariesAreRecognisedByName() {
    for name in ["model_0000010.safetensors", "model_final.safetensors", "latest", "config.yaml", "metrics.jsonl",
                 "training_curves.svg", "eval_20_results.json", "eval_final_metrics.json"] {
        #expect(RunFiles.isRunFile(name), "\(name)")
    }
    for name in ["notes.txt", "eval_notes.json", "eval__results.json", "config.yaml.bak", ".lock", "model_final.pth"] {
        #expect(!RunFiles.isRunFile(name), "\(name)")
    }
    #expect(RunFiles.isRunFile("eval_model_results.json"))  // dcn-eval model's, about a checkpoint of the run
    for (name, pid) in [(".model_0000010.safetensors.4242.1234567.tmp", 4242), (".latest.17.tmp", 17), (".metrics.jsonl.1.2.tmp", 1),
                        (".eval_final_results.json.7.8.tmp", 7)] {
        #expect(RunFiles.temporaryWriter(name) == pid_t(pid), "\(name)")
    }
    for name in [".notes.4242.tmp", ".model_0000010.safetensors.tmp", "model_0000010.safetensors.1.2.tmp", ".latest.a.tmp", ".config.yaml.1.2.3.tmp"] {
        #expect(RunFiles.temporaryWriter(name) == nil, "\(name)")
    }
}

@Suite(.serialized) struct RunFolderGuards {
    @Test func aLockedOutputFolderRefusesASecondRunAtOnce() throws {
        let dir = temporaryDirectory("lock")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try tinyExperiment(dir, extra: ["solver.max_iter=1", "solver.warmup_iters=1", "solver.steps=[]"])
        let out = config.outputDirectory
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let temporary = out + "/.model_0000010.safetensors.\(getpid()).1.tmp"
        try Data(count: 16).write(to: URL(fileURLWithPath: temporary))
        // Held as the training code holds it: a second run fails at once, naming the folder, and
        // leaves the running run's temporary alone.
        let lock = try OutputFolderLock(folder: out)
        expectTrainingError(2, [out, "in use by another dcn-train run", "process \(getpid())"]) {
            try train(config: config, resume: nil, force: false)
        }
        #expect(FileManager.default.fileExists(atPath: temporary))
        lock.release()
        try train(config: config, resume: nil, force: false)
        #expect(try loadEveryCheckpoint(out, config: config) == ["latest": 1, "model_final.safetensors": 1])
    }

    @Test func staleTemporariesAreRemovedAtStartAndNothingElse() throws {
        let dir = temporaryDirectory("stale")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try tinyExperiment(dir, extra: ["solver.max_iter=1", "solver.warmup_iters=1", "solver.steps=[]"])
        let out = config.outputDirectory
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        // What a SIGKILL during a checkpoint write leaves (no process has a number that high), the
        // temporary of a writer that lives (this process), and files of the user's that look alike.
        let gone = 999_999_999
        let stale = [".model_0000010.safetensors.\(gone).1234567.tmp", ".config.yaml.\(gone).99.tmp", ".latest.\(gone).tmp"]
        let kept = [".eval_model_results.json.\(getpid()).5.tmp", ".notes.\(gone).tmp", "notes.txt", "model_notes.txt"]
        for name in stale + kept { try Data(count: 4096).write(to: URL(fileURLWithPath: out + "/" + name)) }
        try train(config: config, resume: nil, force: false)
        let names = folderNames(out)
        for name in stale { #expect(!names.contains(name), "\(name) left") }
        for name in kept { #expect(names.contains(name), "\(name) removed") }
        #expect(!names.contains { $0.hasSuffix(".tmp") && !kept.contains($0) })
    }

    @Test func forceRemovesTheOldRunsFilesAndNothingElse() throws {
        let dir = temporaryDirectory("force")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try tinyExperiment(dir, extra: ["solver.max_iter=3", "solver.warmup_iters=1", "solver.steps=[]", "solver.checkpoint_period=2"])
        let out = config.outputDirectory
        try train(config: config, resume: nil, force: false)
        #expect(Set(folderNames(out)).isSuperset(of: ["model_0000002.safetensors", "model_final.safetensors", "eval_final_results.json"]))
        let users = ["notes.txt", "model_notes.txt", "eval_notes.json"]
        for name in users { try Data("mine".utf8).write(to: URL(fileURLWithPath: out + "/" + name)) }
        try FileManager.default.createDirectory(atPath: out + "/plots", withIntermediateDirectories: true)
        // Without --force the folder is refused; with it the new run starts in a folder without the old one.
        expectTrainingError(2, [out, "holds another run", "--force"]) {
            try train(config: config, resume: nil, force: false, stopAfter: 1)
        }
        #expect(folderNames(out).contains("detections") && folderNames(out).contains { $0.hasPrefix("events.out.tfevents.") })
        try train(config: config, resume: nil, force: true, stopAfter: 1)
        // The old run's event file and drawn detections are gone; the new run has its own event file.
        let events = folderNames(out).filter { $0.hasPrefix("events.out.tfevents.") }
        #expect(events.count == 1)
        let names = folderNames(out).filter { !events.contains($0) }
        #expect(names == (users + [".lock", "config.yaml", "latest", "metrics.jsonl", "model_0000001.safetensors", "plots", "training_curves.svg"]).sorted())
        #expect(try loadEveryCheckpoint(out, config: config) == ["latest": 1, "model_0000001.safetensors": 1])
        let logged = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(logged.count == 1 && logged[0].contains("\"iteration\":1"))
    }

    /// Issue 29, defect 16: an empty validation split is refused at start, naming the split and its
    /// file (it used to be found after training).
    @Test func anEmptyValidationSplitIsRefusedAtStart() throws {
        let dir = temporaryDirectory("empty-val")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try tinyExperiment(dir, extra: ["solver.max_iter=2", "solver.warmup_iters=1", "solver.steps=[]"])
        let annotations = "\(dir)/data/annotations/instances_val.json"
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: annotations))) as? [String: Any])
        json["images"] = [Any]()
        json["annotations"] = [Any]()
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: annotations))
        expectTrainingError(2, ["the validation split (\(annotations)) has no images", "expected at least one"]) {
            try train(config: config, resume: nil, force: false)
        }
        #expect(!folderNames(config.outputDirectory).contains { RunFiles.isRunFile($0) }, "\(folderNames(config.outputDirectory))")
    }

    @Test func resumingAnotherFoldersCheckpointIntoARunNeedsForce() throws {
        let dir = temporaryDirectory("elsewhere")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let extra = ["solver.max_iter=2", "solver.warmup_iters=1", "solver.steps=[]"]
        let a = try tinyExperiment(dir, extra: extra + ["output.dir=\(dir)/a"])
        let b = try tinyExperiment(dir, extra: extra + ["output.dir=\(dir)/b"])
        try train(config: a, resume: nil, force: false, stopAfter: 1)
        try train(config: b, resume: nil, force: false)
        let before = try loadEveryCheckpoint("\(dir)/b", config: b)
        expectTrainingError(2, ["\(dir)/b holds another run", "\(dir)/a/latest", "another folder", "--force"]) {
            try train(config: b, resume: "\(dir)/a/latest", force: false)
        }
        #expect(try loadEveryCheckpoint("\(dir)/b", config: b) == before)
        // Continuing b's own run stays allowed, but not with --force (it would remove what it continues).
        expectTrainingError(2, ["--force would remove"]) {
            try train(config: b, resume: "\(dir)/b/latest", force: true)
        }
        try train(config: b, resume: "\(dir)/b/latest", force: false)
        // With --force, a's checkpoint replaces b's run: iteration 2 only, from a's iteration 1.
        try train(config: b, resume: "\(dir)/a/model_0000001.safetensors", force: true)
        #expect(try loadEveryCheckpoint("\(dir)/b", config: b) == ["latest": 2, "model_final.safetensors": 2])
        let logged = try String(contentsOfFile: "\(dir)/b/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(logged.count == 2 && logged[0].contains("\"iteration\":2") && logged[1].contains("\"eval\""), "\(logged)")
        #expect(try loadEveryCheckpoint("\(dir)/a", config: a) == ["latest": 1, "model_0000001.safetensors": 1])
    }

    @Test func aStopRequestWritesACheckpointAndEndsWithTheSignalsStatus() throws {
        let dir = temporaryDirectory("stop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // SIGTERM between iterations: a checkpoint, then status 143.
        let config = try tinyExperiment(dir, extra: ["solver.max_iter=1", "solver.warmup_iters=1", "solver.steps=[]"])
        let sigterm = StopRequest()
        sigterm.request(SIGTERM)
        expectTrainingError(143, ["SIGTERM", "--resume \(dir)/out/latest"]) {
            try train(config: config, resume: nil, force: false, stop: sigterm)
        }
        #expect(try loadEveryCheckpoint("\(dir)/out", config: config) == ["latest": 0, "model_0000000.safetensors": 0])
        // Ctrl-C during the final evaluation (resuming the finished run goes straight to it): it
        // stops, with status 130, and the final checkpoint is there.
        try train(config: config, resume: "\(dir)/out/latest", force: false)
        let sigint = StopRequest()
        sigint.request(SIGINT)
        expectTrainingError(130, ["SIGINT", "final evaluation", "\(dir)/out/model_final.safetensors"]) {
            try train(config: config, resume: "\(dir)/out/model_final.safetensors", force: false, stop: sigint)
        }
        #expect(try loadEveryCheckpoint("\(dir)/out", config: config)["model_final.safetensors"] == 1)
    }

    @Test func unusablePathsAreNamedWithWhatIsExpected() throws {
        let dir = temporaryDirectory("paths")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // An output.dir whose parent is a regular file (a read-only folder would do, but tests run as root).
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/afile"))
        let blocked = try tinyExperiment(dir, extra: ["output.dir=\(dir)/afile/out"])
        expectTrainingError(2, ["output.dir: cannot create the folder \(dir)/afile/out", "\(dir)/afile is a file", "expected a folder where dcn-train may write"]) {
            try train(config: blocked, resume: nil, force: false)
        }
        let config = try tinyExperiment(dir)
        expectTrainingError(2, ["--resume", "\(dir) is a folder", "expected a checkpoint file"]) {
            try train(config: config, resume: dir, force: false)
        }
        expectTrainingError(2, ["--resume", "\(dir)/missing.safetensors does not exist", "expected a checkpoint file"]) {
            try train(config: config, resume: "\(dir)/missing.safetensors", force: false)
        }
        #expect(fileProblem(dir) == .folder && fileProblem(dir + "/afile") == nil && fileProblem(dir + "/none") == .missing)
        // Issue 29, defect 17: an output.dir that is a symbolic link to nothing says so and where it points.
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling", withDestinationPath: dir + "/gone")
        let dangling = try tinyExperiment(dir, extra: ["output.dir=\(dir)/dangling"])
        expectTrainingError(2, ["output.dir: cannot create the folder \(dir)/dangling", "is a dangling symbolic link: it points to \(dir)/gone",
                                "expected a folder where dcn-train may write"]) {
            try train(config: dangling, resume: nil, force: false)
        }
        // Issue 29, defect 17: a drawing folder that is a file is named, with what is expected (it
        // used to be Foundation's raw NSCocoaErrorDomain Code=516).
        let val = try #require(try loadDataset(config, train: false))
        do {
            _ = try drawDetections([[]], dataset: val, request: DrawingRequest(count: 1, folder: dir + "/afile", scoreThreshold: 0.5))
            Issue.record("a drawing folder that is a file must be refused")
        } catch let error as FileError {
            #expect(error.description.contains("\(dir)/afile: cannot hold the pictures of the detections: \(dir)/afile is a file, not a folder; expected a folder"),
                    "\(error)")
        }
        let eval = try ToolRun.run("dcn-eval", ["model", "--config", repositoryPath("configs/demo.yaml"), "--checkpoint", dir + "/afile", "--draw", "1",
                                                "--out", dir + "/afile"], ranks: nil, folder: dir, name: "eval-out", seconds: 60)
        #expect(eval.errors.contains("--out \(dir)/afile: \(dir)/afile is a file, not a folder; expected a folder for the --draw pictures"),
                "\(eval.errors)")
        // A checkpoint whose iteration is damaged: the message names that key.
        let damaged = dir + "/damaged.safetensors"
        try SafeTensorsWriter.write([("model.w", .f32(shape: [1], values: [0]))],
                                    metadata: ["format": Checkpoint.format, "iteration": "ten", "rng": "1,2,3,4"], to: damaged)
        let model = try buildModel(config, classes: 6)
        do {
            _ = try Checkpoint.load(path: damaged, into: model.parameters, optimizer: nil)
            Issue.record("a damaged iteration must be refused")
        } catch let error as CheckpointError {
            #expect(error.message.contains("'iteration' is 'ten'") && !error.message.contains("'format'"), "\(error.message)")
        }
    }
}

/// dcn-train on the tiny set for 100,000 iterations with no checkpoint before the end, and its
/// arguments; returned once it has logged iteration 2 (checked).
func startEndlessRun(_ dir: String, name: String) throws -> (run: ToolRun, arguments: [String], config: ExperimentConfig) {
    let overrides = try tinyOverrides(dir, extra: ["solver.max_iter=100000", "solver.steps=[]", "solver.checkpoint_period=100000"])
    let arguments = ["--config", repositoryPath("configs/demo.yaml"), "--threads", "1"] + overrides.flatMap { ["--set", $0] }
    let run = try ToolRun("dcn-train", arguments, ranks: nil, folder: dir, name: name)
    // Log lines reach a redirected stdout as they are printed (line-buffered).
    let logging = eventually(within: 120) { run.output.contains("[2/100000]") || !run.process.isRunning }
    #expect(logging && run.process.isRunning, "stdout: \(run.output)\nstderr: \(run.errors)")
    return (run, arguments, try loadConfig(path: repositoryPath("configs/demo.yaml"), overrides: overrides))
}

/// Sends `signal` to a run of `startEndlessRun` and checks that it ends with `status`, naming the
/// signal, after writing a checkpoint of iteration 2 or later (`latest` points at it) and no temporary.
func expectStopWithACheckpoint(_ started: (run: ToolRun, arguments: [String], config: ExperimentConfig), _ dir: String, signal: Int32,
                               status: Int32, name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let run = started.run
    kill(run.process.processIdentifier, signal)
    #expect(run.exitStatus(within: 120) == status, "stderr: \(run.errors)", sourceLocation: sourceLocation)
    #expect(run.errors.contains("stopped by \(name)"), "\(run.errors)", sourceLocation: sourceLocation)
    let checkpoints = try loadEveryCheckpoint("\(dir)/out", config: started.config)
    #expect(checkpoints.count == 2 && checkpoints["latest"].map { $0 >= 2 } == true, "\(checkpoints)", sourceLocation: sourceLocation)
    #expect(!folderNames("\(dir)/out").contains { $0.hasSuffix(".tmp") }, sourceLocation: sourceLocation)
}

@Test func dcnTrainLocksItsFolderFlushesEachLineAndStopsOnSIGTERM() throws {
    let dir = temporaryDirectory("process")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let first = try startEndlessRun(dir, name: "first")
    defer { if first.run.process.isRunning { kill(first.run.process.processIdentifier, SIGKILL) } }
    // A second run on the same output.dir fails at once, naming the folder.
    let second = try ToolRun("dcn-train", first.arguments, ranks: nil, folder: dir, name: "second")
    #expect(second.exitStatus(within: 60) == 2)
    #expect(second.errors.contains("\(dir)/out is in use by another dcn-train run"), "\(second.errors)")
    // SIGTERM: a checkpoint, then status 143.
    try expectStopWithACheckpoint(first, dir, signal: SIGTERM, status: 143, name: "SIGTERM")
}

/// Issue 29, defect 8: SIGHUP (the terminal or the ssh session closed) stops a run as SIGTERM does:
/// a checkpoint, then status 129 (it used to end the process with no checkpoint and no message).
@Test func dcnTrainStopsOnSIGHUPWithACheckpoint() throws {
    let dir = temporaryDirectory("sighup")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let started = try startEndlessRun(dir, name: "run")
    defer { if started.run.process.isRunning { kill(started.run.process.processIdentifier, SIGKILL) } }
    try expectStopWithACheckpoint(started, dir, signal: SIGHUP, status: 129, name: "SIGHUP")
}

/// Issue 29, defect 8: `dcn-train ... | head -2` keeps training after head has gone (SIGPIPE is
/// ignored, the failed writes to stdout are dropped): every iteration reaches metrics.jsonl, the
/// final checkpoint and evaluation are written, and the status is 0 (it used to be 141 at once).
@Test func dcnTrainKeepsTrainingWhenItsOutputPipeCloses() throws {
    let dir = temporaryDirectory("sigpipe")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let overrides = try tinyOverrides(dir, extra: ["solver.max_iter=6", "solver.warmup_iters=1", "solver.steps=[]"])
    let command = [try builtToolPath("dcn-train"), "--config", repositoryPath("configs/demo.yaml"), "--threads", "1"]
        + overrides.flatMap { ["--set", $0] }
    // SIGPIPE back at its default for dcn-train, whatever this test process does with it.
    let pipeline = try ToolRun(bash: "env --default-signal=PIPE \(shellQuoted(command)) | head -2; echo ${PIPESTATUS[0]} > \(dir)/status",
                               folder: dir, name: "pipeline")
    #expect(pipeline.exitStatus(within: 300) == 0)
    let status = try String(contentsOfFile: "\(dir)/status", encoding: .utf8)
    #expect(status == "0\n", "dcn-train's status \(status); stderr: \(pipeline.errors)")
    #expect(pipeline.output.split(separator: "\n").count == 2)
    let logged = try String(contentsOfFile: "\(dir)/out/metrics.jsonl", encoding: .utf8).split(separator: "\n")
    #expect((1...6).allSatisfy { i in logged.contains { $0.contains("\"iteration\":\(i),") } }, "\(logged)")
    for name in ["model_final.safetensors", "eval_final_metrics.json"] {
        #expect(folderNames("\(dir)/out").contains(name), "\(name) missing")
    }
}

/// Issue 29, defect 11: a plain rerun keeps the files of a run SIGKILLed before its first
/// checkpoint and refuses the folder, as any run's, until --force (it used to remove them).
@Test func aRerunKeepsTheFilesOfARunKilledBeforeItsFirstCheckpoint() throws {
    let dir = temporaryDirectory("killed")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let killed = try startEndlessRun(dir, name: "killed")
    kill(killed.run.process.processIdentifier, SIGKILL)
    _ = killed.run.exitStatus(within: 60)
    let out = "\(dir)/out"
    let before = folderNames(out)
    let metrics = try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(RunFiles.metrics)"))
    #expect(before.contains(RunFiles.config) && before.contains(RunFiles.metrics) && !before.contains(where: RunFiles.isCheckpoint), "\(before)")
    let rerun = try ToolRun.run("dcn-train", killed.arguments, ranks: nil, folder: dir, name: "rerun", seconds: 120)
    #expect(rerun.process.terminationStatus == 2)
    #expect(rerun.errors.contains("\(out) holds the files of a run that wrote no checkpoint (config.yaml, ") && rerun.errors.contains("--force"),
            "\(rerun.errors)")
    #expect(!rerun.output.contains("removed"), "\(rerun.output)")
    #expect(folderNames(out) == before)
    #expect(try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(RunFiles.metrics)")) == metrics)
}

@Test func dcnTrainNamesAConfigThatIsAFolder() throws {
    let dir = temporaryDirectory("config-folder")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let run = try ToolRun("dcn-train", ["--config", dir], ranks: nil, folder: dir, name: "run")
    #expect(run.exitStatus(within: 60) == 2)
    #expect(run.errors.contains("--config \(dir) is a folder; expected a YAML config file"), "\(run.errors)")
}
