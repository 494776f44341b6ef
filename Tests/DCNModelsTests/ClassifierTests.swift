// The classifier of Table 6: its loss gradient against finite differences for regular, DCNv1 and
// DCNv2 networks with torchvision's res5 (stride 2, no dilation).
import DCNConfig
import DCNModels
import DCNOps
import DCNTensor
import Testing

func tinyClassifierSpec(conv: ConvKind, stages: [Int], norm: NormKind) -> ResNetSpec {
    var spec = ResNetSpec(BackboneConfig())  // the backbone section's defaults: R-50's bottleneck blocks
    spec.layers = [1, 1, 1, 1]
    spec.stemWidth = 4
    spec.stagePlanes = [4, 4, 8, 8]
    spec.stageConv = (2...5).map { stages.contains($0) ? conv : .regular }
    spec.res5Dilation = 1
    spec.norm = norm
    spec.frozenStages = 1  // the stem's max pool ties make kinks (ResNetTests checks the stem)
    spec.classes = 3
    return spec
}

@Test(arguments: [(ConvKind.regular, [Int]()), (.dconv, [5]), (.mdconv, [3, 4, 5])])
func classifierLossGradientMatchesFiniteDifferences(conv: ConvKind, stages: [Int]) throws {
    let model = try ImageClassifier(spec: tinyClassifierSpec(conv: conv, stages: stages, norm: .frozenBatchNorm), labelSmoothing: 0.1, seed: 3)
    var rng = SeededGenerator(seed: 5)
    for p in model.parameters.trainable where p.name.contains("offset") { p.value = Tensor.normal(p.shape, std: 0.05, using: &rng) }
    let images = Tensor.normal([2, 3, 48, 48], using: &rng), labels = [2, 0]
    let ws = Workspace()
    func loss(_ gradients: Bool = false) throws -> Double {
        if gradients { model.parameters.zeroGrad() }
        return Double(try model.trainStep(images: images, labels: labels, share: StepShare(seed: 1), ws)["cls"]!)
    }
    try expectGradientsMatchFiniteDifferences(model.parameters.trainable, steps: [1e-3, 1e-4], label: "\(conv)", loss: loss)
}
