// The one file that calls OpenBLAS. Nothing else in the project sees C types.
import CBLAS

/// Thin, typed wrappers over the OpenBLAS calls the project uses. Each one first makes sure the
/// right kernels are selected (`BLASKernel.selection`, done once per process).
public enum BLAS {
    /// Row-major single-precision matrix product:
    /// `C[m x n] = alpha * op(A) * op(B) + beta * C`, with `op(A)` of size m x k and `op(B)` k x n.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored (before transposition).
    ///
    /// OpenBLAS itself runs on one thread (`BLASKernel.selection` sets it): a large product is cut
    /// into blocks of C's columns, C's rows or the inner dimension by `ProductPieces`, and
    /// `parallelFor` runs the blocks on our threads. Its idle threads sleep, where OpenBLAS's spin for a while after each call and
    /// took a core from the loops that ran between products. The cut depends on the shape and the
    /// machine's core count only, never on the thread count, so every element is computed by the
    /// same single-threaded call on any number of threads: the same bits.
    @inlinable
    public static func sgemm(
        transA: Bool, transB: Bool,
        m: Int, n: Int, k: Int,
        alpha: Float,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        _ = BLASKernel.selection
        if m == 0 || n == 0 { return }
        if k == 0 {
            // BLAS leaves C untouched only for beta == 1; make the k == 0 case explicit.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        sgemm(in: ProductPieces(m: m, n: n, k: k), transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
              a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// `sgemm` cut into the given blocks (m, n, k >= 1): what `sgemm` runs, open so that tests
    /// can check every way of cutting on any machine.
    @inlinable
    public static func sgemm(
        in pieces: ProductPieces, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let sa = SharedReads(a), sb = SharedReads(b), sc = DisjointWrites(c)
        switch pieces.side {
        case .whole:
            serialSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                        beta: beta, c: c, ldc: ldc)
        case .columns:
            // C[:, j0..<j1] = op(A) op(B)[:, j0..<j1]; B's columns j0.. start at j0 (j0 * ldb when transposed).
            parallelFor(pieces.count) { range in
                for piece in range {
                    let js = pieces.range(piece)
                    serialSgemm(transA: transA, transB: transB, m: m, n: js.count, k: k, alpha: alpha, a: sa.pointer, lda: lda,
                                b: sb + (transB ? js.lowerBound * ldb : js.lowerBound), ldb: ldb,
                                beta: beta, c: sc + js.lowerBound, ldc: ldc)
                }
            }
        case .rows:
            // C[i0..<i1, :] = op(A)[i0..<i1, :] op(B); A's rows i0.. start at i0 * lda (i0 when transposed).
            parallelFor(pieces.count) { range in
                for piece in range {
                    let rows = pieces.range(piece)
                    serialSgemm(transA: transA, transB: transB, m: rows.count, n: n, k: k, alpha: alpha,
                                a: sa + (transA ? rows.lowerBound : rows.lowerBound * lda), lda: lda, b: sb.pointer, ldb: ldb,
                                beta: beta, c: sc + rows.lowerBound * ldc, ldc: ldc)
                }
            }
        case .inner:
            // C = (beta C + op(A)[:, K0] op(B)[K0, :]) + op(A)[:, K1] op(B)[K1, :] + ...: block 0 goes
            // into C, the others into their own m x n buffers, added in block order.
            let partials = UnsafeMutablePointer<Float>.allocate(capacity: (pieces.count - 1) * m * n)
            defer { partials.deallocate() }
            let sp = DisjointWrites(partials)
            parallelFor(pieces.count) { range in
                for piece in range {
                    let ks = pieces.range(piece)
                    serialSgemm(transA: transA, transB: transB, m: m, n: n, k: ks.count, alpha: alpha,
                                a: sa + (transA ? ks.lowerBound * lda : ks.lowerBound), lda: lda,
                                b: sb + (transB ? ks.lowerBound : ks.lowerBound * ldb), ldb: ldb,
                                beta: piece == 0 ? beta : 0, c: piece == 0 ? sc.pointer : sp + (piece - 1) * m * n,
                                ldc: piece == 0 ? ldc : n)
                }
            }
            parallelFor(m, grain: max(1, 16384 / n)) { rows in
                for i in rows {
                    let row = sc + i * ldc
                    for piece in 1..<pieces.count {
                        let partial = sp + ((piece - 1) * m + i) * n
                        for j in 0..<n { row[j] += partial[j] }
                    }
                }
            }
        }
    }

    /// One OpenBLAS call on the calling thread.
    @inlinable
    static func serialSgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor,
            transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb),
            beta, c, Int32(ldc))
    }

    /// `y += alpha * x` over `n` floats.
    @inlinable
    public static func saxpy(n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        _ = BLASKernel.selection
        cblas_saxpy(Int32(n), alpha, x, 1, y, 1)
    }

    /// Number of threads OpenBLAS uses for one call (1, unless `dcn-bench blas` changed it).
    public static var threadCount: Int {
        _ = BLASKernel.selection
        return Int(openblas_get_num_threads())
    }

    /// Sets the number of threads OpenBLAS uses for one call: for `dcn-bench blas`, which compares
    /// OpenBLAS's own threading; everything else keeps it at 1 (see `sgemm`).
    public static func setThreadCount(_ n: Int) {
        _ = BLASKernel.selection
        openblas_set_num_threads(Int32(max(1, n)))
    }

    /// Solves the dense linear system `A x = b` in place (A is n x n, row-major, overwritten by
    /// its LU factors; b is replaced by x). Returns false when A is singular.
    public static func solve(_ a: inout [Double], _ b: inout [Double], n: Int) -> Bool {
        _ = BLASKernel.selection
        var pivots = [Int32](repeating: 0, count: n)
        let info = a.withUnsafeMutableBufferPointer { ap in
            b.withUnsafeMutableBufferPointer { bp in
                pivots.withUnsafeMutableBufferPointer { pp in
                    LAPACKE_dgesv(LAPACK_ROW_MAJOR, Int32(n), 1, ap.baseAddress, Int32(n),
                                  pp.baseAddress, bp.baseAddress, 1)
                }
            }
        }
        return info == 0
    }
}

/// How `BLAS.sgemm` cuts a product into blocks that run on separate threads: along C's columns,
/// its rows, or the inner dimension k (partial products summed in block order). Each block packs
/// its share of one operand and the whole of what the cut does not divide (A for a column cut, B
/// for a row cut, C for an inner cut), so the cut goes along the dimension whose "other" matrix
/// is smallest: columns for a convolution's forward and input-gradient products (A is the
/// weight), k for its weight gradient (k is the pixel count). A product under about 4 MFLOP, or
/// on a one-core machine, stays whole. Blocks are a multiple of 16 long but the last, at least
/// 256 long, and 2 per core so that a thread that starts late still gets a share (on the R-50
/// products 1 or 4 per core were as fast in some runs and up to 15% slower in others; OpenBLAS's
/// own 2 threads were 12-15% slower).
public struct ProductPieces: Sendable, Equatable {
    public enum Side: Sendable { case whole, columns, rows, inner }
    public let side: Side
    public let count: Int
    /// The length of the side that is cut.
    public let length: Int

    /// A given cut of a side of `length` into `count` blocks (for tests).
    public init(side: Side, count: Int, length: Int) {
        (self.side, self.count, self.length) = (side, max(1, count), length)
    }

    @inlinable public init(m: Int, n: Int, k: Int, cores: Int = System.activeProcessorCount) {
        // The cut whose block repeats the least: A (m x k) for columns, C (m x n) for k, B (k x n) for rows.
        var best: (side: Side, length: Int, repeated: Int) = (.columns, n, m * k)
        if m * n < best.repeated { best = (.inner, k, m * n) }
        if k * n < best.repeated { best = (.rows, m, k * n) }
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        let blocks = min(2 * cores, best.length / 256, Int(flops / 4e6))
        if cores <= 1 || blocks < 2 {
            (side, count, length) = (.whole, 1, best.length)
        } else {
            (side, count, length) = (best.side, blocks, best.length)
        }
    }

    /// The columns, rows or inner terms of block `i`.
    @inlinable public func range(_ i: Int) -> Range<Int> {
        func edge(_ j: Int) -> Int { j == count ? length : (length * j / count) / 16 * 16 }
        return edge(i) ..< edge(i + 1)
    }
}
