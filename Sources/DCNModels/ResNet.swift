// ResNet / ResNeXt backbones with torchvision's structure and parameter names (stride in the
// 3x3 conv), deformable 3x3 convs per stage, a dilated stride-1 res5 for the detector, frozen
// stages, and an optional ImageNet classification head.
import DCNOps
import DCNTensor

/// Residual block types of torchvision's ResNet.
public enum BlockType: String, Sendable, Codable {
    /// Two 3x3 convs (ResNet-18/34), expansion 1.
    case basic
    /// 1x1, 3x3, 1x1 (ResNet-50 and deeper, ResNeXt), expansion 4.
    case bottleneck

    public var expansion: Int { self == .basic ? 1 : 4 }
}

/// torchvision's ResNet-18/34/50/101/152 and ResNeXt-101 32x4d (the paper's tables).
public enum ResNetDepth: String, Sendable, Codable, CaseIterable {
    case r18 = "18", r34 = "34", r50 = "50", r101 = "101", r152 = "152"
    case resnext101_32x4d

    /// The depth's residual block.
    public var block: BlockType {
        switch self {
        case .r18, .r34: .basic
        case .r50, .r101, .r152, .resnext101_32x4d: .bottleneck
        }
    }

    /// The depth's standard block counts of res2..res5.
    public var layers: [Int] {
        switch self {
        case .r18: [2, 2, 2, 2]
        case .r34, .r50: [3, 4, 6, 3]
        case .r101, .resnext101_32x4d: [3, 4, 23, 3]
        case .r152: [3, 8, 36, 3]
        }
    }

    /// ResNeXt cardinality and width per group (torchvision's groups / width_per_group; ResNet: 1 and 64).
    public var groups: (count: Int, widthPerGroup: Int) { self == .resnext101_32x4d ? (32, 4) : (1, 64) }
}

/// Everything that defines a backbone's structure. The settings have no defaults here: the
/// `backbone` section's are the only ones (`ResNetSpec(_: BackboneConfig)` in DCNConfig maps it).
public struct ResNetSpec: Sendable, Equatable {
    public var block: BlockType
    /// Blocks in res2..res5.
    public var layers: [Int]
    /// Output channels of the stem's 7x7 conv.
    public var stemWidth: Int
    /// "planes" of res2..res5 (the stage outputs are planes * expansion).
    public var stagePlanes: [Int]
    /// ResNeXt cardinality and width per group (torchvision's groups / width_per_group).
    public var groups: Int
    public var widthPerGroup: Int
    /// The 3x3 convolution of each stage res2..res5.
    public var stageConv: [ConvKind]
    /// Offset groups of the deformable convs.
    public var offsetGroups: Int
    /// Learning-rate multiplier of the offset branches.
    public var offsetLearningRateScale: Float
    /// The modulated convolutions' modulation (sigmoid, or two_sigmoid starting at 1).
    public var modulation: Modulation
    /// 2 = res5 with stride 1 and dilation 2 in every 3x3 conv (output stride 16); 1 = torchvision's.
    public var res5Dilation: Int
    public var norm: NormKind
    /// 0: nothing frozen; 1: the stem; 2: stem and res2; up to 5.
    public var frozenStages: Int
    /// Classes of the ImageNet head (global pool + fc); nil for a detector backbone.
    public var classes: Int?

    /// A network of `depth`'s blocks (and ResNeXt groups) with every setting given.
    public init(depth: ResNetDepth, layers: [Int], stemWidth: Int, stagePlanes: [Int], stageConv: [ConvKind], offsetGroups: Int,
                offsetLearningRateScale: Float, modulation: Modulation, res5Dilation: Int, norm: NormKind, frozenStages: Int,
                classes: Int? = nil) {
        block = depth.block
        groups = depth.groups.count
        widthPerGroup = depth.groups.widthPerGroup
        self.layers = layers; self.stemWidth = stemWidth; self.stagePlanes = stagePlanes; self.stageConv = stageConv
        self.offsetGroups = offsetGroups; self.offsetLearningRateScale = offsetLearningRateScale; self.modulation = modulation
        self.res5Dilation = res5Dilation; self.norm = norm; self.frozenStages = frozenStages; self.classes = classes
    }

    /// Output channels of res2..res5.
    public var stageChannels: [Int] { stagePlanes.map { $0 * block.expansion } }

    /// Output strides of res2..res5.
    public var stageStrides: [Int] { [4, 8, 16, res5Dilation == 1 ? 32 : 16] }

    /// Channels and stride of res2..res5, by name.
    public var outputShapes: [String: ShapeSpec] {
        Dictionary(uniqueKeysWithValues: ResNet.stageNames.indices.map {
            (ResNet.stageNames[$0], ShapeSpec(channels: stageChannels[$0], stride: stageStrides[$0]))
        })
    }

    func validate() throws {
        try require(layers.count == 4 && layers.allSatisfy { $0 >= 1 }, "resnet: layers must be 4 positive block counts, got \(layers)")
        try require(stagePlanes.count == 4 && stagePlanes.allSatisfy { $0 >= 1 }, "resnet: stage planes must be 4 positive numbers, got \(stagePlanes)")
        try require(stageConv.count == 4, "resnet: stage conv kinds must be given for res2..res5, got \(stageConv.count)")
        try require(stemWidth >= 1 && groups >= 1 && widthPerGroup >= 1 && offsetGroups >= 1, "resnet: widths and groups must be positive")
        try require(res5Dilation == 1 || res5Dilation == 2, "resnet: res5 dilation must be 1 or 2, got \(res5Dilation)")
        try require((0...5).contains(frozenStages), "resnet: frozen stages must be in 0...5, got \(frozenStages)")
        try require(groups == 1 || block == .bottleneck, "resnet: groups > 1 (ResNeXt) needs bottleneck blocks")
    }
}

/// One conv + norm of a residual block; all but the last unit are followed by ReLU.
public struct ConvNormUnit {
    public let conv: SpatialConv
    public let norm: NormLayer
}

/// A residual block: units, an optional projection shortcut (torchvision's `downsample`), ReLU.
public final class ResidualBlock {
    /// The conv + norm units of the main path, in order (read by the ONNX export).
    public let units: [ConvNormUnit]
    /// The projection shortcut (torchvision's `downsample`), or nil for the identity.
    public let shortcut: (conv: ConvLayer, norm: NormLayer)?
    /// The stage, "res2" ... "res5", under which `LayerProfiler` files the block's layers.
    let stage: String

    /// What backward needs from one forward.
    public struct Cache {
        /// Input of each unit (the block input, then each ReLU output).
        var unitInputs: [Tensor]
        /// Each unit's conv output (the norm's input) and conv cache.
        var convOutputs: [Tensor]
        var convCaches: [SpatialConv.Cache]
        var normCaches: [NormLayer.Cache]
        var shortcutConvOutput: Tensor?
        var shortcutNormCache: NormLayer.Cache?
        /// The block output (after the final ReLU).
        var output: Tensor
    }

    init(units: [ConvNormUnit], shortcut: (ConvLayer, NormLayer)?, stage: String) {
        self.units = units
        self.shortcut = shortcut
        self.stage = stage
    }

    /// Times `body` as this block's `layer` in `pass` ("fwd", "bwd") when a `LayerProfiler` is set.
    func timed<R>(_ layer: @autoclosure () -> String, _ pass: String, _ body: () throws -> R) rethrows -> R {
        try LayerProfiler.measure("\(stage) \(layer()) \(pass)", body)
    }

    public var parameters: [Parameter] {
        units.flatMap { $0.conv.parameters + $0.norm.parameters } + (shortcut.map { $0.conv.parameters + $0.norm.parameters } ?? [])
    }

    /// `inference`: the network runs in inference mode (not a frozen block of a training step):
    /// deformable layers may take their offset branch by taps (`DeformableConvLayer.forward`).
    public func forward(_ x: Tensor, training: Bool, keepCache: Bool, inference: Bool = false, _ ws: Workspace) throws -> (Tensor, Cache?) {
        var h = x
        var cache = Cache(unitInputs: [], convOutputs: [], convCaches: [], normCaches: [], output: x)
        for (i, unit) in units.enumerated() {
            if keepCache { cache.unitInputs.append(h) }
            // Nothing kept (inference): the conv applies an affine norm and the ReLU to its output.
            if !keepCache, let (scale, shift) = try unit.norm.affineScaleShift(training: training) {
                let affine = ChannelAffine(scale: scale, shift: shift, relu: i < units.count - 1)
                h = try timed(unit.conv.kind, "fwd") { try unit.conv.forward(h, ws, inference: inference, then: affine).0 }
                continue
            }
            let (c, convCache) = try timed(unit.conv.kind, "fwd") { try unit.conv.forward(h, ws, inference: inference) }
            var (n, normCache) = try timed("norm", "fwd") { try unit.norm.forward(c, training: training) }
            if keepCache { cache.convOutputs.append(c); cache.convCaches.append(convCache); cache.normCaches.append(normCache) }
            if i < units.count - 1 { timed("relu, add", "fwd") { reluForwardInPlace(&n) } }
            h = n
        }
        if let shortcut {
            let c = try timed(shortcut.conv.kind, "fwd") { try shortcut.conv.forward(x, ws) }
            if !keepCache, let (scale, shift) = try shortcut.norm.affineScaleShift(training: training) {
                try timed("relu, add", "fwd") { try addChannelAffineReLUInPlace(&h, shortcut: c, scale: scale, shift: shift) }
                cache.output = h
                return (h, nil)
            }
            let (n, normCache) = try timed("norm", "fwd") { try shortcut.norm.forward(c, training: training) }
            if keepCache { cache.shortcutConvOutput = c; cache.shortcutNormCache = normCache }
            try timed("relu, add", "fwd") { try addReLUInPlace(&h, n) }
        } else {
            try timed("relu, add", "fwd") { try addReLUInPlace(&h, x) }
        }
        cache.output = h
        return (h, keepCache ? cache : nil)
    }

    /// Adds parameter gradients; returns dInput when `wantInput`.
    public func backward(_ dy: Tensor, cache: Cache, wantInput: Bool, _ ws: Workspace) throws -> Tensor? {
        // out = relu(main(x) + shortcut(x)): g is the gradient of the sum.
        let g = try timed("relu, add", "bwd") { try reluGradient(dOutput: dy, output: cache.output) }
        var d = g
        for i in stride(from: units.count - 1, through: 0, by: -1) {
            let unit = units[i]
            if i < units.count - 1 {
                // Unit i's ReLU output is unit i+1's input.
                d = try timed("relu, add", "bwd") { try reluGradient(dOutput: d, output: cache.unitInputs[i + 1]) }
            }
            let dc = try timed("norm", "bwd") { try unit.norm.backward(d, input: cache.convOutputs[i], cache: cache.normCaches[i], wantInput: true)! }
            let needInput = i > 0 || wantInput
            guard let dx = try timed(unit.conv.kind, "bwd", {
                try unit.conv.backward(dc, input: cache.unitInputs[i], cache: cache.convCaches[i], wantInput: needInput, ws)
            }) else { break }
            d = dx
        }
        if let shortcut, let c = cache.shortcutConvOutput, let normCache = cache.shortcutNormCache {
            let dc = try timed("norm", "bwd") { try shortcut.norm.backward(g, input: c, cache: normCache, wantInput: true)! }
            let ds = try timed(shortcut.conv.kind, "bwd") { try shortcut.conv.backward(dc, input: cache.unitInputs[0], wantInput: wantInput, ws) }
            if wantInput { timed("relu, add", "bwd") { d.add(ds!) } }
        } else if wantInput {
            timed("relu, add", "bwd") { d.add(g) }
        }
        return wantInput ? d : nil
    }

    public func cost(_ input: [Int], _ counter: inout CostCounter) throws -> [Int] {
        var shape = input
        for unit in units { shape = try unit.conv.cost(shape, &counter) }
        if let shortcut { _ = try shortcut.conv.cost(input, &counter) }
        return shape
    }
}

/// "res4" for a layer named "backbone.layer3.1.conv2" (torchvision's layerN is stage resN+1); the
/// name itself when it has no layerN part.
public func stageLabel(ofLayerNamed name: String) -> String {
    name.split(separator: ".").first { $0.hasPrefix("layer") }.flatMap { Int($0.dropFirst(5)) }.map { "res\($0 + 1)" } ?? name
}

/// Named feature maps of the backbone.
public struct FeatureMaps {
    public var maps: [String: Tensor] = [:]
    public init(_ maps: [String: Tensor] = [:]) { self.maps = maps }
    public subscript(name: String) -> Tensor? {
        get { maps[name] }
        set { maps[name] = newValue }
    }
}

/// ResNet / ResNeXt backbone. Parameter names are torchvision's under `prefix`
/// (e.g. `backbone.layer3.0.conv2.weight`); offset branches add `conv2_offset.{weight,bias}`.
public final class ResNet {
    public let spec: ResNetSpec
    public let prefix: String
    /// The stem's 7x7 stride-2 conv and its norm (followed by ReLU and a 3x3 stride-2 max pool).
    public let stemConv: ConvLayer
    public let stemNorm: NormLayer
    /// The blocks of res2..res5 (read by the ONNX export, which walks the same structure).
    public let stages: [[ResidualBlock]]
    let fc: LinearLayer?
    public private(set) var parameters = ParameterList()
    /// Names of the stage outputs, in order.
    public static let stageNames = ["res2", "res3", "res4", "res5"]

    /// What backward needs from one training forward (only the trainable stages are cached).
    public struct Cache {
        var blockCaches: [[ResidualBlock.Cache]]
        var stem: StemCache?
        var pooled: Tensor?
        var stageOutputs: [Tensor]
    }

    struct StemCache {
        let input: Tensor, convOutput: Tensor, normCache: NormLayer.Cache, reluOutput: Tensor, argmax: [Int32]
    }

    public init(spec: ResNetSpec, prefix: String = "", seed: UInt64 = 0) throws {
        try spec.validate()
        self.spec = spec
        self.prefix = prefix
        var rng = SeededGenerator(seed: seed)
        stemConv = ConvLayer(name: prefix + "conv1", 3, spec.stemWidth, kernel: 7, stride: 2, padding: 3, rng: &rng)
        stemNorm = NormLayer(name: prefix + "bn1", channels: spec.stemWidth, kind: spec.norm)
        var inChannels = spec.stemWidth
        var stages: [[ResidualBlock]] = []
        for s in 0..<4 {
            let planes = spec.stagePlanes[s], outChannels = planes * spec.block.expansion
            let firstStride = s == 0 ? 1 : (s == 3 && spec.res5Dilation == 2 ? 1 : 2)
            let dilation = s == 3 ? spec.res5Dilation : 1
            var blocks: [ResidualBlock] = []
            for b in 0..<spec.layers[s] {
                let name = prefix + "layer\(s + 1).\(b)"
                let stride = b == 0 ? firstStride : 1
                blocks.append(Self.makeBlock(spec: spec, name: name, inChannels: inChannels, planes: planes, stride: stride,
                                             dilation: dilation, convKind: spec.stageConv[s], rng: &rng))
                inChannels = outChannels
            }
            stages.append(blocks)
        }
        self.stages = stages
        // Image pixels per input pixel of each deformable layer: 4 after the stem, times each
        // strided convolution before it.
        var stride = 4
        for stage in stages {
            for block in stage {
                for unit in block.units {
                    if case .deformable(let layer) = unit.conv { layer.inputStride = stride }
                    stride *= unit.conv.stride
                }
            }
        }
        fc = spec.classes.map { LinearLayer(name: prefix + "fc", inChannels, $0, weightInit: .uniformFanIn, biasInit: .uniformFanIn, rng: &rng) }
        var list = ParameterList()
        list.append(contentsOf: stemConv.parameters + stemNorm.parameters)
        for stage in stages { for block in stage { list.append(contentsOf: block.parameters) } }
        if let fc { list.append(contentsOf: fc.parameters) }
        parameters = list
        setFrozenStages(spec.frozenStages)
    }

    /// One residual block of `spec`'s type, named `name` (e.g. `layer3.0`).
    public static func makeBlock(spec: ResNetSpec, name: String, inChannels: Int, planes: Int, stride: Int, dilation: Int,
                                 convKind: ConvKind, rng: inout SeededGenerator) -> ResidualBlock {
        let outChannels = planes * spec.block.expansion
        func spatial(_ convName: String, _ cin: Int, _ cout: Int, stride: Int, groups: Int) -> SpatialConv {
            switch convKind {
            case .regular:
                return .regular(ConvLayer(name: convName, cin, cout, kernel: 3, stride: stride, padding: dilation,
                                          dilation: dilation, groups: groups, rng: &rng))
            case .dconv, .mdconv:
                return .deformable(DeformableConvLayer(name: convName, cin, cout, kernel: 3, stride: stride, padding: dilation,
                                                       dilation: dilation, groups: groups, modulated: convKind == .mdconv,
                                                       modulation: spec.modulation, offsetGroups: spec.offsetGroups,
                                                       offsetLearningRateScale: spec.offsetLearningRateScale, rng: &rng))
            }
        }
        var units: [ConvNormUnit] = []
        switch spec.block {
        case .basic:
            units.append(ConvNormUnit(conv: spatial(name + ".conv1", inChannels, planes, stride: stride, groups: 1),
                                      norm: NormLayer(name: name + ".bn1", channels: planes, kind: spec.norm)))
            units.append(ConvNormUnit(conv: spatial(name + ".conv2", planes, planes, stride: 1, groups: 1),
                                      norm: NormLayer(name: name + ".bn2", channels: planes, kind: spec.norm)))
        case .bottleneck:
            // torchvision: width = int(planes * (width_per_group / 64)) * groups.
            let width = planes * spec.widthPerGroup / 64 * spec.groups
            units.append(ConvNormUnit(conv: .regular(ConvLayer(name: name + ".conv1", inChannels, width, kernel: 1, rng: &rng)),
                                      norm: NormLayer(name: name + ".bn1", channels: width, kind: spec.norm)))
            units.append(ConvNormUnit(conv: spatial(name + ".conv2", width, width, stride: stride, groups: spec.groups),
                                      norm: NormLayer(name: name + ".bn2", channels: width, kind: spec.norm)))
            units.append(ConvNormUnit(conv: .regular(ConvLayer(name: name + ".conv3", width, outChannels, kernel: 1, rng: &rng)),
                                      norm: NormLayer(name: name + ".bn3", channels: outChannels, kind: spec.norm)))
        }
        var shortcut: (ConvLayer, NormLayer)? = nil
        if stride != 1 || inChannels != outChannels {
            shortcut = (ConvLayer(name: name + ".downsample.0", inChannels, outChannels, kernel: 1, stride: stride, rng: &rng),
                        NormLayer(name: name + ".downsample.1", channels: outChannels, kind: spec.norm))
        }
        return ResidualBlock(units: units, shortcut: shortcut, stage: stageLabel(ofLayerNamed: name))
    }

    /// Freezes the stem (1) and the first `n - 1` stages: no gradients, no backward work.
    public func setFrozenStages(_ n: Int) {
        for p in stemConv.parameters { p.trainable = n < 1 }
        stemNorm.setTrainable(n < 1)
        for (s, stage) in stages.enumerated() {
            let frozen = s + 2 <= n
            for block in stage {
                for unit in block.units {
                    for p in unit.conv.parameters { p.trainable = !frozen }
                    unit.norm.setTrainable(!frozen)
                }
                if let shortcut = block.shortcut {
                    for p in shortcut.conv.parameters { p.trainable = !frozen }
                    shortcut.norm.setTrainable(!frozen)
                }
            }
        }
    }

    /// The deformable convolutions, in the network's order.
    public var deformableLayers: [DeformableConvLayer] {
        stages.flatMap { stage in
            stage.flatMap { block in
                block.units.compactMap { unit -> DeformableConvLayer? in
                    if case .deformable(let layer) = unit.conv { return layer }
                    return nil
                }
            }
        }
    }

    /// Parameters of the deformable offset branches.
    public var offsetParameters: [Parameter] { parameters.all.filter { $0.name.contains("_offset.") } }

    /// Runs the backbone. Returns res2..res5 (and `logits` with a classification head); with
    /// `training`, batch norm uses batch statistics and a cache for `backward` is returned.
    /// `cacheAllStages`: keep a cache of every stage and the stem whatever is frozen or trained, so
    /// that `backward(allStages: true)` reaches the input (the spatial-support analysis).
    public func forward(_ x: Tensor, training: Bool, cacheAllStages: Bool = false, _ ws: Workspace) throws -> (FeatureMaps, Cache?) {
        try require(x.rank == 4 && x.dim(1) == 3, "resnet: input must be [N, 3, H, W], got \(x.shape)")
        let frozen = spec.frozenStages
        let cacheStem = training && frozen < 1 || cacheAllStages
        let (stemConvOutput, stemNormCache, stemReLU, pool) = try LayerProfiler.measure("stem conv, norm, relu, pool fwd") {
            // Nothing kept (inference): the conv applies an affine norm and the ReLU to its output.
            if !cacheStem, let (scale, shift) = try stemNorm.affineScaleShift(training: training && frozen < 1) {
                let c = try stemConv.forward(x, ws, then: ChannelAffine(scale: scale, shift: shift, relu: true))
                let pooled = try maxPoolForwardValues(input: c, options: MaxPoolOptions(kernel: 3, stride: 2, padding: 1))
                return (c, NormLayer.Cache.affine, c, MaxPoolResult(output: pooled, argmax: []))
            }
            let c = try stemConv.forward(x, ws)
            var (normed, normCache) = try stemNorm.forward(c, training: training && frozen < 1)
            reluForwardInPlace(&normed)
            return (c, normCache, normed, try maxPoolForward(input: normed, options: MaxPoolOptions(kernel: 3, stride: 2, padding: 1)))
        }
        var h = pool.output
        var features = FeatureMaps()
        var cache = Cache(blockCaches: [], stem: nil, pooled: nil, stageOutputs: [])
        for (s, stage) in stages.enumerated() {
            let trainable = training && s + 2 > frozen
            var caches: [ResidualBlock.Cache] = []
            for block in stage {
                let (y, c) = try block.forward(h, training: trainable, keepCache: trainable || cacheAllStages, inference: !training, ws)
                if let c { caches.append(c) }
                h = y
            }
            cache.blockCaches.append(caches)
            cache.stageOutputs.append(h)
            features[Self.stageNames[s]] = h
        }
        if let fc {
            let pooled = try globalAvgPoolForward(input: h)
            features["logits"] = try fc.forward(pooled)
            cache.pooled = pooled
        }
        if cacheStem {
            cache.stem = StemCache(input: x, convOutput: stemConvOutput, normCache: stemNormCache, reluOutput: stemReLU, argmax: pool.argmax)
        }
        return (features, training || cacheAllStages ? cache : nil)
    }

    /// Backward from gradients of named outputs (any of res2..res5, logits). Adds parameter
    /// gradients of the trainable stages and stops at the first frozen one. Returns dInput when
    /// `wantInput` (only possible with nothing frozen).
    @discardableResult
    /// The training pass: batch statistics in training mode; its backward takes the gradients of
    /// the stage outputs that later parts used.
    /// The training pass; its backward reports each block's parameters to `finished` as soon as
    /// their gradients are complete (data-parallel training starts summing them then).
    public func trainingPass(_ x: Tensor, _ ws: Workspace, finished: GradientsFinished? = nil) throws -> TrainingPass<FeatureMaps, FeatureMaps, Void> {
        let (features, cache) = try forward(x, training: true, ws)
        return TrainingPass(output: features) { gradients in _ = try self.backward(gradients, cache: cache!, ws, finished: finished) }
    }

    /// `allStages` (with a `cacheAllStages` forward): through the frozen stages too.
    public func backward(_ gradients: FeatureMaps, cache: Cache, wantInput: Bool = false, allStages: Bool = false, _ ws: Workspace,
                         finished: GradientsFinished? = nil) throws -> Tensor? {
        let frozen = allStages ? 0 : spec.frozenStages
        var d: Tensor? = nil
        if let fc, let dLogits = gradients["logits"], let pooled = cache.pooled {
            let dPooled = try fc.backward(dLogits, input: pooled, wantInput: true)!
            finished?(fc.parameters)
            var dMap = Tensor(zeros: cache.stageOutputs[3].shape)
            try globalAvgPoolBackward(dInput: &dMap, dOutput: dPooled)
            d = dMap
        }
        for s in stride(from: 3, through: 0, by: -1) {
            if let g = gradients[Self.stageNames[s]] {
                if d == nil { d = g } else { d!.add(g) }
            }
            if s + 2 <= frozen { return nil }  // this stage and everything below are frozen
            guard var dy = d else { continue }
            let caches = cache.blockCaches[s]
            for b in stride(from: caches.count - 1, through: 0, by: -1) {
                let needInput = b > 0 || s > 0 && s + 1 > frozen || s == 0 && (frozen < 1 || wantInput)
                let dx = try stages[s][b].backward(dy, cache: caches[b], wantInput: needInput, ws)
                finished?(stages[s][b].parameters)
                guard let dx else { return nil }
                dy = dx
            }
            d = dy
        }
        // The stem.
        guard frozen < 1, let stem = cache.stem, var dPool = d else { return nil }
        var dReLUOut = Tensor(zeros: stem.reluOutput.shape)
        try maxPoolBackward(dInput: &dReLUOut, dOutput: dPool, argmax: stem.argmax)
        dPool = Tensor(zeros: dReLUOut.shape)
        try reluBackward(dInput: &dPool, dOutput: dReLUOut, output: stem.reluOutput)
        let dConv = try stemNorm.backward(dPool, input: stem.convOutput, cache: stem.normCache, wantInput: true)!
        defer { finished?(stemConv.parameters + stemNorm.parameters) }
        return try stemConv.backward(dConv, input: stem.input, wantInput: wantInput, ws)
    }

    /// Multiply-adds of one training step for an input of `[N, 3, H, W]` (no classification head):
    /// the forward of every layer, and the backward's products in the trainable stages: each
    /// convolution's weight gradient, plus its input gradient unless that gradient would only go
    /// into a frozen stage (as `backward` skips it). For deformable layers the offset branch's
    /// products are counted; the bilinear sampling is not.
    public func trainingMultiplyAdds(inputShape: [Int]) throws -> (forward: Int, backward: Int) {
        let frozen = spec.frozenStages
        var counter = CostCounter()
        var shape = try stemConv.cost(inputShape, &counter)
        var forward = counter.multiplyAdds, backward = frozen < 1 ? counter.multiplyAdds : 0
        let poolOut = try MaxPoolOptions(kernel: 3, stride: 2, padding: 1).outputSize(height: shape[2], width: shape[3])
        shape = [shape[0], shape[1], poolOut.0, poolOut.1]
        for (s, stage) in stages.enumerated() {
            for (b, block) in stage.enumerated() {
                var blockCounter = CostCounter()
                let input = shape
                shape = try block.cost(input, &blockCounter)
                forward += blockCounter.multiplyAdds
                guard s + 2 > frozen else { continue }
                backward += 2 * blockCounter.multiplyAdds
                let needInput = b > 0 || s > 0 && s + 1 > frozen || s == 0 && frozen < 1
                if !needInput {
                    // No input gradient for the first unit's conv nor the shortcut.
                    var skipped = CostCounter()
                    _ = try block.units[0].conv.cost(input, &skipped)
                    if let shortcut = block.shortcut { _ = try shortcut.conv.cost(input, &skipped) }
                    backward -= skipped.multiplyAdds
                }
            }
        }
        return (forward, backward)
    }

    /// Output shapes of res2..res5 and multiply-adds for an input of `[N, 3, H, W]`.
    public func cost(inputShape: [Int]) throws -> (shapes: [String: [Int]], multiplyAdds: Int) {
        var counter = CostCounter()
        var shape = try stemConv.cost(inputShape, &counter)
        let poolOut = try MaxPoolOptions(kernel: 3, stride: 2, padding: 1).outputSize(height: shape[2], width: shape[3])
        shape = [shape[0], shape[1], poolOut.0, poolOut.1]
        var shapes: [String: [Int]] = [:]
        for (s, stage) in stages.enumerated() {
            for block in stage { shape = try block.cost(shape, &counter) }
            shapes[Self.stageNames[s]] = shape
        }
        if let fc { fc.cost(rows: shape[0], &counter) }
        return (shapes, counter.multiplyAdds)
    }
}
