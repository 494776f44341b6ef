// Named trainable tensors and buffers, with their gradients and optimiser settings.
import DCNTensor

/// A named tensor of the model. Trainable parameters carry a gradient; buffers (batch norm
/// running statistics, frozen weights) do not.
public final class Parameter {
    /// Full name in torchvision's state_dict convention, e.g. `backbone.layer3.0.conv2.weight`.
    public let name: String
    public var value: Tensor
    /// dLoss/dvalue, accumulated by backward passes; same shape as `value` once allocated.
    public private(set) var grad: Tensor
    /// False for buffers and frozen weights: no gradient is computed or applied.
    public var trainable: Bool
    /// Multiplies the base learning rate (0.1 for offset branches, 0.01 for dpool's offset fc).
    public var learningRateScale: Float
    /// False for norm weights and biases, which take the optimiser's norm weight decay (solver.weight_decay_norm).
    public var decays: Bool
    /// A running statistic that training updates without a gradient (batch norm).
    public let isBuffer: Bool

    public init(name: String, value: Tensor, trainable: Bool = true, learningRateScale: Float = 1,
                decays: Bool = true, isBuffer: Bool = false) {
        self.name = name
        self.value = value
        self.trainable = trainable && !isBuffer
        self.learningRateScale = learningRateScale
        self.decays = decays
        self.isBuffer = isBuffer
        self.grad = Tensor(zeros: [0])
    }

    public var shape: [Int] { value.shape }
    public var count: Int { value.count }

    /// Sets the gradient to zero (allocating it on first use).
    public func zeroGrad() {
        if grad.shape != value.shape { grad = Tensor(zeros: value.shape) } else { grad.zero() }
    }

    /// Runs `body` with the gradient moved out (nil when not trainable), so a backward function
    /// can add into it without copying; the gradient is moved back afterwards.
    public func withGradient<R>(_ body: (inout Tensor?) throws -> R) rethrows -> R {
        guard trainable else {
            var none: Tensor? = nil
            return try body(&none)
        }
        if grad.shape != value.shape { grad = Tensor(zeros: value.shape) }
        var moved: Tensor? = grad
        grad = Tensor(zeros: [0])  // drop our reference so `moved` is uniquely owned
        defer { grad = moved ?? Tensor(zeros: value.shape) }
        return try body(&moved)
    }

    /// Like `withGradient` for backward functions that take a non-optional gradient.
    /// `body` is not called when the parameter is not trainable.
    public func addGradient(_ body: (inout Tensor) throws -> Void) rethrows {
        try withGradient { g in
            if g != nil { try body(&g!) }
        }
    }

    /// Replaces the gradient (used by the optimiser tests and gradient clipping).
    public func setGrad(_ g: Tensor) {
        precondition(g.shape == value.shape)
        grad = g
    }
}

/// All parameters of a model in a fixed order (construction order), addressable by name.
public struct ParameterList {
    public private(set) var all: [Parameter] = []
    private var index: [String: Int] = [:]

    public init() {}

    public mutating func append(_ p: Parameter) {
        precondition(index[p.name] == nil, "duplicate parameter name \(p.name)")
        index[p.name] = all.count
        all.append(p)
    }

    public mutating func append(contentsOf ps: [Parameter]) { ps.forEach { append($0) } }

    public subscript(name: String) -> Parameter? { index[name].map { all[$0] } }

    public var trainable: [Parameter] { all.filter(\.trainable) }

    /// Number of scalars in trainable and frozen weights (buffers excluded), as papers count them.
    public var weightCount: Int { all.filter { !$0.isBuffer }.reduce(0) { $0 + $1.count } }

    public func zeroGrad() { all.filter(\.trainable).forEach { $0.zeroGrad() } }
}

/// Weight initialisations used by the models.
public enum WeightInit {
    case zeros
    case constant(Float)
    /// He (Kaiming) normal with fan-out, as torchvision's ResNet: std = sqrt(2 / (cout * kh * kw)).
    case kaimingNormalFanOut
    /// PyTorch's default for conv/linear: U(-1/sqrt(fanIn), 1/sqrt(fanIn)) (bias and weight alike).
    case uniformFanIn
    case normal(std: Float)

    /// A tensor of `shape` (outputs first) initialised this way.
    public func make(_ shape: [Int], fanIn: Int, fanOut: Int, rng: inout SeededGenerator) -> Tensor {
        switch self {
        case .zeros: return Tensor(zeros: shape)
        case .constant(let v): return Tensor(repeating: v, shape: shape)
        case .kaimingNormalFanOut: return Tensor.normal(shape, std: (2 / Float(max(1, fanOut))).squareRoot(), using: &rng)
        case .uniformFanIn:
            let bound = 1 / Float(max(1, fanIn)).squareRoot()
            return Tensor.uniform(shape, -bound, bound, using: &rng)
        case .normal(let std): return Tensor.normal(shape, std: std, using: &rng)
        }
    }
}
