// The training loop, written against a model protocol and extended by hooks (detectron2's
// TrainerBase / HookBase): the trainer runs the steps (batch, forward and backward, gradient sums,
// update); the learning-rate schedule, the stop agreement, the divergence checks, the timing,
// logging, checkpoints and evaluation are hooks (TrainerHooks.swift). A classification task or
// multi-process training plugs in as another model or another hook.
import DCNConfig
import DCNData
import DCNDistributed
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

extension SemanticSegmenter: TrainableModel {
    public func trainStep(_ batch: TrainingBatch, share: StepShare, _ ws: Workspace) throws -> [String: Float] {
        try trainStep(images: batch.images, pixelLabels: batch.pixelLabels, share: share, ws)
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
    /// The gradient norm the update used (before clipping); NaN when the step failed.
    public var gradientNorm: Double
    public var dataWaitSeconds: Double
    /// Seconds this step waited on the other processes (nil in a single process).
    public var communicationWaitSeconds: Double?
    /// Each deformable layer's statistics, at the steps a hook asked for them (`recordsDeformation`;
    /// empty otherwise, and for a regular network).
    public var deformation: [LayerDeformation] = []
    /// Set when a value inside the network became non-finite: the step made no update, and the
    /// divergence hook ends the run (the trainer does, if no hook did).
    public var nonFiniteInside: ShapeError? = nil
}

/// Something that runs at fixed points of the loop. Every method has a default that does nothing.
/// Hooks run in the order of `Trainer.hooks`.
public protocol TrainerHook: AnyObject {
    /// Before the first step of this run (`trainer.iteration` is the start).
    func beforeTrain(_ trainer: Trainer) throws
    /// Before each step; a hook may `requestStop` here, and the step is then not taken.
    func beforeStep(_ trainer: Trainer) throws
    /// After each step.
    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws
    /// The run stops early after `iteration` iterations (a hook requested it).
    func atStop(iteration: Int, _ trainer: Trainer) throws
    /// All iterations are done.
    func afterTrain(iteration: Int, _ trainer: Trainer) throws
    /// Whether step `iteration` (counted from 1) records the deformation statistics for this hook.
    func recordsDeformation(at iteration: Int, _ trainer: Trainer) -> Bool
}

extension TrainerHook {
    public func beforeTrain(_ trainer: Trainer) throws {}
    public func beforeStep(_ trainer: Trainer) throws {}
    public func afterStep(_ step: StepRecord, _ trainer: Trainer) throws {}
    public func atStop(iteration: Int, _ trainer: Trainer) throws {}
    public func afterTrain(iteration: Int, _ trainer: Trainer) throws {}
    public func recordsDeformation(at iteration: Int, _ trainer: Trainer) -> Bool { false }
}

public final class Trainer {
    public let model: TrainableModel
    public let optimizer: SGD
    public let maxIterations: Int
    public let clipNorm: Float?
    public var hooks: [TrainerHook] = []
    /// The training random generator (sampling, mimic RoI choice); checkpoints save its state.
    public private(set) var rng: SeededGenerator
    /// Iterations completed.
    public private(set) var iteration = 0
    /// The learning rate of the next step (set by the schedule's hook).
    public var learningRate: Float = 0
    /// Images per iteration over all processes.
    public let imagesPerBatch: Int
    /// The gradient sums over the processes (nil in a single process).
    public let buckets: GradientBuckets?
    /// The replicas that train this process's images one each (nil: `model` trains them together).
    public let replicas: ImageReplicas?
    public var group: ProcessGroup { buckets?.group ?? ProcessGroup.world }
    let loader: DataLoader
    let ws = Workspace(sizedForBackward: true)
    /// What ends the run once the hooks' `atStop` ran (set by `requestStop`).
    private var stopEnding: (() throws -> Void)? = nil

    /// `buckets`: sums the gradients over the processes of a data-parallel run, whose `loader`
    /// gives this process's share of each global batch of `imagesPerBatch` images. `replicas`
    /// (whose first model is `model`): one per image of the share.
    public init(model: TrainableModel, optimizer: SGD, maxIterations: Int, clipNorm: Float?, loader: DataLoader, imagesPerBatch: Int,
                rng: SeededGenerator, buckets: GradientBuckets? = nil, replicas: ImageReplicas? = nil) {
        precondition(replicas.map { $0.models[0] === model } ?? true, "the first replica is the trained model")
        self.model = model; self.optimizer = optimizer; self.maxIterations = maxIterations
        self.clipNorm = clipNorm; self.loader = loader; self.imagesPerBatch = imagesPerBatch; self.rng = rng
        self.buckets = buckets; self.replicas = replicas
    }

    /// Ends the run before the next step: the hooks' `atStop` run (checkpoints), then `ending`
    /// (a message, or an error that ends the process), then `run` returns.
    public func requestStop(ending: @escaping () throws -> Void) { stopEnding = ending }

    /// Trains from iteration `start` to `maxIterations`, or until a hook requests a stop.
    public func run(from start: Int) throws {
        iteration = start
        for hook in hooks { try hook.beforeTrain(self) }
        while iteration < maxIterations {
            for hook in hooks { try hook.beforeStep(self) }
            if let ending = stopEnding {
                for hook in hooks { try hook.atStop(iteration: iteration, self) }
                try ending()
                return
            }
            let step = try self.step()
            for hook in hooks { try hook.afterStep(step, self) }
            if let error = step.nonFiniteInside { throw error }
        }
        for hook in hooks { try hook.afterTrain(iteration: iteration, self) }
    }

    /// One iteration: the next batch, forward and backward (per replica, summed over the
    /// processes), and the update at `learningRate`.
    func step() throws -> StepRecord {
        let batch = try loader.next()
        let lr = learningRate
        model.parameters.zeroGrad()
        try buckets?.beginStep()
        // Every process draws the same step seed, so the random choices of each image of the
        // global batch do not depend on how the batch is split.
        let seed = rng.next()
        var deformation = hooks.contains(where: { $0.recordsDeformation(at: iteration + 1, self) }) && !model.deformationSources.isEmpty
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
            return StepRecord(iteration: iteration + 1, losses: [:], learningRate: lr, gradientNorm: .nan, dataWaitSeconds: batch.dataWaitSeconds,
                              communicationWaitSeconds: nil, nonFiniteInside: error)
        }
        // Non-finite losses are the divergence hook's to report, before anything uses this update.
        let gradientNorm = losses.values.allSatisfy(\.isFinite) ? optimizer.step(lr: lr, clipNorm: clipNorm) : .nan
        iteration += 1
        return StepRecord(iteration: iteration, losses: losses, learningRate: lr, gradientNorm: gradientNorm,
                          dataWaitSeconds: batch.dataWaitSeconds, communicationWaitSeconds: buckets?.lastWaitSeconds,
                          deformation: deformation?.finish() ?? [])
    }
}

