// conv2d and deform_conv2d against torchvision fixtures, finite differences and invariants.
import DCNVerify
import DCNOps
import DCNTensor
import TestSupport
import Testing

let convFixtures = [
    "conv2d_1x1_nobias", "conv2d_3x3", "conv2d_7x7_s2", "conv2d_strided_dilated_grouped",
    "deform_conv2d_basic", "deform_conv2d_large_offsets", "deform_conv2d_medium", "deform_conv2d_nonsquare",
    "deform_conv2d_strided_dilated_groups", "deform_conv2d_v1_nomask_nobias",
]

@Test(arguments: convFixtures)
func convMatchesTorchFixture(_ name: String) throws {
    let result = try verifyFixture(path: fixturePath("ops/\(name).safetensors"))
    for c in result.comparisons { #expect(c.relativeError <= 1e-5, "\(name) \(c.name): \(c.relativeError)") }
    #expect(result.comparisons.count >= 3, "forward and gradients compared")
}

/// A small deformable problem whose sample points all have fractional parts in [0.15, 0.85], so
/// finite differences of step 1e-2 never cross a bilinear kink.
struct DeformProblem {
    var input, offset, weight, bias, dOutput: Tensor
    var mask: Tensor?
    let options: ConvOptions

    init(modulated: Bool, options: ConvOptions = ConvOptions(strideH: 2, strideW: 1, padH: 1, padW: 1, dilationH: 1, dilationW: 2, groups: 2),
         offsetGroups: Int = 2, seed: UInt64 = 3) throws {
        var rng = SeededGenerator(seed: seed)
        let N = 2, C = 4, H = 5, W = 6, Cout = 4, kh = 3, kw = 2
        self.options = options
        input = Tensor.normal([N, C, H, W], using: &rng)
        weight = Tensor.normal([Cout, C / options.groups, kh, kw], std: 0.5, using: &rng)
        bias = Tensor.normal([Cout], using: &rng)
        let geo = try ConvGeometry(input: input.shape, weight: weight.shape, options: options)
        offset = Tensor(zeros: [N, 2 * offsetGroups * kh * kw, geo.outHeight, geo.outWidth])
        for i in 0..<offset.count {
            offset.data[i] = Float(Int(rng.next() % 5) - 2) + rng.uniform(0.15, 0.85)
        }
        mask = modulated ? Tensor.uniform([N, offsetGroups * kh * kw, geo.outHeight, geo.outWidth], 0.1, 1, using: &rng) : nil
        dOutput = Tensor.normal(geo.outputShape, using: &rng)
    }

    func loss(input: Tensor? = nil, offset: Tensor? = nil, mask: Tensor? = nil, weight: Tensor? = nil, bias: Tensor? = nil) throws -> Double {
        let out = try deformConv2dForward(input: input ?? self.input, offset: offset ?? self.offset, mask: mask ?? self.mask,
                                          weight: weight ?? self.weight, bias: bias ?? self.bias, options: options)
        return weightedSum(out, dOutput)
    }

    func gradients() throws -> (dInput: Tensor, dOffset: Tensor, dMask: Tensor?, dWeight: Tensor, dBias: Tensor) {
        var dInput: Tensor? = Tensor(zeros: input.shape), dOffset: Tensor? = Tensor(zeros: offset.shape)
        var dMask: Tensor? = mask.map { Tensor(zeros: $0.shape) }
        let dWeight = GradientBlock(zeros: weight.shape), dBias = GradientBlock(zeros: bias.shape)
        try deformConv2dBackward(dInput: &dInput, dOffset: &dOffset, dMask: &dMask, dWeight: dWeight.slot, dBias: dBias.slot,
                                 dOutput: dOutput, input: input, offset: offset, mask: mask, weight: weight, options: options)
        return (dInput!, dOffset!, dMask, dWeight.tensor, dBias.tensor)
    }
}

@Test(arguments: [true, false])
func deformConvGradientsMatchFiniteDifferences(modulated: Bool) throws {
    let p = try DeformProblem(modulated: modulated)
    let g = try p.gradients()
    let tolerance = 2e-2
    #expect(try finiteDifferenceError(at: p.input, analytic: g.dInput) { try p.loss(input: $0) } < tolerance)
    #expect(try finiteDifferenceError(at: p.offset, analytic: g.dOffset, samples: 80) { try p.loss(offset: $0) } < tolerance)
    if let mask = p.mask, let dMask = g.dMask {
        #expect(try finiteDifferenceError(at: mask, analytic: dMask) { try p.loss(mask: $0) } < tolerance)
    }
    #expect(try finiteDifferenceError(at: p.weight, analytic: g.dWeight) { try p.loss(weight: $0) } < tolerance)
    #expect(try finiteDifferenceError(at: p.bias, analytic: g.dBias) { try p.loss(bias: $0) } < tolerance)
}

/// Channel runs that split weight groups (one offset group over two weight groups) and offset
/// groups inside a weight group (four offset groups, two weight groups).
@Test(arguments: [1, 4])
func deformConvGradientsWithOtherOffsetGroups(offsetGroups: Int) throws {
    let p = try DeformProblem(modulated: true, offsetGroups: offsetGroups, seed: 7)
    let g = try p.gradients()
    let tolerance = 2e-2
    #expect(try finiteDifferenceError(at: p.input, analytic: g.dInput) { try p.loss(input: $0) } < tolerance)
    #expect(try finiteDifferenceError(at: p.offset, analytic: g.dOffset, samples: 80) { try p.loss(offset: $0) } < tolerance)
    #expect(try finiteDifferenceError(at: p.mask!, analytic: g.dMask!) { try p.loss(mask: $0) } < tolerance)
    #expect(try finiteDifferenceError(at: p.weight, analytic: g.dWeight) { try p.loss(weight: $0) } < tolerance)
}

@Test func conv2dGradientsMatchFiniteDifferences() throws {
    var rng = SeededGenerator(seed: 11)
    let options = ConvOptions(strideH: 2, strideW: 1, padH: 1, padW: 2, dilationH: 1, dilationW: 2, groups: 2)
    let input = Tensor.normal([2, 4, 7, 6], using: &rng)
    let weight = Tensor.normal([6, 2, 3, 3], std: 0.5, using: &rng)
    let bias = Tensor.normal([6], using: &rng)
    let geo = try ConvGeometry(input: input.shape, weight: weight.shape, options: options)
    let dOutput = Tensor.normal(geo.outputShape, using: &rng)
    func loss(_ x: Tensor, _ w: Tensor, _ b: Tensor) throws -> Double {
        weightedSum(try conv2dForward(input: x, weight: w, bias: b, options: options), dOutput)
    }
    var dInput: Tensor? = Tensor(zeros: input.shape)
    let dWeight = GradientBlock(zeros: weight.shape), dBias = GradientBlock(zeros: bias.shape)
    try conv2dBackward(dInput: &dInput, dWeight: dWeight.slot, dBias: dBias.slot, dOutput: dOutput, input: input, weight: weight, options: options)
    #expect(try finiteDifferenceError(at: input, analytic: dInput!) { try loss($0, weight, bias) } < 1e-2)
    #expect(try finiteDifferenceError(at: weight, analytic: dWeight.tensor) { try loss(input, $0, bias) } < 1e-2)
    #expect(try finiteDifferenceError(at: bias, analytic: dBias.tensor) { try loss(input, weight, $0) } < 1e-2)
}

@Test func zeroOffsetsAndUnitMaskEqualConv2d() throws {
    var rng = SeededGenerator(seed: 5)
    let options = ConvOptions(stride: 2, padding: 2, dilation: 2)
    let input = Tensor.normal([2, 6, 9, 8], using: &rng)
    let weight = Tensor.normal([5, 6, 3, 3], using: &rng)
    let bias = Tensor.normal([5], using: &rng)
    let geo = try ConvGeometry(input: input.shape, weight: weight.shape, options: options)
    let offset = Tensor(zeros: [2, 18, geo.outHeight, geo.outWidth])
    let ones = Tensor(repeating: 1, shape: [2, 9, geo.outHeight, geo.outWidth])
    let conv = try conv2dForward(input: input, weight: weight, bias: bias, options: options)
    let v2 = try deformConv2dForward(input: input, offset: offset, mask: ones, weight: weight, bias: bias, options: options)
    let v1 = try deformConv2dForward(input: input, offset: offset, mask: nil, weight: weight, bias: bias, options: options)
    // The same sums in another order: the deformable columns are tap-major, conv2d's channel-major.
    #expect(relativeL2(v2.data.map(Double.init), conv.data.map(Double.init)) < 1e-6)
    #expect(v1.data == v2.data)

    // The same holds for the gradients of input and weight.
    let dOutput = Tensor.normal(geo.outputShape, using: &rng)
    var cx: Tensor? = Tensor(zeros: input.shape)
    let cw = GradientBlock(zeros: weight.shape)
    try conv2dBackward(dInput: &cx, dWeight: cw.slot, dBias: nil, dOutput: dOutput, input: input, weight: weight, options: options)
    var dx: Tensor? = Tensor(zeros: input.shape), none: Tensor? = nil, noMask: Tensor? = nil
    let dw = GradientBlock(zeros: weight.shape)
    try deformConv2dBackward(dInput: &dx, dOffset: &none, dMask: &noMask, dWeight: dw.slot, dBias: nil, dOutput: dOutput,
                             input: input, offset: offset, mask: ones, weight: weight, options: options)
    #expect(relativeL2(dx!.data.map(Double.init), cx!.data.map(Double.init)) < 1e-6)
    #expect(relativeL2(dw.tensor.data.map(Double.init), cw.tensor.data.map(Double.init)) < 1e-6)
}

@Test func halfMaskHalvesTheOutput() throws {
    let p = try DeformProblem(modulated: true)
    let ones = Tensor(repeating: 1, shape: p.mask!.shape), halves = Tensor(repeating: 0.5, shape: p.mask!.shape)
    let full = try deformConv2dForward(input: p.input, offset: p.offset, mask: ones, weight: p.weight, bias: nil, options: p.options)
    let half = try deformConv2dForward(input: p.input, offset: p.offset, mask: halves, weight: p.weight, bias: nil, options: p.options)
    let v1 = try deformConv2dForward(input: p.input, offset: p.offset, mask: nil, weight: p.weight, bias: nil, options: p.options)
    #expect(half.data == full.data.map { $0 * 0.5 })
    #expect(v1.data == full.data)
}

@Test func chunkedBatchEqualsWholeBatch() throws {
    let p = try DeformProblem(modulated: true)
    let small = Workspace(columnBudget: 1)  // one image per chunk
    let whole = try deformConv2dForward(input: p.input, offset: p.offset, mask: p.mask, weight: p.weight, bias: p.bias, options: p.options)
    let chunked = try deformConv2dForward(input: p.input, offset: p.offset, mask: p.mask, weight: p.weight, bias: p.bias,
                                          options: p.options, workspace: small)
    #expect(relativeL2(chunked.data.map(Double.init), whole.data.map(Double.init)) < 1e-6)
}

struct ThreadDeterminism {
    /// Forward and every gradient of a mid-sized deformable conv, on `threads` threads.
    func run(threads: Int) throws -> [[Float]] {
        try Threads.with(threads) { try compute() }
    }

    func compute() throws -> [[Float]] {
        var rng = SeededGenerator(seed: 9)
        let input = Tensor.normal([2, 32, 20, 24], using: &rng)
        let weight = Tensor.normal([32, 16, 3, 3], std: 0.1, using: &rng)
        let options = ConvOptions(stride: 1, padding: 1, groups: 2)
        let offset = Tensor.normal([2, 36, 20, 24], std: 2, using: &rng)
        let mask = Tensor.uniform([2, 18, 20, 24], using: &rng)
        let dOutput = Tensor.normal([2, 32, 20, 24], using: &rng)
        let out = try deformConv2dForward(input: input, offset: offset, mask: mask, weight: weight, bias: nil, options: options)
        var dx: Tensor? = Tensor(zeros: input.shape), dOff: Tensor? = Tensor(zeros: offset.shape)
        var dM: Tensor? = Tensor(zeros: mask.shape)
        let dW = GradientBlock(zeros: weight.shape)
        try deformConv2dBackward(dInput: &dx, dOffset: &dOff, dMask: &dM, dWeight: dW.slot, dBias: nil, dOutput: dOutput,
                                 input: input, offset: offset, mask: mask, weight: weight, options: options)
        var cx: Tensor? = Tensor(zeros: input.shape)
        let cw = GradientBlock(zeros: weight.shape)
        try conv2dBackward(dInput: &cx, dWeight: cw.slot, dBias: nil, dOutput: dOutput, input: input, weight: weight, options: options)
        return [out.data, dx!.data, dOff!.data, dM!.data, dW.tensor.data, cx!.data, cw.tensor.data]
    }

    @Test func sameBitsOnOneAndTwoThreads() throws {
        let one = try run(threads: 1), two = try run(threads: 2), again = try run(threads: 2)
        for i in 0..<one.count {
            #expect(one[i] == two[i], "tensor \(i) differs between 1 and 2 threads")
            #expect(two[i] == again[i], "tensor \(i) differs between two runs")
        }
    }
}

@Test func badShapesThrowDescriptiveErrors() throws {
    let x = Tensor(zeros: [1, 4, 6, 6]), w = Tensor(zeros: [4, 4, 3, 3]), opts = ConvOptions(stride: 1, padding: 1)
    #expect(throws: ShapeError.self) { _ = try deformConv2dForward(input: x, offset: Tensor(zeros: [1, 17, 6, 6]), mask: nil, weight: w, bias: nil, options: opts) }
    #expect(throws: ShapeError.self) { _ = try deformConv2dForward(input: x, offset: Tensor(zeros: [1, 18, 6, 6]), mask: Tensor(zeros: [1, 18, 6, 6]), weight: w, bias: nil, options: opts) }
    #expect(throws: ShapeError.self) { _ = try deformConv2dForward(input: x, offset: Tensor(zeros: [1, 18, 5, 6]), mask: nil, weight: w, bias: nil, options: opts) }
    // 3 offset groups do not divide 4 channels.
    #expect(throws: ShapeError.self) { _ = try deformConv2dForward(input: x, offset: Tensor(zeros: [1, 54, 6, 6]), mask: nil, weight: w, bias: nil, options: opts) }
    #expect(throws: ShapeError.self) { _ = try conv2dForward(input: x, weight: Tensor(zeros: [4, 2, 3, 3]), bias: nil, options: ConvOptions(padding: 1, groups: 3)) }
    #expect(throws: ShapeError.self) { _ = try conv2dForward(input: x, weight: w, bias: Tensor(zeros: [3]), options: opts) }
    #expect(throws: ShapeError.self) { _ = try conv2dForward(input: x, weight: Tensor(zeros: [4, 4, 9, 9]), bias: nil, options: opts) }
    do {
        _ = try deformConv2dForward(input: x, offset: Tensor(zeros: [1, 17, 6, 6]), mask: nil, weight: w, bias: nil, options: opts)
    } catch let error as ShapeError {
        #expect(error.message.contains("offset has 17 channels"))
    }
}

/// At zero offsets every sample sits on a pixel, where bilinear sampling has a kink. The offset
/// gradient there is the derivative from above (the floor convention of torchvision's and the
/// MSRA op's kernels, which ours follows inside the image): d/dy = v(y+1, x) - v(y, x), d/dx =
/// v(y, x+1) - v(y, x), with v = 0 outside the image. That includes the taps on the padding's
/// first row or column (y or x = -1): their value is 0 but their derivative from above is the
/// first pixel. Those taps once gave 0, which put the offset branches' step-1 gradients 28-51 %
/// off PyTorch's in the synthetic classifier, whose deformable convs sample 14x14, 7x7 and 4x4
/// maps, so many taps lie on the border (the PyTorch twin, scripts/pytorch_twin.py, issue 30).
@Test(arguments: [(1, false), (1, true), (2, true)])
func zeroOffsetGradientIsTheForwardDifferenceAtEveryTap(dilation: Int, modulated: Bool) throws {
    var rng = SeededGenerator(seed: 13)
    let N = 2, C = 3, H = 4, W = 5, Cout = 2, K = 9
    let options = ConvOptions(stride: 1, padding: dilation, dilation: dilation)
    let input = Tensor.normal([N, C, H, W], using: &rng)
    let weight = Tensor.normal([Cout, C, 3, 3], using: &rng)
    let offset = Tensor(zeros: [N, 2 * K, H, W])
    let mask: Tensor? = modulated ? Tensor.uniform([N, K, H, W], 0.1, 1, using: &rng) : nil
    let dOutput = Tensor.normal([N, Cout, H, W], using: &rng)
    var dInput: Tensor? = nil, dOffset: Tensor? = Tensor(zeros: offset.shape)
    var dMask: Tensor? = mask.map { Tensor(zeros: $0.shape) }
    try deformConv2dBackward(dInput: &dInput, dOffset: &dOffset, dMask: &dMask, dWeight: nil, dBias: nil, dOutput: dOutput,
                             input: input, offset: offset, mask: mask, weight: weight, options: options)
    func v(_ n: Int, _ c: Int, _ y: Int, _ x: Int) -> Double {
        (0..<H).contains(y) && (0..<W).contains(x) ? Double(input.data[((n * C + c) * H + y) * W + x]) : 0
    }
    var worst = 0.0, scale = 0.0
    for n in 0..<N {
        for k in 0..<K {
            for oy in 0..<H {
                for ox in 0..<W {
                    let y = oy - dilation + (k / 3) * dilation, x = ox - dilation + (k % 3) * dilation
                    let p = oy * W + ox
                    let m = mask.map { Double($0.data[(n * K + k) * H * W + p]) } ?? 1
                    var gy = 0.0, gx = 0.0
                    for o in 0..<Cout {
                        let d = Double(dOutput.data[(n * Cout + o) * H * W + p])
                        for c in 0..<C {
                            let w = Double(weight.data[((o * C + c) * 3 + k / 3) * 3 + k % 3])
                            gy += m * d * w * (v(n, c, y + 1, x) - v(n, c, y, x))
                            gx += m * d * w * (v(n, c, y, x + 1) - v(n, c, y, x))
                        }
                    }
                    let row = ((n * 2 * K) + 2 * k) * H * W + p
                    worst = max(worst, abs(Double(dOffset!.data[row]) - gy), abs(Double(dOffset!.data[row + H * W]) - gx))
                    scale = max(scale, abs(gy), abs(gx))
                }
            }
        }
    }
    #expect(worst <= 1e-5 * scale, "largest error \(worst) against a largest gradient \(scale)")
}

/// The convolution by taps (the offset branches in inference) equals im2col + sgemm up to the
/// order of the sums: padding and dilation as the backbone's layers use them, uneven ones, a
/// bias, two images; it refuses what it does not do.
@Test(arguments: [ConvOptions(stride: 1, padding: 1, dilation: 1), ConvOptions(stride: 1, padding: 2, dilation: 2),
                  ConvOptions(strideH: 1, strideW: 1, padH: 0, padW: 2, dilationH: 1, dilationW: 2, groups: 1)])
func convolutionByTapsEqualsIm2col(options: ConvOptions) throws {
    var rng = SeededGenerator(seed: 21)
    let x = Tensor.normal([2, 7, 11, 13], using: &rng)
    let w = Tensor.normal([27, 7, 3, 3], using: &rng), b = Tensor.normal([27], using: &rng)
    #expect(convGoesByTaps(weight: w.shape, options: options))
    let reference = try conv2dForward(input: x, weight: w, bias: b, options: options)
    let byTaps = try conv2dForwardByTaps(input: x, weight: w, bias: b, options: options, workspace: Workspace())
    #expect(byTaps.shape == reference.shape)
    let error = relativeL2(byTaps.data.map(Double.init), reference.data.map(Double.init))
    #expect(error < 1e-6, "relative L2 \(error)")
    let noBias = try conv2dForwardByTaps(input: x, weight: w, bias: nil, options: options)
    #expect(relativeL2(noBias.data.map(Double.init), try conv2dForward(input: x, weight: w, bias: nil, options: options).data.map(Double.init)) < 1e-6)
}

@Test func convolutionByTapsRefusesStridesGroupsAndManyOutputs() throws {
    let x = Tensor(zeros: [1, 4, 6, 6])
    #expect(!convGoesByTaps(weight: [27, 4, 3, 3], options: ConvOptions(stride: 2, padding: 1)))
    #expect(!convGoesByTaps(weight: [27, 2, 3, 3], options: ConvOptions(stride: 1, padding: 1, groups: 2)))
    #expect(!convGoesByTaps(weight: [64, 4, 3, 3], options: ConvOptions(stride: 1, padding: 1)))
    #expect(!convGoesByTaps(weight: [27, 4, 1, 1], options: ConvOptions()))
    #expect(throws: ShapeError.self) {
        try conv2dForwardByTaps(input: x, weight: Tensor(zeros: [27, 4, 3, 3]), bias: nil, options: ConvOptions(stride: 2, padding: 1))
    }
}
