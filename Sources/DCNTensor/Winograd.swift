// Winograd's F(2x2, 3x3) for inference's 3x3 stride-1 convolutions (Sources/CGemm/winograd.c):
// a 2x2 tile of outputs from a 4x4 tile of the input by 16 multiply-adds per input channel instead
// of 36, i.e. 16 products U[xi] (out x in channels) * V[xi] (in channels x tiles), run by our
// kernel, between a transform of the input and one of the output (which adds the bias and applies
// the frozen norm and ReLU). The sums are regrouped, so the output differs from the direct
// product's by rounding (2-5e-6 of the output's largest value on R-50's convolutions); training
// keeps the direct product. Any thread count gives the same bits (the transforms work per channel,
// the products are ours).
import CGemm

public enum WinogradProduct {
    /// Whether a convolution runs here: our kernels on (AVX-512), a 3x3 window of stride 1 with one
    /// dilation for both axes, and at least `leastChannels` input and output channels (a multiple of
    /// the kernel's rows).
    public static func runs(window w: OwnProduct.ImageWindow, outChannels: Int) -> Bool {
        OwnProduct.winogradEnabled && w.kernelH == 3 && w.kernelW == 3 && w.strideH == 1 && w.strideW == 1
            && w.dilationH == w.dilationW && w.channels >= leastChannels && outChannels >= leastChannels
            && outChannels % OwnProduct.rows == 0
    }

    /// Fewer channels than this stay with the direct product. Measured alone on 2 threads
    /// (2026-12-07, C harness of these kernels): 64 channels at 200 x 304, 11.6 ms both ways;
    /// 128 at 100 x 152, 10.0 -> 8.1 ms; 256 at 50 x 76, 9.6 -> 6.0 ms; 512 dilated 2, 40 -> 24 ms;
    /// 1024 -> 512 (the RPN head), 77 -> 42 ms.
    public static let leastChannels = 128

    /// Floats of the three buffers `convolve` needs: the transformed weight, input and products.
    public static func bufferFloats(window w: OwnProduct.ImageWindow, outChannels: Int) -> (weight: Int, input: Int, products: Int) {
        var c = w.c
        let tiles = Int(dcn_winograd_tiles_of(&c).count)
        return (16 * outChannels * w.channels, 16 * w.channels * tiles, 16 * outChannels * tiles)
    }

    /// out `[outChannels, outHeight, outWidth]` = the convolution of image `[channels, height, width]`
    /// by weight `[outChannels, channels, 3, 3]`, plus bias, then `then`; the buffers as
    /// `bufferFloats` sizes them.
    public static func convolve(
        image: UnsafePointer<Float>, window: OwnProduct.ImageWindow, weight: UnsafePointer<Float>, outChannels: Int,
        bias: [Float]?, then: ChannelAffine?, out: UnsafeMutablePointer<Float>,
        weightBuffer: UnsafeMutablePointer<Float>, inputBuffer: UnsafeMutablePointer<Float>, productBuffer: UnsafeMutablePointer<Float>
    ) {
        precondition(runs(window: window, outChannels: outChannels), "WinogradProduct.convolve: not a window it runs")
        let fixed = window.c, inC = window.channels, rows = OwnProduct.rows
        var c = fixed
        let tiles = Int(dcn_winograd_tiles_of(&c).count)
        let sw = SharedReads(weight), su = DisjointWrites(weightBuffer)
        parallelFor(outChannels / rows, grain: max(1, 16384 / (rows * inC))) { strips in
            dcn_winograd_weights(Int32(outChannels), Int32(inC), sw.pointer, su.pointer, Int32(strips.lowerBound), Int32(strips.upperBound))
        }
        let sx = SharedReads(image), sv = DisjointWrites(inputBuffer)
        parallelFor(inC) { channels in
            var w = fixed
            dcn_winograd_input(&w, sx.pointer, sv.pointer, Int32(channels.lowerBound), Int32(channels.upperBound))
        }
        // The 16 products: item i is block i % blocks of point i / blocks, so each thread's share
        // is whole points (the products are alike).
        let offsets = (0..<inC).map { $0 * tiles }
        let blocks = OwnProduct.Blocks(columns: tiles)
        let su2 = SharedReads(weightBuffer), sv2 = SharedReads(inputBuffer), sm = DisjointWrites(productBuffer)
        offsets.withUnsafeBufferPointer { table in
            let so = SharedReads(table.baseAddress!)
            parallelForEach(16 * blocks.count) { item in
                let xi = item / blocks.count, b = item % blocks.count
                dcn_gemm(Int32(outChannels), blocks.start(b), min(tiles, blocks.start(b + 1)), Int32(inC),
                         su2.pointer + xi * outChannels * inC, sv2.pointer + xi * inC * tiles, so.pointer, tiles, tiles,
                         nil, nil, sm.pointer + xi * outChannels * tiles, tiles, 0, 0)
            }
        }
        let none: [Float] = []
        (bias ?? none).withUnsafeBufferPointer { biasRows in
            (then?.scale ?? none).withUnsafeBufferPointer { scale in
                (then?.shift ?? none).withUnsafeBufferPointer { shift in
                    let sb = bias == nil ? nil : biasRows.baseAddress.map { SharedReads($0) }
                    let affine = then.map { CAffine(dcn_affine(scale: scale.baseAddress, shift: shift.baseAddress, relu: $0.relu ? 1 : 0)) }
                    let sm2 = SharedReads(productBuffer), sy = DisjointWrites(out)
                    parallelFor(outChannels) { range in
                        var w = fixed
                        var f = affine?.value ?? dcn_affine()
                        withUnsafePointer(to: &f) { fp in
                            dcn_winograd_output(&w, Int32(outChannels), sm2.pointer, sb?.pointer, affine == nil ? nil : fp, sy.pointer,
                                                Int32(range.lowerBound), Int32(range.upperBound))
                        }
                    }
                }
            }
        }
    }
}
