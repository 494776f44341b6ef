// Detections drawn on validation images, for a person to look at: the ground truth on the left,
// the detections above a score threshold on the right, each box in its class's colour with the
// class name (and score) readable above it, masks blended in. Written at each evaluation during
// training (and to TensorBoard) and by `dcn-eval model --draw N`.
import DCNAnnotations
import DCNData
import DCNModels
import DCNTensor
import Foundation

/// Which images to draw and where.
public struct DrawingRequest: Sendable {
    /// The first `count` images of the evaluation split (the same ones at every evaluation).
    public var count: Int
    /// Written as `<folder>/<prefix><image name>.png`.
    public var folder: String
    public var prefix: String
    /// Detections scoring below this are not drawn.
    public var scoreThreshold: Float

    public init(count: Int, folder: String, prefix: String = "", scoreThreshold: Float) {
        self.count = count; self.folder = folder; self.prefix = prefix; self.scoreThreshold = scoreThreshold
    }
}

/// A written picture.
public struct DrawnImage: Sendable {
    public var imageName: String
    public var path: String
    public var png: Data
    public var width: Int, height: Int
}

/// The shorter side a drawing is scaled to (up or down) so that labels are readable on small
/// images and large ones stay a reasonable size; the longer side is capped at `maxDrawingSide`.
let drawingShortSide = 480, maxDrawingSide = 960

/// The picture of one image: ground truth (left) and detections scoring at least `scoreThreshold`
/// (right), at a scale where the labels are readable.
public func detectionPicture(image: RGBImage, truth: DatasetImage, detections: [ImageDetection], classNames: [String],
                             scoreThreshold: Float) throws -> RGBImage {
    let base = drawingBase(image)
    let size = ImageSize(height: base.height, width: base.width)
    let sx = Double(size.width) / Double(image.width), sy = Double(size.height) / Double(image.height)
    func name(_ label: Int) -> String { label >= 1 && label <= classNames.count ? classNames[label - 1] : "class \(label)" }

    var left = base
    for object in truth.objects {
        let color = object.ignore ? RGBColor(160, 160, 160) : RGBColor.forLabel(object.label)
        if !object.polygons.isEmpty {
            let scaled = object.polygons.map { p in p.enumerated().map { i, v in Double(v) * (i % 2 == 0 ? sx : sy) } }
            if let mask = try? RLE(polygons: scaled, height: size.height, width: size.width).decode() {
                left.blendMask(color, alpha: 0.4) { x, y in mask[x * size.height + y] != 0 }
            }
        }
    }
    var taken: [(x0: Int, y0: Int, x1: Int, y1: Int)] = []
    for object in truth.objects {
        let color = object.ignore ? RGBColor(160, 160, 160) : RGBColor.forLabel(object.label)
        drawBox(&left, object.box, sx: sx, sy: sy, color: color, label: name(object.label) + (object.ignore ? " (crowd)" : ""), taken: &taken)
    }

    let (right, shown) = drawnDetections(on: base, originalSize: ImageSize(height: image.height, width: image.width), detections: detections,
                                        classNames: classNames, scoreThreshold: scoreThreshold)

    let gap = 12, header = 30
    var canvas = try RGBImage.filled(width: 2 * size.width + gap, height: size.height + header, color: .white)
    canvas.drawText("ground truth (\(truth.objects.count))", x: 4, y: 8, scale: 2, RGBColor.black)
    canvas.drawText(detectionsHeader(scoreThreshold: scoreThreshold, shown: shown), x: size.width + gap + 4, y: 8, scale: 2, RGBColor.black)
    canvas.paste(left, x: 0, y: header)
    canvas.paste(right, x: size.width + gap, y: header)
    return canvas
}

/// The picture `dcn-detect` writes for one image: its detections scoring at least `scoreThreshold`
/// drawn as `detectionPicture` draws them (its right half), under a one-line header, at the same
/// readable scale.
public func detectionsPicture(image: RGBImage, detections: [ImageDetection], classNames: [String], scoreThreshold: Float) throws -> RGBImage {
    let base = drawingBase(image)
    let (drawn, shown) = drawnDetections(on: base, originalSize: ImageSize(height: image.height, width: image.width), detections: detections,
                                        classNames: classNames, scoreThreshold: scoreThreshold)
    let header = 30
    var canvas = try RGBImage.filled(width: max(drawn.width, 300), height: drawn.height + header, color: .white)
    canvas.drawText(detectionsHeader(scoreThreshold: scoreThreshold, shown: shown), x: 4, y: 8, scale: 2, RGBColor.black)
    canvas.paste(drawn, x: 0, y: header)
    return canvas
}

/// `image` scaled (up or down) to the drawing size: shorter side `drawingShortSide`, longer side at
/// most `maxDrawingSide`.
func drawingBase(_ image: RGBImage) -> RGBImage {
    let s = min(Double(drawingShortSide) / Double(min(image.width, image.height)), Double(maxDrawingSide) / Double(max(image.width, image.height)))
    let size = ImageSize(height: max(1, Int((Double(image.height) * s).rounded())), width: max(1, Int((Double(image.width) * s).rounded())))
    return size.width == image.width && size.height == image.height
        ? image : ResizeTransform(input: ImageSize(height: image.height, width: image.width), output: size).apply(image: image)
}

func detectionsHeader(scoreThreshold: Float, shown: [ImageDetection]) -> String {
    "detections >= \(String(format: "%.2f", scoreThreshold)) (\(shown.count))"
}

/// The detections scoring at least `scoreThreshold` (boxes, labels, blended masks; detections in
/// the pixels of an image of `originalSize`) drawn on `base`, that image scaled; returns the
/// picture and the detections drawn.
func drawnDetections(on base: RGBImage, originalSize: ImageSize, detections: [ImageDetection], classNames: [String],
                     scoreThreshold: Float) -> (RGBImage, [ImageDetection]) {
    let sx = Double(base.width) / Double(originalSize.width), sy = Double(base.height) / Double(originalSize.height)
    func name(_ label: Int) -> String { label >= 1 && label <= classNames.count ? classNames[label - 1] : "class \(label)" }
    var right = base
    let shown = detections.filter { $0.detection.score >= scoreThreshold }.sorted { $0.detection.score < $1.detection.score }
    for d in shown {
        guard let rle = d.mask, rle.height == originalSize.height, rle.width == originalSize.width, let mask = try? rle.decode() else { continue }
        right.blendMask(RGBColor.forLabel(d.detection.label), alpha: 0.4) { x, y in
            let ox = min(originalSize.width - 1, Int(Double(x) / sx)), oy = min(originalSize.height - 1, Int(Double(y) / sy))
            return mask[ox * originalSize.height + oy] != 0
        }
    }
    // Highest scores first, so their labels take the places above their boxes.
    var taken: [(x0: Int, y0: Int, x1: Int, y1: Int)] = []
    for d in shown.reversed() {
        drawBox(&right, d.detection.box, sx: sx, sy: sy, color: RGBColor.forLabel(d.detection.label),
                label: "\(name(d.detection.label)) \(String(format: "%.2f", d.detection.score))", taken: &taken)
    }
    return (right, shown)
}

/// A box outline and its label: above the box's top-left corner, or where it does not cover an
/// earlier label (`taken`): inside the box's top, then below the box.
private func drawBox(_ image: inout RGBImage, _ box: Box, sx: Double, sy: Double, color: RGBColor, label: String,
                     taken: inout [(x0: Int, y0: Int, x1: Int, y1: Int)]) {
    let x0 = Double(box.x1) * sx, y0 = Double(box.y1) * sy, x1 = Double(box.x2) * sx, y1 = Double(box.y2) * sy
    image.strokeRect(x0: x0, y0: y0, x1: x1, y1: y1, color, thickness: 2)
    let labelHeight = BitmapFont.glyphHeight * 2 + 4
    let left = Int(x0.rounded()), top = Int(y0.rounded()), bottom = Int(y1.rounded())
    let candidates = [top - labelHeight, top, bottom].map { image.labelRect(label, x: left, y: $0, scale: 2) }
    func overlaps(_ r: (x0: Int, y0: Int, x1: Int, y1: Int)) -> Bool { taken.contains { r.x0 < $0.x1 && $0.x0 < r.x1 && r.y0 < $0.y1 && $0.y0 < r.y1 } }
    let rect = candidates.first { !overlaps($0) } ?? candidates[0]
    image.drawLabel(label, x: rect.x0, y: rect.y0, scale: 2, background: color)
    taken.append(rect)
}

/// Draws the first `request.count` images of `dataset` with their `detections` (dataset order)
/// and writes them as PNGs; returns what it wrote.
public func drawDetections(_ detections: [[ImageDetection]], dataset: Dataset, request: DrawingRequest) throws -> [DrawnImage] {
    guard request.count > 0 else { return [] }
    if let problem = folderCreateProblem(request.folder) {
        throw FileError(path: request.folder, "cannot hold the pictures of the detections: \(problem); expected a folder (created if missing)")
    }
    try createFolder(request.folder)
    var drawn: [DrawnImage] = []
    for (image, dets) in zip(dataset.images, detections).prefix(request.count) {
        let pixels = try decodeImage(path: image.path)
        let picture = try detectionPicture(image: pixels, truth: image, detections: dets, classNames: dataset.classNames,
                                           scoreThreshold: request.scoreThreshold)
        let png = try encodePNG(picture)
        let stem = ((image.name as NSString).lastPathComponent as NSString).deletingPathExtension
        let path = request.folder + "/" + request.prefix + stem + ".png"
        try writeAtomically(png, to: path)
        drawn.append(DrawnImage(imageName: image.name, path: path, png: png, width: picture.width, height: picture.height))
    }
    return drawn
}
