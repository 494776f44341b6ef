// Our forward-convolution product (OwnProduct, Sources/CGemm, AVX-512): a matrix B and the columns
// of convolution windows (read from the laid-out image) against a double-precision reference; any
// cut of the columns, and reading a window from its im2col matrix instead, give the same bits.
import DCNTensor
import Testing

/// Our kernels need AVX-512; on other CPUs these tests have nothing to check (OpenBLAS runs).
private let hasKernels = CPUFeatures.current.avx512

/// C0 + A * B in double precision; B[r][p] read through `b`.
private func reference(m: Int, n: Int, k: Int, a: [Float], b: (Int, Int) -> Float, c0: [Float], accumulate: Bool) -> [Double] {
    var out = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = accumulate ? Double(c0[i * n + j]) : 0
            for t in 0..<k { s += Double(a[i * k + t]) * Double(b(t, j)) }
            out[i * n + j] = s
        }
    }
    return out
}

private func multiply(m: Int, n: Int, k: Int, a: [Float], b: OwnProduct.Columns,
                      c0: [Float], accumulate: Bool) -> [Float] {
    var c = c0
    a.withUnsafeBufferPointer { ap in
        c.withUnsafeMutableBufferPointer { cp in
            OwnProduct.multiply(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: b, c: cp.baseAddress!, ldc: n,
                                accumulate: accumulate)
        }
    }
    return c
}

/// The im2col columns of `image` under `w`, written out: row (c * kh + i) * kw + j, column oy * Wo + ox.
private func im2col(_ image: [Float], _ w: OwnProduct.ImageWindow) -> [Float] {
    let (k, n) = (w.channels * w.kernelH * w.kernelW, w.outHeight * w.outWidth)
    var columns = [Float](repeating: 0, count: k * n)
    for r in 0..<k {
        let (c, i, j) = (r / (w.kernelH * w.kernelW), r % (w.kernelH * w.kernelW) / w.kernelW, r % w.kernelW)
        for p in 0..<n {
            let iy = p / w.outWidth * w.strideH - w.padH + i * w.dilationH, ix = p % w.outWidth * w.strideW - w.padW + j * w.dilationW
            if iy >= 0 && iy < w.height && ix >= 0 && ix < w.width { columns[r * n + p] = image[(c * w.height + iy) * w.width + ix] }
        }
    }
    return columns
}

private func worstError(_ got: [Float], _ want: [Double]) -> Double {
    zip(got, want).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
}

@Test func matrixColumnsComputeTheProduct() throws {
    // n = 1000: blocks of whole 48-column panels (`OwnProduct.Blocks`) and a partial last panel;
    // k = 300: two k blocks. B is exactly k x n floats, so a read past its end would be caught by
    // a sanitizer.
    let (m, n, k) = (16, 1000, 300)
    var rng = SeededGenerator(seed: 5)
    let a = Tensor.uniform([m * k], -1, 1, using: &rng).data, b = Tensor.uniform([k * n], -1, 1, using: &rng).data
    let c0 = Tensor.uniform([m * n], -1, 1, using: &rng).data
    guard hasKernels else { return }
    for accumulate in [false, true] {
        let want = reference(m: m, n: n, k: k, a: a, b: { b[$0 * n + $1] }, c0: c0, accumulate: accumulate)
        let got = b.withUnsafeBufferPointer {
            multiply(m: m, n: n, k: k, a: a, b: .matrix($0.baseAddress!, ld: n), c0: c0, accumulate: accumulate)
        }
        #expect(worstError(got, want) < 1e-5, "matrix, accumulate \(accumulate)")
    }
}

@Test(arguments: [
    // channels, height, width, kernel h/w, stride h/w, pad h/w, dilation h/w
    [3, 23, 131, 7, 7, 2, 2, 3, 3, 1, 1],  // the stem's window
    [5, 17, 119, 3, 3, 1, 1, 1, 1, 1, 1],
    [4, 15, 20, 3, 3, 1, 1, 2, 2, 2, 2],   // dilated as res5, rows shorter than a panel
    [6, 16, 113, 1, 1, 2, 2, 0, 0, 1, 1],  // the strided 1x1 shortcut
    [2, 9, 140, 3, 5, 2, 1, 0, 2, 1, 3],   // nothing square
    [40, 12, 70, 3, 3, 2, 2, 1, 1, 1, 1],  // k = 360: two k blocks, stride 2
    [3, 7, 9, 3, 3, 3, 2, 1, 0, 1, 1],     // stride 3, no padding on one side
])
func imageColumnsAreTheIm2colColumns(_ s: [Int]) throws {
    let (C, H, W, kh, kw, sh, sw, ph, pw, dh, dw) = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10])
    let Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1, Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1
    let (m, n, k) = (24, Ho * Wo, C * kh * kw)
    var rng = SeededGenerator(seed: 9)
    let image = Tensor.uniform([C * H * W], -1, 1, using: &rng).data, a = Tensor.uniform([m * k], -1, 1, using: &rng).data
    let c0 = Tensor.uniform([m * n], -1, 1, using: &rng).data
    let window = OwnProduct.ImageWindow(channels: C, height: H, width: W, kernelH: kh, kernelW: kw, strideH: sh, strideW: sw,
                                        padH: ph, padW: pw, dilationH: dh, dilationW: dw, outHeight: Ho, outWidth: Wo)
    let columns = im2col(image, window)
    let want = reference(m: m, n: n, k: k, a: a, b: { columns[$0 * n + $1] }, c0: c0, accumulate: true)
    guard hasKernels else { return }
    image.withUnsafeBufferPointer { ip in
        columns.withUnsafeBufferPointer { cp in
            let laidOut = multiply(m: m, n: n, k: k, a: a, b: .image(ip.baseAddress!, window, scratch: nil), c0: c0, accumulate: true)
            let fromMatrix = multiply(m: m, n: n, k: k, a: a, b: .matrix(cp.baseAddress!, ld: n), c0: c0, accumulate: true)
            #expect(worstError(laidOut, want) < 1e-5, "window \(s)")
            #expect(laidOut == fromMatrix, "window \(s): reading the laid-out image gives other bits than its im2col columns")
        }
    }
}

@Test func cutsOfTheColumnsGiveTheSameBits() throws {
    guard hasKernels else { return }
    let (m, n, k) = (32, 900, 520)
    var rng = SeededGenerator(seed: 13)
    let a = Tensor.uniform([m * k], -1, 1, using: &rng).data, b = Tensor.uniform([k * n], -1, 1, using: &rng).data
    let c0 = Tensor.uniform([m * n], -1, 1, using: &rng).data
    let whole = b.withUnsafeBufferPointer { multiply(m: m, n: n, k: k, a: a, b: .matrix($0.baseAddress!, ld: n), c0: c0, accumulate: true) }
    // Columns 0 ..< 500 and 500 ..< 900 as two products: blocks and panels fall elsewhere.
    var pieces = c0
    a.withUnsafeBufferPointer { ap in
        b.withUnsafeBufferPointer { bp in
            pieces.withUnsafeMutableBufferPointer { cp in
                for (lo, hi) in [(0, 500), (500, n)] {
                    OwnProduct.multiply(m: m, n: hi - lo, k: k, a: ap.baseAddress!, lda: k, b: .matrix(bp.baseAddress! + lo, ld: n),
                                        c: cp.baseAddress! + lo, ldc: n, accumulate: true)
                }
            }
        }
    }
    #expect(pieces == whole, "cutting the columns changed the bits")
}

@Test func convolutionsOutsideTheMeasuredShapesAreLeftToOpenBLAS() {
    guard OwnProduct.enabled else { return }
    #expect(OwnProduct.runs(m: 64, k: 147, window: true))        // the stem
    #expect(OwnProduct.runs(m: 256, k: 64, window: false))       // res2's expansion
    #expect(!OwnProduct.runs(m: 65, k: 147, window: true))       // not a multiple of 8 rows
    #expect(OwnProduct.runs(m: 512, k: 4608, window: true))      // res5's 3x3
    #expect(!OwnProduct.runs(m: 2048, k: 512, window: false))    // res5's expansion
}

@Test func rowsStartFromTheBiasWhenNotAccumulating() {
    guard hasKernels else { return }
    // A 3x3 window (the block path) and a matrix (C itself), both with a partial panel.
    let (C, H, W, m) = (5, 9, 61, 16)
    let window = OwnProduct.ImageWindow(channels: C, height: H, width: W, kernelH: 3, kernelW: 3, strideH: 1, strideW: 1,
                                        padH: 1, padW: 1, dilationH: 1, dilationW: 1, outHeight: H, outWidth: W)
    let (n, k) = (H * W, C * 9)
    var rng = SeededGenerator(seed: 21)
    let image = Tensor.uniform([C * H * W], -1, 1, using: &rng).data, a = Tensor.uniform([m * k], -1, 1, using: &rng).data
    let bias = Tensor.uniform([m], -1, 1, using: &rng).data
    let columns = im2col(image, window)
    let startedAtBias = (0..<m * n).map { bias[$0 / n] }
    let want = reference(m: m, n: n, k: k, a: a, b: { columns[$0 * n + $1] }, c0: startedAtBias, accumulate: true)
    for source in ["image", "matrix"] {
        var c = [Float](repeating: .nan, count: m * n)  // overwritten, never read
        image.withUnsafeBufferPointer { ip in
            columns.withUnsafeBufferPointer { cp in
                a.withUnsafeBufferPointer { ap in
                    c.withUnsafeMutableBufferPointer { out in
                        OwnProduct.multiply(m: m, n: n, k: k, a: ap.baseAddress!, lda: k,
                                            b: source == "image" ? .image(ip.baseAddress!, window, scratch: nil) : .matrix(cp.baseAddress!, ld: n),
                                            bias: bias, c: out.baseAddress!, ldc: n, accumulate: false)
                    }
                }
            }
        }
        #expect(worstError(c, want) < 1e-5, "\(source): rows do not start from the bias")
    }
}

/// The blocks cover the columns once, at whole panels, at most 768 columns each, in a multiple of
/// the thread count when there are enough panels, none more than a panel larger than another.
@Test(arguments: [1, 47, 48, 500, 3898, 3996, 60_800, 245_000])
func blocksCutTheColumnsEvenly(_ columns: Int) {
    let blocks = OwnProduct.Blocks(columns: columns)
    let panel = OwnProduct.panelColumns
    var sizes: [Int] = []
    for b in 0..<blocks.count {
        let lo = blocks.start(b), hi = min(columns, blocks.start(b + 1))
        #expect(lo % panel == 0 && lo < hi, "block \(b) of \(columns) columns: \(lo) ..< \(hi)")
        sizes.append(blocks.start(b + 1) - lo)
    }
    #expect(blocks.start(0) == 0 && min(columns, blocks.start(blocks.count)) == columns)
    #expect(sizes.allSatisfy { $0 <= 768 }, "\(columns) columns: blocks of \(sizes)")
    #expect((sizes.max()! - sizes.min()!) <= panel, "\(columns) columns: blocks of \(sizes)")
    if blocks.panels >= 2 * Threads.count { #expect(blocks.count % Threads.count == 0) }
}

/// Every item runs once, whatever the count against the threads.
@Test(arguments: [0, 1, 2, 3, 7, 64, 1001])
func parallelForEachRunsEveryItemOnce(_ count: Int) {
    var runs = [Int](repeating: 0, count: count)
    runs.withUnsafeMutableBufferPointer { buffer in
        let out = DisjointWrites(buffer.baseAddress ?? UnsafeMutablePointer(bitPattern: 64)!)
        parallelForEach(count) { i in out[i] += 1 }
    }
    #expect(runs.allSatisfy { $0 == 1 })
}

/// A window's output past `OwnProduct.streamedOutputBytes` reaches memory by streaming stores:
/// the same bits as the matrix path, which writes the output in place (rows of an odd width, so
/// that the stores start and end off the 64-byte lines).
@Test func aLargeWindowOutputStreamedGivesTheSameBits() throws {
    guard hasKernels else { return }
    let (C, H, W, m) = (1, 400, 513, 16)
    let window = OwnProduct.ImageWindow(channels: C, height: H, width: W, kernelH: 3, kernelW: 3, strideH: 1, strideW: 1,
                                        padH: 1, padW: 1, dilationH: 1, dilationW: 1, outHeight: H, outWidth: W)
    let (n, k) = (H * W, C * 9)
    #expect(m * n * MemoryLayout<Float>.size > OwnProduct.streamedOutputBytes)
    var rng = SeededGenerator(seed: 23)
    let image = Tensor.uniform([C * H * W], -1, 1, using: &rng).data, a = Tensor.uniform([m * k], -1, 1, using: &rng).data
    let bias = Tensor.uniform([m], -1, 1, using: &rng).data
    let columns = im2col(image, window)
    var streamed = [Float](repeating: .nan, count: m * n), inPlace = [Float](repeating: .nan, count: m * n)
    image.withUnsafeBufferPointer { ip in
        columns.withUnsafeBufferPointer { cp in
            a.withUnsafeBufferPointer { ap in
                streamed.withUnsafeMutableBufferPointer {
                    OwnProduct.multiply(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: .image(ip.baseAddress!, window, scratch: nil),
                                        bias: bias, c: $0.baseAddress!, ldc: n, accumulate: false)
                }
                inPlace.withUnsafeMutableBufferPointer {
                    OwnProduct.multiply(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: .matrix(cp.baseAddress!, ld: n),
                                        bias: bias, c: $0.baseAddress!, ldc: n, accumulate: false)
                }
            }
        }
    }
    let differing = zip(streamed, inPlace).filter { $0.bitPattern != $1.bitPattern }.count
    #expect(differing == 0, "\(differing) of \(m * n) streamed output elements differ from the ones written in place")
}
