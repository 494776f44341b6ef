// Training losses with their gradients. Each loss is a pair: `...Loss` returns the scalar,
// `...Backward` *adds* `gradOutput * dLoss/dInput` into the gradient tensor passed inout.
// Sums are accumulated in Double in a fixed order (row by row), so results do not depend on
// the thread count.
import DCNTensor
import Foundation

/// How a summed loss is normalised.
public enum LossReduction: Sendable, Equatable {
    /// The plain sum of the per-element losses (callers normalise).
    case sum
    /// The sum divided by the number of counted (non-ignored) elements.
    case mean
}

// MARK: - Softmax cross-entropy

/// Softmax cross-entropy options.
public struct CrossEntropyOptions: Sendable, Equatable {
    /// Rows with this label contribute nothing (PyTorch's `ignore_index`).
    public var ignoreLabel: Int
    /// PyTorch's `label_smoothing` ε: the target is (1 - ε) one-hot + ε / C.
    public var labelSmoothing: Float
    public init(ignoreLabel: Int = -1, labelSmoothing: Float = 0) { self.ignoreLabel = ignoreLabel; self.labelSmoothing = labelSmoothing }
}

private func checkCrossEntropy(_ logits: Tensor, _ labels: [Int], _ options: CrossEntropyOptions) throws -> (n: Int, c: Int) {
    try require(logits.rank == 2, "softmax cross-entropy: logits must be [N, C], got \(logits.shape)")
    let (n, c) = (logits.shape[0], logits.shape[1])
    try require(labels.count == n, "softmax cross-entropy: \(labels.count) labels for \(n) rows of logits")
    for (i, l) in labels.enumerated() where l != options.ignoreLabel {
        try require(l >= 0 && l < c, "softmax cross-entropy: label \(l) of row \(i) is outside 0..<\(c) and is not the ignore label \(options.ignoreLabel)")
    }
    return (n, c)
}

/// Row log-sum-exp in Double, shifted by the row maximum.
private func logSumExp(_ row: UnsafePointer<Float>, _ c: Int) -> (max: Double, lse: Double) {
    var m = -Double.infinity
    for j in 0..<c { m = max(m, Double(row[j])) }
    var s = 0.0
    for j in 0..<c { s += Foundation.exp(Double(row[j]) - m) }
    return (m, m + Foundation.log(s))
}

/// Softmax cross-entropy: logits [N, C], labels [N] (class index or the ignore label) ->
/// `mean over non-ignored rows of (logsumexp(logits[i]) - logits[i, label_i])`; with label
/// smoothing ε each row's term is (1 - ε) of that plus ε (logsumexp(logits[i]) - mean_j logits[i, j]).
/// When every row is ignored the loss is 0 (PyTorch returns NaN).
public func softmaxCrossEntropyLoss(
    logits: Tensor, labels: [Int], options: CrossEntropyOptions = CrossEntropyOptions()
) throws -> Float {
    let (n, c) = try checkCrossEntropy(logits, labels, options)
    var total = 0.0, counted = 0
    logits.withUnsafeBufferPointer { x in
        for i in 0..<n where labels[i] != options.ignoreLabel {
            let row = x.baseAddress! + i * c
            let lse = logSumExp(row, c).lse
            if options.labelSmoothing == 0 {
                total += lse - Double(row[labels[i]])
            } else {
                var mean = 0.0
                for j in 0..<c { mean += Double(row[j]) }
                mean /= Double(c)
                let e = Double(options.labelSmoothing)
                total += (1 - e) * (lse - Double(row[labels[i]])) + e * (lse - mean)
            }
            counted += 1
        }
    }
    return counted > 0 ? Float(total / Double(counted)) : 0
}

/// Softmax cross-entropy backward: from the loss above, for non-ignored rows
/// `dLogits[i, j] += gradOutput * (softmax(logits[i])[j] - target_ij) / count`, the target
/// `[j == label_i]` smoothed to (1 - ε) [j == label_i] + ε / C.
public func softmaxCrossEntropyBackward(
    dLogits: inout Tensor, logits: Tensor, labels: [Int],
    options: CrossEntropyOptions = CrossEntropyOptions(), gradOutput: Float = 1
) throws {
    let (n, c) = try checkCrossEntropy(logits, labels, options)
    try require(dLogits.shape == logits.shape, "softmax cross-entropy backward: dLogits \(dLogits.shape) does not match logits \(logits.shape)")
    let counted = labels.reduce(0) { $0 + ($1 == options.ignoreLabel ? 0 : 1) }
    if counted == 0 { return }
    let scale = Double(gradOutput) / Double(counted), ignore = options.ignoreLabel
    let e = Double(options.labelSmoothing), uniform = e / Double(c)
    logits.withUnsafeBufferPointer { xb in
    dLogits.withUnsafeMutableBufferPointer { db in
        let x = SharedReads(xb.baseAddress!), d = DisjointWrites(db.baseAddress!)
        parallelFor(n, grain: max(1, 2048 / max(c, 1))) { rows in
            for i in rows where labels[i] != ignore {
                let row = x + i * c
                let (_, lse) = logSumExp(row, c)
                for j in 0..<c {
                    let p = Foundation.exp(Double(row[j]) - lse)
                    let target = e == 0 ? (j == labels[i] ? 1 : 0) : (j == labels[i] ? 1 - e : 0) + uniform
                    d[i * c + j] += Float(scale * (p - target))
                }
            }
        }
    }}
}

// MARK: - Per-pixel softmax cross-entropy

/// The sum of the per-pixel softmax cross-entropy of `logits` [N, C, H, W] against `labels`
/// (N * H * W class indices, row-major; `ignoreLabel` counts nothing), and how many pixels
/// counted: DeepLab's loss is sum / count (Caffe's and MXNet's `normalization: valid`).
public func pixelSoftmaxCrossEntropySum(logits: Tensor, labels: [UInt8], ignoreLabel: UInt8 = 255) throws -> (sum: Double, count: Int) {
    let (rows, c, hw) = try checkPixelCrossEntropy(logits, labels, ignoreLabel)
    var sums = [Double](repeating: 0, count: rows), counts = [Int](repeating: 0, count: rows)
    logits.withUnsafeBufferPointer { xb in
    sums.withUnsafeMutableBufferPointer { sb in
    counts.withUnsafeMutableBufferPointer { cb in
        let x = SharedReads(xb.baseAddress!), s = DisjointWrites(sb.baseAddress!), k = DisjointWrites(cb.baseAddress!)
        let perImage = rows / logits.shape[0], w = hw / perImage
        parallelFor(rows, grain: 1) { range in
            for r in range {
                // Row r is pixel row r % H of image r / H; its pixel j has channel ch at base + j + ch * hw.
                let base = (r / perImage) * c * hw + (r % perImage) * w
                var total = 0.0, counted = 0
                for j in 0..<w {
                    let label = labels[r * w + j]
                    if label == ignoreLabel { continue }
                    let p = x + base + j
                    total += logSumExp(p, channels: c, stride: hw) - Double(p[Int(label) * hw])
                    counted += 1
                }
                s[r] = total; k[r] = counted
            }
        }
    }}}
    return (sums.reduce(0, +), counts.reduce(0, +))
}

/// Backward of `pixelSoftmaxCrossEntropySum` scaled by `gradOutput`: for every counted pixel,
/// `dLogits[n, ch, i, j] += gradOutput * (softmax(logits[n, :, i, j])[ch] - [ch == label])`.
public func pixelSoftmaxCrossEntropyBackward(dLogits: inout Tensor, logits: Tensor, labels: [UInt8], ignoreLabel: UInt8 = 255,
                                             gradOutput: Float) throws {
    let (rows, c, hw) = try checkPixelCrossEntropy(logits, labels, ignoreLabel)
    try require(dLogits.shape == logits.shape, "pixel cross-entropy backward: dLogits \(dLogits.shape) does not match logits \(logits.shape)")
    let perImage = rows / logits.shape[0], w = hw / perImage, g = Double(gradOutput)
    logits.withUnsafeBufferPointer { xb in
    dLogits.withUnsafeMutableBufferPointer { db in
        let x = SharedReads(xb.baseAddress!), d = DisjointWrites(db.baseAddress!)
        parallelFor(rows, grain: 1) { range in
            for r in range {
                let base = (r / perImage) * c * hw + (r % perImage) * w
                for j in 0..<w {
                    let label = labels[r * w + j]
                    if label == ignoreLabel { continue }
                    let p = x + base + j
                    let lse = logSumExp(p, channels: c, stride: hw)
                    for ch in 0..<c {
                        let q = Foundation.exp(Double(p[ch * hw]) - lse) - (ch == Int(label) ? 1 : 0)
                        d[base + j + ch * hw] += Float(g * q)
                    }
                }
            }
        }
    }}
}

/// log(sum_ch exp(p[ch * stride])) of one pixel's `channels` logits, in Double, shifted by their maximum.
@inline(__always) private func logSumExp(_ p: UnsafePointer<Float>, channels c: Int, stride: Int) -> Double {
    var m = -Double.infinity
    for ch in 0..<c { m = max(m, Double(p[ch * stride])) }
    var e = 0.0
    for ch in 0..<c { e += Foundation.exp(Double(p[ch * stride]) - m) }
    return m + Foundation.log(e)
}

/// (rows N * H, channels C, plane H * W) after checking the shapes and that every label is a
/// class or the ignore label.
private func checkPixelCrossEntropy(_ logits: Tensor, _ labels: [UInt8], _ ignore: UInt8) throws -> (rows: Int, c: Int, hw: Int) {
    try require(logits.rank == 4 && logits.shape.allSatisfy { $0 > 0 }, "pixel cross-entropy: logits must be [N, C, H, W], got \(logits.shape)")
    let (n, c, h, w) = (logits.shape[0], logits.shape[1], logits.shape[2], logits.shape[3])
    try require(labels.count == n * h * w, "pixel cross-entropy: \(labels.count) labels for \(n) x \(h) x \(w) pixels")
    if let bad = labels.firstIndex(where: { $0 != ignore && Int($0) >= c }) {
        try require(false, "pixel cross-entropy: label \(labels[bad]) at pixel \(bad) is not a class of 0..<\(c) nor the ignore label \(ignore)")
    }
    return (n * h, c, h * w)
}

// MARK: - Sigmoid binary cross-entropy

/// Sigmoid binary cross-entropy options.
public struct BinaryCrossEntropyOptions: Sendable, Equatable {
    /// Sum, or mean over the non-ignored elements.
    public var reduction: LossReduction
    /// Elements whose target equals this value are ignored (nil: none is).
    public var ignoreTarget: Float?
    public init(reduction: LossReduction = .mean, ignoreTarget: Float? = -1) {
        self.reduction = reduction; self.ignoreTarget = ignoreTarget
    }
}

private func checkBCE(_ logits: Tensor, _ targets: Tensor, _ weights: Tensor?) throws {
    try require(targets.shape == logits.shape, "sigmoid BCE: targets \(targets.shape) do not match logits \(logits.shape)")
    if let weights {
        try require(weights.shape == logits.shape, "sigmoid BCE: weights \(weights.shape) do not match logits \(logits.shape)")
    }
}

/// Number of non-ignored elements (the mean's denominator).
private func bceCount(_ targets: Tensor, _ options: BinaryCrossEntropyOptions) -> Int {
    guard let ignore = options.ignoreTarget else { return targets.count }
    return targets.data.reduce(0) { $0 + ($1 == ignore ? 0 : 1) }
}

/// Sigmoid binary cross-entropy with logits: logits, targets (in [0, 1], or the ignore value) and
/// optional per-element weights, all the same shape ->
/// `sum_i w_i * (max(x_i, 0) - x_i * t_i + log(1 + exp(-|x_i|)))` over non-ignored elements,
/// divided by their count for `.mean` (0 when none is counted).
public func sigmoidBinaryCrossEntropyLoss(
    logits: Tensor, targets: Tensor, weights: Tensor? = nil,
    options: BinaryCrossEntropyOptions = BinaryCrossEntropyOptions()
) throws -> Float {
    try checkBCE(logits, targets, weights)
    var total = 0.0
    for i in 0..<logits.count {
        let t = targets.data[i]
        if let ignore = options.ignoreTarget, t == ignore { continue }
        let x = Double(logits.data[i])
        var l = max(x, 0) - x * Double(t) + Foundation.log1p(Foundation.exp(-abs(x)))
        if let weights { l *= Double(weights.data[i]) }
        total += l
    }
    switch options.reduction {
    case .sum: return Float(total)
    case .mean:
        let count = bceCount(targets, options)
        return count > 0 ? Float(total / Double(count)) : 0
    }
}

/// Sigmoid BCE backward: from the loss above,
/// `dLogits[i] += gradOutput * w_i * (sigmoid(x_i) - t_i) / norm` for non-ignored elements.
public func sigmoidBinaryCrossEntropyBackward(
    dLogits: inout Tensor, logits: Tensor, targets: Tensor, weights: Tensor? = nil,
    options: BinaryCrossEntropyOptions = BinaryCrossEntropyOptions(), gradOutput: Float = 1
) throws {
    try checkBCE(logits, targets, weights)
    try require(dLogits.shape == logits.shape, "sigmoid BCE backward: dLogits \(dLogits.shape) does not match logits \(logits.shape)")
    var scale = Double(gradOutput)
    if options.reduction == .mean {
        let count = bceCount(targets, options)
        if count == 0 { return }
        scale /= Double(count)
    }
    for i in 0..<logits.count {
        let t = targets.data[i]
        if let ignore = options.ignoreTarget, t == ignore { continue }
        let x = Double(logits.data[i])
        let s = x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
        var g = (s - Double(t)) * scale
        if let weights { g *= Double(weights.data[i]) }
        dLogits.data[i] += Float(g)
    }
}

// MARK: - Smooth L1

/// Smooth L1 (PyTorch definition) with sum reduction: input and target of the same shape ->
/// `sum_i (|d_i| < beta ? 0.5 d_i^2 / beta : |d_i| - 0.5 beta)`, `d = input - target`.
/// beta 0 is the L1 loss.
public func smoothL1Loss(input: Tensor, target: Tensor, beta: Float) throws -> Float {
    try require(target.shape == input.shape, "smooth L1: target \(target.shape) does not match input \(input.shape)")
    try require(beta >= 0, "smooth L1: beta must be >= 0, got \(beta)")
    let b = Double(beta)
    var total = 0.0
    for i in 0..<input.count {
        let d = Double(input.data[i]) - Double(target.data[i])
        total += abs(d) < b ? 0.5 * d * d / b : abs(d) - 0.5 * b
    }
    return Float(total)
}

/// Smooth L1 backward: `dInput += gradOutput * (|d| < beta ? d / beta : sign(d))`
/// (sign(0) = 0, as PyTorch).
public func smoothL1Backward(
    dInput: inout Tensor, input: Tensor, target: Tensor, beta: Float, gradOutput: Float = 1
) throws {
    try require(target.shape == input.shape, "smooth L1 backward: target \(target.shape) does not match input \(input.shape)")
    try require(dInput.shape == input.shape, "smooth L1 backward: dInput \(dInput.shape) does not match input \(input.shape)")
    try require(beta >= 0, "smooth L1 backward: beta must be >= 0, got \(beta)")
    let b = Double(beta), g = Double(gradOutput)
    for i in 0..<input.count {
        let d = Double(input.data[i]) - Double(target.data[i])
        let grad: Double = abs(d) < b ? d / b : (d > 0 ? 1 : (d < 0 ? -1 : 0))
        dInput.data[i] += Float(g * grad)
    }
}

// MARK: - Cosine mimic loss

/// Per-row quantities of `cos(a_i, b_i) = (a_i . b_i) / (max(|a_i|, eps) * max(|b_i|, eps))`
/// (torch.nn.functional.cosine_similarity), in Double.
private func cosineRow(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int, _ eps: Double)
    -> (dot: Double, na: Double, nb: Double, rawA: Double, rawB: Double) {
    var dot = 0.0, aa = 0.0, bb = 0.0
    for k in 0..<d {
        let x = Double(a[k]), y = Double(b[k])
        dot += x * y; aa += x * x; bb += y * y
    }
    let na = aa.squareRoot(), nb = bb.squareRoot()
    return (dot, max(na, eps), max(nb, eps), na, nb)
}

private func checkCosine(_ a: Tensor, _ b: Tensor) throws -> (n: Int, d: Int) {
    try require(a.rank == 2, "cosine mimic loss: a must be [N, D], got \(a.shape)")
    try require(b.shape == a.shape, "cosine mimic loss: b \(b.shape) does not match a \(a.shape)")
    return (a.shape[0], a.shape[1])
}

/// Cosine mimic loss: a, b [N, D] -> `mean_i (1 - cos(a_i, b_i))` (0 for N = 0).
public func cosineMimicLoss(a: Tensor, b: Tensor, eps: Float = 1e-8) throws -> Float {
    let (n, d) = try checkCosine(a, b)
    if n == 0 { return 0 }
    var total = 0.0
    a.withUnsafeBufferPointer { ab in
    b.withUnsafeBufferPointer { bb in
        for i in 0..<n {
            let r = cosineRow(ab.baseAddress! + i * d, bb.baseAddress! + i * d, d, Double(eps))
            total += 1 - r.dot / (r.na * r.nb)
        }
    }}
    return Float(total / Double(n))
}

/// Cosine mimic backward. With `c = dot / (na * nb)` (clamped norms) and the loss `mean(1 - c)`:
/// `dA_i += -gradOutput / N * (b_i / (na nb) - c a_i / (|a_i| na))` and symmetrically for dB.
/// As PyTorch's autograd, the gradient passes through the eps clamp as if it were the identity
/// (`|a_i|` is the unclamped norm); a zero vector's norm term is 0.
public func cosineMimicBackward(
    dA: inout Tensor, dB: inout Tensor, a: Tensor, b: Tensor, eps: Float = 1e-8, gradOutput: Float = 1
) throws {
    let (n, d) = try checkCosine(a, b)
    try require(dA.shape == a.shape, "cosine mimic backward: dA \(dA.shape) does not match a \(a.shape)")
    try require(dB.shape == b.shape, "cosine mimic backward: dB \(dB.shape) does not match b \(b.shape)")
    if n == 0 || d == 0 { return }
    let g = -Double(gradOutput) / Double(n), e = Double(eps)
    a.withUnsafeBufferPointer { abuf in
    b.withUnsafeBufferPointer { bbuf in
    dA.withUnsafeMutableBufferPointer { dab in
    dB.withUnsafeMutableBufferPointer { dbb in
        let ap = SharedReads(abuf.baseAddress!), bp = SharedReads(bbuf.baseAddress!)
        let da = DisjointWrites(dab.baseAddress!), db = DisjointWrites(dbb.baseAddress!)
        parallelFor(n, grain: max(1, 4096 / d)) { rows in
            for i in rows {
                let pa = ap + i * d, pb = bp + i * d
                let r = cosineRow(pa, pb, d, e)
                let inv = 1 / (r.na * r.nb), c = r.dot * inv
                let ka = r.rawA > 0 ? c / (r.rawA * r.na) : 0
                let kb = r.rawB > 0 ? c / (r.rawB * r.nb) : 0
                for k in 0..<d {
                    let x = Double(pa[k]), y = Double(pb[k])
                    da[i * d + k] += Float(g * (y * inv - ka * x))
                    db[i * d + k] += Float(g * (x * inv - kb * y))
                }
            }
        }
    }}}}
}
