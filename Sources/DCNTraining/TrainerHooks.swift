// The hooks of a training run. Each owns one concern and its files; `train` lists them, and says
// there which processes run which.
import DCNData
import DCNDistributed
import DCNInference
import DCNModels
import DCNOps
import DCNPictures
import DCNRun
import DCNTensor
import DCNTensorBoard
import Foundation

/// The newest checkpoint a run can go back to: the resumed one, then each one the checkpoint hook
/// writes. Error messages name it.
public final class CheckpointHistory {
    public var last: String?
    public init(resumedFrom: String? = nil) { last = resumedFrom }
    /// What to go back to after a failure.
    public var lastGood: String { last.map { "the last good checkpoint is \($0)" } ?? "no checkpoint was written yet" }
}

/// Ends the run before a step: after `stopAfter` iterations (tests and scripts: a checkpoint, a
/// message), or when any process has a stop signal (SIGINT / SIGTERM / SIGHUP: a checkpoint, then
/// a `TrainingError` with status 128 + the signal). Every process runs it: they agree on the stop,
/// or the others would wait for the stopped one forever.
public final class StopHook: TrainerHook {
    let stop: StopRequest, stopAfter: Int?, folder: String
    let console = ProgressPrinter()

    public init(stop: StopRequest, stopAfter: Int?, folder: String) { self.stop = stop; self.stopAfter = stopAfter; self.folder = folder }

    public func beforeStep(_ trainer: Trainer) throws {
        let iteration = trainer.iteration, group = trainer.group
        if let stopAfter, iteration >= stopAfter {
            console.finishLine()
            trainer.requestStop { [folder] in
                if group.isRoot { print("stopped after iteration \(iteration): \(folder)/\(RunFiles.latest)") }
            }
        } else if try signalled(trainer.buckets?.group) {
            console.finishLine()
            trainer.requestStop { [stop, folder] in
                // The other processes wait here until rank 0 has written the checkpoint.
                try group.barrier()
                throw TrainingError("stopped by \(stop.signalName): checkpoint written at iteration \(iteration) (\(folder)/\(RunFiles.latest)); "
                                    + "continue with --resume \(folder)/\(RunFiles.latest)", exitCode: stop.exitCode, everyProcess: true)
            }
        }
    }

    /// Whether any process of `group` (this one alone when nil) has a stop request.
    func signalled(_ group: ProcessGroup?) throws -> Bool {
        guard let group else { return stop.signal != 0 }
        let signal = try group.max(Double(stop.signal))
        if signal != 0 && stop.signal == 0 { stop.request(Int32(signal)) }
        return signal != 0
    }
}

/// Sets each step's learning rate from the schedule (warm-up, steps or cosine).
public final class LearningRateHook: TrainerHook {
    let schedule: LearningRateSchedule
    public init(schedule: LearningRateSchedule) { self.schedule = schedule }
    public func beforeStep(_ trainer: Trainer) throws { trainer.learningRate = schedule.rate(at: trainer.iteration) }
}

/// Ends the run with a `TrainingError` carrying the `Divergence` when a value inside the network, a
/// loss or, after the update, a weight is non-finite. List it before the hooks that use the step.
public final class DivergenceHook: TrainerHook {
    let checkpoints: CheckpointHistory
    let console = ProgressPrinter()
    /// The losses of the last finite step, for the message.
    var lastLosses: [String: Float] = [:]

    public init(checkpoints: CheckpointHistory) { self.checkpoints = checkpoints }

    public func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {
        if let error = step.nonFiniteInside {
            // Inputs are checked when loaded, so non-finite values inside the network mean the
            // weights diverged. Decided by one process's values: only it stops here.
            throw diverged(at: step.iteration, "\(error.message) (losses of iteration \(step.iteration - 1): \(terms(lastLosses, trainer)))",
                           losses: lastLosses, everyProcess: false)
        }
        // The global losses and the (identical) weights decide the rest: every process stops here.
        let names = trainer.model.lossNames + step.losses.keys.filter { !trainer.model.lossNames.contains($0) }.sorted()
        for name in names {
            if let v = step.losses[name], !v.isFinite { throw diverged(at: step.iteration, "loss \(name) became \(v)", losses: step.losses) }
        }
        lastLosses = step.losses
        // A finite loss can still give an update that leaves the weights non-finite.
        if !step.gradientNorm.isFinite || trainer.model.parameters.trainable.contains(where: { $0.value.data.contains { !$0.isFinite } }) {
            throw diverged(at: step.iteration, "the update left non-finite weights (gradient norm \(step.gradientNorm); losses \(terms(step.losses, trainer)))",
                           losses: step.losses)
        }
    }

    /// "rpn_cls 0.69, rpn_box 0.04, ..." in reporting order.
    func terms(_ losses: [String: Float], _ trainer: Trainer) -> String {
        trainer.model.lossNames.compactMap { n in losses[n].map { "\(n) \($0)" } }.joined(separator: ", ")
    }

    func diverged(at iteration: Int, _ what: String, losses: [String: Float], everyProcess: Bool = true) -> TrainingError {
        console.finishLine()
        return TrainingError("training diverged at iteration \(iteration): \(what); \(checkpoints.lastGood) (lower solver.base_lr or set solver.clip_grad_norm)",
                             divergence: Divergence(iteration: iteration, losses: losses), everyProcess: everyProcess)
    }
}

/// The mean wall time of the last 20 steps (from before the batch to after the divergence checks).
final class TimingHook: TrainerHook {
    private var start = Date()
    private var window: [Double] = []
    /// Seconds per iteration over the window.
    private(set) var secondsPerIteration: Double = 0

    func beforeStep(_ trainer: Trainer) throws { start = Date() }

    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {
        window.append(Date().timeIntervalSince(start))
        if window.count > 20 { window.removeFirst() }
        secondsPerIteration = window.reduce(0, +) / Double(window.count)
    }
}

/// Writes `metrics.jsonl` and the TensorBoard scalars every `period` iterations (and the first and
/// last), with the deformation statistics of those steps, and the progress line.
final class LogHook: TrainerHook {
    let log: MetricsLog, events: EventFileWriter?, period: Int, first: Int, timing: TimingHook
    let progress = ProgressPrinter()

    init(log: MetricsLog, events: EventFileWriter?, period: Int, first: Int, timing: TimingHook) {
        self.log = log; self.events = events; self.period = period; self.first = first; self.timing = timing
    }

    /// Whether iteration `iteration` (counted from 1) of a run of `maxIterations` is logged.
    func logs(_ iteration: Int, maxIterations: Int) -> Bool {
        iteration % period == 0 || iteration == maxIterations || iteration == first + 1
    }

    func recordsDeformation(at iteration: Int, _ trainer: Trainer) -> Bool { logs(iteration, maxIterations: trainer.maxIterations) }

    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {
        let secondsPerIteration = timing.secondsPerIteration
        if logs(step.iteration, maxIterations: trainer.maxIterations) {
            let total = step.losses.values.reduce(0) { $0 + Double($1) }
            let now = Date()
            let deformation = step.deformation.isEmpty ? nil : Dictionary(step.deformation.map { ($0.layer, $0.statistics) }, uniquingKeysWith: { a, _ in a })
            try log.append(IterationRecord(iteration: step.iteration, losses: step.losses.mapValues(Double.init), totalLoss: total,
                                           lr: Double(step.learningRate), secondsPerIteration: secondsPerIteration,
                                           dataWaitSeconds: step.dataWaitSeconds, time: now.timeIntervalSince1970, deformation: deformation))
            if let events {
                var scalars = trainer.model.lossNames.compactMap { n in step.losses[n].map { (tag: "loss/\(n)", value: Double($0)) } }
                scalars += [("loss/total", total), ("lr", Double(step.learningRate)), ("time/seconds_per_iteration", secondsPerIteration),
                            ("time/data_wait_seconds", step.dataWaitSeconds)]
                if let wait = step.communicationWaitSeconds { scalars.append(("time/communication_wait_seconds", wait)) }
                for layer in step.deformation {
                    scalars += layer.statistics.sorted { $0.key < $1.key }.map { ("deform/\(layer.layer)/\($0.key)", $0.value) }
                }
                try events.writeScalars(scalars, step: step.iteration, wallTime: now)
            }
        }
        progress.report(iteration: step.iteration, total: trainer.maxIterations, losses: step.losses, order: trainer.model.lossNames,
                        lr: step.learningRate, secondsPerIteration: secondsPerIteration, dataWait: step.dataWaitSeconds,
                        imagesPerBatch: trainer.imagesPerBatch, communicationWait: step.communicationWaitSeconds)
    }

    func afterTrain(iteration: Int, _ trainer: Trainer) throws { progress.finishLine() }
}

/// Checkpoints (with `latest` and the training curves) every `period` iterations, at an early
/// stop and at the end.
final class CheckpointHook: TrainerHook {
    let folder: String, period: Int, config: String, log: MetricsLog
    let parameters: ParameterList
    /// The training data's classes, recorded in each checkpoint.
    let classNames: [String]
    let history: CheckpointHistory

    init(folder: String, period: Int, config: String, log: MetricsLog, parameters: ParameterList, classNames: [String], history: CheckpointHistory) {
        self.folder = folder; self.period = period; self.config = config; self.log = log; self.parameters = parameters
        self.classNames = classNames; self.history = history
    }

    func write(_ iteration: Int, final: Bool = false, _ trainer: Trainer) throws {
        let name = final ? RunFiles.finalCheckpoint : RunFiles.checkpoint(iteration: iteration)
        do {
            try Checkpoint.save(parameters: parameters, optimizer: trainer.optimizer,
                                state: TrainingState(iteration: iteration, rngState: trainer.rng.stateArray, config: config, classNames: classNames),
                                to: folder + "/" + name)
            try Checkpoint.markLatest(name, in: folder)
        } catch {
            throw TrainingError("cannot write the checkpoint of iteration \(iteration): \(error); \(history.lastGood)")
        }
        history.last = folder + "/" + name
        try writeTrainingCurves(log.records, evaluations: log.evaluations, lossGroups: log.lossGroups, to: folder + "/" + RunFiles.curves)
    }

    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {
        if period > 0 && step.iteration % period == 0 && step.iteration < trainer.maxIterations { try write(step.iteration, trainer) }
    }

    func atStop(iteration: Int, _ trainer: Trainer) throws { try write(iteration, trainer) }

    func afterTrain(iteration: Int, _ trainer: Trainer) throws {
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
    let console = ProgressPrinter()

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
        console.finishLine()
        do { try evaluate(step.iteration, final: false) } catch is Stopped {
            // The stop hook, before the next step, writes the checkpoint and ends the run.
        }
    }

    func afterTrain(iteration: Int, _ trainer: Trainer) throws {
        do { try evaluate(iteration, final: true) } catch is Stopped {
            throw TrainingError("stopped by \(stop.signalName) during the final evaluation; the trained model is \(folder)/\(RunFiles.finalCheckpoint) "
                                + "(evaluate it with dcn-eval model --checkpoint)", exitCode: stop.exitCode, everyProcess: true)
        }
    }
}
