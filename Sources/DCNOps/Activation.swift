// Elementwise activations. Backward passes read the forward *output*, so the forward may
// overwrite its input (in place) without losing what backward needs.
import DCNTensor
import Foundation

/// Applies `f` to every element in place, parallel over contiguous chunks. Inlined into each
/// activation, so `f` is too and the loop vectorises (a closure call per element cost 4x).
@inline(__always)
private func mapInPlace(_ t: inout Tensor, _ f: @Sendable (Float) -> Float) {
    let count = t.count
    t.withUnsafeMutableBufferPointer { buf in
        let p = DisjointWrites(buf.baseAddress!)
        parallelFor(count, grain: 1 << 15) { r in
            for i in r { p[i] = f(p[i]) }
        }
    }
}

/// `dInput[i] += f(dOutput[i], output[i])` over identical shapes (inlined as `mapInPlace`).
@inline(__always)
private func backwardFromOutput(
    _ dInput: inout Tensor, _ dOutput: Tensor, _ output: Tensor, _ op: String,
    _ f: @Sendable (Float, Float) -> Float
) throws {
    try require(dOutput.shape == output.shape, "\(op): dOutput shape \(dOutput.shape) does not match output shape \(output.shape)")
    try require(dInput.shape == output.shape, "\(op): dInput shape \(dInput.shape) does not match output shape \(output.shape)")
    let count = output.count
    dOutput.withUnsafeBufferPointer { gb in
        output.withUnsafeBufferPointer { yb in
            dInput.withUnsafeMutableBufferPointer { db in
                let g = SharedReads(gb.baseAddress!), y = SharedReads(yb.baseAddress!), d = DisjointWrites(db.baseAddress!)
                parallelFor(count, grain: 1 << 15) { r in
                    for i in r { d[i] += f(g[i], y[i]) }
                }
            }
        }
    }
}

// MARK: - ReLU

/// ReLU in place: `x = max(x, 0)` (NaN stays NaN, as PyTorch).
public func reluForwardInPlace(_ x: inout Tensor) {
    mapInPlace(&x) { v in v < 0 ? 0 : v }
}

/// A residual block's output in place: `x = max(x + shortcut, 0)` in one pass (the same two
/// roundings as adding, then applying ReLU).
public func addReLUInPlace(_ x: inout Tensor, _ shortcut: Tensor) throws {
    try require(shortcut.shape == x.shape, "add + relu: shapes \(x.shape) and \(shortcut.shape) differ")
    let count = x.count
    shortcut.withUnsafeBufferPointer { sb in
        x.withUnsafeMutableBufferPointer { xb in
            let s = SharedReads(sb.baseAddress!), p = DisjointWrites(xb.baseAddress!)
            parallelFor(count, grain: 1 << 15) { r in
                for i in r {
                    let v = p[i] + s[i]
                    p[i] = v < 0 ? 0 : v
                }
            }
        }
    }
}

/// ReLU: any shape -> same shape, `y = max(x, 0)`.
public func reluForward(_ input: Tensor) -> Tensor {
    var y = input
    reluForwardInPlace(&y)
    return y
}

/// ReLU backward from the output: from `y = max(x, 0)`, `dInput += dOutput` except where
/// `y <= 0` (so a NaN passes its gradient, as PyTorch's threshold_backward).
public func reluBackward(dInput: inout Tensor, dOutput: Tensor, output: Tensor) throws {
    try backwardFromOutput(&dInput, dOutput, output, "relu backward") { g, y in y <= 0 ? 0 : g }
}

/// ReLU's input gradient as a new tensor: `dOutput` where `output > 0`, 0 elsewhere (a NaN output
/// passes its gradient). What `reluBackward` adds into a zero tensor, without the zero fill.
public func reluGradient(dOutput: Tensor, output: Tensor) throws -> Tensor {
    try require(dOutput.shape == output.shape, "relu backward: dOutput shape \(dOutput.shape) does not match output shape \(output.shape)")
    let count = output.count
    let data = dOutput.withUnsafeBufferPointer { gb in
        output.withUnsafeBufferPointer { yb in
            [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                let g = SharedReads(gb.baseAddress!), y = SharedReads(yb.baseAddress!)
                if let base = buffer.baseAddress {
                    let d = DisjointWrites(base)
                    parallelFor(count, grain: 1 << 15) { r in
                        for i in r { (d + i).initialize(to: y[i] <= 0 ? 0 : g[i]) }
                    }
                }
                initialized = count
            }
        }
    }
    return try Tensor(shape: output.shape, data: data)
}

// MARK: - Sigmoid

/// The logistic function without overflow for large |x|.
@inlinable
public func sigmoid(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
}

/// Sigmoid in place: `x = 1 / (1 + exp(-x))`.
public func sigmoidForwardInPlace(_ x: inout Tensor) {
    mapInPlace(&x) { v in sigmoid(v) }
}

/// Sigmoid: any shape -> same shape.
public func sigmoidForward(_ input: Tensor) -> Tensor {
    var y = input
    sigmoidForwardInPlace(&y)
    return y
}

/// Sigmoid backward from the output: from `y = sigmoid(x)`, `dInput += dOutput * y * (1 - y)`.
public func sigmoidBackward(dInput: inout Tensor, dOutput: Tensor, output: Tensor) throws {
    try backwardFromOutput(&dInput, dOutput, output, "sigmoid backward") { g, y in g * y * (1 - y) }
}
