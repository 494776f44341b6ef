// Bilinear resizing of feature maps with half-pixel centres: DeepLab's upsampling of its score
// maps to the image (DCNv1's fixed bilinear deconvolution, kernel 2s, stride s, cropped by s/2,
// is this map away from the border; PyTorch's `F.interpolate(mode="bilinear",
// align_corners=False)` is it everywhere, and is the reference of the tests).
import DCNTensor

/// The sampling of one axis: output pixel o reads the input at u = (o + 0.5) * scale - 0.5 (input
/// pixels per output pixel), clamped at 0; it mixes input pixels `low` and `high` (the same at the
/// last pixel) with weights 1 - t and t, t = u - low.
struct ResizeAxis {
    let low: [Int], high: [Int], t: [Float]

    init(input: Int, output: Int, scale: Double) {
        var low = [Int](), high = [Int](), t = [Float]()
        for o in 0..<output {
            let u = max(0, (Double(o) + 0.5) * scale - 0.5)
            let l = min(Int(u), input - 1)
            low.append(l); high.append(min(l + 1, input - 1)); t.append(Float(u - Double(l)))
        }
        self.low = low; self.high = high; self.t = t
    }
}

/// Where the input of `bilinearResizeForward` is sampled: input pixels per output pixel along y
/// and x. nil takes input size / output size (PyTorch's rule when given an output size).
public struct ResizeScale: Sendable, Equatable {
    public var y: Double?, x: Double?
    public init(y: Double? = nil, x: Double? = nil) { self.y = y; self.x = x }
}

private func resizeAxes(input: [Int], height: Int, width: Int, scale: ResizeScale) throws -> (ResizeAxis, ResizeAxis) {
    try require(input.count == 4 && input[2] > 0 && input[3] > 0, "bilinear resize: input must be [N, C, h, w] with h, w > 0, got \(input)")
    try require(height > 0 && width > 0, "bilinear resize: output size \(height)x\(width) must be positive")
    let sy = scale.y ?? Double(input[2]) / Double(height), sx = scale.x ?? Double(input[3]) / Double(width)
    try require(sy > 0 && sx > 0 && sy.isFinite && sx.isFinite, "bilinear resize: scales \(sy), \(sx) must be positive")
    return (ResizeAxis(input: input[2], output: height, scale: sy), ResizeAxis(input: input[3], output: width, scale: sx))
}

/// Bilinear resize forward: input [N, C, h, w] -> [N, C, height, width],
/// `y[o, p] = (1-ty)((1-tx) x[l, m] + tx x[l, m+1]) + ty((1-tx) x[l+1, m] + tx x[l+1, m+1])` with the
/// rows and columns of `ResizeAxis`.
public func bilinearResizeForward(input: Tensor, height: Int, width: Int, scale: ResizeScale = ResizeScale()) throws -> Tensor {
    let (ay, ax) = try resizeAxes(input: input.shape, height: height, width: width, scale: scale)
    let (h, w) = (input.shape[2], input.shape[3]), planes = input.shape[0] * input.shape[1]
    var out = Tensor(zeros: [input.shape[0], input.shape[1], height, width])
    input.withUnsafeBufferPointer { xb in
    out.withUnsafeMutableBufferPointer { yb in
        let x = SharedReads(xb.baseAddress!), y = DisjointWrites(yb.baseAddress!)
        parallelFor(planes, grain: max(1, 16384 / (height * width))) { range in
            for p in range {
                let src = x + p * h * w, dst = p * height * width
                for o in 0..<height {
                    let r0 = src + ay.low[o] * w, r1 = src + ay.high[o] * w, ty = ay.t[o]
                    for q in 0..<width {
                        let (m0, m1, tx) = (ax.low[q], ax.high[q], ax.t[q])
                        let top = (1 - tx) * r0[m0] + tx * r0[m1], bottom = (1 - tx) * r1[m0] + tx * r1[m1]
                        y[dst + o * width + q] = (1 - ty) * top + ty * bottom
                    }
                }
            }
        }
    }}
    return out
}

/// Bilinear resize backward: adds into `dInput` [N, C, h, w] each output gradient spread over the
/// four input pixels with the forward's weights (the forward's transpose).
public func bilinearResizeBackward(dInput: inout Tensor, dOutput: Tensor, scale: ResizeScale = ResizeScale()) throws {
    try require(dOutput.rank == 4 && dInput.rank == 4 && Array(dOutput.shape[0..<2]) == Array(dInput.shape[0..<2]),
                "bilinear resize backward: dOutput \(dOutput.shape) and dInput \(dInput.shape) must be [N, C, ., .] with the same N, C")
    let (height, width) = (dOutput.shape[2], dOutput.shape[3])
    let (ay, ax) = try resizeAxes(input: dInput.shape, height: height, width: width, scale: scale)
    let (h, w) = (dInput.shape[2], dInput.shape[3]), planes = dInput.shape[0] * dInput.shape[1]
    dOutput.withUnsafeBufferPointer { gb in
    dInput.withUnsafeMutableBufferPointer { db in
        let g = SharedReads(gb.baseAddress!), d = DisjointWrites(db.baseAddress!)
        parallelFor(planes, grain: max(1, 16384 / (height * width))) { range in
            for p in range {
                let dst = p * h * w, src = g + p * height * width
                for o in 0..<height {
                    let r0 = dst + ay.low[o] * w, r1 = dst + ay.high[o] * w, ty = ay.t[o]
                    for q in 0..<width {
                        let (m0, m1, tx) = (ax.low[q], ax.high[q], ax.t[q]), v = src[o * width + q]
                        d[r0 + m0] += (1 - ty) * (1 - tx) * v; d[r0 + m1] += (1 - ty) * tx * v
                        d[r1 + m0] += ty * (1 - tx) * v; d[r1 + m1] += ty * tx * v
                    }
                }
            }
        }
    }}
}
