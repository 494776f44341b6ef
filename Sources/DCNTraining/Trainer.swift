// The training loop, written against a model protocol and extended by hooks (detectron2's
// TrainerBase / HookBase): the trainer runs the steps, the learning-rate schedule, the update and
// the divergence checks; logging, checkpoints and evaluation are hooks. A classification task or
// multi-process training plugs in as another model or another hook.
import DCNConfig
import DCNData
import DCNDistributed
import DCNEval
import DCNModels
import DCNOps
import DCNTensor
import DCNTensorBoard
import Foundation

/// What the trainer trains.
public protocol TrainableModel: AnyObject {
    var parameters: ParameterList { get }
    /// The losses `trainStep` returns, in reporting order, grouped by the part that computes them.
    var lossGroups: [LossGroup] { get }
    /// One forward and backward pass over `batch` (this process's share of the global batch): the
    /// global batch's weighted named losses, whose gradients are added into the parameters (zeroed
    /// by the trainer first).
    func trainStep(_ batch: TrainingBatch, share: StepShare, _ ws: Workspace) throws -> [String: Float]
}

extension TrainableModel {
    /// Names of the losses `trainStep` returns, in reporting order.
    public var lossNames: [String] { lossGroups.flatMap(\.names) }
}

extension ImageClassifier: TrainableModel {
    public func trainStep(_ batch: TrainingBatch, share: StepShare, _ ws: Workspace) throws -> [String: Float] {
        try trainStep(images: batch.images, labels: batch.classLabels, share: share, ws)
    }
}

extension GeneralizedRCNN: TrainableModel {
    public func trainStep(_ batch: TrainingBatch, share: StepShare, _ ws: Workspace) throws -> [String: Float] {
        try trainStep(images: batch.images, sizes: batch.sizes, targets: batch.instances, share: share, ws)
    }
}

/// One finished iteration, as the hooks see it.
public struct StepRecord {
    /// Iterations completed (1 after the first).
    public var iteration: Int
    public var losses: [String: Float]
    public var learningRate: Float
    /// Mean wall time of the last 20 iterations.
    public var secondsPerIteration: Double
    public var dataWaitSeconds: Double
    /// Seconds this step waited on the other processes (nil in a single process).
    public var communicationWaitSeconds: Double?
    /// Each deformable layer's statistics, at the steps `Trainer.recordsDeformation` picks (empty
    /// otherwise, and for a regular network).
    public var deformation: [LayerDeformation] = []
}

/// Something that runs at fixed points of the loop. Every method has a default that does nothing.
public protocol TrainerHook: AnyObject {
    /// After each update.
    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws
    /// The run stops early after `iteration` iterations (a signal, or `stopAfter`).
    func atStop(iteration: Int, _ trainer: Trainer) throws
    /// All iterations are done.
    func afterTraining(iteration: Int, _ trainer: Trainer) throws
}

extension TrainerHook {
    public func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {}
    public func atStop(iteration: Int, _ trainer: Trainer) throws {}
    public func afterTraining(iteration: Int, _ trainer: Trainer) throws {}
}

public final class Trainer {
    public let model: TrainableModel
    public let optimizer: SGD
    public let schedule: LearningRateSchedule
    public let maxIterations: Int
    public let clipNorm: Float?
    public var hooks: [TrainerHook] = []
    /// The training random generator (sampling, mimic RoI choice); checkpoints save its state.
    public var rng: SeededGenerator
    /// The newest checkpoint the run can go back to (set by the checkpoint hook, or by a resume).
    public var lastCheckpoint: String?
    /// The run's output folder.
    public let folder: String
    /// Images per iteration over all processes.
    public let imagesPerBatch: Int
    /// The gradient sums over the processes (nil in a single process).
    public let buckets: GradientBuckets?
    /// The replicas that train this process's images one each (nil: `model` trains them together).
    public let replicas: ImageReplicas?
    public var group: ProcessGroup { buckets?.group ?? ProcessGroup.world }
    /// The iterations (counted from 1) whose steps record the deformation statistics: the logged
    /// ones (`LogHook.logs`); none by default.
    public var recordsDeformation: (Int) -> Bool = { _ in false }
    let loader: DataLoader
    let progress = ProgressPrinter()
    let ws = Workspace()

    /// `buckets`: sums the gradients over the processes of a data-parallel run, whose `loader`
    /// gives this process's share of each global batch of `imagesPerBatch` images. `replicas`
    /// (whose first model is `model`): one per image of the share.
    public init(model: TrainableModel, optimizer: SGD, schedule: LearningRateSchedule, maxIterations: Int, clipNorm: Float?,
                loader: DataLoader, imagesPerBatch: Int, rng: SeededGenerator, folder: String, buckets: GradientBuckets? = nil,
                replicas: ImageReplicas? = nil) {
        precondition(replicas.map { $0.models[0] === model } ?? true, "the first replica is the trained model")
        self.model = model; self.optimizer = optimizer; self.schedule = schedule; self.maxIterations = maxIterations
        self.clipNorm = clipNorm; self.loader = loader; self.imagesPerBatch = imagesPerBatch; self.rng = rng; self.folder = folder
        self.buckets = buckets; self.replicas = replicas
    }

    /// Ends the live progress line before other output.
    public func finishLine() { progress.finishLine() }

    /// What to go back to after a failure.
    public var lastGood: String { lastCheckpoint.map { "the last good checkpoint is \($0)" } ?? "no checkpoint was written yet" }

    /// Trains from `start` to `maxIterations`. Stops early with a checkpoint after `stopAfter`
    /// iterations, or when `stop` has a signal (then throws a `TrainingError` with its status).
    /// A non-finite loss or weight throws a `TrainingError` carrying the `Divergence`.
    public func run(from start: Int, stopAfter: Int?, stop: StopRequest) throws {
        var iteration = start
        var window: [Double] = []
        var lastLosses: [String: Float] = [:]
        while iteration < maxIterations {
            if let stopAfter, iteration >= stopAfter {
                finishLine()
                for hook in hooks { try hook.atStop(iteration: iteration, self) }
                if group.isRoot { print("stopped after iteration \(iteration): \(folder)/\(RunFiles.latest)") }
                return
            }
            if try stopRequested(stop) {
                finishLine()
                for hook in hooks { try hook.atStop(iteration: iteration, self) }
                // The other processes wait here until rank 0 has written the checkpoint.
                try group.barrier()
                throw TrainingError("stopped by \(stop.signalName): checkpoint written at iteration \(iteration) (\(folder)/\(RunFiles.latest)); "
                                    + "continue with --resume \(folder)/\(RunFiles.latest)", exitCode: stop.exitCode, everyProcess: true)
            }
            let t0 = Date()
            let batch = try loader.next()
            let lr = schedule.rate(at: iteration)
            model.parameters.zeroGrad()
            try buckets?.beginStep()
            // Every process draws the same step seed, so the random choices of each image of the
            // global batch do not depend on how the batch is split.
            let seed = rng.next()
            var deformation = recordsDeformation(iteration + 1) && !model.deformationSources.isEmpty
                ? DeformationRecorder(models: replicas?.models ?? [model]) : nil
            let losses: [String: Float]
            do {
                if let replicas {
                    try require(batch.images.dim(0) == replicas.count,
                                "a batch of \(batch.images.dim(0)) images for \(replicas.count) image replicas")
                    losses = try replicas.step(outer: buckets) { i, collective, ws in
                        let image = try batch.part(i ..< i + 1)
                        return try replicas.models[i].trainStep(image, share: StepShare(seed: seed, firstImage: image.firstImage,
                                                                                        collective: collective), ws)
                    }
                } else {
                    losses = try model.trainStep(batch, share: StepShare(seed: seed, firstImage: batch.firstImage, collective: buckets), ws)
                }
                try buckets?.finish()
            } catch let error as ShapeError where error.kind == .nonFinite {
                // Inputs are checked when loaded, so non-finite values inside the network mean the
                // weights diverged.
                throw diverged(at: iteration + 1, "\(error.message) (losses of iteration \(iteration): \(terms(lastLosses)))", losses: lastLosses,
                               everyProcess: false)
            }
            lastLosses = losses
            for name in model.lossNames {
                if let v = losses[name], !v.isFinite { throw diverged(at: iteration + 1, "loss \(name) became \(v)", losses: losses) }
            }
            let gradientNorm = optimizer.step(lr: lr, clipNorm: clipNorm)
            iteration += 1
            // A finite loss can still give an update that leaves the weights non-finite.
            if !gradientNorm.isFinite || model.parameters.trainable.contains(where: { $0.value.data.contains { !$0.isFinite } }) {
                throw diverged(at: iteration, "the update left non-finite weights (gradient norm \(gradientNorm); losses \(terms(losses)))",
                               losses: losses)
            }
            window.append(Date().timeIntervalSince(t0))
            if window.count > 20 { window.removeFirst() }
            let step = StepRecord(iteration: iteration, losses: losses, learningRate: lr,
                                  secondsPerIteration: window.reduce(0, +) / Double(window.count), dataWaitSeconds: batch.dataWaitSeconds,
                                  communicationWaitSeconds: buckets?.lastWaitSeconds, deformation: deformation?.finish() ?? [])
            for hook in hooks { try hook.afterStep(step, self) }
        }
        finishLine()
        for hook in hooks { try hook.afterTraining(iteration: iteration, self) }
    }

    /// Whether any process has a stop request (SIGINT / SIGTERM): every process stops at the same
    /// iteration, or the others would wait for it forever.
    func stopRequested(_ stop: StopRequest) throws -> Bool {
        guard let buckets else { return stop.signal != 0 }
        let signal = try buckets.group.max(Double(stop.signal))
        if signal != 0 && stop.signal == 0 { stop.request(Int32(signal)) }
        return signal != 0
    }

    /// "rpn_cls 0.69, rpn_box 0.04, ..." in reporting order.
    func terms(_ losses: [String: Float]) -> String {
        model.lossNames.compactMap { n in losses[n].map { "\(n) \($0)" } }.joined(separator: ", ")
    }

    /// `everyProcess`: decided from the global losses or the (identical) weights, so every process
    /// of a data-parallel run stops here too.
    func diverged(at iteration: Int, _ what: String, losses: [String: Float], everyProcess: Bool = true) -> TrainingError {
        finishLine()
        return TrainingError("training diverged at iteration \(iteration): \(what); \(lastGood) (lower solver.base_lr or set solver.clip_grad_norm)",
                             divergence: Divergence(iteration: iteration, losses: losses), everyProcess: everyProcess)
    }
}

// MARK: - The hooks of a detector run

/// Writes `metrics.jsonl` and the TensorBoard scalars every `period` iterations (and the first and
/// last) and the progress line.
final class LogHook: TrainerHook {
    let log: MetricsLog, events: EventFileWriter?, period: Int, first: Int

    init(log: MetricsLog, events: EventFileWriter?, period: Int, first: Int) {
        self.log = log; self.events = events; self.period = period; self.first = first
    }

    /// Whether iteration `iteration` (counted from 1) of a run of `maxIterations` is logged.
    func logs(_ iteration: Int, maxIterations: Int) -> Bool {
        iteration % period == 0 || iteration == maxIterations || iteration == first + 1
    }

    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {
        if logs(step.iteration, maxIterations: trainer.maxIterations) {
            let total = step.losses.values.reduce(0) { $0 + Double($1) }
            let now = Date()
            let deformation = step.deformation.isEmpty ? nil : Dictionary(step.deformation.map { ($0.layer, $0.statistics) }, uniquingKeysWith: { a, _ in a })
            try log.append(IterationRecord(iteration: step.iteration, losses: step.losses.mapValues(Double.init), totalLoss: total,
                                           lr: Double(step.learningRate), secondsPerIteration: step.secondsPerIteration,
                                           dataWaitSeconds: step.dataWaitSeconds, time: now.timeIntervalSince1970, deformation: deformation))
            if let events {
                var scalars = trainer.model.lossNames.compactMap { n in step.losses[n].map { (tag: "loss/\(n)", value: Double($0)) } }
                scalars += [("loss/total", total), ("lr", Double(step.learningRate)), ("time/seconds_per_iteration", step.secondsPerIteration),
                            ("time/data_wait_seconds", step.dataWaitSeconds)]
                if let wait = step.communicationWaitSeconds { scalars.append(("time/communication_wait_seconds", wait)) }
                for layer in step.deformation {
                    scalars += layer.statistics.sorted { $0.key < $1.key }.map { ("deform/\(layer.layer)/\($0.key)", $0.value) }
                }
                try events.writeScalars(scalars, step: step.iteration, wallTime: now)
            }
        }
        trainer.progress.report(iteration: step.iteration, total: trainer.maxIterations, losses: step.losses, order: trainer.model.lossNames,
                                lr: step.learningRate, secondsPerIteration: step.secondsPerIteration, dataWait: step.dataWaitSeconds,
                                imagesPerBatch: trainer.imagesPerBatch, communicationWait: step.communicationWaitSeconds)
    }
}

/// Checkpoints (with `latest` and the training curves) every `period` iterations, at an early
/// stop and at the end.
final class CheckpointHook: TrainerHook {
    let folder: String, period: Int, config: String, log: MetricsLog
    let parameters: ParameterList
    /// The training data's classes, recorded in each checkpoint.
    let classNames: [String]

    init(folder: String, period: Int, config: String, log: MetricsLog, parameters: ParameterList, classNames: [String]) {
        self.folder = folder; self.period = period; self.config = config; self.log = log; self.parameters = parameters
        self.classNames = classNames
    }

    func write(_ iteration: Int, final: Bool = false, _ trainer: Trainer) throws {
        let name = final ? RunFiles.finalCheckpoint : RunFiles.checkpoint(iteration: iteration)
        do {
            try Checkpoint.save(parameters: parameters, optimizer: trainer.optimizer,
                                state: TrainingState(iteration: iteration, rngState: trainer.rng.stateArray, config: config, classNames: classNames),
                                to: folder + "/" + name)
            try Checkpoint.markLatest(name, in: folder)
        } catch {
            throw TrainingError("cannot write the checkpoint of iteration \(iteration): \(error); \(trainer.lastGood)")
        }
        trainer.lastCheckpoint = folder + "/" + name
        try writeTrainingCurves(log.records, evaluations: log.evaluations, lossGroups: log.lossGroups, to: folder + "/" + RunFiles.curves)
    }

    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {
        if period > 0 && step.iteration % period == 0 && step.iteration < trainer.maxIterations { try write(step.iteration, trainer) }
    }

    func atStop(iteration: Int, _ trainer: Trainer) throws { try write(iteration, trainer) }

    func afterTraining(iteration: Int, _ trainer: Trainer) throws {
        try write(iteration, final: true, trainer)
        print("training finished: \(folder)/\(RunFiles.finalCheckpoint)")
    }
}

/// Evaluates on the validation split every `period` iterations (0 = only at the end) and at the end.
/// In a data-parallel run every process evaluates its share of the images; rank 0 (the one with
/// the `log`) scores them, writes the files (metrics, the refreshed curves, TensorBoard's numbers
/// and drawn images) and prints the report.
final class EvaluationHook: TrainerHook {
    let folder: String, period: Int, log: MetricsLog?, events: EventFileWriter?, stop: StopRequest
    /// Evaluates the model, writing `<prefix>_metrics.json` (and results) and drawing the images
    /// whose names start with the drawing prefix; nil on processes other than rank 0.
    let run: (_ outputPrefix: String, _ drawingPrefix: String) throws -> ModelEvaluation?

    init(folder: String, period: Int, log: MetricsLog?, events: EventFileWriter?, stop: StopRequest,
         run: @escaping (String, String) throws -> ModelEvaluation?) {
        self.folder = folder; self.period = period; self.log = log; self.events = events; self.stop = stop; self.run = run
    }

    func evaluate(_ iteration: Int, final: Bool) throws {
        let tag: Int? = final ? nil : iteration
        guard let evaluation = try run(folder + "/" + RunFiles.evaluationPrefix(iteration: tag), RunFiles.drawingPrefix(iteration: tag)) else { return }
        let report = evaluation.report
        if let log {
            try log.appendEvaluation(iteration: iteration, metrics: report.metrics)
            try writeTrainingCurves(log.records, evaluations: log.evaluations, lossGroups: log.lossGroups, to: folder + "/" + RunFiles.curves)
        }
        if let events {
            try events.writeScalars(report.metrics.filter { $0.value.isFinite }.map { ("eval/\($0.name)", $0.value) }, step: iteration)
            try events.writeImages(evaluation.drawings.map { ("detections/\($0.imageName)", $0.png, $0.width, $0.height) }, step: iteration)
        }
        print(report.text)
        if let first = evaluation.drawings.first {
            print("drew \(evaluation.drawings.count) validation image(s) with their detections: \((first.path as NSString).deletingLastPathComponent)/\(RunFiles.drawingPrefix(iteration: tag))*.png")
        }
    }

    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {
        guard period > 0 && step.iteration % period == 0 && step.iteration < trainer.maxIterations else { return }
        trainer.finishLine()
        do { try evaluate(step.iteration, final: false) } catch is Stopped {
            // The stop check at the top of the loop writes the checkpoint and ends the run.
        }
    }

    func afterTraining(iteration: Int, _ trainer: Trainer) throws {
        do { try evaluate(iteration, final: true) } catch is Stopped {
            throw TrainingError("stopped by \(stop.signalName) during the final evaluation; the trained model is \(folder)/\(RunFiles.finalCheckpoint) "
                                + "(evaluate it with dcn-eval model --checkpoint)", exitCode: stop.exitCode, everyProcess: true)
        }
    }
}
