// Winograd's F(2x2, 3x3) for inference's 3x3 stride-1 convolutions (Sources/CGemm/winograd.c):
// a 2x2 tile of outputs from a 4x4 tile of the input by 16 multiply-adds per input channel instead
// of 36, i.e. 16 products U[xi] (out x in channels) * V[xi] (in channels x tiles), run by our
// kernel, between a transform of the input and one of the output (which adds the bias and applies
// the frozen norm and ReLU). The sums are regrouped, so the output differs from the direct
// product's by rounding (2-5e-6 of the output's largest value on R-50's convolutions); training
// keeps the direct product. Any thread count gives the same bits (the transforms work per channel,
// the products are cut by columns only). The transforms are portable C; the products run on our
// kernel (AVX-512) or OpenBLAS's sgemm (other CPUs).
import CGemm

public enum WinogradProduct {
    /// Who runs the 16 products.
    public enum Products: Sendable {
        /// Our kernel (AVX-512 only).
        case ours
        /// OpenBLAS's sgemm (every CPU).
        case openblas
        /// Ours where it runs (`OwnProduct.enabled`), else OpenBLAS's.
        public static var current: Products { OwnProduct.enabled ? .ours : .openblas }
    }

    /// Whether a convolution runs here: Winograd's on (`OwnProduct.winogradEnabled`), a 3x3 window
    /// of stride 1 with one dilation for both axes, at least `leastChannels` input and output
    /// channels, and whole strips of our kernel's rows when it runs the products.
    public static func runs(window w: OwnProduct.ImageWindow, outChannels: Int) -> Bool {
        OwnProduct.winogradEnabled && w.kernelH == 3 && w.kernelW == 3 && w.strideH == 1 && w.strideW == 1
            && w.dilationH == w.dilationW && w.channels >= leastChannels && outChannels >= leastChannels
            && (Products.current == .openblas || outChannels % OwnProduct.rows == 0)
    }

    /// Fewer channels than this stay with the direct product. Measured alone on 2 threads
    /// (2026-12-07, C harness of these kernels, AVX-512): 64 channels at 200 x 304, 11.6 ms both
    /// ways; 128 at 100 x 152, 10.0 -> 8.1 ms; 256 at 50 x 76, 9.6 -> 6.0 ms; 512 dilated 2,
    /// 40 -> 24 ms; 1024 -> 512 (the RPN head), 77 -> 42 ms.
    public static let leastChannels = 128

    /// Images transformed and multiplied together (their tiles side by side as the products'
    /// columns): as many as keep the transformed input and products within `chunkFloats`, at least
    /// one. The mask head's 3x3s (100 RoIs of 14 x 14) ran 30 % faster than image by image.
    public static func imagesPerChunk(window w: OwnProduct.ImageWindow, outChannels: Int, images: Int) -> Int {
        let perImage = 16 * (w.channels + outChannels) * tiles(w)
        return max(1, min(images, chunkFloats / perImage))
    }

    /// The transformed input and products of one chunk of images: 64 MB.
    public static let chunkFloats = 1 << 24

    /// Floats of the three buffers `convolve` needs for `images` images: the transformed weight,
    /// input and products (with the 16 floats the output transform's last lanes read past the end).
    public static func bufferFloats(window w: OwnProduct.ImageWindow, outChannels: Int, images: Int = 1)
        -> (weight: Int, input: Int, products: Int) {
        let columns = imagesPerChunk(window: w, outChannels: outChannels, images: images) * tiles(w)
        return (16 * outChannels * w.channels, 16 * w.channels * columns, 16 * outChannels * columns + 16)
    }

    /// Tiles of one image.
    static func tiles(_ w: OwnProduct.ImageWindow) -> Int {
        var c = w.c
        return Int(dcn_winograd_tiles_of(&c).count)
    }

    /// out `[images, outChannels, outHeight, outWidth]` = the convolution of each image of `image`
    /// `[images, channels, height, width]` by weight `[outChannels, channels, 3, 3]` (transformed
    /// once for all), plus bias, then `then`; the buffers as `bufferFloats` sizes them.
    public static func convolve(
        images: Int = 1, image: UnsafePointer<Float>, window: OwnProduct.ImageWindow, weight: UnsafePointer<Float>, outChannels: Int,
        bias: [Float]?, then: ChannelAffine?, out: UnsafeMutablePointer<Float>,
        weightBuffer: UnsafeMutablePointer<Float>, inputBuffer: UnsafeMutablePointer<Float>, productBuffer: UnsafeMutablePointer<Float>,
        products: Products = .current
    ) {
        let inC = window.channels
        precondition(window.kernelH == 3 && window.kernelW == 3 && window.strideH == 1 && window.strideW == 1
                     && window.dilationH == window.dilationW, "WinogradProduct.convolve: not a 3x3 stride-1 window")
        precondition(products == .openblas || (CPUFeatures.current.avx512 && outChannels % OwnProduct.rows == 0),
                     "WinogradProduct.convolve: our kernel needs AVX-512 and whole strips of rows")
        // U[xi]: strips of our kernel's rows, or row-major for OpenBLAS.
        let strip = products == .ours ? OwnProduct.rows : 1
        let sw = SharedReads(weight), su = DisjointWrites(weightBuffer)
        parallelFor(outChannels / strip, grain: max(1, 16384 / (strip * inC))) { strips in
            dcn_winograd_weights(Int32(outChannels), Int32(inC), sw.pointer, Int32(strip), su.pointer,
                                 Int32(strips.lowerBound), Int32(strips.upperBound))
        }
        let chunk = imagesPerChunk(window: window, outChannels: outChannels, images: images)
        for n in stride(from: 0, to: images, by: chunk) {
            convolveImages(min(chunk, images - n), image + n * inC * window.height * window.width, window: window,
                           outChannels: outChannels, bias: bias, then: then, out: out + n * outChannels * window.outHeight * window.outWidth,
                           u: weightBuffer, v: inputBuffer, m: productBuffer, products: products)
        }
    }

    /// Images by the transformed weight in u: their transform into v, the products into m, the
    /// output transform into out.
    private static func convolveImages(
        _ images: Int, _ image: UnsafePointer<Float>, window: OwnProduct.ImageWindow, outChannels: Int, bias: [Float]?,
        then: ChannelAffine?, out: UnsafeMutablePointer<Float>, u: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
        m: UnsafeMutablePointer<Float>, products: Products
    ) {
        let inC = window.channels, fixed = window.c, count = Int32(images)
        let sx = SharedReads(image), sv = DisjointWrites(v)
        parallelFor(inC) { channels in
            var w = fixed
            dcn_winograd_input(&w, sx.pointer, count, sv.pointer, Int32(channels.lowerBound), Int32(channels.upperBound))
        }
        multiplyPoints(outChannels: outChannels, inChannels: inC, columns: images * tiles(window), u: u, v: v, m: m, products: products)
        withCEpilogue(bias: bias, then: then) { sb, affine in
            let sm = SharedReads(m), sy = DisjointWrites(out)
            parallelFor(outChannels) { range in
                var w = fixed
                CAffine.with(affine) { fp in
                    dcn_winograd_output(&w, count, Int32(outChannels), sm.pointer, sb?.pointer, fp, sy.pointer,
                                        Int32(range.lowerBound), Int32(range.upperBound))
                }
            }
        }
    }

    /// M[xi] = U[xi] V[xi] for the 16 points: outChannels x inChannels times inChannels x columns.
    private static func multiplyPoints(outChannels: Int, inChannels inC: Int, columns tiles: Int, u: UnsafeMutablePointer<Float>,
                                       v: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>, products: Products) {
        guard products == .ours else {
            for xi in 0..<16 {
                BLAS.sgemm(transA: false, transB: false, m: outChannels, n: tiles, k: inC, alpha: 1, a: u + xi * outChannels * inC, lda: inC,
                           b: v + xi * inC * tiles, ldb: tiles, beta: 0, c: m + xi * outChannels * tiles, ldc: tiles)
            }
            return
        }
        // Item i is block i % blocks of point i / blocks: each thread's share is whole points.
        let offsets = (0..<inC).map { $0 * tiles }
        let blocks = OwnProduct.Blocks(columns: tiles)
        let su = SharedReads(u), sv = SharedReads(v), sm = DisjointWrites(m)
        offsets.withUnsafeBufferPointer { table in
            let so = SharedReads(table.baseAddress!)
            parallelForEach(16 * blocks.count) { item in
                let xi = item / blocks.count, b = item % blocks.count
                dcn_gemm(Int32(outChannels), blocks.start(b), min(tiles, blocks.start(b + 1)), Int32(inC),
                         su.pointer + xi * outChannels * inC, sv.pointer + xi * inC * tiles, so.pointer, tiles, tiles,
                         nil, nil, sm.pointer + xi * outChannels * tiles, tiles, 0, 0)
            }
        }
    }
}
