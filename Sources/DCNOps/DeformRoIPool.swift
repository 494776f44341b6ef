// Deformable RoI pooling (DCNv1 "dpool") and its modulated form (DCNv2 "mdpool"), with mmcv
// DeformRoIPool semantics on aligned coordinates. Bins and samples are those of RoIAlign
// (aligned = true, see RoIAlign.swift); each bin's start moves by the normalised offset:
//     start_x(r, ph, pw) = x1 + pw * bin_w + gamma * roi_w * offset[r, 0, ph, pw]
//     start_y(r, ph, pw) = y1 + ph * bin_h + gamma * roi_h * offset[r, 1, ph, pw]
//     out[r, c, ph, pw]  = mask[r, 0, ph, pw] * sum_{iy, ix} bilinear(input[b, c], y, x) / count
// (offset channel 0 is x, channel 1 is y: the opposite of deform_conv2d). With zero offsets
// and no mask this is exactly roiAlignForward(aligned: true).
import DCNTensor

/// Parameters of the deformable RoI pooling functions.
public struct DeformRoIPoolOptions: Sendable, Equatable {
    /// Output bins per RoI (rows, columns); both > 0.
    public var outputHeight: Int
    public var outputWidth: Int
    /// Multiplies the RoI coordinates (image -> feature map); > 0.
    public var spatialScale: Double
    /// Sample points per bin along each axis; 0 = adaptive ceil(roi size / bins).
    public var samplingRatio: Int
    /// Offset scale: a bin moves by gamma * RoI size * offset (the paper uses 0.1).
    public var gamma: Double

    public init(outputHeight: Int, outputWidth: Int, spatialScale: Double, samplingRatio: Int = 2, gamma: Double = 0.1) {
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
        self.spatialScale = spatialScale
        self.samplingRatio = samplingRatio
        self.gamma = gamma
    }
}

/// Deformable RoI pooling forward. input [N, C, H, W], rois [K, 5], offset [K, 2, ph, pw],
/// optional mask [K, 1, ph, pw] (modulated form) -> output [K, C, ph, pw].
public func deformRoIPoolForward(input: Tensor, rois: Tensor, offset: Tensor, mask: Tensor? = nil,
                                 options: DeformRoIPoolOptions) throws -> Tensor {
    let geometry = try deformGeometry(input.shape, rois, offset, mask, options, op: "deformRoIPool")
    let plan = try RoISamplingPlan(geometry: geometry, rois: rois, aligned: true, offset: offset, gamma: options.gamma)
    return roiSampleForward(input: input, plan: plan, mask: mask)
}

/// Deformable RoI pooling backward (no mask): adds the gradients of sum(output * dOutput) into
/// dInput [N, C, H, W] and dOffset [K, 2, ph, pw].
public func deformRoIPoolBackward(dInput: inout Tensor, dOffset: inout Tensor, dOutput: Tensor,
                                  input: Tensor, rois: Tensor, offset: Tensor,
                                  options: DeformRoIPoolOptions) throws {
    _ = try deformRoIPoolBackwardImpl(dInput: &dInput, dOffset: &dOffset, dOutput: dOutput,
                                      input: input, rois: rois, offset: offset, mask: nil, options: options)
}

/// Modulated deformable RoI pooling backward: adds the gradients of sum(output * dOutput) into
/// dInput [N, C, H, W], dOffset [K, 2, ph, pw] and dMask [K, 1, ph, pw].
public func modulatedDeformRoIPoolBackward(dInput: inout Tensor, dOffset: inout Tensor, dMask: inout Tensor,
                                           dOutput: Tensor, input: Tensor, rois: Tensor, offset: Tensor,
                                           mask: Tensor, options: DeformRoIPoolOptions) throws {
    try require(dMask.shape == mask.shape,
                "modulatedDeformRoIPoolBackward: dMask has shape \(dMask.shape), mask \(mask.shape)")
    let gradMask = try deformRoIPoolBackwardImpl(dInput: &dInput, dOffset: &dOffset, dOutput: dOutput,
                                                 input: input, rois: rois, offset: offset, mask: mask,
                                                 options: options)
    dMask.withUnsafeMutableBufferPointer { d in
        for i in 0..<gradMask.count { d[i] += gradMask[i] }
    }
}

private func deformGeometry(_ inputShape: [Int], _ rois: Tensor, _ offset: Tensor, _ mask: Tensor?,
                            _ options: DeformRoIPoolOptions, op: String) throws -> RoIGeometry {
    let g = try RoIGeometry(input: inputShape, rois: rois, outputHeight: options.outputHeight,
                            outputWidth: options.outputWidth, spatialScale: options.spatialScale,
                            samplingRatio: options.samplingRatio, op: op)
    try require(options.gamma.isFinite, "\(op): gamma must be finite, got \(options.gamma)")
    let offsetShape = [g.roiCount, 2, g.pooledHeight, g.pooledWidth]
    try require(offset.shape == offsetShape,
                "\(op): offset must be [K, 2, ph, pw] = \(offsetShape) (channel 0 = x, 1 = y), got \(offset.shape)")
    try requireFinite(offset.data.allSatisfy { $0.isFinite }, "\(op): offset has non-finite values")
    if let mask {
        let maskShape = [g.roiCount, 1, g.pooledHeight, g.pooledWidth]
        try require(mask.shape == maskShape, "\(op): mask must be [K, 1, ph, pw] = \(maskShape), got \(mask.shape)")
    }
    return g
}

/// The shared backward. dInput by a per-channel scatter (as RoIAlign); dOffset and dMask by
/// gathers per (RoI, bin) that sum the channels in order:
///     dOffset_x[r, bin] += mask * gamma * roi_w / count * sum_c dOut[r, c, bin] * d(sample_c)/dx
///     dMask[r, bin]     += sum_c dOut[r, c, bin] * sample_c / count
/// Returns the mask gradient [K * ph * pw] (meaningful only for the modulated form).
private func deformRoIPoolBackwardImpl(dInput: inout Tensor, dOffset: inout Tensor,
                                       dOutput: Tensor, input: Tensor, rois: Tensor, offset: Tensor, mask: Tensor?,
                                       options: DeformRoIPoolOptions) throws -> [Float] {
    let op = mask == nil ? "deformRoIPoolBackward" : "modulatedDeformRoIPoolBackward"
    let g = try deformGeometry(input.shape, rois, offset, mask, options, op: op)
    try require(dInput.shape == input.shape, "\(op): dInput has shape \(dInput.shape), input \(input.shape)")
    try require(dOffset.shape == offset.shape, "\(op): dOffset has shape \(dOffset.shape), offset \(offset.shape)")
    try require(dOutput.shape == g.outputShape, "\(op): dOutput has shape \(dOutput.shape), expected \(g.outputShape)")
    let plan = try RoISamplingPlan(geometry: g, rois: rois, aligned: true, offset: offset, gamma: options.gamma)
    roiSampleBackwardInput(dInput: &dInput, dOutput: dOutput, plan: plan, mask: mask)
    if g.roiCount == 0 || g.channels == 0 || input.count == 0 { return [Float](repeating: 0, count: g.roiCount * g.bins) }

    let k = g.roiCount, bins = g.bins, c = g.channels, hw = g.height * g.width
    let batchIndex = g.batchIndex
    let maskData = mask?.data
    var gradMask = [Float](repeating: 0, count: k * bins)
    dOffset.withUnsafeMutableBufferPointer { dOff in
        gradMask.withUnsafeMutableBufferPointer { dM in
            withChannelsLast(input) { pixelMajor in
                dOutput.withUnsafeBufferPointer { dOut in
                    let offsetGrad = DisjointWrites(dOff.baseAddress!)
                    let maskGrad = DisjointWrites(dM.baseAddress!)
                    let src = SharedReads(pixelMajor)
                    let upstream = SharedReads(dOut.baseAddress!)
                    parallelFor(k * bins, grain: 8) { range in
                        // Per channel: the sampled value and its derivatives along x and y.
                        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * c) { scratch in
                            let value = UnsafeMutableBufferPointer(rebasing: scratch[0..<c])
                            let dx = scratch.baseAddress! + c, dy = scratch.baseAddress! + 2 * c
                            for item in range {
                                let r = item / bins, bin = item % bins
                                plan.sampleWithGradient(src + batchIndex[r] * hw * c, channels: c, roi: r, bin: bin, value: value, dx: dx, dy: dy)
                                // The channels summed in order.
                                var sumX: Float = 0, sumY: Float = 0, sumValue: Float = 0
                                for ch in 0..<c {
                                    let go = upstream[(r * c + ch) * bins + bin]
                                    if go == 0 { continue }
                                    sumX += go * dx[ch]
                                    sumY += go * dy[ch]
                                    sumValue += go * value[ch]
                                }
                                let m = maskData?[item] ?? 1
                                let scale = plan.inverseCount[r] * m
                                offsetGrad[(r * 2) * bins + bin] += sumX * scale * plan.offsetScaleX[r]
                                offsetGrad[(r * 2 + 1) * bins + bin] += sumY * scale * plan.offsetScaleY[r]
                                maskGrad[item] = sumValue * plan.inverseCount[r]
                            }
                        }
                    }
                }
            }
        }
    }
    return gradMask
}
