// Fixture checks of conv2d, conv_transpose2d and deform_conv2d: forward output and every gradient.
import DCNOps
import DCNTensor

extension Fixture {
    /// stride/pad/dilation/groups from the metadata (torch defaults when absent).
    func convOptions() throws -> ConvOptions {
        ConvOptions(strideH: try int("stride_h", default: 1), strideW: try int("stride_w", default: 1),
                    padH: try int("pad_h", default: 0), padW: try int("pad_w", default: 0),
                    dilationH: try int("dil_h", default: 1), dilationW: try int("dil_w", default: 1),
                    groups: try int("groups", default: 1))
    }

    /// stride/pad/out_pad/dilation/groups of a transposed convolution (torch defaults when absent).
    func convTransposeOptions() throws -> ConvTransposeOptions {
        ConvTransposeOptions(strideH: try int("stride_h", default: 1), strideW: try int("stride_w", default: 1),
                             padH: try int("pad_h", default: 0), padW: try int("pad_w", default: 0),
                             outputPadH: try int("out_pad_h", default: 0), outputPadW: try int("out_pad_w", default: 0),
                             dilationH: try int("dil_h", default: 1), dilationW: try int("dil_w", default: 1),
                             groups: try int("groups", default: 1))
    }
}

func verifyConv2d(_ f: Fixture) throws -> [Comparison] {
    let input = try f.tensor("input"), weight = try f.tensor("weight"), bias = try f.optionalTensor("bias")
    let options = try f.convOptions()
    let output = try conv2dForward(input: input, weight: weight, bias: bias, options: options)
    var results = [try f.compare("expected_output", output)]
    guard f.has("grad_output") else { return results }
    var dInput: Tensor? = Tensor(zeros: input.shape)
    let dWeight = GradientBlock(zeros: weight.shape)
    let dBias = bias.map { GradientBlock(zeros: $0.shape) }
    try conv2dBackward(dInput: &dInput, dWeight: dWeight.slot, dBias: dBias?.slot, dOutput: try f.tensor("grad_output"),
                       input: input, weight: weight, options: options)
    results.append(try f.compare("grad_input", dInput!))
    results.append(try f.compare("grad_weight", dWeight.tensor))
    if let dBias, f.has("grad_bias") { results.append(try f.compare("grad_bias", dBias.tensor)) }
    return results
}

func verifyConvTranspose2d(_ f: Fixture) throws -> [Comparison] {
    let input = try f.tensor("input"), weight = try f.tensor("weight"), bias = try f.optionalTensor("bias")
    let options = try f.convTransposeOptions()
    let output = try convTranspose2dForward(input: input, weight: weight, bias: bias, options: options)
    var results = [try f.compare("expected_output", output)]
    guard f.has("grad_output") else { return results }
    var dInput: Tensor? = Tensor(zeros: input.shape)
    let dWeight = GradientBlock(zeros: weight.shape)
    let dBias = bias.map { GradientBlock(zeros: $0.shape) }
    try convTranspose2dBackward(dInput: &dInput, dWeight: dWeight.slot, dBias: dBias?.slot, dOutput: try f.tensor("grad_output"),
                                input: input, weight: weight, options: options)
    results.append(try f.compare("grad_input", dInput!))
    results.append(try f.compare("grad_weight", dWeight.tensor))
    if let dBias, f.has("grad_bias") { results.append(try f.compare("grad_bias", dBias.tensor)) }
    return results
}

func verifyDeformConv2d(_ f: Fixture) throws -> [Comparison] {
    let input = try f.tensor("input"), weight = try f.tensor("weight"), bias = try f.optionalTensor("bias")
    let offset = try f.tensor("offset"), mask = try f.optionalTensor("mask")
    let options = try f.convOptions()
    let output = try deformConv2dForward(input: input, offset: offset, mask: mask, weight: weight, bias: bias, options: options)
    var results = [try f.compare("expected_output", output)]
    guard f.has("grad_output") else { return results }
    var dInput: Tensor? = Tensor(zeros: input.shape)
    var dOffset: Tensor? = Tensor(zeros: offset.shape)
    var dMask: Tensor? = mask.map { Tensor(zeros: $0.shape) }
    let dWeight = GradientBlock(zeros: weight.shape)
    let dBias = bias.map { GradientBlock(zeros: $0.shape) }
    try deformConv2dBackward(dInput: &dInput, dOffset: &dOffset, dMask: &dMask, dWeight: dWeight.slot, dBias: dBias?.slot,
                             dOutput: try f.tensor("grad_output"), input: input, offset: offset, mask: mask,
                             weight: weight, options: options)
    results.append(try f.compare("grad_input", dInput!))
    results.append(try f.compare("grad_offset", dOffset!))
    if let dMask, f.has("grad_mask") { results.append(try f.compare("grad_mask", dMask)) }
    results.append(try f.compare("grad_weight", dWeight.tensor))
    if let dBias, f.has("grad_bias") { results.append(try f.compare("grad_bias", dBias.tensor)) }
    return results
}
