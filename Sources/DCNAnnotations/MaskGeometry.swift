// Mask R-CNN mask geometry as detectron2 computes it on the CPU: training targets cut from a
// ground-truth mask into a proposal box (M x M), and predicted M x M masks pasted back into the
// image. Pure functions on plain arrays, no model code; checked bit for bit against detectron2's
// algorithms run with pycocotools, torchvision and PyTorch (Tests/Fixtures/generate_masks.py).
//
// Which convention for which input (as detectron2's `gt_masks.crop_and_resize`):
//   polygons          -> `polygonMaskTarget`: PolygonMasks / rasterize_polygons_within_box,
//                        i.e. the polygons moved into the box's frame and rasterised there by
//                        pycocotools at M x M.
//   RLE or bitmaps    -> `bitMaskTarget`: BitMasks, i.e. RoIAlign (aligned, adaptive sampling,
//                        scale 1) of the full-image 0/1 mask over the box, then >= 0.5.
//   predictions       -> `pasteMask`: paste_masks_in_image, grid_sample(align_corners=False).
//
// Layouts: M x M targets and predicted probabilities are row-major (`[y * M + x]`); image
// masks are row-major (`[y * width + x]`), as detectron2's (H, W) tensors. RLE is column-major:
// `RLE.encode(rowMajor:height:width:)` walks a row-major mask column by column (no transpose).
//
// Arithmetic: boxes and probabilities are Float like detectron2's float32 tensors, and every
// Float operation is done in the reference's order (including the fused multiply-adds of
// PyTorch's vectorised grid_sample), so thresholds tie-break exactly as the reference does.

/// A box (x0, y0) - (x1, y1) in image pixels, no +1 (detectron2's XYXY_ABS), in Float as
/// detectron2's float32 box tensors.
public struct MaskBox: Equatable, Sendable {
    public var x0: Float, y0: Float, x1: Float, y1: Float

    public init(x0: Float, y0: Float, x1: Float, y1: Float) {
        self.x0 = x0; self.y0 = y0; self.x1 = x1; self.y1 = y1
    }

    /// From `[x0, y0, x1, y1]`; throws unless there are exactly 4 numbers.
    public init(_ xyxy: [Float]) throws {
        guard xyxy.count == 4 else { throw MaskError("a box needs 4 numbers [x0, y0, x1, y1], found \(xyxy.count)") }
        self.init(x0: xyxy[0], y0: xyxy[1], x1: xyxy[2], y1: xyxy[3])
    }

    /// Throws unless all four coordinates are finite.
    func checkFinite(_ what: String) throws {
        guard x0.isFinite, y0.isFinite, x1.isFinite, y1.isFinite else {
            throw MaskError("\(what): box (\(x0), \(y0), \(x1), \(y1)) has a coordinate that is not a finite number")
        }
    }
}

/// The largest mask side accepted (detectron2 uses 28; this only guards against absurd sizes).
public let maxMaskSize = 4096

func checkMaskSize(_ m: Int, _ what: String) throws {
    guard m >= 1, m <= maxMaskSize else { throw MaskError("\(what): mask size \(m) is outside 1...\(maxMaskSize)") }
}

// MARK: - Training targets from polygons

/// Why one polygon part `[x0, y0, x1, y1, ...]` cannot be a mask, or nil when it can: fewer
/// than 3 points, an odd count, or a coordinate that is not finite (as detectron2 requires; pycocotools
/// would read a first part of 4 numbers as a box). Training and `polygonMaskTarget` share it.
public func polygonProblem<T: BinaryFloatingPoint>(_ polygon: [T]) -> String? {
    guard polygon.count >= 6, polygon.count % 2 == 0 else {
        return "has \(polygon.count) numbers; a polygon is x, y pairs of at least 3 points (an even count >= 6)"
    }
    guard polygon.allSatisfy(\.isFinite) else { return "has a coordinate that is not a finite number" }
    return nil
}

/// detectron2's `rasterize_polygons_within_box`: the training target of one instance given as
/// COCO polygons (`[x0, y0, x1, y1, ...]` in image pixels, several parts merged by union) for
/// the proposal `box`, as `maskSize * maskSize` floats 0/1, row-major.
///
/// Each polygon is moved into the box's frame and scaled to the mask:
/// `x' = (x - box.x0) * rx`, `y' = (y - box.y0) * ry` with `rx = M / max(box width, 0.1)`
/// (`ry` likewise), then rasterised by pycocotools' `frPyObjects` + `merge` at M x M (about the
/// cells whose centres fall inside; `RLE(polygon:height:width:)` has pycocotools' exact rule).
/// As in detectron2 the box side is a float32 difference and, when it is at least 0.1, `M / side`
/// is a float32 (NumPy >= 2 rules; NumPy 1 divided in double, which moves a few cells of polygons
/// whose vertices sit on a rounding point); the shifted coordinates are doubles. Parts outside
/// the box are clipped by the rasterisation; degenerate parts rasterise as in pycocotools (a line
/// or a point gives nothing); no polygons gives all zeros.
/// Throws for a mask size outside 1...`maxMaskSize`, a box with a non-finite coordinate, a
/// polygon with an odd count or fewer than 6 numbers or a non-finite coordinate, and polygons
/// that reach so far outside the box that `RLE(polygon:height:width:)` refuses them.
public func polygonMaskTarget(polygons: [[Double]], box: MaskBox, maskSize: Int) throws -> [Float] {
    let what = "polygon mask target"
    try checkMaskSize(maskSize, what)
    try box.checkFinite(what)
    for (i, p) in polygons.enumerated() {
        if let problem = polygonProblem(p) { throw MaskError("\(what): polygon \(i) \(problem)") }
    }
    let m = maskSize
    if polygons.isEmpty { return [Float](repeating: 0, count: m * m) }
    // ratio = M / max(side, 0.1): `max` keeps the float32 side unless 0.1 is larger (compared in
    // float32); M / side is then a float32 division, M / 0.1 a double one.
    func ratio(_ side: Float) -> Double {
        side < Float(0.1) ? Double(m) / 0.1 : Double(Float(m) / side)
    }
    let rx = ratio(box.x1 - box.x0), ry = ratio(box.y1 - box.y0)
    let bx = Double(box.x0), by = Double(box.y0)
    let scaled = polygons.map { p -> [Double] in
        var q = p
        var j = 0
        while j < q.count {
            q[j] = (p[j] - bx) * rx
            q[j + 1] = (p[j + 1] - by) * ry
            j += 2
        }
        return q
    }
    let columnMajor = try RLE(polygons: scaled, height: m, width: m).decode()
    var target = [Float](repeating: 0, count: m * m)
    for x in 0..<m {
        for y in 0..<m where columnMajor[x * m + y] != 0 { target[y * m + x] = 1 }
    }
    return target
}

/// `polygonMaskTarget` for every instance (detectron2's `PolygonMasks.crop_and_resize`):
/// `polygons[i]` with `boxes[i]`, targets concatenated (`count * M * M`). Throws when the counts
/// differ, and for any instance that `polygonMaskTarget` refuses (naming it).
public func polygonMaskTargets(polygons: [[[Double]]], boxes: [MaskBox], maskSize: Int) throws -> [Float] {
    guard polygons.count == boxes.count else {
        throw MaskError("polygon mask targets: \(polygons.count) instances but \(boxes.count) boxes")
    }
    try checkMaskSize(maskSize, "polygon mask targets")
    var out = [Float]()
    out.reserveCapacity(boxes.count * maskSize * maskSize)
    for i in 0..<boxes.count {
        do { out += try polygonMaskTarget(polygons: polygons[i], box: boxes[i], maskSize: maskSize) } catch let e as MaskError {
            throw MaskError("instance \(i): \(e.message)")
        }
    }
    return out
}

// MARK: - Training targets from bitmaps (RoIAlign)

/// One sample position along an axis in torchvision's RoIAlign: the two neighbouring pixels and
/// their weights, or `valid == false` when the sample lies beyond one pixel outside the map.
private struct AlignSample {
    var valid = false
    var low = 0, high = 0
    var lWeight: Float = 0, hWeight: Float = 0
}

/// torchvision's bilinear rule for one coordinate `v` on an axis of `size` pixels: 0 beyond
/// [-1, size]; v <= 0 reads pixel 0; from size - 1 on, both neighbours are the last pixel.
private func alignSample(_ v: Float, size: Int) -> AlignSample {
    guard v >= -1, v <= Float(size) else { return AlignSample() }
    var v = v
    if v <= 0 { v = 0 }
    var low = Int(v)  // v >= 0: C's (int) truncation
    let high: Int
    if low >= size - 1 { low = size - 1; high = low; v = Float(low) } else { high = low + 1 }
    let l = v - Float(low)
    return AlignSample(valid: true, low: low, high: high, lWeight: l, hWeight: 1 - l)
}

/// The most bilinear samples one `roiAlignMask` call may take (about the box's pixel count:
/// RoIAlign with adaptive sampling takes ceil(side / M) samples per bin along each axis).
public let maxRoIAlignSamples = 1 << 28

/// torchvision's `roi_align(aligned=True, sampling_ratio=0, spatial_scale=1)` of a full-image
/// 0/1 mask (row-major `height x width`, non-zero = inside) over `box`, as `M * M` float32
/// averages, row-major: detectron2's `BitMasks.crop_and_resize` before its `>= 0.5`.
///
/// The box is shifted by -0.5 (pixel centres at integers); the box is cut into M x M bins and
/// each bin averages a grid of ceil(side / M) x ceil(side / M) bilinear samples at the grid
/// cells' centres (an empty grid, for a box of zero or negative size, averages to 0). Samples
/// beyond one pixel outside the mask count as 0; within that pixel they read the border pixel.
/// Float arithmetic follows torchvision's CPU kernel step for step.
/// Throws for negative sizes, a mask of zero pixels, a mask whose length is not
/// `height * width`, a mask size outside 1...`maxMaskSize`, a non-finite box, and boxes so large
/// that the samples would exceed `maxRoIAlignSamples`.
public func roiAlignMask(mask: [UInt8], height: Int, width: Int, box: MaskBox, maskSize: Int) throws -> [Float] {
    let what = "RoIAlign of a mask"
    try checkMaskSize(maskSize, what)
    try box.checkFinite(what)
    let pixels = try RLE.pixelCount(height: height, width: width)
    guard mask.count == pixels else { throw MaskError("\(what): mask has \(mask.count) pixels, expected \(height)x\(width) = \(pixels)") }
    guard pixels > 0 else { throw MaskError("\(what): the mask is \(height)x\(width), it has no pixels to sample") }
    let m = maskSize, fm = Float(maskSize)
    // aligned: pixel centres at integer coordinates.
    let startX = box.x0 - 0.5, startY = box.y0 - 0.5
    let roiW = (box.x1 - 0.5) - startX, roiH = (box.y1 - 0.5) - startY
    let binW = roiW / fm, binH = roiH / fm
    // Adaptive sampling: ceil(roi side / M) samples per bin along each axis (none when <= 0).
    func gridSize(_ side: Float) -> Double { max(Double((side / fm).rounded(.up)), 0) }
    let gridH = gridSize(roiH), gridW = gridSize(roiW)
    let limit = Double(maxRoIAlignSamples)
    guard gridH * Double(m) <= limit, gridW * Double(m) <= limit, gridH * gridW * Double(m * m) <= limit else {
        func text(_ n: Double) -> String { n < 1e15 ? String(Int(n)) : "\(n)" }  // no Int overflow
        throw MaskError("\(what): a \(roiW)x\(roiH) box needs \(text(gridW))x\(text(gridH)) samples in each of \(m)x\(m) bins, more than \(maxRoIAlignSamples) in all")
    }
    let gh = Int(gridH), gw = Int(gridW)
    let count = Float(max(gh * gw, 1))
    // Sample positions per axis: start + p * bin + (i + 0.5) * bin / grid, as the C++ evaluates it.
    func samples(start: Float, bin: Float, grid: Int, size: Int) -> [AlignSample] {
        var out = [AlignSample]()
        out.reserveCapacity(m * grid)
        for p in 0..<m {
            for i in 0..<grid {
                let v = start + Float(p) * bin + (Float(i) + 0.5) * bin / Float(grid)
                out.append(alignSample(v, size: size))
            }
        }
        return out
    }
    let ys = samples(start: startY, bin: binH, grid: gh, size: height)
    let xs = samples(start: startX, bin: binW, grid: gw, size: width)
    var out = [Float](repeating: 0, count: m * m)
    mask.withUnsafeBufferPointer { maskBuffer in
        func value(_ y: Int, _ x: Int) -> Float { maskBuffer[y * width + x] != 0 ? 1 : 0 }
        for ph in 0..<m {
            for pw in 0..<m {
                var sum: Float = 0
                for iy in 0..<gh {
                    let sy = ys[ph * gh + iy]
                    if !sy.valid { continue }
                    for ix in 0..<gw {
                        let sx = xs[pw * gw + ix]
                        if !sx.valid { continue }
                        // Weights as products of the axis weights, summed in the kernel's order.
                        let w1 = sy.hWeight * sx.hWeight, w2 = sy.hWeight * sx.lWeight
                        let w3 = sy.lWeight * sx.hWeight, w4 = sy.lWeight * sx.lWeight
                        sum += w1 * value(sy.low, sx.low) + w2 * value(sy.low, sx.high)
                            + w3 * value(sy.high, sx.low) + w4 * value(sy.high, sx.high)
                    }
                }
                out[ph * m + pw] = sum / count
            }
        }
    }
    return out
}

/// detectron2's `BitMasks.crop_and_resize` for one instance: `roiAlignMask` of the full-image
/// 0/1 mask (row-major `height x width`) over `box`, then `>= 0.5`, as `M * M` floats 0/1,
/// row-major. Used for instances whose ground truth is an RLE or a bitmap. Throws as
/// `roiAlignMask`.
public func bitMaskTarget(mask: [UInt8], height: Int, width: Int, box: MaskBox, maskSize: Int) throws -> [Float] {
    try roiAlignMask(mask: mask, height: height, width: width, box: box, maskSize: maskSize).map { $0 >= 0.5 ? 1 : 0 }
}

/// `bitMaskTarget` of an RLE ground truth (decoded to its `height x width` bitmap first).
/// Throws for an RLE whose runs do not add up to its size, and as `roiAlignMask`.
public func bitMaskTarget(rle: RLE, box: MaskBox, maskSize: Int) throws -> [Float] {
    try bitMaskTarget(mask: try rle.decodeRowMajor(), height: rle.height, width: rle.width, box: box, maskSize: maskSize)
}

/// `bitMaskTarget` for every instance of one image (detectron2's `BitMasks.crop_and_resize`):
/// `masks[i]` (row-major `height x width`) with `boxes[i]`, targets concatenated
/// (`count * M * M`). Throws when the counts differ, and for any instance `roiAlignMask` refuses.
public func bitMaskTargets(masks: [[UInt8]], height: Int, width: Int, boxes: [MaskBox], maskSize: Int) throws -> [Float] {
    guard masks.count == boxes.count else { throw MaskError("bit mask targets: \(masks.count) masks but \(boxes.count) boxes") }
    try checkMaskSize(maskSize, "bit mask targets")
    var out = [Float]()
    out.reserveCapacity(boxes.count * maskSize * maskSize)
    for i in 0..<boxes.count {
        do { out += try bitMaskTarget(mask: masks[i], height: height, width: width, box: boxes[i], maskSize: maskSize) } catch let e as MaskError {
            throw MaskError("instance \(i): \(e.message)")
        }
    }
    return out
}

// MARK: - Pasting predicted masks into the image

/// The pixels `[x0, x1) x [y0, y1)` that detectron2 computes when pasting one box on the CPU
/// (`skip_empty=True`); every pixel outside stays 0.
public struct PasteRegion: Equatable, Sendable {
    public var x0: Int, y0: Int, x1: Int, y1: Int
    public init(x0: Int, y0: Int, x1: Int, y1: Int) { self.x0 = x0; self.y0 = y0; self.x1 = x1; self.y1 = y1 }
    public var width: Int { x1 - x0 }
    public var height: Int { y1 - y0 }
    public var isEmpty: Bool { x1 <= x0 || y1 <= y0 }
}

/// One grid coordinate of `grid_sample(align_corners=False)` with zero padding along one axis:
/// the lower neighbour (nil when it is outside the mask) and the fractional distance to it.
private struct GridAxis {
    var low: Int?, high: Int?
    var frac: Float, rest: Float
}

/// Mask coordinate of the normalised grid value g in [-1, 1] on an axis of m cells:
/// ((g + 1) * m / 2) - 0.5, the multiply-add fused as in PyTorch's vectorised kernel.
private func gridAxis(_ g: Float, cells m: Int) -> GridAxis {
    let c = Float(-0.5).addingProduct(g + 1, Float(m) / 2)
    let lowF = c.rounded(.down)
    let frac = c - lowF
    // Neighbours lowF and lowF + 1 count only inside [0, m); NaN and huge values are outside
    // (the kernel's int conversion gives INT_MIN there), and NaN weights make the pixel NaN -> 0.
    var low: Int? = nil, high: Int? = nil
    if lowF >= -1, lowF < Float(m) {
        let l = Int(lowF)
        if l >= 0 { low = l }
        if l + 1 < m { high = l + 1 }
    }
    return GridAxis(low: low, high: high, frac: frac, rest: 1 - frac)
}

/// The region and the sampled probabilities (row-major over the region) of one pasted mask.
private func pasteCore(_ p: [Float], maskSize m: Int, box: MaskBox, imageHeight h: Int, imageWidth w: Int,
                       _ what: String) throws -> (PasteRegion, [Float]) {
    try checkMaskSize(m, what)
    try box.checkFinite(what)
    _ = try RLE.pixelCount(height: h, width: w)
    guard p.count == m * m else { throw MaskError("\(what): \(p.count) mask values, expected \(m)x\(m) = \(m * m)") }
    // detectron2's skip_empty region: floor(x0) - 1 clamped at 0 to ceil(x1) + 1 clamped at the
    // image size (float32 arithmetic, then int). detectron2's arange raises when the region is
    // inverted (a box entirely outside the image or inverted); here it is empty.
    func lower(_ v: Float) -> Double { max(Double(v.rounded(.down) - 1), 0) }
    func upper(_ v: Float, _ size: Int) -> Double { min(Double(v.rounded(.up) + 1), Double(size)) }
    let rx0 = lower(box.x0), ry0 = lower(box.y0), rx1 = upper(box.x1, w), ry1 = upper(box.y1, h)
    guard rx0 < rx1, ry0 < ry1 else { return (PasteRegion(x0: 0, y0: 0, x1: 0, y1: 0), []) }
    let region = PasteRegion(x0: Int(rx0), y0: Int(ry0), x1: Int(rx1), y1: Int(ry1))
    // Pixel centre c = i + 0.5 to the grid value ((c - x0) / (x1 - x0)) * 2 - 1, each step
    // rounded to float32 as the tensor operations do.
    let bw = box.x1 - box.x0, bh = box.y1 - box.y0
    let xs = (region.x0..<region.x1).map { i in gridAxis(((Float(i) + 0.5) - box.x0) / bw * 2 - 1, cells: m) }
    let ys = (region.y0..<region.y1).map { i in gridAxis(((Float(i) + 0.5) - box.y0) / bh * 2 - 1, cells: m) }
    var values = [Float](repeating: 0, count: region.width * region.height)
    p.withUnsafeBufferPointer { probs in
        func read(_ y: Int?, _ x: Int?) -> Float {
            guard let y, let x else { return 0 }
            return probs[y * m + x]
        }
        var k = 0
        for gy in ys {
            for gx in xs {
                // Corner weights (rest = 1 - frac), then the four corners summed with fused
                // multiply-adds in PyTorch's order: nw, + ne, + sw, + se.
                let nw = gy.rest * gx.rest, ne = gy.rest * gx.frac
                let sw = gy.frac * gx.rest, se = gy.frac * gx.frac
                var v = read(gy.low, gx.low) * nw
                v = v.addingProduct(read(gy.low, gx.high), ne)
                v = v.addingProduct(read(gy.high, gx.low), sw)
                v = v.addingProduct(read(gy.high, gx.high), se)
                values[k] = v
                k += 1
            }
        }
    }
    return (region, values)
}

/// The probabilities of one predicted M x M mask (row-major, as the mask head's sigmoid) resampled
/// at the pixel centres of detectron2's paste region (`_do_paste_mask` with `skip_empty`, as on
/// the CPU): the region, and its values row-major (`region.height * region.width`). Pixel
/// centre `c = i + 0.5` maps to `g = (c - x0) / (x1 - x0) * 2 - 1` and is sampled by
/// `grid_sample(bilinear, zeros padding, align_corners=False)`, i.e. mask coordinate
/// `(g + 1) * M / 2 - 0.5`, with cells beyond the mask read as 0. Float operations follow
/// PyTorch's vectorised CPU kernel (its multiply-adds are fused), so values match bit for bit.
/// Throws for a mask size outside 1...`maxMaskSize`, a probability count other than M * M,
/// negative image sizes and a non-finite box. A box whose region is empty (entirely outside the
/// image, or inverted) gives an empty region, where detectron2's `arange` raises.
public func pastedMaskValues(probabilities: [Float], maskSize: Int, box: MaskBox,
                             imageHeight: Int, imageWidth: Int) throws -> (region: PasteRegion, values: [Float]) {
    let (region, values) = try pasteCore(probabilities, maskSize: maskSize, box: box, imageHeight: imageHeight,
                                         imageWidth: imageWidth, "pasted mask values")
    return (region, values)
}

/// detectron2's `paste_masks_in_image` for one predicted mask: the `imageHeight x imageWidth`
/// 0/1 mask, row-major (`[y * imageWidth + x]`), that is 1 where the resampled probability
/// (`pastedMaskValues`) is `>= threshold` inside the paste region and 0 everywhere else.
/// For COCO results encode it with `RLE.encode(rowMajor:height:width:)` (or use
/// `pasteMaskRLE`). Throws as `pastedMaskValues`, and for a threshold that is negative or not
/// finite (detectron2's negative threshold is a debugging mode that returns values * 255).
public func pasteMask(probabilities: [Float], maskSize: Int, box: MaskBox, imageHeight: Int, imageWidth: Int,
                      threshold: Float = 0.5) throws -> [UInt8] {
    let what = "pasted mask"
    guard threshold.isFinite, threshold >= 0 else { throw MaskError("\(what): threshold \(threshold) must be a finite number >= 0") }
    let (region, values) = try pasteCore(probabilities, maskSize: maskSize, box: box, imageHeight: imageHeight,
                                         imageWidth: imageWidth, what)
    var image = [UInt8](repeating: 0, count: imageHeight * imageWidth)
    var k = 0
    for y in region.y0..<region.y1 {
        for x in region.x0..<region.x1 {
            if values[k] >= threshold { image[y * imageWidth + x] = 1 }
            k += 1
        }
    }
    return image
}

/// `pasteMask` encoded as the COCO RLE of the image mask (what a results file stores as
/// `{"size": [h, w], "counts": rle.compressedString}`), equal to
/// `RLE.encode(rowMajor: pasteMask(...))` but built from the paste region alone: the pixels
/// outside it are known zeros, so the cost is the region's size, not the image's.
/// Throws as `pasteMask`.
public func pasteMaskRLE(probabilities: [Float], maskSize: Int, box: MaskBox, imageHeight h: Int, imageWidth w: Int,
                         threshold: Float = 0.5) throws -> RLE {
    let what = "pasted mask RLE"
    guard threshold.isFinite, threshold >= 0 else { throw MaskError("\(what): threshold \(threshold) must be a finite number >= 0") }
    let (region, values) = try pasteCore(probabilities, maskSize: maskSize, box: box, imageHeight: h, imageWidth: w, what)
    // Column-major runs starting with zeros (pycocotools' rleEncode); spans of n equal pixels.
    var counts = [UInt32]()
    var previous = false
    var run = 0
    func span(_ inside: Bool, _ n: Int) {
        guard n > 0 else { return }
        if inside != previous { counts.append(UInt32(run)); run = 0; previous = inside }
        run += n
    }
    span(false, region.x0 * h)  // whole columns left of the region
    for x in region.x0..<region.x1 {
        span(false, region.y0)  // above the region
        var k = x - region.x0
        for _ in region.y0..<region.y1 {
            span(values[k] >= threshold, 1)
            k += region.width
        }
        span(false, h - region.y1)  // below the region
    }
    span(false, (w - region.x1) * h)  // whole columns right of the region
    counts.append(UInt32(run))
    return RLE(height: h, width: w, counts: counts)
}

/// `pasteMask` for N predictions (detectron2's `paste_masks_in_image(masks [N, M, M], boxes)`):
/// `probabilities` holds the N masks one after the other (`N * M * M`, each row-major) and
/// `boxes` their N boxes. Returns N row-major image masks. Throws when the counts disagree, and
/// as `pasteMask` (naming the prediction).
public func pasteMasks(probabilities: [Float], maskSize: Int, boxes: [MaskBox], imageHeight: Int, imageWidth: Int,
                       threshold: Float = 0.5) throws -> [[UInt8]] {
    try checkMaskSize(maskSize, "pasted masks")
    let cells = maskSize * maskSize
    guard probabilities.count == boxes.count * cells else {
        throw MaskError("pasted masks: \(probabilities.count) mask values for \(boxes.count) boxes, expected \(boxes.count) x \(maskSize)x\(maskSize) = \(boxes.count * cells)")
    }
    return try boxes.indices.map { i in
        do {
            return try pasteMask(probabilities: Array(probabilities[(i * cells)..<((i + 1) * cells)]), maskSize: maskSize,
                                 box: boxes[i], imageHeight: imageHeight, imageWidth: imageWidth, threshold: threshold)
        } catch let e as MaskError {
            throw MaskError("prediction \(i): \(e.message)")
        }
    }
}
