// RoIAlign (torchvision.ops.roi_align) and the bilinear sampling plan it shares with the
// deformable RoI pooling of DeformRoIPool.swift.
//
// For RoI r = (b, x1, y1, x2, y2), with o = 0.5 when aligned and 0 otherwise:
//     start = (x1 * scale - o, y1 * scale - o), size = (x2 - x1, y2 - y1) * scale
//     (legacy, aligned == false: size clamped to >= 1)
//     bin = size / (ph, pw); grid = samplingRatio, or ceil(size / (ph, pw)) when it is 0
//     y(ph, iy) = start_y + ph * bin_h + (iy + 0.5) * bin_h / grid_h          (x likewise)
//     out[r, c, ph, pw] = sum_{iy, ix} bilinear(input[b, c], y, x) / max(grid_h * grid_w, 1)
// bilinear is torchvision's RoIAlign rule: 0 when y < -1 or y > H (x likewise); y <= 0 is
// clamped to 0; a low corner at or past H - 1 collapses both corners onto row H - 1.
import DCNTensor

/// Parameters of `roiAlignForward` / `roiAlignBackward`.
public struct RoIAlignOptions: Sendable, Equatable {
    /// Output bins per RoI (rows, columns); both > 0.
    public var outputHeight: Int
    public var outputWidth: Int
    /// Multiplies the RoI coordinates (image -> feature map), e.g. 1/16; > 0.
    public var spatialScale: Double
    /// Sample points per bin along each axis; 0 = adaptive ceil(roi size / bins).
    public var samplingRatio: Int
    /// true: pixel-centre model (coordinates * scale - 0.5); false: legacy (RoI size >= 1).
    public var aligned: Bool

    public init(outputHeight: Int, outputWidth: Int, spatialScale: Double, samplingRatio: Int = 0, aligned: Bool = true) {
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
        self.spatialScale = spatialScale
        self.samplingRatio = samplingRatio
        self.aligned = aligned
    }
}

/// RoIAlign forward. input [N, C, H, W], rois [K, 5] -> output [K, C, outputHeight, outputWidth].
public func roiAlignForward(input: Tensor, rois: Tensor, options: RoIAlignOptions) throws -> Tensor {
    let geometry = try RoIGeometry(input: input.shape, rois: rois, outputHeight: options.outputHeight,
                                   outputWidth: options.outputWidth, spatialScale: options.spatialScale,
                                   samplingRatio: options.samplingRatio, op: "roiAlign")
    let plan = try RoISamplingPlan(geometry: geometry, rois: rois, aligned: options.aligned, offset: nil, gamma: 0)
    return roiSampleForward(input: input, plan: plan, mask: nil)
}

/// RoIAlign backward: adds d(sum(output * dOutput))/d(input) into dInput [N, C, H, W].
/// dOutput [K, C, outputHeight, outputWidth]. Deterministic: each task owns whole channel
/// planes of dInput and visits the RoIs, bins and samples in a fixed order.
public func roiAlignBackward(dInput: inout Tensor, dOutput: Tensor, rois: Tensor, options: RoIAlignOptions) throws {
    let geometry = try RoIGeometry(input: dInput.shape, rois: rois, outputHeight: options.outputHeight,
                                   outputWidth: options.outputWidth, spatialScale: options.spatialScale,
                                   samplingRatio: options.samplingRatio, op: "roiAlignBackward")
    try require(dOutput.shape == geometry.outputShape,
                "roiAlignBackward: dOutput has shape \(dOutput.shape), expected \(geometry.outputShape)")
    let plan = try RoISamplingPlan(geometry: geometry, rois: rois, aligned: options.aligned, offset: nil, gamma: 0)
    roiSampleBackwardInput(dInput: &dInput, dOutput: dOutput, plan: plan, mask: nil)
}

// MARK: - Shared validation and sampling plan

/// Sizes of one RoI op call, checked.
struct RoIGeometry: Sendable {
    let batch: Int, channels: Int, height: Int, width: Int
    let roiCount: Int, pooledHeight: Int, pooledWidth: Int
    let spatialScale: Double, samplingRatio: Int
    /// Batch index of every RoI, validated to be an integer in 0..<batch.
    let batchIndex: [Int]

    var bins: Int { pooledHeight * pooledWidth }
    var outputShape: [Int] { [roiCount, channels, pooledHeight, pooledWidth] }

    init(input shape: [Int], rois: Tensor, outputHeight: Int, outputWidth: Int, spatialScale: Double,
         samplingRatio: Int, op: String) throws {
        try require(shape.count == 4, "\(op): input must be [N, C, H, W], got \(shape)")
        try require(rois.rank == 2 && rois.dim(1) == 5,
                    "\(op): rois must be [K, 5] rows (batch_index, x1, y1, x2, y2), got \(rois.shape)")
        try require(outputHeight > 0 && outputWidth > 0,
                    "\(op): output size must be positive, got \(outputHeight)x\(outputWidth)")
        try require(spatialScale > 0 && spatialScale.isFinite, "\(op): spatial scale must be positive, got \(spatialScale)")
        try require(samplingRatio >= 0, "\(op): sampling ratio must be >= 0 (0 = adaptive), got \(samplingRatio)")
        batch = shape[0]; channels = shape[1]; height = shape[2]; width = shape[3]
        roiCount = rois.dim(0)
        pooledHeight = outputHeight; pooledWidth = outputWidth
        self.spatialScale = spatialScale
        self.samplingRatio = samplingRatio
        var indices = [Int]()
        indices.reserveCapacity(roiCount)
        for r in 0..<roiCount {
            let row = Array(rois.data[(r * 5)..<(r * 5 + 5)])
            try requireFinite(row.allSatisfy { $0.isFinite }, "\(op): RoI \(r) has a non-finite value \(row)")
            try require(row[1...].allSatisfy { abs(Double($0) * spatialScale) <= 1e7 },
                        "\(op): RoI \(r) coordinates \(Array(row[1...])) lie beyond 1e7 feature-map pixels")
            let b = row[0]
            try require(b == b.rounded() && b >= 0 && Int(b) < batch,
                        "\(op): RoI \(r) has batch index \(b), expected an integer in 0..<\(batch)")
            indices.append(Int(b))
        }
        batchIndex = indices
    }
}

/// One bilinear sample coordinate along one axis: the two neighbouring indices, their weights,
/// and d(coordinate actually used)/d(requested coordinate) (0 where the rule clamps it).
/// An out-of-band coordinate has zero weights, so every product with it vanishes.
struct AxisSample: Sendable {
    var low: Int32 = 0
    var high: Int32 = 0
    var wLow: Float = 0
    var wHigh: Float = 0
    var slope: Float = 0

    /// torchvision's RoIAlign rule for coordinate `c` on an axis of `size` pixels.
    @inline(__always)
    init(_ c: Double, size: Int) {
        if c < -1.0 || c > Double(size) || size <= 0 { return }
        // clamp(c, min: 0): the gradient passes for c >= 0 (torch.clamp), stops below.
        let clamped = c <= 0 ? 0 : c
        let lo = Int(clamped)
        if lo >= size - 1 {
            low = Int32(size - 1); high = low; wLow = 1; wHigh = 0; slope = 0
            return
        }
        let l = clamped - Double(lo)
        low = Int32(lo); high = Int32(lo + 1)
        wLow = Float(1 - l); wHigh = Float(l)
        slope = c < 0 ? 0 : 1
    }
    init() {}
}

/// The sample points of every (RoI, bin): per bin, `gridH` row samples and `gridW` column
/// samples whose outer product is the sampling grid. Built once, reused for every channel.
struct RoISamplingPlan: Sendable {
    let geometry: RoIGeometry
    /// Per RoI: grid size (clamped at 0) and 1 / max(gridH * gridW, 1).
    var gridH: [Int], gridW: [Int], inverseCount: [Float]
    /// Per RoI: first entry of the RoI in `ys` / `xs`; bin k's samples follow at k * gridH.
    var yBase: [Int], xBase: [Int]
    var ys: [AxisSample], xs: [AxisSample]
    /// Per RoI: d(bin start)/d(offset) = gamma * RoI width / height (deformable pooling only).
    var offsetScaleX: [Float], offsetScaleY: [Float]

    /// `offset`: [K, 2, ph, pw] (channel 0 = x, 1 = y) shifting each bin's start by
    /// gamma * roi size * offset; nil for plain RoIAlign.
    /// Throws when adaptive sampling of huge RoIs would need more than `maxSamples` axis samples.
    init(geometry g: RoIGeometry, rois: Tensor, aligned: Bool, offset: Tensor?, gamma: Double,
         maxSamples: Int = 1 << 25) throws {
        geometry = g
        let k = g.roiCount, bins = g.bins
        gridH = [Int](repeating: 0, count: k); gridW = gridH
        inverseCount = [Float](repeating: 1, count: k)
        yBase = gridH; xBase = gridH
        offsetScaleX = [Float](repeating: 0, count: k); offsetScaleY = offsetScaleX
        ys = []; xs = []
        let half = aligned ? 0.5 : 0.0
        for r in 0..<k {
            let row = r * 5
            let x1 = Double(rois.data[row + 1]) * g.spatialScale - half
            let y1 = Double(rois.data[row + 2]) * g.spatialScale - half
            let x2 = Double(rois.data[row + 3]) * g.spatialScale - half
            let y2 = Double(rois.data[row + 4]) * g.spatialScale - half
            var roiW = x2 - x1, roiH = y2 - y1
            if !aligned { roiW = max(roiW, 1); roiH = max(roiH, 1) }
            let binW = roiW / Double(g.pooledWidth), binH = roiH / Double(g.pooledHeight)
            let rawGH = g.samplingRatio > 0 ? g.samplingRatio : Int((roiH / Double(g.pooledHeight)).rounded(.up))
            let rawGW = g.samplingRatio > 0 ? g.samplingRatio : Int((roiW / Double(g.pooledWidth)).rounded(.up))
            let gh = max(rawGH, 0), gw = max(rawGW, 0)
            try require(ys.count + xs.count + (gh + gw) * bins <= maxSamples,
                        "RoI \(r): a \(gh)x\(gw) sampling grid per bin (adaptive sampling of a \(roiW)x\(roiH) RoI) "
                        + "exceeds \(maxSamples) samples in total; set a fixed sampling ratio")
            gridH[r] = gh; gridW[r] = gw
            inverseCount[r] = 1 / Float(max(gh * gw, 1))
            offsetScaleX[r] = Float(gamma * roiW); offsetScaleY[r] = Float(gamma * roiH)
            yBase[r] = ys.count; xBase[r] = xs.count
            for ph in 0..<g.pooledHeight {
                for pw in 0..<g.pooledWidth {
                    var startX = x1 + Double(pw) * binW
                    var startY = y1 + Double(ph) * binH
                    if let offset {
                        let o = ((r * 2) * g.pooledHeight + ph) * g.pooledWidth + pw
                        startX += gamma * roiW * Double(offset.data[o])
                        startY += gamma * roiH * Double(offset.data[o + bins])
                    }
                    for iy in 0..<gh {
                        ys.append(AxisSample(startY + (Double(iy) + 0.5) * binH / Double(gh), size: g.height))
                    }
                    for ix in 0..<gw {
                        xs.append(AxisSample(startX + (Double(ix) + 0.5) * binW / Double(gw), size: g.width))
                    }
                }
            }
        }
    }

    /// The bin's bilinear samples for every channel at once, on a channel-last image `image`
    /// ([H * W, C], C = `channels`): calls `body(a, b, c, d, sy, sx)` for each sample of the grid
    /// in order, with the rows of the four corners (low/high row, low/high column).
    @inline(__always)
    func forEachSample(_ image: UnsafePointer<Float>, channels: Int, roi r: Int, bin: Int,
                       _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, AxisSample, AxisSample) -> Void) {
        let w = geometry.width, gh = gridH[r], gw = gridW[r]
        let y0 = yBase[r] + bin * gh, x0 = xBase[r] + bin * gw
        for iy in 0..<gh {
            let sy = ys[y0 + iy]
            let rowLow = image + Int(sy.low) * w * channels, rowHigh = image + Int(sy.high) * w * channels
            for ix in 0..<gw {
                let sx = xs[x0 + ix]
                let xl = Int(sx.low) * channels, xh = Int(sx.high) * channels
                body(rowLow + xl, rowLow + xh, rowHigh + xl, rowHigh + xh, sy, sx)
            }
        }
    }

    /// sum[c] = sum over the bin's grid of bilinear(image[:, c], y, x) (not yet divided by the
    /// count), for the channels `sum` covers, from a channel-last image. Per channel the same
    /// additions in the same order as one channel plane at a time.
    @inline(__always)
    func sample(_ image: UnsafePointer<Float>, channels: Int, roi r: Int, bin: Int, into sum: UnsafeMutableBufferPointer<Float>) {
        sum.update(repeating: 0)
        forEachSample(image, channels: channels, roi: r, bin: bin) { a, b, c, d, sy, sx in
            for ch in sum.indices {
                sum[ch] += sy.wLow * (sx.wLow * a[ch] + sx.wHigh * b[ch]) + sy.wHigh * (sx.wLow * c[ch] + sx.wHigh * d[ch])
            }
        }
    }

    /// The sampled sums (as `sample`) together with their derivatives along x and y (for offset gradients).
    @inline(__always)
    func sampleWithGradient(_ image: UnsafePointer<Float>, channels: Int, roi r: Int, bin: Int, value: UnsafeMutableBufferPointer<Float>,
                            dx: UnsafeMutablePointer<Float>, dy: UnsafeMutablePointer<Float>) {
        value.update(repeating: 0)
        dx.update(repeating: 0, count: value.count); dy.update(repeating: 0, count: value.count)
        forEachSample(image, channels: channels, roi: r, bin: bin) { a, b, c, d, sy, sx in
            for ch in value.indices {
                let top = sx.wLow * a[ch] + sx.wHigh * b[ch], bottom = sx.wLow * c[ch] + sx.wHigh * d[ch]
                value[ch] += sy.wLow * top + sy.wHigh * bottom
                dy[ch] += sy.slope * (bottom - top)
                dx[ch] += sx.slope * (sy.wLow * (b[ch] - a[ch]) + sy.wHigh * (d[ch] - c[ch]))
            }
        }
    }

    /// Adds g[c] * d(sample sum)/d(image[:, c]) into the channel-last image for the channels `g`
    /// covers (`image` points at the first of them).
    @inline(__always)
    func scatter(_ g: UnsafeBufferPointer<Float>, into image: UnsafeMutablePointer<Float>, channels: Int, roi r: Int, bin: Int) {
        forEachSample(UnsafePointer(image), channels: channels, roi: r, bin: bin) { a, b, c, d, sy, sx in
            let (a, b, c, d) = (UnsafeMutablePointer(mutating: a), UnsafeMutablePointer(mutating: b),
                                UnsafeMutablePointer(mutating: c), UnsafeMutablePointer(mutating: d))
            // The corners of a clamped sample coincide: per channel these four additions keep
            // their order whichever they are.
            for ch in g.indices { a[ch] += g[ch] * sy.wLow * sx.wLow }
            for ch in g.indices { b[ch] += g[ch] * sy.wLow * sx.wHigh }
            for ch in g.indices { c[ch] += g[ch] * sy.wHigh * sx.wLow }
            for ch in g.indices { d[ch] += g[ch] * sy.wHigh * sx.wHigh }
        }
    }
}

/// [N, C, P] -> [N, P, C] (`back`: the reverse), in tiles of 32 x 32 so both sides stream through the cache.
func transposeChannels(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, images: Int, channels c: Int, pixels p: Int,
                       back: Bool = false) {
    let tile = 32
    let tilesC = (c + tile - 1) / tile, tilesP = (p + tile - 1) / tile
    let source = SharedReads(x), target = DisjointWrites(out)
    parallelFor(images * tilesP, grain: 4) { range in
        for item in range {
            let n = item / tilesP, p0 = (item % tilesP) * tile
            for tc in 0..<tilesC {
                let c0 = tc * tile
                for ch in c0 ..< min(c, c0 + tile) {
                    for px in p0 ..< min(p, p0 + tile) {
                        let planar = (n * c + ch) * p + px, pixelMajor = (n * p + px) * c + ch
                        if back { target[planar] = source[pixelMajor] } else { target[pixelMajor] = source[planar] }
                    }
                }
            }
        }
    }
}

/// `body` with `input` [N, C, H, W] copied channel-last ([N, H * W, C]).
func withChannelsLast<R>(_ input: Tensor, _ body: (UnsafePointer<Float>) -> R) -> R {
    let n = input.dim(0), c = input.dim(1), hw = input.count / max(1, n * c)
    return withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, input.count)) { t in
        input.withUnsafeBufferPointer { transposeChannels($0.baseAddress!, t.baseAddress!, images: n, channels: c, pixels: hw) }
        return body(UnsafePointer(t.baseAddress!))
    }
}

/// out[r, c, bin] = sample / count (* mask[r, bin]), parallel over (RoI, bin) pairs, all channels
/// of a pair at once from a channel-last copy of the input.
func roiSampleForward(input: Tensor, plan: RoISamplingPlan, mask: Tensor?) -> Tensor {
    let g = plan.geometry
    var output = Tensor(zeros: g.outputShape)
    if output.count == 0 || input.count == 0 { return output }
    let c = g.channels, hw = g.height * g.width, bins = g.bins
    let batchIndex = g.batchIndex
    let maskData = mask?.data
    output.withUnsafeMutableBufferPointer { out in
        withChannelsLast(input) { pixelMajor in
            let dst = DisjointWrites(out.baseAddress!)
            let src = SharedReads(pixelMajor)
            parallelFor(g.roiCount * bins, grain: 4) { range in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: c) { sum in
                    for item in range {
                        let r = item / bins, bin = item % bins
                        plan.sample(src + batchIndex[r] * hw * c, channels: c, roi: r, bin: bin, into: sum)
                        let scale = plan.inverseCount[r]
                        let o = r * c * bins + bin
                        if let maskData {
                            let m = maskData[item]
                            for ch in 0..<c { dst[o + ch * bins] = sum[ch] * scale * m }
                        } else {
                            for ch in 0..<c { dst[o + ch * bins] = sum[ch] * scale }
                        }
                    }
                }
            }
        }
    }
    return output
}

/// dInput += scatter of dOutput / count (* mask), on a channel-last copy of dInput. Parallel over
/// blocks of channels: a task owns its channels of every pixel and walks the RoIs, bins and
/// samples in order, so the result does not depend on threads (and each element receives the same
/// additions in the same order as when one channel plane is scattered at a time).
func roiSampleBackwardInput(dInput: inout Tensor, dOutput: Tensor, plan: RoISamplingPlan, mask: Tensor?) {
    let g = plan.geometry
    if dOutput.count == 0 || dInput.count == 0 { return }
    let n = dInput.dim(0), c = g.channels, hw = g.height * g.width, bins = g.bins
    let batchIndex = g.batchIndex
    let maskData = mask?.data
    let block = 16
    dInput.withUnsafeMutableBufferPointer { dIn in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: dIn.count) { pixelMajor in
            transposeChannels(dIn.baseAddress!, pixelMajor.baseAddress!, images: n, channels: c, pixels: hw)
            dOutput.withUnsafeBufferPointer { dOut in
                let dst = DisjointWrites(pixelMajor.baseAddress!)
                let src = SharedReads(dOut.baseAddress!)
                parallelFor((c + block - 1) / block) { range in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { gv in
                        for b in range {
                            let c0 = b * block, width = min(block, c - c0)
                            let slice = UnsafeBufferPointer(rebasing: UnsafeBufferPointer(gv)[0..<width])
                            for r in 0..<g.roiCount {
                                let image = dst + batchIndex[r] * hw * c + c0
                                let scale = plan.inverseCount[r]
                                for bin in 0..<bins {
                                    var any = false
                                    for j in 0..<width {
                                        var v = src[(r * c + c0 + j) * bins + bin] * scale
                                        if let maskData { v *= maskData[r * bins + bin] }
                                        gv[j] = v
                                        any = any || v != 0
                                    }
                                    if any { plan.scatter(slice, into: image, channels: c, roi: r, bin: bin) }
                                }
                            }
                        }
                    }
                }
            }
            transposeChannels(pixelMajor.baseAddress!, dIn.baseAddress!, images: n, channels: c, pixels: hw, back: true)
        }
    }
}
