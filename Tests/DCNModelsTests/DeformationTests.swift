// The deformation statistics (DCNModels/Deformation.swift) on hand-set offsets: a regular grid, a
// grid widened to dilation d, constant shifts, and the modulation's tallies.
import DCNConfig
import DCNModels
import DCNTensor
import Testing

@Suite struct DeformationStatistics {
    /// Offsets [1, 18, h, w] of a 3x3 kernel that move tap (ky, kx) by (s (ky - 1), s (kx - 1))
    /// (plus a constant shift), at every pixel.
    func offsets(spread s: Float, shift: (Float, Float) = (0, 0), h: Int = 3, w: Int = 4) throws -> Tensor {
        var data = [Float](repeating: 0, count: 18 * h * w)
        for ky in 0..<3 {
            for kx in 0..<3 {
                let k = ky * 3 + kx
                for p in 0..<(h * w) {
                    data[(2 * k) * h * w + p] = s * Float(ky - 1) + shift.0
                    data[(2 * k + 1) * h * w + p] = s * Float(kx - 1) + shift.1
                }
            }
        }
        return try Tensor(shape: [1, 18, h, w], data: data)
    }

    func statistics(_ tally: DeformationTally, stride: Int) -> [String: Double] {
        Dictionary(tally.summary(inputStride: stride).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    @Test(arguments: [(1, 2, 4), (2, 3, 8), (1, 5, 16), (2, 1, 16)])
    func offsetsThatWidenTheKernelToDilationDGiveDTimesTheStride(dilation: Int, d: Int, stride: Int) throws {
        // Tap (ky, kx) of a dilation-`dilation` kernel moved to dilation d: Δp = (d - dilation)(ky - 1, kx - 1).
        var tally = DeformationTally()
        tally.add(offset: try offsets(spread: Float(d - dilation)), mask: nil, kernel: 3, dilation: dilation)
        let s = statistics(tally, stride: stride)
        #expect(s["effective_dilation_image_px"] == Double(d * stride))
        #expect(s["modulation_mean"] == nil)
    }

    @Test func aConstantShiftKeepsTheDilationAndMeasuresTheOffset() throws {
        var tally = DeformationTally()
        tally.add(offset: try offsets(spread: 0, shift: (3, 4)), mask: nil, kernel: 3, dilation: 1)
        let s = statistics(tally, stride: 8)
        #expect(s["effective_dilation_image_px"] == 8)
        #expect(s["offset_mean"] == 5 && s["offset_mean_image_px"] == 40)
        #expect(s["offset_p95"] == 5 && s["offset_p95_image_px"] == 40)
    }

    @Test func zeroOffsetsAreTheRegularKernelAndTalliesAddUp() throws {
        var a = DeformationTally(), b = DeformationTally()
        let mask = try Tensor(shape: [1, 9, 3, 4], data: (0..<108).map { $0 % 4 == 0 ? 0.05 : 0.65 })
        a.add(offset: try offsets(spread: 0), mask: mask, kernel: 3, dilation: 2)
        b.add(offset: try offsets(spread: 0), mask: mask, kernel: 3, dilation: 2)
        a.merge(b)
        let s = statistics(a, stride: 16)
        #expect(s["offset_mean"] == 0 && s["offset_p95"] == 0 && s["effective_dilation_image_px"] == 32)
        #expect(abs(s["modulation_mean"]! - (0.05 + 3 * 0.65) / 4) < 1e-7 && s["modulation_below_0.1"] == 0.25)
        #expect(a.samples == 2 * 9 * 12 && a.adjacentPairs == 2 * 12 * 12)
        #expect(DeformationTally().summary(inputStride: 4).isEmpty)
    }

    /// A bin offset of (0.5, 0) RoI widths times gamma 0.1 on a 160-pixel-wide RoI moves the bin 8
    /// image pixels; (0, 1) on a 50-pixel-tall RoI moves it 5.
    @Test func poolingOffsetsAreMeasuredInImagePixels() throws {
        var tally = DeformationTally()
        let rois = try Tensor(shape: [2, 5], data: [0, 0, 0, 160, 10, 0, 0, 0, 10, 50])
        let offset = try Tensor(shape: [2, 2, 1, 1], data: [0.5, 0, 0, 1])
        let mask = try Tensor(shape: [2, 1, 1, 1], data: [0.05, 0.75])
        tally.addPooling(offset: offset, mask: mask, rois: rois, gamma: 0.1, spatialScale: 1.0 / 16)
        let s = statistics(tally, stride: 16)
        #expect(abs(s["offset_mean_image_px"]! - 6.5) < 1e-6 && s["effective_dilation_image_px"] == nil)
        #expect(abs(s["modulation_mean"]! - 0.4) < 1e-7 && s["modulation_below_0.1"] == 0.5)
    }

    /// A diverging run's offsets (huge, infinite, NaN) are tallied without a trap (the histogram
    /// index of a 1e30-pixel offset overflowed Int), and the summary keeps only finite numbers.
    @Test func divergingOffsetsAreTalliedWithoutATrap() throws {
        var tally = DeformationTally()
        tally.add(offset: try offsets(spread: 1e30), mask: nil, kernel: 3, dilation: 1)
        tally.add(offset: try offsets(spread: .infinity), mask: nil, kernel: 3, dilation: 1)
        tally.add(offset: try offsets(spread: .nan), mask: nil, kernel: 3, dilation: 1)
        #expect(tally.offsetHistogram.last! > 0 && tally.summary(inputStride: 16).allSatisfy { $0.value.isFinite })
    }

    /// A ResNet gives each deformable layer the image pixels per input pixel it sees.
    @Test func theBackboneSetsEachLayersInputStride() throws {
        var spec = ResNetSpec(BackboneConfig())  // the backbone section's defaults: R-50's bottleneck blocks
        spec.layers = [1, 2, 1, 1]
        spec.stemWidth = 8
        spec.stagePlanes = [2, 4, 4, 8]
        spec.stageConv = [.regular, .mdconv, .mdconv, .dconv]
        spec.res5Dilation = 2
        let net = try ResNet(spec: spec)
        #expect(net.deformableLayers.map { "\($0.name) \($0.inputStride)" }
                == ["layer2.0.conv2 4", "layer2.1.conv2 8", "layer3.0.conv2 8", "layer4.0.conv2 16"])
    }
}
