// Winograd's F(2x2, 3x3) (WinogradProduct, Sources/CGemm/winograd.c), which inference's 3x3
// stride-1 convolutions of 128+ channels run: against a double-precision convolution, through
// every tile, border and dilation phase, with its products on our kernel and on OpenBLAS; the
// same bits for any thread count; and conv2dForward choosing it only in inference.
import DCNOps
import DCNTensor
import Testing

/// The convolution in double precision, plus the bias, then the affine map and ReLU in float as
/// the epilogue applies them; and the sum of the products' magnitudes (the rounding's scale).
private func reference(_ image: [Float], _ weight: [Float], _ w: OwnProduct.ImageWindow, outChannels: Int, bias: [Float])
    -> (value: [Double], magnitude: [Double]) {
    let (Ho, Wo) = (w.outHeight, w.outWidth)
    var value = [Double](repeating: 0, count: outChannels * Ho * Wo), magnitude = value
    for o in 0..<outChannels {
        for oy in 0..<Ho {
            for ox in 0..<Wo {
                var s = Double(bias[o]), a = abs(Double(bias[o]))
                for c in 0..<w.channels {
                    for i in 0..<3 {
                        let iy = oy - w.padH + i * w.dilationH
                        if iy < 0 || iy >= w.height { continue }
                        for j in 0..<3 {
                            let ix = ox - w.padW + j * w.dilationW
                            if ix < 0 || ix >= w.width { continue }
                            let p = Double(weight[((o * w.channels + c) * 3 + i) * 3 + j]) * Double(image[(c * w.height + iy) * w.width + ix])
                            s += p
                            a += abs(p)
                        }
                    }
                }
                value[(o * Ho + oy) * Wo + ox] = s
                magnitude[(o * Ho + oy) * Wo + ox] = a
            }
        }
    }
    return (value, magnitude)
}

/// Who can run the products on this CPU: OpenBLAS always, ours with AVX-512.
private let productKinds: [WinogradProduct.Products] = CPUFeatures.current.avx512 ? [.ours, .openblas] : [.openblas]

/// `images` images `[channels, height, width]` one after another, convolved by WinogradProduct.
private func winograd(_ image: [Float], _ weight: [Float], _ w: OwnProduct.ImageWindow, outChannels: Int, bias: [Float]?,
                      then: ChannelAffine?, images: Int = 1, products: WinogradProduct.Products = .current) -> [Float] {
    let sizes = WinogradProduct.bufferFloats(window: w, outChannels: outChannels, images: images)
    var out = [Float](repeating: .nan, count: images * outChannels * w.outHeight * w.outWidth)  // every element written
    let u = UnsafeMutablePointer<Float>.allocate(capacity: sizes.weight), v = UnsafeMutablePointer<Float>.allocate(capacity: sizes.input)
    let m = UnsafeMutablePointer<Float>.allocate(capacity: sizes.products)
    defer { u.deallocate(); v.deallocate(); m.deallocate() }
    image.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { g in
            out.withUnsafeMutableBufferPointer { y in
                WinogradProduct.convolve(images: images, image: x.baseAddress!, window: w, weight: g.baseAddress!, outChannels: outChannels, bias: bias,
                                         then: then, out: y.baseAddress!, weightBuffer: u, inputBuffer: v, productBuffer: m,
                                         products: products)
            }
        }
    }
    return out
}

private func window(_ C: Int, _ H: Int, _ W: Int, pad: Int, dilation: Int) -> OwnProduct.ImageWindow {
    OwnProduct.ImageWindow(channels: C, height: H, width: W, kernelH: 3, kernelW: 3, strideH: 1, strideW: 1, padH: pad, padW: pad,
                           dilationH: dilation, dilationW: dilation, outHeight: H + 2 * pad - 2 * dilation,
                           outWidth: W + 2 * pad - 2 * dilation)
}

@Test(arguments: [
    // channels, out channels, height, width, padding, dilation
    [128, 128, 9, 13, 1, 1],    // odd sizes: a last tile half outside in both directions
    [128, 136, 8, 34, 1, 1],    // 17 tiles per row: a full vector of 16 tiles and one more
    [144, 128, 11, 40, 2, 2],   // res5's dilation: 4 phases, odd rows per phase
    [128, 128, 10, 12, 0, 1],   // no padding
    [130, 128, 7, 70, 2, 1],    // padding 2 with dilation 1: outputs wider than the input
    [128, 128, 3, 3, 1, 1],     // a single tile per phase, mostly border
])
func winogradComputesTheConvolution(_ s: [Int]) throws {
    let (C, O, H, W, pad, dil) = (s[0], s[1], s[2], s[3], s[4], s[5])
    let w = window(C, H, W, pad: pad, dilation: dil)
    var rng = SeededGenerator(seed: 31)
    let image = Tensor.uniform([C * H * W], -1, 1, using: &rng).data, weight = Tensor.uniform([O * C * 9], -1, 1, using: &rng).data
    let bias = Tensor.uniform([O], -1, 1, using: &rng).data
    let scale = Tensor.uniform([O], 0.5, 1.5, using: &rng).data, shift = Tensor.uniform([O], -3, 3, using: &rng).data
    let want = reference(image, weight, w, outChannels: O, bias: bias)
    for products in productKinds {
        let plain = winograd(image, weight, w, outChannels: O, bias: bias, then: nil, products: products)
        // The regrouped sums round at a few float ulps of the products' magnitude (the direct
        // product is within about 1e-7 of it).
        let worst = zip(plain, zip(want.value, want.magnitude)).map { abs(Double($0) - $1.0) / $1.1 }.max() ?? .infinity
        #expect(worst < 3e-6, "shape \(s), \(products): error \(worst) of the products' magnitude")
        // The epilogue: the affine map (a multiply, then an add) and the ReLU on the biased sums.
        let mapped = winograd(image, weight, w, outChannels: O, bias: bias, then: ChannelAffine(scale: scale, shift: shift, relu: true),
                              products: products)
        let pixels = w.outHeight * w.outWidth
        let expected = plain.enumerated().map { i, v -> Float in
            let y = v * scale[i / pixels] + shift[i / pixels]
            return y < 0 ? 0 : y
        }
        #expect(mapped.map(\.bitPattern) == expected.map(\.bitPattern), "shape \(s), \(products): the epilogue")
        #expect(mapped.contains(0) && mapped.contains { $0 > 0 })
    }
}

@Test func winogradGivesTheSameBitsForAnyThreadCount() throws {
    let w = window(128, 21, 50, pad: 2, dilation: 2)
    var rng = SeededGenerator(seed: 32)
    let image = Tensor.uniform([128 * 21 * 50], -1, 1, using: &rng).data, weight = Tensor.uniform([128 * 128 * 9], -1, 1, using: &rng).data
    for products in productKinds {
        let one = Threads.with(1) { winograd(image, weight, w, outChannels: 128, bias: nil, then: nil, products: products) }
        for threads in [2, 3] {
            let other = Threads.with(threads) { winograd(image, weight, w, outChannels: 128, bias: nil, then: nil, products: products) }
            #expect(other.map(\.bitPattern) == one.map(\.bitPattern), "\(products), \(threads) threads")
        }
    }
}

@Test func winogradRunsOnlyInferencesThreeByThreeStrideOneWindows() throws {
    #expect(OwnProduct.winogradEnabled)  // on every CPU unless a benchmark turned it off
    #expect(WinogradProduct.runs(window: window(128, 9, 9, pad: 1, dilation: 1), outChannels: 128))
    #expect(WinogradProduct.runs(window: window(512, 9, 9, pad: 2, dilation: 2), outChannels: 512))
    #expect(!WinogradProduct.runs(window: window(64, 9, 9, pad: 1, dilation: 1), outChannels: 64))     // res2: no gain
    // Our kernel needs whole strips of 8 rows; OpenBLAS does not.
    #expect(WinogradProduct.runs(window: window(128, 9, 9, pad: 1, dilation: 1), outChannels: 132) == !OwnProduct.enabled)
    var strided = window(128, 9, 9, pad: 1, dilation: 1)
    (strided.strideH, strided.strideW, strided.outHeight, strided.outWidth) = (2, 2, 5, 5)
    #expect(!WinogradProduct.runs(window: strided, outChannels: 128))
    // conv2dForward: Winograd's in inference, the direct product in a training step's workspace.
    var rng = SeededGenerator(seed: 33)
    let x = Tensor.uniform([2, 128, 6, 11], -1, 1, using: &rng), weight = Tensor.uniform([128, 128, 3, 3], -1, 1, using: &rng)
    let options = ConvOptions(stride: 1, padding: 1, dilation: 1, groups: 1)
    let inference = try conv2dForward(input: x, weight: weight, bias: nil, options: options, workspace: Workspace())
    let training = try conv2dForward(input: x, weight: weight, bias: nil, options: options, workspace: Workspace(sizedForBackward: true))
    let w = window(128, 6, 11, pad: 1, dilation: 1)
    // Two images: each as alone (the weight transformed once for both).
    let pixels = 128 * 6 * 11
    let alone = (0..<2).flatMap { n in winograd(Array(x.data[n * pixels..<(n + 1) * pixels]), weight.data, w, outChannels: 128, bias: nil, then: nil) }
    #expect(inference.data == alone)
    #expect(training.data != inference.data)  // the direct product rounds otherwise
    let worst = zip(inference.data, training.data).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst < 1e-4)
}

@Test func imagesInChunksGiveEachImagesOwnResult() throws {
    // 3 images of 40 x 40 tiles (128 + 128 channels): 2 in the first chunk, 1 in the second.
    let w = window(128, 80, 80, pad: 1, dilation: 1)
    #expect(WinogradProduct.imagesPerChunk(window: w, outChannels: 128, images: 3) == 2)
    var rng = SeededGenerator(seed: 34)
    let pixels = 128 * 80 * 80
    let images = Tensor.uniform([3 * pixels], -1, 1, using: &rng).data, weight = Tensor.uniform([128 * 128 * 9], -1, 1, using: &rng).data
    let bias = Tensor.uniform([128], -1, 1, using: &rng).data
    for products in productKinds {
        let out = winograd(images, weight, w, outChannels: 128, bias: bias, then: nil, images: 3, products: products)
        for n in 0..<3 {
            let alone = winograd(Array(images[n * pixels..<(n + 1) * pixels]), weight, w, outChannels: 128, bias: bias, then: nil,
                                 products: products)
            let got = Array(out[n * pixels..<(n + 1) * pixels])
            if products == .ours {
                // Our products cut only the columns: the same bits whatever images sit beside.
                #expect(got.map(\.bitPattern) == alone.map(\.bitPattern), "image \(n)")
            } else {
                // OpenBLAS's products are cut by shape, which the chunk changes: rounding only.
                #expect(zip(got, alone).map { abs($0 - $1) }.max()! < 1e-4, "image \(n), OpenBLAS")
            }
        }
    }
}
