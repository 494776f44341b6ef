// conv_transpose2d against PyTorch fixtures, finite differences, its relation to conv2d, thread
// determinism and errors.
import DCNVerify
import DCNOps
import DCNTensor
import TestSupport
import Testing

let convTransposeFixtures = [
    "conv_transpose2d_2x2_s2", "conv_transpose2d_2x3_s2x3_p1_op1x2_g2", "conv_transpose2d_3x3_s2_p1_op1",
    "conv_transpose2d_groups2_s2x1", "conv_transpose2d_dil2_pad_nobias", "conv_transpose2d_1x1",
]

@Test(arguments: convTransposeFixtures)
func convTransposeMatchesTorchFixture(_ name: String) throws {
    let result = try verifyFixture(path: fixturePath("ops/\(name).safetensors"))
    #expect(result.op == "conv_transpose2d")
    for c in result.comparisons { #expect(c.relativeError <= 1e-5, "\(name) \(c.name): \(c.relativeError)") }
    #expect(result.comparisons.count >= 3, "forward and gradients compared")
}

/// A random transposed convolution with its output gradient.
struct ConvTransposeProblem: CustomTestStringConvertible {
    let label: String
    let options: ConvTransposeOptions
    let input, weight, bias, dOutput: Tensor

    /// - Parameters: input `[N, Cin, H, W]`; the weight is `[Cin, Cout/groups, kh, kw]`.
    init(_ label: String, input shape: [Int], cout: Int, kernel: (Int, Int), options: ConvTransposeOptions, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        self.label = label
        self.options = options
        input = Tensor.normal(shape, using: &rng)
        weight = Tensor.normal([shape[1], cout / options.groups, kernel.0, kernel.1], std: 0.5, using: &rng)
        bias = Tensor.normal([cout], using: &rng)
        let geo = try ConvTransposeGeometry(input: input.shape, weight: weight.shape, options: options)
        dOutput = Tensor.normal(geo.outputShape, using: &rng)
    }

    var testDescription: String { label }

    func loss(input: Tensor? = nil, weight: Tensor? = nil, bias: Tensor? = nil) throws -> Double {
        weightedSum(try convTranspose2dForward(input: input ?? self.input, weight: weight ?? self.weight,
                                               bias: bias ?? self.bias, options: options), dOutput)
    }

    func gradients(workspace: Workspace? = nil) throws -> (dInput: Tensor, dWeight: Tensor, dBias: Tensor) {
        var dInput: Tensor? = Tensor(zeros: input.shape)
        let dWeight = GradientBlock(zeros: weight.shape), dBias = GradientBlock(zeros: bias.shape)
        try convTranspose2dBackward(dInput: &dInput, dWeight: dWeight.slot, dBias: dBias.slot, dOutput: dOutput,
                                    input: input, weight: weight, options: options, workspace: workspace)
        return (dInput!, dWeight.tensor, dBias.tensor)
    }
}

/// One problem per code path: col2im with groups, dilation and output padding (the output padding
/// at least the stride, which only the dilation allows); disjoint taps with padding, output
/// padding and groups; the mask head's 2x2 stride 2; 1x1 stride 1 (the columns are the output);
/// 1x1 with output padding, which only looks pointwise.
let convTransposeProblems: [ConvTransposeProblem] = [
    try! ConvTransposeProblem("3x2 kernel, stride (2,1), pad (1,0), output pad (1,1), dilation (1,2), groups 2",
                              input: [4, 4, 4, 5], cout: 6, kernel: (3, 2),
                              options: ConvTransposeOptions(strideH: 2, strideW: 1, padH: 1, padW: 0, outputPadH: 1, outputPadW: 1,
                                                            dilationH: 1, dilationW: 2, groups: 2), seed: 21),
    try! ConvTransposeProblem("2x3 kernel = stride, pad (0,1), output pad (1,2), groups 2",
                              input: [2, 4, 3, 4], cout: 2, kernel: (2, 3),
                              options: ConvTransposeOptions(strideH: 2, strideW: 3, padH: 0, padW: 1, outputPadH: 1, outputPadW: 2,
                                                            dilationH: 1, dilationW: 1, groups: 2), seed: 22),
    try! ConvTransposeProblem("2x2 stride 2", input: [5, 5, 4, 3], cout: 3, kernel: (2, 2),
                              options: ConvTransposeOptions(stride: 2), seed: 23),
    try! ConvTransposeProblem("1x1 stride 1", input: [2, 3, 4, 5], cout: 4, kernel: (1, 1),
                              options: ConvTransposeOptions(), seed: 24),
    try! ConvTransposeProblem("1x1 kernel, dilation 2, output pad 1 (one more row and column than the input)",
                              input: [2, 3, 4, 5], cout: 2, kernel: (1, 1),
                              options: ConvTransposeOptions(outputPadding: 1, dilation: 2), seed: 25),
]

@Test(arguments: convTransposeProblems)
func convTransposeGradientsMatchFiniteDifferences(_ p: ConvTransposeProblem) throws {
    let g = try p.gradients()
    #expect(try finiteDifferenceError(at: p.input, analytic: g.dInput) { try p.loss(input: $0) } < 1e-2)
    #expect(try finiteDifferenceError(at: p.weight, analytic: g.dWeight) { try p.loss(weight: $0) } < 1e-2)
    #expect(try finiteDifferenceError(at: p.bias, analytic: g.dBias) { try p.loss(bias: $0) } < 1e-2)
}

/// Output size (H-1)*stride - 2*pad + dilation*(k-1) + output pad + 1, and the bias alone in the
/// output rows and columns that no input pixel reaches.
@Test func convTransposeOutputSizeAndUnreachedPixels() throws {
    let p = convTransposeProblems[1]  // 3x4 input, 2x3 kernel, stride (2,3), pad (0,1), output pad (1,2)
    let out = try convTranspose2dForward(input: p.input, weight: p.weight, bias: p.bias, options: p.options)
    let Ho = (3 - 1) * 2 - 0 + 1 * (2 - 1) + 1 + 1, Wo = (4 - 1) * 3 - 2 + 1 * (3 - 1) + 2 + 1
    #expect(out.shape == [2, 2, Ho, Wo])
    // The last input row's taps end at output row 2*2 + 1 = 5, so row 6 is output padding; the
    // last column reached is 3*3 + 2 - 1 = 10, so column 11 is.
    #expect(Ho == 7 && Wo == 12)
    for n in 0..<2 {
        for c in 0..<2 {
            let plane = (n * 2 + c) * Ho * Wo
            for x in 0..<Wo { #expect(out.data[plane + 6 * Wo + x] == p.bias.data[c]) }
            for y in 0..<Ho { #expect(out.data[plane + y * Wo + 11] == p.bias.data[c]) }
            #expect(out.data[plane + 5 * Wo + 10] != p.bias.data[c])
        }
    }
}

/// `t` `[N, C, H, W]` with its rows and columns cut or zero-extended to `height` x `width`.
private func resized(_ t: Tensor, height: Int, width: Int) -> Tensor {
    let N = t.shape[0], C = t.shape[1], H = t.shape[2], W = t.shape[3]
    var out = Tensor(zeros: [N, C, height, width])
    for plane in 0..<(N * C) {
        for y in 0..<min(H, height) {
            for x in 0..<min(W, width) { out.data[(plane * height + y) * width + x] = t.data[(plane * H + y) * W + x] }
        }
    }
    return out
}

/// The transposed convolution is the adjoint of conv2d with the same weight: its forward is
/// conv2d's input gradient, its input gradient conv2d's forward, and its weight gradient
/// conv2d's weight gradient with the roles of input and output gradient swapped. When the output
/// padding is at least the stride, conv2d maps the transposed output to a larger size than the
/// transposed input: the transposed input is zero-extended to it, conv2d's output cut back.
@Test(arguments: convTransposeProblems)
func convTransposeIsConv2dBackwardData(_ p: ConvTransposeProblem) throws {
    let o = p.options
    let convOptions = ConvOptions(strideH: o.strideH, strideW: o.strideW, padH: o.padH, padW: o.padW,
                                  dilationH: o.dilationH, dilationW: o.dilationW, groups: o.groups)
    let y = try convTranspose2dForward(input: p.input, weight: p.weight, bias: nil, options: o)
    let conv = try ConvGeometry(input: y.shape, weight: p.weight.shape, options: convOptions)
    let H = p.input.shape[2], W = p.input.shape[3]
    let extended = resized(p.input, height: conv.outHeight, width: conv.outWidth)
    var viaConv: Tensor? = Tensor(zeros: y.shape)
    try conv2dBackward(dInput: &viaConv, dWeight: nil, dBias: nil, dOutput: extended, input: y, weight: p.weight, options: convOptions)
    #expect(relativeL2(y.data.map(Double.init), viaConv!.data.map(Double.init)) < 1e-6)

    let g = try p.gradients()
    let convForward = try conv2dForward(input: p.dOutput, weight: p.weight, bias: nil, options: convOptions)
    let cut = resized(convForward, height: H, width: W)
    #expect(relativeL2(g.dInput.data.map(Double.init), cut.data.map(Double.init)) < 1e-6)
    let convWeight = GradientBlock(zeros: p.weight.shape)
    var none: Tensor? = nil
    try conv2dBackward(dInput: &none, dWeight: convWeight.slot, dBias: nil, dOutput: extended, input: p.dOutput,
                       weight: p.weight, options: convOptions)
    #expect(relativeL2(g.dWeight.data.map(Double.init), convWeight.tensor.data.map(Double.init)) < 1e-6)
}

@Test func convTransposeBackwardAddsAndSkipsMissingGradients() throws {
    for p in convTransposeProblems {
        let once = try p.gradients()
        var dInput: Tensor? = once.dInput
        let dWeight = GradientBlock(zeros: p.weight.shape), dBias = GradientBlock(zeros: p.bias.shape)
        dWeight.slot.assign(once.dWeight)
        dBias.slot.assign(once.dBias)
        try convTranspose2dBackward(dInput: &dInput, dWeight: dWeight.slot, dBias: dBias.slot, dOutput: p.dOutput,
                                    input: p.input, weight: p.weight, options: p.options)
        // Added, not overwritten (the second pass adds image by image onto the first's sum: not
        // the same rounding as doubling it).
        func twice(_ t: Tensor) -> [Double] { t.data.map { 2 * Double($0) } }
        #expect(relativeL2(dInput!.data.map(Double.init), twice(once.dInput)) < 1e-6, "\(p.label): dInput added")
        #expect(relativeL2(dWeight.tensor.data.map(Double.init), twice(once.dWeight)) < 1e-6, "\(p.label): dWeight added")
        #expect(relativeL2(dBias.tensor.data.map(Double.init), twice(once.dBias)) < 1e-6, "\(p.label): dBias added")

        // Only the weight gradient: the same values, the input gradient stays nil.
        var noInput: Tensor? = nil
        let onlyWeight = GradientBlock(zeros: p.weight.shape)
        try convTranspose2dBackward(dInput: &noInput, dWeight: onlyWeight.slot, dBias: nil, dOutput: p.dOutput,
                                    input: p.input, weight: p.weight, options: p.options)
        #expect(noInput == nil)
        #expect(onlyWeight.tensor.data == once.dWeight.data, "\(p.label): dWeight alone")
        // Only the input gradient.
        var onlyInput: Tensor? = Tensor(zeros: p.input.shape)
        try convTranspose2dBackward(dInput: &onlyInput, dWeight: nil, dBias: nil, dOutput: p.dOutput,
                                    input: p.input, weight: p.weight, options: p.options)
        #expect(onlyInput!.data == once.dInput.data, "\(p.label): dInput alone")
    }
}

/// Chunks of one image (x read in place) and of two (images copied side by side), against the
/// whole batch in one chunk.
@Test(arguments: convTransposeProblems)
func convTransposeChunkedBatchEqualsWholeBatch(_ p: ConvTransposeProblem) throws {
    let whole = try convTranspose2dForward(input: p.input, weight: p.weight, bias: p.bias, options: p.options)
    let g = try p.gradients()
    // Floats of columns per image: Cout*kh*kw rows of H*W.
    let perImage = p.weight.shape[1] * p.options.groups * p.weight.shape[2] * p.weight.shape[3] * p.input.shape[2] * p.input.shape[3]
    for images in [1, 2] {
        let small = Workspace(columnBudget: images * perImage)
        let chunked = try convTranspose2dForward(input: p.input, weight: p.weight, bias: p.bias, options: p.options, workspace: small)
        #expect(relativeL2(chunked.data.map(Double.init), whole.data.map(Double.init)) < 1e-6, "\(images) per chunk")
        let gc = try p.gradients(workspace: small)
        #expect(relativeL2(gc.dInput.data.map(Double.init), g.dInput.data.map(Double.init)) < 1e-6, "\(images) per chunk")
        #expect(relativeL2(gc.dWeight.data.map(Double.init), g.dWeight.data.map(Double.init)) < 1e-6, "\(images) per chunk")
    }
}

struct ConvTransposeThreadDeterminism {
    /// Forward and every gradient of a general (3x3, stride 2, output padding) and a disjoint-taps
    /// (2x2, stride 2) transposed convolution, on `threads` threads.
    func run(threads: Int) throws -> [[Float]] {
        try Threads.with(threads) {
            var rng = SeededGenerator(seed: 31)
            var results: [[Float]] = []
            let cases: [(kernel: Int, options: ConvTransposeOptions)] = [
                (3, ConvTransposeOptions(stride: 2, padding: 1, outputPadding: 1, groups: 2)),
                (2, ConvTransposeOptions(stride: 2)),
            ]
            for c in cases {
                let input = Tensor.normal([3, 24, 10, 12], using: &rng)
                let weight = Tensor.normal([24, 16 / c.options.groups, c.kernel, c.kernel], std: 0.1, using: &rng)
                let bias = Tensor.normal([16], using: &rng)
                let out = try convTranspose2dForward(input: input, weight: weight, bias: bias, options: c.options)
                let dOutput = Tensor.normal(out.shape, using: &rng)
                var dx: Tensor? = Tensor(zeros: input.shape)
                let dW = GradientBlock(zeros: weight.shape), dB = GradientBlock(zeros: bias.shape)
                try convTranspose2dBackward(dInput: &dx, dWeight: dW.slot, dBias: dB.slot, dOutput: dOutput,
                                            input: input, weight: weight, options: c.options)
                results += [out.data, dx!.data, dW.tensor.data, dB.tensor.data]
            }
            return results
        }
    }

    @Test func sameBitsOnOneAndTwoThreads() throws {
        let one = try run(threads: 1), two = try run(threads: 2), again = try run(threads: 2)
        for i in 0..<one.count {
            #expect(one[i] == two[i], "tensor \(i) differs between 1 and 2 threads")
            #expect(two[i] == again[i], "tensor \(i) differs between two runs")
        }
    }
}

/// Runs `body` and returns the message of the `ShapeError` it throws ("" if it throws none).
private func shapeErrorMessage(_ body: () throws -> Void) -> String {
    do { try body() } catch let error as ShapeError { return error.message } catch { return "other error: \(error)" }
    return ""
}

@Test func convTransposeBadShapesAndOptionsThrowDescriptiveErrors() throws {
    let x = Tensor(zeros: [2, 4, 5, 5]), w = Tensor(zeros: [4, 3, 3, 3])
    func forward(_ options: ConvTransposeOptions, input: Tensor = x, weight: Tensor = w, bias: Tensor? = nil) -> String {
        shapeErrorMessage { _ = try convTranspose2dForward(input: input, weight: weight, bias: bias, options: options) }
    }
    let cases: [(String, String)] = [
        (forward(ConvTransposeOptions(stride: 2, outputPadding: 2)), "output padding (2, 2) must be smaller than the stride (2, 2) or the dilation (1, 1)"),
        (forward(ConvTransposeOptions(strideH: 1, strideW: 2, padH: 0, padW: 0, outputPadH: 1, outputPadW: 1, dilationH: 1, dilationW: 1)),
         "output padding (1, 1) must be smaller"),
        (forward(ConvTransposeOptions(outputPadding: -1)), "output padding must be >= 0"),
        (forward(ConvTransposeOptions(stride: 0)), "stride must be >= 1"),
        (forward(ConvTransposeOptions(padding: -1)), "padding must be >= 0"),
        (forward(ConvTransposeOptions(dilation: 0)), "dilation must be >= 1"),
        (forward(ConvTransposeOptions(groups: 0)), "groups must be >= 1"),
        (forward(ConvTransposeOptions(groups: 3), weight: Tensor(zeros: [4, 1, 3, 3])), "groups 3 does not divide the 4 input channels"),
        (forward(ConvTransposeOptions(), weight: Tensor(zeros: [6, 3, 3, 3])), "weight [6, 3, 3, 3] is for 6 input channels (its first dimension), input has 4"),
        (forward(ConvTransposeOptions(), input: Tensor(zeros: [4, 5, 5])), "input must be [N, Cin, H, W]"),
        (forward(ConvTransposeOptions(), weight: Tensor(zeros: [4, 3, 3])), "weight must be [Cin, Cout/groups, kh, kw]"),
        (forward(ConvTransposeOptions(), bias: Tensor(zeros: [4])), "bias must be [3], got [4]"),
        (forward(ConvTransposeOptions(groups: 2), bias: Tensor(zeros: [6])), ""),  // 2 groups: 2*3 = 6 outputs, fine
        (forward(ConvTransposeOptions(padding: 1), input: Tensor(zeros: [2, 4, 1, 1]), weight: Tensor(zeros: [4, 3, 1, 1])), "gives a -1x-1 output"),
        (forward(ConvTransposeOptions(), input: Tensor(zeros: [2, 4, 0, 5])), "at least one channel, row and column"),
    ]
    for (message, expected) in cases {
        if expected.isEmpty { #expect(message.isEmpty, "unexpected error: \(message)") }
        else { #expect(message.contains(expected), "'\(message)' should say '\(expected)'") }
    }

    // Backward: every gradient's shape is checked.
    let opts = ConvTransposeOptions(stride: 2, padding: 1, outputPadding: 1)
    let y = try convTranspose2dForward(input: x, weight: w, bias: nil, options: opts)
    #expect(y.shape == [2, 3, 10, 10])
    var dx: Tensor? = Tensor(zeros: x.shape), none: Tensor? = nil
    let message = shapeErrorMessage {
        try convTranspose2dBackward(dInput: &dx, dWeight: nil, dBias: nil, dOutput: Tensor(zeros: [2, 3, 9, 9]),
                                    input: x, weight: w, options: opts)
    }
    #expect(message.contains("dOutput must be [2, 3, 10, 10], got [2, 3, 9, 9]"), "\(message)")
    var wrongInput: Tensor? = Tensor(zeros: [2, 4, 5, 4])
    #expect(shapeErrorMessage {
        try convTranspose2dBackward(dInput: &wrongInput, dWeight: nil, dBias: nil, dOutput: y, input: x, weight: w, options: opts)
    }.contains("dInput must be [2, 4, 5, 5]"))
    #expect(shapeErrorMessage {
        try convTranspose2dBackward(dInput: &none, dWeight: GradientBlock(zeros: [3, 4, 3, 3]).slot, dBias: nil, dOutput: y,
                                    input: x, weight: w, options: opts)
    }.contains("dWeight must be [4, 3, 3, 3]"))
    #expect(shapeErrorMessage {
        try convTranspose2dBackward(dInput: &none, dWeight: nil, dBias: GradientBlock(zeros: [4]).slot, dOutput: y,
                                    input: x, weight: w, options: opts)
    }.contains("dBias must be [3]"))
}
