// Synthetic videos in the ImageNet VID layout (`dcn-data synth --video`): short sequences of the
// synthetic shapes (Synthetic.swift's categories, background, rasteriser and sensor noise) that
// move, scale, turn and deform smoothly over the frames. Each shape's deformation chain is
// Synthetic.swift's (elastic warp, rotation, shear, anisotropic scale, perspective) with every
// parameter interpolated between a start and an end draw, and the warp's waves travelling, so a
// shape changes its geometry from frame to frame. Annotations are ILSVRC frame XML (`trackid`,
// `name` = the class name, 0-based inclusive `bndbox`); lists as MSRA's (docs/video.md).
// Everything is a function of (seed, split, video), byte-identical whatever the thread count.
import DCNAnnotations
import DCNTensor
import Foundation

/// Settings of `writeSyntheticVideoDataset`.
public struct SyntheticVideoConfig: Sendable, Equatable {
    public var trainVideos: Int
    public var valVideos: Int
    /// Frames per video.
    public var frames: Int
    /// Nominal frame size: each video's width and height are drawn from [0.8, 1.2] x size.
    public var size: Int
    public var seed: UInt64
    public var jpegQuality: Int
    public var difficulty: SyntheticDifficulty
    public init(trainVideos: Int = 40, valVideos: Int = 10, frames: Int = 12, size: Int = 320, seed: UInt64 = 0, jpegQuality: Int = 92,
                difficulty: SyntheticDifficulty = .easy) {
        self.trainVideos = trainVideos; self.valVideos = valVideos; self.frames = frames; self.size = size; self.seed = seed
        self.jpegQuality = jpegQuality; self.difficulty = difficulty
    }
}

/// One object of a synthetic frame.
public struct SyntheticTrackedObject: Sendable, Equatable {
    /// The same object in every frame of its video.
    public var trackID: Int
    /// 1...6, see `syntheticClassNames`.
    public var categoryID: Int
    /// ILSVRC box: 0-based inclusive pixels enclosing the polygon (clipped to the frame).
    public var box: VOCBox
}

/// A rendered video: its frames and each frame's objects.
public struct SyntheticVideo: Sendable {
    public var frames: [RGBImage]
    public var objects: [[SyntheticTrackedObject]]
}

/// One value of a shape's geometry at its start and end; `at(t)` interpolates linearly.
private struct Ramp {
    var start: Double, end: Double
    func at(_ t: Double) -> Double { start + (end - start) * t }
}

/// A moving shape: its outline and every parameter of the deformation chain as a ramp.
private struct MovingShape {
    var category: Int
    var outline: [Point]
    /// Elastic warp: direction/frequency fixed, phase travelling, amplitudes ramped.
    var waves: [(fx: Double, fy: Double, phase: Ramp, ax: Ramp, ay: Ramp)]
    var rotation: Ramp, shear: Ramp, logAspect: Ramp
    /// The perspective square's four corners (x, y each).
    var corners: [Ramp]
    /// sqrt(area) in pixels, and the centre of the box.
    var side: Ramp, cx: Ramp, cy: Ramp
    var colour: (Float, Float, Float)
    var texture: Float, textureFrequency: Float

    init(category: Int, width: Int, height: Int, params: DifficultyParameters, rng: inout SeededGenerator) {
        func u(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.uniform()) }
        let strength = params.deformation
        self.category = category
        outline = densify(categoryOutline(category, &rng), step: 0.08)
        waves = (0..<3).map { _ in
            let f = u(0.8, 2.2), t = u(0, 2 * .pi), phase = u(0, 2 * .pi)
            return (f * cos(t), f * sin(t), Ramp(start: phase, end: phase + u(-1.5, 1.5)),
                    Ramp(start: strength * u(-0.12, 0.12), end: strength * u(-0.12, 0.12)),
                    Ramp(start: strength * u(-0.12, 0.12), end: strength * u(-0.12, 0.12)))
        }
        let theta = u(0, 2 * .pi)
        rotation = Ramp(start: theta, end: theta + u(-0.8, 0.8))
        shear = Ramp(start: strength * u(-0.35, 0.35), end: strength * u(-0.35, 0.35))
        logAspect = Ramp(start: strength * u(-0.3, 0.3), end: strength * u(-0.3, 0.3))
        let j = 0.22 * strength
        corners = [-1.0, -1, 1, -1, 1, 1, -1, 1].map { Ramp(start: $0 + u(-j, j), end: $0 + u(-j, j)) }
        let shortSide = Double(min(width, height))
        let s0 = u(0.18, 0.4) * shortSide
        side = Ramp(start: s0, end: s0 * exp(u(-0.35, 0.35)))
        let x0 = u(0.25, 0.75) * Double(width), y0 = u(0.25, 0.75) * Double(height)
        cx = Ramp(start: x0, end: x0 + u(-0.3, 0.3) * Double(width))
        cy = Ramp(start: y0, end: y0 + u(-0.3, 0.3) * Double(height))
        colour = randomColour(&rng)
        texture = rng.uniform(0, params.textureMax)
        textureFrequency = rng.uniform(0.2, 0.9)
    }

    /// The polygon at time t in [0, 1], in pixels rounded to 0.01 (kept inside the frame).
    func polygon(at t: Double, width: Int, height: Int) -> [Double] {
        var p = outline.map { q -> Point in
            var dx = 0.0, dy = 0.0
            for w in waves { let s = sin(w.fx * q.x + w.fy * q.y + w.phase.at(t)); dx += w.ax.at(t) * s; dy += w.ay.at(t) * s }
            return (q.x + dx, q.y + dy)
        }
        let c = cos(rotation.at(t)), s = sin(rotation.at(t)), sh = shear.at(t), aspect = exp(logAspect.at(t))
        p = p.map { q in
            let x = (q.x + sh * q.y) * aspect, y = q.y / aspect
            return (c * x - s * y, s * x + c * y)
        }
        let dst: [Point] = (0..<4).map { (corners[2 * $0].at(t), corners[2 * $0 + 1].at(t)) }
        if let h = homography(to: dst) {
            p = p.map { q in
                let w = h[6] * q.x + h[7] * q.y + h[8]
                return ((h[0] * q.x + h[1] * q.y + h[2]) / w, (h[3] * q.x + h[4] * q.y + h[5]) / w)
            }
        }
        var scale = side.at(t) / max(1e-6, shoelaceArea(p)).squareRoot()
        var minX = Double.infinity, maxX = -Double.infinity, minY = Double.infinity, maxY = -Double.infinity
        for q in p { minX = min(minX, q.x); maxX = max(maxX, q.x); minY = min(minY, q.y); maxY = max(maxY, q.y) }
        // Shrink a shape that would not fit, then keep its box inside [1, size - 2].
        scale = min(scale, (Double(width) - 4) / max(1e-6, maxX - minX), (Double(height) - 4) / max(1e-6, maxY - minY))
        let bw = (maxX - minX) * scale, bh = (maxY - minY) * scale
        let left = min(max(1, cx.at(t) - bw / 2), Double(width) - 2 - bw), top = min(max(1, cy.at(t) - bh / 2), Double(height) - 2 - bh)
        var flat = [Double]()
        flat.reserveCapacity(2 * p.count)
        for q in p {
            flat.append((((q.x - minX) * scale + left) * 100).rounded() / 100)
            flat.append((((q.y - minY) * scale + top) * 100).rounded() / 100)
        }
        return flat
    }
}

/// Renders video `index` of `split` (0 train, 1 val): `frames` frames of 1-4 moving shapes (2-8
/// at `.standard`) over one background; each frame has its own sensor noise. A pure function of
/// its inputs.
public func renderSyntheticVideo(seed: UInt64, split: Int, index: Int, frames: Int, size: Int,
                                 difficulty: SyntheticDifficulty = .easy) -> SyntheticVideo {
    let params = DifficultyParameters(difficulty)
    // Streams 2 and 3 keep the videos' draws apart from the still images' (splits 0 and 1).
    var rng = SeededGenerator(seed: deriveSeed(seed, UInt64(2 + split), UInt64(index)))
    let width = Int(Double(size) * Double(rng.uniform(0.8, 1.2))), height = Int(Double(size) * Double(rng.uniform(0.8, 1.2)))
    let background = drawSyntheticBackground(width: width, height: height, params: params, rng: &rng).canvas
    let shapes = (0..<draw(params.objects, &rng)).map { _ in
        MovingShape(category: 1 + Int(rng.next() % 6), width: width, height: height, params: params, rng: &rng)
    }
    var video = SyntheticVideo(frames: [], objects: [])
    for f in 0..<frames {
        let t = frames > 1 ? Double(f) / Double(frames - 1) : 0
        var canvas = background
        var objects = [SyntheticTrackedObject]()
        for (track, shape) in shapes.enumerated() {
            let flat = shape.polygon(at: t, width: width, height: height)
            let colour = shape.colour, texture = shape.texture, tf = shape.textureFrequency
            canvas.fill(rasterize(polygon: flat, imageWidth: width, imageHeight: height)) { x, y in
                let tex = texture * sin(tf * Float(x)) * sin(tf * 1.3 * Float(y))
                return (colour.0 + tex, colour.1 + tex, colour.2 + tex)
            }
            var x1 = Double.infinity, y1 = Double.infinity, x2 = -Double.infinity, y2 = -Double.infinity
            for k in 0..<(flat.count / 2) {
                x1 = min(x1, flat[2 * k]); x2 = max(x2, flat[2 * k]); y1 = min(y1, flat[2 * k + 1]); y2 = max(y2, flat[2 * k + 1])
            }
            // Pixel (x, y) covers [x, x+1): the box holds every pixel the polygon reaches.
            let box = VOCBox(xmin: max(0, x1.rounded(.down)), ymin: max(0, y1.rounded(.down)),
                             xmax: min(Double(width - 1), x2.rounded(.up) - 1), ymax: min(Double(height - 1), y2.rounded(.up) - 1))
            objects.append(SyntheticTrackedObject(trackID: track, categoryID: shape.category, box: box))
        }
        var noise = SeededGenerator(seed: deriveSeed(seed, UInt64(2 + split), UInt64(index), UInt64(1 + f)))
        video.frames.append(quantizeWithSensorNoise(canvas, params: params, rng: &noise))
        video.objects.append(objects)
    }
    return video
}

/// The folder of video `index` of `split` below `Data/VID` and `Annotations/VID`.
public func syntheticVideoFolder(split: String, index: Int) -> String {
    "\(split)/synthetic_\(split)_\(String(format: "%05d", index))"
}

/// An ILSVRC frame annotation of `objects` (the class names are `syntheticClassNames`).
func vidFrameXML(folder: String, frame: String, width: Int, height: Int, objects: [SyntheticTrackedObject]) -> String {
    var x = "<annotation>\n\t<folder>\(folder)</folder>\n\t<filename>\(frame)</filename>\n\t<source>\n\t\t<database>DCNv2CPU synthetic</database>\n\t</source>\n"
    x += "\t<size>\n\t\t<width>\(width)</width>\n\t\t<height>\(height)</height>\n\t</size>\n"
    for o in objects {
        x += "\t<object>\n\t\t<trackid>\(o.trackID)</trackid>\n\t\t<name>\(syntheticClassNames[o.categoryID - 1])</name>\n\t\t<bndbox>\n"
        x += "\t\t\t<xmax>\(Int(o.box.xmax))</xmax>\n\t\t\t<xmin>\(Int(o.box.xmin))</xmin>\n\t\t\t<ymax>\(Int(o.box.ymax))</ymax>\n\t\t\t<ymin>\(Int(o.box.ymin))</ymin>\n"
        x += "\t\t</bndbox>\n\t\t<occluded>0</occluded>\n\t\t<generated>0</generated>\n\t</object>\n"
    }
    return x + "</annotation>\n"
}

/// Writes the synthetic videos in the ILSVRC2015 VID layout below `out`:
/// `Data/VID/{train,val}/<video>/<frame>.JPEG`, `Annotations/VID/{train,val}/<video>/<frame>.xml`,
/// and `ImageSets/VID/`: `VID_train_15frames.txt` (15 frames per video at the segment middles, as
/// MSRA's list; all frames when a video has 15 or fewer), `VID_train_frames.txt` (every training
/// frame), `VID_val_frames.txt` (`<frame path> <frame id>`, ids 1... over the split) and
/// `VID_val_videos.txt` (`<video> <first frame id> 0 <frames>`). Videos are rendered on all cores.
public func writeSyntheticVideoDataset(out: String, config: SyntheticVideoConfig) throws -> SyntheticSummary {
    let start = Date()
    try createFolder(out + "/ImageSets/VID")
    var objectTotal = 0
    var lists = [String: String]()
    for (splitIndex, (split, count)) in [("train", config.trainVideos), ("val", config.valVideos)].enumerated() {
        let results = parallelResults(count) { v in
            let video = renderSyntheticVideo(seed: config.seed, split: splitIndex, index: v, frames: config.frames,
                                             size: config.size, difficulty: config.difficulty)
            let folder = syntheticVideoFolder(split: split, index: v)
            try createFolder("\(out)/Data/VID/\(folder)")
            try createFolder("\(out)/Annotations/VID/\(folder)")
            for (f, image) in video.frames.enumerated() {
                let name = vidFrameName(f)
                try writeAtomically(try encodeJPEG(image, quality: config.jpegQuality), to: "\(out)/Data/VID/\(folder)/\(name).JPEG")
                let xml = vidFrameXML(folder: folder, frame: name, width: image.width, height: image.height, objects: video.objects[f])
                try writeAtomically(Data(xml.utf8), to: "\(out)/Annotations/VID/\(folder)/\(name).xml")
            }
            return (objects: video.objects.reduce(0) { $0 + $1.count }, width: video.frames[0].width, height: video.frames[0].height)
        }
        for slot in results { objectTotal += try slot.get().objects }
        var frameID = 1
        for v in 0..<count {
            let folder = syntheticVideoFolder(split: split, index: v)
            if split == "train" {
                for f in vidSegmentMiddleFrames(length: config.frames, count: 15) {
                    lists["VID_train_15frames", default: ""] += "\(folder) 1 \(f) \(config.frames)\n"
                }
                for f in 0..<config.frames { lists["VID_train_frames", default: ""] += "\(folder)/\(vidFrameName(f)) \(frameID + f)\n" }
            } else {
                for f in 0..<config.frames { lists["VID_val_frames", default: ""] += "\(folder)/\(vidFrameName(f)) \(frameID + f)\n" }
                lists["VID_val_videos", default: ""] += "\(folder) \(frameID) 0 \(config.frames)\n"
            }
            frameID += config.frames
        }
    }
    for name in ["VID_train_15frames", "VID_train_frames", "VID_val_frames", "VID_val_videos"] {
        try writeAtomically(Data((lists[name] ?? "").utf8), to: "\(out)/ImageSets/VID/\(name).txt")
    }
    return SyntheticSummary(trainImages: config.trainVideos * config.frames, valImages: config.valVideos * config.frames,
                            objects: objectTotal, seconds: Date().timeIntervalSince(start))
}
