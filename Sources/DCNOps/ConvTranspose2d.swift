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
//   forward:  y = conv^T x      columns = W^T x (sgemm), then col2im scatter-adds them into y
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
        try require(o.groups >= 1, "\(op): groups must be >= 1, got \(o.groups)")
        try require(o.strideH >= 1 && o.strideW >= 1, "\(op): stride must be >= 1, got (\(o.strideH), \(o.strideW))")
        try require(o.dilationH >= 1 && o.dilationW >= 1, "\(op): dilation must be >= 1, got (\(o.dilationH), \(o.dilationW))")
        try require(o.padH >= 0 && o.padW >= 0, "\(op): padding must be >= 0, got (\(o.padH), \(o.padW))")
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
    var output = Tensor(zeros: tg.outputShape)
    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            output.withUnsafeMutableBufferPointer { y in
                if tg.tapsAreDisjoint && !geo.isPointwise {
                    disjointTapsForward(tg, output: y.baseAddress!, input: x.baseAddress!, weight: w.baseAddress!, bias: bias, ws)
                    return
                }
                if let bias { fillBias(y.baseAddress!, bias: bias, images: geo.batch, pixels: geo.inPixels) }
                forEachColumnChunk(geo, ws) { n0, images in
                    if geo.isPointwise {
                        // 1x1, stride 1: the columns are the output itself, y += W^T x directly.
                        columnsGradientGemm(geo, dColumns: y.baseAddress! + n0 * geo.inChannels * geo.inPixels,
                                            columnStride: geo.outPixels, imageStep: geo.inChannels * geo.inPixels,
                                            accumulate: true, weight: w.baseAddress!, dOutput: x.baseAddress!,
                                            firstImage: n0, images: images)
                    } else {
                        let stride = images * geo.outPixels
                        let columns = ws.floats(.columnGradient, geo.inChannels * geo.taps * stride)
                        columnsGradientGemm(geo, dColumns: columns, columnStride: stride, imageStep: geo.outPixels,
                                            accumulate: false, weight: w.baseAddress!, dOutput: x.baseAddress!,
                                            firstImage: n0, images: images)
                        col2imAdd(geo, dInput: y.baseAddress!, dColumns: columns, firstImage: n0, images: images)
                    }
                }
            }
        }
    }
    return output
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
    try require(dInput == nil || dInput!.shape == tg.inputShape, "conv_transpose2d backward: dInput must be \(tg.inputShape), got \(dInput!.shape)")
    try require(dWeight == nil || dWeight!.shape == weight.shape, "conv_transpose2d backward: dWeight must be \(weight.shape), got \(dWeight!.shape)")
    try require(dBias == nil || dBias!.shape == [tg.outChannels], "conv_transpose2d backward: dBias must be [\(tg.outChannels)], got \(dBias!.shape)")
    if let dBias { addBiasGradient(dBias, dOutput: dOutput, images: geo.batch, pixels: geo.inPixels) }
    if dInput == nil && dWeight == nil { return }
    let ws = workspace ?? Workspace()
    let wantInput = dInput != nil
    // Move the input gradient out of the caller's variable so that writing it copies nothing.
    var dx = dInput ?? Tensor(zeros: [0])
    dInput = nil
    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            dOutput.withUnsafeBufferPointer { dy in
                dx.withUnsafeMutableBufferPointer { dxp in
                    forEachColumnChunk(geo, ws) { n0, images in
                        // The columns of dOutput as the input of `conv` (dOutput itself when pointwise).
                        let (columns, stride, step) = regularColumns(geo, dy.baseAddress!, n0, images, ws)
                        if let dWeight {
                            // dW[g] += x[g] (Cg x HW) * columns[g]^T (HW x Og*kh*kw): conv's weight
                            // gradient with x in the place of its output gradient.
                            columnsWeightGradientGemm(geo, dWeight: dWeight.base, dOutput: x.baseAddress!,
                                                      columns: columns, columnStride: stride, imageStep: step,
                                                      firstImage: n0, images: images)
                        }
                        if wantInput {
                            // dx += W[g] * columns[g]: conv's forward.
                            columnsForwardGemm(geo, output: dxp.baseAddress!, weight: w.baseAddress!,
                                               columns: columns, columnStride: stride, imageStep: step,
                                               firstImage: n0, images: images)
                        }
                    }
                }
            }
        }
    }
    if wantInput { dInput = dx }
}

// MARK: - Disjoint taps (kernel = stride, no dilation: the 2x2 stride-2 upsampling of mask heads)

/// Floats of columns per sgemm + copy round of the disjoint-taps forward (2 MB), so that the copy
/// reads them from cache. Measured on the mask head (2x2, 256 channels, 14x14, 128 RoIs): one to
/// four images per round are equally fast, the whole batch at once (100 MB) is 5-10% slower.
private let disjointTapsColumnFloats = 1 << 19

/// y = bias + conv^T x when every output pixel receives at most one tap: one sgemm per image and
/// group gives columns = W^T x (Og*kh*kw x H*W), then each output pixel copies its one product
/// (no zero fill, no accumulation; pixels no tap reaches, in the output padding, get the bias).
/// On the mask head this takes about half the time of col2im's scatter-add after the same sgemm.
private func disjointTapsForward(
    _ tg: ConvTransposeGeometry, output y: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>,
    weight w: UnsafePointer<Float>, bias: Tensor?, _ ws: Workspace
) {
    let geo = tg.conv, o = tg.options
    let Cout = geo.inChannels, K = geo.taps, P = geo.outPixels, Ho = geo.height, Wo = geo.width
    let H = geo.outHeight, W = geo.outWidth, kh = geo.kernelH, kw = geo.kernelW
    let perImage = max(1, Cout * K * P)
    let chunk = max(1, min(geo.batch, disjointTapsColumnFloats / perImage, ws.columnBudget / perImage))
    // Output columns [0, covered) lie under some input column's taps, the rest is output padding.
    let covered = min(Wo, W * kw - o.padW)
    let biasValues = bias?.data ?? [Float](repeating: 0, count: Cout)
    var n0 = 0
    while n0 < geo.batch {
        let first = n0, images = min(chunk, geo.batch - n0)
        let columns = ws.floats(.columnGradient, Cout * K * images * P)
        // Image b's columns are a block of their own: rows c*K + k of P floats.
        columnsGradientGemm(geo, dColumns: columns, columnStride: P, imageStep: Cout * K * P,
                            accumulate: false, weight: w, dOutput: x, firstImage: first, images: images)
        let reads = SharedReads(columns), writes = DisjointWrites(y)
        biasValues.withUnsafeBufferPointer { bp in
            let biasReads = SharedReads(bp.baseAddress!)
            parallelFor(images * Cout, grain: 4) { planes in
                for bc in planes {
                    let b = bc / Cout, c = bc % Cout
                    let plane = writes + ((first + b) * Cout + c) * Ho * Wo
                    let rows = reads + (b * Cout + c) * K * P
                    let beta = biasReads[c]
                    for oy in 0..<Ho {
                        // Output row oy = iy*kh + i - padH: tap row i of input row iy.
                        let ty = oy + o.padH, iy = ty / kh, i = ty % kh
                        let line = plane + oy * Wo
                        if iy >= H { line.update(repeating: beta, count: Wo); continue }
                        let tapRow = rows + i * kw * P + iy * W
                        if kw == 2 && o.padW == 0 {
                            // The mask head's case, as two interleaved streams the compiler vectorises.
                            let t0 = tapRow, t1 = tapRow + P
                            for ix in 0..<W {
                                line[2 * ix] = t0[ix] + beta
                                line[2 * ix + 1] = t1[ix] + beta
                            }
                        } else {
                            // Tap column j fills output columns ox = ix*kw + j - padW, kw apart.
                            for j in 0..<kw {
                                let t = tapRow + j * P
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
        n0 += images
    }
}
