// The detector: named losses, inference, and finite differences of the whole training loss.
import DCNModels
import DCNOps
import DCNTensor
import Testing

/// A tiny detector: small ResNet with mdconv@c3~c5, res5 dilated, 2 classes.
func tinyDetectorSpec(extractor: RoIExtractorKind, mimic: MimicRegions = .off, norm: NormKind = .groupNorm(groups: 2)) -> DetectorSpec {
    var backbone = ResNetSpec(block: .bottleneck, layers: [1, 1, 1, 1])
    backbone.stemWidth = 8
    backbone.stagePlanes = [2, 4, 4, 8]
    backbone.stageConv = [.regular, .mdconv, .mdconv, .mdconv]
    backbone.res5Dilation = 2
    backbone.frozenStages = 0
    backbone.norm = norm
    var rpn = RPNSpec()
    rpn.anchors = AnchorGenerator(sizes: [16, 32], aspectRatios: [0.5, 1, 2], stride: 16)
    rpn.headChannels = 8
    rpn.batchSizePerImage = 32
    rpn.preNMSTopKTrain = 200; rpn.postNMSTopKTrain = 50
    rpn.preNMSTopKTest = 200; rpn.postNMSTopKTest = 50
    var head = RoIHeadSpec(classes: 2)
    head.reduceChannels = 4
    head.fcDim = 12
    head.batchSizePerImage = 16
    var mimicSpec = MimicSpec()
    mimicSpec.regions = mimic
    mimicSpec.roisPerImage = 3
    mimicSpec.patchSize = 32
    return DetectorSpec(backbone: backbone, rpn: rpn, roiHead: head, mimic: mimicSpec)
}

/// Two 64x64 images with a few objects and their targets.
func tinyBatch(seed: UInt64 = 1) -> (ImageBatch, [ImageTargets]) {
    var rng = SeededGenerator(seed: seed)
    let images = Tensor.normal([2, 3, 64, 64], using: &rng)
    let targets = [
        ImageTargets(boxes: [Box(4, 6, 30, 28), Box(34, 30, 60, 62)], labels: [1, 2]),
        ImageTargets(boxes: [Box(10, 12, 50, 40)], labels: [2], ignore: [Box(0, 44, 20, 64)]),
    ]
    return (ImageBatch(images: images, sizes: [ImageSize(height: 64, width: 64), ImageSize(height: 60, width: 64)]), targets)
}

@Test(arguments: RoIExtractorKind.allCases)
func trainingStepGivesNamedFiniteLossesAndGradients(extractor: RoIExtractorKind) throws {
    let model = try FasterRCNN(spec: tinyDetectorSpec(extractor: extractor, mimic: .fg), seed: 3)
    let (batch, targets) = tinyBatch()
    var rng = SeededGenerator(seed: 5)
    model.parameters.zeroGrad()
    let losses = try model.trainStep(batch, targets: targets, rng: &rng, Workspace())
    #expect(Set(losses.keys) == Set(lossNames))
    for (name, value) in losses { #expect(value.isFinite && value >= 0, "\(name) = \(value)") }
    // Every trainable parameter that can receive a gradient does.
    for p in model.parameters.trainable {
        #expect(p.grad.shape == p.shape, "\(p.name) has no gradient")
        #expect(!p.grad.data.contains { !$0.isFinite }, "\(p.name) has a non-finite gradient")
    }
    let detections = try model.detect(batch, Workspace())
    #expect(detections.count == 2)
    for d in detections.joined() {
        #expect(d.score > 0.05 && (1...2).contains(d.label))
        #expect(d.box.x1 >= 0 && d.box.x2 <= 64 && d.box.x1 < d.box.x2)
    }
}

/// Finite differences of the whole training loss (fixed proposals, fixed sampling seed) in random
/// directions of all trainable parameters; compared with the central and both one-sided differences
/// because ReLU, max pooling and bilinear sampling make the loss piecewise smooth.
@Test(arguments: [(RoIExtractorKind.roipool, MimicRegions.off), (.roialign, .off), (.dpool, .off), (.mdpool, .off), (.mdpool, .fg), (.roialign, .all)])
func detectorLossGradientMatchesFiniteDifferences(extractor: RoIExtractorKind, mimic: MimicRegions) throws {
    let model = try FasterRCNN(spec: tinyDetectorSpec(extractor: extractor, mimic: mimic), seed: 7)
    var init_ = SeededGenerator(seed: 21)
    // Move the zero-initialised offset branches so sampling points are fractional.
    for p in model.parameters.trainable where p.name.contains("offset") {
        p.value = Tensor.normal(p.shape, std: 0.02, using: &init_)
    }
    let (batch, targets) = tinyBatch(seed: 2)
    let proposals: [[Box]] = [[Box(2, 4, 28, 30), Box(30, 28, 58, 60), Box(8, 8, 40, 40), Box(40, 2, 62, 20)],
                              [Box(12, 10, 48, 42), Box(0, 0, 30, 30), Box(20, 30, 60, 58)]]
    let ws = Workspace()
    func loss(_ computeGradients: Bool = false) throws -> Double {
        var rng = SeededGenerator(seed: 9)
        if computeGradients { model.parameters.zeroGrad() }
        let losses = try model.trainStep(batch, targets: targets, rng: &rng, ws, fixedProposals: proposals)
        return losses.values.reduce(0.0) { $0 + Double($1) }
    }
    let center = try loss(true)
    let trainable = model.parameters.trainable
    let grads = trainable.map(\.grad)
    let h: Float = 1e-3
    for direction in 0..<3 {
        var drng = SeededGenerator(seed: UInt64(300 + direction))
        let v = trainable.map { Tensor.normal($0.shape, using: &drng) }
        var analytic = 0.0
        for (g, vp) in zip(grads, v) { for i in 0..<g.count { analytic += Double(g.data[i]) * Double(vp.data[i]) } }
        let saved = trainable.map(\.value)
        func move(_ sign: Float) {
            for (k, p) in trainable.enumerated() { p.value = saved[k]; for i in 0..<p.count { p.value.data[i] += sign * h * v[k].data[i] } }
        }
        move(1); let plus = try loss()
        move(-1); let minus = try loss()
        move(0)
        let differences = [(plus - minus) / (2 * Double(h)), (plus - center) / Double(h), (center - minus) / Double(h)]
        let closest = differences.min { abs($0 - analytic) < abs($1 - analytic) }!
        #expect(abs(closest - analytic) <= 3e-2 * max(abs(closest), abs(analytic), 1e-2),
                "\(extractor) mimic \(mimic) direction \(direction): differences \(differences), analytic \(analytic)")
    }
}
