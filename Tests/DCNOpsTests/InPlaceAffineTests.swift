// The inference ops that apply a norm in place (ResidualBlock.forward with nothing kept) against
// the separate ops they replace: the same bits.
import DCNOps
import DCNTensor
import Testing

/// The in-place affine + ReLU and the fused shortcut affine + sum + ReLU give the bits of the
/// separate ops (channelAffine via frozen batch norm, reluForwardInPlace, addReLUInPlace).
@Test func inPlaceAffineOpsMatchTheSeparateOps() throws {
    var rng = SeededGenerator(seed: 9)
    let c = 5
    let weight = Tensor.uniform([c], 0.5, 1.5, using: &rng), bias = Tensor.uniform([c], -0.5, 0.5, using: &rng)
    let mean = Tensor.uniform([c], -0.3, 0.3, using: &rng), variance = Tensor.uniform([c], 0.5, 2, using: &rng)
    let x = Tensor.normal([2, c, 7, 9], using: &rng), shortcut = Tensor.normal([2, c, 7, 9], using: &rng)
    let (scale, shift) = try frozenBatchNormScaleShift(weight: weight, bias: bias, runningMean: mean, runningVar: variance)
    let normed = try frozenBatchNormForward(input: x, weight: weight, bias: bias, runningMean: mean, runningVar: variance)
    for relu in [false, true] {
        var expected = normed
        if relu { reluForwardInPlace(&expected) }
        var y = x
        try channelAffineInPlace(&y, scale: scale, shift: shift, relu: relu)
        #expect(y.data.map(\.bitPattern) == expected.data.map(\.bitPattern))
        #expect(expected.data.contains { $0 == 0 } == relu)
    }
    var expected = x
    try addReLUInPlace(&expected, try frozenBatchNormForward(input: shortcut, weight: weight, bias: bias, runningMean: mean, runningVar: variance))
    var y = x
    try addChannelAffineReLUInPlace(&y, shortcut: shortcut, scale: scale, shift: shift)
    #expect(y.data.map(\.bitPattern) == expected.data.map(\.bitPattern))
    #expect(throws: ShapeError.self) { try channelAffineInPlace(&y, scale: [1], shift: [0], relu: true) }
}

/// The max pool of inference (no argmax) gives the training pool's output bit for bit, NaNs and
/// padding included.
@Test func maxPoolValuesEqualTheMaxPoolWithArgmax() throws {
    var rng = SeededGenerator(seed: 10)
    var x = Tensor.normal([2, 3, 9, 12], using: &rng)
    x.data[5] = .nan
    x.data[40] = -.infinity
    for options in [MaxPoolOptions(), MaxPoolOptions(kernel: 2, stride: 1, padding: 0), MaxPoolOptions(kernel: 3, stride: 3, padding: 1)] {
        let reference = try maxPoolForward(input: x, options: options).output
        let values = try maxPoolForwardValues(input: x, options: options)
        #expect(values.shape == reference.shape)
        #expect(values.data.map(\.bitPattern) == reference.data.map(\.bitPattern))
    }
    // Rows for the stem's 16-wide path (3x3 / 2), with NaNs, infinities and ties of 0 and -0 (the
    // first in scan order must win) inside and at the ends of its blocks; widths around one and
    // two blocks of 16 outputs, odd and even (the last window inside the row or past it).
    for width in [1, 2, 3, 30, 31, 32, 33, 34, 64, 65, 83] {
        var wide = Tensor.normal([1, 2, 7, width], using: &rng)
        for i in 0..<wide.count { wide.data[i] = i % 2 == 1 ? -abs(wide.data[i]) : (i % 4 == 0 ? 0 : -0.0) }
        for i in [3, 40, 90, 171, 300] where i < wide.count { wide.data[i] = .nan }
        for i in [11, 200] where i < wide.count { wide.data[i] = .infinity }
        let reference = try maxPoolForward(input: wide, options: MaxPoolOptions()).output
        let values = try maxPoolForwardValues(input: wide, options: MaxPoolOptions())
        #expect(values.data.map(\.bitPattern) == reference.data.map(\.bitPattern), "the stem's 16-wide max pool differs at width \(width)")
    }
}

/// A convolution that applies the frozen norm and ReLU itself (`then:`, inside our product where
/// it runs) gives the bits of the convolution followed by `channelAffineInPlace`.
@Test(arguments: [
    (16, 3, 3, 1, true),    // a window our product takes (16 rows), with a bias
    (16, 8, 1, 1, false),   // pointwise, ours
    (12, 8, 3, 2, true),    // 12 rows: OpenBLAS, then the separate pass
])
func convolutionThenAffineEqualsTheSeparatePass(_ outChannels: Int, _ inChannels: Int, _ kernel: Int, _ stride: Int, _ withBias: Bool) throws {
    var rng = SeededGenerator(seed: 31)
    let x = Tensor.normal([2, inChannels, 13, 70], using: &rng)
    let w = Tensor.normal([outChannels, inChannels, kernel, kernel], using: &rng)
    let b: Tensor? = withBias ? Tensor.normal([outChannels], using: &rng) : nil
    let affine = ChannelAffine(scale: Tensor.normal([outChannels], using: &rng).data, shift: Tensor.normal([outChannels], using: &rng).data,
                               relu: true)
    let options = ConvOptions(stride: stride, padding: kernel / 2)
    var separate = try conv2dForward(input: x, weight: w, bias: b, options: options)
    try channelAffineInPlace(&separate, scale: affine.scale, shift: affine.shift, relu: true)
    let fused = try conv2dForward(input: x, weight: w, bias: b, options: options, then: affine)
    #expect(fused.data.map(\.bitPattern) == separate.data.map(\.bitPattern))
    #expect(throws: ShapeError.self) {
        try conv2dForward(input: x, weight: w, bias: b, options: options, then: ChannelAffine(scale: [1], shift: [0], relu: false))
    }
}

/// A training step's workspace gets the backward's im2col size from a forward convolution that
/// needs no im2col matrix, so the backward does not grow it; an inference workspace does not.
@Test func aTrainingWorkspaceIsSizedForTheBackward() throws {
    guard OwnProduct.runs(m: 16, k: 8 * 9, window: true) else { return }  // OpenBLAS forwards fill it anyway
    var rng = SeededGenerator(seed: 41)
    let x = Tensor.normal([1, 8, 20, 30], using: &rng), w = Tensor.normal([16, 8, 3, 3], using: &rng)
    let im2colBytes = 8 * 9 * 20 * 30 * MemoryLayout<Float>.stride
    let training = Workspace(sizedForBackward: true), inference = Workspace()
    _ = try conv2dForward(input: x, weight: w, bias: nil, options: ConvOptions(padding: 1), workspace: training)
    _ = try conv2dForward(input: x, weight: w, bias: nil, options: ConvOptions(padding: 1), workspace: inference)
    #expect(training.bytes >= im2colBytes)
    #expect(inference.bytes < im2colBytes)
}
