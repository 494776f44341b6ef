// The spatial support of a network node (the paper's Section 2.1): for a node of a backbone stage
// (the feature vector f of one position of res5, say), what in the image it depends on.
//
// - Effective receptive field: |d r / d pixel| summed over the colour channels, where the node's
//   response is r = ||f||_2 (so d r / d f = f / ||f||: one backward pass, every channel weighted by
//   its share of the response).
// - Effective sampling locations: the sampling location of tap k of a deformable layer at output
//   q is p = q * stride - padding + k * dilation + offset(q, k); the location's gradient is the
//   offset's (a location is base + offset), so each location gets |d r / d offset(q, k)|. A
//   regular 3x3 convolution is analysed as the deformable one with zero offsets (the same
//   function), whose locations are the regular dilated grid.
// - Error-bounded saliency region: `errorBoundedSaliency`.
import DCNData
import DCNModels
import DCNOps
import DCNTensor
import Foundation

/// One effective sampling location in the network input's pixels.
public struct SamplingPoint: Codable, Sendable, Equatable {
    /// The deformable layer (e.g. `backbone.layer4.2.conv2`).
    public var layer: String
    public var x: Double, y: Double
    /// |d r / d location|.
    public var weight: Double
}

/// A node: the feature vector of a backbone stage at a feature-map position, or the RoI head's 2fc
/// output (the vector the classifier and the box regressor read) for one RoI.
public enum SupportNode: Sendable, Equatable {
    case unit(stage: String, row: Int, column: Int)
    /// The RoI in the network input's pixels.
    case roi(Box)

    public init(stage: String, row: Int, column: Int) { self = .unit(stage: stage, row: row, column: column) }
}

/// What one forward and backward pass says about a node.
public struct NodeGradients {
    /// The node's feature vector on the full image.
    public var response: [Float]
    /// Height x width (of the network input), |d r / d pixel| summed over the channels.
    public var receptiveField: [Float]
    public var height: Int, width: Int
    /// Effective sampling locations of every deformable layer, in the input's pixels.
    public var samples: [SamplingPoint]
    /// d r / d input, [1, 3, H, W].
    public var inputGradient: Tensor
}

/// The analysis of a backbone (and, for RoI nodes, the RoI head on its res5). It owns the network
/// while it runs: every parameter is marked untrainable (only input, offset and modulation
/// gradients are computed) and the deformable layers' observers are set during `gradients`.
public final class BackboneSupport {
    public let backbone: ResNet
    public let head: BoxHead?
    let ws = Workspace()

    public init(backbone: ResNet, head: BoxHead? = nil) {
        self.backbone = backbone
        self.head = head
        for p in backbone.parameters.all + (head?.parameters ?? []) { p.trainable = false }
    }

    /// The feature-map position of image pixel (x, y) in a stage whose map is `featureHeight` x
    /// `featureWidth` for an input of `height` x `width`: the cell whose centre is nearest.
    public static func position(x: Double, y: Double, height: Int, width: Int, featureHeight: Int, featureWidth: Int) -> (row: Int, column: Int) {
        let sy = Double(height) / Double(featureHeight), sx = Double(width) / Double(featureWidth)
        let row = Int(((y + 0.5) / sy - 0.5).rounded()), column = Int(((x + 0.5) / sx - 0.5).rounded())
        return (min(max(row, 0), featureHeight - 1), min(max(column, 0), featureWidth - 1))
    }

    /// The node's feature vector for `input` ([1, 3, H, W]).
    public func response(_ input: Tensor, node: SupportNode) throws -> [Float] {
        let (features, _) = try backbone.forward(input, training: false, ws)
        return try vector(features, node).vector
    }

    /// The node's vector, and for an RoI node the head's pass (whose backward gives dRes5).
    func vector(_ features: FeatureMaps, _ node: SupportNode) throws -> (vector: [Float], head: TrainingPass<Tensor, Tensor, FeatureMaps>?) {
        switch node {
        case let .unit(stage, row, column):
            guard let map = features[stage] else { throw ShapeError("the backbone has no stage \(stage) (res2...res5)") }
            let c = map.dim(1), h = map.dim(2), w = map.dim(3)
            guard (0..<h).contains(row), (0..<w).contains(column) else {
                throw ShapeError("node (\(row), \(column)) is outside \(stage)'s \(h) x \(w) map")
            }
            return ((0..<c).map { map.data[($0 * h + row) * w + column] }, nil)
        case let .roi(box):
            guard let head, features[head.inFeature] != nil else { throw ShapeError("an RoI node needs the detector's RoI head") }
            let pass = try head.embed(features, rois: try Tensor(shape: [1, 5], data: [0, box.x1, box.y1, box.x2, box.y2]), ws)
            return (pass.output.data, pass)
        }
    }

    /// The stage's feature-map size for `input` (from the layer shapes; nothing is computed).
    public func featureSize(_ input: Tensor, stage: String) throws -> (height: Int, width: Int) {
        guard let shape = try backbone.cost(inputShape: input.shape).shapes[stage] else {
            throw ShapeError("the backbone has no stage \(stage) (res2...res5)")
        }
        return (shape[2], shape[3])
    }

    /// One forward and backward pass from r = ||f(node)||: the receptive field and the sampling
    /// locations of every deformable layer (and of the deformable RoI pooling's bins, as layer
    /// `roi_bins`).
    public func gradients(_ input: Tensor, node: SupportNode) throws -> NodeGradients {
        let height = input.dim(2), width = input.dim(3)
        var samples: [SamplingPoint] = []
        let layers = backbone.deformableLayers
        for layer in layers {
            layer.samplingObserver = { observed in samples += Self.points(observed, imageHeight: height, imageWidth: width) }
        }
        head?.extractor.binObserver = { observed in samples += Self.binPoints(observed) }
        defer {
            for layer in layers { layer.samplingObserver = nil }
            head?.extractor.binObserver = nil
        }
        let (features, cache) = try backbone.forward(input, training: false, cacheAllStages: true, ws)
        let (f, headPass) = try vector(features, node)
        let norm = f.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        let unit = f.map { norm > 0 ? Float(Double($0) / norm) : 0 }
        let seeds: FeatureMaps
        switch node {
        case let .unit(stage, row, column):
            let map = features[stage]!
            var seed = Tensor(zeros: map.shape)
            let h = map.dim(2), w = map.dim(3)
            for (c, v) in unit.enumerated() { seed.data[(c * h + row) * w + column] = v }
            seeds = FeatureMaps([stage: seed])
        case .roi:
            seeds = try headPass!.backward(try Tensor(shape: [1, unit.count], data: unit))
        }
        guard let dInput = try backbone.backward(seeds, cache: cache!, wantInput: true, allStages: true, ws) else {
            throw ShapeError("the backbone's backward did not reach the input")
        }
        let plane = height * width
        var field = [Float](repeating: 0, count: plane)
        for c in 0..<3 { for i in 0..<plane { field[i] += abs(dInput.data[c * plane + i]) } }
        return NodeGradients(response: f, receptiveField: field, height: height, width: width, samples: samples, inputGradient: dInput)
    }

    /// The locations of one layer with a non-zero gradient, in the network input's pixels (the
    /// input pixel of feature cell p of a map `s` times smaller has its centre at (p + 0.5) s - 0.5).
    static func points(_ g: SamplingGradients, imageHeight: Int, imageWidth: Int) -> [SamplingPoint] {
        let k = g.kernel, taps = k * k
        let outH = g.dOffset.dim(2), outW = g.dOffset.dim(3), plane = outH * outW
        let groups = g.dOffset.dim(1) / (2 * taps)
        let sy = Double(imageHeight) / Double(g.inputHeight), sx = Double(imageWidth) / Double(g.inputWidth)
        var out: [SamplingPoint] = []
        for group in 0..<groups {
            for t in 0..<taps {
                let cy = (group * taps + t) * 2, cx = cy + 1
                for q in 0..<plane {
                    let gy = Double(g.dOffset.data[cy * plane + q]), gx = Double(g.dOffset.data[cx * plane + q])
                    let weight = (gy * gy + gx * gx).squareRoot()
                    guard weight > 0 else { continue }
                    let i = q / outW, j = q % outW
                    let o = g.options
                    let baseY = i * o.strideH - o.padH + (t / k) * o.dilationH, baseX = j * o.strideW - o.padW + (t % k) * o.dilationW
                    let py = Double(baseY) + Double(g.offset.data[cy * plane + q]), px = Double(baseX) + Double(g.offset.data[cx * plane + q])
                    out.append(SamplingPoint(layer: g.layer, x: (px + 0.5) * sx - 0.5, y: (py + 0.5) * sy - 0.5, weight: weight))
                }
            }
        }
        return out
    }
}

extension BackboneSupport {
    /// The bins of deformable RoI pooling, as locations in image pixels: the centre of bin
    /// (ph, pw) moved by gamma * RoI size * offset, weighted by |d r / d location| (the offset's
    /// gradient divided by gamma * RoI size).
    static func binPoints(_ g: BinGradients) -> [SamplingPoint] {
        let s = g.pooledSize, bins = s * s
        var out: [SamplingPoint] = []
        for r in 0..<g.rois.dim(0) {
            let x1 = Double(g.rois.data[r * 5 + 1]), y1 = Double(g.rois.data[r * 5 + 2])
            let rw = max(Double(g.rois.data[r * 5 + 3]) - x1, 1e-6), rh = max(Double(g.rois.data[r * 5 + 4]) - y1, 1e-6)
            let gamma = Double(g.gamma)
            for b in 0..<bins {
                let ph = b / s, pw = b % s
                let ox = Double(g.offset.data[(r * 2) * bins + b]), oy = Double(g.offset.data[(r * 2 + 1) * bins + b])
                let dx = Double(g.dOffset.data[(r * 2) * bins + b]) / (gamma * rw), dy = Double(g.dOffset.data[(r * 2 + 1) * bins + b]) / (gamma * rh)
                let weight = (dx * dx + dy * dy).squareRoot()
                guard weight > 0 else { continue }
                out.append(SamplingPoint(layer: "roi_bins", x: x1 + (Double(pw) + 0.5) * rw / Double(s) + gamma * rw * ox,
                                         y: y1 + (Double(ph) + 0.5) * rh / Double(s) + gamma * rh * oy, weight: weight))
            }
        }
        return out
    }
}

// MARK: - Error-bounded saliency

/// The result of the saliency search.
public struct SaliencyRegion: Codable, Sendable {
    /// Per pixel of the searched area, whether it is in the region (row-major).
    public var mask: [Bool]
    public var height: Int, width: Int
    /// The bound: relative error ||f(masked) - f|| / ||f|| allowed.
    public var errorBound: Double
    /// The region's share of the searched area and its response error.
    public var areaFraction: Double
    public var error: Double
    /// Every evaluation of the search: (share of the area kept, relative error), by area.
    public var curve: [SearchStep]

    public struct SearchStep: Codable, Sendable {
        public var areaFraction: Double
        public var error: Double
    }
}

/// The smallest region found whose image, with everything else masked, gives the node's response
/// within `errorBound` (relative L2 error of the feature vector).
///
/// The search (ours; the paper's appendix, which defines its own, could not be read here): the
/// area is cut into `patch` x `patch` cells, ordered by their share of `importance` (the effective
/// receptive field, largest first); the region is a prefix of that order, and bisection on the
/// prefix length finds the shortest prefix within the bound (log2(cells) + 1 responses). Cells
/// without importance (outside the node's receptive field) are masked at no cost. `response`
/// gives the node's vector for a kept-pixel mask (masked pixels take the mean pixel, 0 after
/// normalisation); `fullResponse`, when the caller has it, is its value with every pixel kept.
public func errorBoundedSaliency(height: Int, width: Int, patch: Int, importance: [Float], errorBound: Double, fullResponse: [Float]? = nil,
                                 response: ([Bool]) throws -> [Float]) throws -> SaliencyRegion {
    precondition(importance.count == height * width && patch >= 1)
    let rows = (height + patch - 1) / patch, columns = (width + patch - 1) / patch
    var score = [Double](repeating: 0, count: rows * columns)
    for y in 0..<height { for x in 0..<width { score[(y / patch) * columns + x / patch] += Double(importance[y * width + x]) } }
    // Largest first; ties (zero importance) by position, so the order is deterministic.
    let order = score.indices.sorted { score[$0] != score[$1] ? score[$0] > score[$1] : $0 < $1 }
    let informative = order.prefix { score[$0] > 0 }.count
    func mask(_ kept: Int) -> [Bool] {
        var cells = [Bool](repeating: false, count: rows * columns)
        for c in order.prefix(kept) { cells[c] = true }
        return (0..<(height * width)).map { cells[($0 / width / patch) * columns + ($0 % width) / patch] }
    }
    let full = try fullResponse ?? response([Bool](repeating: true, count: height * width))
    let fullNorm = full.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
    var steps: [Int: (area: Double, error: Double)] = [:]
    func error(_ kept: Int) throws -> Double {
        if let e = steps[kept] { return e.error }
        let m = mask(kept)
        let r = try response(m)
        let diff = zip(r, full).reduce(0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
        let e = fullNorm > 0 ? diff / fullNorm : diff
        steps[kept] = (Double(m.filter { $0 }.count) / Double(height * width), e)
        return e
    }
    // Bisection for the shortest prefix within the bound among 0...informative (all informative
    // cells give the full response exactly when the rest has no influence).
    var lo = 0, hi = informative
    if try error(hi) > errorBound { hi = rows * columns }
    while lo < hi {
        let mid = (lo + hi) / 2
        if try error(mid) <= errorBound { hi = mid } else { lo = mid + 1 }
    }
    let region = mask(hi)
    let e = try error(hi)
    let curve = steps.values.sorted { $0.area < $1.area }.map { SaliencyRegion.SearchStep(areaFraction: $0.area, error: $0.error) }
    return SaliencyRegion(mask: region, height: height, width: width, errorBound: errorBound,
                          areaFraction: Double(region.filter { $0 }.count) / Double(height * width), error: e, curve: curve)
}
