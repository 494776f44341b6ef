// 2-D convolution as im2col + sgemm (darknet's layout), forward and backward.
//
//   out[n, o, p] = bias[o] + sum_{c,k} W[o, c, k] * x[n, c, p*stride - pad + k*dilation]
//
// The columns matrix holds, for a chunk of B images, row r = c*kh*kw + k and column b*P + p
// (P = output pixels), so weight group g reads rows [g*Kg, (g+1)*Kg) and one sgemm per image
// and group computes W[g] (Mg x Kg) * columns[g] (Kg x P) straight into the output.
import DCNTensor

/// Forward convolution. input `[N, C, H, W]`, weight `[Cout, C/groups, kh, kw]`, bias `[Cout]`;
/// returns `[N, Cout, Ho, Wo]`, mapped by `then` (inference's frozen norm and ReLU:
/// `channelAffineInPlace`'s arithmetic, inside our product while the output is in cache).
public func conv2dForward(
    input: Tensor, weight: Tensor, bias: Tensor?, options: ConvOptions, workspace: Workspace? = nil,
    then affine: ChannelAffine? = nil
) throws -> Tensor {
    let geo = try ConvGeometry(input: input.shape, weight: weight.shape, options: options)
    if let bias { try require(bias.shape == [geo.outChannels], "conv2d: bias must be [\(geo.outChannels)], got \(bias.shape)") }
    if let affine { try affine.requireChannels(geo.outChannels, "conv2d") }
    let ws = workspace ?? Workspace()
    // Inference (a workspace no backward will use) runs 3x3 stride-1 windows by Winograd's.
    if geo.groups == 1 && !ws.sizedForBackward && !geo.isPointwise && WinogradProduct.runs(window: geo.window, outChannels: geo.outChannels) {
        return winogradConv2dForward(geo, input: input, weight: weight, bias: bias, then: affine, ws)
    }
    if geo.groups == 1 && OwnProduct.runs(m: geo.outChannels, k: geo.columnRowsPerGroup, window: !geo.isPointwise) {
        return ownConv2dForward(geo, input: input, weight: weight, bias: bias, then: affine, ws)
    }
    // Without a bias the products overwrite the output (beta 0: OpenBLAS's own zeroing, in our
    // threads, rather than a zero-fill first on one); with one they add to it.
    var output = Tensor(shape: geo.outputShape) { y in
        input.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                if let bias { fillBias(y.baseAddress!, bias: bias, images: geo.batch, pixels: geo.outPixels) }
                forEachColumnChunk(geo, ws) { n0, images in
                    let (columns, stride, step) = regularColumns(geo, x.baseAddress!, n0, images, ws)
                    columnsForwardGemm(geo, output: y.baseAddress!, weight: w.baseAddress!, columns: columns, columnStride: stride,
                                       imageStep: step, firstImage: n0, images: images, accumulate: bias != nil)
                }
            }
        }
    }
    if let affine { try channelAffineInPlace(&output, scale: affine.scale, shift: affine.shift, relu: affine.relu) }
    return output
}

/// The forward convolution by `OwnProduct`: each image's columns read where they lie (no im2col
/// matrix), each output row started from its bias, `then` applied while the output is in cache,
/// and no zero-fill of the output first (the product writes every element).
func ownConv2dForward(_ geo: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?, then affine: ChannelAffine?,
                      _ ws: Workspace) -> Tensor {
    // The laid-out image goes where im2col's columns would (it is smaller); in training the buffer
    // gets the size the backward's im2col will ask for.
    let backwardColumns = ws.sizedForBackward
        ? geo.inChannels * geo.taps * geo.outPixels
            * imagesPerChunk(batch: geo.batch, columnRows: geo.inChannels * geo.taps, pixels: geo.outPixels, budget: ws.columnBudget)
        : 0
    let scratch = geo.isPointwise ? nil : ws.floats(.columns, max(geo.window.scratchFloats, backwardColumns))
    return Tensor(shape: geo.outputShape) { y in
        input.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                for n in 0..<geo.batch {
                    let image = x.baseAddress! + n * geo.inChannels * geo.inPixels
                    OwnProduct.multiply(m: geo.outChannels, n: geo.outPixels, k: geo.columnRowsPerGroup, a: w.baseAddress!,
                                        lda: geo.columnRowsPerGroup,
                                        b: geo.isPointwise ? .matrix(image, ld: geo.inPixels) : .image(image, geo.window, scratch: scratch),
                                        bias: bias?.data, then: affine, c: y.baseAddress! + n * geo.outChannels * geo.outPixels,
                                        ldc: geo.outPixels, accumulate: false)
                }
            }
        }
    }
}

/// The forward convolution by `WinogradProduct` in the workspace's buffers.
func winogradConv2dForward(_ geo: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?, then affine: ChannelAffine?,
                           _ ws: Workspace) -> Tensor {
    let sizes = WinogradProduct.bufferFloats(window: geo.window, outChannels: geo.outChannels, images: geo.batch)
    let u = ws.floats(.weightPermuted, sizes.weight), v = ws.floats(.columns, sizes.input), m = ws.floats(.columnGradient, sizes.products)
    return Tensor(shape: geo.outputShape) { y in
        input.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                WinogradProduct.convolve(images: geo.batch, image: x.baseAddress!, window: geo.window, weight: w.baseAddress!,
                                         outChannels: geo.outChannels, bias: bias?.data, then: affine, out: y.baseAddress!,
                                         weightBuffer: u, inputBuffer: v, productBuffer: m)
            }
        }
    }
}

/// Backward convolution: adds dL/dinput, dL/dweight and dL/dbias for the given dL/doutput into
/// the gradients that are present (pass nil for those not needed).
public func conv2dBackward(
    dInput: inout Tensor?, dWeight: GradientSlot?, dBias: GradientSlot?,
    dOutput: Tensor, input: Tensor, weight: Tensor, options: ConvOptions, workspace: Workspace? = nil
) throws {
    let geo = try ConvGeometry(input: input.shape, weight: weight.shape, options: options)
    try require(dOutput.shape == geo.outputShape, "conv2d backward: dOutput must be \(geo.outputShape), got \(dOutput.shape)")
    try requireGradientShapes("conv2d backward", dInput: dInput, input: geo.inputShape, dWeight: dWeight, weight: weight.shape,
                              dBias: dBias, outChannels: geo.outChannels)
    if let dBias { addBiasGradient(dBias, dOutput: dOutput, images: geo.batch, pixels: geo.outPixels) }
    if dInput == nil && dWeight == nil { return }
    let ws = workspace ?? Workspace()
    withBackwardPointers(dInput: &dInput, input: input, weight: weight, dOutput: dOutput) { x, w, dy, dx in
        forEachColumnChunk(geo, ws) { n0, images in
            if let dWeight {
                let (columns, stride, step) = regularColumns(geo, x.baseAddress!, n0, images, ws)
                columnsWeightGradientGemm(geo, dWeight: dWeight.base, dOutput: dy.baseAddress!,
                                          columns: columns, columnStride: stride, imageStep: step,
                                          firstImage: n0, images: images)
            }
            guard let dx else { return }
            if geo.isPointwise {
                // The columns are the input itself: dInput += W^T dOutput directly.
                columnsGradientGemm(geo, dColumns: dx + n0 * geo.inChannels * geo.inPixels,
                                    columnStride: geo.outPixels, imageStep: geo.inChannels * geo.inPixels,
                                    accumulate: true, weight: w.baseAddress!, dOutput: dy.baseAddress!,
                                    firstImage: n0, images: images)
            } else {
                let stride = images * geo.outPixels
                let dColumns = ws.floats(.columnGradient, geo.inChannels * geo.taps * stride)
                columnsGradientGemm(geo, dColumns: dColumns, columnStride: stride, imageStep: geo.outPixels,
                                    accumulate: false, weight: w.baseAddress!, dOutput: dy.baseAddress!,
                                    firstImage: n0, images: images)
                col2imAdd(geo, dInput: dx, dColumns: dColumns, firstImage: n0, images: images)
            }
        }
    }
}

/// Runs `body` with the elements of input, weight and dOutput and a pointer to dInput's (nil when
/// dInput is not wanted), which is written in place: the caller's tensor is borrowed for the
/// call, never copied.
func withBackwardPointers(
    dInput: inout Tensor?, input: Tensor, weight: Tensor, dOutput: Tensor,
    _ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeMutablePointer<Float>?) -> Void
) {
    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            dOutput.withUnsafeBufferPointer { dy in
                withOptionalMutablePointer(&dInput) { dx in body(x, w, dy, dx) }
            }
        }
    }
}

// MARK: - Batch chunks and bias, shared with the deformable convolution

/// Calls `body(firstImage, images)` for consecutive chunks of the batch whose columns fit the
/// workspace budget (at least one image per chunk).
func forEachColumnChunk(_ geo: ConvGeometry, _ ws: Workspace, _ body: (Int, Int) -> Void) {
    let chunk = imagesPerChunk(batch: geo.batch, columnRows: geo.inChannels * geo.taps,
                               pixels: geo.outPixels, budget: ws.columnBudget)
    var n0 = 0
    while n0 < geo.batch {
        let images = min(chunk, geo.batch - n0)
        body(n0, images)
        n0 += images
    }
}

/// out[n, o, :] = bias[o] for every image.
func fillBias(_ y: UnsafeMutablePointer<Float>, bias: Tensor, images: Int, pixels: Int) {
    let channels = bias.count
    for n in 0..<images {
        for o in 0..<channels {
            (y + (n * channels + o) * pixels).update(repeating: bias.data[o], count: pixels)
        }
    }
}

/// dBias[o] += sum over images and pixels of dOutput[n, o, :], summed in a fixed order.
func addBiasGradient(_ dBias: GradientSlot, dOutput: Tensor, images: Int, pixels: Int) {
    let channels = dBias.count
    dOutput.withUnsafeBufferPointer { dy in
        for o in 0..<channels {
            var s: Float = 0
            for n in 0..<images {
                let row = dy.baseAddress! + (n * channels + o) * pixels
                for p in 0..<pixels { s += row[p] }
            }
            dBias.base[o] += s
        }
    }
}

// MARK: - The channel-major columns products of conv2d

/// For each image b of the chunk and weight group g: out[n0+b, g] += W[g] * columns[g, b] (= when
/// not `accumulate`: the output need not be initialised).
/// `columnStride` is the row stride of the columns matrix and image b's block starts `b * imageStep`
/// floats in: (images * P, P) for im2col columns, (P, C * P) when the columns are the input itself.
func columnsForwardGemm(
    _ geo: ConvGeometry, output: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>,
    columns: UnsafePointer<Float>, columnStride: Int, imageStep: Int, firstImage n0: Int, images: Int, accumulate: Bool = true
) {
    let P = geo.outPixels, Mg = geo.outPerGroup, Kg = geo.columnRowsPerGroup
    for b in 0..<images {
        let imageColumns = columns + b * imageStep
        for g in 0..<geo.groups {
            BLAS.sgemm(transA: false, transB: false, m: Mg, n: P, k: Kg, alpha: 1,
                       a: weight + g * Mg * Kg, lda: Kg,
                       b: imageColumns + g * Kg * columnStride, ldb: columnStride,
                       beta: accumulate ? 1 : 0, c: output + ((n0 + b) * geo.outChannels + g * Mg) * P, ldc: P)
        }
    }
}

/// dW[g] += dOutput[n0+b, g] (Mg x P) * columns[g, b]^T (P x Kg), images in order.
func columnsWeightGradientGemm(
    _ geo: ConvGeometry, dWeight: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    columns: UnsafePointer<Float>, columnStride: Int, imageStep: Int, firstImage n0: Int, images: Int
) {
    let P = geo.outPixels, Mg = geo.outPerGroup, Kg = geo.columnRowsPerGroup
    for b in 0..<images {
        let imageColumns = columns + b * imageStep
        for g in 0..<geo.groups {
            BLAS.sgemm(transA: false, transB: true, m: Mg, n: Kg, k: P, alpha: 1,
                       a: dOutput + ((n0 + b) * geo.outChannels + g * Mg) * P, lda: P,
                       b: imageColumns + g * Kg * columnStride, ldb: columnStride,
                       beta: 1, c: dWeight + g * Mg * Kg, ldc: Kg)
        }
    }
}

/// dColumns[g, b] (=|+=) W[g]^T (Kg x Mg) * dOutput[n0+b, g] (Mg x P). Image b's block starts at
/// `b * imageStep` in dColumns; rows are `columnStride` apart.
func columnsGradientGemm(
    _ geo: ConvGeometry, dColumns: UnsafeMutablePointer<Float>, columnStride: Int, imageStep: Int,
    accumulate: Bool, weight: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, firstImage n0: Int, images: Int
) {
    let P = geo.outPixels, Mg = geo.outPerGroup, Kg = geo.columnRowsPerGroup
    for b in 0..<images {
        for g in 0..<geo.groups {
            BLAS.sgemm(transA: true, transB: false, m: Kg, n: P, k: Mg, alpha: 1,
                       a: weight + g * Mg * Kg, lda: Kg,
                       b: dOutput + ((n0 + b) * geo.outChannels + g * Mg) * P, ldb: P,
                       beta: accumulate ? 1 : 0, c: dColumns + b * imageStep + g * Kg * columnStride, ldc: columnStride)
        }
    }
}

// MARK: - Regular im2col / col2im

/// The columns of images n0 ..< n0 + images: the input itself when pointwise, else im2col into
/// the workspace. Returns the pointer, the row stride and the step between images.
func regularColumns(
    _ geo: ConvGeometry, _ x: UnsafePointer<Float>, _ n0: Int, _ images: Int, _ ws: Workspace
) -> (UnsafePointer<Float>, Int, Int) {
    if geo.isPointwise { return (x + n0 * geo.inChannels * geo.inPixels, geo.outPixels, geo.inChannels * geo.inPixels) }
    let stride = images * geo.outPixels
    let columns = ws.floats(.columns, geo.inChannels * geo.taps * stride)
    im2col(geo, x, n0, images, columns)
    return (UnsafePointer(columns), stride, geo.outPixels)
}

/// columns[c*K + k, b*P + oy*Wo + ox] = x[n0+b, c, oy*sh - ph + i*dh, ox*sw - pw + j*dw] (0 outside).
func im2col(_ geo: ConvGeometry, _ x: UnsafePointer<Float>, _ n0: Int, _ images: Int, _ columns: UnsafeMutablePointer<Float>) {
    let o = geo.options, K = geo.taps, P = geo.outPixels, H = geo.height, W = geo.width
    let Ho = geo.outHeight, Wo = geo.outWidth, C = geo.inChannels, kw = geo.kernelW
    let stride = images * P, sw = o.strideW
    let src = SharedReads(x), dst = DisjointWrites(columns)
    parallelFor(C * K, grain: 4) { rows in
        for r in rows {
            let c = r / K, k = r % K, i = k / kw, j = k % kw
            let x0 = j * o.dilationW - o.padW
            let (lo, hi) = insideColumns(x0: x0, stride: sw, width: W, outWidth: Wo)
            for b in 0..<images {
                let plane = src + ((n0 + b) * C + c) * H * W
                let out = dst + r * stride + b * P
                for oy in 0..<Ho {
                    let iy = oy * o.strideH - o.padH + i * o.dilationH
                    let row = out + oy * Wo
                    if iy < 0 || iy >= H || lo >= hi { row.update(repeating: 0, count: Wo); continue }
                    let line = plane + iy * W + x0
                    row.update(repeating: 0, count: lo)
                    if sw == 1 {
                        (row + lo).update(from: line + lo, count: hi - lo)
                    } else {
                        for ox in lo..<hi { row[ox] = line[ox * sw] }
                    }
                    (row + hi).update(repeating: 0, count: Wo - hi)
                }
            }
        }
    }
}

/// The output columns ox in lo ..< hi whose input column ox * stride + x0 lies inside 0 ..< width.
@inline(__always)
func insideColumns(x0: Int, stride: Int, width: Int, outWidth: Int) -> (Int, Int) {
    let lo = x0 >= 0 ? 0 : (-x0 + stride - 1) / stride
    let last = width - 1 - x0  // ox * stride <= last
    let hi = last < 0 ? 0 : min(outWidth, last / stride + 1)
    return (min(lo, outWidth), max(hi, min(lo, outWidth)))
}

/// The adjoint of im2col: dInput[n0+b, c, iy, ix] += dColumns[c*K + k, b*P + p] for every tap and
/// pixel that read (iy, ix). Each task owns whole (image, channel) planes: no two tasks write the
/// same element, and each element's sum runs in the same order on any thread count.
func col2imAdd(_ geo: ConvGeometry, dInput: UnsafeMutablePointer<Float>, dColumns: UnsafePointer<Float>, firstImage n0: Int, images: Int) {
    let o = geo.options, K = geo.taps, P = geo.outPixels, H = geo.height, W = geo.width
    let Ho = geo.outHeight, Wo = geo.outWidth, C = geo.inChannels, kw = geo.kernelW
    let stride = images * P
    let src = SharedReads(dColumns), dst = DisjointWrites(dInput)
    parallelFor(images * C, grain: 1) { planes in
        for bc in planes {
            let b = bc / C, c = bc % C
            let plane = dst + ((n0 + b) * C + c) * H * W
            for k in 0..<K {
                let i = k / kw, j = k % kw
                let row = src + (c * K + k) * stride + b * P
                let x0 = j * o.dilationW - o.padW
                let (lo, hi) = insideColumns(x0: x0, stride: o.strideW, width: W, outWidth: Wo)
                for oy in 0..<Ho {
                    let iy = oy * o.strideH - o.padH + i * o.dilationH
                    if iy < 0 || iy >= H { continue }
                    let line = plane + iy * W + x0, from = row + oy * Wo
                    for ox in lo..<hi { line[ox * o.strideW] += from[ox] }
                }
            }
        }
    }
}

// MARK: - Few output channels: products per tap, no im2col

/// Whether `conv2dForwardByTaps` takes this convolution: stride 1, one group, a kernel larger than
/// 1x1, and few output channels (a deformable layer's offset branch: 2K or 3K of them), where the
/// columns im2col would write (K Cin HW floats) cost more than the product itself.
public func convGoesByTaps(weight: [Int], options: ConvOptions) -> Bool {
    weight.count == 4 && options.groups == 1 && options.strideH == 1 && options.strideW == 1
        && weight[2] * weight[3] > 1 && weight[0] <= 32
}

/// Forward convolution by taps (inference; `convGoesByTaps` says when): one product of every tap's
/// weights `[K Cout, Cin]` with the input `[Cin, H W]` gives each tap's contribution at every input
/// pixel, `T[k, o, iy, ix] = sum_c W[o, c, k] x[c, iy, ix]`; each output pixel then adds its
/// taps' contributions from their positions, `y[o, oy, ox] = b[o] + sum_k T[k, o, oy - ph + i dh,
/// ox - pw + j dw]` (taps outside the input add nothing: the zero padding). The products of
/// `conv2dForward`, summed in another order; the columns are never written. Returns
/// `[N, Cout, Ho, Wo]`.
public func conv2dForwardByTaps(
    input: Tensor, weight: Tensor, bias: Tensor?, options: ConvOptions, workspace: Workspace? = nil
) throws -> Tensor {
    let geo = try ConvGeometry(input: input.shape, weight: weight.shape, options: options)
    try require(convGoesByTaps(weight: weight.shape, options: options),
                "conv2d by taps: needs stride 1, one group, a kernel larger than 1x1 and at most 32 outputs, got weight \(weight.shape), \(options)")
    if let bias { try require(bias.shape == [geo.outChannels], "conv2d: bias must be [\(geo.outChannels)], got \(bias.shape)") }
    let ws = workspace ?? Workspace()
    let (N, C, H, W) = (geo.batch, geo.inChannels, geo.height, geo.width)
    let (O, K, Ho, Wo, kw) = (geo.outChannels, geo.taps, geo.outHeight, geo.outWidth, geo.kernelW)
    let o = options
    var output = Tensor(zeros: geo.outputShape)
    // Weights by tap: row k O + oc of [K O, C] is W[oc, :, k].
    let tapWeights = ws.floats(.weightPermuted, K * O * C)
    weight.withUnsafeBufferPointer { w in
        for k in 0..<K { for oc in 0..<O { for c in 0..<C { tapWeights[(k * O + oc) * C + c] = w[(oc * C + c) * K + k] } } }
    }
    let contributions = ws.floats(.columns, K * O * H * W)
    input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
            for n in 0..<N {
                BLAS.sgemm(transA: false, transB: false, m: K * O, n: H * W, k: C, alpha: 1,
                           a: tapWeights, lda: C, b: x.baseAddress! + n * C * H * W, ldb: H * W,
                           beta: 0, c: contributions, ldc: H * W)
                let t = SharedReads(UnsafePointer(contributions)), out = DisjointWrites(y.baseAddress! + n * O * Ho * Wo)
                let b = bias?.data
                parallelFor(O * Ho, grain: 8) { rows in
                    for r in rows {
                        let oc = r / Ho, oy = r % Ho
                        let row = out + r * Wo
                        row.update(repeating: b?[oc] ?? 0, count: Wo)
                        for k in 0..<K {
                            let iy = oy - o.padH + (k / kw) * o.dilationH
                            if iy < 0 || iy >= H { continue }
                            let x0 = (k % kw) * o.dilationW - o.padW
                            let (lo, hi) = insideColumns(x0: x0, stride: 1, width: W, outWidth: Wo)
                            let line = t + ((k * O + oc) * H + iy) * W + x0
                            for ox in lo..<hi { row[ox] += line[ox] }
                        }
                    }
                }
            }
        }
    }
    return output
}
