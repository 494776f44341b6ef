// dcn-vis dilation's survey: hand-set offsets that turn res5's 3x3 kernels into a dilation-d grid
// give exactly d x stride at every node, and nodes go to the region of the smallest box holding
// their centre.
import DCNAnalysis
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
