// Fully connected layer in PyTorch's layout, on BLAS.sgemm.
import DCNTensor

private func linearDims(_ input: Tensor, _ weight: Tensor, _ op: String) throws -> (n: Int, inF: Int, outF: Int) {
    try require(input.rank == 2, "\(op): input must be [N, in], got \(input.shape)")
    try require(weight.rank == 2, "\(op): weight must be [out, in], got \(weight.shape)")
    try require(weight.shape[1] == input.shape[1],
                "\(op): weight [out, in] = \(weight.shape) does not take input features \(input.shape[1])")
    return (input.shape[0], input.shape[1], weight.shape[0])
}

/// Linear forward: input [N, in], weight [out, in], bias [out] (optional) -> [N, out],
/// `y = x W^T + b`.
public func linearForward(input: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
    let (n, inF, outF) = try linearDims(input, weight, "linear")
    if let bias { try require(bias.shape == [outF], "linear: bias must be [\(outF)], got \(bias.shape)") }
    var out = Tensor(zeros: [n, outF])
    if n == 0 || outF == 0 { return out }
    if let bias {
        for r in 0..<n { for j in 0..<outF { out.data[r * outF + j] = bias.data[j] } }
    }
    if inF == 0 { return out }
    input.withUnsafeBufferPointer { x in
    weight.withUnsafeBufferPointer { w in
    out.withUnsafeMutableBufferPointer { y in
        BLAS.sgemm(transA: false, transB: true, m: n, n: outF, k: inF, alpha: 1,
                   a: x.baseAddress!, lda: inF, b: w.baseAddress!, ldb: inF,
                   beta: 1, c: y.baseAddress!, ldc: outF)
    }}}
    return out
}

/// Linear backward. From `y = x W^T + b`: `dInput += dY W` [N, in], `dWeight += dY^T x` [out, in],
/// `dBias[o] += sum_n dY[n, o]` (summed in Double, rows in order). Nil gradients are not computed.
public func linearBackward(
    dInput: inout Tensor?, dWeight: GradientSlot?, dBias: GradientSlot? = nil, dOutput: Tensor, input: Tensor, weight: Tensor
) throws {
    let (n, inF, outF) = try linearDims(input, weight, "linear backward")
    try require(dOutput.shape == [n, outF], "linear backward: dOutput must be [\(n), \(outF)], got \(dOutput.shape)")
    try requireGradientShapes("linear backward", dInput: dInput, input: input.shape, dWeight: dWeight, weight: weight.shape,
                              dBias: dBias, outChannels: outF)
    if n == 0 || inF == 0 || outF == 0 { return }
    dOutput.withUnsafeBufferPointer { g in
    weight.withUnsafeBufferPointer { w in
    input.withUnsafeBufferPointer { x in
        if dInput != nil {
            // dX[N, in] += dY[N, out] * W[out, in]
            dInput!.withUnsafeMutableBufferPointer { dx in
                BLAS.sgemm(transA: false, transB: false, m: n, n: inF, k: outF, alpha: 1,
                           a: g.baseAddress!, lda: outF, b: w.baseAddress!, ldb: inF,
                           beta: 1, c: dx.baseAddress!, ldc: inF)
            }
        }
        if let dWeight {
            // dW[out, in] += dY^T[out, N] * X[N, in]
            BLAS.sgemm(transA: true, transB: false, m: outF, n: inF, k: n, alpha: 1,
                       a: g.baseAddress!, lda: outF, b: x.baseAddress!, ldb: inF,
                       beta: 1, c: dWeight.base, ldc: inF)
        }
        if let dBias {
            for j in 0..<outF {
                var s = 0.0
                for r in 0..<n { s += Double(g[r * outF + j]) }
                dBias.base[j] += Float(s)
            }
        }
    }}}
}
