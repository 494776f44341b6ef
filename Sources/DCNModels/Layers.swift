// Layers with parameters: convolution, deformable convolution with its offset branch, norms and
// linear layers. Each forward returns its output and whatever its backward needs (a cache), so
// one layer can run several times (the detector, then a branch that reruns it on patches)
// before the backward passes.
import DCNOps
import DCNTensor

/// Multiply-adds and output shapes accumulated by a shape-only pass (no arithmetic).
public struct CostCounter {
    public var multiplyAdds = 0
    public init() {}
}

// MARK: - Convolution

/// A 2-D convolution with weight `[Cout, Cin/groups, kh, kw]` and an optional bias.
public final class ConvLayer {
    public let weight: Parameter
    public let bias: Parameter?
    public let options: ConvOptions

    public init(name: String, inChannels: Int, outChannels: Int, kernelH: Int, kernelW: Int, options: ConvOptions,
                bias: Bool, weightInit: WeightInit, biasInit: WeightInit = .zeros, learningRateScale: Float = 1,
                rng: inout SeededGenerator) {
        let shape = [outChannels, inChannels / options.groups, kernelH, kernelW]
        let fanIn = shape[1] * kernelH * kernelW, fanOut = outChannels * kernelH * kernelW
        weight = Parameter(name: name + ".weight", value: weightInit.make(shape, fanIn: fanIn, fanOut: fanOut, rng: &rng),
                           learningRateScale: learningRateScale)
        self.bias = bias ? Parameter(name: name + ".bias", value: biasInit.make([outChannels], fanIn: fanIn, fanOut: fanOut, rng: &rng),
                                     learningRateScale: learningRateScale) : nil
        self.options = options
    }

    public convenience init(name: String, _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1,
                            padding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = false,
                            weightInit: WeightInit = .kaimingNormalFanOut, learningRateScale: Float = 1,
                            rng: inout SeededGenerator) {
        self.init(name: name, inChannels: inChannels, outChannels: outChannels, kernelH: kernel, kernelW: kernel,
                  options: ConvOptions(stride: stride, padding: padding, dilation: dilation, groups: groups),
                  bias: bias, weightInit: weightInit, learningRateScale: learningRateScale, rng: &rng)
    }

    public var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }
    public var outChannels: Int { weight.shape[0] }

    /// `then`: inference's frozen norm and ReLU, applied by the convolution (`conv2dForward(then:)`).
    public func forward(_ x: Tensor, _ ws: Workspace, then affine: ChannelAffine? = nil) throws -> Tensor {
        try conv2dForward(input: x, weight: weight.value, bias: bias?.value, options: options, workspace: ws, then: affine)
    }

    /// Adds the parameter gradients and returns dInput when `wantInput`.
    public func backward(_ dy: Tensor, input x: Tensor, wantInput: Bool, _ ws: Workspace) throws -> Tensor? {
        var dx: Tensor? = wantInput ? Tensor(zeros: x.shape) : nil
        try conv2dBackward(dInput: &dx, dWeight: weight.gradient, dBias: bias?.gradient, dOutput: dy, input: x,
                           weight: weight.value, options: options, workspace: ws)
        return dx
    }

    /// Output shape for an input shape; adds the multiply-adds.
    public func cost(_ input: [Int], _ counter: inout CostCounter) throws -> [Int] {
        let geo = try ConvGeometry(input: input, weight: weight.shape, options: options)
        counter.multiplyAdds += geo.multiplyAdds
        return geo.outputShape
    }
}

extension ConvLayer {
    /// The label `LayerProfiler` files the layer under: "conv 1x1", "conv 1x1 /2" (strided), "conv 3x3".
    var kind: String { "conv \(weight.shape[2])x\(weight.shape[3])" + (options.strideH > 1 ? " /\(options.strideH)" : "") }
}

// MARK: - Transposed convolution

/// A 2-D transposed convolution with weight `[Cin, Cout, kh, kw]` (PyTorch's layout) and a bias
/// (the mask head's 2x2 stride-2 upsampling).
public final class ConvTransposeLayer {
    public let weight: Parameter
    public let bias: Parameter
    public let options: ConvTransposeOptions

    /// He normal initialisation as detectron2's c2_msra_fill computes it for this weight: PyTorch
    /// takes dimension 0 (Cin here) as the "output" dimension, so the fan-out is Cin * kh * kw.
    public init(name: String, _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int, rng: inout SeededGenerator) {
        let shape = [inChannels, outChannels, kernel, kernel]
        weight = Parameter(name: name + ".weight",
                           value: WeightInit.kaimingNormalFanOut.make(shape, fanIn: outChannels * kernel * kernel,
                                                                      fanOut: inChannels * kernel * kernel, rng: &rng))
        bias = Parameter(name: name + ".bias", value: Tensor(zeros: [outChannels]))
        options = ConvTransposeOptions(stride: stride)
    }

    public var parameters: [Parameter] { [weight, bias] }

    public func forward(_ x: Tensor, _ ws: Workspace) throws -> Tensor {
        try convTranspose2dForward(input: x, weight: weight.value, bias: bias.value, options: options, workspace: ws)
    }

    /// Adds the parameter gradients and returns dInput when `wantInput`.
    public func backward(_ dy: Tensor, input x: Tensor, wantInput: Bool, _ ws: Workspace) throws -> Tensor? {
        var dx: Tensor? = wantInput ? Tensor(zeros: x.shape) : nil
        try convTranspose2dBackward(dInput: &dx, dWeight: weight.gradient, dBias: bias.gradient, dOutput: dy, input: x,
                                    weight: weight.value, options: options, workspace: ws)
        return dx
    }

    /// Output shape for an input shape; adds the multiply-adds.
    public func cost(_ input: [Int], _ counter: inout CostCounter) throws -> [Int] {
        let geo = try ConvTransposeGeometry(input: input, weight: weight.shape, options: options)
        counter.multiplyAdds += geo.multiplyAdds
        return geo.outputShape
    }
}

// MARK: - Deformable convolution

/// Which convolution a 3x3 layer uses (the paper's "regular", "dconv", "mdconv").
public enum ConvKind: String, Sendable, Codable, CaseIterable {
    case regular
    /// DCNv1: learned offsets, no modulation.
    case dconv
    /// DCNv2: learned offsets and sigmoid modulation.
    case mdconv
}

/// DCNv2's modulation of each sample: m = sigmoid(logit), which starts at 0.5 (the paper's), or
/// 2 sigmoid(logit), which starts at 1, so that a deformable layer with zero offsets starts equal
/// to the regular layer whose weights it takes (a regular network made deformable computes the same
/// function until its offset branches learn).
public enum Modulation: String, Sendable, Codable, CaseIterable {
    case sigmoid
    case twoSigmoid = "two_sigmoid"

    /// The factor in front of the sigmoid.
    public var scale: Float { self == .sigmoid ? 1 : 2 }
}

/// One deformable layer's sampling and the gradients of the backward's output with respect to it:
/// the sampling location of tap k (row-major in the kernel) at output (i, j) is
/// (i * stride - padding + (k / K) * dilation + offset_y, j * stride - padding + (k % K) * dilation + offset_x)
/// in the layer's input pixels, with offsets `[N, 2 * G * K * K, Hout, Wout]` as (dy, dx) pairs.
public struct SamplingGradients {
    public let layer: String
    public let inputHeight: Int, inputWidth: Int
    public let kernel: Int
    public let options: ConvOptions
    public let offset: Tensor
    public let mask: Tensor?
    public let dOffset: Tensor
    public let dMask: Tensor?
}

/// A deformable convolution whose offsets (and modulation) come from a regular convolution of
/// the same input with the same kernel, stride, padding and dilation; that branch starts at zero,
/// so the layer starts as the regular convolution (DCNv1) or half of it (DCNv2: sigmoid(0) = 0.5).
public final class DeformableConvLayer: DeformationSource {
    /// The main convolution's name (e.g. `layer3.0.conv2`).
    public let name: String
    public let weight: Parameter
    public let offsetConv: ConvLayer
    public let options: ConvOptions
    public let modulated: Bool
    /// m = scale * sigmoid(logit) (DCNv2 only).
    public let modulation: Modulation
    public let offsetGroups: Int
    /// Sees each backward's sampling gradients (the spatial-support analysis of `dcn-vis`); nil in
    /// training.
    public var samplingObserver: ((SamplingGradients) -> Void)?
    /// Image pixels per input pixel of this layer (set by the network that holds it).
    public var inputStride = 1
    /// While set, each forward pass adds its sampling points here (the training log's deformation
    /// statistics); nil otherwise, at no cost.
    public var tally: DeformationTally?
    /// Sees each forward pass's offsets `[N, 2GK, H, W]` (the effective-dilation survey of
    /// `dcn-vis dilation`); nil in training.
    public var offsetObserver: ((Tensor) -> Void)?

    /// The forward's sampling inputs, kept for backward.
    public struct Cache {
        public let offset: Tensor
        /// sigmoid of the modulation logits (nil in DCNv1).
        public let mask: Tensor?
    }

    /// `name` is the main convolution's (e.g. `layer3.0.conv2`); the offset branch is `name_offset`.
    public init(name: String, _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int, padding: Int,
                dilation: Int, groups: Int = 1, modulated: Bool, modulation: Modulation = .sigmoid, offsetGroups: Int = 1,
                offsetLearningRateScale: Float = 0.1, rng: inout SeededGenerator) {
        self.name = name
        options = ConvOptions(stride: stride, padding: padding, dilation: dilation, groups: groups)
        let shape = [outChannels, inChannels / groups, kernel, kernel]
        weight = Parameter(name: name + ".weight",
                           value: WeightInit.kaimingNormalFanOut.make(shape, fanIn: shape[1] * kernel * kernel,
                                                                       fanOut: outChannels * kernel * kernel, rng: &rng))
        self.modulated = modulated
        self.modulation = modulation
        self.offsetGroups = offsetGroups
        let offsetChannels = (modulated ? 3 : 2) * offsetGroups * kernel * kernel
        offsetConv = ConvLayer(name: name + "_offset", inChannels: inChannels, outChannels: offsetChannels,
                               kernelH: kernel, kernelW: kernel,
                               options: ConvOptions(stride: stride, padding: padding, dilation: dilation),
                               bias: true, weightInit: .zeros, biasInit: .zeros,
                               learningRateScale: offsetLearningRateScale, rng: &rng)
    }

    public var parameters: [Parameter] { [weight] + offsetConv.parameters }
    public var outChannels: Int { weight.shape[0] }
    public var deformationName: String { name }
    public var offsetBranchParameters: [Parameter] { offsetConv.parameters }

    /// `inference`: the offset branch by taps when it may (`conv2dForwardByTaps`: the same products
    /// summed in another order, without its im2col); training keeps im2col + sgemm.
    public func forward(_ x: Tensor, _ ws: Workspace, inference: Bool = false) throws -> (Tensor, Cache) {
        let raw = try LayerProfiler.measure(offsetBranchProfileKey("fwd")) {
            inference && convGoesByTaps(weight: offsetConv.weight.shape, options: offsetConv.options)
                ? try conv2dForwardByTaps(input: x, weight: offsetConv.weight.value, bias: offsetConv.bias?.value,
                                          options: offsetConv.options, workspace: ws)
                : try offsetConv.forward(x, ws)
        }
        let (offset, mask) = try splitOffsetAndMask(raw)
        tally?.add(offset: offset, mask: mask, kernel: weight.shape[2], dilation: options.dilationH)
        offsetObserver?(offset)
        let y = try deformConv2dForward(input: x, offset: offset, mask: mask, weight: weight.value, bias: nil,
                                        options: options, workspace: ws)
        return (y, Cache(offset: offset, mask: mask))
    }

    /// Adds the gradients of the main weight and the offset branch; returns dInput when `wantInput`
    /// (the sum of the sampling path and the offset branch's path).
    public func backward(_ dy: Tensor, input x: Tensor, cache: Cache, wantInput: Bool, _ ws: Workspace) throws -> Tensor? {
        let wantOffsets = offsetConv.weight.trainable || wantInput
        var dx: Tensor? = wantInput ? Tensor(zeros: x.shape) : nil
        var dOffset: Tensor? = wantOffsets ? Tensor(zeros: cache.offset.shape) : nil
        var dMask: Tensor? = wantOffsets ? cache.mask.map { Tensor(zeros: $0.shape) } : nil
        try deformConv2dBackward(dInput: &dx, dOffset: &dOffset, dMask: &dMask, dWeight: weight.gradient, dBias: nil,
                                 dOutput: dy, input: x, offset: cache.offset, mask: cache.mask,
                                 weight: weight.value, options: options, workspace: ws)
        guard let dOffset else { return dx }
        samplingObserver?(SamplingGradients(layer: name, inputHeight: x.dim(2), inputWidth: x.dim(3), kernel: weight.shape[2], options: options,
                                            offset: cache.offset, mask: cache.mask, dOffset: dOffset, dMask: dMask))
        let dRaw = try joinOffsetAndMaskGradients(dOffset: dOffset, dMask: dMask, mask: cache.mask)
        let dxOffset = try LayerProfiler.measure(offsetBranchProfileKey("bwd")) {
            try offsetConv.backward(dRaw, input: x, wantInput: wantInput, ws)
        }
        if let dxOffset { dx!.add(dxOffset) }
        return dx
    }

    /// The label `LayerProfiler` files the layer under: "mdconv 3x3", "dconv 3x3".
    var kind: String { "\(modulated ? "mdconv" : "dconv") \(weight.shape[2])x\(weight.shape[3])" }

    /// The offset branch's `LayerProfiler` key ("res4 mdconv 3x3: its offset branch fwd"): a part
    /// of the layer's own time, not added to it.
    func offsetBranchProfileKey(_ pass: String) -> String {
        "\(stageLabel(ofLayerNamed: name)) \(kind): its offset branch \(pass)"
    }

    public func cost(_ input: [Int], _ counter: inout CostCounter) throws -> [Int] {
        let branch = try offsetConv.cost(input, &counter)
        let geo = try ConvGeometry(input: input, weight: weight.shape, options: options)
        counter.multiplyAdds += geo.multiplyAdds
        precondition(branch[2] == geo.outHeight && branch[3] == geo.outWidth)
        return geo.outputShape
    }

    /// The offset branch's `[N, (2|3)*G*K, H, W]` output split into offsets (first 2GK channels)
    /// and modulation (last GK channels): scale * sigmoid(logit).
    func splitOffsetAndMask(_ raw: Tensor) throws -> (Tensor, Tensor?) {
        guard modulated else { return (raw, nil) }
        let n = raw.dim(0), c = raw.dim(1), plane = raw.dim(2) * raw.dim(3)
        let offsetChannels = c / 3 * 2, maskChannels = c / 3
        var offset = Tensor(zeros: [n, offsetChannels, raw.dim(2), raw.dim(3)])
        var mask = Tensor(zeros: [n, maskChannels, raw.dim(2), raw.dim(3)])
        let scale = modulation.scale
        for b in 0..<n {
            let src = b * c * plane
            for i in 0..<offsetChannels * plane { offset.data[b * offsetChannels * plane + i] = raw.data[src + i] }
            for i in 0..<maskChannels * plane {
                mask.data[b * maskChannels * plane + i] = scale * sigmoid(raw.data[src + offsetChannels * plane + i])
            }
        }
        return (offset, mask)
    }

    /// d raw = [dOffset, dMask * scale * s * (1 - s)] along channels (s = sigmoid(logit) = mask / scale).
    func joinOffsetAndMaskGradients(dOffset: Tensor, dMask: Tensor?, mask: Tensor?) throws -> Tensor {
        guard let dMask, let mask else { return dOffset }
        let n = dOffset.dim(0), oc = dOffset.dim(1), mc = dMask.dim(1), plane = dOffset.dim(2) * dOffset.dim(3)
        var raw = Tensor(zeros: [n, oc + mc, dOffset.dim(2), dOffset.dim(3)])
        for b in 0..<n {
            let dst = b * (oc + mc) * plane
            for i in 0..<oc * plane { raw.data[dst + i] = dOffset.data[b * oc * plane + i] }
            for i in 0..<mc * plane {
                let scale = modulation.scale, s = mask.data[b * mc * plane + i] / scale
                raw.data[dst + oc * plane + i] = dMask.data[b * mc * plane + i] * scale * s * (1 - s)
            }
        }
        return raw
    }
}

/// A 3x3 convolution of a residual block: regular or deformable.
public enum SpatialConv {
    case regular(ConvLayer)
    case deformable(DeformableConvLayer)

    public enum Cache {
        case regular
        case deformable(DeformableConvLayer.Cache)
    }

    public var parameters: [Parameter] {
        switch self {
        case .regular(let c): return c.parameters
        case .deformable(let d): return d.parameters
        }
    }

    /// "conv 3x3", "mdconv 3x3", ...: the label `LayerProfiler` files the layer under.
    var kind: String {
        switch self {
        case .regular(let c): return c.kind
        case .deformable(let d): return d.kind
        }
    }

    public var outChannels: Int {
        switch self {
        case .regular(let c): return c.outChannels
        case .deformable(let d): return d.outChannels
        }
    }

    /// The stride (the backbone's convolutions stride both ways alike).
    public var stride: Int {
        switch self {
        case .regular(let c): return c.options.strideH
        case .deformable(let d): return d.options.strideH
        }
    }

    /// `inference`: see `DeformableConvLayer.forward`. `then`: a frozen norm and ReLU for the output
    /// (inside the product for a regular conv, a pass after it for a deformable one).
    public func forward(_ x: Tensor, _ ws: Workspace, inference: Bool = false, then affine: ChannelAffine? = nil) throws -> (Tensor, Cache) {
        switch self {
        case .regular(let c): return (try c.forward(x, ws, then: affine), .regular)
        case .deformable(let d):
            var (y, cache) = try d.forward(x, ws, inference: inference)
            if let affine { try channelAffineInPlace(&y, scale: affine.scale, shift: affine.shift, relu: affine.relu) }
            return (y, .deformable(cache))
        }
    }

    public func backward(_ dy: Tensor, input x: Tensor, cache: Cache, wantInput: Bool, _ ws: Workspace) throws -> Tensor? {
        switch (self, cache) {
        case (.regular(let c), _): return try c.backward(dy, input: x, wantInput: wantInput, ws)
        case (.deformable(let d), .deformable(let dc)): return try d.backward(dy, input: x, cache: dc, wantInput: wantInput, ws)
        case (.deformable, .regular): throw ShapeError("deformable conv backward given a regular conv's cache")
        }
    }

    public func cost(_ input: [Int], _ counter: inout CostCounter) throws -> [Int] {
        switch self {
        case .regular(let c): return try c.cost(input, &counter)
        case .deformable(let d): return try d.cost(input, &counter)
        }
    }
}

// MARK: - Normalisation

/// The normalisation after each convolution.
public enum NormKind: Sendable, Equatable, Codable {
    /// Per-channel affine from batch norm statistics, never trained (the default with pretrained weights).
    case frozenBatchNorm
    /// Batch norm with batch statistics in training and running averages in inference.
    case batchNorm
    /// Group norm with this many groups.
    case groupNorm(groups: Int)
}

/// A norm layer with torchvision's parameter names (`weight`, `bias`, `running_mean`, `running_var`).
public final class NormLayer {
    public let kind: NormKind
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Parameter?
    public let runningVar: Parameter?
    public let eps: Float = 1e-5

    public enum Cache {
        case affine
        case batch(BatchNormSaved)
        case group(GroupNormSaved)
    }

    public init(name: String, channels: Int, kind: NormKind, zeroInitWeight: Bool = false) {
        self.kind = kind
        let frozen = kind == .frozenBatchNorm
        let gamma = Tensor(repeating: zeroInitWeight ? 0 : 1, shape: [channels])
        weight = Parameter(name: name + ".weight", value: gamma, trainable: !frozen, decays: false)
        bias = Parameter(name: name + ".bias", value: Tensor(zeros: [channels]), trainable: !frozen, decays: false)
        switch kind {
        case .frozenBatchNorm, .batchNorm:
            runningMean = Parameter(name: name + ".running_mean", value: Tensor(zeros: [channels]), isBuffer: true)
            runningVar = Parameter(name: name + ".running_var", value: Tensor(repeating: 1, shape: [channels]), isBuffer: true)
        case .groupNorm:
            runningMean = nil
            runningVar = nil
        }
    }

    public var parameters: [Parameter] { [weight, bias] + [runningMean, runningVar].compactMap { $0 } }

    /// Whether this norm has trainable weights and the caller's frozen flag allows it.
    public func setTrainable(_ on: Bool) {
        let trainable = on && kind != .frozenBatchNorm
        weight.trainable = trainable
        bias.trainable = trainable
    }

    public func forward(_ x: Tensor, training: Bool) throws -> (Tensor, Cache) {
        switch kind {
        case .frozenBatchNorm:
            return (try frozenBatchNormForward(input: x, weight: weight.value, bias: bias.value,
                                               runningMean: runningMean!.value, runningVar: runningVar!.value, eps: eps), .affine)
        case .batchNorm:
            if training && weight.trainable {
                let r = try batchNormTrainForward(input: x, weight: weight.value, bias: bias.value,
                                                  runningMean: &runningMean!.value, runningVar: &runningVar!.value,
                                                  options: BatchNormOptions(eps: eps))
                return (r.output, .batch(r.saved))
            }
            return (try batchNormEvalForward(input: x, weight: weight.value, bias: bias.value, runningMean: runningMean!.value,
                                             runningVar: runningVar!.value, options: BatchNormOptions(eps: eps)), .affine)
        case .groupNorm(let groups):
            let r = try groupNormForward(input: x, weight: weight.value, bias: bias.value,
                                         options: GroupNormOptions(groups: groups, eps: eps))
            return (r.output, .group(r.saved))
        }
    }

    /// The per-channel `(scale, shift)` this norm's forward applies (`frozenBatchNormScaleShift`)
    /// when it is an affine map: frozen batch norm, or batch norm on its running statistics; nil for
    /// group norm and for batch norm on batch statistics.
    public func affineScaleShift(training: Bool) throws -> (scale: [Float], shift: [Float])? {
        switch kind {
        case .frozenBatchNorm, .batchNorm:
            if kind == .batchNorm && training && weight.trainable { return nil }
            return try frozenBatchNormScaleShift(weight: weight.value, bias: bias.value, runningMean: runningMean!.value,
                                                 runningVar: runningVar!.value, eps: eps)
        case .groupNorm:
            return nil
        }
    }

    /// Adds weight/bias gradients when trainable; returns dInput when `wantInput`.
    public func backward(_ dy: Tensor, input x: Tensor, cache: Cache, wantInput: Bool) throws -> Tensor? {
        var dx: Tensor? = wantInput ? Tensor(zeros: x.shape) : nil
        let dw = weight.gradient, db = bias.gradient
        switch (kind, cache) {
        case (.frozenBatchNorm, _):
            if wantInput { try frozenBatchNormBackward(dInput: &dx!, dOutput: dy, weight: weight.value, runningVar: runningVar!.value, eps: eps) }
        case (.batchNorm, .batch(let saved)):
            try batchNormBackward(dInput: &dx, dWeight: dw, dBias: db, dOutput: dy, input: x, weight: weight.value, saved: saved)
        case (.batchNorm, _):
            try batchNormEvalBackward(dInput: &dx, dWeight: dw, dBias: db, dOutput: dy, input: x, weight: weight.value,
                                      runningMean: runningMean!.value, runningVar: runningVar!.value,
                                      options: BatchNormOptions(eps: eps))
        case (.groupNorm(let groups), .group(let saved)):
            try groupNormBackward(dInput: &dx, dWeight: dw, dBias: db, dOutput: dy, input: x, weight: weight.value,
                                  saved: saved, options: GroupNormOptions(groups: groups, eps: eps))
        case (.groupNorm, _):
            throw ShapeError("group norm backward needs the forward's saved statistics")
        }
        return dx
    }
}

// MARK: - Linear

/// y = x W^T + b with W `[out, in]` (PyTorch layout).
public final class LinearLayer {
    public let weight: Parameter
    public let bias: Parameter

    public init(name: String, _ inFeatures: Int, _ outFeatures: Int, weightInit: WeightInit, biasInit: WeightInit = .zeros,
                learningRateScale: Float = 1, rng: inout SeededGenerator) {
        weight = Parameter(name: name + ".weight",
                           value: weightInit.make([outFeatures, inFeatures], fanIn: inFeatures, fanOut: outFeatures, rng: &rng),
                           learningRateScale: learningRateScale)
        bias = Parameter(name: name + ".bias",
                         value: biasInit.make([outFeatures], fanIn: inFeatures, fanOut: outFeatures, rng: &rng),
                         learningRateScale: learningRateScale)
    }

    public var parameters: [Parameter] { [weight, bias] }
    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public func forward(_ x: Tensor) throws -> Tensor {
        try linearForward(input: x, weight: weight.value, bias: bias.value)
    }

    public func backward(_ dy: Tensor, input x: Tensor, wantInput: Bool) throws -> Tensor? {
        var dx: Tensor? = wantInput ? Tensor(zeros: x.shape) : nil
        try linearBackward(dInput: &dx, dWeight: weight.gradient, dBias: bias.gradient, dOutput: dy, input: x, weight: weight.value)
        return dx
    }

    public func cost(rows: Int, _ counter: inout CostCounter) {
        counter.multiplyAdds += rows * inFeatures * outFeatures
    }
}
