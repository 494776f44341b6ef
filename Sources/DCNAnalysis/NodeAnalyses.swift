// What dcn-vis reports about nodes, as plain functions: the numbers of one node (its pictures:
// NodePictures.swift), the nodes a figure picks from the ground truth, how much of a node's
// support falls inside its object (`focus`), and the effective-dilation table's rows. dcn-vis only
// parses its arguments, loads the model and writes these.
import DCNData
import DCNModels
import DCNTensor
import Foundation

/// The layers whose sampling locations a picture shows: the node's stage's (res5 = layer4); for
/// an RoI node, the RoI pooling's bins.
public func shownLayers(_ node: SupportNode, stage: String) -> (String) -> Bool {
    if case .roi = node { return { $0 == "roi_bins" } }
    let index = ["res2": 1, "res3": 2, "res4": 3, "res5": 4][stage] ?? 4
    return { $0.contains("layer\(index).") }
}

/// "res5[3, 4]", or "2fc of RoI (x1, y1, x2, y2)".
public func describeNode(_ node: SupportNode) -> String {
    switch node {
    case let .unit(stage, row, column): return "\(stage)[\(row), \(column)]"
    case let .roi(box): return String(format: "2fc of RoI (%.0f, %.0f, %.0f, %.0f)", box.x1, box.y1, box.x2, box.y2)
    }
}

/// Run lengths of a row-major mask, starting with a run of false (possibly 0).
public func runLengths(_ mask: [Bool]) -> [Int] {
    var out: [Int] = [], current = false, count = 0
    for m in mask {
        if m == current { count += 1 } else { out.append(count); current = m; count = 1 }
    }
    out.append(count)
    return out
}

// MARK: - One node

/// The sidecar's entries that describe the node: `node` (its point in the resized and the
/// original image, and its stage and position or RoI) and `response_norm` (||f||).
public func nodeNumbers(_ support: NodeSupport, originalX: Double, originalY: Double) -> [String: Any] {
    var node: [String: Any] = ["x": support.x, "y": support.y, "original_x": originalX, "original_y": originalY]
    switch support.node {
    case let .unit(stage, row, column): node["stage"] = stage; node["row"] = row; node["column"] = column
    case let .roi(box): node["stage"] = "head (2fc)"; node["roi"] = [box.x1, box.y1, box.x2, box.y2].map(Double.init)
    }
    return ["node": node, "response_norm": support.gradients.response.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()]
}

// MARK: - Nodes picked from the ground truth

/// A node picked from the ground truth: a point and, for RoI nodes, a box (original pixels).
public struct AutomaticNode {
    public var name: String
    public var x: Double, y: Double
    public var box: (x1: Double, y1: Double, x2: Double, y2: Double)

    public init(name: String, x: Double, y: Double, box: (x1: Double, y1: Double, x2: Double, y2: Double)) {
        self.name = name; self.x = x; self.y = y; self.box = box
    }
}

/// The three automatic nodes of an image: the smallest and largest objects (their centres and
/// boxes) and the background point farthest from every object (with a box of the median object's
/// size around it).
public func automaticNodes(_ image: DatasetImage, width: Int, height: Int) -> [AutomaticNode] {
    let boxes = image.objects.filter { !$0.ignore }.map(\.box)
    var nodes: [AutomaticNode] = []
    func node(_ name: String, _ b: Box) -> AutomaticNode {
        AutomaticNode(name: name, x: Double(b.x1 + b.x2) / 2, y: Double(b.y1 + b.y2) / 2, box: (Double(b.x1), Double(b.y1), Double(b.x2), Double(b.y2)))
    }
    if let small = boxes.min(by: { $0.area < $1.area }), let large = boxes.max(by: { $0.area < $1.area }) {
        nodes.append(node("small", small))
        nodes.append(node("large", large))
    }
    var best = (x: Double(width) / 2, y: Double(height) / 2, distance: -1.0)
    let step = max(4, min(width, height) / 32)
    for y in stride(from: step / 2, to: height, by: step) {
        for x in stride(from: step / 2, to: width, by: step) {
            let d = boxes.map { b -> Double in
                let dx = max(Double(b.x1) - Double(x), 0, Double(x) - Double(b.x2)), dy = max(Double(b.y1) - Double(y), 0, Double(y) - Double(b.y2))
                return (dx * dx + dy * dy).squareRoot()
            }.min() ?? Double.infinity
            // Keep away from the border too: the support of a border node is cut off.
            let score = min(d, Double(min(x, y, width - x, height - y)))
            if score > best.distance { best = (Double(x), Double(y), score) }
        }
    }
    let sorted = boxes.sorted { $0.area < $1.area }
    let typical = sorted.isEmpty ? (w: Double(width) / 4, h: Double(height) / 4)
        : (w: Double(sorted[sorted.count / 2].width), h: Double(sorted[sorted.count / 2].height))
    let bx1 = max(0, best.x - typical.w / 2), by1 = max(0, best.y - typical.h / 2)
    nodes.append(AutomaticNode(name: "background", x: best.x, y: best.y,
                               box: (bx1, by1, min(Double(width), bx1 + typical.w), min(Double(height), by1 + typical.h))))
    return nodes
}

// MARK: - Focus: the support inside the object

/// The share of the ERF mass and of the saliency region's pixels inside `box` (resized pixels).
public func insideShares(_ support: NodeSupport, box: (x1: Double, y1: Double, x2: Double, y2: Double), width: Int, height: Int) -> (erf: Double, saliency: Double) {
    let g = support.gradients
    var inside = 0.0, total = 0.0, regionInside = 0, region = 0
    for y in 0..<height {
        for x in 0..<width {
            let v = Double(g.receptiveField[y * g.width + x])
            let isInside = Double(x) + 0.5 >= box.x1 && Double(x) + 0.5 <= box.x2 && Double(y) + 0.5 >= box.y1 && Double(y) + 0.5 <= box.y2
            total += v
            if isInside { inside += v }
            if let r = support.saliency, r.mask[y * width + x] {
                region += 1
                if isInside { regionInside += 1 }
            }
        }
    }
    return (total > 0 ? inside / total : 0, region > 0 ? Double(regionInside) / Double(region) : 0)
}

/// Mean and quartiles (linear interpolation between order statistics): `mean`, `q1`, `median`, `q3`.
public func meanAndQuartiles(_ values: [Double]) -> [String: Double] {
    let v = values.sorted()
    func quantile(_ q: Double) -> Double {
        let p = q * Double(v.count - 1), i = Int(p.rounded(.down)), f = p - Double(i)
        return i + 1 < v.count ? v[i] * (1 - f) + v[i + 1] * f : v[i]
    }
    return ["mean": v.reduce(0, +) / Double(v.count), "q1": quantile(0.25), "median": quantile(0.5), "q3": quantile(0.75)]
}

/// One object of a focus survey: how much of the support of the node at its box's centre falls inside the box.
public struct FocusObject {
    public var image: String
    public var label: String
    public var erfInside: Double
    public var saliencyInside: Double
    public var saliencyAreaFraction: Double

    /// The object's entry in the JSON file.
    public var numbers: [String: Any] {
        ["image": image, "label": label, "erf_inside": erfInside, "saliency_inside": saliencyInside, "saliency_area_fraction": saliencyAreaFraction]
    }
}

/// The first `maxObjects` objects of `dataset` that are not ignored, in order: for each, the node
/// of `stage` at its box's centre, its ERF mass and saliency region inside the box. `prepare` turns
/// an image of the dataset into what the network sees.
public func focusSurvey(_ support: BackboneSupport, dataset: Dataset, stage: String, errorBound: Double, maxObjects: Int,
                        prepare: (RGBImage) throws -> AnalysisImage) throws -> [FocusObject] {
    var objects: [FocusObject] = []
    outer: for entry in dataset.images {
        let kept = entry.objects.filter { !$0.ignore }
        if kept.isEmpty { continue }
        let image = try prepare(try decodeImage(path: entry.path))
        for object in kept {
            if objects.count >= maxObjects { break outer }
            let s = image.scale
            let b = (x1: Double(object.box.x1) * s, y1: Double(object.box.y1) * s, x2: Double(object.box.x2) * s, y2: Double(object.box.y2) * s)
            let node = try support.analyse(image, .point(stage: stage, x: (b.x1 + b.x2) / 2, y: (b.y1 + b.y2) / 2), errorBound: errorBound)
            let shares = insideShares(node, box: b, width: image.image.width, height: image.image.height)
            objects.append(FocusObject(image: entry.name, label: dataset.classNames[object.label - 1], erfInside: shares.erf,
                                       saliencyInside: shares.saliency, saliencyAreaFraction: node.saliency?.areaFraction ?? 0))
        }
    }
    return objects
}

// MARK: - Effective dilation

/// The effective dilation of `backbone`'s deformable layers with their regular kernels (zero
/// offsets): d x the layer's input stride, in image pixels; nil for another name.
public func regularKernelDilation(_ backbone: ResNet) -> (String) -> Double? {
    let layers = Dictionary(backbone.deformableLayers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    return { name in layers[name].map { Double($0.options.dilationH * $0.inputStride) } }
}

extension DilationSurvey {
    /// One entry per layer and region with nodes, for the JSON file: `layer`, `region`, `mean`,
    /// `std`, `nodes` and `regular_kernel` (0 when `regularValue` has none).
    public func rows(regularValue: (String) -> Double?) -> [[String: Any]] {
        var rows: [[String: Any]] = []
        for layer in layers {
            for region in NodeRegion.allCases {
                guard let s = statistics(layer, region) else { continue }
                rows.append(["layer": layer, "region": region.rawValue, "mean": s.mean, "std": s.std, "nodes": s.nodes,
                             "regular_kernel": regularValue(layer) ?? 0])
            }
        }
        return rows
    }
}
