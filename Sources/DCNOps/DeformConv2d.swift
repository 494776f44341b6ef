// Modulated deformable convolution (DCNv2) and its unmodulated form (DCNv1), with
// torchvision.ops.deform_conv2d's exact semantics, as a bilinear im2col + the conv's sgemm.
//
//   out[n, o, p] = bias[o] + sum_{c,k} W[o, c, k] * m[n, g(c), k, p] * x[n, c](y_k(p), x_k(p))
//   y_k(p) = oy*sh - ph + i*dh + offset[n, g*2K + 2k, p],   x_k(p) = ox*sw - pw + j*dw + offset[n, g*2K + 2k + 1, p]
//
// x[n, c](y, x) is bilinear: 0 unless -1 < y < H and -1 < x < W; inside that band each of the four
// corners contributes only if it lies in the image. The bilinear weights depend on (pixel, tap,
// offset group) only, so they are computed once into a sampling table and reused for every channel
// of the group (ncnn's approach; torchvision recomputes them per channel).
//
// Backward, without atomics (same bits on any thread count):
// - dWeight, dBias and dColumns = W^T dOut come from the conv's sgemms;
// - dInput: the adjoint of the bilinear im2col, split by input channel (disjoint planes);
// - dOffset, dMask: gathers over the group's channels, split by (tap, pixel).
import DCNTensor

/// The sizes of one deformable convolution: the conv's geometry plus the offset groups.
public struct DeformConvGeometry: Sendable, Equatable {
    public let conv: ConvGeometry
    /// Offset groups G: input channel c uses offsets of group c / (C / G).
    public let offsetGroups: Int
    public let modulated: Bool

    public var offsetShape: [Int] { [conv.batch, 2 * offsetGroups * conv.taps, conv.outHeight, conv.outWidth] }
    public var maskShape: [Int] { [conv.batch, offsetGroups * conv.taps, conv.outHeight, conv.outWidth] }
    public var channelsPerOffsetGroup: Int { conv.inChannels / offsetGroups }

    /// input `[N, C, H, W]`, offset `[N, 2*G*kh*kw, Ho, Wo]`, mask `[N, G*kh*kw, Ho, Wo]` or nil,
    /// weight `[Cout, C/groups, kh, kw]`. G is read from the offset channels, as torchvision does.
    public init(input: [Int], offset: [Int], mask: [Int]?, weight: [Int], options: ConvOptions) throws {
        let op = "deform_conv2d"
        conv = try ConvGeometry(input: input, weight: weight, options: options, op: op)
        try require(offset.count == 4, "\(op): offset must be [N, 2*G*kh*kw, Ho, Wo], got \(offset)")
        let taps = conv.taps
        try require(offset[1] > 0 && offset[1] % (2 * taps) == 0,
                    "\(op): offset has \(offset[1]) channels, expected a positive multiple of 2*kh*kw = \(2 * taps)")
        let groups = offset[1] / (2 * taps)
        try require(conv.inChannels % groups == 0,
                    "\(op): \(groups) offset groups (from \(offset[1]) offset channels) do not divide the \(conv.inChannels) input channels")
        offsetGroups = groups
        modulated = mask != nil
        try require(offset == [conv.batch, 2 * groups * taps, conv.outHeight, conv.outWidth],
                    "\(op): offset must be \([conv.batch, 2 * groups * taps, conv.outHeight, conv.outWidth]) for this input and kernel, got \(offset)")
        if let mask {
            try require(mask == [conv.batch, groups * taps, conv.outHeight, conv.outWidth],
                        "\(op): mask must be \([conv.batch, groups * taps, conv.outHeight, conv.outWidth]) (G*kh*kw channels), got \(mask)")
        }
    }
}

/// Forward deformable convolution; `mask` nil is DCNv1. Returns `[N, Cout, Ho, Wo]`.
public func deformConv2dForward(
    input: Tensor, offset: Tensor, mask: Tensor?, weight: Tensor, bias: Tensor?,
    options: ConvOptions, workspace: Workspace? = nil
) throws -> Tensor {
    let geo = try DeformConvGeometry(input: input.shape, offset: offset.shape, mask: mask?.shape,
                                     weight: weight.shape, options: options)
    let conv = geo.conv
    if let bias { try require(bias.shape == [conv.outChannels], "deform_conv2d: bias must be [\(conv.outChannels)], got \(bias.shape)") }
    let ws = workspace ?? Workspace()
    var output = Tensor(zeros: conv.outputShape)
    let sources = DeformSources(input: input, offset: offset, mask: mask)
    output.withUnsafeMutableBufferPointer { y in
        weight.withUnsafeBufferPointer { w in
            sources.withPointers { x, off, m in
                if let bias { fillBias(y.baseAddress!, bias: bias, images: conv.batch, pixels: conv.outPixels) }
                forEachColumnChunk(conv, ws) { n0, images in
                    let stride = images * conv.outPixels
                    let columns = ws.floats(.columns, conv.inChannels * conv.taps * stride)
                    deformableIm2col(geo, x, off, m, n0, images, columns, ws)
                    columnsForwardGemm(conv, output: y.baseAddress!, weight: w.baseAddress!, columns: columns,
                                       columnStride: stride, imageStep: conv.outPixels, firstImage: n0, images: images)
                }
            }
        }
    }
    return output
}

/// Backward deformable convolution: adds the gradients of the loss into every gradient tensor
/// that is present (nil = not needed). `dMask` is only meaningful when `mask` is given.
public func deformConv2dBackward(
    dInput: inout Tensor?, dOffset: inout Tensor?, dMask: inout Tensor?, dWeight: inout Tensor?, dBias: inout Tensor?,
    dOutput: Tensor, input: Tensor, offset: Tensor, mask: Tensor?, weight: Tensor,
    options: ConvOptions, workspace: Workspace? = nil
) throws {
    let geo = try DeformConvGeometry(input: input.shape, offset: offset.shape, mask: mask?.shape,
                                     weight: weight.shape, options: options)
    let conv = geo.conv
    let op = "deform_conv2d backward"
    try require(dOutput.shape == conv.outputShape, "\(op): dOutput must be \(conv.outputShape), got \(dOutput.shape)")
    try require(dInput == nil || dInput!.shape == conv.inputShape, "\(op): dInput must be \(conv.inputShape)")
    try require(dOffset == nil || dOffset!.shape == offset.shape, "\(op): dOffset must be \(offset.shape)")
    try require(dMask == nil || (mask != nil && dMask!.shape == mask!.shape), "\(op): dMask must match the mask \(mask?.shape ?? [])")
    try require(dWeight == nil || dWeight!.shape == weight.shape, "\(op): dWeight must be \(weight.shape)")
    try require(dBias == nil || dBias!.shape == [conv.outChannels], "\(op): dBias must be [\(conv.outChannels)]")
    if dBias != nil { addBiasGradient(&dBias!, dOutput: dOutput, images: conv.batch, pixels: conv.outPixels) }
    let wantWeight = dWeight != nil
    let wantSampling = dInput != nil || dOffset != nil || dMask != nil
    if !wantWeight && !wantSampling { return }

    let ws = workspace ?? Workspace()
    var gradients = DeformGradients(geo: geo, dInput: dInput, dOffset: dOffset, dMask: dMask)
    var dw = dWeight ?? Tensor(zeros: [0])
    let sources = DeformSources(input: input, offset: offset, mask: mask)
    weight.withUnsafeBufferPointer { w in
        dOutput.withUnsafeBufferPointer { dy in
            dw.withUnsafeMutableBufferPointer { dwp in
                sources.withPointers { x, off, m in
                    gradients.withPointers { dx, dOff, dM in
                        forEachColumnChunk(conv, ws) { n0, images in
                            let stride = images * conv.outPixels
                            if wantWeight {
                                let columns = ws.floats(.columns, conv.inChannels * conv.taps * stride)
                                deformableIm2col(geo, x, off, m, n0, images, columns, ws)
                                columnsWeightGradientGemm(conv, dWeight: dwp.baseAddress!, dOutput: dy.baseAddress!,
                                                          columns: columns, columnStride: stride, imageStep: conv.outPixels,
                                                          firstImage: n0, images: images)
                            }
                            if wantSampling {
                                let dColumns = ws.floats(.columnGradient, conv.inChannels * conv.taps * stride)
                                columnsGradientGemm(conv, dColumns: dColumns, columnStride: stride, imageStep: conv.outPixels,
                                                    accumulate: false, weight: w.baseAddress!, dOutput: dy.baseAddress!,
                                                    firstImage: n0, images: images)
                                deformableCol2im(geo, dColumns: dColumns, x, off, m, dInput: dx, dOffset: dOff, dMask: dM,
                                                 firstImage: n0, images: images, ws)
                            }
                        }
                    }
                }
            }
        }
    }
    gradients.store(dInput: &dInput, dOffset: &dOffset, dMask: &dMask)
    if wantWeight { dWeight = dw }
}

// MARK: - Sampling table

/// The four corners of one bilinear sample: plane indices (clamped into the plane, so always
/// safe to read) and weights (0 for corners outside the image or samples outside the band).
struct BilinearSample {
    var i00: Int32, i01: Int32, i10: Int32, i11: Int32
    var w00: Float, w01: Float, w10: Float, w11: Float

    static let zero = BilinearSample(i00: 0, i01: 0, i10: 0, i11: 0, w00: 0, w01: 0, w10: 0, w11: 0)

    @inline(__always) func value(_ plane: UnsafePointer<Float>) -> Float {
        w00 * plane[Int(i00)] + w01 * plane[Int(i01)] + w10 * plane[Int(i10)] + w11 * plane[Int(i11)]
    }
}

/// Bilinear sample of an H x W plane at (y, x) with torchvision's band and zero padding, plus the
/// fractional parts (ly, lx) and the corners inside the image (bits 00, 01, 10, 11) that the offset
/// gradient needs: a corner can lie in the image with weight 0 and still move the derivative.
@inline(__always)
func bilinearSample(y: Float, x: Float, height H: Int, width W: Int) -> (sample: BilinearSample, ly: Float, lx: Float, corners: UInt8) {
    guard y > -1, y < Float(H), x > -1, x < Float(W) else { return (.zero, 0, 0, 0) }
    let yf = y.rounded(.down), xf = x.rounded(.down)
    let y0 = Int(yf), x0 = Int(xf)
    let ly = y - yf, lx = x - xf, hy = 1 - ly, hx = 1 - lx
    let rowLow = y0 >= 0, rowHigh = y0 + 1 <= H - 1, colLow = x0 >= 0, colHigh = x0 + 1 <= W - 1
    let yl = max(y0, 0), yh = min(y0 + 1, H - 1), xl = max(x0, 0), xh = min(x0 + 1, W - 1)
    let s = BilinearSample(
        i00: Int32(yl * W + xl), i01: Int32(yl * W + xh), i10: Int32(yh * W + xl), i11: Int32(yh * W + xh),
        w00: rowLow && colLow ? hy * hx : 0, w01: rowLow && colHigh ? hy * lx : 0,
        w10: rowHigh && colLow ? ly * hx : 0, w11: rowHigh && colHigh ? ly * lx : 0)
    let corners = (rowLow && colLow ? 1 : 0) | (rowLow && colHigh ? 2 : 0) | (rowHigh && colLow ? 4 : 0) | (rowHigh && colHigh ? 8 : 0)
    return (s, ly, lx, UInt8(corners))
}

/// Sampling position of tap k = (i, j) at output pixel p = (oy, ox) before the offset.
@inline(__always)
func basePosition(_ conv: ConvGeometry, tap k: Int, pixel p: Int) -> (y: Float, x: Float) {
    let o = conv.options
    let i = k / conv.kernelW, j = k % conv.kernelW
    let oy = p / conv.outWidth, ox = p % conv.outWidth
    return (Float(oy * o.strideH - o.padH + i * o.dilationH), Float(ox * o.strideW - o.padW + j * o.dilationW))
}

/// Fills table[k*P + p] for image n and offset group g; the weights are multiplied by the mask.
func fillSamplingTable(
    _ geo: DeformConvGeometry, _ off: SharedReads<Float>, _ m: SharedReads<Float>?, image n: Int, group g: Int,
    _ table: DisjointWrites<BilinearSample>
) {
    let conv = geo.conv, K = conv.taps, P = conv.outPixels, H = conv.height, W = conv.width
    let G = geo.offsetGroups
    parallelFor(K * P, grain: 256) { entries in
        for e in entries {
            let k = e / P, p = e % P
            let base = basePosition(conv, tap: k, pixel: p)
            let offsetRow = ((n * G + g) * 2 * K + 2 * k) * P + p
            var s = bilinearSample(y: base.y + off[offsetRow], x: base.x + off[offsetRow + P], height: H, width: W).sample
            if let m {
                let scale = m[((n * G + g) * K + k) * P + p]
                s.w00 *= scale; s.w01 *= scale; s.w10 *= scale; s.w11 *= scale
            }
            table[e] = s
        }
    }
}

// MARK: - Bilinear im2col and its adjoint

/// columns[c*K + k, b*P + p] = m * x[n0+b, c](y_k(p), x_k(p)) for the images of the chunk.
func deformableIm2col(
    _ geo: DeformConvGeometry, _ x: SharedReads<Float>, _ off: SharedReads<Float>, _ m: SharedReads<Float>?,
    _ n0: Int, _ images: Int, _ columns: UnsafeMutablePointer<Float>, _ ws: Workspace
) {
    let conv = geo.conv, K = conv.taps, P = conv.outPixels, C = conv.inChannels, HW = conv.inPixels
    let Cg = geo.channelsPerOffsetGroup, stride = images * P
    let table = ws.raw(.samplingTable, bytes: K * P * MemoryLayout<BilinearSample>.stride)
        .bindMemory(to: BilinearSample.self, capacity: K * P)
    let entries = SharedReads(table), out = DisjointWrites(columns)
    for b in 0..<images {
        let n = n0 + b
        for g in 0..<geo.offsetGroups {
            fillSamplingTable(geo, off, m, image: n, group: g, DisjointWrites(table))
            parallelFor(Cg, grain: 1) { channels in
                for cg in channels {
                    let c = g * Cg + cg
                    let plane = x + (n * C + c) * HW
                    for k in 0..<K {
                        let row = out + (c * K + k) * stride + b * P
                        let samples = entries + k * P
                        for p in 0..<P { row[p] = samples[p].value(plane) }
                    }
                }
            }
        }
    }
}

/// Backward of the bilinear im2col for the chunk's images, given dColumns:
/// - dInput[n, c] += m * w_corner * dColumns at each corner (split by channel: disjoint planes);
/// - dMask[n, g, k, p] += sum_c dColumns * bilinear(x_c);
/// - dOffset[n, g, 2k(+1), p] += m * sum_c dColumns * d bilinear(x_c) / dy (dx), split by (k, p).
func deformableCol2im(
    _ geo: DeformConvGeometry, dColumns: UnsafeMutablePointer<Float>,
    _ x: SharedReads<Float>, _ off: SharedReads<Float>, _ m: SharedReads<Float>?,
    dInput: DisjointWrites<Float>?, dOffset: DisjointWrites<Float>?, dMask: DisjointWrites<Float>?,
    firstImage n0: Int, images: Int, _ ws: Workspace
) {
    let conv = geo.conv, K = conv.taps, P = conv.outPixels, C = conv.inChannels, HW = conv.inPixels
    let H = conv.height, W = conv.width, G = geo.offsetGroups, Cg = geo.channelsPerOffsetGroup
    let stride = images * P
    let table = ws.raw(.samplingTable, bytes: K * P * MemoryLayout<BilinearSample>.stride)
        .bindMemory(to: BilinearSample.self, capacity: K * P)
    let entries = SharedReads(table), dcol = SharedReads(dColumns)
    for b in 0..<images {
        let n = n0 + b
        for g in 0..<G {
            // Masked weights: the input gradient is the transpose of the forward sampling.
            fillSamplingTable(geo, off, m, image: n, group: g, DisjointWrites(table))
            if let dInput {
                parallelFor(Cg, grain: 1) { channels in
                    for cg in channels {
                        let c = g * Cg + cg
                        let plane = dInput + (n * C + c) * HW
                        for k in 0..<K {
                            let row = dcol + (c * K + k) * stride + b * P
                            let samples = entries + k * P
                            for p in 0..<P {
                                let s = samples[p], d = row[p]
                                plane[Int(s.i00)] += s.w00 * d
                                plane[Int(s.i01)] += s.w01 * d
                                plane[Int(s.i10)] += s.w10 * d
                                plane[Int(s.i11)] += s.w11 * d
                            }
                        }
                    }
                }
            }
            if dOffset == nil && dMask == nil { continue }
            parallelFor(K * P, grain: 64) { range in
                // Per-task scratch for this range of (tap, pixel): accumulators, unmasked samples,
                // fractional parts, corners inside the image, and offsets into dColumns rows.
                let count = range.count
                let value = UnsafeMutablePointer<Float>.allocate(capacity: 3 * count)
                let gradY = value + count, gradX = value + 2 * count
                value.initialize(repeating: 0, count: 3 * count)
                let samples = UnsafeMutablePointer<BilinearSample>.allocate(capacity: count)
                let fractions = UnsafeMutablePointer<(Float, Float)>.allocate(capacity: count)
                let inside = UnsafeMutablePointer<UInt8>.allocate(capacity: count)
                let columnOffset = UnsafeMutablePointer<Int>.allocate(capacity: count)
                defer {
                    value.deallocate(); samples.deallocate(); fractions.deallocate(); inside.deallocate(); columnOffset.deallocate()
                }
                for (t, e) in range.enumerated() {
                    let k = e / P, p = e % P
                    let base = basePosition(conv, tap: k, pixel: p)
                    let offsetRow = ((n * G + g) * 2 * K + 2 * k) * P + p
                    let r = bilinearSample(y: base.y + off[offsetRow], x: base.x + off[offsetRow + P], height: H, width: W)
                    samples[t] = r.sample
                    fractions[t] = (r.ly, r.lx)
                    inside[t] = r.corners
                    columnOffset[t] = k * stride + b * P + p
                }
                for cg in 0..<Cg {
                    let c = g * Cg + cg
                    let plane = x + (n * C + c) * HW
                    let rows = dcol + c * K * stride
                    for t in 0..<count {
                        let d = rows[columnOffset[t]]
                        let corners = inside[t]
                        if d == 0 || corners == 0 { continue }
                        let s = samples[t]
                        // Corner values; corners outside the image count as 0 (zero padding).
                        let v00 = corners & 1 != 0 ? plane[Int(s.i00)] : 0, v01 = corners & 2 != 0 ? plane[Int(s.i01)] : 0
                        let v10 = corners & 4 != 0 ? plane[Int(s.i10)] : 0, v11 = corners & 8 != 0 ? plane[Int(s.i11)] : 0
                        let (ly, lx) = fractions[t]
                        value[t] += d * (s.w00 * v00 + s.w01 * v01 + s.w10 * v10 + s.w11 * v11)
                        // d/dy of hy*hx*v00 + hy*lx*v01 + ly*hx*v10 + ly*lx*v11, and d/dx likewise.
                        gradY[t] += d * ((1 - lx) * (v10 - v00) + lx * (v11 - v01))
                        gradX[t] += d * ((1 - ly) * (v01 - v00) + ly * (v11 - v10))
                    }
                }
                for (t, e) in range.enumerated() {
                    let k = e / P, p = e % P
                    let scale = m.map { $0[((n * G + g) * K + k) * P + p] } ?? 1
                    if let dOffset {
                        let offsetRow = ((n * G + g) * 2 * K + 2 * k) * P + p
                        dOffset[offsetRow] += scale * gradY[t]
                        dOffset[offsetRow + P] += scale * gradX[t]
                    }
                    if let dMask { dMask[((n * G + g) * K + k) * P + p] += value[t] }
                }
            }
        }
    }
}

// MARK: - Pointer plumbing

/// The forward inputs, with pointers taken once for the whole call.
struct DeformSources {
    let input: Tensor, offset: Tensor, mask: Tensor?

    func withPointers<R>(_ body: (SharedReads<Float>, SharedReads<Float>, SharedReads<Float>?) -> R) -> R {
        input.withUnsafeBufferPointer { x in
            offset.withUnsafeBufferPointer { o in
                if let mask {
                    return mask.withUnsafeBufferPointer { m in
                        body(SharedReads(x.baseAddress!), SharedReads(o.baseAddress!), SharedReads(m.baseAddress!))
                    }
                }
                return body(SharedReads(x.baseAddress!), SharedReads(o.baseAddress!), nil)
            }
        }
    }
}

/// The sampling gradients being accumulated (each optional).
struct DeformGradients {
    var dInput: Tensor?, dOffset: Tensor?, dMask: Tensor?

    init(geo: DeformConvGeometry, dInput: Tensor?, dOffset: Tensor?, dMask: Tensor?) {
        self.dInput = dInput; self.dOffset = dOffset; self.dMask = dMask
    }

    mutating func withPointers(_ body: (DisjointWrites<Float>?, DisjointWrites<Float>?, DisjointWrites<Float>?) -> Void) {
        func with(_ t: inout Tensor?, _ f: (DisjointWrites<Float>?) -> Void) {
            if t == nil { f(nil); return }
            t!.withUnsafeMutableBufferPointer { f(DisjointWrites($0.baseAddress!)) }
        }
        with(&dInput) { a in with(&dOffset) { b in with(&dMask) { c in body(a, b, c) } } }
    }

    func store(dInput: inout Tensor?, dOffset: inout Tensor?, dMask: inout Tensor?) {
        if self.dInput != nil { dInput = self.dInput }
        if self.dOffset != nil { dOffset = self.dOffset }
        if self.dMask != nil { dMask = self.dMask }
    }
}
