// The one file that calls OpenBLAS. Nothing else in the project sees C types.
import CBLAS

/// Thin, typed wrappers over the OpenBLAS calls the project uses. Each one first makes sure the
/// right kernels are selected (`BLASKernel.selection`, done once per process).
public enum BLAS {
    /// Row-major single-precision matrix product:
    /// `C[m x n] = alpha * op(A) * op(B) + beta * C`, with `op(A)` of size m x k and `op(B)` k x n.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored (before transposition).
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

    /// Number of threads OpenBLAS uses for one call.
    public static var threadCount: Int {
        _ = BLASKernel.selection
        return Int(openblas_get_num_threads())
    }

    /// Sets the number of threads OpenBLAS uses for one call.
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
