// Pooling on NCHW feature maps: max pooling (torchvision's ResNet stem uses 3x3, stride 2,
// padding 1) and global average pooling.
import CGemm
import DCNTensor

// MARK: - Max pool

/// Max pool window geometry. Output size uses PyTorch's floor mode:
/// `out = (in + 2 * padding - kernel) / stride + 1`. Padding is never chosen as the maximum.
public struct MaxPoolOptions: Sendable, Equatable {
    public var kernelH: Int, kernelW: Int
    public var strideH: Int, strideW: Int
    public var padH: Int, padW: Int

    public init(kernelH: Int, kernelW: Int, strideH: Int, strideW: Int, padH: Int, padW: Int) {
        self.kernelH = kernelH; self.kernelW = kernelW
        self.strideH = strideH; self.strideW = strideW
        self.padH = padH; self.padW = padW
    }

    /// Square windows; the defaults are torchvision's ResNet stem (3x3, stride 2, padding 1).
    public init(kernel: Int = 3, stride: Int = 2, padding: Int = 1) {
        self.init(kernelH: kernel, kernelW: kernel, strideH: stride, strideW: stride, padH: padding, padW: padding)
    }

    /// Output (height, width) for an input of (height, width), or a descriptive error.
    public func outputSize(height: Int, width: Int) throws -> (height: Int, width: Int) {
        try require(kernelH > 0 && kernelW > 0, "max pool: kernel must be positive, got \(kernelH)x\(kernelW)")
        try require(strideH > 0 && strideW > 0, "max pool: stride must be positive, got \(strideH)x\(strideW)")
        try require(padH >= 0 && padW >= 0 && padH <= kernelH / 2 && padW <= kernelW / 2,
                    "max pool: padding \(padH)x\(padW) must be between 0 and half the kernel \(kernelH)x\(kernelW)")
        let oh = (height + 2 * padH - kernelH) / strideH + 1
        let ow = (width + 2 * padW - kernelW) / strideW + 1
        try require(height + 2 * padH >= kernelH && width + 2 * padW >= kernelW && oh > 0 && ow > 0,
                    "max pool: input \(height)x\(width) with padding \(padH)x\(padW) is smaller than the kernel \(kernelH)x\(kernelW)")
        return (oh, ow)
    }
}

/// Max pool forward result: the pooled map and, per output element, the index `h * W + w` of the
/// chosen input element inside its (n, c) plane.
public struct MaxPoolResult: Sendable, Equatable {
    public var output: Tensor
    public var argmax: [Int32]
    public init(output: Tensor, argmax: [Int32]) { self.output = output; self.argmax = argmax }
}

/// Max pool forward. input [N, C, H, W] -> output [N, C, OH, OW] and argmax.
/// Ties keep the first element in the window scan order (rows, then columns); a NaN wins (the
/// last NaN of the window), as in PyTorch's CPU kernel.
public func maxPoolForward(input: Tensor, options: MaxPoolOptions = MaxPoolOptions()) throws -> MaxPoolResult {
    let (n, c, oh, ow) = try maxPoolOutputShape(input, options)
    try require(input.dim(2) * input.dim(3) <= Int(Int32.max), "max pool: plane \(input.dim(2))x\(input.dim(3)) too large for 32-bit indices")
    var argmax = [Int32](repeating: 0, count: n * c * oh * ow)
    let out = argmax.withUnsafeMutableBufferPointer { maxPoolWindows(input, options, argmax: DisjointWrites($0.baseAddress!)) }
    return MaxPoolResult(output: out, argmax: argmax)
}

/// Max pool forward without the argmax (inference): the output of `maxPoolForward`, the same
/// value in every window (a NaN wins as there), with no index array written.
public func maxPoolForwardValues(input: Tensor, options: MaxPoolOptions = MaxPoolOptions()) throws -> Tensor {
    _ = try maxPoolOutputShape(input, options)
    return maxPoolWindows(input, options, argmax: nil)
}

/// [N, C, OH, OW] of a max pool on `input`, after checking its rank.
private func maxPoolOutputShape(_ input: Tensor, _ options: MaxPoolOptions) throws -> (Int, Int, Int, Int) {
    try require(input.rank == 4, "max pool: input must be [N, C, H, W], got \(input.shape)")
    let (oh, ow) = try options.outputSize(height: input.dim(2), width: input.dim(3))
    return (input.dim(0), input.dim(1), oh, ow)
}

/// Every window's maximum (a NaN wins), and its index in the plane into `argmax` when given.
private func maxPoolWindows(_ input: Tensor, _ o: MaxPoolOptions, argmax am: DisjointWrites<Int32>?) -> Tensor {
    let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
    let (oh, ow) = try! o.outputSize(height: h, width: w)
    let stemWindows = o == MaxPoolOptions(kernel: 3, stride: 2, padding: 1)
    let ownStemPool = stemWindows && CPUFeatures.current.avx512
    // Every output element is written once below.
    return Tensor(shape: [n, c, oh, ow]) { yb in
    input.withUnsafeBufferPointer { xb in
        let x = SharedReads(xb.baseAddress!), y = DisjointWrites(yb.baseAddress!)
        parallelFor(n * c, grain: max(1, 4096 / max(1, oh * ow))) { planes in
            for p in planes {
                let xp = x + p * h * w, yp = y + p * oh * ow, ap = am.map { $0 + p * oh * ow }
                for oy in 0..<oh {
                    let y0 = oy * o.strideH - o.padH
                    let yLo = max(y0, 0), yHi = min(y0 + o.kernelH, h)
                    // The stem's 3x3 / 2 windows, 16 at a time (values only): in C on AVX-512
                    // (masked loads: every output of the row), else in Swift SIMD (the outputs
                    // whose loads stay inside the row; the scalar loop does the others).
                    if am == nil && ownStemPool {
                        dcn_stem_max_pool_row(xp, Int32(w), Int32(yLo), Int32(yHi), yp + oy * ow, Int32(ow))
                        continue
                    }
                    let done = am == nil && stemWindows ? stemRowMaxima(xp, w: w, rows: yLo..<yHi, into: yp + oy * ow, width: ow) : 0..<0
                    for ox in 0..<ow where !done.contains(ox) {
                        let x0 = ox * o.strideW - o.padW
                        let xLo = max(x0, 0), xHi = min(x0 + o.kernelW, w)
                        var best = -Float.infinity
                        var bestIndex = yLo * w + xLo
                        for iy in yLo..<yHi {
                            let line = xp + iy * w
                            for ix in xLo..<xHi {
                                let v = line[ix]
                                if v > best || v.isNaN { best = v; bestIndex = iy * w + ix }
                            }
                        }
                        yp[oy * ow + ox] = best
                        ap?[oy * ow + ox] = Int32(bestIndex)
                    }
                }
            }
        }
    }
    }
}

/// Outputs of one output row of a 3x3, stride 2, padding 1 max pool over the input `rows`, 16 at
/// a time, with the scalar loop's order and rule (rows, then columns; a larger value or a NaN
/// replaces). Returns the outputs it wrote: from 1 (output 0 touches the padding) while 16
/// outputs' loads stay inside the row; the scalar loop does the others.
@inline(__always)
private func stemRowMaxima(_ plane: UnsafePointer<Float>, w: Int, rows: Range<Int>, into out: UnsafeMutablePointer<Float>, width: Int) -> Range<Int> {
    // Output ox reads input columns 2ox - 1, 2ox, 2ox + 1: the even and odd halves of 32 floats
    // from 2ox - 1, and the even half of 32 floats from 2ox + 1 (read up to 2ox + 32 <= w - 1).
    var ox = 1
    while ox + 16 <= width && 2 * ox + 32 <= w - 1 {
        var best = SIMD16<Float>(repeating: -.infinity)
        for iy in rows {
            let line = UnsafeRawPointer(plane + iy * w)
            let left = line.loadUnaligned(fromByteOffset: (2 * ox - 1) * 4, as: SIMD32<Float>.self)
            let right = line.loadUnaligned(fromByteOffset: (2 * ox + 1) * 4, as: SIMD32<Float>.self)
            // Columns 2ox - 1, 2ox, 2ox + 1 in the scalar loop's order.
            let l = left.evenHalf, c = left.oddHalf, r = right.evenHalf
            best.replace(with: l, where: l .> best .| l .!= l)
            best.replace(with: c, where: c .> best .| c .!= c)
            best.replace(with: r, where: r .> best .| r .!= r)
        }
        UnsafeMutableRawPointer(out + ox).storeBytes(of: best, as: SIMD16<Float>.self)
        ox += 16
    }
    return 1..<ox
}

/// Max pool backward: each output gradient goes to its argmax, `dInput[n, c, argmax] += dOutput`.
/// dInput [N, C, H, W], dOutput [N, C, OH, OW]. One task per plane; overlapping windows add in
/// output order.
public func maxPoolBackward(dInput: inout Tensor, dOutput: Tensor, argmax: [Int32]) throws {
    try require(dInput.rank == 4 && dOutput.rank == 4,
                "max pool backward: dInput \(dInput.shape) and dOutput \(dOutput.shape) must be [N, C, H, W]")
    try require(dInput.shape[0] == dOutput.shape[0] && dInput.shape[1] == dOutput.shape[1],
                "max pool backward: dInput \(dInput.shape) and dOutput \(dOutput.shape) differ in N or C")
    try require(argmax.count == dOutput.count,
                "max pool backward: \(argmax.count) argmax indices for \(dOutput.count) output elements")
    let planes = dInput.shape[0] * dInput.shape[1]
    let hw = dInput.shape[2] * dInput.shape[3], ohw = dOutput.shape[2] * dOutput.shape[3]
    try require(argmax.allSatisfy { $0 >= 0 && Int($0) < hw }, "max pool backward: argmax index outside the \(hw)-element plane")
    dOutput.withUnsafeBufferPointer { gb in
    argmax.withUnsafeBufferPointer { ab in
    dInput.withUnsafeMutableBufferPointer { db in
        let g = SharedReads(gb.baseAddress!), am = SharedReads(ab.baseAddress!), d = DisjointWrites(db.baseAddress!)
        parallelFor(planes, grain: max(1, 4096 / max(1, ohw))) { range in
            for p in range {
                let dp = d + p * hw
                for i in 0..<ohw { dp[Int(am[p * ohw + i])] += g[p * ohw + i] }
            }
        }
    }}}
}

// MARK: - Global average pool

/// Global average pool forward: input [N, C, H, W] -> [N, C], the mean of each plane (summed in
/// Double).
public func globalAvgPoolForward(input: Tensor) throws -> Tensor {
    try require(input.rank == 4, "global average pool: input must be [N, C, H, W], got \(input.shape)")
    let (n, c) = (input.shape[0], input.shape[1]), hw = input.shape[2] * input.shape[3]
    try require(hw > 0, "global average pool: empty plane in input \(input.shape)")
    var out = Tensor(zeros: [n, c])
    input.withUnsafeBufferPointer { xb in
    out.withUnsafeMutableBufferPointer { yb in
        let x = SharedReads(xb.baseAddress!), y = DisjointWrites(yb.baseAddress!)
        parallelFor(n * c, grain: max(1, 4096 / hw)) { planes in
            for p in planes {
                var s = 0.0
                for i in 0..<hw { s += Double(x[p * hw + i]) }
                y[p] = Float(s / Double(hw))
            }
        }
    }}
    return out
}

/// Global average pool backward: from `y[n, c] = mean(x[n, c, :, :])`,
/// `dInput[n, c, h, w] += dOutput[n, c] / (H * W)`.
public func globalAvgPoolBackward(dInput: inout Tensor, dOutput: Tensor) throws {
    try require(dInput.rank == 4, "global average pool backward: dInput must be [N, C, H, W], got \(dInput.shape)")
    let (n, c) = (dInput.shape[0], dInput.shape[1]), hw = dInput.shape[2] * dInput.shape[3]
    try require(dOutput.shape == [n, c], "global average pool backward: dOutput must be [\(n), \(c)], got \(dOutput.shape)")
    let scale = 1 / Float(max(hw, 1))
    dOutput.withUnsafeBufferPointer { gb in
    dInput.withUnsafeMutableBufferPointer { db in
        let g = SharedReads(gb.baseAddress!), d = DisjointWrites(db.baseAddress!)
        parallelFor(n * c, grain: max(1, 4096 / max(hw, 1))) { planes in
            for p in planes {
                let v = g[p] * scale
                for i in 0..<hw { d[p * hw + i] += v }
            }
        }
    }}
}
