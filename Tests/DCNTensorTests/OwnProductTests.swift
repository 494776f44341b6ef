// Our forward-convolution product (OwnProduct, Sources/CGemm): each kind of B operand against a
// double-precision reference, on every instruction set this CPU runs; the AVX2 and AVX-512
// kernels give the same bits, and so does any cut of the columns.
import DCNTensor
import Testing

/// The instruction sets this machine can run (AVX2 is there whenever AVX-512 is).
private var runnable: [OwnProduct.InstructionSet] {
    [CPUFeatures.current.avx2 ? OwnProduct.InstructionSet.avx2 : nil, CPUFeatures.current.avx512 ? .avx512 : nil].compactMap { $0 }
}

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

private func multiply(_ isa: OwnProduct.InstructionSet, m: Int, n: Int, k: Int, a: [Float], b: OwnProduct.Columns,
                      c0: [Float], accumulate: Bool) -> [Float] {
    var c = c0
    a.withUnsafeBufferPointer { ap in
        c.withUnsafeMutableBufferPointer { cp in
            OwnProduct.multiply(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: b, c: cp.baseAddress!, ldc: n,
                                accumulate: accumulate, isa: isa)
        }
    }
    return c
}

private func worstError(_ got: [Float], _ want: [Double]) -> Double {
    zip(got, want).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
}

@Test func matrixAndTransposedColumnsComputeTheProduct() throws {
    // n = 1000: two full 384-column blocks, a partial one and a partial panel; k = 300: two k blocks.
    let (m, n, k) = (16, 1000, 300)
    var rng = SeededGenerator(seed: 5)
    let a = Tensor.uniform([m * k], -1, 1, using: &rng).data, b = Tensor.uniform([k * n], -1, 1, using: &rng).data
    let c0 = Tensor.uniform([m * n], -1, 1, using: &rng).data
    var bT = [Float](repeating: 0, count: k * n)
    for r in 0..<k { for p in 0..<n { bT[p * k + r] = b[r * n + p] } }
    for isa in runnable {
        for accumulate in [false, true] {
            let want = reference(m: m, n: n, k: k, a: a, b: { b[$0 * n + $1] }, c0: c0, accumulate: accumulate)
            b.withUnsafeBufferPointer { bp in
                bT.withUnsafeBufferPointer { tp in
                    let plain = multiply(isa, m: m, n: n, k: k, a: a, b: .matrix(bp.baseAddress!, ld: n), c0: c0, accumulate: accumulate)
                    let transposed = multiply(isa, m: m, n: n, k: k, a: a, b: .transposed(tp.baseAddress!, ld: k), c0: c0, accumulate: accumulate)
                    #expect(worstError(plain, want) < 1e-5, "\(isa) matrix, accumulate \(accumulate)")
                    #expect(plain == transposed, "\(isa): the transposed operand gives other bits")
                }
            }
        }
    }
}

@Test(arguments: [
    // channels, height, width, kernel h/w, stride h/w, pad h/w, dilation h/w
    [3, 23, 31, 7, 7, 2, 2, 3, 3, 1, 1],   // the stem's window
    [5, 17, 19, 3, 3, 1, 1, 1, 1, 1, 1],
    [4, 15, 20, 3, 3, 1, 1, 2, 2, 2, 2],   // dilated as res5
    [6, 16, 13, 1, 1, 2, 2, 0, 0, 1, 1],   // the strided 1x1 shortcut
    [2, 9, 40, 3, 5, 2, 1, 0, 2, 1, 3],    // nothing square
])
func imageColumnsAreTheIm2colColumns(_ s: [Int]) throws {
    let (C, H, W, kh, kw, sh, sw, ph, pw, dh, dw) = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10])
    let Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1, Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1
    let (m, n, k) = (24, Ho * Wo, C * kh * kw)
    var rng = SeededGenerator(seed: 9)
    let image = Tensor.uniform([C * H * W], -1, 1, using: &rng).data, a = Tensor.uniform([m * k], -1, 1, using: &rng).data
    let c0 = Tensor.uniform([m * n], -1, 1, using: &rng).data
    func column(_ r: Int, _ p: Int) -> Float {
        let (c, i, j) = (r / (kh * kw), r % (kh * kw) / kw, r % kw)
        let iy = p / Wo * sh - ph + i * dh, ix = p % Wo * sw - pw + j * dw
        return iy >= 0 && iy < H && ix >= 0 && ix < W ? image[(c * H + iy) * W + ix] : 0
    }
    let want = reference(m: m, n: n, k: k, a: a, b: column, c0: c0, accumulate: true)
    let window = OwnProduct.ImageWindow(channels: C, height: H, width: W, kernelH: kh, kernelW: kw, strideH: sh, strideW: sw,
                                        padH: ph, padW: pw, dilationH: dh, dilationW: dw, outWidth: Wo)
    var columns = [Float](repeating: 0, count: k * n)
    for r in 0..<k { for p in 0..<n { columns[r * n + p] = column(r, p) } }
    for isa in runnable {
        image.withUnsafeBufferPointer { ip in
            columns.withUnsafeBufferPointer { cp in
                let packed = multiply(isa, m: m, n: n, k: k, a: a, b: .image(ip.baseAddress!, window), c0: c0, accumulate: true)
                let fromMatrix = multiply(isa, m: m, n: n, k: k, a: a, b: .matrix(cp.baseAddress!, ld: n), c0: c0, accumulate: true)
                #expect(worstError(packed, want) < 1e-5, "\(isa), window \(s)")
                #expect(packed == fromMatrix, "\(isa), window \(s): packing from the image gives other bits than from its columns")
            }
        }
    }
}

@Test func instructionSetsAndCutsGiveTheSameBits() throws {
    let (m, n, k) = (32, 900, 520)
    var rng = SeededGenerator(seed: 13)
    let a = Tensor.uniform([m * k], -1, 1, using: &rng).data, b = Tensor.uniform([k * n], -1, 1, using: &rng).data
    let c0 = Tensor.uniform([m * n], -1, 1, using: &rng).data
    let results = b.withUnsafeBufferPointer { bp in
        runnable.map { multiply($0, m: m, n: n, k: k, a: a, b: .matrix(bp.baseAddress!, ld: n), c0: c0, accumulate: true) }
    }
    try #require(!results.isEmpty)
    #expect(results.allSatisfy { $0 == results[0] }, "the AVX2 and AVX-512 kernels differ")
    // Columns 0 ..< 500 and 500 ..< 900 as two products: blocks and panels fall elsewhere.
    let isa = runnable[0], split = 500
    var pieces = c0
    a.withUnsafeBufferPointer { ap in
        b.withUnsafeBufferPointer { bp in
            pieces.withUnsafeMutableBufferPointer { cp in
                for (lo, hi) in [(0, split), (split, n)] {
                    OwnProduct.multiply(m: m, n: hi - lo, k: k, a: ap.baseAddress!, lda: k, b: .matrix(bp.baseAddress! + lo, ld: n),
                                        c: cp.baseAddress! + lo, ldc: n, accumulate: true, isa: isa)
                }
            }
        }
    }
    #expect(pieces == results[0], "cutting the columns changed the bits")
}

@Test func rowCountsOutsideTheKernelsAreLeftToOpenBLAS() {
    guard let isa = OwnProduct.instructionSet else { return }
    #expect(OwnProduct.handles(m: isa.rows * 8))
    #expect(!OwnProduct.handles(m: isa.rows * 8 + 1))
    #expect(!OwnProduct.handles(m: 0))
}
