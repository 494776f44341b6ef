// DCNv1's Table 2 on our models: the effective dilation of each deformable convolution at nodes
// inside small, medium and large objects and on the background. A node is an output pixel of the
// layer; its region is that of the smallest ground-truth box containing its centre (COCO's area
// ranges on the original image: small < 32^2, medium < 96^2, large above), or the background when
// no box contains it. Its effective dilation is `DeformationTally.effectiveDilations` in image
// pixels: d x stride for a regular kernel.
import DCNData
import DCNModels
import DCNOps
import DCNTensor

/// Where a node lies.
public enum NodeRegion: String, CaseIterable, Sendable {
    case small, medium, large, background

    /// COCO's area ranges (original image pixels).
    public init(area: Float) {
        self = area < 32 * 32 ? .small : area < 96 * 96 ? .medium : .large
    }

    /// A classifier's object against the scales it was trained on: `.small` below the training
    /// range of sizes (sqrt(area) / image side), `.medium` inside it, `.large` above.
    public init(size: Double, trainingSizes: ClosedRange<Double>) {
        self = size < trainingSizes.lowerBound ? .small : size <= trainingSizes.upperBound ? .medium : .large
    }

    /// The column titles of COCO's ranges.
    public static let cocoTitles: [NodeRegion: String] = [.small: "small", .medium: "medium", .large: "large", .background: "background"]
}

/// The effective dilations found so far, per deformable layer and region.
public struct DilationSurvey {
    /// Layer name -> region -> one value per node (image pixels).
    public private(set) var values: [String: [NodeRegion: [Double]]] = [:]
    /// The layers in the network's order.
    public private(set) var layers: [String] = []

    public init() {}

    /// Adds the nodes of every deformable layer of `backbone` on `image`, whose objects have the
    /// boxes `boxes` (original image pixels) in the regions `regions` (by default COCO's area ranges).
    public mutating func add(backbone: ResNet, image: AnalysisImage, boxes: [Box], regions: [NodeRegion]? = nil, _ ws: Workspace) throws {
        try require(regions == nil || regions!.count == boxes.count, "DilationSurvey: \(regions!.count) regions for \(boxes.count) boxes")
        let deformable = backbone.deformableLayers
        var offsets: [String: Tensor] = [:]
        for layer in deformable { layer.offsetObserver = { offsets[layer.name] = $0 } }
        defer { for layer in deformable { layer.offsetObserver = nil } }
        _ = try backbone.forward(image.input, training: false, ws)
        let byArea = zip(boxes, regions ?? boxes.map { NodeRegion(area: $0.area) }).sorted { $0.0.area < $1.0.area }
        for layer in deformable {
            guard let offset = offsets[layer.name] else { continue }
            if !layers.contains(layer.name) { layers.append(layer.name) }
            let height = offset.dim(2), width = offset.dim(3)
            let dilations = DeformationTally.effectiveDilations(offset: offset, kernel: layer.weight.shape[2], dilation: layer.options.dilationH)
            let outputStride = Double(layer.inputStride * layer.options.strideH)
            for i in 0..<height {
                for j in 0..<width {
                    // The node's centre in resized pixels; nodes over the padding are left out.
                    let x = (Double(j) + 0.5) * outputStride, y = (Double(i) + 0.5) * outputStride
                    guard x < Double(image.image.width), y < Double(image.image.height) else { continue }
                    let ox = Float(x / image.scale), oy = Float(y / image.scale)
                    let region = byArea.first { b, _ in ox >= b.x1 && ox <= b.x2 && oy >= b.y1 && oy <= b.y2 }?.1 ?? .background
                    values[layer.name, default: [:]][region, default: []].append(dilations[i * width + j] * Double(layer.inputStride))
                }
            }
        }
    }

    /// Mean, standard deviation (population) and node count of one layer's region; nil without nodes.
    public func statistics(_ layer: String, _ region: NodeRegion) -> (mean: Double, std: Double, nodes: Int)? {
        guard let v = values[layer]?[region], !v.isEmpty else { return nil }
        let mean = v.reduce(0, +) / Double(v.count)
        let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count)
        return (mean, variance.squareRoot(), v.count)
    }

    /// A Markdown table: one row per layer, "mean ± std" per region (columns `titles`), and the regular kernel's value.
    public func markdown(regularValue: (String) -> Double?, titles: [NodeRegion: String] = NodeRegion.cocoTitles) -> String {
        let header = NodeRegion.allCases.map { titles[$0] ?? $0.rawValue }.joined(separator: " | ")
        var text = "| layer | \(header) | regular kernel |\n| --- | --- | --- | --- | --- | --- |\n"
        for layer in layers {
            let cells = NodeRegion.allCases.map { region in
                statistics(layer, region).map { String(format: "%.1f ± %.1f (%d)", $0.mean, $0.std, $0.nodes) } ?? "-"
            }
            text += "| \(layer) | " + cells.joined(separator: " | ") + " | \(regularValue(layer).map { String(format: "%.0f", $0) } ?? "-") |\n"
        }
        return text
    }
}

extension DilationSurvey {
    /// Adds a classifier's nodes on `original` as its evaluation sees it (resized and centre-cropped by
    /// `view`), whose one shape is `object`: the region of a node on the shape is the shape's size
    /// against `trainingSizes` (`NodeRegion(size:trainingSizes:)`).
    public mutating func add(classifier network: ResNet, original: RGBImage, view: ResizeCenterCrop, object: ClassificationObject,
                             trainingSizes: ClosedRange<Double>, _ ws: Workspace) throws {
        let resized = view.resizedSize(height: original.height, width: original.width)
        let crop = view.cropBox(resized: resized)
        let sx = Float(resized.width) / Float(original.width), sy = Float(resized.height) / Float(original.height)
        let b = try Box(object.box)
        let box = Box(b.x1 * sx - Float(crop.left), b.y1 * sy - Float(crop.top), b.x2 * sx - Float(crop.left), b.y2 * sy - Float(crop.top))
        let image = try AnalysisImage(prepared: try view.apply(original))
        try add(backbone: network, image: image, boxes: [box.clipped(width: Float(crop.width), height: Float(crop.height))],
                regions: [NodeRegion(size: object.size, trainingSizes: trainingSizes)], ws)
    }
}

extension NodeRegion {
    /// The column titles of a classifier's survey: shape sizes below, within and above `r`.
    public static func classifierTitles(trainingSizes r: ClosedRange<Double>) -> [NodeRegion: String] {
        [.small: String(format: "shapes < %.2f", r.lowerBound), .medium: String(format: "shapes %.2f-%.2f", r.lowerBound, r.upperBound),
         .large: String(format: "shapes > %.2f", r.upperBound), .background: "background"]
    }
}
