// DeepLab's ops: bilinear resizing and per-pixel softmax cross-entropy against PyTorch fixtures,
// the resize's backward as the transpose of its forward, and the loss as the row loss of the
// transposed logits.
import DCNVerify
import DCNOps
import DCNTensor
import TestSupport
import Testing

@Suite("Segmentation ops")
struct SegmentationOpsTests {
    @Test("fixtures match PyTorch", arguments: ["bilinear_resize_up", "bilinear_resize_down", "bilinear_resize_x16", "pixel_cross_entropy"])
    func fixture(name: String) throws {
        let result = try verifyFixture(path: fixturePath("ops/\(name).safetensors"))
        for c in result.comparisons { #expect(c.relativeError <= 1e-5, "\(name) \(c.name): \(c.relativeError)") }
        #expect(result.comparisons.count == 2, "forward and gradient compared")
    }

    /// <resize(x), g> = <x, resizeBackward(g)> for the evaluation's explicit scales (an original
    /// image of 37 x 29 pixels resized to 25 x 20 and seen through stride-16 scores).
    @Test func backwardIsTheForwardsTranspose() throws {
        var rng = SeededGenerator(seed: 7)
        let x = Tensor.normal([2, 3, 2, 2], using: &rng)
        let scale = ResizeScale(y: 25.0 / 37 / 16, x: 20.0 / 29 / 16)
        let y = try bilinearResizeForward(input: x, height: 37, width: 29, scale: scale)
        let g = Tensor.normal(y.shape, using: &rng)
        var dx = Tensor(zeros: x.shape)
        try bilinearResizeBackward(dInput: &dx, dOutput: g, scale: scale)
        let lhs = zip(y.data, g.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let rhs = zip(x.data, dx.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(lhs - rhs) <= 1e-4 * max(1, abs(lhs)), "\(lhs) vs \(rhs)")
        // Resizing to the same size is the identity.
        #expect(try bilinearResizeForward(input: x, height: 2, width: 2) == x)
    }

    @Test func pixelLossIsTheRowLossOfTheTransposedLogits() throws {
        var rng = SeededGenerator(seed: 3)
        let (n, c, h, w) = (2, 4, 3, 5)
        let logits = Tensor.normal([n, c, h, w], using: &rng)
        let labels: [UInt8] = (0..<(n * h * w)).map { $0 % 7 == 3 ? 255 : UInt8(rng.next() % UInt64(c)) }
        var rows = [Float](), rowLabels = [Int]()
        for i in 0..<n { for p in 0..<(h * w) {
            rows += (0..<c).map { logits.data[i * c * h * w + $0 * h * w + p] }
            rowLabels.append(labels[i * h * w + p] == 255 ? -1 : Int(labels[i * h * w + p]))
        } }
        let rowLogits = try Tensor(shape: [n * h * w, c], data: rows)
        let expected = try softmaxCrossEntropyLoss(logits: rowLogits, labels: rowLabels)
        let (sum, count) = try pixelSoftmaxCrossEntropySum(logits: logits, labels: labels)
        #expect(count == labels.filter { $0 != 255 }.count)
        #expect(abs(Float(sum / Double(count)) - expected) <= 1e-6 * max(1, expected))
        var d = Tensor(zeros: logits.shape), dRows = Tensor(zeros: rowLogits.shape)
        try pixelSoftmaxCrossEntropyBackward(dLogits: &d, logits: logits, labels: labels, gradOutput: 1 / Float(count))
        try softmaxCrossEntropyBackward(dLogits: &dRows, logits: rowLogits, labels: rowLabels)
        for i in 0..<n { for p in 0..<(h * w) { for ch in 0..<c {
            #expect(abs(d.data[i * c * h * w + ch * h * w + p] - dRows.data[(i * h * w + p) * c + ch]) <= 1e-6)
        } } }
    }

    @Test func aLabelThatIsNoClassIsAnError() throws {
        let logits = Tensor(zeros: [1, 3, 1, 2])
        #expect(throws: ShapeError.self) { try pixelSoftmaxCrossEntropySum(logits: logits, labels: [1, 3]) }
        #expect(throws: ShapeError.self) { try pixelSoftmaxCrossEntropySum(logits: logits, labels: [1]) }
        // Every pixel void: nothing counts, no NaN.
        let (sum, count) = try pixelSoftmaxCrossEntropySum(logits: logits, labels: [255, 255])
        #expect(sum == 0 && count == 0)
    }
}
