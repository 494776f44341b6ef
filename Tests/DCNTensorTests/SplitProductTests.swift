// BLAS.sgemm cut into blocks that run on our threads: every way of cutting computes the product
// (against a double-precision reference), the cut follows the shape only, and the bits do not
// depend on the thread count.
import DCNTensor
import Testing

/// C = alpha op(A) op(B) + beta C0 in double precision, row-major.
private func reference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], b: [Float],
                       beta: Float, c: [Float]) -> [Double] {
    var out = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for t in 0..<k {
                let av = transA ? a[t * m + i] : a[i * k + t]
                let bv = transB ? b[j * k + t] : b[t * n + j]
                s += Double(av) * Double(bv)
            }
            out[i * n + j] = Double(alpha) * s + Double(beta) * Double(c[i * n + j])
        }
    }
    return out
}

private func product(_ pieces: ProductPieces?, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                     a: [Float], b: [Float], beta: Float, c: [Float]) -> [Float] {
    var out = c
    a.withUnsafeBufferPointer { ap in
        b.withUnsafeBufferPointer { bp in
            out.withUnsafeMutableBufferPointer { cp in
                let (lda, ldb) = (transA ? m : k, transB ? k : n)
                if let pieces {
                    BLAS.sgemm(in: pieces, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: lda,
                               b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: n)
                } else {
                    BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: lda,
                               b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: n)
                }
            }
        }
    }
    return out
}

@Test func everyCutComputesTheProduct() {
    var rng = SeededGenerator(seed: 11)
    let (m, n, k) = (70, 90, 110)
    for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = Tensor.uniform([m * k], -1, 1, using: &rng).data, b = Tensor.uniform([k * n], -1, 1, using: &rng).data
        let c0 = Tensor.uniform([m * n], -1, 1, using: &rng).data
        let want = reference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, b: b, beta: 0.25, c: c0)
        let cuts = [ProductPieces(side: .whole, count: 1, length: n), ProductPieces(side: .columns, count: 3, length: n),
                    ProductPieces(side: .rows, count: 4, length: m), ProductPieces(side: .inner, count: 5, length: k)]
        for pieces in cuts {
            let got = product(pieces, transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, b: b, beta: 0.25, c: c0)
            let worst = zip(got, want).map { abs(Double($0) - $1) }.max()!
            #expect(worst < 1e-4, "\(pieces.side) in \(pieces.count), transA \(transA), transB \(transB): worst error \(worst)")
        }
    }
}

@Test func blocksCoverTheSideInMultiplesOf16() {
    let pieces = ProductPieces(side: .columns, count: 4, length: 1000)
    let ranges = (0..<4).map(pieces.range)
    #expect(ranges.first!.lowerBound == 0 && ranges.last!.upperBound == 1000)
    for (r, next) in zip(ranges, ranges.dropFirst()) {
        #expect(r.upperBound == next.lowerBound && r.upperBound % 16 == 0 && !r.isEmpty)
    }
}

@Test func theCutFollowsTheShapeAndTheCoresOnly() {
    // A convolution's forward (weight 256 x 2304, columns 2304 x 15200) is cut along its columns,
    // its weight gradient (k = the 15200 pixels) along k, 2 blocks per core; a small product stays whole.
    #expect(ProductPieces(m: 256, n: 15200, k: 2304, cores: 2) == ProductPieces(side: .columns, count: 4, length: 15200))
    #expect(ProductPieces(m: 256, n: 2304, k: 15200, cores: 2) == ProductPieces(side: .inner, count: 4, length: 15200))
    #expect(ProductPieces(m: 2304, n: 15200, k: 256, cores: 8).side == .columns)
    #expect(ProductPieces(m: 37, n: 130, k: 300, cores: 2).side == .whole)
    #expect(ProductPieces(m: 256, n: 15200, k: 2304, cores: 1).side == .whole)
}

@Test func theProductHasTheSameBitsOnAnyThreadCount() {
    var rng = SeededGenerator(seed: 12)
    let (m, n, k) = (64, 1536, 576)  // the demo's 3x3 conv forward, cut on a machine with cores
    let a = Tensor.uniform([m * k], -1, 1, using: &rng).data, b = Tensor.uniform([k * n], -1, 1, using: &rng).data
    let c0 = [Float](repeating: 0, count: m * n)
    for pieces in [ProductPieces(side: .columns, count: 4, length: n), ProductPieces(side: .inner, count: 2, length: k), nil] {
        let one = Threads.with(1) { product(pieces, transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, b: b, beta: 0, c: c0) }
        let two = Threads.with(2) { product(pieces, transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, b: b, beta: 0, c: c0) }
        #expect(one.map(\.bitPattern) == two.map(\.bitPattern))
    }
}
