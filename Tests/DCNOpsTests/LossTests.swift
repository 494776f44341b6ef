// Losses: fixtures from PyTorch, finite-difference gradient checks, invariants, errors.
import DCNVerify
import DCNOps
import DCNTensor
import Foundation
import TestSupport
import Testing

let lossFixtures = [
    "softmax_cross_entropy", "sigmoid_bce_mean_weighted", "sigmoid_bce_sum",
    "smooth_l1_beta", "smooth_l1_beta0", "cosine_mimic",
]

@Suite("Losses")
struct LossTests {
    @Test("loss fixtures match PyTorch", arguments: lossFixtures)
    func fixture(name: String) throws {
        let result = try verifyFixture(path: fixturePath("ops/\(name).safetensors"))
        for c in result.comparisons where c.relativeError > 1e-5 {
            Issue.record("\(name): \(c.name) relative error \(c.relativeError)")
        }
        #expect(result.passed(tolerance: 1e-5), "\(name): worst \(result.worst)")
    }

    // MARK: Finite differences

    @Test func crossEntropyGradient() throws {
        let x = randomTensor([4, 3], seed: 1)
        let labels = [2, -1, 0, 1]
        var dx = Tensor(zeros: x.shape)
        try softmaxCrossEntropyBackward(dLogits: &dx, logits: x, labels: labels, gradOutput: 0.7)
        let err = try finiteDifferenceError(at: x, analytic: dx) {
            0.7 * Double(try softmaxCrossEntropyLoss(logits: $0, labels: labels))
        }
        #expect(err < 1e-2)
        // The ignored row gets no gradient.
        #expect(dx.data[3..<6].allSatisfy { $0 == 0 })
    }

    /// Label smoothing against torch.nn.functional.cross_entropy(label_smoothing=0.1, ignore_index=-1)
    /// (values printed by PyTorch 2.9 for these logits), and its gradient by finite differences.
    @Test func labelSmoothedCrossEntropyMatchesPyTorch() throws {
        let x = try Tensor(shape: [3, 4], data: [0.5, -1.0, 2.0, 0.1, 1.5, 0.3, -0.7, 0.0, -2.0, 0.4, 0.9, 1.1])
        let labels = [2, -1, 3]
        let options = CrossEntropyOptions(labelSmoothing: 0.1)
        #expect(abs(try softmaxCrossEntropyLoss(logits: x, labels: labels, options: options) - 0.7356111407279968) < 1e-6)
        var dx = Tensor(zeros: x.shape)
        try softmaxCrossEntropyBackward(dLogits: &dx, logits: x, labels: labels, options: options)
        let torchGradient: [Float] = [0.06592965871095657, 0.005000019446015358, -0.11100264638662338, 0.0400729738175869, 0, 0, 0, 0,
                                      -0.002957154531031847, 0.09269246459007263, 0.16093303263187408, -0.25066834688186646]
        for (a, b) in zip(dx.data, torchGradient) { #expect(abs(a - b) < 1e-6) }
        let err = try finiteDifferenceError(at: x, analytic: dx) { Double(try softmaxCrossEntropyLoss(logits: $0, labels: labels, options: options)) }
        #expect(err < 1e-2)
    }

    @Test(arguments: [LossReduction.sum, .mean])
    func binaryCrossEntropyGradient(reduction: LossReduction) throws {
        let x = randomTensor([3, 4], seed: 2, lo: -3, hi: 3)
        var t = randomTensor([3, 4], seed: 3, lo: 0, hi: 1)
        t.data[1] = -1; t.data[7] = -1; t.data[4] = 1; t.data[5] = 0
        let w = randomTensor([3, 4], seed: 4, lo: 0.5, hi: 1.5)
        let options = BinaryCrossEntropyOptions(reduction: reduction)
        var dx = Tensor(zeros: x.shape)
        try sigmoidBinaryCrossEntropyBackward(dLogits: &dx, logits: x, targets: t, weights: w, options: options, gradOutput: 1.3)
        let err = try finiteDifferenceError(at: x, analytic: dx) {
            1.3 * Double(try sigmoidBinaryCrossEntropyLoss(logits: $0, targets: t, weights: w, options: options))
        }
        #expect(err < 1e-2)
        #expect(dx.data[1] == 0 && dx.data[7] == 0)
    }

    @Test(arguments: [Float(0), 0.5])
    func smoothL1Gradient(beta: Float) throws {
        // Differences kept away from the kinks at 0 and +-beta.
        let x = try Tensor(shape: [6], data: [0.31, -0.2, 1.7, -2.3, 0.9, -0.74])
        let t = try Tensor(shape: [6], data: [0.1, 0.13, -0.4, 0.6, 0.05, -0.1])
        var dx = Tensor(zeros: x.shape)
        try smoothL1Backward(dInput: &dx, input: x, target: t, beta: beta, gradOutput: 0.9)
        let err = try finiteDifferenceError(at: x, analytic: dx, step: 1e-3) {
            0.9 * Double(try smoothL1Loss(input: $0, target: t, beta: beta))
        }
        #expect(err < 1e-2)
    }

    @Test func cosineMimicGradients() throws {
        let a = randomTensor([3, 5], seed: 5), b = randomTensor([3, 5], seed: 6)
        var da = Tensor(zeros: a.shape), db = Tensor(zeros: b.shape)
        try cosineMimicBackward(dA: &da, dB: &db, a: a, b: b, gradOutput: 1.1)
        #expect(try finiteDifferenceError(at: a, analytic: da, step: 1e-3) { 1.1 * Double(try cosineMimicLoss(a: $0, b: b)) } < 2e-2)
        #expect(try finiteDifferenceError(at: b, analytic: db, step: 1e-3) { 1.1 * Double(try cosineMimicLoss(a: a, b: $0)) } < 2e-2)
    }

    // MARK: Invariants

    @Test func crossEntropyIgnoredRowsAreDropped() throws {
        let x = randomTensor([5, 4], seed: 7, lo: -5, hi: 5)
        let labels = [3, -1, 0, -1, 2]
        let kept = [0, 2, 4]
        var sub = Tensor(zeros: [3, 4])
        for (r, i) in kept.enumerated() { for j in 0..<4 { sub.data[r * 4 + j] = x.data[i * 4 + j] } }
        let subLabels = kept.map { labels[$0] }
        #expect(try softmaxCrossEntropyLoss(logits: x, labels: labels) == softmaxCrossEntropyLoss(logits: sub, labels: subLabels))
        var dx = Tensor(zeros: x.shape), dsub = Tensor(zeros: sub.shape)
        try softmaxCrossEntropyBackward(dLogits: &dx, logits: x, labels: labels)
        try softmaxCrossEntropyBackward(dLogits: &dsub, logits: sub, labels: subLabels)
        for (r, i) in kept.enumerated() { for j in 0..<4 { #expect(dx.data[i * 4 + j] == dsub.data[r * 4 + j]) } }
    }

    @Test func crossEntropyIsStableForHugeLogits() throws {
        let x = try Tensor(shape: [2, 3], data: [1000, 0, -1000, -2000, -2001, -2002])
        let loss = try softmaxCrossEntropyLoss(logits: x, labels: [0, 2])
        #expect(loss.isFinite)
        #expect(abs(loss - Float((0.0 + 2.4076059644443806) / 2)) < 1e-5)
    }

    @Test func cosineOfIdenticalRowsIsZero() throws {
        let a = randomTensor([4, 7], seed: 8)
        #expect(abs(try cosineMimicLoss(a: a, b: a)) < 1e-6)
        var da = Tensor(zeros: a.shape), db = Tensor(zeros: a.shape)
        try cosineMimicBackward(dA: &da, dB: &db, a: a, b: a)
        #expect(da.data.allSatisfy { abs($0) < 1e-6 })
    }

    @Test func cosineEpsClampMatchesTorch() throws {
        // Row 0 has |a| = 5e-9 < eps, row 1 is a zero vector. Reference values from
        // torch.nn.functional.cosine_similarity(eps=1e-8) in float64 and autograd (torch 2.15).
        let a = try Tensor(shape: [2, 2], data: [3e-9, 4e-9, 0, 0])
        let b = try Tensor(shape: [2, 2], data: [1, 0.5, 1, 0.5])
        #expect(abs(try cosineMimicLoss(a: a, b: b) - Float(1 - (0.44721359549995787 + 0) / 2)) < 1e-6)
        var da = Tensor(zeros: a.shape), db = Tensor(zeros: b.shape)
        // gradOutput -N turns the loss gradient into the gradient of sum(cos).
        try cosineMimicBackward(dA: &da, dB: &db, a: a, b: b, gradOutput: -2)
        let refA: [Double] = [62609903.36999412, 8944271.909999155, 89442719.09999159, 44721359.549995795]
        let refB: [Double] = [-0.08944271909999157, 0.1788854381999832, 0, 0]
        #expect(relativeL2(da.data.map(Double.init), refA) < 1e-5)
        #expect(relativeL2(db.data.map(Double.init), refB) < 1e-5)
    }

    @Test func bceMatchesDirectFormula() throws {
        let x = try Tensor(shape: [3], data: [-30, 0.5, 40])
        let t = try Tensor(shape: [3], data: [1, 0.25, 0])
        let loss = try sigmoidBinaryCrossEntropyLoss(logits: x, targets: t, options: BinaryCrossEntropyOptions(reduction: .sum))
        func direct(_ x: Double, _ t: Double) -> Double { max(x, 0) - x * t + Foundation.log(1 + Foundation.exp(-abs(x))) }
        let ref = direct(-30, 1) + direct(0.5, 0.25) + direct(40, 0)
        #expect(abs(Double(loss) - ref) < 1e-4 * ref)
    }

    // MARK: Bad input

    @Test func badInputsThrow() throws {
        let x = Tensor(zeros: [2, 3])
        #expect(throws: ShapeError.self) { try softmaxCrossEntropyLoss(logits: x, labels: [0, 3]) }
        #expect(throws: ShapeError.self) { try softmaxCrossEntropyLoss(logits: x, labels: [0, -2]) }
        #expect(throws: ShapeError.self) { try softmaxCrossEntropyLoss(logits: x, labels: [0]) }
        #expect(throws: ShapeError.self) { try softmaxCrossEntropyLoss(logits: Tensor(zeros: [6]), labels: [0]) }
        #expect(throws: ShapeError.self) { try sigmoidBinaryCrossEntropyLoss(logits: x, targets: Tensor(zeros: [3, 2])) }
        #expect(throws: ShapeError.self) { try sigmoidBinaryCrossEntropyLoss(logits: x, targets: x, weights: Tensor(zeros: [6])) }
        #expect(throws: ShapeError.self) { try smoothL1Loss(input: x, target: Tensor(zeros: [6]), beta: 1) }
        #expect(throws: ShapeError.self) { try smoothL1Loss(input: x, target: x, beta: -1) }
        #expect(throws: ShapeError.self) { try cosineMimicLoss(a: x, b: Tensor(zeros: [2, 4])) }
        var d = Tensor(zeros: [3, 2])
        #expect(throws: ShapeError.self) { try softmaxCrossEntropyBackward(dLogits: &d, logits: x, labels: [0, 1]) }
    }
}
