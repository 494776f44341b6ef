// A synthetic ImageFolder for classification with a geometric shift: one deformed shape per
// image, ten classes (the six detection categories and four distractor shapes), where the
// validation split draws scale, rotation, shear, aspect and elastic warp from wider ranges than
// the training split. A network sees test geometry it was not trained on; deformable layers
// should adapt their sampling to it better than regular ones.
import DCNAnnotations
import DCNTensor
import Foundation

/// The ten classes, in label order (ImageFolder sorts folder names; these are written as
/// `00_ring` ... `09_blob` so the sorted order is this one).
public let syntheticClassificationNames = ["ring", "cross", "star", "arrow", "L", "T", "ellipse", "triangle", "rectangle", "blob"]

/// The ranges one split draws each shape's geometry from (uniformly).
public struct ShapeGeometry: Sendable, Equatable, Codable {
    /// The shape's size, sqrt(area) / image side.
    public var size: ClosedRange<Double>
    /// Rotation, degrees either way.
    public var rotation: Double
    /// Horizontal shear factor, either way.
    public var shear: Double
    /// log(aspect ratio), either way.
    public var logAspect: Double
    /// Amplitude of the elastic warp (three low-frequency sine displacement fields), in units of the shape's half size.
    public var elastic: Double

    /// The training split: mid-sized, nearly upright, mildly sheared and warped shapes.
    public static let training = ShapeGeometry(size: 0.32...0.45, rotation: 15, shear: 0.1, logAspect: 0.1, elastic: 0.04)
    /// The shifted validation split: smaller and larger, rotated, sheared, stretched and warped further.
    public static let shifted = ShapeGeometry(size: 0.2...0.6, rotation: 60, shear: 0.45, logAspect: 0.4, elastic: 0.14)

    /// The training geometry with another size range: splits that differ in scale only.
    public static func training(size: ClosedRange<Double>) -> ShapeGeometry {
        var g = ShapeGeometry.training
        g.size = size
        return g
    }
}

/// The outline of class `label` (0-9) in canonical coordinates.
func classificationOutline(_ label: Int, _ rng: inout SeededGenerator) -> [Point] {
    label < 6 ? categoryOutline(label == 0 ? 1 : label + 1, &rng) : distractorOutline(&rng, kind: label - 6)
}

/// Image `index` of split `split` (0 train, 1 val): class `index % 10`, a `size` x `size` image,
/// and the shape's box (its outline's extent, clipped to the image) and size (sqrt(area) / side).
public func renderClassificationImage(seed: UInt64, split: Int, index: Int, size: Int, geometry: ShapeGeometry)
    -> (image: RGBImage, label: Int, box: Box, relativeSize: Double) {
    var rng = SeededGenerator(seed: deriveSeed(seed, 0x434C_5346, UInt64(split), UInt64(index)))
    func u(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.uniform()) }
    let label = index % syntheticClassificationNames.count
    var canvas = Canvas(width: size, height: size, rgb: [Float](repeating: 0, count: size * size * 3))
    // Background: a two-colour gradient with mild noise.
    let c0 = randomColour(&rng), c1 = randomColour(&rng)
    let angle = u(0, 2 * .pi)
    for y in 0..<size {
        for x in 0..<size {
            let t = Float(min(1, max(0, 0.5 + (cos(angle) * Double(x - size / 2) + sin(angle) * Double(y - size / 2)) / Double(size))))
            let i = (y * size + x) * 3
            canvas.rgb[i] = c0.0 + t * (c1.0 - c0.0) + rng.uniform(-6, 6)
            canvas.rgb[i + 1] = c0.1 + t * (c1.1 - c0.1) + rng.uniform(-6, 6)
            canvas.rgb[i + 2] = c0.2 + t * (c1.2 - c0.2) + rng.uniform(-6, 6)
        }
    }
    // The shape: elastic warp, aspect, shear, rotation, then scaled to its size and placed near the centre.
    var p = densify(classificationOutline(label, &rng), step: 0.08)
    let waves = (0..<3).map { _ in
        let f = u(0.8, 2.2), t = u(0, 2 * .pi)
        return (fx: f * cos(t), fy: f * sin(t), phase: u(0, 2 * .pi), ax: geometry.elastic * u(-1, 1), ay: geometry.elastic * u(-1, 1))
    }
    let theta = u(-geometry.rotation, geometry.rotation) * .pi / 180, shear = u(-geometry.shear, geometry.shear)
    let aspect = exp(u(-geometry.logAspect, geometry.logAspect))
    p = p.map { q in
        var x = q.x, y = q.y
        for w in waves { let s = sin(w.fx * q.x + w.fy * q.y + w.phase); x += w.ax * s; y += w.ay * s }
        x = (x + shear * y) * aspect; y /= aspect
        return (cos(theta) * x - sin(theta) * y, sin(theta) * x + cos(theta) * y)
    }
    let side = u(geometry.size.lowerBound, geometry.size.upperBound) * Double(size)
    let scale = side / max(1e-6, shoelaceArea(p)).squareRoot()
    var minX = Double.infinity, maxX = -Double.infinity, minY = Double.infinity, maxY = -Double.infinity
    for q in p { minX = min(minX, q.x); maxX = max(maxX, q.x); minY = min(minY, q.y); maxY = max(maxY, q.y) }
    let cx = Double(size) / 2 + u(-0.08, 0.08) * Double(size) - (minX + maxX) / 2 * scale
    let cy = Double(size) / 2 + u(-0.08, 0.08) * Double(size) - (minY + maxY) / 2 * scale
    let flat = p.flatMap { [$0.x * scale + cx, $0.y * scale + cy] }
    // A colour that stands out from the background.
    var colour = randomColour(&rng)
    let mean = ((c0.0 + c1.0) / 2, (c0.1 + c1.1) / 2, (c0.2 + c1.2) / 2)
    for _ in 0..<20 where max(abs(colour.0 - mean.0), abs(colour.1 - mean.1), abs(colour.2 - mean.2)) < 70 { colour = randomColour(&rng) }
    canvas.fill(rasterize(polygon: flat, imageWidth: size, imageHeight: size)) { _, _ in colour }
    let pixels = canvas.rgb.map { UInt8(max(0, min(255, $0.rounded()))) }
    let box = Box(Float(minX * scale + cx), Float(minY * scale + cy), Float(maxX * scale + cx), Float(maxY * scale + cy))
    return (try! RGBImage(width: size, height: size, pixels: pixels), label, box.clipped(width: Float(size), height: Float(size)), side / Double(size))
}

/// Writes `out/train/<NN_class>/<index>.jpg` (`train` images per class, `geometry.train`) and
/// `out/val/...` (`val` per class, `geometry.val`: by default the shifted geometry),
/// `out/geometry.json` with both ranges, and `out/objects.json` with each image's shape
/// (`ClassificationObject`, by split and file path under `out`).
public func writeSyntheticClassificationDataset(out: String, trainPerClass: Int, valPerClass: Int, size: Int, seed: UInt64,
                                                jpegQuality: Int = 92,
                                                geometry: (train: ShapeGeometry, val: ShapeGeometry) = (.training, .shifted)) throws
    -> (images: Int, seconds: Double) {
    let start = Date()
    let classes = syntheticClassificationNames.count
    let folders = syntheticClassificationNames.enumerated().map { String(format: "%02d_", $0.offset) + $0.element }
    let splits = [("train", trainPerClass, geometry.train), ("val", valPerClass, geometry.val)]
    var objects: [String: [ClassificationObject]] = [:]
    for (name, _, _) in splits { for f in folders { try createFolder("\(out)/\(name)/\(f)") } }
    for (splitIndex, (name, perClass, geometry)) in splits.enumerated() {
        let count = perClass * classes
        let results = parallelResults(count) { i in
            let drawn = renderClassificationImage(seed: seed, split: splitIndex, index: i, size: size, geometry: geometry)
            let file = String(format: "%@/%@/%06d.jpg", name, folders[drawn.label], i)
            try writeAtomically(try encodeJPEG(drawn.image, quality: jpegQuality), to: out + "/" + file)
            return ClassificationObject(file: file, label: drawn.label, box: drawn.box.array, size: drawn.relativeSize)
        }
        objects[name] = try results.map { result in
            do { return try result.get() } catch { throw DatasetError(file: out, "\(error)") }
        }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let description = ["train": geometry.train, "val": geometry.val]
    try writeAtomically(try encoder.encode(description), to: out + "/geometry.json")
    try writeAtomically(try encoder.encode(objects), to: out + "/objects.json")
    return ((trainPerClass + valPerClass) * classes, Date().timeIntervalSince(start))
}

/// One synthetic classification image's shape, as `objects.json` lists it.
public struct ClassificationObject: Sendable, Equatable, Codable {
    /// The image's path under the dataset folder (`val/03_x/000013.jpg`).
    public var file: String
    public var label: Int
    /// The shape's box [x1, y1, x2, y2] in image pixels.
    public var box: [Float]
    /// sqrt(area) / image side: the quantity `--train-scale` and `--val-scale` draw.
    public var size: Double

    public init(file: String, label: Int, box: [Float], size: Double) {
        self.file = file; self.label = label; self.box = box; self.size = size
    }
}

/// `root/objects.json` (written by `writeSyntheticClassificationDataset`): each image's shape, by split.
public func readClassificationObjects(root: String) throws -> [String: [ClassificationObject]] {
    let path = root + "/objects.json"
    guard let data = FileManager.default.contents(atPath: path) else {
        throw DatasetError(file: path, "not found: the shapes' boxes are written by `dcn-data synth-cls` (datasets made before 2026-12-06 lack it: write the set again)")
    }
    do { return try JSONDecoder().decode([String: [ClassificationObject]].self, from: data) } catch {
        throw DatasetError(file: path, "expected {\"train\": [...], \"val\": [...]} of {file, label, box, size}: \(error)")
    }
}
