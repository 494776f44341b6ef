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
}

/// The effective dilations found so far, per deformable layer and region.
public struct DilationSurvey {
    /// Layer name -> region -> one value per node (image pixels).
    public private(set) var values: [String: [NodeRegion: [Double]]] = [:]
    /// The layers in the network's order.
    public private(set) var layers: [String] = []

    public init() {}

    /// Adds the nodes of every deformable layer of `backbone` on `image`, whose objects have the
    /// boxes `boxes` (original image pixels).
    public mutating func add(backbone: ResNet, image: AnalysisImage, boxes: [Box], _ ws: Workspace) throws {
        let deformable = backbone.deformableLayers
        var offsets: [String: Tensor] = [:]
        for layer in deformable { layer.offsetObserver = { offsets[layer.name] = $0 } }
        defer { for layer in deformable { layer.offsetObserver = nil } }
        _ = try backbone.forward(image.input, training: false, ws)
        let byArea = boxes.sorted { $0.area < $1.area }
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
                    let region = byArea.first { ox >= $0.x1 && ox <= $0.x2 && oy >= $0.y1 && oy <= $0.y2 }.map { NodeRegion(area: $0.area) } ?? .background
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

    /// A Markdown table: one row per layer, "mean ± std" per region, and the regular kernel's value.
    public func markdown(regularValue: (String) -> Double?) -> String {
        var text = "| layer | small | medium | large | background | regular kernel |\n| --- | --- | --- | --- | --- | --- |\n"
        for layer in layers {
            let cells = NodeRegion.allCases.map { region in
                statistics(layer, region).map { String(format: "%.1f ± %.1f (%d)", $0.mean, $0.std, $0.nodes) } ?? "-"
            }
            text += "| \(layer) | " + cells.joined(separator: " | ") + " | \(regularValue(layer).map { String(format: "%.0f", $0) } ?? "-") |\n"
        }
        return text
    }
}
