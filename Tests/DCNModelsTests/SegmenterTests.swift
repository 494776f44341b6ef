// DeepLab: the segmenter's loss gradient (backbone, offsets, head) against finite differences,
// its losses, inference shapes and errors.
import DCNConfig
import DCNModels
import DCNOps
import DCNTensor
import Testing

func tinySegmenter(conv: ConvKind, stages: [Int], hidden: Int) throws -> SemanticSegmenter {
    var backbone = tinyClassifierSpec(conv: conv, stages: stages, norm: .frozenBatchNorm)
    backbone.classes = nil
    backbone.res5Dilation = 2
    var head = DeepLabHeadSpec(SegmentationConfig())
    head.hiddenChannels = hidden
    return try SemanticSegmenter(spec: SegmenterSpec(backbone: backbone, head: head, classes: 4), seed: 3)
}

@Test(arguments: [(ConvKind.regular, [Int](), 6), (.mdconv, [3, 4, 5], 6), (.regular, [], 0)])
func segmenterLossGradientMatchesFiniteDifferences(conv: ConvKind, stages: [Int], hidden: Int) throws {
    let model = try tinySegmenter(conv: conv, stages: stages, hidden: hidden)
    var rng = SeededGenerator(seed: 5)
    for p in model.parameters.trainable where p.name.contains("offset") { p.value = Tensor.normal(p.shape, std: 0.05, using: &rng) }
    // The head's N(0, 0.01) weights give the backbone gradients of 1e-4: larger ones for the check.
    for p in model.head.parameters { p.value = Tensor.normal(p.shape, std: 0.3, using: &rng) }
    let images = Tensor.normal([2, 3, 32, 48], using: &rng)
    // Blocks of classes, every 11th pixel void.
    let labels: [UInt8] = (0..<(2 * 32 * 48)).map { (i: Int) -> UInt8 in
        let block: Int = i / 48 / 8 + (i % 48) / 12
        return i % 11 == 0 ? 255 : UInt8(block % 4)
    }
    let ws = Workspace()
    func loss(_ gradients: Bool = false) throws -> Double {
        if gradients { model.parameters.zeroGrad() }
        return Double(try model.trainStep(images: images, pixelLabels: labels, share: StepShare(seed: 1), ws)["seg"]!)
    }
    try expectGradientsMatchFiniteDifferences(model.parameters.trainable, steps: [1e-3, 1e-4], label: "\(conv) hidden \(hidden)", loss: loss)
}

@Test func segmenterScoresEveryPixelAndRefusesBadLabels() throws {
    let model = try tinySegmenter(conv: .regular, stages: [], hidden: 6)
    #expect(model.lossGroups.flatMap(\.names) == ["seg"])
    #expect(model.parameters.all.contains { $0.name == "seg_head.fc6.weight" } && model.parameters.all.contains { $0.name == "seg_head.score.bias" })
    let ws = Workspace()
    let images = Tensor(zeros: [1, 3, 32, 48])
    // The padded input's grid, and an original image of 50 x 70 resized to 32 x 45.
    #expect(try model.scores(images, height: 32, width: 48, ws).shape == [1, 4, 32, 48])
    #expect(try model.scores(images, height: 50, width: 70, inputScale: (32.0 / 50, 45.0 / 70), ws).shape == [1, 4, 50, 70])
    #expect(throws: ShapeError.self) { try model.trainStep(images: images, pixelLabels: [0, 1], share: StepShare(seed: 1), ws) }
    #expect(throws: ShapeError.self) {
        try model.trainStep(images: images, pixelLabels: [UInt8](repeating: 9, count: 32 * 48), share: StepShare(seed: 1), ws)
    }
    #expect(throws: ShapeError.self) { try SemanticSegmenter(spec: SegmenterSpec(backbone: ResNetSpec(BackboneConfig()), head: DeepLabHeadSpec(SegmentationConfig()), classes: 1)) }
}
