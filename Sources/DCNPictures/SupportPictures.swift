// Pictures of a node's spatial support (DCNAnalysis computes it): the effective receptive field as
// a heat map, the effective sampling locations as points (size and colour by gradient), the
// error-bounded saliency region as an outline with the rest darkened, and figures of pictures in a
// grid. They take plain values; DCNAnalysis/NodePictures.swift passes a node's.
import DCNData
import DCNTensor
import Foundation

/// A heat colour for v in 0...1 (black-red-yellow-white, like matplotlib's "hot").
func heatColor(_ v: Double) -> RGBColor {
    let t = min(max(v, 0), 1)
    func c(_ x: Double) -> UInt8 { UInt8(min(max(x, 0), 1) * 255) }
    return RGBColor(c(3 * t), c(3 * t - 1), c(3 * t - 2))
}

/// Where a node is drawn: its point and, for an RoI node, its box (the resized image's pixels).
public struct NodeMark: Sendable {
    public var x: Double, y: Double
    public var box: Box?
    public init(x: Double, y: Double, box: Box? = nil) { self.x = x; self.y = y; self.box = box }
}

/// A location whose gradient a sampling picture shows (the resized image's pixels).
public struct WeightedPoint: Sendable {
    public var x: Double, y: Double, weight: Double
    public init(x: Double, y: Double, weight: Double) { self.x = x; self.y = y; self.weight = weight }
}

/// Marks the node: a green cross with a dark border, and an RoI node's box.
func drawNode(_ image: inout RGBImage, _ mark: NodeMark) {
    if let box = mark.box {
        image.strokeRect(x0: Double(box.x1), y0: Double(box.y1), x1: Double(box.x2), y1: Double(box.y2), RGBColor(0, 230, 0), thickness: 2)
    }
    drawNode(&image, x: mark.x, y: mark.y)
}

func drawNode(_ image: inout RGBImage, x: Double, y: Double) {
    let cx = Int(x.rounded()), cy = Int(y.rounded())
    image.fillRect(x0: cx - 7, y0: cy - 2, x1: cx + 8, y1: cy + 3, .black)
    image.fillRect(x0: cx - 2, y0: cy - 7, x1: cx + 3, y1: cy + 8, .black)
    image.fillRect(x0: cx - 6, y0: cy - 1, x1: cx + 7, y1: cy + 2, RGBColor(0, 230, 0))
    image.fillRect(x0: cx - 1, y0: cy - 6, x1: cx + 2, y1: cy + 7, RGBColor(0, 230, 0))
}

/// The effective receptive field over the image: the image darkened, the normalised field's
/// square root (so the tails stay visible) blended in as heat. `field` is row-major with rows
/// `rowLength` long (the network input's width, at least the image's).
public func receptiveFieldPicture(_ field: [Float], rowLength: Int, mark: NodeMark, on image: RGBImage) -> RGBImage {
    var out = image
    let peak = Double(field.max() ?? 0)
    out.blendMask(.black, alpha: 0.55) { _, _ in true }
    if peak > 0 {
        for y in 0..<image.height {
            for x in 0..<image.width {
                let v = (Double(field[y * rowLength + x]) / peak).squareRoot()
                if v > 0.02 { out.blend(x: x, y: y, heatColor(v), alpha: min(1, 0.3 + v)) }
            }
        }
    }
    drawNode(&out, mark)
    return out
}

/// The effective sampling locations `samples` (those of the layers shown): a dot per location
/// whose gradient is at least `minimumShare` of the largest shown, radius and colour growing with
/// the gradient, the strongest drawn last. (With group norm every location of a layer has some
/// gradient, through the groups' statistics; the faintest are left out.)
public func samplingPicture(_ samples: [WeightedPoint], mark: NodeMark, on image: RGBImage, minimumShare: Double = 0.01) -> RGBImage {
    var out = image
    out.blendMask(.black, alpha: 0.35) { _, _ in true }
    var points = samples.sorted { $0.weight < $1.weight }
    let peak = points.last?.weight ?? 0
    points.removeAll { $0.weight < minimumShare * peak }
    guard peak > 0 else { drawNode(&out, mark); return out }
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
    drawNode(&out, mark)
    return out
}

/// The saliency region (`region`: per pixel of the image, row-major, `width` wide and `height`
/// tall; nil: none was searched, the image as it is): outside darkened, its outline in yellow.
public func saliencyPicture(_ region: [Bool]?, width w: Int, height h: Int, mark: NodeMark, on image: RGBImage) -> RGBImage {
    var out = image
    guard let mask = region else { return out }
    out.blendMask(.black, alpha: 0.6) { x, y in !mask[y * w + x] }
    for y in 0..<h {
        for x in 0..<w where mask[y * w + x] {
            func outside(_ nx: Int, _ ny: Int) -> Bool { nx < 0 || ny < 0 || nx >= w || ny >= h || !mask[ny * w + nx] }
            let edge = outside(x - 1, y) || outside(x + 1, y) || outside(x, y - 1) || outside(x, y + 1)
            if edge { out.fillRect(x0: x - 1, y0: y - 1, x1: x + 1, y1: y + 1, RGBColor(255, 230, 0)) }
        }
    }
    drawNode(&out, mark)
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
