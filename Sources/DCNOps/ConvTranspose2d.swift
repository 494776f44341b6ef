// 2-D transposed convolution (PyTorch's conv_transpose2d), forward and backward.
//
//   y[n, g*Og + o, iy*sh - ph + i*dh, ix*sw - pw + j*dw] += x[n, g*Cg + c, iy, ix] * W[g*Cg + c, o, i, j]
//
// with W in PyTorch's layout [Cin, Cout/groups, kh, kw] (Cg = Cin/groups, Og = Cout/groups). Each
// input pixel scatters a kh x kw patch into the output, which is what a regular convolution's
// backward does with its output gradient. So everything here is expressed through the regular
// convolution `conv` that maps [N, Cout, Ho, Wo] to [N, Cin, H, W] with the same weight tensor
// (read as conv2d's [Cout', C'/groups, kh, kw] = [Cin, Cout/groups, kh, kw]) and the same stride,
// padding, dilation and groups:
//
//   forward:  y = conv^T x      columns = W^T x (one sgemm for a chunk of images side by side),
//                               then col2im scatter-adds them into y
//                               (kernel = stride, no dilation: each output pixel copies its one product)
//   dInput:   dx += conv(dy)    im2col(dy), then W * columns (sgemm)
//   dWeight:  dW += x * im2col(dy)^T, the same columns as dInput (sgemm)
//   dBias:    dBias[o] += sum of dy[:, o]
//
// Output size: the full scatter covers (H-1)*sh + dh*(kh-1) + 1 rows; padding crops ph of them at
// the top and at the bottom, output padding adds oph back at the bottom (rows past the full
// scatter hold only the bias). `conv` is built with H output rows: when only the dilation allows
// oph >= sh, conv2d's formula would give it more, and those extra rows have no input row here.
import DCNTensor

/// Stride, padding, output padding, dilation and groups of a 2-D transposed convolution
/// (PyTorch's conv_transpose2d parameters).
public struct ConvTransposeOptions: Sendable, Equatable {
    public var strideH: Int, strideW: Int
    public var padH: Int, padW: Int
    /// Extra rows / columns at the bottom / right of the output; each must be smaller than the
    /// stride or the dilation of its dimension.
    public var outputPadH: Int, outputPadW: Int
    public var dilationH: Int, dilationW: Int
    /// Weight groups: input and output channels split into `groups` independent convolutions.
    public var groups: Int

    public init(strideH: Int, strideW: Int, padH: Int, padW: Int, outputPadH: Int, outputPadW: Int,
                dilationH: Int, dilationW: Int, groups: Int = 1) {
        self.strideH = strideH; self.strideW = strideW
        self.padH = padH; self.padW = padW
        self.outputPadH = outputPadH; self.outputPadW = outputPadW
        self.dilationH = dilationH; self.dilationW = dilationW
        self.groups = groups
    }

    /// Square stride, padding, output padding and dilation.
    public init(stride: Int = 1, padding: Int = 0, outputPadding: Int = 0, dilation: Int = 1, groups: Int = 1) {
        self.init(strideH: stride, strideW: stride, padH: padding, padW: padding,
                  outputPadH: outputPadding, outputPadW: outputPadding,
                  dilationH: dilation, dilationW: dilation, groups: groups)
    }

    /// The options of the regular convolution this one is the transpose of.
    public var convOptions: ConvOptions {
        ConvOptions(strideH: strideH, strideW: strideW, padH: padH, padW: padW,
                    dilationH: dilationH, dilationW: dilationW, groups: groups)
    }
}

/// Every size of one transposed convolution, checked once.
public struct ConvTransposeGeometry: Sendable, Equatable {
    /// The regular convolution whose input gradient this op computes: its input is our output
    /// [N, Cout, Ho, Wo], its output our input [N, Cin, H, W], its weight ours.
    public let conv: ConvGeometry
    public let options: ConvTransposeOptions

    public var batch: Int { conv.batch }
    public var inChannels: Int { conv.outChannels }
    public var outChannels: Int { conv.inChannels }
    public var inputShape: [Int] { conv.outputShape }
    public var outputShape: [Int] { conv.inputShape }
    public var weightShape: [Int] { conv.weightShape }
    /// Multiply-adds of the forward pass: each input pixel times each tap of its group's weights.
    public var multiplyAdds: Int { conv.multiplyAdds }

    /// - Parameters: input `[N, Cin, H, W]`, weight `[Cin, Cout / groups, kh, kw]`.
    public init(input: [Int], weight: [Int], options: ConvTransposeOptions, op: String = "conv_transpose2d") throws {
        try require(input.count == 4, "\(op): input must be [N, Cin, H, W], got \(input)")
        try require(weight.count == 4, "\(op): weight must be [Cin, Cout/groups, kh, kw] (PyTorch's layout), got \(weight)")
        let o = options
        try o.convOptions.requireValid(op)
        try require(o.outputPadH >= 0 && o.outputPadW >= 0, "\(op): output padding must be >= 0, got (\(o.outputPadH), \(o.outputPadW))")
        try require((o.outputPadH < o.strideH || o.outputPadH < o.dilationH) && (o.outputPadW < o.strideW || o.outputPadW < o.dilationW),
                    "\(op): output padding (\(o.outputPadH), \(o.outputPadW)) must be smaller than the stride (\(o.strideH), \(o.strideW)) or the dilation (\(o.dilationH), \(o.dilationW)) in each dimension")
        try require(input[0] >= 0 && input[1] >= 1 && input[2] >= 1 && input[3] >= 1,
                    "\(op): input must have at least one channel, row and column, got \(input)")
        try require(weight.allSatisfy { $0 >= 1 }, "\(op): weight sizes must be positive, got \(weight)")
        try require(input[1] % o.groups == 0, "\(op): groups \(o.groups) does not divide the \(input[1]) input channels")
        try require(weight[0] == input[1],
                    "\(op): weight \(weight) is for \(weight[0]) input channels (its first dimension), input has \(input[1])")
        let (N, C, H, W) = (input[0], input[1], input[2], input[3])
        let outChannels = weight[1] * o.groups, kh = weight[2], kw = weight[3]
        let Ho = (H - 1) * o.strideH - 2 * o.padH + o.dilationH * (kh - 1) + o.outputPadH + 1
        let Wo = (W - 1) * o.strideW - 2 * o.padW + o.dilationW * (kw - 1) + o.outputPadW + 1
        try require(Ho >= 1 && Wo >= 1,
                    "\(op): the \(H)x\(W) input gives a \(Ho)x\(Wo) output (padding (\(o.padH), \(o.padW)) is too large for the \(kh)x\(kw) kernel)")
        self.options = o
        conv = ConvGeometry(batch: N, inChannels: outChannels, height: Ho, width: Wo, outChannels: C,
                            kernelH: kh, kernelW: kw, outHeight: H, outWidth: W, options: o.convOptions)
    }

    /// The stride equals the kernel and there is no dilation: the taps of different input pixels
    /// land on disjoint output pixels, so each output pixel receives at most one product.
    var tapsAreDisjoint: Bool {
        conv.kernelH == options.strideH && conv.kernelW == options.strideW
            && options.dilationH == 1 && options.dilationW == 1
    }
}

/// Transposed convolution. input `[N, Cin, H, W]`, weight `[Cin, Cout/groups, kh, kw]`, bias
/// `[Cout]`; returns `[N, Cout, Ho, Wo]` with Ho = (H-1)*sh - 2*ph + dh*(kh-1) + oph + 1.
public func convTranspose2dForward(
    input: Tensor, weight: Tensor, bias: Tensor?, options: ConvTransposeOptions, workspace: Workspace? = nil
) throws -> Tensor {
    let tg = try ConvTransposeGeometry(input: input.shape, weight: weight.shape, options: options)
    let geo = tg.conv
    if let bias { try require(bias.shape == [tg.outChannels], "conv_transpose2d: bias must be [\(tg.outChannels)], got \(bias.shape)") }
    let ws = workspace ?? Workspace()
    let count = tg.outputShape.product
    if count == 0 { return Tensor(zeros: tg.outputShape) }
    let disjoint = tg.tapsAreDisjoint
    // No zero fill of the new output: the disjoint-taps copy writes every element, the general
    // path starts by writing the bias. (On the mask head, zeroing its 100 MB output took a third
    // of the op, mostly page faults; now they happen in the parallel writes, on every thread.)
    let data = input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                let y = buffer.baseAddress!
                if !disjoint { fillPlanes(y, bias: bias, images: geo.batch, channels: tg.outChannels, pixels: geo.inPixels) }
                forEachTransposeChunk(geo, ws) { n0, images in
                    let xs = chunkImages(x.baseAddress!, channels: geo.outChannels, pixels: geo.outPixels,
                                         firstImage: n0, images: images, ws)
                    let columns = transposedColumns(geo, weight: w.baseAddress!, images: xs, count: images, ws)
                    if disjoint {
                        disjointTapsCopy(tg, output: y, columns: columns, bias: bias, firstImage: n0, images: images)
                    } else {
                        col2imAdd(geo, dInput: y, dColumns: columns, firstImage: n0, images: images)
                    }
                }
                initialized = count
            }
        }
    }
    return try Tensor(shape: tg.outputShape, data: data)
}

/// y[n, c, :] = bias[c] (0 without a bias) for every image and channel, planes in parallel (the
/// first write of a new output: its page faults are spread over the threads too).
private func fillPlanes(_ y: UnsafeMutablePointer<Float>, bias: Tensor?, images: Int, channels: Int, pixels: Int) {
    let values = bias?.data ?? [Float](repeating: 0, count: channels)
    let dst = DisjointWrites(y)
    values.withUnsafeBufferPointer { vp in
        let v = SharedReads(vp.baseAddress!)
        parallelFor(images * channels, grain: 16) { planes in
            for plane in planes { (dst + plane * pixels).update(repeating: v[plane % channels], count: pixels) }
        }
    }
}

/// Backward transposed convolution: adds dL/dinput, dL/dweight and dL/dbias for the given
/// dL/doutput into the gradients that are present (pass nil for those not needed).
public func convTranspose2dBackward(
    dInput: inout Tensor?, dWeight: GradientSlot?, dBias: GradientSlot?,
    dOutput: Tensor, input: Tensor, weight: Tensor, options: ConvTransposeOptions, workspace: Workspace? = nil
) throws {
    let tg = try ConvTransposeGeometry(input: input.shape, weight: weight.shape, options: options)
    let geo = tg.conv
    try require(dOutput.shape == tg.outputShape, "conv_transpose2d backward: dOutput must be \(tg.outputShape), got \(dOutput.shape)")
    try requireGradientShapes("conv_transpose2d backward", dInput: dInput, input: tg.inputShape, dWeight: dWeight,
                              weight: weight.shape, dBias: dBias, outChannels: tg.outChannels)
    if let dBias { addBiasGradient(dBias, dOutput: dOutput, images: geo.batch, pixels: geo.inPixels) }
    if dInput == nil && dWeight == nil { return }
    let ws = workspace ?? Workspace()
    withBackwardPointers(dInput: &dInput, input: input, weight: weight, dOutput: dOutput) { x, w, dy, dx in
        forEachTransposeChunk(geo, ws) { n0, images in
            // im2col(dOutput) as the input of `conv`: rows c*K + k, image b's pixels at b*P.
            let stride = images * geo.outPixels
            let columns = ws.floats(.columns, geo.inChannels * geo.taps * stride)
            im2col(geo, dy.baseAddress!, n0, images, columns)
            if let dWeight {
                // dW[g] += x[g] (Cg x P) * columns[g]^T (P x Og*kh*kw) per image: conv's
                // weight gradient with x in the place of its output gradient.
                columnsWeightGradientGemm(geo, dWeight: dWeight.base, dOutput: x.baseAddress!,
                                          columns: columns, columnStride: stride, imageStep: geo.outPixels,
                                          firstImage: n0, images: images)
            }
            if let dx {
                // dx += W[g] * columns[g]: conv's forward.
                columnsForwardGemm(geo, output: dx, weight: w.baseAddress!,
                                   columns: columns, columnStride: stride, imageStep: geo.outPixels,
                                   firstImage: n0, images: images)
            }
        }
    }
}

// MARK: - Chunks of images side by side

/// Floats of columns per chunk of images (16 MB, or less when `Workspace.columnBudget` is smaller).
/// The forward's product W^T x of a 14x14 RoI runs at about half the sgemm rate one image at a
/// time and at nearly the full rate for 8-16 images side by side (measured on the mask head: 256
/// channels, 2x2 taps, 20 images per chunk); larger chunks gain nothing and take more memory. The
/// backward's products per image (k or n = Cout*kh*kw = 1024 there) already run at full rate.
private let transposeChunkColumnFloats = 1 << 22

/// Calls `body(firstImage, images)` for consecutive chunks of the batch (at least one image each).
private func forEachTransposeChunk(_ geo: ConvGeometry, _ ws: Workspace, _ body: (Int, Int) -> Void) {
    let perImage = max(1, geo.inChannels * geo.taps * geo.outPixels)
    let chunk = max(1, min(geo.batch, ws.columnBudget / perImage, transposeChunkColumnFloats / perImage))
    var n0 = 0
    while n0 < geo.batch {
        let images = min(chunk, geo.batch - n0)
        body(n0, images)
        n0 += images
    }
}

/// Images n0 ..< n0 + images of `x` [N, C, P] side by side as a [C, images * P] matrix: x itself
/// for one image, else a copy in the `.inputTransposed` workspace buffer.
private func chunkImages(
    _ x: UnsafePointer<Float>, channels C: Int, pixels P: Int, firstImage n0: Int, images: Int, _ ws: Workspace
) -> UnsafePointer<Float> {
    if images == 1 { return x + n0 * C * P }
    let out = ws.floats(.inputTransposed, C * images * P)
    let src = SharedReads(x), dst = DisjointWrites(out)
    parallelFor(C, grain: 16) { channels in
        for c in channels {
            for b in 0..<images { (dst + (c * images + b) * P).update(from: src + ((n0 + b) * C + c) * P, count: P) }
        }
    }
    return UnsafePointer(out)
}

/// columns[g] (Og*kh*kw x B) = W[g]^T * xs[g] (Cg x B), B = images * P: conv's column gradient,
/// rows c*K + k, image b's pixels at b*P (the layout of im2col and col2imAdd), in `.columnGradient`.
private func transposedColumns(
    _ geo: ConvGeometry, weight w: UnsafePointer<Float>, images xs: UnsafePointer<Float>, count images: Int, _ ws: Workspace
) -> UnsafePointer<Float> {
    let B = images * geo.outPixels, Mg = geo.outPerGroup, Kg = geo.columnRowsPerGroup
    let columns = ws.floats(.columnGradient, geo.inChannels * geo.taps * B)
    for g in 0..<geo.groups {
        BLAS.sgemm(transA: true, transB: false, m: Kg, n: B, k: Mg, alpha: 1,
                   a: w + g * Mg * Kg, lda: Kg, b: xs + g * Mg * B, ldb: B,
                   beta: 0, c: columns + g * Kg * B, ldc: B)
    }
    return UnsafePointer(columns)
}

// MARK: - Disjoint taps (kernel = stride, no dilation: the 2x2 stride-2 upsampling of mask heads)

/// y = bias + columns for images n0 ..< n0 + images when every output pixel receives at most one
/// tap: each output pixel copies its one product (no zero fill, no accumulation; pixels no tap
/// reaches, in the output padding, get the bias). On the mask head this takes about half the time
/// of col2im's scatter-add.
private func disjointTapsCopy(
    _ tg: ConvTransposeGeometry, output y: UnsafeMutablePointer<Float>, columns: UnsafePointer<Float>,
    bias: Tensor?, firstImage n0: Int, images: Int
) {
    let geo = tg.conv, o = tg.options
    let Cout = geo.inChannels, K = geo.taps, P = geo.outPixels, Ho = geo.height, Wo = geo.width
    let H = geo.outHeight, W = geo.outWidth, kh = geo.kernelH, kw = geo.kernelW
    let stride = images * P
    // Output columns [0, covered) lie under some input column's taps, the rest is output padding.
    let covered = min(Wo, W * kw - o.padW)
    let biasValues = bias?.data ?? [Float](repeating: 0, count: Cout)
    let reads = SharedReads(columns), writes = DisjointWrites(y)
    biasValues.withUnsafeBufferPointer { bp in
        let biasReads = SharedReads(bp.baseAddress!)
        parallelFor(images * Cout, grain: 4) { planes in
            for bc in planes {
                let b = bc / Cout, c = bc % Cout
                let plane = writes + ((n0 + b) * Cout + c) * Ho * Wo
                let rows = reads + c * K * stride + b * P
                let beta = biasReads[c]
                for oy in 0..<Ho {
                    // Output row oy = iy*kh + i - padH: tap row i of input row iy.
                    let ty = oy + o.padH, iy = ty / kh, i = ty % kh
                    let line = plane + oy * Wo
                    if iy >= H { line.update(repeating: beta, count: Wo); continue }
                    let tapRow = rows + i * kw * stride + iy * W
                    if kw == 2 && o.padW == 0 {
                        // The mask head's case, as two interleaved streams the compiler vectorises.
                        let t0 = tapRow, t1 = tapRow + stride
                        for ix in 0..<W {
                            line[2 * ix] = t0[ix] + beta
                            line[2 * ix + 1] = t1[ix] + beta
                        }
                    } else {
                        // Tap column j fills output columns ox = ix*kw + j - padW, kw apart.
                        for j in 0..<kw {
                            let t = tapRow + j * stride
                            var ix = max(0, (o.padW - j + kw - 1) / kw)
                            var ox = ix * kw + j - o.padW
                            while ox < covered {
                                line[ox] = t[ix] + beta
                                ox += kw; ix += 1
                            }
                        }
                    }
                    if covered < Wo { (line + covered).update(repeating: beta, count: Wo - covered) }
                }
            }
        }
    }
}
