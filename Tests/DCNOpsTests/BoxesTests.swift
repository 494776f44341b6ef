// NMS and the box IoU matrix: torchvision's fixture and hand-made cases (timing: `dcn-bench roi`).
import DCNBench
import DCNVerify
import DCNOps
import DCNTensor
import TestSupport
import Testing

@Test func nmsFixture() throws {
    let result = try verifyFixture(path: fixturePath("ops/nms.safetensors"))
    #expect(result.worst == 0, "kept indices differ from torchvision")
}

@Test func nmsKeepsTiesInInputOrder() throws {
    // Boxes 0, 1 and 3 coincide; 1 and 3 tie with the best score, so 1 (earlier) is kept.
    let boxes = try Tensor(shape: [4, 4], data: [
        0, 0, 10, 10,
        0, 0, 10, 10,
        20, 20, 30, 30,
        0, 0, 10, 10,
    ])
    let scores = try Tensor(shape: [4], data: [0.5, 0.9, 0.9, 0.9])
    #expect(try nms(boxes: boxes, scores: scores, iouThreshold: 0.5) == [1, 2])
}

@Test func nmsSuppressesOnlyAboveThreshold() throws {
    // IoU of the two boxes is exactly 0.5 (intersection 50, union 100): not suppressed at 0.5.
    let boxes = try Tensor(shape: [2, 4], data: [0, 0, 10, 7.5, 0, 2.5, 10, 10])
    let scores = try Tensor(shape: [2], data: [1, 0.5])
    let iou = try boxIoU(boxes, boxes)
    #expect(iou.data[1] == 0.5)
    #expect(try nms(boxes: boxes, scores: scores, iouThreshold: 0.5) == [0, 1])
    #expect(try nms(boxes: boxes, scores: scores, iouThreshold: 0.49) == [0])
    #expect(try nms(boxes: boxes, scores: scores, iouThreshold: 0.49, maxKept: 0) == [])
}

@Test func nmsMaxKeptIsAPrefix() throws {
    let (boxes, scores) = randomProposals(count: 2000, seed: 3)
    let all = try nms(boxes: boxes, scores: scores, iouThreshold: 0.7)
    let first = try nms(boxes: boxes, scores: scores, iouThreshold: 0.7, maxKept: 50)
    #expect(Array(all.prefix(50)) == first)
}

@Test func batchedNMSSeparatesCategories() throws {
    let boxes = try Tensor(shape: [3, 4], data: [0, 0, 10, 10, 0, 0, 10, 10, 1, 1, 10, 10])
    let scores = try Tensor(shape: [3], data: [0.9, 0.8, 0.7])
    #expect(try batchedNMS(boxes: boxes, scores: scores, categories: [0, 1, 0], iouThreshold: 0.5) == [0, 1])
    #expect(try nms(boxes: boxes, scores: scores, iouThreshold: 0.5) == [0])
}

@Test func boxIoUMatchesHandComputedValues() throws {
    let a = try Tensor(shape: [2, 4], data: [0, 0, 2, 2, 1, 1, 3, 3])
    let b = try Tensor(shape: [3, 4], data: [1, 1, 3, 3, 5, 5, 6, 6, 0, 0, 2, 2])
    let iou = try boxIoU(a, b)
    #expect(iou.shape == [2, 3])
    let expected: [Float] = [1.0 / 7.0, 0, 1, 1, 0, 1.0 / 7.0]
    for i in 0..<6 { #expect(abs(iou.data[i] - expected[i]) < 1e-7) }
}

@Test func boxOpsRejectBadInput() throws {
    let boxes = Tensor(zeros: [3, 4])
    #expect(throws: ShapeError.self) { try nms(boxes: Tensor(zeros: [3, 5]), scores: Tensor(zeros: [3]), iouThreshold: 0.5) }
    #expect(throws: ShapeError.self) { try nms(boxes: boxes, scores: Tensor(zeros: [2]), iouThreshold: 0.5) }
    #expect(throws: ShapeError.self) {
        try nms(boxes: boxes, scores: try Tensor(shape: [3], data: [0, .nan, 1]), iouThreshold: 0.5)
    }
    #expect(throws: ShapeError.self) { try boxIoU(Tensor(zeros: [2, 3]), boxes) }
    #expect(throws: ShapeError.self) { try batchedNMS(boxes: boxes, scores: Tensor(zeros: [3]), categories: [0], iouThreshold: 0.5) }
    #expect(try nms(boxes: Tensor(zeros: [0, 4]), scores: Tensor(zeros: [0]), iouThreshold: 0.5) == [])
}
