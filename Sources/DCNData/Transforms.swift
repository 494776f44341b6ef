// Training and inference transforms as detectron2 applies them: ResizeShortestEdge (PIL
// bilinear resampling, antialiased when shrinking), horizontal flip, ImageNet normalisation to a
// CHW tensor, and batching with padding to a multiple of 32. Boxes and polygons move with the
// image so targets stay aligned; `ImageBatch` maps detections back to original coordinates.
//
// Coordinates are detectron2's: 0-based, continuous, the image spans [0, W] x [0, H], a box is
// (x1, y1, x2, y2) with x2 = x1 + width. Polygons are flat [x0, y0, x1, y1, ...] lists, one per
// object part (COCO segmentation polygons).
import DCNTensor

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Resize

/// Resizes an image of `input` size to `output` size. Pixels use PIL's bilinear resampling
/// (`Image.resize(..., BILINEAR)`, what detectron2's ResizeTransform calls), whose triangle
/// filter widens by the scale factor when shrinking (antialiasing); coordinates are multiplied by
/// output/input per axis, as detectron2's `ResizeTransform.apply_coords`.
public struct ResizeTransform: Sendable, Equatable {
    public let input: ImageSize
    public let output: ImageSize

    public init(input: ImageSize, output: ImageSize) {
        precondition(input.width > 0 && input.height > 0 && output.width > 0 && output.height > 0,
                     "ResizeTransform: sizes must be positive (\(input) -> \(output))")
        self.input = input
        self.output = output
    }

    /// output.width / input.width
    public var scaleX: Float { Float(output.width) / Float(input.width) }
    /// output.height / input.height
    public var scaleY: Float { Float(output.height) / Float(input.height) }

    /// The transform that maps output coordinates back to input ones.
    public var inverse: ResizeTransform { ResizeTransform(input: output, output: input) }

    public func apply(image: RGBImage) -> RGBImage {
        precondition(image.width == input.width && image.height == input.height,
                     "ResizeTransform for \(input.width)x\(input.height) applied to \(image.width)x\(image.height)")
        return resizeBilinear(image, width: output.width, height: output.height)
    }

    public func apply(boxes: [Box]) -> [Box] {
        let sx = scaleX, sy = scaleY
        return boxes.map { Box($0.x1 * sx, $0.y1 * sy, $0.x2 * sx, $0.y2 * sy) }
    }

    /// Scales flat [x0, y0, x1, y1, ...] polygons.
    public func apply(polygons: [[Float]]) -> [[Float]] {
        let sx = scaleX, sy = scaleY
        return polygons.map { p in p.enumerated().map { i, v in i % 2 == 0 ? v * sx : v * sy } }
    }
}

/// detectron2's `ResizeShortestEdge`: scale so the shorter side is S and the longer at most
/// `maxSize`, S drawn from `shortEdgeLengths` per image in training.
public struct ResizeShortestEdge: Sendable, Equatable {
    public enum SampleStyle: String, Sendable, Codable {
        /// S is one of `shortEdgeLengths`, uniformly (detectron2 "choice").
        case choice
        /// S is uniform in [lengths[0], lengths[1]] inclusive (detectron2 "range").
        case range
    }

    public var shortEdgeLengths: [Int]
    public var maxSize: Int
    public var sampleStyle: SampleStyle

    public init(shortEdgeLengths: [Int], maxSize: Int, sampleStyle: SampleStyle = .choice) throws {
        guard !shortEdgeLengths.isEmpty, shortEdgeLengths.allSatisfy({ $0 > 0 }), maxSize > 0 else {
            throw ShapeError("ResizeShortestEdge: lengths \(shortEdgeLengths) and max size \(maxSize) must be positive")
        }
        if sampleStyle == .range && (shortEdgeLengths.count != 2 || shortEdgeLengths[0] > shortEdgeLengths[1]) {
            throw ShapeError("ResizeShortestEdge: range style needs [min, max], got \(shortEdgeLengths)")
        }
        self.shortEdgeLengths = shortEdgeLengths
        self.maxSize = maxSize
        self.sampleStyle = sampleStyle
    }

    /// detectron2's `ResizeShortestEdge.get_output_shape` (computed in Double like Python floats;
    /// the final sizes are rounded half up).
    public static func outputSize(for input: ImageSize, shortEdge: Int, maxSize: Int) -> ImageSize {
        let h = Double(input.height), w = Double(input.width)
        let size = Double(shortEdge)
        let scale = size / min(h, w)
        var newH: Double, newW: Double
        if h < w {
            newH = size
            newW = scale * w
        } else {
            newH = scale * h
            newW = size
        }
        if max(newH, newW) > Double(maxSize) {
            let s = Double(maxSize) / max(newH, newW)
            newH *= s
            newW *= s
        }
        return ImageSize(height: max(1, Int(newH + 0.5)), width: max(1, Int(newW + 0.5)))
    }

    /// Draws the short-edge length for one image (one draw from `rng` unless there is one length).
    public func sampleShortEdge(using rng: inout SeededGenerator) -> Int {
        switch sampleStyle {
        case .choice:
            if shortEdgeLengths.count == 1 { return shortEdgeLengths[0] }
            return shortEdgeLengths[Int(rng.next() % UInt64(shortEdgeLengths.count))]
        case .range:
            let lo = shortEdgeLengths[0], hi = shortEdgeLengths[1]
            return lo + Int(rng.next() % UInt64(hi - lo + 1))
        }
    }

    /// The resize for an image of `size` with a sampled S.
    public func transform(for size: ImageSize, using rng: inout SeededGenerator) -> ResizeTransform {
        let s = sampleShortEdge(using: &rng)
        return ResizeTransform(input: size, output: Self.outputSize(for: size, shortEdge: s, maxSize: maxSize))
    }

    /// The resize for evaluation: S = the first length (detectron2's test resize has one length).
    public func testTransform(for size: ImageSize) -> ResizeTransform {
        ResizeTransform(input: size, output: Self.outputSize(for: size, shortEdge: shortEdgeLengths[0], maxSize: maxSize))
    }
}

// MARK: - Flip

/// Horizontal flip of an image `width` pixels wide (detectron2 `HFlipTransform`): x' = W - x, so
/// a box becomes (W - x2, y1, W - x1, y2). Applying it twice is the identity.
public struct HFlipTransform: Sendable, Equatable {
    public let width: Int
    public init(width: Int) { self.width = width }

    public func apply(image: RGBImage) -> RGBImage {
        precondition(image.width == width, "HFlipTransform for width \(width) applied to width \(image.width)")
        return image.applyingEXIFOrientation(2)  // FLIP_LEFT_RIGHT
    }

    public func apply(boxes: [Box]) -> [Box] {
        let w = Float(width)
        return boxes.map { Box(w - $0.x2, $0.y1, w - $0.x1, $0.y2) }
    }

    public func apply(polygons: [[Float]]) -> [[Float]] {
        let w = Float(width)
        return polygons.map { p in p.enumerated().map { i, v in i % 2 == 0 ? w - v : v } }
    }
}

/// One geometric step applied to a sample.
public enum ImageTransform: Sendable, Equatable {
    case resize(ResizeTransform)
    case hflip(HFlipTransform)

    public func apply(image: RGBImage) -> RGBImage {
        switch self {
        case .resize(let t): return t.apply(image: image)
        case .hflip(let t): return t.apply(image: image)
        }
    }

    public func apply(boxes: [Box]) -> [Box] {
        switch self {
        case .resize(let t): return t.apply(boxes: boxes)
        case .hflip(let t): return t.apply(boxes: boxes)
        }
    }

    public func apply(polygons: [[Float]]) -> [[Float]] {
        switch self {
        case .resize(let t): return t.apply(polygons: polygons)
        case .hflip(let t): return t.apply(polygons: polygons)
        }
    }
}

// MARK: - Augmentation of a whole sample

/// An image with its targets: boxes, and per object the polygons of its parts (may be empty).
public struct ImageSample: Sendable, Equatable {
    public var image: RGBImage
    public var boxes: [Box]
    /// `polygons[i]` are the parts of object i, each a flat [x0, y0, x1, y1, ...] list.
    public var polygons: [[[Float]]]

    public init(image: RGBImage, boxes: [Box] = [], polygons: [[[Float]]] = []) {
        self.image = image
        self.boxes = boxes
        self.polygons = polygons
    }

    /// The sample with `transform` applied to the image and all geometry.
    public func applying(_ transform: ImageTransform) -> ImageSample {
        ImageSample(image: transform.apply(image: image), boxes: transform.apply(boxes: boxes),
                    polygons: polygons.map { transform.apply(polygons: $0) })
    }
}

/// The result of an augmentation: the transformed sample and the steps taken (resize first).
public struct AugmentedSample: Sendable {
    public var sample: ImageSample
    public var originalSize: ImageSize
    public var transforms: [ImageTransform]
    /// resized / original per axis (what `ImageBatch` needs to map detections back).
    public var scaleX: Float
    public var scaleY: Float
    public var flipped: Bool
}

/// detectron2's default detection augmentation: ResizeShortestEdge then RandomFlip (horizontal).
/// The draws from the generator are, in order: the short edge (if several), then the flip.
/// Boxes are clipped to the output image afterwards (detectron2 `transform_instance_annotations`
/// clips them too), which removes Float rounding past the border; polygons are left as they are.
public struct Augmentation: Sendable, Equatable {
    public var resize: ResizeShortestEdge
    /// Probability of a horizontal flip (0.5 in training, 0 for evaluation).
    public var flipProbability: Float

    public init(resize: ResizeShortestEdge, flipProbability: Float = 0.5) {
        self.resize = resize
        self.flipProbability = flipProbability
    }

    /// The paper's training setting: S = 800 (or `shortEdges`), longer side at most 1333, flip 0.5.
    public static func training(shortEdges: [Int] = [800], maxSize: Int = 1333) throws -> Augmentation {
        Augmentation(resize: try ResizeShortestEdge(shortEdgeLengths: shortEdges, maxSize: maxSize), flipProbability: 0.5)
    }

    /// Evaluation: one S, no flip.
    public static func test(shortEdge: Int = 800, maxSize: Int = 1333) throws -> Augmentation {
        Augmentation(resize: try ResizeShortestEdge(shortEdgeLengths: [shortEdge], maxSize: maxSize), flipProbability: 0)
    }

    public func apply(to sample: ImageSample, using rng: inout SeededGenerator) -> AugmentedSample {
        let size = ImageSize(height: sample.image.height, width: sample.image.width)
        let resizeStep = resize.transform(for: size, using: &rng)
        let flip = flipProbability > 0 && rng.uniform() < flipProbability
        var steps: [ImageTransform] = []
        if resizeStep.output != size { steps.append(.resize(resizeStep)) }
        if flip { steps.append(.hflip(HFlipTransform(width: resizeStep.output.width))) }
        var out = sample
        for step in steps { out = out.applying(step) }
        out.boxes = out.boxes.map { $0.clipped(width: out.image.width, height: out.image.height) }
        return AugmentedSample(sample: out, originalSize: size, transforms: steps,
                               scaleX: resizeStep.scaleX, scaleY: resizeStep.scaleY, flipped: flip)
    }
}

// MARK: - Normalisation and batching

/// Per-channel normalisation (v / 255 - mean) / std of RGB pixels.
public struct PixelNormalization: Sendable, Equatable {
    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) throws {
        guard mean.count == 3, std.count == 3, std.allSatisfy({ $0 > 0 }) else {
            throw ShapeError("PixelNormalization: need 3 means and 3 positive stds, got \(mean), \(std)")
        }
        self.mean = mean
        self.std = std
    }

    /// torchvision's ImageNet statistics for RGB in [0, 1].
    public static let imageNet = try! PixelNormalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// The image as a [3, H, W] tensor, channel c holding (pixel / 255 - mean[c]) / std[c]
    /// (computed in Float in that order, like torchvision's ToTensor + Normalize).
    public func tensor(from image: RGBImage) -> Tensor {
        let h = image.height, w = image.width, plane = h * w
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - mean[c]) / std[c] }
        }
        var out = Tensor(zeros: [3, h, w])
        image.pixels.withUnsafeBufferPointer { src in
            table.withUnsafeBufferPointer { lut in
                out.withUnsafeMutableBufferPointer { dst in
                    let input = SharedReads(src.baseAddress!), lookup = SharedReads(lut.baseAddress!)
                    let output = DisjointWrites(dst.baseAddress!)
                    parallelFor(h, grain: max(1, 32768 / w)) { rows in
                        for y in rows {
                            for x in 0..<w {
                                let s = (y * w + x) * 3, d = y * w + x
                                output[d] = lookup[Int(input[s])]
                                output[plane + d] = lookup[256 + Int(input[s + 1])]
                                output[2 * plane + d] = lookup[512 + Int(input[s + 2])]
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Back to 8-bit RGB (rounded, clamped): for visualising a [3, H, W] tensor.
    public func image(from tensor: Tensor) throws -> RGBImage {
        guard tensor.rank == 3, tensor.dim(0) == 3 else { throw ShapeError("image(from:): expected [3, H, W], got \(tensor.shape)") }
        let h = tensor.dim(1), w = tensor.dim(2), plane = h * w
        var pixels = [UInt8](repeating: 0, count: plane * 3)
        for c in 0..<3 {
            for i in 0..<plane {
                let v = (tensor.data[c * plane + i] * std[c] + mean[c]) * 255
                pixels[i * 3 + c] = UInt8(min(max(v.rounded(), 0), 255))
            }
        }
        return try RGBImage(width: w, height: h, pixels: pixels)
    }
}

/// `size` rounded up to a multiple of `divisor`.
@inlinable public func roundUp(_ size: Int, toMultipleOf divisor: Int) -> Int {
    divisor <= 1 ? size : (size + divisor - 1) / divisor * divisor
}

/// Stacks [3, h_i, w_i] tensors into one [N, 3, H, W] tensor, H and W the largest sizes rounded up
/// to a multiple of `sizeDivisibility`, each image at the top-left and `padValue` (0: the mean
/// colour after normalisation) below and to the right. Returns the per-image sizes before padding.
public func padAndStack(_ images: [Tensor], sizeDivisibility: Int = 32, padValue: Float = 0,
                        minimumSize: ImageSize = ImageSize(height: 1, width: 1)) throws -> (Tensor, [ImageSize]) {
    guard !images.isEmpty else { throw ShapeError("padAndStack: no images") }
    for (i, t) in images.enumerated() where t.rank != 3 || t.dim(0) != 3 || t.dim(1) == 0 || t.dim(2) == 0 {
        throw ShapeError("padAndStack: image \(i) has shape \(t.shape), expected [3, H, W]")
    }
    let sizes = images.map { ImageSize(height: $0.dim(1), width: $0.dim(2)) }
    let H = roundUp(max(minimumSize.height, sizes.map(\.height).max()!), toMultipleOf: sizeDivisibility)
    let W = roundUp(max(minimumSize.width, sizes.map(\.width).max()!), toMultipleOf: sizeDivisibility)
    var out = Tensor(repeating: padValue, shape: [images.count, 3, H, W])
    out.withUnsafeMutableBufferPointer { dst in
        let output = DisjointWrites(dst.baseAddress!)
        for (n, t) in images.enumerated() {
            let h = t.dim(1), w = t.dim(2)
            t.withUnsafeBufferPointer { src in
                let input = SharedReads(src.baseAddress!)
                // One task per (channel, row): disjoint destination rows.
                parallelFor(3 * h, grain: max(1, 16384 / w)) { range in
                    for cy in range {
                        let c = cy / h, y = cy % h
                        (output + ((n * 3 + c) * H + y) * W).update(from: input + (c * h + y) * w, count: w)
                    }
                }
            }
        }
    }
    return (out, sizes)
}

/// A normalised image ready for batching, with what is needed to map results back.
public struct PreparedImage: Sendable {
    /// [3, h, w], normalised.
    public var tensor: Tensor
    public var originalSize: ImageSize
    /// resized / original per axis.
    public var scaleX: Float
    public var scaleY: Float

    public init(tensor: Tensor, originalSize: ImageSize, scaleX: Float, scaleY: Float) {
        self.tensor = tensor
        self.originalSize = originalSize
        self.scaleX = scaleX
        self.scaleY = scaleY
    }

    /// Resize (test style: S = `shortEdge`, longer side at most `maxSize`) and normalise.
    public init(image: RGBImage, shortEdge: Int = 800, maxSize: Int = 1333,
                normalization: PixelNormalization = .imageNet) {
        let size = ImageSize(height: image.height, width: image.width)
        let resize = ResizeTransform(input: size, output: ResizeShortestEdge.outputSize(for: size, shortEdge: shortEdge, maxSize: maxSize))
        let resized = resize.output == size ? image : resize.apply(image: image)
        self.init(tensor: normalization.tensor(from: resized), originalSize: size, scaleX: resize.scaleX, scaleY: resize.scaleY)
    }

    /// Normalise an augmented training sample.
    public init(augmented: AugmentedSample, normalization: PixelNormalization = .imageNet) {
        self.init(tensor: normalization.tensor(from: augmented.sample.image), originalSize: augmented.originalSize,
                  scaleX: augmented.scaleX, scaleY: augmented.scaleY)
    }
}

/// A padded batch: the network input plus per-image sizes and scales.
public struct ImageBatch: Sendable {
    /// [N, 3, H, W], H and W multiples of the size divisibility.
    public var images: Tensor
    /// Size of each image inside the padded tensor (after resizing, before padding).
    public var imageSizes: [ImageSize]
    /// Size of each image as decoded from its file.
    public var originalSizes: [ImageSize]
    /// resized / original per axis, per image.
    public var scales: [(x: Float, y: Float)]

    /// `minimumSize`: pad to at least this size (a data-parallel share pads as its whole batch).
    public init(_ prepared: [PreparedImage], sizeDivisibility: Int = 32, minimumSize: ImageSize = ImageSize(height: 1, width: 1)) throws {
        let (tensor, sizes) = try padAndStack(prepared.map(\.tensor), sizeDivisibility: sizeDivisibility, minimumSize: minimumSize)
        images = tensor
        imageSizes = sizes
        originalSizes = prepared.map(\.originalSize)
        scales = prepared.map { ($0.scaleX, $0.scaleY) }
    }

    public var count: Int { imageSizes.count }

    /// Boxes predicted on image `index` of the batch, in its original image's coordinates: each
    /// axis scaled by original / resized (detectron2 `detector_postprocess`), then clipped.
    public func toOriginal(boxes: [Box], image index: Int) -> [Box] {
        mapToOriginal(boxes, resized: imageSizes[index], original: originalSizes[index])
    }
}

/// Boxes predicted on an image resized to `resized`, in the coordinates of the `original` image:
/// each axis scaled by original / resized (detectron2 `detector_postprocess`), then clipped.
public func mapToOriginal(_ boxes: [Box], resized r: ImageSize, original o: ImageSize) -> [Box] {
    let sx = Float(o.width) / Float(r.width), sy = Float(o.height) / Float(r.height)
    return boxes.map { Box($0.x1 * sx, $0.y1 * sy, $0.x2 * sx, $0.y2 * sy).clipped(width: o.width, height: o.height) }
}

// MARK: - PIL bilinear resampling

/// PIL's fixed-point precision for 8-bit resampling (ImagingResample: 32 - 8 - 2 bits).
private let precisionBits = 22

/// Per output pixel: the first input pixel, how many are used, and their fixed-point weights.
private struct ResampleCoefficients {
    var first: [Int]
    var count: [Int]
    var weights: [Int32]  // outSize * taps
    var taps: Int
}

/// PIL `precompute_coeffs` with the bilinear (triangle, support 1) filter, followed by
/// `normalize_coeffs_8bpc`. When shrinking, the filter is stretched by the scale (antialiasing).
private func resampleCoefficients(inSize: Int, outSize: Int) -> ResampleCoefficients {
    let scale = Double(inSize) / Double(outSize)
    let filterScale = max(scale, 1)
    let support = 1.0 * filterScale
    let taps = Int(support.rounded(.up)) * 2 + 1
    var first = [Int](repeating: 0, count: outSize), count = first
    var weights = [Int32](repeating: 0, count: outSize * taps)
    var k = [Double](repeating: 0, count: taps)
    let inverseScale = 1.0 / filterScale
    for xx in 0..<outSize {
        let center = (Double(xx) + 0.5) * scale
        var xmin = Int(center - support + 0.5)  // truncation toward zero, as C's (int)
        if xmin < 0 { xmin = 0 }
        var xmax = Int(center + support + 0.5)
        if xmax > inSize { xmax = inSize }
        xmax -= xmin
        var total = 0.0
        for x in 0..<xmax {
            let t = abs((Double(x + xmin) - center + 0.5) * inverseScale)
            let w = t < 1 ? 1 - t : 0
            k[x] = w
            total += w
        }
        for x in 0..<xmax {
            let w = total != 0 ? k[x] / total : k[x]
            let fixed = w * Double(1 << precisionBits)
            weights[xx * taps + x] = Int32(w < 0 ? fixed - 0.5 : fixed + 0.5)
        }
        first[xx] = xmin
        count[xx] = xmax
    }
    return ResampleCoefficients(first: first, count: count, weights: weights, taps: taps)
}

/// PIL's clip8: round (the 1 << (bits - 1) bias is added by the caller), shift, clamp.
@inline(__always) private func clip8(_ v: Int32) -> UInt8 {
    let s = v >> Int32(precisionBits)
    return s <= 0 ? 0 : (s >= 255 ? 255 : UInt8(s))
}

/// Resizes like PIL `Image.resize((width, height), Image.BILINEAR)` on an RGB image, including
/// its two-pass order (horizontal into an 8-bit buffer over the rows the vertical pass needs,
/// then vertical) and integer arithmetic, so results match Pillow's bit for bit.
public func resizeBilinear(_ image: RGBImage, width outW: Int, height outH: Int) -> RGBImage {
    precondition(outW > 0 && outH > 0, "resizeBilinear: output size \(outW)x\(outH) must be positive")
    let inW = image.width, inH = image.height
    if inW == outW && inH == outH { return image }
    let horizontal = resampleCoefficients(inSize: inW, outSize: outW)
    let vertical = resampleCoefficients(inSize: inH, outSize: outH)
    let bias = Int32(1 << (precisionBits - 1))

    // Horizontal pass over the input rows the vertical pass reads (all rows when heights match).
    let needHorizontal = inW != outW, needVertical = inH != outH
    let firstRow = needVertical ? vertical.first[0] : 0
    let lastRow = needVertical ? vertical.first[outH - 1] + vertical.count[outH - 1] : inH
    let tempH = lastRow - firstRow
    var temp: [UInt8]
    if needHorizontal {
        temp = [UInt8](repeating: 0, count: tempH * outW * 3)
        // Bounds as one Int32 pair per output pixel, read through raw pointers in the loop.
        let bounds = (0..<outW).flatMap { [Int32(horizontal.first[$0]), Int32(horizontal.count[$0])] }
        image.pixels.withUnsafeBufferPointer { src in
            temp.withUnsafeMutableBufferPointer { dst in
                horizontal.weights.withUnsafeBufferPointer { kk in
                    bounds.withUnsafeBufferPointer { bb in
                        let input = SharedReads(src.baseAddress!), output = DisjointWrites(dst.baseAddress!)
                        let weights = SharedReads(kk.baseAddress!), range = SharedReads(bb.baseAddress!)
                        let taps = horizontal.taps
                        parallelFor(tempH, grain: max(1, 8192 / max(1, outW * taps))) { rows in
                            for y in rows {
                                let row = input + (y + firstRow) * inW * 3
                                let out = output + y * outW * 3
                                var k = weights.pointer
                                for xx in 0..<outW {
                                    var r = bias, g = bias, b = bias
                                    let x0 = Int(range[2 * xx]), n = Int(range[2 * xx + 1])
                                    var p = row + x0 * 3
                                    for x in 0..<n {
                                        let w = k[x]
                                        r &+= Int32(p[0]) &* w
                                        g &+= Int32(p[1]) &* w
                                        b &+= Int32(p[2]) &* w
                                        p += 3
                                    }
                                    out[xx * 3] = clip8(r)
                                    out[xx * 3 + 1] = clip8(g)
                                    out[xx * 3 + 2] = clip8(b)
                                    k += taps
                                }
                            }
                        }
                    }
                }
            }
        }
    } else {
        temp = Array(image.pixels[(firstRow * inW * 3)..<(lastRow * inW * 3)])
    }
    if !needVertical { return RGBImage(unchecked: outW, outH, temp) }

    // Vertical pass: each output row is a weighted sum of whole temp rows.
    let rowLength = outW * 3
    var out = [UInt8](repeating: 0, count: outH * rowLength)
    temp.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            vertical.weights.withUnsafeBufferPointer { kk in
                let input = SharedReads(src.baseAddress!), output = DisjointWrites(dst.baseAddress!)
                let weights = SharedReads(kk.baseAddress!)
                let first = vertical.first, count = vertical.count, taps = vertical.taps
                parallelFor(outH, grain: max(1, 8192 / max(1, rowLength * taps))) { rows in
                    var accumulator = [Int32](repeating: 0, count: rowLength)
                    accumulator.withUnsafeMutableBufferPointer { acc in
                        for yy in rows {
                            for i in 0..<rowLength { acc[i] = bias }
                            let y0 = first[yy] - firstRow, k = weights + yy * taps
                            for y in 0..<count[yy] {
                                let w = k[y], row = input + (y0 + y) * rowLength
                                for i in 0..<rowLength { acc[i] &+= Int32(row[i]) &* w }
                            }
                            let o = output + yy * rowLength
                            for i in 0..<rowLength { o[i] = clip8(acc[i]) }
                        }
                    }
                }
            }
        }
    }
    return RGBImage(unchecked: outW, outH, out)
}
