// The spatial-support analysis against what it must give: sampling locations on the regular
// dilated grid for a regular network and moved by exactly the offsets of a deformable layer, a
// mirror-symmetric ERF for a mirror-symmetric network and image, the ERF's gradient against finite
// differences, and the saliency search's region for a node that depends on a known region only.
import DCNConfig
import DCNAnalysis
import DCNModels
import DCNOps
import DCNTensor
import Foundation
import Testing

/// A small basic-block ResNet (res5 dilated, stride 16) with the given res4/res5 convolutions.
func tinyBackbone(res4: ConvKind = .regular, res5: ConvKind, seed: UInt64 = 1) throws -> ResNet {
    var backbone = BackboneConfig()
    backbone.depth = .r18  // basic blocks
    var spec = ResNetSpec(backbone)
    spec.layers = [1, 1, 1, 1]
    spec.stemWidth = 4
    spec.stagePlanes = [4, 6, 8, 8]
    spec.stageConv = [.regular, .regular, res4, res5]
    spec.res5Dilation = 2
    spec.frozenStages = 0
    return try ResNet(spec: spec, seed: seed)
}

func randomInput(height: Int, width: Int, seed: UInt64, mirrored: Bool = false) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    var x = Tensor(zeros: [1, 3, height, width])
    for c in 0..<3 {
        for y in 0..<height {
            for i in 0..<width where !mirrored || i <= width - 1 - i {
                let v = Float(Double(rng.next() % 2000) / 1000 - 1)
                x.data[(c * height + y) * width + i] = v
                if mirrored { x.data[(c * height + y) * width + width - 1 - i] = v }
            }
        }
    }
    return x
}

/// A layer's sampling location in its own input's pixels (undoing the image mapping).
func layerCoordinates(_ p: SamplingPoint, imageSize: Int, layerInput: Int) -> (u: Double, v: Double) {
    let s = Double(imageSize) / Double(layerInput)
    return ((p.x + 0.5) / s - 0.5, (p.y + 0.5) / s - 0.5)
}

@Suite struct SamplingLocations {
    /// A regular res5 analysed as zero-offset DCNv1 layers: every location is a pixel of the
    /// layer's input, and the last layer samples the 3 x 3 grid of dilation 2 around the node.
    @Test func regularNetworkSamplesTheDilatedGrid() throws {
        let backbone = try tinyBackbone(res5: .dconv)
        let support = BackboneSupport(backbone: backbone)
        let x = randomInput(height: 65, width: 65, seed: 2)
        let node = SupportNode(stage: "res5", row: 2, column: 2)
        let g = try support.gradients(x, node: node)
        #expect(!g.samples.isEmpty)
        for p in g.samples {
            let (u, v) = layerCoordinates(p, imageSize: 65, layerInput: 5)
            #expect(abs(u - u.rounded()) < 1e-9 && abs(v - v.rounded()) < 1e-9, "\(p)")
        }
        let last = backbone.deformableLayers.last!.name
        let grid = Set(g.samples.filter { $0.layer == last }.map { p -> [Int] in
            let (u, v) = layerCoordinates(p, imageSize: 65, layerInput: 5)
            return [Int(u.rounded()), Int(v.rounded())]
        })
        #expect(grid == Set([0, 2, 4].flatMap { u in [0, 2, 4].map { [u, $0] } }), "\(grid.sorted { $0.lexicographicallyPrecedes($1) })")
    }

    /// Offsets set by hand (the offset branch's bias: (dy, dx) = (0.25, -0.5) for every tap): the
    /// last layer's locations are the grid moved by exactly those offsets.
    @Test func handSetOffsetsMoveTheLocationsByExactlyThoseOffsets() throws {
        let backbone = try tinyBackbone(res5: .dconv)
        let layer = backbone.deformableLayers.last!
        for t in 0..<9 { layer.offsetConv.bias!.value.data[2 * t] = 0.25; layer.offsetConv.bias!.value.data[2 * t + 1] = -0.5 }
        let g = try BackboneSupport(backbone: backbone).gradients(randomInput(height: 65, width: 65, seed: 3), node: SupportNode(stage: "res5", row: 2, column: 2))
        let points = g.samples.filter { $0.layer == layer.name }
        #expect(points.count == 9)
        var seen = Set<[Int]>()
        for p in points {
            let (u, v) = layerCoordinates(p, imageSize: 65, layerInput: 5)
            let du = u - (u + 0.5).rounded(), dv = v - (v - 0.25).rounded()
            #expect(abs(du + 0.5) < 1e-9 && abs(dv - 0.25) < 1e-9, "location (\(u), \(v))")
            seen.insert([Int((u + 0.5).rounded()), Int((v - 0.25).rounded())])
        }
        #expect(seen == Set([0, 2, 4].flatMap { u in [0, 2, 4].map { [u, $0] } }))
    }
}

@Suite struct ReceptiveFields {
    /// Mirror-symmetric kernels, a mirror-symmetric image and a node on the mirror axis (odd sizes
    /// at every stride keep the axis on a pixel): the ERF is mirror-symmetric. The max pool's
    /// window on the axis holds mirrored pairs of equal values, and a tie sends the gradient to the
    /// left one; a bright line on the axis and a stem that favours its centre column make the
    /// window's maximum the axis pixel itself, so there is no tie.
    @Test func symmetricNetworkAndImageGiveASymmetricField() throws {
        let backbone = try tinyBackbone(res5: .regular)
        for p in backbone.parameters.all where p.value.rank == 4 && p.value.dim(3) > 1 {
            let k = p.value.dim(3), rows = p.value.count / k
            for r in 0..<rows {
                for c in 0..<(k / 2) {
                    let a = r * k + c, b = r * k + k - 1 - c
                    let mean = (p.value.data[a] + p.value.data[b]) / 2
                    p.value.data[a] = mean; p.value.data[b] = mean
                }
            }
        }
        let stem = try #require(backbone.parameters.all.first { $0.name == "conv1.weight" })
        for i in 0..<stem.value.count { stem.value.data[i] = abs(stem.value.data[i]) + (i % 7 == 3 ? 1 : 0) }
        var x = randomInput(height: 65, width: 65, seed: 4, mirrored: true)
        for i in 0..<x.count { x.data[i] = i % 65 == 32 ? 3 : 0.1 * x.data[i] }
        let g = try BackboneSupport(backbone: backbone).gradients(x, node: SupportNode(stage: "res5", row: 1, column: 2))
        let peak = g.receptiveField.max()!
        #expect(peak > 0)
        var worst: Float = 0
        for y in 0..<65 { for i in 0..<65 { worst = max(worst, abs(g.receptiveField[y * 65 + i] - g.receptiveField[y * 65 + 64 - i])) } }
        #expect(worst <= 1e-5 * peak, "largest asymmetry \(worst) of peak \(peak)")
    }

    /// d ||f|| / d pixel against central differences, through DCNv2 layers with non-zero offsets.
    @Test func fieldMatchesFiniteDifferences() throws {
        let backbone = try tinyBackbone(res4: .mdconv, res5: .mdconv, seed: 5)
        var rng = SeededGenerator(seed: 9)
        for layer in backbone.deformableLayers {
            for i in 0..<layer.offsetConv.weight.value.count { layer.offsetConv.weight.value.data[i] = Float(Double(rng.next() % 2000) / 1000 - 1) * 0.05 }
        }
        let support = BackboneSupport(backbone: backbone)
        let x = randomInput(height: 33, width: 33, seed: 6)
        let node = SupportNode(stage: "res5", row: 1, column: 1)
        let g = try support.gradients(x, node: node)
        func r(_ input: Tensor) throws -> Double { try support.response(input, node: node).reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }
        // The 6 pixels (any channel) with the largest gradients and 6 others.
        let order = g.inputGradient.data.indices.sorted { abs(g.inputGradient.data[$0]) > abs(g.inputGradient.data[$1]) }
        let picked = Array(order.prefix(6)) + stride(from: 7, to: order.count, by: order.count / 6).prefix(6).map { order[$0] }
        let h: Float = 4e-3
        for i in picked {
            var plus = x, minus = x
            plus.data[i] += h; minus.data[i] -= h
            let numeric = (try r(plus) - r(minus)) / Double(2 * h)
            let analytic = Double(g.inputGradient.data[i])
            #expect(abs(numeric - analytic) <= 0.03 * abs(analytic) + 2e-4, "element \(i): analytic \(analytic), numeric \(numeric)")
        }
        // The field is |gradient| summed over the channels.
        let plane = 33 * 33
        for i in [0, 100, 544] {
            let sum = (0..<3).map { abs(g.inputGradient.data[$0 * plane + i]) }.reduce(0, +)
            #expect(abs(g.receptiveField[i] - sum) <= 1e-6 * max(1, sum))
        }
    }
}

@Suite struct SaliencySearch {
    /// A node that is a linear function of the pixels of one region only (each pixel its own
    /// component): the search returns exactly that region, and the curve ends at error 0.
    @Test func aNodeThatDependsOnAKnownRegionGetsThatRegion() throws {
        let h = 32, w = 40, patch = 4
        let inRegion = { (y: Int, x: Int) in (8..<20).contains(y) && (12..<28).contains(x) }
        var rng = SeededGenerator(seed: 11)
        let values = (0..<(h * w)).map { _ in Float(Double(rng.next() % 1000) / 1000 + 0.5) }
        let regionPixels = (0..<(h * w)).filter { inRegion($0 / w, $0 % w) }
        let importance = (0..<(h * w)).map { inRegion($0 / w, $0 % w) ? values[$0] : 0 }
        var calls = 0
        let result = try errorBoundedSaliency(height: h, width: w, patch: patch, importance: importance, errorBound: 0.1) { keep in
            calls += 1
            return regionPixels.map { keep[$0] ? values[$0] : 0 }
        }
        #expect(result.mask == (0..<(h * w)).map { inRegion($0 / w, $0 % w) })
        #expect(result.error == 0 && abs(result.areaFraction - Double(12 * 16) / Double(h * w)) < 1e-12)
        // Bisection: about log2(cells) responses, not one per cell.
        #expect(calls <= 10, "\(calls) responses")
        #expect(result.curve.count >= 2 && result.curve.last!.error == 0)
        // A looser bound keeps fewer cells: some error, within the bound.
        let loose = try errorBoundedSaliency(height: h, width: w, patch: patch, importance: importance, errorBound: 0.5) { keep in
            regionPixels.map { keep[$0] ? values[$0] : 0 }
        }
        #expect(loose.areaFraction < result.areaFraction && loose.error <= 0.5 && loose.error > 0)
    }
}
