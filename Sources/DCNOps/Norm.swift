// Normalisation layers on NCHW feature maps: frozen batch norm (a per-channel affine map),
// batch norm with batch statistics and running averages, and group norm.
// Reductions accumulate in Double in a fixed order inside one task, so results do not depend
// on the thread count.
import DCNTensor

// MARK: - Shared shape checks

/// (N, C, H*W) of an NCHW (or NC) tensor, or a descriptive error.
@usableFromInline
func nchwDims(_ input: Tensor, _ op: String) throws -> (n: Int, c: Int, hw: Int) {
    try require(input.rank >= 2, "\(op): input must be [N, C, ...], got shape \(input.shape)")
    let hw = input.shape.dropFirst(2).reduce(1, *)
    return (input.shape[0], input.shape[1], hw)
}

@usableFromInline
func requireChannelVector(_ t: Tensor, _ name: String, _ c: Int, _ op: String) throws {
    try require(t.shape == [c], "\(op): \(name) must have shape [\(c)], got \(t.shape)")
}

/// Throws unless each gradient that is present has the shape of what it is the gradient of
/// (dBias: `[outChannels]`). Shared by every op's backward.
func requireGradientShapes(_ op: String, dInput: Tensor?, input: [Int], dWeight: GradientSlot?, weight: [Int],
                           dBias: GradientSlot?, outChannels: Int) throws {
    try require(dInput == nil || dInput!.shape == input, "\(op): dInput must be \(input), got \(dInput!.shape)")
    try require(dWeight == nil || dWeight!.shape == weight, "\(op): dWeight must be \(weight), got \(dWeight!.shape)")
    try require(dBias == nil || dBias!.shape == [outChannels], "\(op): dBias must be [\(outChannels)], got \(dBias!.shape)")
}

@usableFromInline
func requireSameShape(_ a: Tensor, _ aName: String, _ b: Tensor, _ bName: String, _ op: String) throws {
    try require(a.shape == b.shape, "\(op): \(aName) shape \(a.shape) does not match \(bName) shape \(b.shape)")
}

/// `y[n, c, i] = x[n, c, i] * scale[c] + shift[c]` over planes, parallel over (n, c) planes.
func channelAffine(_ input: Tensor, scale: [Float], shift: [Float], n: Int, c: Int, hw: Int) -> Tensor {
    var out = Tensor(zeros: input.shape)
    input.withUnsafeBufferPointer { xb in
        out.withUnsafeMutableBufferPointer { yb in
            let x = SharedReads(xb.baseAddress!), y = DisjointWrites(yb.baseAddress!)
            let s = scale, t = shift
            parallelFor(n * c, grain: max(1, 4096 / max(1, hw))) { planes in
                for p in planes {
                    let ch = p % c, sc = s[ch], sh = t[ch]
                    let xp = x + p * hw, yp = y + p * hw
                    for i in 0..<hw { yp[i] = xp[i] * sc + sh }
                }
            }
        }
    }
    return out
}

extension ChannelAffine {
    func requireChannels(_ channels: Int, _ op: String) throws {
        try require(scale.count == channels && shift.count == channels,
                    "\(op): \(scale.count) scales and \(shift.count) shifts for \(channels) channels")
    }
}

/// `x = x * scale[c] + shift[c]` in place, then ReLU (`v < 0 ? 0 : v`) when `relu`: what
/// `channelAffine` and `reluForwardInPlace` compute, with the same roundings, in one pass over `x`
/// and no new tensor (inference, where the norm's input is not kept). x [N, C, H, W].
public func channelAffineInPlace(_ x: inout Tensor, scale: [Float], shift: [Float], relu: Bool) throws {
    let (n, c, hw) = try nchwDims(x, "channel affine")
    try require(scale.count == c && shift.count == c, "channel affine: \(scale.count) scales and \(shift.count) shifts for \(c) channels")
    x.withUnsafeMutableBufferPointer { xb in
        let y = DisjointWrites(xb.baseAddress!)
        let s = scale, t = shift
        parallelFor(n * c, grain: max(1, 4096 / max(1, hw))) { planes in
            for p in planes {
                let ch = p % c, sc = s[ch], sh = t[ch]
                let yp = y + p * hw
                if relu {
                    for i in 0..<hw { let v = yp[i] * sc + sh; yp[i] = v < 0 ? 0 : v }
                } else {
                    for i in 0..<hw { yp[i] = yp[i] * sc + sh }
                }
            }
        }
    }
}

/// A residual block's end in one pass: `x = max(x + (shortcut * scale[c] + shift[c]), 0)`, the
/// shortcut's affine norm (`channelAffine`), the sum and ReLU (`addReLUInPlace`) with the same
/// roundings. x and shortcut [N, C, H, W].
public func addChannelAffineReLUInPlace(_ x: inout Tensor, shortcut: Tensor, scale: [Float], shift: [Float]) throws {
    let (n, c, hw) = try nchwDims(x, "add + channel affine + relu")
    try require(shortcut.shape == x.shape, "add + channel affine + relu: shapes \(x.shape) and \(shortcut.shape) differ")
    try require(scale.count == c && shift.count == c, "add + channel affine + relu: \(scale.count) scales and \(shift.count) shifts for \(c) channels")
    shortcut.withUnsafeBufferPointer { sb in
        x.withUnsafeMutableBufferPointer { xb in
            let src = SharedReads(sb.baseAddress!), y = DisjointWrites(xb.baseAddress!)
            let s = scale, t = shift
            parallelFor(n * c, grain: max(1, 4096 / max(1, hw))) { planes in
                for p in planes {
                    let ch = p % c, sc = s[ch], sh = t[ch]
                    let yp = y + p * hw, sp = src + p * hw
                    for i in 0..<hw {
                        let normed = sp[i] * sc + sh
                        let v = yp[i] + normed
                        yp[i] = v < 0 ? 0 : v
                    }
                }
            }
        }
    }
}

// MARK: - Frozen batch norm

/// Per-channel `scale = weight / sqrt(running_var + eps)` and `shift = bias - running_mean * scale`
/// (torchvision `FrozenBatchNorm2d`), computed in Double and rounded once.
public func frozenBatchNormScaleShift(
    weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float = 1e-5
) throws -> (scale: [Float], shift: [Float]) {
    let c = weight.count
    try require(weight.rank == 1, "frozen batch norm: weight must be [C], got \(weight.shape)")
    try requireChannelVector(bias, "bias", c, "frozen batch norm")
    try requireChannelVector(runningMean, "running_mean", c, "frozen batch norm")
    try requireChannelVector(runningVar, "running_var", c, "frozen batch norm")
    var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
    for i in 0..<c {
        let s = Double(weight.data[i]) / (Double(runningVar.data[i]) + Double(eps)).squareRoot()
        scale[i] = Float(s)
        shift[i] = Float(Double(bias.data[i]) - Double(runningMean.data[i]) * s)
    }
    return (scale, shift)
}

/// Frozen batch norm forward. input [N, C, H, W] (any trailing dims), weight/bias/runningMean/
/// runningVar [C] -> output like input: `y = x * scale[c] + shift[c]`.
public func frozenBatchNormForward(
    input: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float = 1e-5
) throws -> Tensor {
    let (n, c, hw) = try nchwDims(input, "frozen batch norm")
    try require(weight.shape == [c], "frozen batch norm: weight must have shape [\(c)], got \(weight.shape)")
    let (scale, shift) = try frozenBatchNormScaleShift(
        weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar, eps: eps)
    return channelAffine(input, scale: scale, shift: shift, n: n, c: c, hw: hw)
}

/// Frozen batch norm backward: from `y = x * scale[c] + shift[c]`, `dInput += dOutput * scale[c]`.
/// The parameters are constants (no weight/bias gradients).
public func frozenBatchNormBackward(
    dInput: inout Tensor, dOutput: Tensor, weight: Tensor, runningVar: Tensor, eps: Float = 1e-5
) throws {
    let (n, c, hw) = try nchwDims(dOutput, "frozen batch norm backward")
    try requireSameShape(dInput, "dInput", dOutput, "dOutput", "frozen batch norm backward")
    try requireChannelVector(weight, "weight", c, "frozen batch norm backward")
    try requireChannelVector(runningVar, "running_var", c, "frozen batch norm backward")
    var scale = [Float](repeating: 0, count: c)
    for i in 0..<c { scale[i] = Float(Double(weight.data[i]) / (Double(runningVar.data[i]) + Double(eps)).squareRoot()) }
    let s = scale
    dOutput.withUnsafeBufferPointer { gb in
        dInput.withUnsafeMutableBufferPointer { db in
            let g = SharedReads(gb.baseAddress!), d = DisjointWrites(db.baseAddress!)
            parallelFor(n * c, grain: max(1, 4096 / max(1, hw))) { planes in
                for p in planes {
                    let sc = s[p % c], gp = g + p * hw, dp = d + p * hw
                    for i in 0..<hw { dp[i] += gp[i] * sc }
                }
            }
        }
    }
}

// MARK: - Batch norm

/// Batch norm hyper-parameters (PyTorch defaults).
public struct BatchNormOptions: Sendable, Equatable {
    /// Added to the variance before the square root.
    public var eps: Float
    /// Running average update `running = (1 - momentum) * running + momentum * batch`.
    public var momentum: Float
    public init(eps: Float = 1e-5, momentum: Float = 0.1) { self.eps = eps; self.momentum = momentum }
}

/// What the training-mode forward saves for backward: per-channel batch mean and
/// `1 / sqrt(biased_var + eps)`.
public struct BatchNormSaved: Sendable, Equatable {
    public var mean: [Float]
    public var invStd: [Float]
    public init(mean: [Float], invStd: [Float]) { self.mean = mean; self.invStd = invStd }
}

/// Per-channel sum and sum of squared deviations over N and H*W, two passes in Double.
private func channelMoments(_ input: Tensor, n: Int, c: Int, hw: Int) -> (mean: [Double], m2: [Double]) {
    var mean = [Double](repeating: 0, count: c), m2 = [Double](repeating: 0, count: c)
    let count = Double(n * hw)
    input.withUnsafeBufferPointer { xb in
        mean.withUnsafeMutableBufferPointer { mb in
            m2.withUnsafeMutableBufferPointer { vb in
                let x = SharedReads(xb.baseAddress!), m = DisjointWrites(mb.baseAddress!), v = DisjointWrites(vb.baseAddress!)
                parallelFor(c) { channels in
                    for ch in channels {
                        var s = 0.0
                        for b in 0..<n {
                            let xp = x + (b * c + ch) * hw
                            for i in 0..<hw { s += Double(xp[i]) }
                        }
                        let mu = count > 0 ? s / count : 0
                        var q = 0.0
                        for b in 0..<n {
                            let xp = x + (b * c + ch) * hw
                            for i in 0..<hw { let d = Double(xp[i]) - mu; q += d * d }
                        }
                        m[ch] = mu
                        v[ch] = q
                    }
                }
            }
        }
    }
    return (mean, m2)
}

/// Batch norm forward in training mode. input [N, C, H, W], weight (gamma) / bias (beta) [C],
/// runningMean / runningVar [C] updated in place -> output like input and the saved statistics.
///
/// `y = (x - mean[c]) * invStd[c] * weight[c] + bias[c]` with the batch mean and the biased
/// variance; the running variance is updated with the unbiased variance (PyTorch).
public func batchNormTrainForward(
    input: Tensor, weight: Tensor, bias: Tensor,
    runningMean: inout Tensor, runningVar: inout Tensor,
    options: BatchNormOptions = BatchNormOptions()
) throws -> (output: Tensor, saved: BatchNormSaved) {
    let (n, c, hw) = try nchwDims(input, "batch norm")
    try requireChannelVector(weight, "weight", c, "batch norm")
    try requireChannelVector(bias, "bias", c, "batch norm")
    try requireChannelVector(runningMean, "running_mean", c, "batch norm")
    try requireChannelVector(runningVar, "running_var", c, "batch norm")
    let count = n * hw
    try require(count > 1, "batch norm: training needs more than one value per channel, got input shape \(input.shape)")
    let (mean, m2) = channelMoments(input, n: n, c: c, hw: hw)
    var saved = BatchNormSaved(mean: [Float](repeating: 0, count: c), invStd: [Float](repeating: 0, count: c))
    var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
    let mom = Double(options.momentum)
    for ch in 0..<c {
        let invStd = 1 / (m2[ch] / Double(count) + Double(options.eps)).squareRoot()
        saved.mean[ch] = Float(mean[ch])
        saved.invStd[ch] = Float(invStd)
        let s = Double(weight.data[ch]) * invStd
        scale[ch] = Float(s)
        shift[ch] = Float(Double(bias.data[ch]) - mean[ch] * s)
        let unbiased = m2[ch] / Double(count - 1)
        runningMean.data[ch] = Float((1 - mom) * Double(runningMean.data[ch]) + mom * mean[ch])
        runningVar.data[ch] = Float((1 - mom) * Double(runningVar.data[ch]) + mom * unbiased)
    }
    return (channelAffine(input, scale: scale, shift: shift, n: n, c: c, hw: hw), saved)
}

/// Batch norm forward in eval mode: the running statistics normalise, nothing is updated.
/// Identical to `frozenBatchNormForward` with the same parameters.
public func batchNormEvalForward(
    input: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
    options: BatchNormOptions = BatchNormOptions()
) throws -> Tensor {
    try frozenBatchNormForward(input: input, weight: weight, bias: bias,
                               runningMean: runningMean, runningVar: runningVar, eps: options.eps)
}

/// Batch norm backward in eval mode (running statistics are constants). Adds into dInput
/// [N, C, H, W], dWeight [C], dBias [C].
/// Forward: `y = (x - rm) / sqrt(rv + eps) * weight + bias`. Hence `dInput += dy * scale[c]`,
/// `dWeight += sum dy * (x - rm) / sqrt(rv + eps)`, `dBias += sum dy`.
public func batchNormEvalBackward(
    dInput: inout Tensor?, dWeight: GradientSlot?, dBias: GradientSlot?,
    dOutput: Tensor, input: Tensor, weight: Tensor, runningMean: Tensor, runningVar: Tensor,
    options: BatchNormOptions = BatchNormOptions()
) throws {
    let op = "batch norm eval backward"
    let (n, c, _) = try nchwDims(input, op)
    try requireSameShape(dOutput, "dOutput", input, "input", op)
    try requireChannelVector(runningMean, "running_mean", c, op)
    try requireGradientShapes(op, dInput: dInput, input: input.shape, dWeight: dWeight, weight: [c], dBias: dBias, outChannels: c)
    if dInput != nil {
        try frozenBatchNormBackward(dInput: &dInput!, dOutput: dOutput, weight: weight, runningVar: runningVar, eps: options.eps)
    }
    if dWeight == nil && dBias == nil { return }
    let invStd = runningVar.data.map { Float(1 / (Double($0) + Double(options.eps)).squareRoot()) }
    let stats = BatchNormSaved(mean: runningMean.data, invStd: invStd)
    channelGradients(dWeight: dWeight, dBias: dBias, dOutput: dOutput, input: input, saved: stats, n: n, c: c)
}

/// `dWeight[c] += sum dy * (x - mean[c]) * invStd[c]`, `dBias[c] += sum dy`, one task per channel.
private func channelGradients(
    dWeight: GradientSlot?, dBias: GradientSlot?, dOutput: Tensor, input: Tensor, saved: BatchNormSaved, n: Int, c: Int
) {
    let hw = c > 0 && n > 0 ? input.count / (n * c) : 0
    let mean = saved.mean, invStd = saved.invStd
    input.withUnsafeBufferPointer { xb in
    dOutput.withUnsafeBufferPointer { gb in
        let x = SharedReads(xb.baseAddress!), g = SharedReads(gb.baseAddress!)
        parallelFor(c) { channels in
            for ch in channels {
                let mu = Double(mean[ch]), inv = Double(invStd[ch])
                let (sumDy, sumDyXhat) = affineGradientSums(dy: g, x: x, channel: ch, n: n, c: c, hw: hw, mean: mu, invStd: inv)
                addChannelGradients(dWeight, dBias, ch, sumDyXhat: sumDyXhat, sumDy: sumDy)
            }
        }
    }}
}

/// `dWeight[ch] += sum dy * xhat`, `dBias[ch] += sum dy` into the slots that are present. Tasks own
/// disjoint channels, so concurrent calls never write the same element.
@inline(__always)
func addChannelGradients(_ dWeight: GradientSlot?, _ dBias: GradientSlot?, _ ch: Int, sumDyXhat: Double, sumDy: Double) {
    if let dWeight { dWeight.base[ch] += Float(sumDyXhat) }
    if let dBias { dBias.base[ch] += Float(sumDy) }
}

/// Per channel: `sum dy` and `sum dy * xhat` with `xhat = (x - mean) * invStd`, over the
/// N*H*W values of the channel, in a fixed order (the dBias and dWeight of batch norm).
@inline(__always)
func affineGradientSums(dy g: SharedReads<Float>, x: SharedReads<Float>, channel ch: Int, n: Int, c: Int, hw: Int,
                        mean mu: Double, invStd inv: Double) -> (Double, Double) {
    var sumDy = 0.0, sumDyXhat = 0.0
    for b in 0..<n {
        let o = (b * c + ch) * hw
        for i in 0..<hw {
            let dy = Double(g[o + i])
            sumDy += dy
            sumDyXhat += dy * (Double(x[o + i]) - mu) * inv
        }
    }
    return (sumDy, sumDyXhat)
}

/// Batch norm backward (training mode). Adds into dInput [N, C, H, W], dWeight [C], dBias [C].
///
/// Forward: `xhat = (x - mean) * invStd`, `y = xhat * weight + bias`, mean and variance over the
/// M = N*H*W values of a channel. Hence `dBias = sum dy`, `dWeight = sum dy * xhat`,
/// `dx = weight * invStd / M * (M * dy - dBias - xhat * dWeight)`.
public func batchNormBackward(
    dInput: inout Tensor?, dWeight: GradientSlot?, dBias: GradientSlot?,
    dOutput: Tensor, input: Tensor, weight: Tensor, saved: BatchNormSaved
) throws {
    let (n, c, hw) = try nchwDims(input, "batch norm backward")
    try requireSameShape(dOutput, "dOutput", input, "input", "batch norm backward")
    try requireChannelVector(weight, "weight", c, "batch norm backward")
    try requireGradientShapes("batch norm backward", dInput: dInput, input: input.shape, dWeight: dWeight, weight: [c], dBias: dBias, outChannels: c)
    try require(saved.mean.count == c && saved.invStd.count == c,
                "batch norm backward: saved statistics have \(saved.mean.count) channels, input has \(c)")
    let m = Double(n * hw)
    let gamma = weight.data, mean = saved.mean, invStd = saved.invStd
    input.withUnsafeBufferPointer { xb in
    dOutput.withUnsafeBufferPointer { gb in
    withOptionalMutablePointer(&dInput) { dxp in
        let x = SharedReads(xb.baseAddress!), g = SharedReads(gb.baseAddress!)
        let dx = dxp.map(DisjointWrites.init)
        parallelFor(c) { channels in
            for ch in channels {
                let mu = Double(mean[ch]), inv = Double(invStd[ch])
                let (sumDy, sumDyXhat) = affineGradientSums(dy: g, x: x, channel: ch, n: n, c: c, hw: hw, mean: mu, invStd: inv)
                addChannelGradients(dWeight, dBias, ch, sumDyXhat: sumDyXhat, sumDy: sumDy)
                guard let dx else { continue }
                let k = Double(gamma[ch]) * inv / m
                for b in 0..<n {
                    let o = (b * c + ch) * hw
                    for i in 0..<hw {
                        let xhat = (Double(x[o + i]) - mu) * inv
                        dx[o + i] += Float(k * (m * Double(g[o + i]) - sumDy - xhat * sumDyXhat))
                    }
                }
            }
        }
    }}}
}

// MARK: - Group norm

/// Group norm hyper-parameters.
public struct GroupNormOptions: Sendable, Equatable {
    /// Number of channel groups; must divide the channel count.
    public var groups: Int
    /// Added to the variance before the square root.
    public var eps: Float
    public init(groups: Int, eps: Float = 1e-5) { self.groups = groups; self.eps = eps }
}

/// What group norm's forward saves: mean and `1 / sqrt(var + eps)` per (sample, group), [N * G].
public struct GroupNormSaved: Sendable, Equatable {
    public var mean: [Float]
    public var invStd: [Float]
    public init(mean: [Float], invStd: [Float]) { self.mean = mean; self.invStd = invStd }
}

private func groupNormDims(_ input: Tensor, _ options: GroupNormOptions, _ op: String) throws -> (n: Int, c: Int, hw: Int) {
    let dims = try nchwDims(input, op)
    try require(options.groups > 0, "\(op): groups must be positive, got \(options.groups)")
    try require(dims.c % options.groups == 0,
                "\(op): \(options.groups) groups do not divide \(dims.c) channels")
    return dims
}

/// Sum of x[0 ..< n] in Double, over 8 lanes (vectorised), then the lanes and the tail in a
/// fixed order.
@inline(__always)
func laneSum(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var s = SIMD8<Double>()
    var i = 0
    while i + 8 <= n {
        s += SIMD8<Double>(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self))
        i += 8
    }
    var sum = s.sum()
    while i < n { sum += Double(x[i]); i += 1 }
    return sum
}

/// Sum of (x - mu)^2 over x[0 ..< n] in Double, over 8 lanes as `laneSum`.
@inline(__always)
func laneSquaredDeviations(_ x: UnsafePointer<Float>, _ n: Int, around mu: Double) -> Double {
    var q = SIMD8<Double>()
    let m = SIMD8<Double>(repeating: mu)
    var i = 0
    while i + 8 <= n {
        let d = SIMD8<Double>(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)) - m
        q += d * d
        i += 8
    }
    var squares = q.sum()
    while i < n { let d = Double(x[i]) - mu; squares += d * d; i += 1 }
    return squares
}

/// Sum of dy[0 ..< n] and of dy (x - mu) in Double, over 8 lanes as `laneSum`.
@inline(__always)
func laneProducts(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, around mu: Double) -> (dy: Double, dyCentered: Double) {
    var s = SIMD8<Double>(), p = SIMD8<Double>()
    let m = SIMD8<Double>(repeating: mu)
    var i = 0
    while i + 8 <= n {
        let g = SIMD8<Double>(UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD8<Float>.self))
        let v = SIMD8<Double>(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self))
        s += g
        p += g * (v - m)
        i += 8
    }
    var sum = s.sum(), products = p.sum()
    while i < n { let g = Double(dy[i]); sum += g; products += g * (Double(x[i]) - mu); i += 1 }
    return (sum, products)
}

/// Group norm forward. input [N, C, H, W], weight/bias [C] -> output like input.
/// Each (sample, group of C/G channels) is normalised by its own mean and biased variance:
/// `y = (x - mean[n, g]) * invStd[n, g] * weight[c] + bias[c]`.
public func groupNormForward(
    input: Tensor, weight: Tensor, bias: Tensor, options: GroupNormOptions
) throws -> (output: Tensor, saved: GroupNormSaved) {
    let (n, c, hw) = try groupNormDims(input, options, "group norm")
    try requireChannelVector(weight, "weight", c, "group norm")
    try requireChannelVector(bias, "bias", c, "group norm")
    let groups = options.groups, cg = c / groups, size = cg * hw
    let eps = Double(options.eps)
    var out = Tensor(zeros: input.shape)
    var mean = [Float](repeating: 0, count: n * groups), invStd = [Float](repeating: 0, count: n * groups)
    let gamma = weight.data, beta = bias.data
    input.withUnsafeBufferPointer { xb in
    out.withUnsafeMutableBufferPointer { yb in
    mean.withUnsafeMutableBufferPointer { mb in
    invStd.withUnsafeMutableBufferPointer { ib in
        let x = SharedReads(xb.baseAddress!), y = DisjointWrites(yb.baseAddress!)
        let ms = DisjointWrites(mb.baseAddress!), isd = DisjointWrites(ib.baseAddress!)
        parallelFor(n * groups) { blocks in
            for blk in blocks {
                let base = blk * size  // (n, g) blocks are contiguous in NCHW
                let mu = size > 0 ? laneSum(x + base, size) / Double(size) : 0
                let q = laneSquaredDeviations(x + base, size, around: mu)
                let inv = 1 / ((size > 0 ? q / Double(size) : 0) + eps).squareRoot()
                ms[blk] = Float(mu)
                isd[blk] = Float(inv)
                let g0 = (blk % groups) * cg
                for j in 0..<cg {
                    let sc = Double(gamma[g0 + j]) * inv
                    let sh = Double(beta[g0 + j]) - mu * sc
                    let o = base + j * hw
                    for i in 0..<hw { y[o + i] = Float(Double(x[o + i]) * sc + sh) }
                }
            }
        }
    }}}}
    return (out, GroupNormSaved(mean: mean, invStd: invStd))
}

/// Group norm backward. Adds into dInput [N, C, H, W], dWeight [C], dBias [C].
///
/// Forward: `xhat = (x - mean) * invStd` over a block of M = C/G*H*W values, `y = xhat * w[c] + b[c]`.
/// With `dxhat = dy * w[c]`: `dx = invStd / M * (M * dxhat - sum dxhat - xhat * sum(dxhat * xhat))`;
/// `dWeight[c] = sum_{n,hw} dy * xhat`, `dBias[c] = sum_{n,hw} dy`.
public func groupNormBackward(
    dInput: inout Tensor?, dWeight: GradientSlot?, dBias: GradientSlot?,
    dOutput: Tensor, input: Tensor, weight: Tensor, saved: GroupNormSaved, options: GroupNormOptions
) throws {
    let (n, c, hw) = try groupNormDims(input, options, "group norm backward")
    try requireSameShape(dOutput, "dOutput", input, "input", "group norm backward")
    try requireChannelVector(weight, "weight", c, "group norm backward")
    try requireGradientShapes("group norm backward", dInput: dInput, input: input.shape, dWeight: dWeight, weight: [c], dBias: dBias, outChannels: c)
    let groups = options.groups, cg = c / groups, size = cg * hw
    try require(saved.mean.count == n * groups && saved.invStd.count == n * groups,
                "group norm backward: saved statistics have \(saved.mean.count) entries, expected \(n * groups)")
    let gamma = weight.data, mean = saved.mean, invStd = saved.invStd
    input.withUnsafeBufferPointer { xb in
    dOutput.withUnsafeBufferPointer { gb in
    withOptionalMutablePointer(&dInput) { dxp in
        let x = SharedReads(xb.baseAddress!), g = SharedReads(gb.baseAddress!)
        // dInput: one task per (sample, group) block.
        if let dx = dxp.map(DisjointWrites.init) { parallelFor(n * groups) { blocks in
            for blk in blocks {
                let base = blk * size, g0 = (blk % groups) * cg
                let mu = Double(mean[blk]), inv = Double(invStd[blk]), m = Double(size)
                var sumDxhat = 0.0, sumDxhatXhat = 0.0
                for j in 0..<cg {
                    // dxhat = dy w: sum dxhat = w sum dy, sum dxhat xhat = w inv sum dy (x - mu).
                    let w = Double(gamma[g0 + j]), o = base + j * hw
                    let sums = laneProducts(g + o, x + o, hw, around: mu)
                    sumDxhat += w * sums.dy
                    sumDxhatXhat += w * inv * sums.dyCentered
                }
                for j in 0..<cg {
                    let w = Double(gamma[g0 + j]), o = base + j * hw
                    for i in 0..<hw {
                        let xhat = (Double(x[o + i]) - mu) * inv
                        dx[o + i] += Float(inv / m * (m * Double(g[o + i]) * w - sumDxhat - xhat * sumDxhatXhat))
                    }
                }
            }
        }
        }
        // dWeight, dBias: one task per channel, summed over samples in order.
        if dWeight != nil || dBias != nil { parallelFor(c) { channels in
            for ch in channels {
                var sumDy = 0.0, sumDyXhat = 0.0
                for b in 0..<n {
                    let blk = b * groups + ch / cg
                    let mu = Double(mean[blk]), inv = Double(invStd[blk])
                    let sums = laneProducts(g + (b * c + ch) * hw, x + (b * c + ch) * hw, hw, around: mu)
                    sumDy += sums.dy
                    sumDyXhat += inv * sums.dyCentered
                }
                addChannelGradients(dWeight, dBias, ch, sumDyXhat: sumDyXhat, sumDy: sumDy)
            }
        }}
    }}}
}
