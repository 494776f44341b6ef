// What a training run logs in metrics.jsonl (and the curves draw): each logged iteration and each
// evaluation.
import Foundation

/// One logged training iteration.
public struct IterationRecord: Codable, Sendable, Equatable {
    public var iteration: Int
    public var losses: [String: Double]
    public var totalLoss: Double
    public var lr: Double
    public var secondsPerIteration: Double
    public var dataWaitSeconds: Double
    /// Seconds since the Unix epoch when it was logged (nil in files of older runs).
    public var time: Double?
    /// Each deformable layer's statistics (`DeformationTally.summary` and `update_ratio`) over this
    /// process's images of the step, by layer name; nil for a regular network.
    public var deformation: [String: [String: Double]]?

    public init(iteration: Int, losses: [String: Double], totalLoss: Double, lr: Double, secondsPerIteration: Double, dataWaitSeconds: Double,
                time: Double? = nil, deformation: [String: [String: Double]]? = nil) {
        self.iteration = iteration; self.losses = losses; self.totalLoss = totalLoss; self.lr = lr
        self.secondsPerIteration = secondsPerIteration; self.dataWaitSeconds = dataWaitSeconds; self.time = time
        self.deformation = deformation
    }
}

/// One evaluation during a run: `metrics.jsonl`'s `{"iteration": N, "eval": {...}}` line.
public struct EvaluationRecord: Sendable, Equatable {
    public var iteration: Int
    public var metrics: [String: Double]
    /// Seconds since the Unix epoch when it was logged (nil in files of older runs).
    public var time: Double?

    public init(iteration: Int, metrics: [String: Double], time: Double? = nil) {
        self.iteration = iteration; self.metrics = metrics; self.time = time
    }
}
