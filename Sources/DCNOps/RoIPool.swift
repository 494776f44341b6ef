// RoIPool (torchvision.ops.roi_pool): max pooling over quantised bins.
//
// For RoI r = (b, x1, y1, x2, y2): start = round(x1 * scale), end = round(x2 * scale) (half away
// from zero), size = max(end - start + 1, 1), bin = size / (ph, pw) in float (as torchvision);
//     rows of bin ph: [floor(ph * bin_h), ceil((ph + 1) * bin_h)) + start_y, clipped to [0, H]
//     out[r, c, ph, pw] = max over the bin (0 for an empty bin), argmax = h * W + w of the first
//     maximum in row-major order (-1 for an empty bin).
// Backward: dInput[b, c, argmax] += dOut[r, c, ph, pw] wherever argmax >= 0.
import DCNTensor

/// Parameters of `roiPoolForward` / `roiPoolBackward`.
public struct RoIPoolOptions: Sendable, Equatable {
    /// Output bins per RoI (rows, columns); both > 0.
    public var outputHeight: Int
    public var outputWidth: Int
    /// Multiplies the RoI coordinates (image -> feature map); > 0.
    public var spatialScale: Double

    public init(outputHeight: Int, outputWidth: Int, spatialScale: Double) {
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
        self.spatialScale = spatialScale
    }
}

/// RoIPool forward. input [N, C, H, W], rois [K, 5] -> output [K, C, ph, pw] and, for the
/// backward, argmax [K * C * ph * pw]: the index h * W + w inside the input plane, -1 if empty.
public func roiPoolForward(input: Tensor, rois: Tensor, options: RoIPoolOptions) throws -> (output: Tensor, argmax: [Int32]) {
    let g = try RoIGeometry(input: input.shape, rois: rois, outputHeight: options.outputHeight,
                            outputWidth: options.outputWidth, spatialScale: options.spatialScale,
                            samplingRatio: 0, op: "roiPool")
    try require(g.height * g.width <= Int(Int32.max), "roiPool: feature plane \(g.height)x\(g.width) too large")
    var output = Tensor(zeros: g.outputShape)
    var argmax = [Int32](repeating: -1, count: output.count)
    if output.count == 0 || input.count == 0 { return (output, argmax) }  // empty planes: empty bins
    let bins = roiPoolBins(g, rois: rois)
    let c = g.channels, hw = g.height * g.width, w = g.width, nb = g.bins
    let batchIndex = g.batchIndex
    // Every channel of a (RoI, bin) at once, from a channel-last copy: per channel the same
    // comparisons in the same (row-major) order as one plane at a time.
    output.withUnsafeMutableBufferPointer { out in
        argmax.withUnsafeMutableBufferPointer { arg in
            withChannelsLast(input) { pixelMajor in
                let dst = DisjointWrites(out.baseAddress!)
                let dstArg = DisjointWrites(arg.baseAddress!)
                let src = SharedReads(pixelMajor)
                parallelFor(g.roiCount * nb, grain: 4) { range in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: c) { best in
                        withUnsafeTemporaryAllocation(of: Int32.self, capacity: c) { bestIndex in
                            for item in range {
                                let r = item / nb, bin = item % nb
                                let box = bins[item]
                                let image = src + batchIndex[r] * hw * c
                                bestIndex.update(repeating: -1)
                                if box.h0 < box.h1 && box.w0 < box.w1 {
                                    best.update(repeating: -Float.greatestFiniteMagnitude)
                                    for h in box.h0..<box.h1 {
                                        for x in box.w0..<box.w1 {
                                            let pixel = image + (h * w + x) * c, index = Int32(h * w + x)
                                            keepLarger(pixel, index, best.baseAddress!, bestIndex.baseAddress!, c)
                                        }
                                    }
                                } else {
                                    best.update(repeating: 0)  // an empty bin
                                }
                                let o = r * c * nb + bin
                                for ch in 0..<c {
                                    dst[o + ch * nb] = best[ch]
                                    dstArg[o + ch * nb] = bestIndex[ch]
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return (output, argmax)
}

/// best[ch], bestIndex[ch] = pixel[ch], index where pixel[ch] > best[ch], for ch < c (8 lanes at a time).
@inline(__always)
private func keepLarger(_ pixel: UnsafePointer<Float>, _ index: Int32, _ best: UnsafeMutablePointer<Float>,
                        _ bestIndex: UnsafeMutablePointer<Int32>, _ c: Int) {
    var ch = 0
    let indices = SIMD8<Int32>(repeating: index)
    while ch + 8 <= c {
        let v = UnsafeRawPointer(pixel + ch).loadUnaligned(as: SIMD8<Float>.self)
        let b = UnsafeRawPointer(best + ch).loadUnaligned(as: SIMD8<Float>.self)
        let i = UnsafeRawPointer(bestIndex + ch).loadUnaligned(as: SIMD8<Int32>.self)
        let larger = v .> b
        UnsafeMutableRawPointer(best + ch).storeBytes(of: b.replacing(with: v, where: larger), as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(bestIndex + ch).storeBytes(of: i.replacing(with: indices, where: larger), as: SIMD8<Int32>.self)
        ch += 8
    }
    while ch < c {
        if pixel[ch] > best[ch] { best[ch] = pixel[ch]; bestIndex[ch] = index }
        ch += 1
    }
}

/// RoIPool backward: dInput [N, C, H, W] += dOutput routed to the argmax of each bin.
/// Deterministic: parallel over channels, each task walks the RoIs in order.
public func roiPoolBackward(dInput: inout Tensor, dOutput: Tensor, argmax: [Int32], rois: Tensor,
                            options: RoIPoolOptions) throws {
    let g = try RoIGeometry(input: dInput.shape, rois: rois, outputHeight: options.outputHeight,
                            outputWidth: options.outputWidth, spatialScale: options.spatialScale,
                            samplingRatio: 0, op: "roiPoolBackward")
    try require(dOutput.shape == g.outputShape,
                "roiPoolBackward: dOutput has shape \(dOutput.shape), expected \(g.outputShape)")
    try require(argmax.count == dOutput.count,
                "roiPoolBackward: argmax has \(argmax.count) entries, dOutput \(dOutput.count)")
    let hw = g.height * g.width
    try require(argmax.allSatisfy { $0 >= -1 && Int($0) < hw },
                "roiPoolBackward: argmax index outside the \(g.height)x\(g.width) plane")
    if dOutput.count == 0 || dInput.count == 0 { return }
    let c = g.channels, nb = g.bins
    let batchIndex = g.batchIndex
    dInput.withUnsafeMutableBufferPointer { dIn in
        dOutput.withUnsafeBufferPointer { dOut in
            argmax.withUnsafeBufferPointer { arg in
                let dst = DisjointWrites(dIn.baseAddress!)
                let src = SharedReads(dOut.baseAddress!)
                let index = SharedReads(arg.baseAddress!)
                parallelFor(c) { range in
                    for ch in range {
                        for r in 0..<g.roiCount {
                            let plane = dst + (batchIndex[r] * c + ch) * hw
                            let o = (r * c + ch) * nb
                            for bin in 0..<nb where index[o + bin] >= 0 {
                                plane[Int(index[o + bin])] += src[o + bin]
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A bin's clipped pixel rectangle [h0, h1) x [w0, w1).
struct PoolBin: Sendable { var h0: Int, h1: Int, w0: Int, w1: Int }

/// The quantised bins of every RoI, row-major per RoI.
func roiPoolBins(_ g: RoIGeometry, rois: Tensor) -> [PoolBin] {
    var bins = [PoolBin]()
    bins.reserveCapacity(g.roiCount * g.bins)
    for r in 0..<g.roiCount {
        // Swift's rounded() is half away from zero, like std::round.
        func q(_ i: Int) -> Int { Int((Double(rois.data[r * 5 + i]) * g.spatialScale).rounded()) }
        let startW = q(1), startH = q(2), endW = q(3), endH = q(4)
        let roiW = max(endW - startW + 1, 1), roiH = max(endH - startH + 1, 1)
        // In float, as torchvision (and onnxruntime's MaxRoiPool) compute them: in double,
        // 7 * (29 / 7) is above 29 and the last bin would take a row past the RoI.
        let binH = Float(roiH) / Float(g.pooledHeight), binW = Float(roiW) / Float(g.pooledWidth)
        for ph in 0..<g.pooledHeight {
            let h0 = min(max(Int((Float(ph) * binH).rounded(.down)) + startH, 0), g.height)
            let h1 = min(max(Int((Float(ph + 1) * binH).rounded(.up)) + startH, 0), g.height)
            for pw in 0..<g.pooledWidth {
                let w0 = min(max(Int((Float(pw) * binW).rounded(.down)) + startW, 0), g.width)
                let w1 = min(max(Int((Float(pw + 1) * binW).rounded(.up)) + startW, 0), g.width)
                bins.append(PoolBin(h0: h0, h1: h1, w0: w0, w1: w1))
            }
        }
    }
    return bins
}
