// The classifier of Table 6: its loss gradient against finite differences for regular, DCNv1 and
// DCNv2 networks with torchvision's res5 (stride 2, no dilation).
import DCNModels
import DCNOps
import DCNTensor
import Testing

func tinyClassifierSpec(conv: ConvKind, stages: [Int], norm: NormKind) -> ResNetSpec {
    var spec = ResNetSpec(block: .bottleneck, layers: [1, 1, 1, 1])
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
    let center = try loss(true)
    // The gradients of the centre point (the finite differences below add more into the block).
    let trainable = model.parameters.trainable, gradients = trainable.map(\.grad)
    var drng = SeededGenerator(seed: 8)
    for (p, g) in zip(trainable, gradients) {
        let v = Tensor.normal(p.shape, using: &drng)
        var analytic = 0.0
        for i in 0..<g.count { analytic += Double(g.data[i]) * Double(v.data[i]) }
        let saved = p.value
        var matched = false, report: [[Double]] = []
        for h: Float in [1e-3, 1e-4] where !matched {
            for i in 0..<p.count { p.value.data[i] = saved.data[i] + h * v.data[i] }
            let plus = try loss()
            for i in 0..<p.count { p.value.data[i] = saved.data[i] - h * v.data[i] }
            let minus = try loss()
            p.value = saved
            let differences = [(plus - minus) / (2 * Double(h)), (plus - center) / Double(h), (center - minus) / Double(h)]
            let closest = differences.min { abs($0 - analytic) < abs($1 - analytic) }!
            matched = abs(closest - analytic) <= 5e-2 * max(abs(closest), abs(analytic)) + 1e-7 / Double(h) * 15
            report.append(differences)
        }
        #expect(matched, "\(conv) \(p.name): differences \(report), analytic \(analytic)")
    }
}
