// How far a deformable convolution has moved its sampling points: what its forward passes
// sampled, tallied so that several images (replicas, batches) add up, and summarised as the
// statistics a training log shows.
//
// Tap k = (ky, kx) of a K x K kernel with dilation d samples output pixel p at
//   p_k = p * stride - padding + d * (ky, kx) + Δp_k      (Δp_k = (offset[2k], offset[2k+1]) = (dy, dx))
// in the layer's input pixels; one input pixel is `inputStride` image pixels.
// - |offset|: the length of Δp_k.
// - Effective dilation (DCNv1, Section 5.1 and Table 2): the mean distance between the sampling
//   locations of adjacent taps (left-right and up-down neighbours in the kernel), here in image
//   pixels. A regular kernel has d * inputStride.
// - Modulation (DCNv2): the sigmoid mask m_k in (0, 1) that scales each sample.
// Deformable RoI pooling moves bin (ph, pw) of a RoI by gamma * (roi_w * offset_x, roi_h * offset_y)
// image pixels: its |offset| and modulation are tallied the same way (it has no kernel, so no
// effective dilation).
import DCNTensor
import Dispatch

/// A part that moves its sampling points and can tally them: a deformable convolution, or the
/// deformable RoI pooling.
public protocol DeformationSource: AnyObject {
    /// The name its statistics are logged under (`backbone.layer3.0.conv2`, `roi_heads.pooler`).
    var deformationName: String { get }
    /// Image pixels per input pixel.
    var inputStride: Int { get }
    /// While set, each forward pass in training adds its sampling points here.
    var tally: DeformationTally? { get set }
    /// The weights that compute the offsets (their update size is logged).
    var offsetBranchParameters: [Parameter] { get }
}

/// Sums over the sampling points a deformable layer's forward passes saw.
public struct DeformationTally: Sendable, Equatable {
    /// |offset| histogram, in bins of 1/32 input pixel; the last bin holds everything beyond 64 px.
    public static let binsPerPixel = 32.0
    public static let binCount = 64 * 32 + 1

    public var samples = 0
    public var offsetLengthSum = 0.0
    public var offsetHistogram = [Int](repeating: 0, count: DeformationTally.binCount)
    public var adjacentPairs = 0
    public var adjacentDistanceSum = 0.0
    public var masks = 0
    public var maskSum = 0.0
    /// Modulation values under 0.1 (taps nearly switched off).
    public var masksBelowTenth = 0
    /// Seconds spent tallying (the statistics' own cost, summed over the threads that tallied).
    public var seconds = 0.0

    public init() {}

    /// Adds one forward pass: `offset` [N, 2GK, H, W] and `mask` [N, GK, H, W] (nil in DCNv1) of a
    /// `kernel` x `kernel` convolution with `dilation`.
    public mutating func add(offset: Tensor, mask: Tensor?, kernel: Int, dilation: Int) {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        let n = offset.dim(0), taps = kernel * kernel, groups = offset.dim(1) / (2 * taps), plane = offset.dim(2) * offset.dim(3)
        let d = Double(dilation)
        offset.withUnsafeBufferPointer { o in
            for b in 0..<n {
                for g in 0..<groups {
                    func row(_ k: Int) -> Int { Self.offsetRow(image: b, group: g, tap: k, groups: groups, taps: taps, plane: plane) }
                    for k in 0..<taps {
                        let r = row(k)
                        for p in 0..<plane {
                            let length = (Double(o[r + p]) * Double(o[r + p]) + Double(o[r + plane + p]) * Double(o[r + plane + p])).squareRoot()
                            offsetLengthSum += length
                            offsetHistogram[Self.bin(length)] += 1
                        }
                    }
                    samples += taps * plane
                }
            }
        }
        // Adjacent pairs: 2 K (K - 1) per group and pixel.
        let pairsPerPixel = groups * 2 * kernel * (kernel - 1)
        for v in Self.effectiveDilations(offset: offset, kernel: kernel, dilation: dilation) { adjacentDistanceSum += v * Double(pairsPerPixel) }
        adjacentPairs += n * plane * pairsPerPixel
        if let mask {
            mask.withUnsafeBufferPointer { m in
                for v in m {
                    maskSum += Double(v)
                    if v < 0.1 { masksBelowTenth += 1 }
                }
            }
            masks += mask.count
        }
    }

    /// Adds one deformable RoI pooling: `offset` [K, 2, S, S] (x, then y, in RoI sizes), `mask`
    /// [K, 1, S, S] or nil, `rois` [K, 5] in image pixels, on features of `spatialScale`.
    public mutating func addPooling(offset: Tensor, mask: Tensor?, rois: Tensor, gamma: Float, spatialScale: Float) {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        let k = offset.dim(0), bins = offset.dim(2) * offset.dim(3)
        for r in 0..<k {
            let w = Double(rois.data[r * 5 + 3] - rois.data[r * 5 + 1]), h = Double(rois.data[r * 5 + 4] - rois.data[r * 5 + 2])
            for b in 0..<bins {
                // In input pixels (the pooled feature map's).
                let dx = Double(gamma) * w * Double(offset.data[(r * 2) * bins + b]) * Double(spatialScale)
                let dy = Double(gamma) * h * Double(offset.data[(r * 2 + 1) * bins + b]) * Double(spatialScale)
                let length = (dx * dx + dy * dy).squareRoot()
                offsetLengthSum += length
                offsetHistogram[Self.bin(length)] += 1
            }
        }
        samples += k * bins
        if let mask {
            for v in mask.data {
                maskSum += Double(v)
                if v < 0.1 { masksBelowTenth += 1 }
            }
            masks += mask.count
        }
    }

    /// Where tap k's Δp starts in an offset tensor `[N, 2GK, H, W]` (torchvision's layout): dy of
    /// pixel p at `row + p`, dx at `row + plane + p`.
    static func offsetRow(image b: Int, group g: Int, tap k: Int, groups: Int, taps: Int, plane: Int) -> Int {
        ((b * groups + g) * 2 * taps + 2 * k) * plane
    }

    /// The effective dilation at each output pixel, in input pixels: `[N * H * W]`, the mean over
    /// the offset groups and the adjacent tap pairs of the distance between their sampling locations.
    public static func effectiveDilations(offset: Tensor, kernel: Int, dilation: Int) -> [Double] {
        let n = offset.dim(0), taps = kernel * kernel, groups = offset.dim(1) / (2 * taps), plane = offset.dim(2) * offset.dim(3)
        let d = Double(dilation), pairs = Double(groups * 2 * kernel * (kernel - 1))
        var out = [Double](repeating: 0, count: n * plane)
        offset.withUnsafeBufferPointer { o in
            for b in 0..<n {
                for g in 0..<groups {
                    func row(_ k: Int) -> Int { Self.offsetRow(image: b, group: g, tap: k, groups: groups, taps: taps, plane: plane) }
                    // Adjacent taps: (ky, kx)-(ky, kx+1) and (ky, kx)-(ky+1, kx).
                    for ky in 0..<kernel {
                        for kx in 0..<kernel {
                            for (ny, nx) in [(ky, kx + 1), (ky + 1, kx)] where ny < kernel && nx < kernel {
                                let a = row(ky * kernel + kx), c = row(ny * kernel + nx)
                                let gridY = d * Double(ny - ky), gridX = d * Double(nx - kx)
                                for p in 0..<plane {
                                    let dy = gridY + Double(o[c + p]) - Double(o[a + p])
                                    let dx = gridX + Double(o[c + plane + p]) - Double(o[a + plane + p])
                                    out[b * plane + p] += (dy * dy + dx * dx).squareRoot()
                                }
                            }
                        }
                    }
                }
            }
        }
        return out.map { $0 / pairs }
    }

    /// The histogram bin of an |offset| (the last one for anything beyond 64 px, and for a
    /// non-finite length of a diverging run, which the divergence checks then stop).
    static func bin(_ length: Double) -> Int {
        let position = length * binsPerPixel
        return position.isFinite && position < Double(binCount - 1) ? Int(position) : binCount - 1
    }

    public mutating func merge(_ other: DeformationTally) {
        samples += other.samples
        offsetLengthSum += other.offsetLengthSum
        for i in offsetHistogram.indices { offsetHistogram[i] += other.offsetHistogram[i] }
        adjacentPairs += other.adjacentPairs
        adjacentDistanceSum += other.adjacentDistanceSum
        masks += other.masks
        maskSum += other.maskSum
        masksBelowTenth += other.masksBelowTenth
        seconds += other.seconds
    }

    /// The statistics, `inputStride` image pixels to an input pixel: `offset_mean`, `offset_p95`
    /// (input pixels), `offset_mean_image_px`, `offset_p95_image_px`, `effective_dilation_image_px`
    /// (convolutions) and, with modulation, `modulation_mean` and `modulation_below_0.1`. Empty before any sample.
    public func summary(inputStride: Int) -> [(name: String, value: Double)] {
        guard samples > 0 else { return [] }
        let mean = offsetLengthSum / Double(samples)
        // The 95th percentile, to the histogram's 1/32 px: the lower edge of the bin where the
        // cumulative count reaches 95 % (0 while every offset is under 1/32 px).
        var cumulative = 0, p95 = 0.0
        for (i, count) in offsetHistogram.enumerated() {
            cumulative += count
            if Double(cumulative) >= 0.95 * Double(samples) {
                p95 = Double(i) / Self.binsPerPixel
                break
            }
        }
        let stride = Double(inputStride)
        var out: [(String, Double)] = [("offset_mean", mean), ("offset_p95", p95), ("offset_mean_image_px", mean * stride),
                                       ("offset_p95_image_px", p95 * stride)]
        if adjacentPairs > 0 { out.append(("effective_dilation_image_px", adjacentDistanceSum / Double(adjacentPairs) * stride)) }
        if masks > 0 {
            out += [("modulation_mean", maskSum / Double(masks)), ("modulation_below_0.1", Double(masksBelowTenth) / Double(masks))]
        }
        // A diverging run's sums can overflow; metrics.jsonl holds finite numbers only.
        return out.filter { $0.1.isFinite }
    }
}
