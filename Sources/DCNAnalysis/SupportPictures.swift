// The three analyses of one node on one image, and their pictures: the effective receptive field
// as a heat map, the effective sampling locations as points (size and colour by gradient), and the
// error-bounded saliency region as an outline with the rest darkened.
import DCNData
import DCNModels
import DCNTensor
import Foundation

/// An image as the network sees it: resized (shorter side `size`, longer at most `maxSize`),
/// normalised, padded to a multiple of 32.
public struct AnalysisImage {
    /// The resized image (no padding).
    public var image: RGBImage
    public var input: Tensor
    /// Resized pixels per original pixel.
    public var scale: Double

    public init(_ original: RGBImage, size: Int, maxSize: Int, normalization: PixelNormalization = .imageNet) throws {
        let resize = try ResizeShortestEdge(shortEdgeLengths: [size], maxSize: maxSize)
        let transform = resize.testTransform(for: ImageSize(height: original.height, width: original.width))
        image = transform.output == transform.input ? original : transform.apply(image: original)
        scale = Double(image.width) / Double(original.width)
        input = try padAndStack([normalization.tensor(from: image)], sizeDivisibility: 32).0
    }

    /// An image the network takes as it is (a classifier's centre crop): scale 1, no resizing.
    public init(prepared image: RGBImage, normalization: PixelNormalization = .imageNet) throws {
        self.image = image
        scale = 1
        input = try padAndStack([normalization.tensor(from: image)], sizeDivisibility: 1).0
    }

    /// The input with the pixels where `keep` is false set to the mean pixel (0 after normalisation).
    public func masked(_ keep: [Bool]) -> Tensor {
        var x = input
        let h = input.dim(2), w = input.dim(3), plane = h * w
        for y in 0..<image.height {
            for x0 in 0..<image.width where !keep[y * image.width + x0] {
                for c in 0..<3 { x.data[c * plane + y * w + x0] = 0 }
            }
        }
        return x
    }
}

/// The three analyses of one node.
public struct NodeSupport {
    public var node: SupportNode
    /// The node's point in the resized image's pixels.
    public var x: Double, y: Double
    public var gradients: NodeGradients
    public var saliency: SaliencyRegion?
}

/// Which node to analyse, in the resized image's pixels.
public enum NodeRequest {
    /// The position of `stage` nearest to (x, y).
    case point(stage: String, x: Double, y: Double)
    /// The RoI head's 2fc output for this box.
    case roi(Box)
}

extension BackboneSupport {
    /// The node `request` names, its gradients and, when `errorBound` is set, its saliency region
    /// over the image (cells of `patch` pixels).
    public func analyse(_ image: AnalysisImage, _ request: NodeRequest, errorBound: Double?, patch: Int = 8) throws -> NodeSupport {
        let node: SupportNode, x: Double, y: Double
        switch request {
        case let .point(stage, px, py):
            let size = try featureSize(image.input, stage: stage)
            let p = Self.position(x: px, y: py, height: image.input.dim(2), width: image.input.dim(3), featureHeight: size.height, featureWidth: size.width)
            node = .unit(stage: stage, row: p.row, column: p.column)
            (x, y) = (px, py)
        case let .roi(box):
            node = .roi(box)
            (x, y) = (Double(box.x1 + box.x2) / 2, Double(box.y1 + box.y2) / 2)
        }
        let gradients = try self.gradients(image.input, node: node)
        var saliency: SaliencyRegion? = nil
        if let errorBound {
            // The searched area is the image (not the padding); importance is the ERF there.
            let h = image.image.height, w = image.image.width
            var importance = [Float](repeating: 0, count: h * w)
            for yy in 0..<h { for xx in 0..<w { importance[yy * w + xx] = gradients.receptiveField[yy * gradients.width + xx] } }
            saliency = try errorBoundedSaliency(height: h, width: w, patch: patch, importance: importance, errorBound: errorBound,
                                                fullResponse: gradients.response) { keep in
                try response(image.masked(keep), node: node)
            }
        }
        return NodeSupport(node: node, x: x, y: y, gradients: gradients, saliency: saliency)
    }
}

/// A heat colour for v in 0...1 (black-red-yellow-white, like matplotlib's "hot").
func heatColor(_ v: Double) -> RGBColor {
    let t = min(max(v, 0), 1)
    func c(_ x: Double) -> UInt8 { UInt8(min(max(x, 0), 1) * 255) }
    return RGBColor(c(3 * t), c(3 * t - 1), c(3 * t - 2))
}

/// Marks the node: a green cross with a dark border, and an RoI node's box.
func drawNode(_ image: inout RGBImage, _ support: NodeSupport) {
    if case let .roi(box) = support.node {
        image.strokeRect(x0: Double(box.x1), y0: Double(box.y1), x1: Double(box.x2), y1: Double(box.y2), RGBColor(0, 230, 0), thickness: 2)
    }
    drawNode(&image, x: support.x, y: support.y)
}

func drawNode(_ image: inout RGBImage, x: Double, y: Double) {
    let cx = Int(x.rounded()), cy = Int(y.rounded())
    image.fillRect(x0: cx - 7, y0: cy - 2, x1: cx + 8, y1: cy + 3, .black)
    image.fillRect(x0: cx - 2, y0: cy - 7, x1: cx + 3, y1: cy + 8, .black)
    image.fillRect(x0: cx - 6, y0: cy - 1, x1: cx + 7, y1: cy + 2, RGBColor(0, 230, 0))
    image.fillRect(x0: cx - 1, y0: cy - 6, x1: cx + 2, y1: cy + 7, RGBColor(0, 230, 0))
}

/// The effective receptive field over the image: the image darkened, the normalised field's
/// square root (so the tails stay visible) blended in as heat.
public func receptiveFieldPicture(_ support: NodeSupport, on image: RGBImage) -> RGBImage {
    var out = image
    let g = support.gradients
    let peak = Double(g.receptiveField.max() ?? 0)
    out.blendMask(.black, alpha: 0.55) { _, _ in true }
    if peak > 0 {
        for y in 0..<image.height {
            for x in 0..<image.width {
                let v = (Double(g.receptiveField[y * g.width + x]) / peak).squareRoot()
                if v > 0.02 { out.blend(x: x, y: y, heatColor(v), alpha: min(1, 0.3 + v)) }
            }
        }
    }
    drawNode(&out, support)
    return out
}

/// The effective sampling locations of the layers whose names `include` accepts: a dot per
/// location whose gradient is at least `minimumShare` of the largest shown, radius and colour
/// growing with the gradient, the strongest drawn last. (With group norm every location of a
/// layer has some gradient, through the groups' statistics; the faintest are left out.)
public func samplingPicture(_ support: NodeSupport, on image: RGBImage, include: (String) -> Bool, minimumShare: Double = 0.01) -> RGBImage {
    var out = image
    out.blendMask(.black, alpha: 0.35) { _, _ in true }
    var points = support.gradients.samples.filter { include($0.layer) }.sorted { $0.weight < $1.weight }
    let peak = points.last?.weight ?? 0
    points.removeAll { $0.weight < minimumShare * peak }
    guard peak > 0 else { drawNode(&out, support); return out }
    for p in points {
        let v = (p.weight / peak).squareRoot()
        let r = 1.5 + 3.5 * v
        let color = heatColor(0.35 + 0.65 * v)
        let x0 = Int((p.x - r).rounded()), x1 = Int((p.x + r).rounded()), y0 = Int((p.y - r).rounded()), y1 = Int((p.y + r).rounded())
        for yy in y0...y1 {
            for xx in x0...x1 where (Double(xx) - p.x) * (Double(xx) - p.x) + (Double(yy) - p.y) * (Double(yy) - p.y) <= r * r {
                out.blend(x: xx, y: yy, color, alpha: 0.9)
            }
        }
    }
    drawNode(&out, support)
    return out
}

/// The saliency region: outside darkened, its outline in yellow.
public func saliencyPicture(_ support: NodeSupport, on image: RGBImage) -> RGBImage {
    var out = image
    guard let region = support.saliency else { return out }
    let w = region.width, h = region.height
    out.blendMask(.black, alpha: 0.6) { x, y in !region.mask[y * w + x] }
    for y in 0..<h {
        for x in 0..<w where region.mask[y * w + x] {
            func outside(_ nx: Int, _ ny: Int) -> Bool { nx < 0 || ny < 0 || nx >= w || ny >= h || !region.mask[ny * w + nx] }
            let edge = outside(x - 1, y) || outside(x + 1, y) || outside(x, y - 1) || outside(x, y + 1)
            if edge { out.fillRect(x0: x - 1, y0: y - 1, x1: x + 1, y1: y + 1, RGBColor(255, 230, 0)) }
        }
    }
    drawNode(&out, support)
    return out
}

/// Pictures side by side in rows, each with a caption above, on white.
public func pictureGrid(_ rows: [[(caption: String, image: RGBImage)]], cellWidth: Int, rowTitles: [String] = []) throws -> RGBImage {
    let captionH = 22, gap = 6, titleW = rowTitles.isEmpty ? 0 : 12 + 6 * 2 * (rowTitles.map(\.count).max() ?? 0)
    let cellHeights = rows.map { row in row.map { Int((Double($0.image.height) * Double(cellWidth) / Double($0.image.width)).rounded()) }.max() ?? 0 }
    let columns = rows.map(\.count).max() ?? 0
    let width = titleW + columns * (cellWidth + gap) + gap
    let height = cellHeights.reduce(0) { $0 + $1 + captionH + gap } + gap
    var canvas = try RGBImage.filled(width: max(width, 1), height: max(height, 1), color: .white)
    var top = gap
    for (r, row) in rows.enumerated() {
        if r < rowTitles.count { canvas.drawText(rowTitles[r], x: 6, y: top + captionH + cellHeights[r] / 2 - 7, scale: 2, .black) }
        for (c, cell) in row.enumerated() {
            let left = titleW + gap + c * (cellWidth + gap)
            canvas.drawText(cell.caption, x: left, y: top + 4, scale: 2, .black)
            let h = Int((Double(cell.image.height) * Double(cellWidth) / Double(cell.image.width)).rounded())
            let scaled = cell.image.width == cellWidth ? cell.image
                : ResizeTransform(input: ImageSize(height: cell.image.height, width: cell.image.width), output: ImageSize(height: max(h, 1), width: cellWidth))
                    .apply(image: cell.image)
            canvas.paste(scaled, x: left, y: top + captionH)
        }
        top += cellHeights[r] + captionH + gap
    }
    return canvas
}
