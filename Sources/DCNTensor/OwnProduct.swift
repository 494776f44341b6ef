// Our own products for the forward convolutions (Sources/CGemm): C (+)= W * B with W the weight
// and B the im2col columns of one image, which are never written out. The kernels read B's rows
// straight from the input (pointwise convolutions) or from a copy of the input laid out so that
// every tap of the window reads a contiguous run (zero-padded, split by stride phase: one pass
// over the input, where im2col writes kh x kw times the input). OpenBLAS's products of a ResNet's
// small layers ran at 55-70 % of its large-product rate on 2026's x86 cores, and the im2col
// matrix cost as much memory traffic again.
//
// Every element of C is one chain of fused multiply-adds in k order, cut at the same 256-long
// blocks whatever the thread count or the cut of the columns: any number of threads or processes
// gives the same bits. AVX-512 only (our AVX2 kernels lost to OpenBLAS's Haswell ones).
import CGemm

public enum OwnProduct {
    /// Rows of C one kernel call computes: a product's m must be a multiple.
    public static let rows = Int(DCN_GEMM_ROWS)
    /// Columns one kernel call computes (a panel).
    public static let panelColumns = Int(DCN_GEMM_COLUMNS)

    /// Whether our kernels run: on CPUs with AVX-512 (and the OS saving its registers), unless
    /// `dcn-bench --conv-kernels openblas` chose OpenBLAS, once, before the first product.
    public nonisolated(unsafe) private(set) static var enabled = CPUFeatures.current.avx512
    /// Whether inference's 3x3 stride-1 convolutions of enough channels run by Winograd's
    /// F(2x2, 3x3) (`WinogradProduct`; its products on our kernel where it runs, else OpenBLAS's).
    public nonisolated(unsafe) private(set) static var winogradEnabled = true

    /// For benchmarks only, before any product runs: "best" (ours where the CPU has AVX-512, and
    /// Winograd's in inference), "direct" (the same without Winograd's), "openblas" (OpenBLAS runs
    /// every product, Winograd's included: what a CPU without AVX-512 runs) or "openblas-direct"
    /// (im2col and OpenBLAS, as before any of ours).
    public static func choose(_ name: String) throws {
        let avx512 = CPUFeatures.current.avx512
        switch name.lowercased() {
        case "best": (enabled, winogradEnabled) = (avx512, true)
        case "direct": (enabled, winogradEnabled) = (avx512, false)
        case "openblas": (enabled, winogradEnabled) = (false, true)
        case "openblas-direct": (enabled, winogradEnabled) = (false, false)
        default: throw BLASKernelError(description: "--conv-kernels must be best, direct, openblas or openblas-direct, got '\(name)'")
        }
    }

    /// Who runs the forward convolutions' products, for benchmark lines: "ours (AVX-512, 8 x 48)"
    /// or "OpenBLAS", with " + Winograd F(2x2,3x3) in inference" when it runs.
    public static var description: String {
        (enabled ? "ours (AVX-512, \(rows) x \(panelColumns))" : "OpenBLAS") + (winogradEnabled ? " + Winograd F(2x2,3x3) in inference" : "")
    }

    /// Whether a convolution's product (an `m`-row weight, `k` column rows, a window or a pointwise
    /// product) runs here, else the caller uses im2col and `BLAS.sgemm`: m a multiple of the
    /// kernel's rows, and every window (no im2col matrix: R-50's peak memory in inference 634 ->
    /// 539 MB, its largest window products, res5's and the RPN head's, as fast as OpenBLAS's to
    /// within 5 %) or a pointwise product of up to 128 rows (res2's and res3's expansions; OpenBLAS
    /// kept a 5-10 % lead on the larger ones). Measured with `dcn-bench detect --layers`, alternated
    /// with `--conv-kernels openblas`, 2026-12-06.
    public static func runs(m: Int, k: Int, window: Bool) -> Bool {
        guard enabled, m > 0, m % rows == 0 else { return false }
        return window || k <= 128
    }

    /// The B operand of `multiply`.
    public enum Columns {
        /// B[r][p] = matrix[r * ld + p] (a pointwise convolution: the input itself).
        case matrix(UnsafePointer<Float>, ld: Int)
        /// The im2col columns of one image `[channels, height, width]` under `window`; the image is
        /// laid out in `scratch` (`window.scratchFloats` floats; nil: a buffer of its own).
        case image(UnsafePointer<Float>, ImageWindow, scratch: UnsafeMutablePointer<Float>?)
    }

    /// A convolution's window over an image: which input a column row and column read.
    public struct ImageWindow: Sendable, Equatable {
        public var channels: Int, height: Int, width: Int
        public var kernelH: Int, kernelW: Int, strideH: Int, strideW: Int
        public var padH: Int, padW: Int, dilationH: Int, dilationW: Int
        public var outHeight: Int, outWidth: Int

        public init(channels: Int, height: Int, width: Int, kernelH: Int, kernelW: Int, strideH: Int, strideW: Int,
                    padH: Int, padW: Int, dilationH: Int, dilationW: Int, outHeight: Int, outWidth: Int) {
            (self.channels, self.height, self.width) = (channels, height, width)
            (self.kernelH, self.kernelW, self.strideH, self.strideW) = (kernelH, kernelW, strideH, strideW)
            (self.padH, self.padW, self.dilationH, self.dilationW) = (padH, padW, dilationH, dilationW)
            (self.outHeight, self.outWidth) = (outHeight, outWidth)
        }

        /// Floats of the laid-out copy of the image that `multiply` reads.
        public var scratchFloats: Int {
            var w = c
            return dcn_layout_of(&w).totalFloats
        }

        var c: dcn_window {
            dcn_window(channels: Int32(channels), height: Int32(height), width: Int32(width),
                       kernelH: Int32(kernelH), kernelW: Int32(kernelW), strideH: Int32(strideH), strideW: Int32(strideW),
                       padH: Int32(padH), padW: Int32(padW), dilationH: Int32(dilationH), dilationW: Int32(dilationW),
                       outHeight: Int32(outHeight), outWidth: Int32(outWidth))
        }
    }

    /// The blocks the threads share: columns cut at whole 48-column panels into blocks of up to
    /// 768 columns, as nearly equal as panels allow, a multiple of the thread count of them (at
    /// least two per thread when there are that many panels). Block b is columns
    /// `start(b) ..< start(b + 1)`; `parallelForEach` hands them out. Equal shares matter:
    /// res5's 3x3 products took 10-12 % longer when `parallelFor` handed its 11 blocks out in 8
    /// chunks of 1 or 2 (one thread ran 6). The cut does not change the bits.
    public struct Blocks: Sendable {
        public let count: Int, panels: Int
        public init(columns: Int) {
            let threads = Threads.count
            panels = (columns + panelColumns - 1) / panelColumns
            let least = max((panels + 15) / 16, 2 * threads)
            count = min(panels, (least + threads - 1) / threads * threads)
        }
        /// The first column of block b (b = count: the end, past the last column).
        public func start(_ b: Int) -> Int { panels * b / count * panelColumns }
    }

    /// C[m x n] (+)= A[m x k] * B[k x n] on our threads: accumulate adds to C, else C is
    /// overwritten, row i starting from bias[i] (from 0 without a bias); then `then` maps row i
    /// (its scale[i], shift[i]) while it is in cache. Needs AVX-512 (`CPUFeatures.current.avx512`)
    /// and m a multiple of `rows`.
    public static func multiply(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: Columns,
        bias: [Float]? = nil, then: ChannelAffine? = nil, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
    ) {
        precondition(CPUFeatures.current.avx512, "OwnProduct.multiply: this CPU has no AVX-512")
        precondition(m % rows == 0, "OwnProduct.multiply: m = \(m) is not a multiple of \(rows)")
        if m == 0 || n == 0 { return }
        precondition(k > 0, "OwnProduct.multiply: k must be positive")
        var offsets = [Int](repeating: 0, count: k)
        switch b {
        case .matrix(let source, let ld):
            for r in 0..<k { offsets[r] = r * ld }
            run(m: m, columns: n, k: k, a: a, lda: lda, source: source, offsets: offsets,
                virtualWidth: n, outWidth: n, bias: bias, then: then, c: c, ldc: ldc, accumulate: accumulate)
        case .image(let image, let window, let scratch):
            precondition(window.channels * window.kernelH * window.kernelW == k && window.outHeight * window.outWidth == n,
                         "OwnProduct.multiply: the window does not give a \(k) x \(n) B")
            var w = window.c
            let layout = dcn_layout_of(&w)
            let laidOut = scratch ?? UnsafeMutablePointer<Float>.allocate(capacity: layout.totalFloats)
            defer { if scratch == nil { laidOut.deallocate() } }
            let planes = window.channels * layout.channelFloats
            (laidOut + planes).update(repeating: 0, count: layout.totalFloats - planes)
            let source = SharedReads(image), out = DisjointWrites(laidOut), fixed = w
            parallelFor(window.channels, grain: max(1, 65536 / max(1, layout.channelFloats))) { range in
                var w = fixed
                dcn_relayout(&w, source.pointer, out.pointer, Int32(range.lowerBound), Int32(range.upperBound))
            }
            offsets.withUnsafeMutableBufferPointer { dcn_window_offsets(&w, $0.baseAddress) }
            // The last output row's dropped columns are not computed.
            let columns = (window.outHeight - 1) * layout.virtualWidth + window.outWidth
            run(m: m, columns: columns, k: k, a: a, lda: lda, source: laidOut, offsets: offsets,
                virtualWidth: layout.virtualWidth, outWidth: window.outWidth, bias: bias, then: then, c: c, ldc: ldc, accumulate: accumulate)
        }
    }

    /// A window's output larger than this reaches memory by streaming stores (`dcn_gemm`'s
    /// streamOutput: no read of the output's lines first). Measured alternated on R-50 (2026-12-07):
    /// the stem's (62 MB) 20-21 -> 18-19 ms and res2's 3x3 (15.6 MB) 38-40 -> 34-37 ms, their next
    /// ops no slower; streaming the 7.8 MB outputs of res3-res5 and the RPN head gained nothing.
    public static let streamedOutputBytes = 12 << 20

    /// `dcn_gemm` over the virtual columns 0 ..< columns, cut in blocks that the threads share.
    private static func run(
        m: Int, columns: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
        source: UnsafePointer<Float>, offsets: [Int], virtualWidth: Int, outWidth: Int,
        bias: [Float]?, then: ChannelAffine?, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
    ) {
        withCEpilogue(bias: bias, then: then) { sbias, affine in
            offsets.withUnsafeBufferPointer { table in
                let sa = SharedReads(a), sb = SharedReads(source), so = SharedReads(table.baseAddress!), sc = DisjointWrites(c)
                // A packed once for every block (packed per block, res5's 3x3 weight of 512 x 4608
                // was copied once for each of its 12 blocks).
                let packed = UnsafeMutablePointer<Float>.allocate(capacity: m * k)
                defer { packed.deallocate() }
                let sp = DisjointWrites(packed)
                parallelFor(m / rows, grain: max(1, 65536 / (rows * k))) { strips in
                    dcn_pack_rows(Int32(k), sa.pointer, lda, sp.pointer, Int32(strips.lowerBound), Int32(strips.upperBound))
                }
                let sap = SharedReads(packed)
                let blocks = Blocks(columns: columns)
                let stream = !accumulate && virtualWidth != outWidth && m * ldc * MemoryLayout<Float>.size > streamedOutputBytes ? Int32(1) : 0
                parallelForEach(blocks.count) { b in
                    CAffine.with(affine) { fp in
                        dcn_gemm(Int32(m), blocks.start(b), min(columns, blocks.start(b + 1)), Int32(k),
                                 sap.pointer, sb.pointer, so.pointer, virtualWidth, outWidth, sbias?.pointer,
                                 fp, sc.pointer, ldc, accumulate ? 1 : 0, stream)
                    }
                }
            }
        }
    }
}

/// A per-channel affine map and an optional ReLU: a frozen (or inference) batch norm and the ReLU
/// after it, which a convolution applies to its output (`conv2dForward(then:)`, `OwnProduct`):
/// y = x * scale[c] + shift[c] (a multiply, then an add), then `y < 0 ? 0 : y` when `relu`.
public struct ChannelAffine: Sendable {
    public var scale: [Float], shift: [Float]
    public var relu: Bool
    public init(scale: [Float], shift: [Float], relu: Bool) { (self.scale, self.shift, self.relu) = (scale, shift, relu) }
}

/// The C description of the rows' affine map, read by every thread of a product.
struct CAffine: @unchecked Sendable {
    let value: dcn_affine

    /// `body` with a pointer to the map (a copy of its own), or nil for none.
    static func with<R>(_ affine: CAffine?, _ body: (UnsafePointer<dcn_affine>?) -> R) -> R {
        guard var f = affine?.value else { return body(nil) }
        return withUnsafePointer(to: &f) { body($0) }
    }
}

/// `body` with the bias's rows and the affine map as the C side reads them (nil: none), valid
/// while it runs: the epilogue of our products and of Winograd's output transform.
func withCEpilogue<R>(bias: [Float]?, then: ChannelAffine?, _ body: (SharedReads<Float>?, CAffine?) -> R) -> R {
    let none: [Float] = []
    return (bias ?? none).withUnsafeBufferPointer { biasRows in
        (then?.scale ?? none).withUnsafeBufferPointer { scale in
            (then?.shift ?? none).withUnsafeBufferPointer { shift in
                body(bias == nil ? nil : biasRows.baseAddress.map { SharedReads($0) },
                     then.map { CAffine(value: dcn_affine(scale: scale.baseAddress, shift: shift.baseAddress, relu: $0.relu ? 1 : 0)) })
            }
        }
    }
}
