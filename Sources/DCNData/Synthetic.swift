// A synthetic detection dataset whose objects are defined by geometry under non-rigid
// deformation: shape categories (ring, cross, star, arrow, "L", "T") drawn as filled polygons
// (a ring's hole is a keyhole cut, so one COCO polygon describes it) after an elastic warp (a
// smooth low-frequency displacement field), rotation, shear, anisotropic scale and a
// perspective homography (solved with LAPACKE from four point pairs), at small/medium/large
// sizes in COCO's area ranges, over textured, cluttered backgrounds with distractor shapes
// that are not categories, and with partial occlusion (every object keeps at least 60% of its
// pixels visible). Annotations are amodal: the whole polygon of each object.
// `SyntheticDifficulty` sets how crowded, small and cluttered the images are: `.standard` (the
// default, the ablation tables' dataset) or `.easy` (the demo's, learnable from scratch in minutes).
// Everything is a function of (seed, split, image index), so the output is byte-identical for a
// seed whatever the thread count.
import DCNTensor
import Foundation
import DCNAnnotations

/// Category names of the synthetic dataset (COCO category ids 1...6 in this order).
public let syntheticClassNames = ["ring", "cross", "star", "arrow", "L", "T"]

/// How hard the synthetic images are. Both levels draw the same six categories as filled
/// polygons under the same non-rigid deformation chain (elastic warp, rotation, shear,
/// anisotropic scale, perspective), with random colours, so a class is only ever told by its
/// geometry; they differ in how crowded, small and cluttered the images are.
public enum SyntheticDifficulty: String, Sendable, Equatable, CaseIterable {
    /// The dataset of the ablation tables: 2-8 objects per image, 35% of them small (11-30 px,
    /// the square root of the area), 40% medium (35-90 px), 25% large; 1-4 distractor shapes;
    /// 3-10 background lines; background noise amplitude 10-45; object shading up to 60 and
    /// texture up to 25 grey levels; sensor noise sigma 2-8.
    case standard
    /// The demo's dataset, learnable from scratch in minutes: 2-4 objects per image that never
    /// overlap one another, 10% small (18-30 px), 60% medium (35-90 px), 30% large (up to 0.45
    /// of the shorter image side; standard: 0.62); 0-1 distractor; 0-3 background lines;
    /// background noise amplitude 5-20; object shading up to 25 and texture up to 8 grey levels;
    /// sensor noise sigma 1-3; an object's colour differs from both background gradient colours
    /// by at least 60 grey levels in some channel (the colour itself stays random); the same
    /// deformation chain at 0.6 of the standard strength (elastic warp, rotation, shear, aspect,
    /// perspective).
    case easy
}

/// The numbers behind a `SyntheticDifficulty`.
struct DifficultyParameters {
    var objects: ClosedRange<Int>
    var distractors: ClosedRange<Int>
    var lines: ClosedRange<Int>
    /// Cumulative probabilities of the small and medium size classes (the rest is large).
    var smallUpTo: Float, mediumUpTo: Float
    var smallSide: (Float, Float)
    /// Largest side of a large object as a fraction of the image's shorter side.
    var largeMax: Double
    var backgroundNoise: (Float, Float)
    var shadeMax: Float, textureMax: Float
    var sensorNoise: (Float, Float)
    /// Smallest largest-channel difference between an object's colour and the background
    /// gradient's two colours (0 = no constraint, no extra random draws).
    var minContrast: Float
    /// Strength of the deformation chain of category shapes (1 = full; distractors use 0.6).
    var deformation: Double
    /// Smallest visible fraction of every object under later shapes.
    var minVisible: Double

    init(_ d: SyntheticDifficulty) {
        switch d {
        case .standard:
            objects = 2...8; distractors = 1...4; lines = 3...10
            smallUpTo = 0.35; mediumUpTo = 0.75; smallSide = (11, 30); largeMax = 0.62
            backgroundNoise = (10, 45); shadeMax = 60; textureMax = 25; sensorNoise = (2, 8); minContrast = 0
            deformation = 1; minVisible = 0.6
        case .easy:
            objects = 2...4; distractors = 0...1; lines = 0...3
            smallUpTo = 0.10; mediumUpTo = 0.70; smallSide = (18, 30); largeMax = 0.45
            backgroundNoise = (5, 20); shadeMax = 25; textureMax = 8; sensorNoise = (1, 3); minContrast = 60
            deformation = 0.6; minVisible = 1
        }
    }
}

/// A uniform integer in `r` (one draw).
func draw(_ r: ClosedRange<Int>, _ rng: inout SeededGenerator) -> Int {
    r.lowerBound + Int(rng.next() % UInt64(r.upperBound - r.lowerBound + 1))
}

/// Settings of `writeSyntheticDataset`.
public struct SyntheticConfig: Sendable, Equatable {
    public var train: Int
    public var val: Int
    /// Nominal image size: each image's width and height are drawn from [0.8, 1.2] x size.
    public var size: Int
    public var seed: UInt64
    /// Also write `VOCdevkit/VOC2007`.
    public var voc: Bool
    public var jpegQuality: Int
    /// How crowded, small and cluttered the images are; `.standard` (the default) is the
    /// ablation tables' dataset, `.easy` the demo's.
    public var difficulty: SyntheticDifficulty

    public init(train: Int = 400, val: Int = 100, size: Int = 320, seed: UInt64 = 0, voc: Bool = false, jpegQuality: Int = 92,
                difficulty: SyntheticDifficulty = .standard) {
        self.train = train; self.val = val; self.size = size; self.seed = seed; self.voc = voc; self.jpegQuality = jpegQuality
        self.difficulty = difficulty
    }
}

/// One annotated object of a synthetic image. Coordinates are rounded to 0.01 px, the values
/// written to the JSON file, and `bbox`/`area` are computed from those rounded values.
public struct SyntheticObject: Sendable, Equatable {
    /// 1...6, see `syntheticClassNames`.
    public var categoryID: Int
    /// One polygon [x0, y0, x1, y1, ...] (with a keyhole cut for a hole).
    public var polygons: [[Double]]
    /// COCO [x, y, width, height] of the polygon's extent.
    public var bbox: [Double]
    /// Pixel area of the polygon rasterised as pycocotools does (DCNEval's `RLE(polygons:)`).
    public var area: Int
}

/// A rendered synthetic image and its objects.
public struct SyntheticImage: Sendable {
    public var image: RGBImage
    public var objects: [SyntheticObject]
    /// Per pixel (row-major), the category id 1...6 of the topmost shape covering it by more than
    /// half, 0 where that is a distractor or nothing (the semantic labels, SyntheticSegmentation.swift).
    public var classMap: [UInt8]
}

/// Counts and timing of a `writeSyntheticDataset` run.
public struct SyntheticSummary: Sendable {
    public var trainImages: Int
    public var valImages: Int
    public var objects: Int
    public var seconds: Double
}


// MARK: - Shapes

typealias Point = (x: Double, y: Double)

/// The outline of a category in canonical coordinates (about [-1, 1]^2), one closed polygon.
func categoryOutline(_ category: Int, _ rng: inout SeededGenerator) -> [Point] {
    func u(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.uniform()) }
    switch category {
    case 1:  // ring: outer circle, keyhole cut, inner circle backwards
        let inner = u(0.45, 0.7), n = 40
        let start = u(0, 2 * .pi)
        var p = [Point]()
        for k in 0...n { let t = start + 2 * .pi * Double(k) / Double(n); p.append((cos(t), sin(t))) }
        for k in 0...n { let t = start - 2 * .pi * Double(k) / Double(n); p.append((inner * cos(t), inner * sin(t))) }
        return p
    case 2:  // cross (plus)
        let w = u(0.18, 0.3)
        return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
    case 3:  // star with 5 or 6 points
        let points = rng.uniform() < 0.5 ? 5 : 6, inner = u(0.38, 0.5)
        return (0..<(2 * points)).map { k in
            let t = Double.pi * Double(k) / Double(points) - .pi / 2, r = k % 2 == 0 ? 1 : inner
            return (r * cos(t), r * sin(t))
        }
    case 4:  // arrow pointing right
        let shaft = u(0.15, 0.28), head = u(0.55, 0.8), neck = u(0.0, 0.3)
        return [(-1, -shaft), (neck, -shaft), (neck, -head), (1, 0), (neck, head), (neck, shaft), (-1, shaft)]
    case 5:  // L
        let t = u(0.3, 0.5)
        return [(-0.7, -1), (-0.7 + t, -1), (-0.7 + t, 1 - t), (0.8, 1 - t), (0.8, 1), (-0.7, 1)]
    default:  // T
        let t = u(0.3, 0.45)
        return [(-1, -1), (1, -1), (1, -1 + t), (t / 2, -1 + t), (t / 2, 1), (-t / 2, 1), (-t / 2, -1 + t), (-1, -1 + t)]
    }
}

/// Distractor outlines: ellipses, triangles, rectangles, lumpy blobs (none is a category).
/// `kind` 0-3 picks ellipse, triangle, rectangle, blob (nil: a random one).
func distractorOutline(_ rng: inout SeededGenerator, kind: Int? = nil) -> [Point] {
    switch kind ?? Int(rng.next() % 4) {
    case 0:
        let a = 0.5 + 0.5 * Double(rng.uniform())
        return (0..<32).map { k in let t = 2 * Double.pi * Double(k) / 32; return (cos(t), a * sin(t)) }
    case 1:
        return (0..<3).map { k in let t = 2 * Double.pi * (Double(k) + 0.3 * Double(rng.uniform())) / 3; return (cos(t), sin(t)) }
    case 2:
        let a = 0.3 + 0.7 * Double(rng.uniform())
        return [(-1, -a), (1, -a), (1, a), (-1, a)]
    default:
        let phases = (0..<3).map { _ in 2 * Double.pi * Double(rng.uniform()) }
        return (0..<36).map { k in
            let t = 2 * Double.pi * Double(k) / 36
            let r = 0.75 + 0.15 * sin(2 * t + phases[0]) + 0.1 * sin(3 * t + phases[1]) + 0.05 * sin(5 * t + phases[2])
            return (r * cos(t), r * sin(t))
        }
    }
}

/// Splits every edge so no piece is longer than `step` (so warps bend the edges).
func densify(_ p: [Point], step: Double) -> [Point] {
    var out = [Point]()
    for i in 0..<p.count {
        let a = p[i], b = p[(i + 1) % p.count]
        let n = max(1, Int((hypot(b.x - a.x, b.y - a.y) / step).rounded(.up)))
        for k in 0..<n { let t = Double(k) / Double(n); out.append((a.x + t * (b.x - a.x), a.y + t * (b.y - a.y))) }
    }
    return out
}

/// The homography mapping the square corners (+-1, +-1) to `dst` (8 unknowns, h33 = 1), solved
/// with LAPACKE dgesv. Nil when the corners are degenerate.
func homography(to dst: [Point]) -> [Double]? {
    let src: [Point] = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    var a = [Double](repeating: 0, count: 64), b = [Double](repeating: 0, count: 8)
    for i in 0..<4 {
        let (x, y) = src[i], (u, v) = dst[i]
        let r1 = 2 * i, r2 = 2 * i + 1
        a.replaceSubrange(r1 * 8..<(r1 * 8 + 8), with: [x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.replaceSubrange(r2 * 8..<(r2 * 8 + 8), with: [0, 0, 0, x, y, 1, -v * x, -v * y])
        b[r1] = u; b[r2] = v
    }
    guard BLAS.solve(&a, &b, n: 8) else { return nil }
    return b + [1]
}

/// Applies the full deformation chain to a canonical outline: elastic warp, rotation, shear,
/// anisotropic scale, perspective. Returns points in canonical units (unscaled).
private func deform(_ outline: [Point], _ rng: inout SeededGenerator, strength: Double) -> [Point] {
    func u(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.uniform()) }
    var p = densify(outline, step: 0.08)
    // Smooth elastic warp: three low-frequency sinusoidal displacement fields per axis.
    var waves = [(fx: Double, fy: Double, phase: Double, ax: Double, ay: Double)]()
    for _ in 0..<3 {
        let f = u(0.8, 2.2), t = u(0, 2 * .pi)
        waves.append((f * cos(t), f * sin(t), u(0, 2 * .pi), strength * u(-0.12, 0.12), strength * u(-0.12, 0.12)))
    }
    p = p.map { q in
        var dx = 0.0, dy = 0.0
        for w in waves { let s = sin(w.fx * q.x + w.fy * q.y + w.phase); dx += w.ax * s; dy += w.ay * s }
        return (q.x + dx, q.y + dy)
    }
    // Rotation, shear and aspect.
    let theta = u(0, 2 * .pi), shear = strength * u(-0.35, 0.35), aspect = exp(strength * u(-0.3, 0.3))
    let c = cos(theta), s = sin(theta)
    p = p.map { q in
        let x = (q.x + shear * q.y) * aspect, y = q.y / aspect
        return (c * x - s * y, s * x + c * y)
    }
    // Perspective: jitter the square's corners.
    let j = 0.22 * strength
    let corners: [Point] = [(-1 + u(-j, j), -1 + u(-j, j)), (1 + u(-j, j), -1 + u(-j, j)), (1 + u(-j, j), 1 + u(-j, j)), (-1 + u(-j, j), 1 + u(-j, j))]
    if let h = homography(to: corners) {
        p = p.map { q in
            let w = h[6] * q.x + h[7] * q.y + h[8]
            return ((h[0] * q.x + h[1] * q.y + h[2]) / w, (h[3] * q.x + h[4] * q.y + h[5]) / w)
        }
    }
    return p
}

func shoelaceArea(_ p: [Point]) -> Double {
    var s = 0.0
    for i in 0..<p.count { let a = p[i], b = p[(i + 1) % p.count]; s += a.x * b.y - b.x * a.y }
    return abs(s) / 2
}

// MARK: - Rasterisation

/// Antialiased even-odd coverage of a polygon (pixel coordinates, pixel (x, y) covering
/// [x, x+1) x [y, y+1)): 4 sub-scanlines per row, exact horizontal coverage per sub-scanline.
/// Returns the covered window and its coverage in [0, 1].
struct Coverage {
    var x0: Int, y0: Int, width: Int, height: Int
    var values: [Float]
}

func rasterize(polygon flat: [Double], imageWidth: Int, imageHeight: Int) -> Coverage {
    let n = flat.count / 2
    var minX = Double.infinity, maxX = -Double.infinity, minY = Double.infinity, maxY = -Double.infinity
    for i in 0..<n {
        minX = min(minX, flat[2 * i]); maxX = max(maxX, flat[2 * i])
        minY = min(minY, flat[2 * i + 1]); maxY = max(maxY, flat[2 * i + 1])
    }
    let x0 = max(0, Int(minX.rounded(.down))), x1 = min(imageWidth, Int(maxX.rounded(.up)) + 1)
    let y0 = max(0, Int(minY.rounded(.down))), y1 = min(imageHeight, Int(maxY.rounded(.up)) + 1)
    let w = max(0, x1 - x0), h = max(0, y1 - y0)
    var values = [Float](repeating: 0, count: w * h)
    if w == 0 || h == 0 || n < 3 { return Coverage(x0: x0, y0: y0, width: w, height: h, values: values) }
    let sub = 4
    var xs = [Double]()
    for row in 0..<h {
        for k in 0..<sub {
            let y = Double(y0 + row) + (Double(k) + 0.5) / Double(sub)
            xs.removeAll(keepingCapacity: true)
            for i in 0..<n {
                let ax = flat[2 * i], ay = flat[2 * i + 1]
                let j = (i + 1) % n
                let bx = flat[2 * j], by = flat[2 * j + 1]
                if (ay <= y) != (by <= y) { xs.append(ax + (y - ay) / (by - ay) * (bx - ax)) }
            }
            xs.sort()
            var s = 0
            while s + 1 < xs.count {
                let a = max(Double(x0), xs[s]) - Double(x0), b = min(Double(x1), xs[s + 1]) - Double(x0)
                s += 2
                if b <= a { continue }
                let ia = Int(a), ib = Int(b)
                let base = row * w
                let weight = Float(1) / Float(sub)
                if ia == ib {
                    values[base + ia] += weight * Float(b - a)
                } else {
                    values[base + ia] += weight * Float(Double(ia + 1) - a)
                    if ia + 1 < ib { for x in (ia + 1)..<ib { values[base + x] += weight } }
                    if ib < w { values[base + ib] += weight * Float(b - Double(ib)) }
                }
            }
        }
    }
    for i in 0..<values.count where values[i] > 1 { values[i] = 1 }
    return Coverage(x0: x0, y0: y0, width: w, height: h, values: values)
}

/// A float RGB canvas.
struct Canvas {
    let width: Int, height: Int
    var rgb: [Float]

    /// Blends `colour(x, y)` where the coverage is, `alpha` scaled by the coverage.
    mutating func fill(_ c: Coverage, colour: (Int, Int) -> (Float, Float, Float)) {
        for row in 0..<c.height {
            for col in 0..<c.width {
                let a = c.values[row * c.width + col]
                if a <= 0 { continue }
                let x = c.x0 + col, y = c.y0 + row
                let (r, g, b) = colour(x, y)
                let i = (y * width + x) * 3
                rgb[i] += a * (r - rgb[i]); rgb[i + 1] += a * (g - rgb[i + 1]); rgb[i + 2] += a * (b - rgb[i + 2])
            }
        }
    }
}

// MARK: - One image

func randomColour(_ rng: inout SeededGenerator) -> (Float, Float, Float) {
    (rng.uniform(20, 235), rng.uniform(20, 235), rng.uniform(20, 235))
}

/// A thin quad from (ax, ay) to (bx, by), `thickness` px wide.
private func linePolygon(_ ax: Double, _ ay: Double, _ bx: Double, _ by: Double, thickness: Double) -> [Double] {
    let len = max(1e-6, hypot(bx - ax, by - ay))
    let nx = -(by - ay) / len * thickness / 2, ny = (bx - ax) / len * thickness / 2
    return [ax + nx, ay + ny, bx + nx, by + ny, bx - nx, by - ny, ax - nx, ay - ny]
}

/// The background of a synthetic image (drawn first, from `rng`): a two-colour gradient,
/// low-frequency value noise, then random lines. Returns the canvas and the gradient's colours.
func drawSyntheticBackground(width: Int, height: Int, params: DifficultyParameters, rng: inout SeededGenerator)
    -> (canvas: Canvas, c0: (Float, Float, Float), c1: (Float, Float, Float)) {
    var canvas = Canvas(width: width, height: height, rgb: [Float](repeating: 0, count: width * height * 3))
    let c0 = randomColour(&rng), c1 = randomColour(&rng)
    let angle = Double(rng.uniform(0, 2 * .pi))
    let gx = Float(cos(angle)), gy = Float(sin(angle))
    let cells = 6, noiseAmp = rng.uniform(params.backgroundNoise.0, params.backgroundNoise.1)
    let grid = (0..<((cells + 1) * (cells + 1) * 3)).map { _ in rng.uniform(-1, 1) }
    let diag = Float(width * width + height * height).squareRoot()
    for y in 0..<height {
        for x in 0..<width {
            let t = min(1, max(0, 0.5 + (gx * (Float(x) - Float(width) / 2) + gy * (Float(y) - Float(height) / 2)) / diag))
            let fx = Float(x) / Float(width) * Float(cells), fy = Float(y) / Float(height) * Float(cells)
            let ix = min(cells - 1, Int(fx)), iy = min(cells - 1, Int(fy))
            let ax = fx - Float(ix), ay = fy - Float(iy)
            let i = (y * width + x) * 3
            for ch in 0..<3 {
                func g(_ cx: Int, _ cy: Int) -> Float { grid[((cy * (cells + 1)) + cx) * 3 + ch] }
                let v = (1 - ay) * ((1 - ax) * g(ix, iy) + ax * g(ix + 1, iy)) + ay * ((1 - ax) * g(ix, iy + 1) + ax * g(ix + 1, iy + 1))
                let base = ch == 0 ? c0.0 + t * (c1.0 - c0.0) : ch == 1 ? c0.1 + t * (c1.1 - c0.1) : c0.2 + t * (c1.2 - c0.2)
                canvas.rgb[i + ch] = base + noiseAmp * v
            }
        }
    }
    for _ in 0..<draw(params.lines, &rng) {
        let poly = linePolygon(Double(rng.uniform(-20, Float(width) + 20)), Double(rng.uniform(-20, Float(height) + 20)),
                               Double(rng.uniform(-20, Float(width) + 20)), Double(rng.uniform(-20, Float(height) + 20)),
                               thickness: Double(rng.uniform(0.8, 3.5)))
        let colour = randomColour(&rng)
        canvas.fill(rasterize(polygon: poly, imageWidth: width, imageHeight: height)) { _, _ in colour }
    }
    return (canvas, c0, c1)
}

/// Sensor noise (sigma drawn from `params`), then rounding to 8 bits: the last step of every
/// synthetic image.
func quantizeWithSensorNoise(_ canvas: Canvas, params: DifficultyParameters, rng: inout SeededGenerator) -> RGBImage {
    var pixels = [UInt8](repeating: 0, count: canvas.width * canvas.height * 3)
    let sigma = rng.uniform(params.sensorNoise.0, params.sensorNoise.1)
    for i in 0..<pixels.count {
        pixels[i] = UInt8(max(0, min(255, (canvas.rgb[i] + sigma * rng.normal()).rounded())))
    }
    return try! RGBImage(width: canvas.width, height: canvas.height, pixels: pixels)
}

/// Renders image `index` of `split` (0 train, 1 val) for `seed` at `difficulty`: a pure function
/// of its inputs.
public func renderSyntheticImage(seed: UInt64, split: Int, index: Int, size: Int, difficulty: SyntheticDifficulty = .standard) -> SyntheticImage {
    let params = DifficultyParameters(difficulty)
    var rng = SeededGenerator(seed: deriveSeed(seed, UInt64(split), UInt64(index)))
    let width = Int(Double(size) * Double(rng.uniform(0.8, 1.2))), height = Int(Double(size) * Double(rng.uniform(0.8, 1.2)))
    let background = drawSyntheticBackground(width: width, height: height, params: params, rng: &rng)
    var canvas = background.canvas
    let c0 = background.c0, c1 = background.c1

    // Shapes, in drawing order (later ones occlude earlier ones). `owner` is the topmost shape
    // covering each pixel (coverage > 0.5), used to keep 60% (easy: 100%) of every object visible;
    // `shapeClass` is each shape's category, 0 for a distractor.
    var owner = [Int32](repeating: -1, count: width * height)
    var visible = [Int](), total = [Int](), shapeClass = [UInt8]()
    var objects = [SyntheticObject]()
    let objectCount = draw(params.objects, &rng), distractorCount = draw(params.distractors, &rng)
    var kinds = [Int](repeating: 0, count: distractorCount) + (0..<objectCount).map { _ in 1 + Int(rng.next() % 6) }
    for i in stride(from: kinds.count - 1, to: 0, by: -1) { kinds.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    let shortSide = Double(min(width, height))
    for kind in kinds {
        // Size class: small / medium / large in COCO's area ranges.
        let r = rng.uniform()
        let side: Double
        if r < params.smallUpTo { side = Double(rng.uniform(params.smallSide.0, params.smallSide.1)) }
        else if r < params.mediumUpTo { side = Double(rng.uniform(35, 90)) }
        else { side = Double(rng.uniform(100, Float(max(101, params.largeMax * shortSide)))) }
        var placed = false
        for _ in 0..<12 where !placed {
            let outline = kind == 0 ? distractorOutline(&rng) : categoryOutline(kind, &rng)
            let p = deform(outline, &rng, strength: kind == 0 ? 0.6 : params.deformation)
            let scale = side / max(1e-6, shoelaceArea(p)).squareRoot()
            var minX = Double.infinity, maxX = -Double.infinity, minY = Double.infinity, maxY = -Double.infinity
            for q in p { minX = min(minX, q.x); maxX = max(maxX, q.x); minY = min(minY, q.y); maxY = max(maxY, q.y) }
            let bw = (maxX - minX) * scale, bh = (maxY - minY) * scale
            if bw > Double(width) - 4 || bh > Double(height) - 4 { continue }
            let ox = 1 + Double(rng.uniform()) * (Double(width) - 2 - bw) - minX * scale
            let oy = 1 + Double(rng.uniform()) * (Double(height) - 2 - bh) - minY * scale
            // Round to 0.01 px: these are the numbers written to the annotation file.
            var flat = [Double]()
            flat.reserveCapacity(2 * p.count)
            for q in p {
                flat.append(((q.x * scale + ox) * 100).rounded() / 100)
                flat.append(((q.y * scale + oy) * 100).rounded() / 100)
            }
            let coverage = rasterize(polygon: flat, imageWidth: width, imageHeight: height)
            // Occlusion check against every earlier object.
            var taken = [Int: Int]()
            var mine = 0
            for row in 0..<coverage.height {
                for col in 0..<coverage.width where coverage.values[row * coverage.width + col] > 0.5 {
                    mine += 1
                    let o = Int(owner[(coverage.y0 + row) * width + coverage.x0 + col])
                    if o >= 0 && shapeClass[o] != 0 { taken[o, default: 0] += 1 }
                }
            }
            if mine == 0 { continue }
            if taken.contains(where: { o, n in Double(visible[o] - n) < params.minVisible * Double(total[o]) }) { continue }
            placed = true
            let me = Int32(visible.count)
            for (o, n) in taken { visible[o] -= n }
            // Drop pixels of distractors the new shape covers (no constraint on them).
            for row in 0..<coverage.height {
                for col in 0..<coverage.width where coverage.values[row * coverage.width + col] > 0.5 {
                    let i = (coverage.y0 + row) * width + coverage.x0 + col
                    let o = Int(owner[i])
                    if o >= 0 && shapeClass[o] == 0 { visible[o] -= 1 }
                    owner[i] = me
                }
            }
            visible.append(mine); total.append(mine); shapeClass.append(UInt8(kind))
            // Fill: a colour with a linear shading across the shape and fine texture.
            var colour = randomColour(&rng)
            if params.minContrast > 0 && kind != 0 {
                func contrast(_ a: (Float, Float, Float), _ b: (Float, Float, Float)) -> Float { max(abs(a.0 - b.0), abs(a.1 - b.1), abs(a.2 - b.2)) }
                for _ in 0..<32 where min(contrast(colour, c0), contrast(colour, c1)) < params.minContrast { colour = randomColour(&rng) }
            }
            let shade = rng.uniform(0, params.shadeMax), sa = Double(rng.uniform(0, 2 * .pi))
            let sx = Float(cos(sa)), sy = Float(sin(sa))
            let cx = Float(ox), cy = Float(oy), span = Float(max(bw, bh, 1))
            let texture = rng.uniform(0, params.textureMax), tf = rng.uniform(0.2, 0.9)
            canvas.fill(coverage) { x, y in
                let t = (sx * (Float(x) - cx) + sy * (Float(y) - cy)) / span * shade
                let tex = texture * sin(tf * Float(x)) * sin(tf * 1.3 * Float(y))
                return (colour.0 + t + tex, colour.1 + t + tex, colour.2 + t + tex)
            }
            if kind != 0 {
                var x1 = Double.infinity, y1 = Double.infinity, x2 = -Double.infinity, y2 = -Double.infinity
                for k in 0..<(flat.count / 2) {
                    x1 = min(x1, flat[2 * k]); x2 = max(x2, flat[2 * k]); y1 = min(y1, flat[2 * k + 1]); y2 = max(y2, flat[2 * k + 1])
                }
                let bbox = [x1, y1, ((x2 - x1) * 100).rounded() / 100, ((y2 - y1) * 100).rounded() / 100]
                let area = (try? RLE(polygons: [flat], height: height, width: width).area) ?? 0
                objects.append(SyntheticObject(categoryID: kind, polygons: [flat], bbox: bbox, area: area))
            }
        }
    }

    return SyntheticImage(image: quantizeWithSensorNoise(canvas, params: params, rng: &rng), objects: objects,
                          classMap: owner.map { $0 >= 0 ? shapeClass[Int($0)] : 0 })
}

// MARK: - Writing the dataset

/// Writes `out/images/{train,val}/NNNNNN.jpg`, `out/annotations/instances_{train,val}.json`
/// (COCO, polygon segmentations, iscrowd 0) and with `config.voc` also
/// `out/VOCdevkit/VOC2007/{Annotations,ImageSets/Main,JPEGImages}` (splits train, val,
/// trainval and test = val). Image ids are 1...train for train and train+1... for val; file
/// names are the ids with six digits. Images are generated on all cores; the files are the same
/// bytes for a seed whatever the thread count.
public func writeSyntheticDataset(out: String, config: SyntheticConfig) throws -> SyntheticSummary {
    let start = Date()
    let splits = [("train", config.train, 0), ("val", config.val, config.train)]
    let vocRoot = out + "/VOCdevkit/VOC2007"
    try createFolder(out + "/annotations")
    for (name, _, _) in splits { try createFolder(out + "/images/" + name) }
    if config.voc {
        for sub in ["Annotations", "ImageSets/Main", "JPEGImages"] { try createFolder(vocRoot + "/" + sub) }
    }
    var objectTotal = 0
    var vocLists = [String: [String]]()
    for (splitIndex, (name, count, firstID)) in splits.enumerated() {
        let results = parallelResults(count) { i in
            let rendered = renderSyntheticImage(seed: config.seed, split: splitIndex, index: i, size: config.size, difficulty: config.difficulty)
            let id = firstID + i + 1
            let file = String(format: "%06d", id)
            let jpeg = try encodeJPEG(rendered.image, quality: config.jpegQuality)
            try writeAtomically(jpeg, to: "\(out)/images/\(name)/\(file).jpg")
            if config.voc {
                try writeAtomically(jpeg, to: "\(vocRoot)/JPEGImages/\(file).jpg")
                try writeAtomically(Data(vocXML(rendered, file: file).utf8), to: "\(vocRoot)/Annotations/\(file).xml")
            }
            return (objects: rendered.objects, width: rendered.image.width, height: rendered.image.height, id: id)
        }
        let difficultyInfo = config.difficulty == .standard ? "" : ", \"difficulty\": \"\(config.difficulty.rawValue)\""
        var json = "{\"info\": {\"description\": \"DCNv2CPU synthetic deformed shapes\", \"version\": \"1\", \"seed\": \(config.seed)\(difficultyInfo)}, \"licenses\": [], \"images\": ["
        var annotations = [String]()
        var annotationID = splitIndex == 0 ? 1 : 1_000_000
        var imageEntries = [String]()
        for slot in results {
            let rendered = try slot.get()
            let id = rendered.id
            let file = String(format: "%06d", id)
            imageEntries.append("{\"id\": \(id), \"file_name\": \"\(file).jpg\", \"width\": \(rendered.width), \"height\": \(rendered.height)}")
            for o in rendered.objects {
                let seg = o.polygons.map { "[" + $0.map { jsonNumber($0) }.joined(separator: ", ") + "]" }.joined(separator: ", ")
                annotations.append("{\"id\": \(annotationID), \"image_id\": \(id), \"category_id\": \(o.categoryID), \"segmentation\": [\(seg)], \"area\": \(o.area), \"bbox\": [\(o.bbox.map(jsonNumber).joined(separator: ", "))], \"iscrowd\": 0}")
                annotationID += 1
            }
            objectTotal += rendered.objects.count
            vocLists[name, default: []].append(file)
        }
        json += imageEntries.joined(separator: ",\n") + "],\n\"annotations\": [" + annotations.joined(separator: ",\n") + "],\n\"categories\": ["
        json += syntheticClassNames.enumerated().map { "{\"id\": \($0.offset + 1), \"name\": \"\($0.element)\", \"supercategory\": \"shape\"}" }.joined(separator: ", ")
        json += "]}\n"
        try writeAtomically(Data(json.utf8), to: "\(out)/annotations/instances_\(name).json")
    }
    if config.voc {
        let train = vocLists["train"] ?? [], val = vocLists["val"] ?? []
        for (split, ids) in [("train", train), ("val", val), ("trainval", train + val), ("test", val)] {
            try writeAtomically(Data((ids.map { $0 + "\n" }.joined()).utf8), to: "\(vocRoot)/ImageSets/Main/\(split).txt")
        }
    }
    return SyntheticSummary(trainImages: config.train, valImages: config.val, objects: objectTotal, seconds: Date().timeIntervalSince(start))
}

/// Shortest round-trip decimal text of `v` (the value pycocotools will read back exactly).
private func jsonNumber(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e15 { return String(Int(v)) }
    return "\(v)"
}

/// A VOC annotation: 1-based inclusive integer boxes enclosing the polygon's extent.
private func vocXML(_ s: SyntheticImage, file: String) -> String {
    var x = "<annotation>\n  <folder>VOC2007</folder>\n  <filename>\(file).jpg</filename>\n"
    x += "  <size><width>\(s.image.width)</width><height>\(s.image.height)</height><depth>3</depth></size>\n"
    for o in s.objects {
        let xmin = Int(o.bbox[0].rounded(.down)) + 1, ymin = Int(o.bbox[1].rounded(.down)) + 1
        let xmax = min(s.image.width, Int((o.bbox[0] + o.bbox[2]).rounded(.up))), ymax = min(s.image.height, Int((o.bbox[1] + o.bbox[3]).rounded(.up)))
        x += "  <object>\n    <name>\(syntheticClassNames[o.categoryID - 1])</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
        x += "    <bndbox><xmin>\(xmin)</xmin><ymin>\(ymin)</ymin><xmax>\(xmax)</xmax><ymax>\(ymax)</ymax></bndbox>\n  </object>\n"
    }
    return x + "</annotation>\n"
}
