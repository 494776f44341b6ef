// Named trainable tensors and buffers, with their gradients and optimiser settings.
import DCNTensor

/// A named tensor of the model. Trainable parameters carry a gradient; buffers (batch norm
/// running statistics, frozen weights) do not.
public final class Parameter {
    /// Full name in torchvision's state_dict convention, e.g. `backbone.layer3.0.conv2.weight`.
    public let name: String
    public var value: Tensor
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
    }

    public var shape: [Int] { value.shape }
    public var count: Int { value.count }

    /// Where backward passes add dLoss/dvalue: nil when not trainable. A slot of the model's
    /// gradient block once `ParameterList.zeroGrad()` has laid it out; a parameter used on its own
    /// gets a block of its own on first use.
    public var gradient: GradientSlot? {
        guard trainable else { return nil }
        if let slot = gradientStorage?.slot, slot.shape == value.shape { return slot }
        let own = GradientBlock(zeros: value.shape)
        gradientStorage = (own, own.slot)
        return own.slot
    }

    /// The block that holds this parameter's gradient and the slot in it.
    private var gradientStorage: (block: GradientBlock, slot: GradientSlot)?

    /// Places the gradient in `slot` of `block` (its elements are not changed).
    func placeGradient(in block: GradientBlock, slot: GradientSlot) { gradientStorage = (block, slot) }

    /// dLoss/dvalue as a tensor (a copy); empty when no gradient was ever computed.
    public var grad: Tensor { gradientStorage?.slot.tensor ?? Tensor(zeros: [0]) }

    /// Sets the gradient to zero (allocating it on first use).
    public func zeroGrad() { gradient.map { $0.buffer.update(repeating: 0) } }

    /// Replaces the gradient (used by the optimiser tests and gradient clipping).
    public func setGrad(_ g: Tensor) {
        precondition(g.shape == value.shape)
        gradient?.assign(g)
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
        gradients = GradientLayout()  // a changed list gets its own layout, not its source's
    }

    public mutating func append(contentsOf ps: [Parameter]) { ps.forEach { append($0) } }

    public subscript(name: String) -> Parameter? { index[name].map { all[$0] } }

    public var trainable: [Parameter] { all.filter(\.trainable) }

    /// Number of scalars in trainable and frozen weights (buffers excluded), as papers count them.
    public var weightCount: Int { all.filter { !$0.isBuffer }.reduce(0) { $0 + $1.count } }

    /// Sets every trainable gradient to zero. The first call (and the first after the set of
    /// trainable parameters changed) lays all their gradients out in one block, in list order.
    public func zeroGrad() {
        let trainable = self.trainable
        if let block = gradients.block, gradients.members.elementsEqual(trainable, by: ===) {
            block.zero()
            return
        }
        let block = GradientBlock(shapes: trainable.map(\.shape))
        for (p, slot) in zip(trainable, block.slots) { p.placeGradient(in: block, slot: slot) }
        gradients.block = block
        gradients.members = trainable
    }

    /// The gradients of all trainable parameters in one buffer (nil before the first `zeroGrad()`):
    /// what the optimiser and a reduction across processes work on.
    public var gradientBlock: GradientBlock? { gradients.block }

    /// The gradient block and the parameters it was laid out for (shared by copies of the list).
    private final class GradientLayout {
        var block: GradientBlock?
        var members: [Parameter] = []
    }
    private var gradients = GradientLayout()
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
