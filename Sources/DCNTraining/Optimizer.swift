// SGD with momentum and weight decay (PyTorch's update), the warm-up + step learning-rate schedule,
// per-parameter learning-rate multipliers and optional gradient-norm clipping.
import DCNModels
import DCNRun
import DCNTensor

/// The learning rate at each iteration: linear warm-up from `warmupFactor * baseLR`, then either
/// multiplied by `gamma` at each step (detectron2's WarmupMultiStepLR) or, with `cosineOver` set,
/// times 0.5 (1 + cos(pi * iteration / cosineOver)) (detectron2's WarmupCosineLR).
public struct LearningRateSchedule: Sendable, Equatable {
    public var baseLR: Float
    public var warmupIterations: Int
    public var warmupFactor: Float
    public var steps: [Int]
    public var gamma: Float
    /// The cosine schedule's length (max_iter); nil for steps.
    public var cosineOver: Int?

    public init(baseLR: Float, warmupIterations: Int, warmupFactor: Float, steps: [Int], gamma: Float, cosineOver: Int? = nil) {
        self.baseLR = baseLR; self.warmupIterations = warmupIterations; self.warmupFactor = warmupFactor
        self.steps = steps; self.gamma = gamma; self.cosineOver = cosineOver
    }

    /// The rate used for iteration `iteration` (0-based).
    public func rate(at iteration: Int) -> Float {
        var factor: Float = 1
        if iteration < warmupIterations {
            let alpha = Float(iteration) / Float(warmupIterations)
            factor = warmupFactor * (1 - alpha) + alpha
        }
        if let length = cosineOver {
            let t = Double(min(iteration, length)) / Double(max(1, length))
            return baseLR * factor * Float(0.5 * (1 + cos(Double.pi * t)))
        }
        let decays = steps.filter { $0 <= iteration }.count
        return baseLR * factor * pow(gamma, Float(decays))
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// SGD with momentum: v = momentum * v + (g + weightDecay * p); p -= lr * scale * v.
/// Norm weights and biases (`decays` false) take `weightDecayNorm` instead of `weightDecay`; the
/// biases of convolutions and linear layers take `weightDecayBias` (nil: `weightDecay`).
public final class SGD: CheckpointedOptimizer {
    public let parameters: [Parameter]
    public var momentum: Float
    public var weightDecay: Float
    public var weightDecayNorm: Float
    public var weightDecayBias: Float?
    /// The momentum of every trainable parameter in one block, in `parameters` order: parameter i
    /// owns `velocity[offsets[i] ..< offsets[i] + parameters[i].count]`.
    public private(set) var velocity: [Float]
    let offsets: [Int]
    /// Which weight decay each parameter takes, decided once from its name and kind.
    let decayKinds: [DecayKind]

    enum DecayKind { case weight, norm, bias }

    public init(parameters: [Parameter], momentum: Float, weightDecay: Float, weightDecayNorm: Float, weightDecayBias: Float? = nil) {
        self.parameters = parameters.filter(\.trainable)
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.weightDecayNorm = weightDecayNorm
        self.weightDecayBias = weightDecayBias
        var offsets = [Int](), total = 0
        for p in self.parameters { offsets.append(total); total += p.count }
        self.offsets = offsets
        decayKinds = self.parameters.map { !$0.decays ? .norm : $0.name.hasSuffix(".bias") ? .bias : .weight }
        velocity = [Float](repeating: 0, count: total)
    }

    /// Each parameter's momentum as a tensor of its shape (for checkpoints).
    public var velocityTensors: [(name: String, value: Tensor)] {
        zip(parameters, offsets).map { p, offset in
            (p.name, try! Tensor(shape: p.shape, data: Array(velocity[offset ..< offset + p.count])))
        }
    }

    /// The global L2 norm of all gradients (Double accumulation in a fixed order).
    public func gradientNorm() -> Double {
        var s = 0.0
        for p in parameters {
            guard let g = p.gradient else { continue }
            for v in g.buffer { s += Double(v) * Double(v) }
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
        velocity.withUnsafeMutableBufferPointer { block in
            let decays: [DecayKind: Float] = [.weight: weightDecay, .norm: weightDecayNorm, .bias: weightDecayBias ?? weightDecay]
            for (i, p) in parameters.enumerated() {
                guard let g = p.gradient else { continue }
                let decay = decays[decayKinds[i]]!, offset = offsets[i]
                let rate = lr * p.learningRateScale
                let vb = block.baseAddress! + offset
                p.value.withUnsafeMutableBufferPointer { w in
                    for i in 0..<w.count {
                        vb[i] = momentum * vb[i] + (scale * g.base[i] + decay * w[i])
                        w[i] -= rate * vb[i]
                    }
                }
            }
        }
        return norm
    }

    /// Restores momentum buffers (from a checkpoint); shapes are checked.
    public func setVelocity(_ name: String, _ value: Tensor) throws {
        guard let i = parameters.firstIndex(where: { $0.name == name }) else {
            throw ShapeError("optimizer state names '\(name)', which is not a trainable parameter of this model")
        }
        let p = parameters[i]
        try require(p.shape == value.shape, "optimizer state '\(name)' has shape \(value.shape), the parameter \(p.shape)")
        velocity.replaceSubrange(offsets[i] ..< offsets[i] + p.count, with: value.data)
    }
}
