// The training loop behind `dcn-train`: data, model, optimiser, checkpoints, logs, evaluation.
import DCNConfig
import DCNData
import DCNEval
import DCNModels
import DCNOps
import DCNTensor
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failure that ends training with a message and an exit status.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public let exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) { self.message = message; self.exitCode = exitCode }
    public var description: String { message }
}

/// Object classes when the data is not loaded: the config's, else the format's usual count.
public func defaultClassCount(_ c: ExperimentConfig) -> Int {
    if let n = c.model.classes { return n }
    switch c.data.format {
    case .coco: return 80
    case .voc: return c.data.classes?.count ?? 20
    case .synth: return syntheticClassNames.count
    }
}

/// The input size the summary reports: the test shorter side and a 4:3 longer side within max_size.
public func summaryInputSize(_ c: ExperimentConfig) -> (height: Int, width: Int) {
    let short = c.data.testMinSize
    return (short, min(c.data.maxSize, (short * 4 + 2) / 3))
}

/// The model a config describes, with pretrained backbone weights loaded when configured.
public func buildModel(_ config: ExperimentConfig, classes: Int) throws -> FasterRCNN {
    let model = try FasterRCNN(spec: detectorSpec(config, classes: classes), seed: UInt64(config.solver.seed))
    if let path = config.backbone.weights {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch {
            throw TrainingError("backbone.weights: cannot read \(path): \(error)")
        }
        var options = WeightLoadOptions(filePrefix: config.backbone.weightsPrefix, modelPrefix: "backbone.")
        // An ImageNet checkpoint carries the classifier; the detector has none.
        options.mayBeUnused = { $0.hasSuffix("num_batches_tracked") || $0.hasPrefix(config.backbone.weightsPrefix + "fc.") }
        do {
            try loadWeights(model.backbone.parameters, from: file, options: options)
        } catch let error as WeightLoadError {
            throw TrainingError("backbone.weights: \(error)")
        }
    }
    return model
}

/// Trains the detector a config describes. Writes the resolved config, checkpoints, metrics.jsonl,
/// training_curves.svg and evaluation results into the output folder. `stopAfter` ends the run
/// with a checkpoint after that many iterations, as Ctrl-C does (for tests and scripts).
public func train(config: ExperimentConfig, configPath: String, resume: String?, force: Bool, stopAfter: Int? = nil) throws {
    let out = config.outputDirectory
    let fm = FileManager.default
    let resolvedPath = out + "/config.yaml"
    if resume == nil && !force && fm.fileExists(atPath: out + "/latest") {
        throw TrainingError("\(out) holds another run (it has a checkpoint): pass --resume \(out)/latest to continue it, --force to start over, or set output.dir", exitCode: 2)
    }
    try fm.createDirectory(atPath: out, withIntermediateDirectories: true)

    let data = try loadTrainingData(config)
    let classes = data.train.classNames.count
    if let n = config.model.classes, n != classes {
        throw TrainingError("model.classes is \(n) but the training data has \(classes) classes", exitCode: 2)
    }
    let model = try buildModel(config, classes: classes)
    let optimizer = SGD(parameters: model.parameters.all, momentum: Float(config.solver.momentum),
                        weightDecay: Float(config.solver.weightDecay), weightDecayNorm: Float(config.solver.weightDecayNorm))
    let s = config.solver
    let schedule = LearningRateSchedule(baseLR: Float(s.baseLr), warmupIterations: s.warmupIters,
                                        warmupFactor: Float(s.warmupFactor), steps: s.steps, gamma: Float(s.gamma))
    var rng = SeededGenerator(seed: UInt64(s.seed) &+ 1000)
    var start = 0
    if let resume {
        let state = try Checkpoint.load(path: resume, into: model.parameters, optimizer: optimizer)
        start = state.iteration
        rng = SeededGenerator(state: state.rngState)
        print("resumed from \(resume) at iteration \(start)")
        if !state.arithmetic.isEmpty && state.arithmetic != BLASKernel.arithmetic {
            print("note: the checkpoint was computed with \(state.arithmetic), this run uses \(BLASKernel.arithmetic): "
                  + "training continues correctly, but not bit for bit as one uninterrupted run would (matrix products round differently)")
        }
    }
    try AtomicFile.write(Data(config.resolvedYAML().utf8), to: resolvedPath)
    let log = try MetricsLog(path: out + "/metrics.jsonl", keepExisting: resume != nil)
    if resume != nil { try log.truncate(after: start) }

    let loader = try makeTrainingLoader(config, dataset: data.train, startIteration: start)
    let ws = Workspace()
    let progress = ProgressPrinter()
    installInterruptHandler()
    func checkpoint(_ iteration: Int, final: Bool = false) throws {
        let name = final ? "model_final.safetensors" : String(format: "model_%07d.safetensors", iteration)
        try Checkpoint.save(parameters: model.parameters, optimizer: optimizer,
                            state: TrainingState(iteration: iteration, rngState: rng.stateArray, config: config.resolvedYAML()),
                            to: out + "/" + name)
        try Checkpoint.markLatest(name, in: out)
        try writeTrainingCurves(log.records, to: out + "/training_curves.svg")
    }

    var iteration = start
    var window: [Double] = []
    var lastLosses: [String: Float] = [:]
    while iteration < s.maxIter {
        if let stopAfter, iteration >= stopAfter {
            progress.finishLine()
            try checkpoint(iteration)
            print("stopped after iteration \(iteration): \(out)/latest")
            return
        }
        if interruptRequested != 0 {
            progress.finishLine()
            try checkpoint(iteration)
            print("interrupted: checkpoint written at iteration \(iteration) (\(out)/latest); continue with --resume \(out)/latest")
            throw TrainingError("interrupted", exitCode: 130)
        }
        let t0 = Date()
        let batch = try loader.next()
        let lr = schedule.rate(at: iteration)
        model.parameters.zeroGrad()
        let losses: [String: Float]
        do {
            losses = try model.trainStep(images: batch.images, sizes: batch.sizes, targets: batch.targets, rng: &rng, ws)
        } catch let error as ShapeError where error.message.contains("non-finite") {
            // Inputs are checked when loaded, so non-finite values inside the network mean the
            // weights diverged.
            progress.finishLine()
            let terms = lossNames.compactMap { n in lastLosses[n].map { "\(n) \($0)" } }.joined(separator: ", ")
            throw TrainingError("training diverged at iteration \(iteration + 1): \(error.message) (losses of iteration \(iteration): \(terms)); the last good checkpoint is \(out)/latest (lower solver.base_lr or set solver.clip_grad_norm)")
        }
        lastLosses = losses
        for name in lossNames {
            if let v = losses[name], !v.isFinite {
                progress.finishLine()
                throw TrainingError("loss \(name) became \(v) at iteration \(iteration + 1); the last good checkpoint is \(out)/latest (lower solver.base_lr or enable solver.clip_grad_norm)")
            }
        }
        let gradientNorm = optimizer.step(lr: lr, clipNorm: s.clipGradNorm.map { Float($0) })
        iteration += 1
        // A finite loss can still give an update that leaves the weights non-finite.
        if !gradientNorm.isFinite || model.parameters.trainable.contains(where: { $0.value.data.contains { !$0.isFinite } }) {
            progress.finishLine()
            let terms = lossNames.compactMap { n in losses[n].map { "\(n) \($0)" } }.joined(separator: ", ")
            throw TrainingError("training diverged at iteration \(iteration): the update left non-finite weights (gradient norm \(gradientNorm); losses \(terms)); the last good checkpoint is \(out)/latest (lower solver.base_lr or set solver.clip_grad_norm)")
        }
        let seconds = Date().timeIntervalSince(t0)
        window.append(seconds)
        if window.count > 20 { window.removeFirst() }
        let perIteration = window.reduce(0, +) / Double(window.count)
        if iteration % config.output.logPeriod == 0 || iteration == s.maxIter || iteration == start + 1 {
            let total = losses.values.reduce(0) { $0 + Double($1) }
            try log.append(IterationRecord(iteration: iteration, losses: losses.mapValues(Double.init), totalLoss: total,
                                           lr: Double(lr), secondsPerIteration: perIteration, dataWaitSeconds: batch.dataWaitSeconds))
        }
        progress.report(iteration: iteration, total: s.maxIter, losses: losses, order: lossNames, lr: lr,
                        secondsPerIteration: perIteration, dataWait: batch.dataWaitSeconds)
        if s.checkpointPeriod > 0 && iteration % s.checkpointPeriod == 0 && iteration < s.maxIter { try checkpoint(iteration) }
        if s.evalPeriod > 0 && iteration % s.evalPeriod == 0 && iteration < s.maxIter, let val = data.val {
            progress.finishLine()
            let report = try evaluateModel(model, config: config, dataset: val, outputPrefix: out + "/eval_\(iteration)")
            try log.appendEvaluation(iteration: iteration, metrics: report.metrics)
            print(report.text)
        }
    }
    progress.finishLine()
    try checkpoint(iteration, final: true)
    print("training finished: \(out)/model_final.safetensors")
    if let val = data.val {
        let report = try evaluateModel(model, config: config, dataset: val, outputPrefix: out + "/eval_final")
        try log.appendEvaluation(iteration: iteration, metrics: report.metrics)
        print(report.text)
    }
}
