// dcn-bench verify for the basic layers and losses: normalisation, activations, pooling,
// linear, and the training losses. Each function runs one fixture and compares every
// `expected_*` and `grad_*` tensor the file holds.
import DCNOps
import DCNTensor

/// The scalar upstream gradient of a loss fixture (`grad_output`, shape [1]).
private func scalarGradOutput(_ f: Fixture) throws -> Float {
    let g = try f.tensor("grad_output")
    try require(g.count == 1, "\(f.file.path): grad_output of a loss must hold one value, has shape \(g.shape)")
    return g.data[0]
}

private func scalarTensor(_ v: Float) -> Tensor { Tensor(repeating: v, shape: [1]) }

/// `frozen_batch_norm`: input, weight, bias, running_mean, running_var; metadata eps.
func verifyFrozenBatchNorm(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input"), w = try f.tensor("weight"), b = try f.tensor("bias")
    let rm = try f.tensor("running_mean"), rv = try f.tensor("running_var")
    let eps = Float(try f.double("eps", default: 1e-5))
    let y = try frozenBatchNormForward(input: x, weight: w, bias: b, runningMean: rm, runningVar: rv, eps: eps)
    var dx = Tensor(zeros: x.shape)
    try frozenBatchNormBackward(dInput: &dx, dOutput: try f.tensor("grad_output"), weight: w, runningVar: rv, eps: eps)
    return [try f.compare("expected_output", y), try f.compare("grad_input", dx)]
}

/// `batch_norm`: metadata training (1: batch statistics and running updates, 0: running stats),
/// eps, momentum.
func verifyBatchNorm(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input"), w = try f.tensor("weight"), b = try f.tensor("bias")
    var rm = try f.tensor("running_mean"), rv = try f.tensor("running_var")
    let gy = try f.tensor("grad_output")
    let options = BatchNormOptions(eps: Float(try f.double("eps", default: 1e-5)),
                                   momentum: Float(try f.double("momentum", default: 0.1)))
    var dx: Tensor? = Tensor(zeros: x.shape)
    let dw = GradientBlock(zeros: w.shape), db = GradientBlock(zeros: b.shape)
    var out: [Comparison] = []
    if try f.int("training") != 0 {
        let (y, saved) = try batchNormTrainForward(input: x, weight: w, bias: b, runningMean: &rm, runningVar: &rv, options: options)
        try batchNormBackward(dInput: &dx, dWeight: dw.slot, dBias: db.slot, dOutput: gy, input: x, weight: w, saved: saved)
        out.append(try f.compare("expected_output", y))
        out.append(try f.compare("expected_running_mean", rm))
        out.append(try f.compare("expected_running_var", rv))
    } else {
        let y = try batchNormEvalForward(input: x, weight: w, bias: b, runningMean: rm, runningVar: rv, options: options)
        try batchNormEvalBackward(dInput: &dx, dWeight: dw.slot, dBias: db.slot, dOutput: gy, input: x, weight: w,
                                  runningMean: rm, runningVar: rv, options: options)
        out.append(try f.compare("expected_output", y))
    }
    out += [try f.compare("grad_input", dx!), try f.compare("grad_weight", dw.tensor), try f.compare("grad_bias", db.tensor)]
    return out
}

/// `group_norm`: metadata groups, eps.
func verifyGroupNorm(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input"), w = try f.tensor("weight"), b = try f.tensor("bias")
    let options = GroupNormOptions(groups: try f.int("groups"), eps: Float(try f.double("eps", default: 1e-5)))
    let (y, saved) = try groupNormForward(input: x, weight: w, bias: b, options: options)
    var dx: Tensor? = Tensor(zeros: x.shape)
    let dw = GradientBlock(zeros: w.shape), db = GradientBlock(zeros: b.shape)
    try groupNormBackward(dInput: &dx, dWeight: dw.slot, dBias: db.slot, dOutput: try f.tensor("grad_output"),
                          input: x, weight: w, saved: saved, options: options)
    return [try f.compare("expected_output", y), try f.compare("grad_input", dx!),
            try f.compare("grad_weight", dw.tensor), try f.compare("grad_bias", db.tensor)]
}

/// `relu` and `sigmoid`: backward from the output.
func verifyActivation(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input"), gy = try f.tensor("grad_output")
    var dx = Tensor(zeros: x.shape)
    let y: Tensor
    switch f.op {
    case "relu":
        y = reluForward(x)
        try reluBackward(dInput: &dx, dOutput: gy, output: y)
    default:
        y = sigmoidForward(x)
        try sigmoidBackward(dInput: &dx, dOutput: gy, output: y)
    }
    return [try f.compare("expected_output", y), try f.compare("grad_input", dx)]
}

/// `max_pool2d`: metadata kernel_h/w, stride_h/w, pad_h/w.
func verifyMaxPool(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input")
    let options = MaxPoolOptions(kernelH: try f.int("kernel_h"), kernelW: try f.int("kernel_w"),
                                 strideH: try f.int("stride_h"), strideW: try f.int("stride_w"),
                                 padH: try f.int("pad_h"), padW: try f.int("pad_w"))
    let result = try maxPoolForward(input: x, options: options)
    var dx = Tensor(zeros: x.shape)
    try maxPoolBackward(dInput: &dx, dOutput: try f.tensor("grad_output"), argmax: result.argmax)
    return [try f.compare("expected_output", result.output), try f.compare("grad_input", dx)]
}

/// `global_avg_pool`: [N, C, H, W] -> [N, C].
func verifyGlobalAvgPool(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input")
    let y = try globalAvgPoolForward(input: x)
    var dx = Tensor(zeros: x.shape)
    try globalAvgPoolBackward(dInput: &dx, dOutput: try f.tensor("grad_output"))
    return [try f.compare("expected_output", y), try f.compare("grad_input", dx)]
}

/// `linear`: input [N, in], weight [out, in], optional bias.
func verifyLinear(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input"), w = try f.tensor("weight"), b = try f.optionalTensor("bias")
    let gy = try f.tensor("grad_output")
    let y = try linearForward(input: x, weight: w, bias: b)
    var dx: Tensor? = Tensor(zeros: x.shape)
    let dw = GradientBlock(zeros: w.shape), db = b.map { GradientBlock(zeros: $0.shape) }
    try linearBackward(dInput: &dx, dWeight: dw.slot, dBias: db?.slot, dOutput: gy, input: x, weight: w)
    var out = [try f.compare("expected_output", y)]
    if let db { out.append(try f.compare("grad_bias", db.tensor)) }
    out += [try f.compare("grad_input", dx!), try f.compare("grad_weight", dw.tensor)]
    return out
}

/// `softmax_cross_entropy`: input (logits) [N, C], labels [N] (I64); metadata ignore_label.
func verifySoftmaxCrossEntropy(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input"), labels = try f.file.ints("labels").values
    let options = CrossEntropyOptions(ignoreLabel: try f.int("ignore_label", default: -1))
    let loss = try softmaxCrossEntropyLoss(logits: x, labels: labels, options: options)
    var dx = Tensor(zeros: x.shape)
    try softmaxCrossEntropyBackward(dLogits: &dx, logits: x, labels: labels, options: options,
                                    gradOutput: try scalarGradOutput(f))
    return [try f.compare("expected_loss", scalarTensor(loss)), try f.compare("grad_input", dx)]
}

/// `sigmoid_bce`: input (logits), target, optional weight; metadata reduction (sum|mean), ignore_target.
func verifySigmoidBCE(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input"), t = try f.tensor("target"), w = try f.optionalTensor("weight")
    let reduction: LossReduction
    switch f.file.metadata["reduction"] ?? "mean" {
    case "sum": reduction = .sum
    case "mean": reduction = .mean
    case let other: throw ShapeError("\(f.file.path): reduction '\(other)' is neither 'sum' nor 'mean'")
    }
    let ignore: Float? = f.file.metadata["ignore_target"] == nil ? nil : Float(try f.double("ignore_target"))
    let options = BinaryCrossEntropyOptions(reduction: reduction, ignoreTarget: ignore)
    let loss = try sigmoidBinaryCrossEntropyLoss(logits: x, targets: t, weights: w, options: options)
    var dx = Tensor(zeros: x.shape)
    try sigmoidBinaryCrossEntropyBackward(dLogits: &dx, logits: x, targets: t, weights: w, options: options,
                                          gradOutput: try scalarGradOutput(f))
    return [try f.compare("expected_loss", scalarTensor(loss)), try f.compare("grad_input", dx)]
}

/// `smooth_l1`: input, target; metadata beta; sum reduction.
func verifySmoothL1(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input"), t = try f.tensor("target")
    let beta = Float(try f.double("beta"))
    let loss = try smoothL1Loss(input: x, target: t, beta: beta)
    var dx = Tensor(zeros: x.shape)
    try smoothL1Backward(dInput: &dx, input: x, target: t, beta: beta, gradOutput: try scalarGradOutput(f))
    return [try f.compare("expected_loss", scalarTensor(loss)), try f.compare("grad_input", dx)]
}

/// `cosine_mimic`: a, b [N, D]; metadata eps.
func verifyCosineMimic(_ f: Fixture) throws -> [Comparison] {
    let a = try f.tensor("a"), b = try f.tensor("b")
    let eps = Float(try f.double("eps", default: 1e-8))
    let loss = try cosineMimicLoss(a: a, b: b, eps: eps)
    var da = Tensor(zeros: a.shape), db = Tensor(zeros: b.shape)
    try cosineMimicBackward(dA: &da, dB: &db, a: a, b: b, eps: eps, gradOutput: try scalarGradOutput(f))
    return [try f.compare("expected_loss", scalarTensor(loss)), try f.compare("grad_a", da), try f.compare("grad_b", db)]
}

/// `bilinear_resize`: input [N, C, h, w] to out_h x out_w; with metadata scale_factor s the source
/// scale is 1 / s (PyTorch's `recompute_scale_factor=False`), else input / output size.
func verifyBilinearResize(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input")
    let (h, w) = (try f.int("out_h"), try f.int("out_w"))
    let scale = f.file.metadata["scale_factor"] == nil ? ResizeScale()
        : ResizeScale(y: 1 / (try f.double("scale_factor")), x: 1 / (try f.double("scale_factor")))
    let y = try bilinearResizeForward(input: x, height: h, width: w, scale: scale)
    var dx = Tensor(zeros: x.shape)
    try bilinearResizeBackward(dInput: &dx, dOutput: try f.tensor("grad_output"), scale: scale)
    return [try f.compare("expected_output", y), try f.compare("grad_input", dx)]
}

/// `pixel_cross_entropy`: input (logits) [N, C, H, W], labels [N, H, W] (I64, 255 ignored): the
/// mean over the counted pixels, as `cross_entropy(ignore_index=255)`.
func verifyPixelCrossEntropy(_ f: Fixture) throws -> [Comparison] {
    let x = try f.tensor("input")
    let labels = try f.file.ints("labels").values.map { UInt8($0) }
    let (sum, count) = try pixelSoftmaxCrossEntropySum(logits: x, labels: labels)
    var dx = Tensor(zeros: x.shape)
    try pixelSoftmaxCrossEntropyBackward(dLogits: &dx, logits: x, labels: labels, gradOutput: try scalarGradOutput(f) / Float(count))
    return [try f.compare("expected_loss", scalarTensor(Float(sum / Double(count)))), try f.compare("grad_input", dx)]
}
