// The one contract of a trainable part: backbone, RPN, each RoI branch and dense head (Parts.swift)
// and the classifier.
import DCNTensor

/// A part's training forward pass: its output, its weighted named losses, and its backward pass.
/// `backward` takes the gradient that later parts sent back for the output (`Void` when nothing
/// consumes it, optional when something may), adds the part's parameter gradients, and returns
/// the gradient of the part's input. A model is a composition: it runs each part's training pass
/// in turn, sums the losses, then runs the backward passes in reverse order, summing the feature
/// gradients by name.
public struct TrainingPass<Output, OutputGradient, InputGradient> {
    public var output: Output
    public var losses: [String: Float]
    public var backward: (OutputGradient) throws -> InputGradient
    /// What the losses were divided by; `backward` scales their gradients by its `share` (nil: the
    /// part has no losses).
    public var normaliser: LossNormaliser?

    public init(output: Output, losses: [String: Float] = [:], normaliser: LossNormaliser? = nil,
                backward: @escaping (OutputGradient) throws -> InputGradient) {
        self.output = output
        self.losses = losses
        self.normaliser = normaliser
        self.backward = backward
    }
}

// MARK: - Data-parallel steps

/// How a part averages its losses: each is a sum over this process's images divided by `count`
/// (sampled anchors, sampled RoIs, chosen RoIs, positive RoIs). In data-parallel training the
/// counts are summed over the processes between the forward and the backward passes, and `share`
/// becomes this process's count / the total: the part scales its losses' gradients by it, so the
/// processes together compute the gradient of the one-process loss over the global batch.
public final class LossNormaliser {
    /// What this process's losses were divided by.
    public let count: Double
    /// This process's part of the global count (1 in a single process).
    public private(set) var share: Float = 1

    public init(count: Int) { self.count = Double(count) }

    /// Sets `share` from the count summed over the processes.
    public func setTotal(_ total: Double) {
        share = total > 0 ? Float(count / total) : 1
    }
}

/// Called with parameters whose gradients are complete for the step.
public typealias GradientsFinished = ([Parameter]) -> Void

/// The processes a data-parallel step runs in, as the model sees them.
public protocol TrainingCollective: AnyObject {
    /// Element-wise sums over the processes (blocking; small vectors: loss counts and sums).
    func sum(_ values: [Double]) throws -> [Double]
    /// Backward passes add nothing more to these parameters' gradients in this step, so their sum
    /// over the processes may start now.
    func gradientsFinished(_ parameters: [Parameter])
}

/// This process's part of one step of a global batch.
public struct StepShare {
    /// Draws every per-image random choice of the step (anchor and RoI sampling, the branches' own choices).
    public var seed: UInt64
    /// Position of this process's first image in the global batch.
    public var firstImage: Int
    /// The other processes (nil: this process has the whole batch).
    public var collective: TrainingCollective?

    public init(seed: UInt64, firstImage: Int = 0, collective: TrainingCollective? = nil) {
        self.seed = seed; self.firstImage = firstImage; self.collective = collective
    }

    /// One generator per image of this share, determined by (seed, position in the global batch),
    /// so a global batch draws the same choices however it is split.
    public func imageGenerators(_ count: Int) -> [SeededGenerator] {
        (0..<count).map { SeededGenerator(seed: deriveSeed(seed, UInt64(firstImage + $0))) }
    }
}

/// Sums every part's normaliser count and loss sums over the processes, sets the normalisers'
/// shares, and returns the global batch's losses (each a global sum / the global count).
public func globalLosses(_ parts: [(losses: [String: Float], normaliser: LossNormaliser?)],
                         _ collective: TrainingCollective) throws -> [String: Float] {
    var local: [Double] = []
    for part in parts {
        let count = part.normaliser?.count ?? 1
        local.append(count)
        for name in part.losses.keys.sorted() { local.append(Double(part.losses[name]!) * count) }
    }
    let total = try collective.sum(local)
    var losses: [String: Float] = [:], i = 0
    for part in parts {
        let count = total[i]
        part.normaliser?.setTotal(count)
        i += 1
        for name in part.losses.keys.sorted() {
            losses[name] = count > 0 ? Float(total[i] / count) : 0
            i += 1
        }
    }
    return losses
}
