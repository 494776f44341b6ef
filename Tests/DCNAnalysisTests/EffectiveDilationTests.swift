// dcn-vis dilation's survey: hand-set offsets that turn res5's 3x3 kernels into a dilation-d grid
// give exactly d x stride at every node, and nodes go to the region of the smallest box holding
// their centre.
import DCNAnalysis
import DCNConfig
import DCNData
import DCNModels
import DCNOps
import DCNTensor
import Testing

@Suite struct EffectiveDilationSurvey {
    @Test(arguments: [1, 3, 6])
    func handSetOffsetsGiveDTimesTheStride(d: Int) throws {
        let backbone = try tinyBackbone(res5: .dconv)
        // The offset convs' weights are zero; their biases move tap (ky, kx) by (d - 2)(ky - 1, kx - 1)
        // from res5's dilation-2 grid: a dilation-d grid at every node.
        for layer in backbone.deformableLayers {
            let bias = try #require(layer.offsetConv.bias)
            for k in 0..<9 {
                bias.value.data[2 * k] = Float((d - 2) * (k / 3 - 1))
                bias.value.data[2 * k + 1] = Float((d - 2) * (k % 3 - 1))
            }
        }
        // 128 x 96 image, one 55 x 55 object (medium) and one 20 x 20 object (small) inside it.
        let image = try AnalysisImage(RGBImage(width: 128, height: 96, fill: (120, 90, 60)), size: 96, maxSize: 128)
        var survey = DilationSurvey()
        try survey.add(backbone: backbone, image: image, boxes: [Box(5, 5, 60, 60), Box(20, 20, 40, 40)], Workspace())
        #expect(survey.layers == backbone.deformableLayers.map(\.name) && !survey.layers.isEmpty)
        for layer in backbone.deformableLayers {
            #expect(layer.inputStride == 16)
            for region in [NodeRegion.small, .medium, .background] {
                let s = try #require(survey.statistics(layer.name, region), "\(layer.name) \(region)")
                #expect(abs(s.mean - Double(d * 16)) < 1e-9 && s.std < 1e-9, "\(layer.name) \(region): \(s)")
            }
            #expect(survey.statistics(layer.name, .large) == nil)
            // Stride 16 on 128 x 96: 8 x 6 nodes with centres at 8, 24, 40, 56, ...: 4 x 4 in the medium
            // box, of which 2 x 2 (24 and 40) in the small one; 48 - 16 on the background.
            let counts = NodeRegion.allCases.map { survey.statistics(layer.name, $0)?.nodes ?? 0 }
            #expect(counts == [4, 12, 0, 32], "\(counts)")
        }
    }
}

/// The classifier mode (the offsets-only test): nodes of the evaluation's centre crop, the shape's
/// region by its size against the training sizes.
@Suite struct ClassifierDilationSurvey {
    @Test(arguments: [(0.6, NodeRegion.large), (0.4, .medium), (0.2, .small)])
    func nodesOnTheShapeTakeItsSizeRegion(size: Double, expected: NodeRegion) throws {
        var backbone = BackboneConfig()
        backbone.depth = .r18
        var spec = ResNetSpec(backbone)
        spec.layers = [1, 1, 1, 1]
        spec.stemWidth = 4
        spec.stagePlanes = [4, 6, 8, 8]
        spec.stageConv = [.regular, .dconv, .dconv, .dconv]
        spec.res5Dilation = 1
        spec.frozenStages = 0
        spec.classes = 10
        let network = try ResNet(spec: spec, prefix: "", seed: 3)
        // Offsets that widen every deformable 3x3 kernel from dilation 1 to 3: d x the layer's input stride.
        for layer in network.deformableLayers {
            let bias = try #require(layer.offsetConv.bias)
            for k in 0..<9 {
                bias.value.data[2 * k] = Float(2 * (k / 3 - 1))
                bias.value.data[2 * k + 1] = Float(2 * (k % 3 - 1))
            }
        }
        // A 64 x 64 image seen as evaluation sees it: resized to 64, centre crop 56 (4 px off each side),
        // so the shape's box [14, 14, 46, 46] is [10, 10, 42, 42] in the crop.
        let object = ClassificationObject(file: "val/00_ring/000000.jpg", label: 0, box: [14, 14, 46, 46], size: size)
        var survey = DilationSurvey()
        try survey.add(classifier: network, original: RGBImage(width: 64, height: 64, fill: (100, 150, 200)),
                       view: ResizeCenterCrop(resizeSize: 64, cropSize: 56), object: object, trainingSizes: 0.35...0.45, Workspace())
        #expect(survey.layers == network.deformableLayers.map(\.name) && survey.layers.count == 6)  // two 3x3 convs per basic block
        for layer in network.deformableLayers {
            let outputStride = layer.inputStride * layer.options.strideH
            // Node centres (i + 0.5) x stride inside the 56-px crop; those in [10, 42] are on the shape.
            let centres = (0..<(56 + outputStride - 1) / outputStride).map { (Double($0) + 0.5) * Double(outputStride) }.filter { $0 < 56 }
            let inside = centres.filter { $0 >= 10 && $0 <= 42 }.count
            for region in NodeRegion.allCases {
                let nodes = survey.statistics(layer.name, region)?.nodes ?? 0
                let want = region == expected ? inside * inside : region == .background ? centres.count * centres.count - inside * inside : 0
                #expect(nodes == want, "\(layer.name) \(region): \(nodes) nodes, expected \(want)")
                if let s = survey.statistics(layer.name, region) {
                    #expect(abs(s.mean - Double(3 * layer.inputStride)) < 1e-9 && s.std < 1e-9, "\(layer.name) \(region): \(s)")
                }
            }
        }
        let titles = NodeRegion.classifierTitles(trainingSizes: 0.35...0.45)
        #expect(survey.markdown(regularValue: { _ in nil }, titles: titles).contains("| layer | shapes < 0.35 | shapes 0.35-0.45 | shapes > 0.45 | background | regular kernel |"))
    }
}
