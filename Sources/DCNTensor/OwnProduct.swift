// Our own matrix product for the forward convolutions (Sources/CGemm): C (+)= A * B with A the
// weights and B the columns of one image, packed panel by panel straight from the image (no
// im2col matrix in memory) or from a columns matrix. OpenBLAS's kernels on 2026's x86 cores ran
// the small products of a ResNet at 55-70 % of its large-product rate (64 output channels, or
// 64-147 inner terms); these kernels keep the panel in cache and the C block in registers.
//
// Every element of C is one chain of fused multiply-adds in k order, cut at the same 256-long
// blocks whatever the instruction set, the thread count or the cut of the columns: the AVX2 and
// AVX-512 kernels give the same bits, and so does any number of threads or processes.
import CGemm

public enum OwnProduct {
    /// The kernels this CPU runs.
    public enum InstructionSet: Sendable, Equatable {
        case avx2, avx512

        var code: Int32 { self == .avx512 ? Int32(DCN_GEMM_AVX512) : Int32(DCN_GEMM_AVX2) }
        /// Rows of C one kernel call computes: a product's m must be a multiple.
        public var rows: Int { Int(dcn_gemm_rows(code)) }
        /// Columns of one packed panel.
        public var panel: Int { Int(dcn_gemm_panel(code)) }
        public var name: String { self == .avx512 ? "AVX-512, \(rows) x \(panel)" : "AVX2, \(rows) x \(panel)" }
    }

    /// AVX-512 where the CPU and the OS have it, else AVX2 with FMA, else nil (OpenBLAS runs every product).
    public static let instructionSet: InstructionSet? = best(for: .current)

    public static func best(for cpu: CPUFeatures) -> InstructionSet? {
        cpu.avx512 ? .avx512 : cpu.avx2 ? .avx2 : nil
    }

    /// "ours (AVX-512, 8 x 48)" or "OpenBLAS" when this CPU has no kernel of ours: who runs the
    /// forward convolutions' products, for benchmark lines.
    public static var description: String { instructionSet.map { "ours (\($0.name))" } ?? "OpenBLAS" }

    /// Whether the product of an `m`-row weight runs here (else the caller uses `BLAS.sgemm`).
    public static func handles(m: Int) -> Bool {
        guard let isa = instructionSet else { return false }
        return m > 0 && m % isa.rows == 0
    }

    /// The B operand of `multiply`.
    public enum Columns {
        /// B[r][p] = matrix[r * ld + p].
        case matrix(UnsafePointer<Float>, ld: Int)
        /// B[r][p] = matrix[p * ld + r].
        case transposed(UnsafePointer<Float>, ld: Int)
        /// The im2col columns of one image `[channels, height, width]` under `window`.
        case image(UnsafePointer<Float>, ImageWindow)
    }

    /// A convolution's window over an image: which input a column row and column read.
    public struct ImageWindow: Sendable, Equatable {
        public var channels: Int, height: Int, width: Int
        public var kernelH: Int, kernelW: Int, strideH: Int, strideW: Int
        public var padH: Int, padW: Int, dilationH: Int, dilationW: Int
        public var outWidth: Int

        public init(channels: Int, height: Int, width: Int, kernelH: Int, kernelW: Int, strideH: Int, strideW: Int,
                    padH: Int, padW: Int, dilationH: Int, dilationW: Int, outWidth: Int) {
            (self.channels, self.height, self.width) = (channels, height, width)
            (self.kernelH, self.kernelW, self.strideH, self.strideW) = (kernelH, kernelW, strideH, strideW)
            (self.padH, self.padW, self.dilationH, self.dilationW) = (padH, padW, dilationH, dilationW)
            self.outWidth = outWidth
        }
    }

    /// Columns of C packed at once by one call of the kernel loop: the unit the threads share.
    static let block = 384

    /// C[m x n] (+)= A[m x k] * B[k x n] (accumulate adds to C), on our threads: the columns are
    /// cut in 384-wide blocks. `m` must satisfy `handles(m:)`; `isa` is for tests (default: this CPU's).
    public static func multiply(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: Columns,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, isa: InstructionSet? = nil
    ) {
        guard let isa = isa ?? instructionSet else { preconditionFailure("OwnProduct.multiply: no kernel for this CPU") }
        precondition(m % isa.rows == 0, "OwnProduct.multiply: m = \(m) is not a multiple of \(isa.rows)")
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        var columns = dcn_columns()
        switch b {
        case .matrix(let p, let ld):
            (columns.matrix, columns.ld, columns.kind) = (p, ld, Int32(DCN_COLUMNS_MATRIX))
        case .transposed(let p, let ld):
            (columns.matrix, columns.ld, columns.kind) = (p, ld, Int32(DCN_COLUMNS_TRANSPOSED))
        case .image(let p, let w):
            (columns.matrix, columns.kind) = (p, Int32(DCN_COLUMNS_IMAGE))
            (columns.channels, columns.height, columns.width) = (Int32(w.channels), Int32(w.height), Int32(w.width))
            (columns.kernelH, columns.kernelW) = (Int32(w.kernelH), Int32(w.kernelW))
            (columns.strideH, columns.strideW, columns.padH, columns.padW) = (Int32(w.strideH), Int32(w.strideW), Int32(w.padH), Int32(w.padW))
            (columns.dilationH, columns.dilationW, columns.outWidth) = (Int32(w.dilationH), Int32(w.dilationW), Int32(w.outWidth))
        }
        let sa = SharedReads(a), sc = DisjointWrites(c), source = ColumnsSource(value: columns)
        let blocks = (n + block - 1) / block
        parallelFor(blocks) { range in
            let pack = UnsafeMutableRawPointer.allocate(byteCount: Int(dcn_gemm_pack_floats) * 4, alignment: 64)
            defer { pack.deallocate() }
            var b = source.value
            dcn_gemm(isa.code, Int32(m), range.lowerBound * block, min(n, range.upperBound * block), Int32(k),
                     sa.pointer, lda, &b, sc.pointer, ldc, accumulate ? 1 : 0, pack.assumingMemoryBound(to: Float.self))
        }
    }
}

/// The C description of B, read (never written) by every thread of a product.
private struct ColumnsSource: @unchecked Sendable { var value: dcn_columns }
