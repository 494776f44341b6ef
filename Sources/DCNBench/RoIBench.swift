// dcn-bench roi: RoIAlign, RoIPool and modulated deformable RoI pooling (fwd, bwd) at the
// detector's size, and NMS at the RPN's pre-NMS size.
import DCNOps
import DCNTensor

/// One timed measurement of `dcn-bench roi`.
public struct RoITiming: Sendable, Codable {
    public let op: String          // "roi_align", "roi_pool", "mdpool" or "nms"
    public let pass: String?       // "fwd" or "bwd" (nil for nms, which has no backward)
    public let rois: Int?
    public let channels: Int?
    public let height: Int?
    public let width: Int?
    public let boxes: Int?         // nms only
    public let iou: Double?        // nms only: the IoU threshold
    public let kept: Int?          // nms only: boxes kept
    public let threads: Int
    public let ms: Double
}

/// Times the RoI ops on `rois` RoIs over a [1, channels, height, width] feature map at stride 16
/// (7x7 bins, 2x2 samples per bin, RoIAlign aligned, mdpool gamma 0.1), each forward and
/// backward, then NMS at IoU 0.7 on `boxes` RPN-like proposals. Each figure is the median of
/// `repeats` runs after a warm-up. `report` is called with each measurement as soon as it is known.
///
/// The inputs are fixed by seeds: features ~N(0, 1); RoI corners x ~ U(0, 1200), y ~ U(0, 700)
/// and sides ~ U(16, 400) image pixels (scaled by width / 84 and height / 50 for other map
/// sizes); mdpool offsets ~N(0, 0.3), masks ~U(0, 1); output gradients ~N(0, 1). NMS boxes are
/// 8-300 px in an 800x1216 image with U(0, 1) scores.
public func runRoIBenchmark(rois k: Int = 512, channels c: Int = 256, height: Int = 50, width: Int = 84,
                            boxes boxCount: Int = 12_000, repeats: Int = 5, report: (RoITiming) -> Void) throws {
    let threads = Threads.count
    let bins = 7, stride = 16.0, iou = 0.7

    var rng = SeededGenerator(seed: 41)
    let input = Tensor.normal([1, c, height, width], using: &rng)
    let sx = Float(width) / 84, sy = Float(height) / 50
    var roiData = [Float]()
    roiData.reserveCapacity(k * 5)
    for _ in 0..<k {
        let x = rng.uniform(0, 1200 * sx), y = rng.uniform(0, 700 * sy)
        roiData += [0, x, y, x + rng.uniform(16 * sx, 400 * sx), y + rng.uniform(16 * sy, 400 * sy)]
    }
    let rois = try Tensor(shape: [k, 5], data: roiData)
    let dOutput = Tensor.normal([k, c, bins, bins], using: &rng)
    let offset = Tensor.normal([k, 2, bins, bins], std: 0.3, using: &rng)
    let mask = Tensor.uniform([k, 1, bins, bins], using: &rng)

    func record(_ op: String, _ pass: String, _ ms: Double) {
        report(RoITiming(op: op, pass: pass, rois: k, channels: c, height: height, width: width,
                         boxes: nil, iou: nil, kept: nil, threads: threads, ms: ms))
    }

    let align = RoIAlignOptions(outputHeight: bins, outputWidth: bins, spatialScale: 1 / stride, samplingRatio: 2, aligned: true)
    record("roi_align", "fwd", try medianMilliseconds(repeats: repeats) {
        _ = try roiAlignForward(input: input, rois: rois, options: align)
    })
    record("roi_align", "bwd", try medianMilliseconds(repeats: repeats) {
        var dInput = Tensor(zeros: input.shape)
        try roiAlignBackward(dInput: &dInput, dOutput: dOutput, rois: rois, options: align)
    })

    let pool = RoIPoolOptions(outputHeight: bins, outputWidth: bins, spatialScale: 1 / stride)
    let (_, argmax) = try roiPoolForward(input: input, rois: rois, options: pool)
    record("roi_pool", "fwd", try medianMilliseconds(repeats: repeats) {
        _ = try roiPoolForward(input: input, rois: rois, options: pool)
    })
    record("roi_pool", "bwd", try medianMilliseconds(repeats: repeats) {
        var dInput = Tensor(zeros: input.shape)
        try roiPoolBackward(dInput: &dInput, dOutput: dOutput, argmax: argmax, rois: rois, options: pool)
    })

    let deform = DeformRoIPoolOptions(outputHeight: bins, outputWidth: bins, spatialScale: 1 / stride, samplingRatio: 2, gamma: 0.1)
    record("mdpool", "fwd", try medianMilliseconds(repeats: repeats) {
        _ = try deformRoIPoolForward(input: input, rois: rois, offset: offset, mask: mask, options: deform)
    })
    record("mdpool", "bwd", try medianMilliseconds(repeats: repeats) {
        var dInput = Tensor(zeros: input.shape), dOffset = Tensor(zeros: offset.shape), dMask = Tensor(zeros: mask.shape)
        try modulatedDeformRoIPoolBackward(dInput: &dInput, dOffset: &dOffset, dMask: &dMask, dOutput: dOutput,
                                           input: input, rois: rois, offset: offset, mask: mask, options: deform)
    })

    let (boxes, scores) = randomProposals(count: boxCount, seed: 5)
    var kept = 0
    let nmsMs = try medianMilliseconds(repeats: repeats) {
        kept = try nms(boxes: boxes, scores: scores, iouThreshold: iou).count
    }
    report(RoITiming(op: "nms", pass: nil, rois: nil, channels: nil, height: nil, width: nil,
                     boxes: boxCount, iou: iou, kept: kept, threads: threads, ms: nmsMs))
}

/// RPN-like proposals: `count` boxes of 8-300 px in an 800x1216 image, U(0, 1) scores.
public func randomProposals(count: Int, seed: UInt64) -> (boxes: Tensor, scores: Tensor) {
    var rng = SeededGenerator(seed: seed)
    var data = [Float]()
    data.reserveCapacity(count * 4)
    for _ in 0..<count {
        let x = rng.uniform(0, 1216), y = rng.uniform(0, 800)
        data += [x, y, x + rng.uniform(8, 300), y + rng.uniform(8, 300)]
    }
    return (try! Tensor(shape: [count, 4], data: data), Tensor.uniform([count], using: &rng))
}
