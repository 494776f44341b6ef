// Modulated deformable convolution (DCNv2) and its unmodulated form (DCNv1), with
// torchvision.ops.deform_conv2d's exact semantics, as a bilinear im2col + sgemm.
//
//   out[n, o, p] = bias[o] + sum_{c,k} W[o, c, k] * m[n, g(c), k, p] * x[n, c](y_k(p), x_k(p))
//   y_k(p) = oy*sh - ph + i*dh + offset[n, g*2K + 2k, p],   x_k(p) = ox*sw - pw + j*dw + offset[n, g*2K + 2k + 1, p]
//
// x[n, c](y, x) is bilinear: 0 unless -1 < y < H and -1 < x < W; inside that band each of the four
// corners contributes only if it lies in the image. Such corners lie in rows -1...H and columns
// -1...W, so on a copy of the input with a one-pixel zero border every corner can be read without
// a test: the outside ones read 0. At the kinks (integer y or x) the offset gradient is the
// derivative from above, as torchvision's: on the band's edge y = -1 (x = -1) the value is 0 but
// that derivative is the first row's (column's) value, so samples there are kept in the table.
//
// Layout: the input copy is channel-last, xT[(y+1)*(W+2) + x+1][c], and the columns are
// pixel-major, columns[p][column(c, k)]. The four corners of one sample are then four contiguous
// channel vectors, and one (pixel, tap) costs four vector multiply-adds over the channels of its
// offset group; the bilinear weights are computed once per (pixel, offset group, tap) into a small
// sampling table. Within a weight group the columns are tap-major (column(c, k) = k*Cw + c), so the
// weight is permuted to [Cout, K, Cw] for the sgemms and its gradient permuted back.
//
// Backward, without atomics (same bits on any thread count):
// - dWeight, dBias and dColumns = dOut^T W come from sgemms;
// - one pass over the samples, split into a fixed number of pixel blocks: dInput is scattered
//   into each block's own channel-last grid (added into NCHW in block order afterwards), and
//   dOffset, dMask come from four dot products of dColumns with the corner vectors per
//   (pixel, tap).

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
    let layout = PixelMajorLayout(geo)
    output.withUnsafeMutableBufferPointer { y in
        weight.withUnsafeBufferPointer { w in
            sources.withPointers { x, off, m in
                if let bias { fillBias(y.baseAddress!, bias: bias, images: conv.batch, pixels: conv.outPixels) }
                let permuted = ws.floats(.weightPermuted, weight.count)
                layout.permuteWeight(w.baseAddress!, into: permuted)
                forEachColumnChunk(conv, ws) { n0, images in
                    let chunk = layout.prepareChunk(x, off, m, firstImage: n0, images: images, ws)
                    let columns = ws.floats(.columns, images * conv.outPixels * layout.columnsPerPixel)
                    layout.im2col(chunk, columns)
                    layout.forwardGemm(output: y.baseAddress!, weight: permuted, columns: columns, chunk: chunk)
                }
            }
        }
    }
    return output
}

/// Backward deformable convolution: adds the gradients of the loss into every gradient tensor
/// that is present (nil = not needed). `dMask` is only meaningful when `mask` is given.
public func deformConv2dBackward(
    dInput: inout Tensor?, dOffset: inout Tensor?, dMask: inout Tensor?, dWeight: GradientSlot?, dBias: GradientSlot?,
    dOutput: Tensor, input: Tensor, offset: Tensor, mask: Tensor?, weight: Tensor,
    options: ConvOptions, workspace: Workspace? = nil
) throws {
    let geo = try DeformConvGeometry(input: input.shape, offset: offset.shape, mask: mask?.shape,
                                     weight: weight.shape, options: options)
    let conv = geo.conv
    let op = "deform_conv2d backward"
    try require(dOutput.shape == conv.outputShape, "\(op): dOutput must be \(conv.outputShape), got \(dOutput.shape)")
    try requireGradientShapes(op, dInput: dInput, input: conv.inputShape, dWeight: dWeight, weight: weight.shape,
                              dBias: dBias, outChannels: conv.outChannels)
    try require(dOffset == nil || dOffset!.shape == offset.shape, "\(op): dOffset must be \(offset.shape)")
    try require(dMask == nil || (mask != nil && dMask!.shape == mask!.shape), "\(op): dMask must match the mask \(mask?.shape ?? [])")
    if let dBias { addBiasGradient(dBias, dOutput: dOutput, images: conv.batch, pixels: conv.outPixels) }
    let wantWeight = dWeight != nil
    let wantSampling = dInput != nil || dOffset != nil || dMask != nil
    if !wantWeight && !wantSampling { return }

    let ws = workspace ?? Workspace()
    let layout = PixelMajorLayout(geo)
    // Move the sampling gradients out of the caller's variables so that writing them copies nothing.
    var gradients = DeformGradients(geo: geo, dInput: dInput, dOffset: dOffset, dMask: dMask)
    dInput = nil; dOffset = nil; dMask = nil
    let sources = DeformSources(input: input, offset: offset, mask: mask)
    let dPermuted = ws.floats(.weightGradientPermuted, weight.count)
    dPermuted.initialize(repeating: 0, count: weight.count)
    weight.withUnsafeBufferPointer { w in
        dOutput.withUnsafeBufferPointer { dy in
            sources.withPointers { x, off, m in
                gradients.withPointers { dx, dOff, dM in
                    let permuted = ws.floats(.weightPermuted, weight.count)
                    layout.permuteWeight(w.baseAddress!, into: permuted)
                    forEachColumnChunk(conv, ws) { n0, images in
                        let chunk = layout.prepareChunk(x, off, m, firstImage: n0, images: images, ws)
                        let count = images * conv.outPixels * layout.columnsPerPixel
                        if wantWeight {
                            let columns = ws.floats(.columns, count)
                            layout.im2col(chunk, columns)
                            layout.weightGradientGemm(dWeight: dPermuted, dOutput: dy.baseAddress!, columns: columns, chunk: chunk)
                        }
                        if wantSampling {
                            let dColumns = ws.floats(.columnGradient, count)
                            layout.columnsGradientGemm(dColumns: dColumns, weight: permuted, dOutput: dy.baseAddress!, chunk: chunk)
                            layout.samplingAdjoint(chunk, dColumns: SharedReads(dColumns), dInput: dx, dOffset: dOff, dMask: dM, ws)
                        }
                    }
                }
            }
        }
    }
    gradients.store(dInput: &dInput, dOffset: &dOffset, dMask: &dMask)
    if let dWeight { layout.addUnpermutedWeightGradient(dPermuted, into: dWeight.base) }
}

// MARK: - Sampling table

/// One bilinear sample in the zero-bordered grid: the index of its top-left corner in the
/// (H+2) x (W+2) grid (-1 outside the sampling band), the fractional parts and the mask (1 for DCNv1).
struct PaddedSample {
    var corner: Int32
    var ly: Float, lx: Float, mask: Float

    /// The four masked bilinear weights (top-left, top-right, bottom-left, bottom-right).
    @inline(__always) var weights: (Float, Float, Float, Float) {
        let hy = 1 - ly, hx = 1 - lx
        return (hy * hx * mask, hy * lx * mask, ly * hx * mask, ly * lx * mask)
    }
}

/// Sampling position of tap k = (i, j) at output pixel p = (oy, ox) before the offset.
@inline(__always)
func basePosition(_ conv: ConvGeometry, tap k: Int, pixel p: Int) -> (y: Float, x: Float) {
    let o = conv.options
    let i = k / conv.kernelW, j = k % conv.kernelW
    let oy = p / conv.outWidth, ox = p % conv.outWidth
    return (Float(oy * o.strideH - o.padH + i * o.dilationH), Float(ox * o.strideW - o.padW + j * o.dilationW))
}

/// A run of consecutive input channels with one offset group and one weight group: the unit of
/// vector work. `column(k)` is where the run's first channel sits in a pixel's columns.
struct ChannelRun {
    let first: Int, count: Int, offsetGroup: Int, weightGroup: Int
    let firstInWeightGroup: Int, channelsPerWeightGroup: Int, taps: Int

    @inline(__always) func column(_ k: Int) -> Int {
        weightGroup * taps * channelsPerWeightGroup + k * channelsPerWeightGroup + firstInWeightGroup
    }
}

/// The images of one chunk, ready for the bilinear im2col and its adjoints.
struct DeformChunk {
    let firstImage: Int, images: Int
    /// Channel-last input with a zero border, `images x (H+2)(W+2) x C`.
    let grid: SharedReads<Float>
    /// `table[((b*P + p)*G + g)*K + k]`.
    let table: SharedReads<PaddedSample>
}

/// The pixel-major bilinear im2col of one deformable convolution and the maths built on it.
struct PixelMajorLayout {
    let conv: ConvGeometry
    let runs: [ChannelRun]
    let C: Int, K: Int, P: Int, G: Int, H: Int, W: Int
    /// Floats per pixel in the columns: C * K.
    let columnsPerPixel: Int
    /// Grid cells per image: (H+2)(W+2).
    let cells: Int

    init(_ geo: DeformConvGeometry) {
        conv = geo.conv
        C = conv.inChannels; K = conv.taps; P = conv.outPixels; G = geo.offsetGroups
        H = conv.height; W = conv.width
        columnsPerPixel = C * K
        cells = (H + 2) * (W + 2)
        let Cg = geo.channelsPerOffsetGroup, Cw = conv.inChannels / conv.groups
        var runs: [ChannelRun] = []
        var c = 0
        while c < C {
            let end = min((c / Cg + 1) * Cg, (c / Cw + 1) * Cw)
            runs.append(ChannelRun(first: c, count: end - c, offsetGroup: c / Cg, weightGroup: c / Cw,
                                   firstInWeightGroup: c % Cw, channelsPerWeightGroup: Cw, taps: K))
            c = end
        }
        self.runs = runs
    }

    /// W'[o, k*Cw + c] = W[o, c*K + k]: the weight in the columns' tap-major order.
    func permuteWeight(_ w: UnsafePointer<Float>, into permuted: UnsafeMutablePointer<Float>) {
        let Cw = C / conv.groups
        for o in 0..<conv.outChannels {
            for c in 0..<Cw { for k in 0..<K { permuted[o * Cw * K + k * Cw + c] = w[o * Cw * K + c * K + k] } }
        }
    }

    /// dW[o, c*K + k] += dW'[o, k*Cw + c].
    func addUnpermutedWeightGradient(_ permuted: UnsafePointer<Float>, into dw: UnsafeMutablePointer<Float>) {
        let Cw = C / conv.groups
        for o in 0..<conv.outChannels {
            for c in 0..<Cw { for k in 0..<K { dw[o * Cw * K + c * K + k] += permuted[o * Cw * K + k * Cw + c] } }
        }
    }

    /// Copies the chunk's images into the channel-last zero-bordered grid and fills the sampling table.
    func prepareChunk(
        _ x: SharedReads<Float>, _ off: SharedReads<Float>, _ m: SharedReads<Float>?,
        firstImage n0: Int, images: Int, _ ws: Workspace
    ) -> DeformChunk {
        let grid = ws.floats(.inputTransposed, images * cells * C)
        let table = ws.raw(.samplingTable, bytes: images * P * G * K * MemoryLayout<PaddedSample>.stride)
            .bindMemory(to: PaddedSample.self, capacity: images * P * G * K)
        let gridOut = DisjointWrites(grid), tableOut = DisjointWrites(table)
        let (C, H, W, P, K, G, cells, conv) = (C, H, W, P, K, G, cells, conv)
        // Rows 0 and H+1 of the grid are the border; row y+1 holds input row y between two zeros.
        parallelFor(images * (H + 2), grain: 4) { rows in
            for r in rows {
                let b = r / (H + 2), gy = r % (H + 2)
                let line = gridOut + (b * cells + gy * (W + 2)) * C
                if gy == 0 || gy == H + 1 { line.initialize(repeating: 0, count: (W + 2) * C); continue }
                line.initialize(repeating: 0, count: C)
                (line + (W + 1) * C).initialize(repeating: 0, count: C)
                let plane = x + (n0 + b) * C * H * W + (gy - 1) * W
                for c in 0..<C {
                    let source = plane + c * H * W
                    for ix in 0..<W { line[(ix + 1) * C + c] = source[ix] }
                }
            }
        }
        parallelFor(images * P, grain: 64) { pixels in
            for r in pixels {
                let n = n0 + r / P, p = r % P
                for g in 0..<G {
                    for k in 0..<K {
                        let base = basePosition(conv, tap: k, pixel: p)
                        let offsetRow = ((n * G + g) * 2 * K + 2 * k) * P + p
                        let y = base.y + off[offsetRow], xx = base.x + off[offsetRow + P]
                        let mask = m.map { $0[((n * G + g) * K + k) * P + p] } ?? 1
                        var s = PaddedSample(corner: -1, ly: 0, lx: 0, mask: 0)
                        // y = -1 (or x = -1) is kept: its value is 0 (the corner row or column is
                        // the zero border) but its derivative from above is not (torchvision's
                        // convention, as at every other integer position).
                        if y >= -1, y < Float(H), xx >= -1, xx < Float(W) {
                            let yf = y.rounded(.down), xf = xx.rounded(.down)
                            s = PaddedSample(corner: Int32((Int(yf) + 1) * (W + 2) + Int(xf) + 1), ly: y - yf, lx: xx - xf, mask: mask)
                        }
                        tableOut[(r * G + g) * K + k] = s
                    }
                }
            }
        }
        return DeformChunk(firstImage: n0, images: images, grid: SharedReads(grid), table: SharedReads(table))
    }

    /// columns[b*P + p][column(c, k)] = m * x[n0+b, c](y_k(p), x_k(p)).
    func im2col(_ chunk: DeformChunk, _ columns: UnsafeMutablePointer<Float>) {
        let out = DisjointWrites(columns)
        let (C, K, P, G, W, cells, runs, CK) = (C, K, P, G, W, cells, runs, columnsPerPixel)
        parallelFor(chunk.images * P, grain: 16) { pixels in
            for r in pixels {
                let row = out + r * CK
                let grid = chunk.grid + (r / P) * cells * C
                for k in 0..<K {
                    for run in runs {
                        let s = chunk.table[(r * G + run.offsetGroup) * K + k]
                        let dst = row + run.column(k)
                        if s.corner < 0 { dst.initialize(repeating: 0, count: run.count); continue }
                        let (w00, w01, w10, w11) = s.weights
                        let v00 = grid + Int(s.corner) * C + run.first, v01 = v00 + C
                        let v10 = v00 + (W + 2) * C, v11 = v10 + C
                        var i = 0
                        while i + 8 <= run.count {
                            let v = w00 * load8(v00 + i) + w01 * load8(v01 + i) + w10 * load8(v10 + i) + w11 * load8(v11 + i)
                            store8(v, dst + i)
                            i += 8
                        }
                        while i < run.count {
                            dst[i] = w00 * v00[i] + w01 * v01[i] + w10 * v10[i] + w11 * v11[i]
                            i += 1
                        }
                    }
                }
            }
        }
    }

    /// Calls `body(columns, rows, weight)` for every (image b of the chunk, weight group g) in
    /// order, with the offsets of that block: into the columns (b*P*CK + g*Kg), into the NCHW
    /// output / dOutput (((n0+b)*Cout + g*Mg)*P) and into the permuted weight (g*Mg*Kg).
    private func forEachGemmBlock(_ chunk: DeformChunk, _ body: (_ columns: Int, _ rows: Int, _ weight: Int) -> Void) {
        let Mg = conv.outPerGroup, Kg = conv.columnRowsPerGroup
        for b in 0..<chunk.images {
            for g in 0..<conv.groups {
                body(b * P * columnsPerPixel + g * Kg, ((chunk.firstImage + b) * conv.outChannels + g * Mg) * P, g * Mg * Kg)
            }
        }
    }

    /// out[n0+b, group rows] += W'[group] (Mg x Kg) * columns[b][:, group]^T (Kg x P).
    func forwardGemm(output: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>,
                     columns: UnsafePointer<Float>, chunk: DeformChunk) {
        let Mg = conv.outPerGroup, Kg = conv.columnRowsPerGroup
        forEachGemmBlock(chunk) { col, rows, w in
            BLAS.sgemm(transA: false, transB: true, m: Mg, n: P, k: Kg, alpha: 1, a: weight + w, lda: Kg,
                       b: columns + col, ldb: columnsPerPixel, beta: 1, c: output + rows, ldc: P)
        }
    }

    /// dW'[group] += dOut[n0+b, group rows] (Mg x P) * columns[b][:, group] (P x Kg), images in order.
    func weightGradientGemm(dWeight: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
                            columns: UnsafePointer<Float>, chunk: DeformChunk) {
        let Mg = conv.outPerGroup, Kg = conv.columnRowsPerGroup
        forEachGemmBlock(chunk) { col, rows, w in
            BLAS.sgemm(transA: false, transB: false, m: Mg, n: Kg, k: P, alpha: 1, a: dOutput + rows, lda: P,
                       b: columns + col, ldb: columnsPerPixel, beta: 1, c: dWeight + w, ldc: Kg)
        }
    }

    /// dColumns[b][:, group] = dOut[n0+b, group rows]^T (P x Mg) * W'[group] (Mg x Kg).
    func columnsGradientGemm(dColumns: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>,
                             dOutput: UnsafePointer<Float>, chunk: DeformChunk) {
        let Mg = conv.outPerGroup, Kg = conv.columnRowsPerGroup
        forEachGemmBlock(chunk) { col, rows, w in
            BLAS.sgemm(transA: true, transB: false, m: P, n: Kg, k: Mg, alpha: 1, a: dOutput + rows, lda: P,
                       b: weight + w, ldb: Kg, beta: 0, c: dColumns + col, ldc: columnsPerPixel)
        }
    }

    /// The backward pass over the samples is split into this many blocks of pixels. The number is
    /// fixed, not the thread count, so dInput's per-block partial sums are added in the same order
    /// on any machine; up to this many threads work in that pass.
    static let adjointBlocks = 4

    /// The adjoint of the bilinear im2col applied to dColumns, in one pass over the samples split
    /// by blocks of pixels:
    /// - dInput: each block scatters its samples into its own channel-last partial gradient grid
    ///   (only the span of cells its samples touch is used), visiting (pixel, group, tap, corner) in
    ///   order; the blocks are then added into dInput (NCHW) in block order;
    /// - per (pixel, offset group, tap), the four dot products D_ab = sum_c dColumns * x_c(corner ab)
    ///   give dMask[n, g, k, p] += sum_c dColumns * bilinear(x_c) and
    ///   dOffset[n, g, 2k(+1), p] += m * sum_c dColumns * d bilinear(x_c) / dy (dx).
    func samplingAdjoint(_ chunk: DeformChunk, dColumns: SharedReads<Float>, dInput: DisjointWrites<Float>?,
                         dOffset: DisjointWrites<Float>?, dMask: DisjointWrites<Float>?, _ ws: Workspace) {
        let (C, K, P, G, H, W, cells, runs, CK) = (C, K, P, G, H, W, cells, runs, columnsPerPixel)
        let rows = chunk.images * P, n0 = chunk.firstImage
        let blocks = min(Self.adjointBlocks, rows)
        let gridFloats = chunk.images * cells * C
        let wantDots = dOffset != nil || dMask != nil
        let partialStorage = ws.floats(.inputGradientTransposed, dInput == nil ? 0 : blocks * gridFloats)
        let partial = DisjointWrites(partialStorage)
        let spanStorage = UnsafeMutablePointer<Range<Int>>.allocate(capacity: blocks)
        spanStorage.initialize(repeating: 0..<0, count: blocks)
        defer { spanStorage.deallocate() }
        let spans = DisjointWrites(spanStorage)
        parallelFor(blocks, grain: 1) { blockRange in
            for block in blockRange {
                let r0 = rows * block / blocks, r1 = rows * (block + 1) / blocks
                let grid = partial + block * gridFloats
                if dInput != nil {
                    // Cells this block's samples touch: top-left corners, one grid row and one cell beyond.
                    var first = Int.max, last = -1
                    for r in r0..<r1 {
                        for e in 0..<(G * K) {
                            let corner = Int(chunk.table[r * G * K + e].corner)
                            if corner < 0 { continue }
                            let cell = (r / P) * cells + corner
                            first = min(first, cell); last = max(last, cell)
                        }
                    }
                    let span = last < 0 ? 0..<0 : first..<(last + W + 4)
                    spans[block] = span
                    (grid + span.lowerBound * C).initialize(repeating: 0, count: span.count * C)
                }
                for r in r0..<r1 {
                    let n = n0 + r / P, p = r % P
                    let imageCells = (r / P) * cells
                    let row = dColumns + r * CK
                    for g in 0..<G {
                        for k in 0..<K {
                            let s = chunk.table[(r * G + g) * K + k]
                            if s.corner < 0 { continue }
                            let corner = (imageCells + Int(s.corner)) * C, below = (W + 2) * C
                            var sums = SIMD4<Float>(repeating: 0)  // D00, D01, D10, D11
                            for run in runs where run.offsetGroup == g {
                                let d = row + run.column(k)
                                if dInput != nil {
                                    scatterCorners(d, grid + corner + run.first, rowStride: below, channelStride: C,
                                                   weights: s.weights, count: run.count)
                                }
                                if wantDots {
                                    let v00 = chunk.grid + corner + run.first
                                    sums += cornerDots(d, v00, v00 + C, v00 + below, v00 + below + C, count: run.count)
                                }
                            }
                            if !wantDots { continue }
                            let ly = s.ly, lx = s.lx, hy = 1 - ly, hx = 1 - lx
                            let (d00, d01, d10, d11) = (sums[0], sums[1], sums[2], sums[3])
                            if let dOffset {
                                let offsetRow = ((n * G + g) * 2 * K + 2 * k) * P + p
                                // d/dy of hy*hx*v00 + hy*lx*v01 + ly*hx*v10 + ly*lx*v11, and d/dx likewise.
                                dOffset[offsetRow] += s.mask * (hx * (d10 - d00) + lx * (d11 - d01))
                                dOffset[offsetRow + P] += s.mask * (hy * (d01 - d00) + ly * (d11 - d10))
                            }
                            if let dMask { dMask[((n * G + g) * K + k) * P + p] += hy * hx * d00 + hy * lx * d01 + ly * hx * d10 + ly * lx * d11 }
                        }
                    }
                }
            }
        }
        guard let dInput else { return }
        // dInput[n, c, y, x] += the blocks' grids at cell (y+1)(W+2) + x+1, channel c, in block order.
        let source = SharedReads(partialStorage), blockSpans = SharedReads(spanStorage)
        parallelFor(chunk.images * H, grain: 4) { lines in
            for line in lines {
                let b = line / H, y = line % H
                let lineCells = (b * cells + (y + 1) * (W + 2) + 1)..<(b * cells + (y + 1) * (W + 2) + 1 + W)
                let plane = dInput + (n0 + b) * C * H * W + y * W
                for block in 0..<blocks {
                    let span = lineCells.clamped(to: blockSpans[block])
                    if span.isEmpty { continue }
                    let grid = source + block * gridFloats
                    for c in 0..<C {
                        let target = plane + c * H * W - lineCells.lowerBound
                        for cell in span { target[cell] += grid[cell * C + c] }
                    }
                }
            }
        }
    }
}

/// q_ab[i] += w_ab * d[i] at the four corners (top-left q, right +channelStride, below +rowStride).
@inline(__always)
func scatterCorners(_ d: UnsafePointer<Float>, _ q00: UnsafeMutablePointer<Float>, rowStride: Int, channelStride: Int,
                    weights: (Float, Float, Float, Float), count: Int) {
    let (w00, w01, w10, w11) = weights
    let q01 = q00 + channelStride, q10 = q00 + rowStride, q11 = q10 + channelStride
    var i = 0
    while i + 8 <= count {
        let v = load8(d + i)
        store8(load8(q00 + i) + w00 * v, q00 + i)
        store8(load8(q01 + i) + w01 * v, q01 + i)
        store8(load8(q10 + i) + w10 * v, q10 + i)
        store8(load8(q11 + i) + w11 * v, q11 + i)
        i += 8
    }
    while i < count {
        let v = d[i]
        q00[i] += w00 * v; q01[i] += w01 * v; q10[i] += w10 * v; q11[i] += w11 * v
        i += 1
    }
}

/// (sum d*a, sum d*b, sum d*c, sum d*e) over `count` floats, in 8-wide partial sums.
@inline(__always)
func cornerDots(_ d: UnsafePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                _ c: UnsafePointer<Float>, _ e: UnsafePointer<Float>, count: Int) -> SIMD4<Float> {
    var sa = SIMD8<Float>(repeating: 0), sb = sa, sc = sa, se = sa
    var i = 0
    while i + 8 <= count {
        let v = load8(d + i)
        sa += v * load8(a + i); sb += v * load8(b + i); sc += v * load8(c + i); se += v * load8(e + i)
        i += 8
    }
    var result = SIMD4<Float>(sa.sum(), sb.sum(), sc.sum(), se.sum())
    while i < count {
        result += d[i] * SIMD4<Float>(a[i], b[i], c[i], e[i])
        i += 1
    }
    return result
}

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
@inline(__always) func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
@inline(__always) func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
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
