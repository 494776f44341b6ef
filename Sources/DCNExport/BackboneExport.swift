// The ResNet / ResNeXt backbone as ONNX nodes, walking the same structure its forward runs
// (DCNModels/ResNet.swift): stem conv, norm, ReLU, max pool; then per block the conv + norm units
// (ReLU after all but the last), the shortcut, Add, ReLU.
//
// - Convolutions are `Conv`; deformable ones `DeformConv` (opset 19). Its offset input has our
//   layout exactly: channel g*2K + 2k is tap k's dy and g*2K + 2k + 1 its dx in offset group g, taps
//   row-major in the kernel (torchvision's deform_conv2d, and ONNX's reference implementation,
//   which reshapes the offset to [N, G, kh, kw, 2, Ho, Wo] with (y, x) last). The mask input is
//   [N, G*K, Ho, Wo], tap-major within a group, as ours.
// - The offset branch (one conv of 2GK or 3GK channels) becomes two Convs over the same input: the
//   offsets (its first 2GK output channels) and, for DCNv2, the modulation logits (the last GK),
//   then Sigmoid (times 2 for `two_sigmoid`).
// - Frozen and inference batch norms are folded into the conv before them:
//   W'[o] = W[o] * s[o], b'[o] = b[o] * s[o] + t[o], with s = weight / sqrt(running_var + eps) and
//   t = bias - running_mean * s computed as frozenBatchNormScaleShift computes them.
// - Group norm is Reshape [N, G, -1] -> InstanceNormalization (scale 1, bias 0, the same eps) ->
//   Reshape back -> Mul by the weight, Add the bias: ONNX's GroupNormalization of opset 18 takes a
//   scale and bias per group (not per channel, as ours and PyTorch's), and opset 21's per-channel
//   form is not in opset 19.
import DCNModels
import DCNOps
import DCNTensor

/// Adds a backbone to an ONNX graph.
public struct BackboneExporter {
    public var graph: ONNXGraph
    /// The tensor of each stage output, "res2" ... "res5", once `add` has run.
    public private(set) var stageTensors: [String: String] = [:]
    /// Per group count, the names of the ones / zeros vectors the group norms' InstanceNormalization reads.
    private var unitAffine: [Int: (ones: String, zeros: String)] = [:]

    public init(graph: ONNXGraph = ONNXGraph()) { self.graph = graph }

    /// Adds `resnet` reading the normalised image `input` ([N, 3, H, W]); returns the tensor name
    /// of each stage output, "res2" ... "res5".
    public mutating func add(_ resnet: ResNet, input: String) throws -> [String: String] {
        let stemName = resnet.prefix + "stem"
        var h = try convNorm(input, conv: resnet.stemConv, norm: resnet.stemNorm)
        h = try graph.node("Relu", [h], output: stemName + ".relu")
        h = try graph.node("MaxPool", [h], output: stemName + ".pool",
                           [.ints("kernel_shape", [3, 3]), .ints("strides", [2, 2]), .ints("pads", [1, 1, 1, 1])])
        var maps: [String: String] = [:]
        for (s, stage) in resnet.stages.enumerated() {
            for block in stage { h = try add(block, input: h) }
            maps[ResNet.stageNames[s]] = h
        }
        stageTensors = maps
        return maps
    }

    /// One residual block: relu(main(x) + shortcut(x)). The output is named after the block
    /// (e.g. `backbone.layer3.0`).
    mutating func add(_ block: ResidualBlock, input: String) throws -> String {
        let blockName = layerName(block.units[0].norm.weight).split(separator: ".").dropLast().joined(separator: ".")
        var h = input
        for (i, unit) in block.units.enumerated() {
            h = try spatialConvNorm(h, conv: unit.conv, norm: unit.norm)
            if i < block.units.count - 1 { h = try graph.node("Relu", [h], output: "\(blockName).relu\(i + 1)") }
        }
        let identity = try block.shortcut.map { try convNorm(input, conv: $0.conv, norm: $0.norm) } ?? input
        let sum = try graph.node("Add", [h, identity], output: blockName + ".add")
        return try graph.node("Relu", [sum], output: blockName)
    }

    /// A 3x3 conv of a block (regular or deformable) and its norm.
    mutating func spatialConvNorm(_ x: String, conv: SpatialConv, norm: NormLayer) throws -> String {
        switch conv {
        case .regular(let c): return try convNorm(x, conv: c, norm: norm)
        case .deformable(let d): return try deformableConvNorm(x, conv: d, norm: norm)
        }
    }

    /// A conv with its own weight and bias (no norm after it), named after its weight.
    public mutating func conv(_ x: String, _ conv: ConvLayer) throws -> String {
        let name = layerName(conv.weight)
        var inputs = [x, try graph.initializer(name + ".weight", conv.weight.value)]
        if let b = conv.bias { inputs.append(try graph.initializer(name + ".bias", b.value)) }
        return try graph.node("Conv", inputs, output: name, convAttributes(kernel: conv.weight.shape, conv.options))
    }

    /// Conv (with a batch norm folded in) and, for group norm, the norm's nodes.
    mutating func convNorm(_ x: String, conv: ConvLayer, norm: NormLayer) throws -> String {
        let name = layerName(conv.weight)
        let (w, b) = try folded(weight: conv.weight.value, bias: conv.bias?.value, norm: norm)
        var inputs = [x, try graph.initializer(name + ".weight", w)]
        if let b { inputs.append(try graph.initializer(name + ".bias", b)) }
        let y = try graph.node("Conv", inputs, output: name, convAttributes(kernel: conv.weight.shape, conv.options))
        return try groupNorm(y, norm: norm)
    }

    /// DeformConv with its offset (and modulation) convs, the norm folded in or after it.
    mutating func deformableConvNorm(_ x: String, conv: DeformableConvLayer, norm: NormLayer) throws -> String {
        let name = conv.name
        let kernel = conv.weight.shape
        let taps = kernel[2] * kernel[3], g = conv.offsetGroups
        let branch = conv.offsetConv
        let branchAttributes = convAttributes(kernel: branch.weight.shape, branch.options)
        guard let branchBias = branch.bias?.value else { throw ExportError("onnx export: \(name)'s offset branch has no bias") }
        let perOutput = branch.weight.shape[1] * kernel[2] * kernel[3]
        // Output channels [lo, hi) of the offset branch as a Conv of their own.
        func rows(_ lo: Int, _ hi: Int, _ suffix: String) throws -> String {
            let w = try Tensor(shape: [hi - lo] + Array(branch.weight.shape.dropFirst()),
                               data: Array(branch.weight.value.data[lo * perOutput..<hi * perOutput]))
            let b = try Tensor(shape: [hi - lo], data: Array(branchBias.data[lo..<hi]))
            let inputs = [x, try graph.initializer("\(name)_\(suffix).weight", w), try graph.initializer("\(name)_\(suffix).bias", b)]
            return try graph.node("Conv", inputs, output: "\(name)_\(suffix)", branchAttributes)
        }
        let offset = try rows(0, 2 * g * taps, "offset")
        var mask = ""
        if conv.modulated {
            let logits = try rows(2 * g * taps, 3 * g * taps, "mask_logits")
            mask = try graph.node("Sigmoid", [logits], output: name + "_mask_sigmoid")
            switch conv.modulation {
            case .sigmoid: break
            case .twoSigmoid:
                let two = try graph.initializer(name + "_mask.scale", shape: [], values: [2])
                mask = try graph.node("Mul", [mask, two], output: name + "_mask")
            }
        }
        let (w, b) = try folded(weight: conv.weight.value, bias: nil, norm: norm)
        let inputs = [x, try graph.initializer(name + ".weight", w), offset,
                      try b.map { try graph.initializer(name + ".bias", $0) } ?? "", mask]
        var attributes = convAttributes(kernel: kernel, conv.options)
        attributes.append(.int("offset_group", g))
        // Trailing empty optional inputs are dropped (DCNv1: no mask; no bias).
        var used = inputs
        while used.last == "" { used.removeLast() }
        let y = try graph.node("DeformConv", used, output: name, attributes)
        return try groupNorm(y, norm: norm)
    }

    /// The conv's weight and bias with a (frozen or inference) batch norm folded in; unchanged for
    /// group norm.
    func folded(weight: Tensor, bias: Tensor?, norm: NormLayer) throws -> (Tensor, Tensor?) {
        switch norm.kind {
        case .groupNorm: return (weight, bias)
        case .frozenBatchNorm, .batchNorm:
            guard let mean = norm.runningMean?.value, let variance = norm.runningVar?.value else {
                throw ExportError("onnx export: \(layerName(norm.weight)) has no running statistics")
            }
            let (scale, shift) = try frozenBatchNormScaleShift(weight: norm.weight.value, bias: norm.bias.value,
                                                               runningMean: mean, runningVar: variance, eps: norm.eps)
            let outChannels = weight.dim(0), per = weight.count / outChannels
            guard scale.count == outChannels else {
                throw ExportError("onnx export: \(layerName(norm.weight)) has \(scale.count) channels, its conv \(outChannels)")
            }
            var w = weight
            for o in 0..<outChannels { for i in 0..<per { w.data[o * per + i] *= scale[o] } }
            var b = Tensor(zeros: [outChannels])
            for o in 0..<outChannels { b.data[o] = (bias?.data[o] ?? 0) * scale[o] + shift[o] }
            return (w, b)
        }
    }

    /// Group norm's nodes after `x`; `x` itself for the batch norms (already folded).
    mutating func groupNorm(_ x: String, norm: NormLayer) throws -> String {
        guard case .groupNorm(let groups) = norm.kind else { return x }
        let name = layerName(norm.weight)
        let channels = norm.weight.count
        let affine = try unitAffineVectors(groups)
        let grouped = try graph.node("Reshape", [x, try graph.int64Constant("shape.grouped.\(groups)", [0, groups, -1])],
                                     output: name + ".grouped")
        let normalised = try graph.node("InstanceNormalization", [grouped, affine.ones, affine.zeros], output: name + ".normalised",
                                        [.float("epsilon", norm.eps)])
        let shape = try graph.node("Shape", [x], output: name + ".input_shape")
        let back = try graph.node("Reshape", [normalised, shape], output: name + ".ungrouped")
        let w = try graph.initializer(name + ".weight", shape: [channels, 1, 1], values: norm.weight.value.data)
        let b = try graph.initializer(name + ".bias", shape: [channels, 1, 1], values: norm.bias.value.data)
        let scaled = try graph.node("Mul", [back, w], output: name + ".scaled")
        return try graph.node("Add", [scaled, b], output: name)
    }

    /// The scale (ones) and bias (zeros) of `groups` channels that InstanceNormalization reads
    /// (added once per group count).
    mutating func unitAffineVectors(_ groups: Int) throws -> (ones: String, zeros: String) {
        if let v = unitAffine[groups] { return v }
        let v = (try graph.initializer("group_norm.ones.\(groups)", shape: [groups], values: [Float](repeating: 1, count: groups)),
                 try graph.initializer("group_norm.zeros.\(groups)", shape: [groups], values: [Float](repeating: 0, count: groups)))
        unitAffine[groups] = v
        return v
    }
}

/// Conv / DeformConv attributes of a weight `[Cout, Cin/groups, kh, kw]` and our options.
func convAttributes(kernel: [Int], _ o: ConvOptions) -> [ONNXAttribute] {
    [.ints("kernel_shape", [kernel[2], kernel[3]]), .ints("strides", [o.strideH, o.strideW]),
     .ints("pads", [o.padH, o.padW, o.padH, o.padW]), .ints("dilations", [o.dilationH, o.dilationW]), .int("group", o.groups)]
}

/// A layer's name from one of its parameters: `backbone.layer1.0.conv1` from `backbone.layer1.0.conv1.weight`.
func layerName(_ p: Parameter) -> String {
    String(p.name.split(separator: ".").dropLast().joined(separator: "."))
}
