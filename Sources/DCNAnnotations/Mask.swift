// COCO run-length encoded masks, bit for bit as pycocotools' maskApi.c: column-major runs
// that alternate zeros and ones, starting with zeros.
import Foundation

/// An error in a mask given by the user (bad compressed string, wrong sizes).
public struct MaskError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Why an RLE of `height x width` cannot be the mask of image `imageID` of
/// `imageHeight x imageWidth`, or nil when it can (or the image's size is unknown, 0 x 0).
/// pycocotools scores a mask of another size 0 without a word, which hides a `[width, height]`
/// written for `[height, width]`; the evaluator refuses it and `dcn-data check` reports it.
public func rleSizeProblem(height: Int, width: Int, imageID: Int, imageHeight: Int, imageWidth: Int) -> String? {
    if (imageHeight == 0 && imageWidth == 0) || (height == imageHeight && width == imageWidth) { return nil }
    return "the RLE's size [\(height), \(width)] differs from image id \(imageID)'s [height, width] = [\(imageHeight), \(imageWidth)]"
        + " (width and height swapped?); an RLE must have its image's size"
}

/// A binary mask of `height x width` pixels as COCO run lengths: `counts[0]` zeros, then
/// `counts[1]` ones, and so on, walking the image column by column (column-major).
public struct RLE: Equatable, Sendable {
    public var height: Int
    public var width: Int
    public var counts: [UInt32]

    public init(height: Int, width: Int, counts: [UInt32]) {
        self.height = height
        self.width = width
        self.counts = counts
    }

    /// Encodes a column-major mask (`mask[x * height + y]`, non-zero = inside).
    public init(height: Int, width: Int, columnMajorMask mask: [UInt8]) {
        precondition(mask.count == height * width, "mask has \(mask.count) pixels, expected \(height * width)")
        var counts = [UInt32]()
        var previous: UInt8 = 0
        var run: UInt32 = 0
        for v in mask {
            let bit: UInt8 = v != 0 ? 1 : 0
            if bit != previous { counts.append(run); run = 0; previous = bit }
            run += 1
        }
        counts.append(run)
        self.init(height: height, width: width, counts: counts)
    }

    /// Pixels of a `height x width` mask; throws for negative sizes and for more than 2^32 - 1
    /// pixels (pycocotools keeps sizes and runs in 32 bits).
    public static func pixelCount(height: Int, width: Int) throws -> Int {
        guard height >= 0, width >= 0 else { throw MaskError("mask size \(height)x\(width) is negative") }
        let (pixels, overflow) = height.multipliedReportingOverflow(by: width)
        guard !overflow, pixels <= Int(UInt32.max) else { throw MaskError("mask size \(height)x\(width) has more than 2^32 - 1 pixels") }
        return pixels
    }

    /// Throws unless the runs add up to exactly `height x width` pixels (fewer or more pixels
    /// than the mask has would be scored as a different mask, or not at all).
    public func validate() throws {
        let pixels = try RLE.pixelCount(height: height, width: width)
        var total: UInt64 = 0
        for c in counts { total += UInt64(c) }
        guard total == UInt64(pixels) else {
            throw MaskError("RLE runs add up to \(total) pixels, expected \(height)x\(width) = \(pixels)")
        }
    }

    /// The column-major mask (`mask[x * height + y]` is 0 or 1).
    public func decode() throws -> [UInt8] {
        try validate()
        var mask = [UInt8](repeating: 0, count: height * width)
        var p = 0
        var value: UInt8 = 0
        for c in counts {
            let n = Int(c)
            if value == 1 { for k in p..<(p + n) { mask[k] = 1 } }
            p += n
            value ^= 1
        }
        return mask
    }

    /// Number of pixels inside (the sum of the odd runs), as `rleArea`.
    public var area: Int {
        var a = 0
        var j = 1
        while j < counts.count { a += Int(counts[j]); j += 2 }
        return a
    }

    /// Tight box `[x, y, w, h]` in pixels, as `rleToBbox` (a mask spanning several columns
    /// in one run covers the full height).
    public var boundingBox: [Double] {
        let h = UInt32(truncatingIfNeeded: height), w = UInt32(truncatingIfNeeded: width)
        let m = (counts.count / 2) * 2
        if m == 0 || h == 0 { return [0, 0, 0, 0] }
        var xs = w, ys = h, xe: UInt32 = 0, ye: UInt32 = 0, cc: UInt32 = 0, xp: UInt32 = 0
        for j in 0..<m {
            cc = cc &+ counts[j]
            let t = cc &- UInt32(j % 2)
            let y = t % h
            let x = (t &- y) / h
            if j % 2 == 0 { xp = x } else if xp < x { ys = 0; ye = h - 1 }
            xs = min(xs, x); xe = max(xe, x); ys = min(ys, y); ye = max(ye, y)
        }
        return [Double(xs), Double(ys), Double(xe &- xs &+ 1), Double(ye &- ys &+ 1)]
    }

    // MARK: Compressed string form

    /// The compressed COCO string: each count (for i > 2 the difference to counts[i-2]) in
    /// 5-bit groups, low first, as chars `48 + group`, 0x20 = more groups follow, and the
    /// last group's 0x10 bit is the sign.
    public var compressedString: String {
        var out = [UInt8]()
        out.reserveCapacity(counts.count * 2)
        for i in 0..<counts.count {
            var x = Int64(counts[i])
            if i > 2 { x -= Int64(counts[i - 2]) }
            var more = true
            while more {
                var c = UInt8(truncatingIfNeeded: x & 0x1f)
                x >>= 5  // arithmetic shift, as C's `long >>`
                more = (c & 0x10) != 0 ? x != -1 : x != 0
                if more { c |= 0x20 }
                out.append(c + 48)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes the compressed COCO string form (`rleFrString`). Throws on characters outside
    /// the alphabet, truncated groups and runs that do not fit in 32 bits.
    public init(height: Int, width: Int, compressed: String) throws {
        var counts = [UInt32]()
        var utf8 = Array(compressed.utf8)
        utf8.append(0)
        var p = 0
        while utf8[p] != 0 {
            var x: Int64 = 0
            var k: Int64 = 0
            var more = true
            while more {
                let raw = utf8[p]
                guard raw >= 48 && raw < 48 + 64 else {
                    throw MaskError(raw == 0 ? "compressed RLE string ends inside a count" : "compressed RLE string has a character outside '0'...'o' at offset \(p)")
                }
                guard k < 12 else { throw MaskError("compressed RLE count is too long at offset \(p)") }
                let c = Int64(raw - 48)
                x |= (c & 0x1f) << (5 * k)
                more = (c & 0x20) != 0
                p += 1
                k += 1
                if !more && (c & 0x10) != 0 { x |= -1 << (5 * k) }
            }
            if counts.count > 2 { x += Int64(counts[counts.count - 2]) }
            guard x >= 0 && x <= Int64(UInt32.max) else {
                throw MaskError("compressed RLE string decodes to a run of \(x) pixels")
            }
            counts.append(UInt32(x))
        }
        self.init(height: height, width: width, counts: counts)
    }

    // MARK: Polygons and boxes

    /// The most points a polygon's edges may be walked through (about 0.2 s): edges of ten
    /// million pixels, far beyond any image, are refused instead of taking minutes.
    public static let maxPolygonPoints = 50_000_000

    /// Rasterises a polygon `[x0, y0, x1, y1, ...]` as pycocotools' `rleFrPoly`: points scaled
    /// by 5 and rounded with C truncation, edges walked densely, x-crossings kept and mapped
    /// back with `(x + .5) / 5 - .5`, y rounded up and clamped to [0, h]. Coordinates outside the
    /// image are allowed (they are clipped by the construction) up to `maxPolygonPoints`.
    public init(polygon xy: [Double], height h: Int, width w: Int) throws {
        let k = xy.count / 2
        let scale = 5.0
        // C's (int)(scale * v + .5): truncation toward zero; out-of-range values are refused.
        func cInt(_ v: Double) throws -> Int {
            guard v.isFinite, abs(v) < 4.0e8 else { throw MaskError("polygon coordinate \(v / scale) is not a usable number") }
            return Int(v)
        }
        let pixels = try RLE.pixelCount(height: h, width: w)
        guard k > 0 else { self.init(height: h, width: w, counts: [UInt32(pixels)]); return }
        var x = [Int](repeating: 0, count: k + 1), y = [Int](repeating: 0, count: k + 1)
        for j in 0..<k {
            x[j] = try cInt(scale * xy[2 * j] + 0.5)
            y[j] = try cInt(scale * xy[2 * j + 1] + 0.5)
        }
        x[k] = x[0]; y[k] = y[0]
        var total = 0
        for j in 0..<k { total += max(abs(x[j] - x[j + 1]), abs(y[j] - y[j + 1])) + 1 }
        guard total <= RLE.maxPolygonPoints else {
            throw MaskError("a polygon's edges span \(total) points at 1/5 pixel, more than \(RLE.maxPolygonPoints): its coordinates reach too far outside the \(h)x\(w) image")
        }
        // Dense points along every edge, stepping one unit along the longer axis. Where x changes
        // from the previous point, the crossing is mapped back to a pixel column (kept when it is
        // one) and y rounds up. Points are visited, not stored: an edge far outside the image costs
        // time, not memory.
        var positions = [UInt32]()
        let wMinus1 = Double(UInt(bitPattern: w &- 1))  // C: size_t arithmetic
        var pu = 0, pv = 0, first = true
        func visit(_ u: Int, _ v: Int) {
            defer { pu = u; pv = v; first = false }
            if first || u == pu { return }
            var xd = Double(u < pu ? u : u - 1)
            xd = (xd + 0.5) / scale - 0.5
            if xd.rounded(.down) != xd || xd < 0 || xd > wMinus1 { return }
            var yd = Double(v < pv ? v : pv)
            yd = (yd + 0.5) / scale - 0.5
            if yd < 0 { yd = 0 } else if yd > Double(h) { yd = Double(h) }
            yd = yd.rounded(.up)
            positions.append(UInt32(truncatingIfNeeded: Int(xd) * h + Int(yd)))
        }
        for j in 0..<k {
            var xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1]
            let dx = abs(xe - xs), dy = abs(ys - ye)
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye)
            if flip { swap(&xs, &xe); swap(&ys, &ye) }
            let s = dx >= dy ? Double(ye - ys) / Double(dx) : Double(xe - xs) / Double(dy)
            if dx >= dy {
                for d in 0...dx {
                    let t = flip ? dx - d : d
                    visit(t + xs, cTruncate(Double(ys) + s * Double(t) + 0.5))
                }
            } else {
                for d in 0...dy {
                    let t = flip ? dy - d : d
                    visit(cTruncate(Double(xs) + s * Double(t) + 0.5), t + ys)
                }
            }
        }
        positions.append(UInt32(pixels))
        positions.sort()
        // Differences between sorted boundary positions are the runs; zero runs merge.
        var previous: UInt32 = 0
        for j in 0..<positions.count {
            let t = positions[j]
            positions[j] = t &- previous
            previous = t
        }
        var runs = [UInt32]()
        runs.reserveCapacity(positions.count)
        var j = 0
        runs.append(positions[j]); j += 1
        while j < positions.count {
            if positions[j] > 0 {
                runs.append(positions[j]); j += 1
            } else {
                j += 1
                if j < positions.count { runs[runs.count - 1] &+= positions[j]; j += 1 }
            }
        }
        self.init(height: h, width: w, counts: runs)
    }

    /// A box `[x, y, w, h]` rasterised as the polygon of its corners (`rleFrBbox`).
    public init(box b: [Double], height: Int, width: Int) throws {
        guard b.count == 4 else { throw MaskError("a box needs 4 numbers [x, y, w, h], found \(b.count)") }
        let xs = b[0], xe = b[0] + b[2], ys = b[1], ye = b[1] + b[3]
        try self.init(polygon: [xs, ys, xs, ye, xe, ye, xe, ys], height: height, width: width)
    }

    /// Rasterises a COCO polygon list the way pycocotools' `frPyObjects` + `merge` do: if the
    /// first entry has exactly 4 numbers every entry is read as a box `[x, y, w, h]`.
    public init(polygons: [[Double]], height: Int, width: Int) throws {
        guard let first = polygons.first else {
            self.init(height: height, width: width, counts: [UInt32(try RLE.pixelCount(height: height, width: width))])
            return
        }
        let asBoxes = first.count == 4
        if !asBoxes && first.count < 4 { throw MaskError("a polygon needs at least 3 points, found \(first.count) numbers") }
        let parts = try polygons.map { p in
            asBoxes ? try RLE(box: p, height: height, width: width) : try RLE(polygon: p, height: height, width: width)
        }
        self = RLE.merge(parts, intersect: false)
    }

    // MARK: Set operations

    /// Union (or intersection) of masks of one size, as `rleMerge`. Masks of different sizes
    /// give an empty 0x0 mask, as in pycocotools.
    public static func merge(_ masks: [RLE], intersect: Bool = false) -> RLE {
        guard let first = masks.first else { return RLE(height: 0, width: 0, counts: []) }
        if masks.count == 1 { return first }
        var current = first.counts
        for other in masks.dropFirst() {
            guard other.height == first.height, other.width == first.width else { return RLE(height: 0, width: 0, counts: []) }
            current = mergeRuns(current, other.counts, intersect: intersect)
        }
        return RLE(height: first.height, width: first.width, counts: current)
    }

    private static func mergeRuns(_ a: [UInt32], _ b: [UInt32], intersect: Bool) -> [UInt32] {
        var out = [UInt32]()
        var ca = a.first ?? 0, cb = b.first ?? 0
        var va = false, vb = false, v = false
        var ia = 1, ib = 1
        var cc: UInt32 = 0
        var more = true
        while more {
            let c = min(ca, cb)
            cc &+= c
            ca &-= c
            if ca == 0 && ia < a.count { ca = a[ia]; ia += 1; va.toggle() }
            cb &-= c
            if cb == 0 && ib < b.count { cb = b[ib]; ib += 1; vb.toggle() }
            let previous = v
            v = intersect ? (va && vb) : (va || vb)
            // Done when either mask has no pixels left (for masks of one size, both at once).
            more = !(ca == 0 && ia >= a.count) && !(cb == 0 && ib >= b.count)
            if v != previous || !more { out.append(cc); cc = 0 }
        }
        return out
    }

    /// Intersection and union pixel counts of two masks of the same size.
    static func intersectionAndUnion(_ a: RLE, _ b: RLE) -> (intersection: UInt64, union: UInt64) {
        var ca = a.counts.first ?? 0, cb = b.counts.first ?? 0
        var va = false, vb = false
        var ia = 1, ib = 1
        var inter: UInt64 = 0, uni: UInt64 = 0
        var more = true
        while more {
            let c = min(ca, cb)
            if va || vb { uni += UInt64(c); if va && vb { inter += UInt64(c) } }
            ca &-= c
            if ca == 0 && ia < a.counts.count { ca = a.counts[ia]; ia += 1; va.toggle() }
            cb &-= c
            if cb == 0 && ib < b.counts.count { cb = b.counts[ib]; ib += 1; vb.toggle() }
            // Done when either mask has no pixels left: for valid masks both at once; masks whose
            // runs add up to different totals (rejected by `validate()`) end here too.
            more = !(ca == 0 && ia >= a.counts.count) && !(cb == 0 && ib >= b.counts.count)
        }
        return (inter, uni)
    }

    /// IoU of a detection mask with a ground-truth mask as `rleIou`: boxes first (0 when
    /// they do not overlap), -1 for different sizes, and for a crowd ground truth the union
    /// is the detection's area.
    public static func iou(detection d: RLE, groundTruth g: RLE, crowd: Bool) -> Double {
        iou(detection: d, detectionBox: d.boundingBox, groundTruth: g, groundTruthBox: g.boundingBox, crowd: crowd)
    }

    /// `iou(detection:groundTruth:crowd:)` with the boxes precomputed.
    public static func iou(detection d: RLE, detectionBox db: [Double], groundTruth g: RLE, groundTruthBox gb: [Double], crowd: Bool) -> Double {
        guard boxIoU(db, gb, crowd: crowd) > 0 else { return 0 }
        if d.height != g.height || d.width != g.width { return -1 }
        let (i, u) = intersectionAndUnion(d, g)
        if i == 0 { return 0 }
        let union = crowd ? UInt64(UInt32(truncatingIfNeeded: d.area)) : UInt64(UInt32(truncatingIfNeeded: u))
        return Double(UInt32(truncatingIfNeeded: i)) / Double(union)
    }
}

/// C's `(int)x` on x86-64 (cvttsd2si): truncation toward zero, and INT_MIN for NaN or values
/// outside the int range. A repeated polygon vertex gives a 0/0 slope in `rleFrPoly`, and this
/// is what the reference then computes.
@inline(__always)
func cTruncate(_ x: Double) -> Int {
    if x.isNaN || x >= 2147483648.0 || x <= -2147483649.0 { return Int(Int32.min) }
    return Int(x)
}

/// IoU of boxes `[x, y, w, h]` as `bbIou` (no +1); for a crowd ground truth the union is the
/// detection's area.
@inlinable
public func boxIoU(_ d: [Double], _ g: [Double], crowd: Bool) -> Double {
    boxIoU(d[0], d[1], d[2], d[3], g[0], g[1], g[2], g[3], crowd: crowd)
}

/// The same on unpacked coordinates (the evaluation's inner loop; inlinable across modules).
@inlinable
public func boxIoU(_ dx: Double, _ dy: Double, _ dw: Double, _ dh: Double,
            _ gx: Double, _ gy: Double, _ gw: Double, _ gh: Double, crowd: Bool) -> Double {
    let w = min(dw + dx, gw + gx) - max(dx, gx)
    if w <= 0 { return 0 }
    let h = min(dh + dy, gh + gy) - max(dy, gy)
    if h <= 0 { return 0 }
    let inter = w * h
    let da = dw * dh
    let union = crowd ? da : da + gw * gh - inter
    return inter / union
}

// MARK: - Encoding image masks (pycocotools `mask.encode`)

extension RLE {
    /// pycocotools' `mask.encode` of a column-major mask (`mask[x * height + y]`, the Fortran
    /// order pycocotools requires): runs walking the image column by column, starting with the
    /// zeros (a first run of 0 when the first pixel is set). Any non-zero byte counts as inside
    /// (pycocotools starts a new run at every change of byte value; for 0/1 masks they agree).
    /// Throws for negative sizes, more than 2^32 - 1 pixels, or a length other than
    /// `height * width`. An empty mask (0 pixels) is the single run `[0]`, as in pycocotools.
    public static func encode(columnMajor mask: [UInt8], height: Int, width: Int) throws -> RLE {
        let pixels = try pixelCount(height: height, width: width)
        guard mask.count == pixels else {
            throw MaskError("mask has \(mask.count) pixels, expected \(height)x\(width) = \(pixels)")
        }
        return RLE(height: height, width: width, columnMajorMask: mask)
    }

    /// `encode(columnMajor:)` of a row-major mask (`mask[y * width + x]`, as image arrays and
    /// `pasteMask` hold it): the same runs, read column by column without transposing.
    /// Throws as `encode(columnMajor:)`.
    public static func encode(rowMajor mask: [UInt8], height: Int, width: Int) throws -> RLE {
        let pixels = try pixelCount(height: height, width: width)
        guard mask.count == pixels else {
            throw MaskError("mask has \(mask.count) pixels, expected \(height)x\(width) = \(pixels)")
        }
        var counts = [UInt32]()
        var previous = false
        var run: UInt32 = 0
        for x in 0..<width {
            var p = x
            for _ in 0..<height {
                let inside = mask[p] != 0
                if inside != previous { counts.append(run); run = 0; previous = inside }
                run += 1
                p += width
            }
        }
        counts.append(run)
        return RLE(height: height, width: width, counts: counts)
    }

    /// The mask row-major (`mask[y * width + x]` is 0 or 1); throws as `decode()`.
    public func decodeRowMajor() throws -> [UInt8] {
        try RLE.transposeToRowMajor(try decode(), height: height, width: width)
    }

    /// A column-major `height x width` array (`a[x * height + y]`) in row-major order
    /// (`[y * width + x]`). Throws for negative sizes or a length other than `height * width`.
    public static func transposeToRowMajor<T>(_ a: [T], height: Int, width: Int) throws -> [T] {
        let pixels = try pixelCount(height: height, width: width)
        guard a.count == pixels else { throw MaskError("array has \(a.count) elements, expected \(height)x\(width) = \(pixels)") }
        guard pixels > 0 else { return [] }
        return (0..<pixels).map { i in a[(i % width) * height + i / width] }
    }

    /// A row-major `height x width` array (`a[y * width + x]`) in column-major order
    /// (`[x * height + y]`, what `RLE(height:width:columnMajorMask:)` and pycocotools read).
    /// Throws for negative sizes or a length other than `height * width`.
    public static func transposeToColumnMajor<T>(_ a: [T], height: Int, width: Int) throws -> [T] {
        let pixels = try pixelCount(height: height, width: width)
        guard a.count == pixels else { throw MaskError("array has \(a.count) elements, expected \(height)x\(width) = \(pixels)") }
        guard pixels > 0 else { return [] }
        return (0..<pixels).map { i in a[(i % height) * width + i / height] }
    }
}
