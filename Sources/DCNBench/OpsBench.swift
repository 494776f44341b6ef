// dcn-bench ops: conv2d and modulated deformable conv2d timings at the paper's layer shapes, the
// Mask R-CNN mask head's transposed convolution, next to the sgemm rate of the same run.
import DCNOps
import DCNTensor
import Foundation

/// One timed measurement.
public struct OpTiming: Sendable, Codable {
    public let op: String          // "conv2d", "deform_conv2d", "conv_transpose" or "sgemm"
    public let pass: String?       // "fwd" or "fwd+bwd"
    public let channels: Int?
    public let height: Int?
    public let width: Int?
    public let n: Int?             // sgemm: the matrix size; conv_transpose: the batch (RoIs)
    public let threads: Int
    public let ms: Double?
    public let gflops: Double
    /// On the sgemm line: the library ("OpenBLAS 0.3.21") and the core whose kernels ran.
    public var blas: String? = nil
    public var core: String? = nil
}

/// The layer shapes of the benchmark: C -> C, 3x3, pad 1, batch 1.
public let standardOpShapes: [(channels: Int, height: Int, width: Int)] = [(128, 100, 168), (256, 50, 84), (512, 50, 84)]

/// Median wall time in milliseconds of `body` over `repeats` runs after one warm-up run.
public func medianMilliseconds(repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var times: [Double] = []
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    }
    times.sort()
    return times[times.count / 2]
}

/// sgemm rate for n x n x n in GFLOP/s (2 n^3 flops per product).
public func measureSgemm(n: Int, repeats: Int = 5) -> Double {
    var rng = SeededGenerator(seed: 1)
    let a = Tensor.uniform([n, n], -1, 1, using: &rng), b = Tensor.uniform([n, n], -1, 1, using: &rng)
    var c = Tensor(zeros: [n, n])
    let ms = medianMilliseconds(repeats: repeats) {
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    BLAS.sgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: ap.baseAddress!, lda: n,
                               b: bp.baseAddress!, ldb: n, beta: 0, c: cp.baseAddress!, ldc: n)
                }
            }
        }
    }
    return 2 * Double(n * n * n) / (ms * 1e6)
}

/// The mask head's upsampling: 128 RoIs of 256 channels, 14x14 -> 28x28 by a 2x2 stride-2
/// transposed convolution.
public let maskHeadTransposeShape = (rois: 128, channels: 256, height: 14, width: 14)

/// Times conv2d and modulated deform_conv2d (fwd, fwd+bwd) at each shape, then the mask head's
/// transposed convolution (`maskHeadTransposeShape`), plus sgemm 2048^3.
/// `report` is called with each measurement as soon as it is known. Runs on `Threads.count`
/// threads (the caller sets them).
public func runOpsBenchmark(shapes: [(channels: Int, height: Int, width: Int)] = standardOpShapes,
                            repeats: Int = 5, report: (OpTiming) -> Void) throws {
    let threads = Threads.count
    report(OpTiming(op: "sgemm", pass: nil, channels: nil, height: nil, width: nil, n: 2048, threads: threads,
                    ms: nil, gflops: measureSgemm(n: 2048), blas: BLASKernel.version, core: BLASKernel.coreName))
    for shape in shapes {
        var rng = SeededGenerator(seed: 42)
        let C = shape.channels, H = shape.height, W = shape.width
        let options = ConvOptions(stride: 1, padding: 1)
        let input = Tensor.normal([1, C, H, W], using: &rng)
        let weight = Tensor.normal([C, C, 3, 3], std: 0.02, using: &rng)
        let bias = Tensor.normal([C], using: &rng)
        let offset = Tensor.normal([1, 18, H, W], std: 2, using: &rng)
        let mask = Tensor.uniform([1, 9, H, W], 0, 1, using: &rng)
        let dOutput = Tensor.normal([1, C, H, W], using: &rng)
        // A training step's workspace: the direct products training runs (in inference the 3x3
        // conv goes by Winograd's, which `dcn-bench detect` times in the whole detector).
        let workspace = Workspace(sizedForBackward: true)
        let flops = 2 * Double(C * C * 9 * H * W)

        func record(_ op: String, _ pass: String, _ ms: Double) {
            let work = pass == "fwd" ? flops : 3 * flops
            report(OpTiming(op: op, pass: pass, channels: C, height: H, width: W, n: nil, threads: threads,
                            ms: ms, gflops: work / (ms * 1e6)))
        }

        record("conv2d", "fwd", try medianMilliseconds(repeats: repeats) {
            _ = try conv2dForward(input: input, weight: weight, bias: bias, options: options, workspace: workspace)
        })
        record("conv2d", "fwd+bwd", try medianMilliseconds(repeats: repeats) {
            _ = try conv2dForward(input: input, weight: weight, bias: bias, options: options, workspace: workspace)
            var dInput: Tensor? = Tensor(zeros: input.shape)
            let dWeight = GradientBlock(zeros: weight.shape), dBias = GradientBlock(zeros: bias.shape)
            try conv2dBackward(dInput: &dInput, dWeight: dWeight.slot, dBias: dBias.slot, dOutput: dOutput,
                               input: input, weight: weight, options: options, workspace: workspace)
        })
        record("deform_conv2d", "fwd", try medianMilliseconds(repeats: repeats) {
            _ = try deformConv2dForward(input: input, offset: offset, mask: mask, weight: weight, bias: bias,
                                        options: options, workspace: workspace)
        })
        record("deform_conv2d", "fwd+bwd", try medianMilliseconds(repeats: repeats) {
            _ = try deformConv2dForward(input: input, offset: offset, mask: mask, weight: weight, bias: bias,
                                        options: options, workspace: workspace)
            var dInput: Tensor? = Tensor(zeros: input.shape), dOffset: Tensor? = Tensor(zeros: offset.shape)
            var dMask: Tensor? = Tensor(zeros: mask.shape)
            let dWeight = GradientBlock(zeros: weight.shape), dBias = GradientBlock(zeros: bias.shape)
            try deformConv2dBackward(dInput: &dInput, dOffset: &dOffset, dMask: &dMask, dWeight: dWeight.slot, dBias: dBias.slot,
                                     dOutput: dOutput, input: input, offset: offset, mask: mask, weight: weight,
                                     options: options, workspace: workspace)
        })
    }
    try timeMaskHeadTranspose(repeats: repeats, threads: threads, report: report)
}

/// conv_transpose2d fwd and fwd+bwd (input and weight gradients) at `maskHeadTransposeShape`;
/// the work is counted as 2 flops per multiply-add, three products for fwd+bwd.
func timeMaskHeadTranspose(repeats: Int, threads: Int, report: (OpTiming) -> Void) throws {
    var rng = SeededGenerator(seed: 43)
    let s = maskHeadTransposeShape
    let options = ConvTransposeOptions(stride: 2)
    let input = Tensor.normal([s.rois, s.channels, s.height, s.width], using: &rng)
    let weight = Tensor.normal([s.channels, s.channels, 2, 2], std: 0.02, using: &rng)
    let bias = Tensor.normal([s.channels], using: &rng)
    let geo = try ConvTransposeGeometry(input: input.shape, weight: weight.shape, options: options)
    let dOutput = Tensor.normal(geo.outputShape, using: &rng)
    let workspace = Workspace()
    let flops = 2 * Double(geo.multiplyAdds)

    func record(_ pass: String, _ ms: Double) {
        let work = pass == "fwd" ? flops : 3 * flops
        report(OpTiming(op: "conv_transpose", pass: pass, channels: s.channels, height: s.height, width: s.width, n: s.rois,
                        threads: threads, ms: ms, gflops: work / (ms * 1e6)))
    }

    record("fwd", try medianMilliseconds(repeats: repeats) {
        _ = try convTranspose2dForward(input: input, weight: weight, bias: bias, options: options, workspace: workspace)
    })
    record("fwd+bwd", try medianMilliseconds(repeats: repeats) {
        _ = try convTranspose2dForward(input: input, weight: weight, bias: bias, options: options, workspace: workspace)
        var dInput: Tensor? = Tensor(zeros: input.shape)
        let dWeight = GradientBlock(zeros: weight.shape), dBias = GradientBlock(zeros: bias.shape)
        try convTranspose2dBackward(dInput: &dInput, dWeight: dWeight.slot, dBias: dBias.slot, dOutput: dOutput,
                                    input: input, weight: weight, options: options, workspace: workspace)
    })
}
