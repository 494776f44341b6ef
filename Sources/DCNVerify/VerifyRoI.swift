// Fixture verification of the RoI ops and NMS: run forward and backward on the fixture's inputs
// and compare outputs and gradients with the reference tensors.
import DCNOps
import DCNTensor

/// roi_align: output and grad_input.
public func verifyRoIAlign(_ fixture: Fixture) throws -> [Comparison] {
    let input = try fixture.tensor("input"), rois = try fixture.tensor("rois")
    let options = RoIAlignOptions(outputHeight: try fixture.int("output_h"), outputWidth: try fixture.int("output_w"),
                                  spatialScale: try fixture.double("spatial_scale"),
                                  samplingRatio: try fixture.int("sampling_ratio"),
                                  aligned: try fixture.int("aligned") != 0)
    let output = try roiAlignForward(input: input, rois: rois, options: options)
    var dInput = Tensor(zeros: input.shape)
    try roiAlignBackward(dInput: &dInput, dOutput: try fixture.tensor("grad_output"), rois: rois, options: options)
    return [try fixture.compare("expected_output", output), try fixture.compare("grad_input", dInput)]
}

/// roi_pool: output and grad_input (through the forward's argmax).
public func verifyRoIPool(_ fixture: Fixture) throws -> [Comparison] {
    let input = try fixture.tensor("input"), rois = try fixture.tensor("rois")
    let options = RoIPoolOptions(outputHeight: try fixture.int("output_h"), outputWidth: try fixture.int("output_w"),
                                 spatialScale: try fixture.double("spatial_scale"))
    let (output, argmax) = try roiPoolForward(input: input, rois: rois, options: options)
    var dInput = Tensor(zeros: input.shape)
    try roiPoolBackward(dInput: &dInput, dOutput: try fixture.tensor("grad_output"), argmax: argmax, rois: rois,
                        options: options)
    return [try fixture.compare("expected_output", output), try fixture.compare("grad_input", dInput)]
}

/// deform_roi_pool / modulated_deform_roi_pool: output, grad_input, grad_offset (and grad_mask).
public func verifyDeformRoIPool(_ fixture: Fixture, modulated: Bool) throws -> [Comparison] {
    let input = try fixture.tensor("input"), rois = try fixture.tensor("rois"), offset = try fixture.tensor("offset")
    let mask = modulated ? try fixture.tensor("mask") : nil
    let options = DeformRoIPoolOptions(outputHeight: try fixture.int("output_h"), outputWidth: try fixture.int("output_w"),
                                       spatialScale: try fixture.double("spatial_scale"),
                                       samplingRatio: try fixture.int("sampling_ratio"),
                                       gamma: try fixture.double("gamma"))
    let output = try deformRoIPoolForward(input: input, rois: rois, offset: offset, mask: mask, options: options)
    let dOutput = try fixture.tensor("grad_output")
    var dInput = Tensor(zeros: input.shape), dOffset = Tensor(zeros: offset.shape)
    var result = [try fixture.compare("expected_output", output)]
    if let mask {
        var dMask = Tensor(zeros: mask.shape)
        try modulatedDeformRoIPoolBackward(dInput: &dInput, dOffset: &dOffset, dMask: &dMask, dOutput: dOutput,
                                           input: input, rois: rois, offset: offset, mask: mask, options: options)
        result.append(try fixture.compare("grad_mask", dMask))
    } else {
        try deformRoIPoolBackward(dInput: &dInput, dOffset: &dOffset, dOutput: dOutput, input: input, rois: rois,
                                  offset: offset, options: options)
    }
    result.append(try fixture.compare("grad_input", dInput))
    result.append(try fixture.compare("grad_offset", dOffset))
    return result
}

/// nms: the kept indices must match exactly (relative error 0, otherwise infinity).
public func verifyNMS(_ fixture: Fixture) throws -> [Comparison] {
    let keep = try nms(boxes: try fixture.tensor("boxes"), scores: try fixture.tensor("scores"),
                       iouThreshold: try fixture.double("iou_threshold"))
    let expected = try fixture.file.ints("expected_keep").values
    return [Comparison(name: "expected_keep", relativeError: keep == expected ? 0 : .infinity)]
}
