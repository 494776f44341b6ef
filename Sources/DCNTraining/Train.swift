// The training loop behind `dcn-train`: data, model, optimiser, checkpoints, logs, evaluation.
import DCNConfig
import DCNData
import DCNDistributed
import DCNModels
import DCNOps
import DCNTensor
import DCNTensorBoard
import Foundation
#if canImport(Glibc)
import Glibc
import DCNInference
import DCNPictures
import DCNRun
#endif

/// The input size the summary reports: the test shorter side and a 4:3 longer side within max_size.
public func summaryInputSize(_ c: ExperimentConfig) -> (height: Int, width: Int) {
    let short = c.data.testMinSize
    return (short, min(c.data.maxSize, (short * 4 + 2) / 3))
}

/// The optimiser, learning-rate schedule and step-seed generator of a config's run: what `train`
/// uses, and what `dcn-bench dump-training` replays for the PyTorch twin.
public struct TrainingRecipe {
    public let optimizer: SGD
    public let schedule: LearningRateSchedule
    /// Draws each step's seed (sampling, mimic RoI choice); a resumed run replaces it with the checkpoint's.
    public let rng: SeededGenerator
}

/// The solver section as an optimiser over `parameters`' trainable tensors, a schedule and a generator.
public func trainingRecipe(_ config: ExperimentConfig, parameters: ParameterList) -> TrainingRecipe {
    let s = config.solver
    let optimizer = SGD(parameters: parameters.all, momentum: Float(s.momentum), weightDecay: Float(s.weightDecay),
                        weightDecayNorm: Float(s.weightDecayNorm), weightDecayBias: s.weightDecayBias.map { Float($0) })
    let schedule = LearningRateSchedule(baseLR: Float(s.baseLr), warmupIterations: s.warmupIters, warmupFactor: Float(s.warmupFactor),
                                        steps: s.steps, gamma: Float(s.gamma), cosineOver: s.lrSchedule == .cosine ? s.maxIter : nil)
    return TrainingRecipe(optimizer: optimizer, schedule: schedule, rng: SeededGenerator(seed: UInt64(s.seed) &+ 1000))
}

/// Trains the detector a config describes. Writes the resolved config, checkpoints, metrics.jsonl,
/// training_curves.svg and evaluation results into the output folder, which it locks for the whole
/// run (`OutputFolderLock`). A run that does not continue the folder's own run replaces it: refused
/// while the folder holds any of a run's files unless `force`; then the old run's files (`RunFiles.isRunFile`)
/// are removed, nothing else. `stopAfter` ends the run with a checkpoint after that many iterations
/// (for tests and scripts); `stop` ends it as SIGINT, SIGTERM and SIGHUP do: a checkpoint between
/// iterations (the evaluation stops between batches), then a `TrainingError` with status 128 + the signal.
///
/// In a data-parallel run (`group` of several processes, started by mpirun or srun) each process
/// trains on its share of every global batch of `data.images_per_batch` images and the gradients
/// are summed before each update; rank 0 owns the output folder (lock, checkpoints, metrics,
/// curves, evaluation files, the progress line) and the others write nothing.
public func train(config: ExperimentConfig, resume: String?, force: Bool, stopAfter: Int? = nil,
                  stop: StopRequest = StopRequest(), group: ProcessGroup = .world) throws {
    let out = config.outputDirectory
    let root = group.isRoot
    if group.isDistributed && config.data.imagesPerBatch % group.size != 0 {
        throw TrainingError("data.images_per_batch is \(config.data.imagesPerBatch), the global batch: it must be a multiple of the "
                            + "\(group.size) processes (mpirun -np \(group.size)); choose -np among its divisors", exitCode: 2)
    }
    var lock: OutputFolderLock? = nil
    var continuesThisRun = false
    if root {
        try makeFolder(out, key: "output.dir")
        lock = try OutputFolderLock(folder: out)
        continuesThisRun = try checkRunFolder(out, resume: resume, force: force)
    }
    defer { lock?.release() }

    // A resumed run's data must have the classes of its checkpoint (checkpoints record them).
    let resumedClasses: Dataset.ClassList?
    do {
        resumedClasses = try resume.flatMap { r in try Checkpoint.classNames(path: r).map { Dataset.ClassList(names: $0, source: "the checkpoint \(r)") } }
    } catch let error as CheckpointError {
        throw TrainingError("--resume: \(error.message)", exitCode: 2)
    }
    let data = try loadTrainingData(config, classes: resumedClasses)
    let classes = data.train.classNames.count
    if let n = config.model.classes, n != classes {
        throw TrainingError("model.classes is \(n) but the training data has \(classes) classes", exitCode: 2)
    }
    // The task's model, and how it is evaluated (rank 0 gets the report).
    let model: TrainableModel
    let evaluate: (_ val: Dataset, _ outputPrefix: String, _ drawingPrefix: String) throws -> ModelEvaluation?
    switch config.model.task {
    case .detection:
        let detector = try buildModel(config, classes: classes, log: root ? { print($0) } : nil)
        model = detector
        evaluate = { val, prefix, drawingPrefix in
            let draw = config.output.drawImages == 0 ? nil
                : DrawingRequest(count: config.output.drawImages, folder: out + "/" + RunFiles.drawings, prefix: drawingPrefix,
                                 scoreThreshold: Float(config.output.drawScoreThreshold))
            return try evaluateModel(detector, config: config, dataset: val, outputPrefix: prefix, draw: draw, stop: stop, group: group)
        }
    case .classification:
        let classifier = try buildClassifier(config, classes: classes)
        model = classifier
        evaluate = { val, prefix, _ in
            try evaluateClassifier(classifier, config: config, dataset: val, outputPrefix: prefix, stop: stop, group: group).map { ModelEvaluation(report: $0) }
        }
    case .segmentation:
        let segmenter = try buildSegmenter(config, classes: classes, log: root ? { print($0) } : nil)
        model = segmenter
        evaluate = { val, prefix, _ in
            try evaluateSegmenter(segmenter, config: config, dataset: val, outputPrefix: prefix, stop: stop, group: group).map { ModelEvaluation(report: $0) }
        }
    }
    try restrictTraining(model.parameters, to: config.solver.trainOnly, task: config.model.task)
    // Before the first sum: processes that run different jobs would corrupt or hang it.
    try requireProcessesAgree(group, config: config, data: data.train, parameters: model.parameters)
    let s = config.solver
    let recipe = trainingRecipe(config, parameters: model.parameters)
    let optimizer = recipe.optimizer, schedule = recipe.schedule
    var rng = recipe.rng
    var start = 0
    if let resume {
        let state: TrainingState
        do { state = try Checkpoint.load(path: resume, into: model.parameters, optimizer: optimizer) } catch let error as CheckpointError {
            throw TrainingError("--resume: \(error.message)", exitCode: 2)
        }
        start = state.iteration
        rng = SeededGenerator(state: state.rngState)
        if root { print("resumed from \(resume) at iteration \(start)") }
        if root && !state.arithmetic.isEmpty && state.arithmetic != BLASKernel.arithmetic {
            print("note: the checkpoint was computed with \(state.arithmetic), this run uses \(BLASKernel.arithmetic): "
                  + "training continues correctly, but not bit for bit as one uninterrupted run would (matrix products round differently)")
        }
    }
    // The folder changes only now that the run can start (and holds the lock: no other run writes there).
    var log: MetricsLog? = nil
    var events: EventFileWriter? = nil
    if root {
        let stale = try removeFiles(in: out, where: isStaleTemporary)
        if !stale.isEmpty { print("removed \(stale.count) temporary file(s) a killed run left in \(out): \(stale.joined(separator: ", "))") }
        if !continuesThisRun {
            let replaced = try removeFiles(in: out, where: RunFiles.isRunFile)
            if !replaced.isEmpty { print("removed the files of the run that was in \(out): \(replaced.joined(separator: ", "))") }
        }
        try AtomicFile.write(Data(config.resolvedYAML().utf8), to: out + "/" + RunFiles.config)
        if config.model.task == .classification {
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: data.train.classNames), to: out + "/" + RunFiles.classIndex)
        }
        log = try MetricsLog(path: out + "/" + RunFiles.metrics, keepExisting: resume != nil)
        log!.lossGroups = model.lossGroups
        for line in log!.unreadableLines { printToStandardError("warning: \(line); it is left out of the rewritten file") }
        if resume != nil { try log!.truncate(after: start) }
        if config.output.tensorboard {
            events = try EventFileWriter(folder: out)
            if let resume { try events!.writeSessionStart(step: start + 1, checkpoint: resume) }
        }
    }

    let share = group.isDistributed ? BatchShare(rank: group.rank, ranks: group.size) : nil
    let loader = config.model.task == .classification
        ? try makeClassificationLoader(config, dataset: data.train, startIteration: start, share: share)
        : try makeTrainingLoader(config, dataset: data.train, startIteration: start, share: share)
    let buckets = group.isDistributed ? GradientBuckets(group: group, parameters: model.parameters) : nil
    let perProcess = config.data.imagesPerBatch / group.size
    let replicas = try imageReplicas(config, model: model, classes: classes, images: perProcess)
    if root && (group.isDistributed || replicas != nil) {
        let processes = group.size == 1 ? "1 process" : "\(group.size) processes"
        print("data-parallel: \(processes) x \(Threads.count) threads, \(perProcess) of the \(config.data.imagesPerBatch) "
              + "images of each batch per process" + (replicas == nil ? "" : ", one image per replica of the model"))
    }
    let trainer = Trainer(model: model, optimizer: optimizer, maxIterations: s.maxIter, clipNorm: s.clipGradNorm.map { Float($0) },
                          loader: loader, imagesPerBatch: config.data.imagesPerBatch, rng: rng, buckets: buckets, replicas: replicas)
    let checkpoints = CheckpointHistory(resumedFrom: resume)
    let timing = TimingHook()
    // Every process: the stop agreement, the schedule, the divergence checks (on the global losses
    // and the identical weights), the timing and the evaluation (each its share of the images).
    // Rank 0 alone (it has the log): metrics.jsonl, TensorBoard, the progress line and the checkpoints.
    // Order matters: the stop hook decides before the step is timed; the divergence hook sees a step
    // before anything uses it; checkpoints are written before the stop hook's ending.
    trainer.hooks = [StopHook(stop: stop, stopAfter: stopAfter, folder: out), LearningRateHook(schedule: schedule),
                     DivergenceHook(checkpoints: checkpoints), timing]
    if let log {
        trainer.hooks += [
            LogHook(log: log, events: events, period: config.output.logPeriod, first: start, timing: timing),
            CheckpointHook(folder: out, period: s.checkpointPeriod, config: config.resolvedYAML(), log: log, parameters: model.parameters,
                           classNames: data.train.classNames, history: checkpoints),
        ]
    }
    if let val = data.val {
        trainer.hooks.append(EvaluationHook(folder: out, period: s.evalPeriod, log: log, events: events, stop: stop) { try evaluate(val, $0, $1) })
    }
    try trainer.run(from: start)
}

/// The replicas that train a process's `images` images one each (`ImageReplicas`), `model` first;
/// nil for one image, for classification (its batches are large, and train-mode batch norm
/// couples the images) and for train-mode batch norm. The replicas' own weights are never used:
/// each step lends them the model's.
public func imageReplicas(_ config: ExperimentConfig, model: TrainableModel, classes: Int, images: Int) throws -> ImageReplicas? {
    guard images > 1, config.model.task == .detection, config.backbone.norm != .bn else { return nil }
    let spec = detectorSpec(config, classes: classes)
    return try ImageReplicas(model: model, count: images) {
        let replica = try GeneralizedRCNN(spec: spec, seed: 0)
        // The replicas' gradients are the model's: the same parameters train.
        try restrictTraining(replica.parameters, to: config.solver.trainOnly, task: config.model.task)
        return replica
    }
}

/// Checks that a run may train into the locked folder `out` and returns whether it continues the
/// folder's own run (`--resume` of a checkpoint inside it). Any other run replaces the folder's
/// run, which needs `force` once the folder holds any run file (`RunFiles.isRunFile`).
func checkRunFolder(_ out: String, resume: String?, force: Bool) throws -> Bool {
    var resumeFolder: String? = nil
    if let resume {
        do { try Checkpoint.requireFile(resume) } catch let error as CheckpointError {
            throw TrainingError("--resume: \(error.message)", exitCode: 2)
        }
        resumeFolder = canonicalPath(resume).map { ($0 as NSString).deletingLastPathComponent }
    }
    if let resume, resumeFolder == canonicalPath(out) {
        if force {
            throw TrainingError("--force would remove the run that --resume \(resume) continues: drop --force to continue it in \(out)", exitCode: 2)
        }
        return true
    }
    // Only --force removes a run's files, even those of a run killed before its first checkpoint.
    let runFiles = ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).filter(RunFiles.isRunFile).sorted()
    guard force || runFiles.isEmpty else {
        let latest = out + "/" + RunFiles.latest
        if let resume {
            throw TrainingError("\(out) holds another run, and --resume \(resume) is a checkpoint of another folder: continuing it here would mix "
                                + "the two runs. Pass --force to replace the run in \(out), resume \(latest) to continue it, or set output.dir", exitCode: 2)
        }
        if runFiles.contains(where: RunFiles.isCheckpoint) {
            throw TrainingError("\(out) holds another run (it has a checkpoint): pass --resume \(latest) to continue it, --force to start over "
                                + "(its checkpoints, metrics and evaluations are removed), or set output.dir", exitCode: 2)
        }
        throw TrainingError("\(out) holds the files of a run that wrote no checkpoint (\(runFiles.joined(separator: ", "))), as a run stopped "
                            + "before its first one leaves: there is nothing to resume. Pass --force to remove them and start over (nothing "
                            + "else in the folder is touched), or set output.dir", exitCode: 2)
    }
    return false
}
