// ResNet backbones: torchvision parity, weight files, deformable stages, frozen stages, gradients.
import DCNConfig
import DCNVerify
import DCNModels
import DCNOps
import DCNTensor
import Foundation
import TestSupport
import Testing

/// A small bottleneck ResNet (the fixture's shape) with the given 3x3 conv kinds.
func smallSpec(_ kinds: [ConvKind] = [.regular, .regular, .regular, .regular], frozen: Int = 0,
               norm: NormKind = .frozenBatchNorm, classes: Int? = nil) -> ResNetSpec {
    var spec = ResNetSpec(BackboneConfig())  // the backbone section's defaults: R-50's bottleneck blocks
    spec.layers = [1, 2, 1, 1]
    spec.res5Dilation = 1  // torchvision's
    spec.stagePlanes = [4, 8, 8, 16]
    spec.stemWidth = 8
    spec.stageConv = kinds
    spec.frozenStages = frozen
    spec.norm = norm
    spec.classes = classes
    return spec
}

@Test("ResNet and ResNeXt (groups 8, width per group 4) match torchvision",
      arguments: ["resnet_bottleneck_1_2_1_1", "resnext_bottleneck_1_2_1_1_g8w4"])
func resnetMatchesTorchvision(fixture: String) throws {
    let result = try verifyFixture(path: fixturePath("ops/\(fixture).safetensors"))
    #expect(result.comparisons.count == 5)
    for c in result.comparisons { #expect(c.relativeError <= 1e-4, "\(c.name): \(c.relativeError)") }
}

@Test func weightsRoundTripBitForBit() throws {
    let a = try ResNet(spec: smallSpec([.regular, .mdconv, .dconv, .mdconv], classes: 5), prefix: "backbone.", seed: 1)
    for p in a.offsetParameters { p.value = Tensor(repeating: 0.25, shape: p.shape) }
    let path = NSTemporaryDirectory() + "dcn-roundtrip-\(getpid()).safetensors"
    defer { unlink(path) }
    try saveWeights(a.parameters, metadata: ["note": "test"], to: path)
    let b = try ResNet(spec: smallSpec([.regular, .mdconv, .dconv, .mdconv], classes: 5), prefix: "backbone.", seed: 2)
    let report = try loadWeights(b.parameters, from: try SafeTensorsFile(path: path))
    #expect(report.loaded.count == a.parameters.all.count)
    for (p, q) in zip(a.parameters.all, b.parameters.all) {
        #expect(p.name == q.name)
        #expect(p.value.data.map(\.bitPattern) == q.value.data.map(\.bitPattern), "\(p.name)")
    }
}

@Test func regularCheckpointLoadsIntoDeformableModelAndMismatchesAreListed() throws {
    let regular = try ResNet(spec: smallSpec(), seed: 3)
    let path = NSTemporaryDirectory() + "dcn-regular-\(getpid()).safetensors"
    defer { unlink(path) }
    try saveWeights(regular.parameters, to: path)
    let file = try SafeTensorsFile(path: path)
    // Deformable layers take the main weights and keep zero offset branches.
    let deformable = try ResNet(spec: smallSpec([.regular, .mdconv, .mdconv, .mdconv]), seed: 4)
    let report = try loadWeights(deformable.parameters, from: file)
    #expect(!report.keptInitial.isEmpty && report.keptInitial.allSatisfy { $0.contains("_offset.") })
    #expect(deformable.offsetParameters.allSatisfy { $0.value.data.allSatisfy { $0 == 0 } })
    // A model of another shape: every problem is listed, nothing is changed.
    var other = smallSpec()
    other.stagePlanes = [4, 8, 16, 16]
    other.classes = 3
    let wrong = try ResNet(spec: other, seed: 5)
    let before = wrong.parameters.all.map(\.value)
    do {
        try loadWeights(wrong.parameters, from: file)
        Issue.record("a mismatching checkpoint must be rejected")
    } catch let error as WeightLoadError {
        #expect(error.missing.contains("fc.weight") && error.missing.contains("fc.bias"))
        #expect(error.wrongShape.count > 3)
        #expect(error.description.contains("wrong shape: layer3.0.conv1.weight"))
    }
    #expect(wrong.parameters.all.map(\.value) == before)
}

@Test func zeroInitialisedDeformableStagesMatchTheRegularNetwork() throws {
    var rng = SeededGenerator(seed: 8)
    let x = Tensor.normal([1, 3, 48, 40], using: &rng)
    let regular = try ResNet(spec: smallSpec(), seed: 6)
    let dconv = try ResNet(spec: smallSpec([.regular, .dconv, .dconv, .dconv]), seed: 6)
    // Same seed, same construction order of the main weights: copy to be sure they agree.
    for p in regular.parameters.all { dconv.parameters[p.name]!.value = p.value }
    let ws = Workspace()
    let (r, _) = try regular.forward(x, training: false, ws)
    let (d, _) = try dconv.forward(x, training: false, ws)
    // The same sums in another order (deformable columns are tap-major, conv2d's channel-major).
    for name in ResNet.stageNames {
        #expect(relativeL2(r[name]!.data.map(Double.init), d[name]!.data.map(Double.init)) < 1e-5, "\(name)")
    }
}

@Test func zeroInitialisedModulatedLayerGivesHalfTheRegularConv() throws {
    var rng = SeededGenerator(seed: 9)
    let x = Tensor.normal([2, 6, 9, 7], using: &rng)
    let layer = DeformableConvLayer(name: "conv2", 6, 5, kernel: 3, stride: 1, padding: 1, dilation: 1, modulated: true, rng: &rng)
    let (y, cache) = try layer.forward(x, Workspace())
    let conv = try conv2dForward(input: x, weight: layer.weight.value, bias: nil, options: ConvOptions(stride: 1, padding: 1))
    #expect(cache.mask!.data.allSatisfy { $0 == 0.5 })
    #expect(relativeL2(y.data.map(Double.init), conv.data.map { Double($0 * 0.5) }) < 1e-6)
}

@Test func frozenStagesReceiveNoGradient() throws {
    var rng = SeededGenerator(seed: 10)
    let x = Tensor.normal([1, 3, 40, 48], using: &rng)
    let model = try ResNet(spec: smallSpec([.regular, .mdconv, .mdconv, .mdconv], frozen: 2, norm: .batchNorm), seed: 7)
    let ws = Workspace()
    let (features, cache) = try model.forward(x, training: true, ws)
    model.parameters.zeroGrad()
    var grads = FeatureMaps()
    grads["res5"] = Tensor.normal(features["res5"]!.shape, using: &rng)
    grads["res4"] = Tensor.normal(features["res4"]!.shape, using: &rng)
    try model.backward(grads, cache: cache!, ws)
    for p in model.parameters.all {
        let frozen = p.name.hasPrefix("conv1") || p.name.hasPrefix("bn1") || p.name.hasPrefix("layer1.")
        if frozen {
            #expect(!p.trainable, "\(p.name) should be frozen")
            #expect(p.grad.count == 0, "\(p.name) got a gradient")
        } else if !p.isBuffer {
            #expect(p.trainable, "\(p.name)")
            #expect(p.grad.shape == p.shape, "\(p.name) has no gradient")
        }
    }
    // The main weights of trainable stages do get non-zero gradients.
    #expect(model.parameters["layer3.0.conv2.weight"]!.grad.data.contains { $0 != 0 })
    #expect(model.parameters["layer3.0.conv2_offset.weight"]!.grad.data.contains { $0 != 0 })
}

/// Finite differences of one deformable bottleneck (stride 2, offset groups 2, modulated or not)
/// with every trainable parameter and the input moved together in a few random directions; the
/// loss is accumulated in Double. ReLU and bilinear sampling make the loss piecewise smooth, and a
/// kink can fall inside even a 1e-4 step: the analytic derivative must then match the one-sided
/// difference on the kink-free side, so it is compared with the central and both one-sided ones.
@Test(arguments: [(ConvKind.mdconv, NormKind.batchNorm), (.dconv, .groupNorm(groups: 2)), (.mdconv, .frozenBatchNorm)])
func deformableBottleneckGradientsMatchFiniteDifferences(kind: ConvKind, norm: NormKind) throws {
    var rng = SeededGenerator(seed: 12)
    var spec = smallSpec(norm: norm)
    spec.offsetGroups = 2
    let block = ResNet.makeBlock(spec: spec, name: "layer2.0", inChannels: 8, planes: 4, stride: 2, dilation: 1,
                                 convKind: kind, rng: &rng)
    for p in block.parameters where p.name.contains("_offset.") { p.value = Tensor.normal(p.shape, std: 0.05, using: &rng) }
    for p in block.parameters where p.name.hasSuffix("bias") && !p.isBuffer { p.value = Tensor.normal(p.shape, std: 0.1, using: &rng) }
    var x = Tensor.normal([2, 8, 10, 9], using: &rng)
    let ws = Workspace()
    let (y, cache) = try block.forward(x, training: true, keepCache: true, ws)
    let weights = Tensor.normal(y.shape, using: &rng)
    func loss() throws -> Double {
        let (out, _) = try block.forward(x, training: true, keepCache: false, ws)
        var s = 0.0
        for i in 0..<out.count { s += Double(out.data[i]) * Double(weights.data[i]) }
        return s
    }
    let trainable = block.parameters.filter(\.trainable)
    #expect(!trainable.isEmpty)
    trainable.forEach { $0.zeroGrad() }
    let dx = try block.backward(weights, cache: cache!, wantInput: true, ws)!
    let h: Float = 1e-4
    for direction in 0..<5 {
        var drng = SeededGenerator(seed: UInt64(100 + direction))
        let v = trainable.map { Tensor.normal($0.shape, using: &drng) }
        let vx = Tensor.normal(x.shape, using: &drng)
        var analytic = 0.0
        for (p, vp) in zip(trainable, v) { for i in 0..<p.count { analytic += Double(p.grad.data[i]) * Double(vp.data[i]) } }
        for i in 0..<x.count { analytic += Double(dx.data[i]) * Double(vx.data[i]) }
        let saved = trainable.map(\.value), savedX = x
        func move(_ sign: Float) {
            for (k, p) in trainable.enumerated() { p.value = saved[k]; for i in 0..<p.count { p.value.data[i] += sign * h * v[k].data[i] } }
            x = savedX
            for i in 0..<x.count { x.data[i] += sign * h * vx.data[i] }
        }
        move(1); let plus = try loss()
        move(-1); let minus = try loss()
        move(0); let center = try loss()
        let differences = [(plus - minus) / (2 * Double(h)), (plus - center) / Double(h), (center - minus) / Double(h)]
        let closest = differences.min { abs($0 - analytic) < abs($1 - analytic) }!
        #expect(abs(closest - analytic) <= 2e-2 * max(abs(closest), abs(analytic), 1e-1),
                "\(kind) \(norm) direction \(direction): differences \(differences), analytic \(analytic)")
    }
}

/// The stem (7x7/2 conv, norm, ReLU, 3x3/2 max pool) and the classification head, by finite
/// differences. Kinks can sit exactly at the evaluation point (max-pool ties), so the analytic
/// derivative is compared with the central and both one-sided differences.
@Test func stemAndHeadGradientsMatchFiniteDifferences() throws {
    var spec = smallSpec(frozen: 0, norm: .frozenBatchNorm, classes: 3)
    spec.layers = [1, 1, 1, 1]
    let model = try ResNet(spec: spec, seed: 13)
    model.parameters["bn1.bias"]!.value = Tensor(repeating: 3, shape: [8])
    var rng = SeededGenerator(seed: 14)
    let x = Tensor.normal([2, 3, 32, 32], using: &rng)
    let weights = Tensor.normal([2, 3], using: &rng)
    let ws = Workspace()
    func loss() throws -> Double {
        let (f, _) = try model.forward(x, training: true, ws)
        return f["logits"]!.data.enumerated().reduce(0.0) { $0 + Double($1.element) * Double(weights.data[$1.offset]) }
    }
    let (_, cache) = try model.forward(x, training: true, ws)
    model.parameters.zeroGrad()
    try model.backward(FeatureMaps(["logits": weights]), cache: cache!, ws)
    for name in ["conv1.weight", "fc.weight", "fc.bias"] {
        let p = model.parameters[name]!
        var drng = SeededGenerator(seed: 15)
        let v = Tensor.normal(p.shape, using: &drng)
        var analytic = 0.0
        for i in 0..<p.count { analytic += Double(p.grad.data[i]) * Double(v.data[i]) }
        let saved = p.value, h: Float = 3e-4
        for i in 0..<p.count { p.value.data[i] = saved.data[i] + h * v.data[i] }
        let plus = try loss()
        for i in 0..<p.count { p.value.data[i] = saved.data[i] - h * v.data[i] }
        let minus = try loss()
        p.value = saved
        let center = try loss()
        let differences = [(plus - minus) / (2 * Double(h)), (plus - center) / Double(h), (center - minus) / Double(h)]
        let closest = differences.min { abs($0 - analytic) < abs($1 - analytic) }!
        #expect(abs(closest - analytic) <= 2e-2 * max(abs(closest), abs(analytic), 1e-2), "\(name): differences \(differences), analytic \(analytic)")
    }
}

@Test func costOfResNet50MatchesThePaper() throws {
    var spec = ResNetSpec(BackboneConfig())
    spec.res5Dilation = 1  // torchvision's classification network
    spec.classes = 1000
    let model = try ResNet(spec: spec)
    let (_, flops) = try model.cost(inputShape: [1, 3, 224, 224])
    #expect(abs(Double(flops) / 1e9 - 4.1) < 0.05, "R-50 multiply-adds \(flops)")
    #expect(abs(Double(model.parameters.weightCount) / 1e6 - 25.557) < 0.01)
}

@Test func nonFiniteWeightsAreRejectedAndNothingChanges() throws {
    let model = try ResNet(spec: smallSpec([.regular, .regular, .regular, .regular], classes: 5), prefix: "backbone.", seed: 1)
    let before = model.parameters.all.map(\.value.data)
    let donor = try ResNet(spec: smallSpec([.regular, .regular, .regular, .regular], classes: 5), prefix: "backbone.", seed: 2)
    let poisoned = donor.parameters.all.last!
    poisoned.value.data[0] = .nan
    let path = NSTemporaryDirectory() + "dcn-nan-\(getpid()).safetensors"
    defer { unlink(path) }
    try saveWeights(donor.parameters, to: path)
    do {
        _ = try loadWeights(model.parameters, from: try SafeTensorsFile(path: path))
        Issue.record("NaN weights must be rejected")
    } catch {
        #expect("\(error)".contains(path) && "\(error)".contains(poisoned.name) && "\(error)".contains("finite"), "\(error)")
    }
    #expect(model.parameters.all.map(\.value.data) == before)
}

/// Inference with nothing kept applies each affine norm (frozen BN, BN on running statistics) and
/// the ReLU in place on the conv's output, and the shortcut's norm inside the residual sum: the
/// same bits as the forward that keeps its caches and runs norm, ReLU and sum one by one. Group
/// norm keeps the separate steps. Norms, offsets and biases are made non-trivial first.
@Test(arguments: [NormKind.frozenBatchNorm, .batchNorm, .groupNorm(groups: 2)])
func inferenceWithTheNormInPlaceGivesTheSameBits(norm: NormKind) throws {
    let net = try ResNet(spec: smallSpec([.regular, .mdconv, .dconv, .mdconv], norm: norm), seed: 4)
    var rng = SeededGenerator(seed: 5)
    for p in net.parameters.all {
        for i in 0..<p.count {
            if p.name.hasSuffix(".running_var") { p.value.data[i] = rng.uniform(0.5, 2) }
            else if p.name.hasSuffix(".running_mean") || (!p.decays && p.name.hasSuffix(".bias")) { p.value.data[i] = rng.uniform(-0.3, 0.3) }
            else if !p.decays && p.name.hasSuffix(".weight") { p.value.data[i] = rng.uniform(0.5, 1.5) }
            else if p.name.contains("_offset.") { p.value.data[i] = rng.uniform(-0.3, 0.3) }
        }
    }
    let x = Tensor.normal([2, 3, 40, 36], using: &rng)
    let ws = Workspace()
    let (inPlace, cache) = try net.forward(x, training: false, ws)
    #expect(cache == nil)
    let (stepwise, _) = try net.forward(x, training: false, cacheAllStages: true, ws)
    for stage in ResNet.stageNames {
        let a = try #require(inPlace[stage]), b = try #require(stepwise[stage])
        #expect(a.shape == b.shape)
        #expect(a.data.map(\.bitPattern) == b.data.map(\.bitPattern), "\(norm) \(stage): the in-place inference differs")
        #expect(a.data.contains { $0 > 0 } && a.data.contains { $0 == 0 })  // the ReLU did something
    }
}
