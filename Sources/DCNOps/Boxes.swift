// Box utilities on (x1, y1, x2, y2) boxes: non-maximum suppression (torchvision.ops.nms) and
// the pairwise IoU matrix (torchvision.ops.box_iou). Areas are (x2 - x1) * (y2 - y1), no +1.
import DCNTensor

/// Greedy non-maximum suppression, torchvision semantics: visit boxes by descending score
/// (ties in input order), keep a box unless a kept box overlaps it with IoU > iouThreshold.
/// boxes [K, 4], scores [K] -> kept indices into the input, by descending score.
/// `maxKept` stops early after that many boxes (the same prefix as the full result).
public func nms(boxes: Tensor, scores: Tensor, iouThreshold: Double, maxKept: Int? = nil) throws -> [Int] {
    try require(boxes.rank == 2 && boxes.dim(1) == 4, "nms: boxes must be [K, 4] (x1, y1, x2, y2), got \(boxes.shape)")
    try require(scores.shape == [boxes.dim(0)], "nms: scores must be [\(boxes.dim(0))], got \(scores.shape)")
    try require(!iouThreshold.isNaN, "nms: IoU threshold is NaN")
    try require(!scores.data.contains { $0.isNaN }, "nms: scores contain NaN")
    if let maxKept { try require(maxKept >= 0, "nms: maxKept must be >= 0, got \(maxKept)") }
    let n = boxes.dim(0)
    let limit = maxKept ?? n
    if n == 0 || limit == 0 { return [] }

    // Descending score; equal scores keep input order (a stable sort).
    let order = scores.withUnsafeBufferPointer { s in
        (0..<n).sorted { s[$0] > s[$1] || (s[$0] == s[$1] && $0 < $1) }
    }
    // Boxes in visiting order, one array per coordinate, so the inner loop vectorises.
    var x1 = [Float](repeating: 0, count: n), y1 = x1, x2 = x1, y2 = x1, area = x1
    for (k, i) in order.enumerated() {
        x1[k] = boxes.data[i * 4]; y1[k] = boxes.data[i * 4 + 1]
        x2[k] = boxes.data[i * 4 + 2]; y2[k] = boxes.data[i * 4 + 3]
        area[k] = (x2[k] - x1[k]) * (y2[k] - y1[k])
    }
    // torchvision compares the float IoU with the double threshold. The same test in float:
    // iou > t  <=>  iou > (largest float <= t), which keeps the inner loop in float lanes.
    var threshold = Float(iouThreshold)
    if Double(threshold) > iouThreshold { threshold = threshold.nextDown }
    var suppressed = [UInt32](repeating: 0, count: n)  // 32-bit lanes like the floats
    var kept = [Int]()
    x1.withUnsafeBufferPointer { x1 in
    y1.withUnsafeBufferPointer { y1 in
    x2.withUnsafeBufferPointer { x2 in
    y2.withUnsafeBufferPointer { y2 in
    area.withUnsafeBufferPointer { area in
    suppressed.withUnsafeMutableBufferPointer { suppressed in
        for i in 0..<n where suppressed[i] == 0 {
            kept.append(order[i])
            if kept.count >= limit { break }
            let ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iArea = area[i]
            // Branch-free: marking an already suppressed box again changes nothing.
            for j in (i + 1)..<n {
                let w = max(0, min(ix2, x2[j]) - max(ix1, x1[j]))
                let h = max(0, min(iy2, y2[j]) - max(iy1, y1[j]))
                let inter = w * h
                let iou = inter / (iArea + area[j] - inter)
                suppressed[j] |= iou > threshold ? 1 : 0
            }
        }
    }}}}}}
    return kept
}

/// NMS applied independently per category (torchvision.ops.batched_nms): boxes of different
/// categories never suppress each other. Returns kept indices by descending score.
public func batchedNMS(boxes: Tensor, scores: Tensor, categories: [Int], iouThreshold: Double) throws -> [Int] {
    try require(boxes.rank == 2 && boxes.dim(1) == 4, "batchedNMS: boxes must be [K, 4], got \(boxes.shape)")
    try require(categories.count == boxes.dim(0),
                "batchedNMS: \(categories.count) categories for \(boxes.dim(0)) boxes")
    if boxes.dim(0) == 0 { return [] }
    // Shift each category's boxes to a disjoint region (the coordinate trick of torchvision).
    let span = (boxes.data.max() ?? 0) + 1
    var shifted = boxes
    for i in 0..<categories.count {
        let shift = Float(categories[i]) * span
        for k in 0..<4 { shifted.data[i * 4 + k] += shift }
    }
    return try nms(boxes: shifted, scores: scores, iouThreshold: iouThreshold)
}

/// Pairwise IoU (torchvision.ops.box_iou): a [N, 4], b [M, 4] -> [N, M].
public func boxIoU(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    try require(a.rank == 2 && a.dim(1) == 4, "boxIoU: first boxes must be [N, 4], got \(a.shape)")
    try require(b.rank == 2 && b.dim(1) == 4, "boxIoU: second boxes must be [M, 4], got \(b.shape)")
    let n = a.dim(0), m = b.dim(0)
    var out = Tensor(zeros: [n, m])
    if n == 0 || m == 0 { return out }
    out.withUnsafeMutableBufferPointer { o in
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let dst = DisjointWrites(o.baseAddress!)
                let boxesA = SharedReads(pa.baseAddress!), boxesB = SharedReads(pb.baseAddress!)
                parallelFor(n, grain: max(1, 4096 / max(m, 1))) { rows in
                    for i in rows {
                        let ax1 = boxesA[i * 4], ay1 = boxesA[i * 4 + 1], ax2 = boxesA[i * 4 + 2], ay2 = boxesA[i * 4 + 3]
                        let areaA = (ax2 - ax1) * (ay2 - ay1)
                        for j in 0..<m {
                            let bx1 = boxesB[j * 4], by1 = boxesB[j * 4 + 1], bx2 = boxesB[j * 4 + 2], by2 = boxesB[j * 4 + 3]
                            let areaB = (bx2 - bx1) * (by2 - by1)
                            let w = max(0, min(ax2, bx2) - max(ax1, bx1))
                            let h = max(0, min(ay2, by2) - max(ay1, by1))
                            let inter = w * h
                            dst[i * m + j] = inter / (areaA + areaB - inter)
                        }
                    }
                }
            }
        }
    }
    return out
}
