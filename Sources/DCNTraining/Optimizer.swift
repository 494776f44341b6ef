// SGD with momentum and weight decay (PyTorch's update), the warm-up + step learning-rate schedule,
// per-parameter learning-rate multipliers and optional gradient-norm clipping.
import DCNModels
import DCNTensor

/// The learning rate at each iteration: linear warm-up from `warmupFactor * baseLR`, then
/// multiplied by `gamma` at each step (detectron2's WarmupMultiStepLR).
public struct LearningRateSchedule: Sendable, Equatable {
    public var baseLR: Float
    public var warmupIterations: Int
    public var warmupFactor: Float
    public var steps: [Int]
    public var gamma: Float

    public init(baseLR: Float, warmupIterations: Int, warmupFactor: Float, steps: [Int], gamma: Float) {
        self.baseLR = baseLR; self.warmupIterations = warmupIterations; self.warmupFactor = warmupFactor
        self.steps = steps; self.gamma = gamma
    }

    /// The rate used for iteration `iteration` (0-based).
    public func rate(at iteration: Int) -> Float {
        var factor: Float = 1
        if iteration < warmupIterations {
            let alpha = Float(iteration) / Float(warmupIterations)
            factor = warmupFactor * (1 - alpha) + alpha
        }
        let decays = steps.filter { $0 <= iteration }.count
        return baseLR * factor * pow(gamma, Float(decays))
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// SGD with momentum: v = momentum * v + (g + weightDecay * p); p -= lr * scale * v.
/// Norm weights and biases (`decays` false) take `weightDecayNorm` instead of `weightDecay`.
public final class SGD {
    public let parameters: [Parameter]
    public var momentum: Float
    public var weightDecay: Float
    public var weightDecayNorm: Float
    /// Momentum buffers by parameter name (allocated on the first step).
    public private(set) var velocity: [String: Tensor] = [:]

    public init(parameters: [Parameter], momentum: Float, weightDecay: Float, weightDecayNorm: Float) {
        self.parameters = parameters.filter(\.trainable)
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.weightDecayNorm = weightDecayNorm
    }

    /// The global L2 norm of all gradients (Double accumulation in a fixed order).
    public func gradientNorm() -> Double {
        var s = 0.0
        for p in parameters where p.grad.count == p.count {
            for v in p.grad.data { s += Double(v) * Double(v) }
        }
        return s.squareRoot()
    }

    /// Applies one update with learning rate `lr`; gradients are scaled down first when their
    /// global norm exceeds `clipNorm`. Returns the gradient norm before clipping.
    @discardableResult
    public func step(lr: Float, clipNorm: Float? = nil) -> Double {
        let norm = gradientNorm()
        var scale: Float = 1
        if let clipNorm, norm > Double(clipNorm) { scale = Float(Double(clipNorm) / (norm + 1e-6)) }
        for p in parameters where p.grad.count == p.count {
            var v = velocity[p.name] ?? Tensor(zeros: p.shape)
            velocity[p.name] = nil  // unique ownership while updating
            let decay = p.decays ? weightDecay : weightDecayNorm
            let rate = lr * p.learningRateScale
            p.value.withUnsafeMutableBufferPointer { w in
                v.withUnsafeMutableBufferPointer { vb in
                    p.grad.withUnsafeBufferPointer { g in
                        for i in 0..<w.count {
                            vb[i] = momentum * vb[i] + (scale * g[i] + decay * w[i])
                            w[i] -= rate * vb[i]
                        }
                    }
                }
            }
            velocity[p.name] = v
        }
        return norm
    }

    /// Restores momentum buffers (from a checkpoint); shapes are checked.
    public func setVelocity(_ name: String, _ value: Tensor) throws {
        guard let p = parameters.first(where: { $0.name == name }) else {
            throw ShapeError("optimizer state names '\(name)', which is not a trainable parameter of this model")
        }
        try require(p.shape == value.shape, "optimizer state '\(name)' has shape \(value.shape), the parameter \(p.shape)")
        velocity[name] = value
    }
}
