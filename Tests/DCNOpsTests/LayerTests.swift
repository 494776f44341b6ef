// Basic layers: fixtures from PyTorch, finite-difference gradient checks, invariants, errors.
import DCNVerify
import DCNOps
import DCNTensor
import TestSupport
import Testing

/// A tensor of uniform values in [lo, hi) from a fixed seed (non-integer sample points).
func randomTensor(_ shape: [Int], seed: UInt64, lo: Float = -2, hi: Float = 2) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    var t = Tensor(zeros: shape)
    for i in 0..<t.count { t.data[i] = Float.random(in: lo..<hi, using: &rng) }
    return t
}

let layerFixtures = [
    "frozen_batch_norm", "batch_norm_train", "batch_norm_eval", "group_norm_g3", "group_norm_g1",
    "relu", "sigmoid", "max_pool2d_3x3_s2_p1", "max_pool2d_2x3_s1x2", "global_avg_pool",
    "linear", "linear_nobias",
]

@Suite("Layers")
struct LayerTests {
    @Test("layer fixtures match PyTorch", arguments: layerFixtures)
    func fixture(name: String) throws {
        let result = try verifyFixture(path: fixturePath("ops/\(name).safetensors"))
        for c in result.comparisons where c.relativeError > 1e-5 {
            Issue.record("\(name): \(c.name) relative error \(c.relativeError)")
        }
        #expect(result.passed(tolerance: 1e-5), "\(name): worst \(result.worst)")
    }

    // MARK: Finite differences (Double loss around float32 ops, tiny shapes)

    @Test func frozenBatchNormGradient() throws {
        let x = randomTensor([2, 3, 2, 3], seed: 1)
        let w = randomTensor([3], seed: 2), b = randomTensor([3], seed: 3)
        let rm = randomTensor([3], seed: 4), rv = randomTensor([3], seed: 5, lo: 0.5, hi: 2)
        let gy = randomTensor(x.shape, seed: 6)
        var dx = Tensor(zeros: x.shape)
        try frozenBatchNormBackward(dInput: &dx, dOutput: gy, weight: w, runningVar: rv)
        let err = try finiteDifferenceError(at: x, analytic: dx) {
            weightedSum(try frozenBatchNormForward(input: $0, weight: w, bias: b, runningMean: rm, runningVar: rv), gy)
        }
        #expect(err < 1e-2)
    }

    @Test func batchNormTrainGradients() throws {
        let x = randomTensor([3, 2, 2, 3], seed: 11)
        let w = randomTensor([2], seed: 12), b = randomTensor([2], seed: 13)
        let gy = randomTensor(x.shape, seed: 14)
        var rm = Tensor(zeros: [2]), rv = Tensor(repeating: 1, shape: [2])
        let (_, saved) = try batchNormTrainForward(input: x, weight: w, bias: b, runningMean: &rm, runningVar: &rv)
        var dx: Tensor? = Tensor(zeros: x.shape)
        let dw = GradientBlock(zeros: [2]), db = GradientBlock(zeros: [2])
        try batchNormBackward(dInput: &dx, dWeight: dw.slot, dBias: db.slot, dOutput: gy, input: x, weight: w, saved: saved)
        func loss(_ x: Tensor, _ w: Tensor, _ b: Tensor) throws -> Double {
            var m = Tensor(zeros: [2]), v = Tensor(repeating: 1, shape: [2])
            return weightedSum(try batchNormTrainForward(input: x, weight: w, bias: b, runningMean: &m, runningVar: &v).output, gy)
        }
        #expect(try finiteDifferenceError(at: x, analytic: dx!, step: 1e-2) { try loss($0, w, b) } < 2e-2)
        #expect(try finiteDifferenceError(at: w, analytic: dw.tensor) { try loss(x, $0, b) } < 1e-2)
        #expect(try finiteDifferenceError(at: b, analytic: db.tensor) { try loss(x, w, $0) } < 1e-2)
    }

    @Test func groupNormGradients() throws {
        let options = GroupNormOptions(groups: 2)
        let x = randomTensor([2, 4, 2, 2], seed: 21)
        let w = randomTensor([4], seed: 22), b = randomTensor([4], seed: 23)
        let gy = randomTensor(x.shape, seed: 24)
        let (_, saved) = try groupNormForward(input: x, weight: w, bias: b, options: options)
        var dx: Tensor? = Tensor(zeros: x.shape)
        let dw = GradientBlock(zeros: [4]), db = GradientBlock(zeros: [4])
        try groupNormBackward(dInput: &dx, dWeight: dw.slot, dBias: db.slot, dOutput: gy, input: x, weight: w,
                              saved: saved, options: options)
        func loss(_ x: Tensor, _ w: Tensor, _ b: Tensor) throws -> Double {
            weightedSum(try groupNormForward(input: x, weight: w, bias: b, options: options).output, gy)
        }
        #expect(try finiteDifferenceError(at: x, analytic: dx!) { try loss($0, w, b) } < 2e-2)
        #expect(try finiteDifferenceError(at: w, analytic: dw.tensor) { try loss(x, $0, b) } < 1e-2)
        #expect(try finiteDifferenceError(at: b, analytic: db.tensor) { try loss(x, w, $0) } < 1e-2)
    }

    @Test func activationGradients() throws {
        // Keep ReLU sample points away from the kink at 0 (step 1e-2).
        var x = randomTensor([2, 3, 4], seed: 31)
        for i in 0..<x.count where abs(x.data[i]) < 0.05 { x.data[i] = 0.3 }
        let gy = randomTensor(x.shape, seed: 32)
        var dx = Tensor(zeros: x.shape)
        try reluBackward(dInput: &dx, dOutput: gy, output: reluForward(x))
        #expect(finiteDifferenceError(at: x, analytic: dx) { weightedSum(reluForward($0), gy) } < 1e-3)
        var ds = Tensor(zeros: x.shape)
        try sigmoidBackward(dInput: &ds, dOutput: gy, output: sigmoidForward(x))
        #expect(finiteDifferenceError(at: x, analytic: ds, step: 1e-2) { weightedSum(sigmoidForward($0), gy) } < 1e-2)
    }

    @Test func maxPoolGradient() throws {
        // Distinct values spaced well above the step, so no window changes its argmax.
        var x = Tensor(zeros: [1, 2, 5, 6])
        var rng = SeededGenerator(seed: 41)
        let perm = Array(0..<x.count).shuffled(using: &rng)
        for i in 0..<x.count { x.data[i] = Float(perm[i]) * 0.1 + 0.013 }
        let gy = randomTensor([1, 2, 3, 3], seed: 42)
        let r = try maxPoolForward(input: x)
        var dx = Tensor(zeros: x.shape)
        try maxPoolBackward(dInput: &dx, dOutput: gy, argmax: r.argmax)
        let err = try finiteDifferenceError(at: x, analytic: dx, step: 1e-3) { weightedSum(try maxPoolForward(input: $0).output, gy) }
        #expect(err < 1e-2)
    }

    @Test func maxPoolTiesTakeFirstIndexAndSkipPadding() throws {
        // All -5: padding (never a candidate) would win if it were treated as 0.
        let x = Tensor(repeating: -5, shape: [1, 1, 4, 4])
        let r = try maxPoolForward(input: x)
        #expect(r.output.shape == [1, 1, 2, 2])
        #expect(r.output.data == [-5, -5, -5, -5])
        // First element of each window in scan order: windows start at rows/cols -1, 1 -> clamped 0, 1.
        #expect(r.argmax == [0, 1, 4, 5])
    }

    @Test func maxPoolNaNWinsAsInPyTorch() throws {
        var x = try Tensor(shape: [1, 1, 2, 2], data: [1, .nan, 5, .nan])
        var r = try maxPoolForward(input: x, options: MaxPoolOptions(kernel: 2, stride: 2, padding: 0))
        #expect(r.output.data[0].isNaN)
        #expect(r.argmax == [3])  // the last NaN of the window
        x.data = [1, 2, 5, 4]
        r = try maxPoolForward(input: x, options: MaxPoolOptions(kernel: 2, stride: 2, padding: 0))
        #expect(r.output.data == [5] && r.argmax == [2])
    }

    @Test func globalAvgPoolAndLinearGradients() throws {
        let x = randomTensor([2, 3, 2, 3], seed: 51)
        let gy = randomTensor([2, 3], seed: 52)
        var dx = Tensor(zeros: x.shape)
        try globalAvgPoolBackward(dInput: &dx, dOutput: gy)
        #expect(try finiteDifferenceError(at: x, analytic: dx) { weightedSum(try globalAvgPoolForward(input: $0), gy) } < 1e-3)

        let a = randomTensor([3, 4], seed: 53), w = randomTensor([5, 4], seed: 54), b = randomTensor([5], seed: 55)
        let gl = randomTensor([3, 5], seed: 56)
        var da: Tensor? = Tensor(zeros: a.shape)
        let dw = GradientBlock(zeros: w.shape), db = GradientBlock(zeros: b.shape)
        try linearBackward(dInput: &da, dWeight: dw.slot, dBias: db.slot, dOutput: gl, input: a, weight: w)
        #expect(try finiteDifferenceError(at: a, analytic: da!) { weightedSum(try linearForward(input: $0, weight: w, bias: b), gl) } < 1e-3)
        #expect(try finiteDifferenceError(at: w, analytic: dw.tensor) { weightedSum(try linearForward(input: a, weight: $0, bias: b), gl) } < 1e-3)
        #expect(try finiteDifferenceError(at: b, analytic: db.tensor) { weightedSum(try linearForward(input: a, weight: w, bias: $0), gl) } < 1e-3)
    }

    // MARK: Invariants

    @Test func batchNormEvalEqualsFrozenBatchNorm() throws {
        let x = randomTensor([2, 4, 3, 3], seed: 61)
        let w = randomTensor([4], seed: 62), b = randomTensor([4], seed: 63)
        let rm = randomTensor([4], seed: 64), rv = randomTensor([4], seed: 65, lo: 0.2, hi: 3)
        let eval = try batchNormEvalForward(input: x, weight: w, bias: b, runningMean: rm, runningVar: rv)
        let frozen = try frozenBatchNormForward(input: x, weight: w, bias: b, runningMean: rm, runningVar: rv)
        #expect(eval == frozen)
    }

    @Test func batchNormBackwardAddsIntoGradients() throws {
        let x = randomTensor([2, 2, 2, 2], seed: 66), w = randomTensor([2], seed: 67), b = randomTensor([2], seed: 68)
        let gy = randomTensor(x.shape, seed: 69)
        var rm = Tensor(zeros: [2]), rv = Tensor(repeating: 1, shape: [2])
        let (_, saved) = try batchNormTrainForward(input: x, weight: w, bias: b, runningMean: &rm, runningVar: &rv)
        var dx: Tensor? = Tensor(zeros: x.shape)
        let dw = GradientBlock(zeros: [2]), db = GradientBlock(zeros: [2])
        try batchNormBackward(dInput: &dx, dWeight: dw.slot, dBias: db.slot, dOutput: gy, input: x, weight: w, saved: saved)
        var dx2 = dx
        let dw2 = GradientBlock(zeros: [2]), db2 = GradientBlock(zeros: [2])
        dw2.slot.assign(dw.tensor); db2.slot.assign(db.tensor)
        try batchNormBackward(dInput: &dx2, dWeight: dw2.slot, dBias: db2.slot, dOutput: gy, input: x, weight: w, saved: saved)
        for i in 0..<dx!.count { #expect(abs(dx2!.data[i] - 2 * dx!.data[i]) <= 1e-6 * max(1, abs(dx!.data[i]))) }
        #expect(db2.tensor.data == db.tensor.data.map { $0 * 2 })
    }

    @Test func sameBitsOnOneAndTwoThreads() throws {
        let x = randomTensor([2, 8, 9, 11], seed: 71)
        let w = randomTensor([8], seed: 72), b = randomTensor([8], seed: 73)
        let gy = randomTensor(x.shape, seed: 74)
        func run() throws -> [Tensor] {
            var rm = Tensor(zeros: [8]), rv = Tensor(repeating: 1, shape: [8])
            let (y, saved) = try batchNormTrainForward(input: x, weight: w, bias: b, runningMean: &rm, runningVar: &rv)
            var dx: Tensor? = Tensor(zeros: x.shape)
            let dw = GradientBlock(zeros: [8]), db = GradientBlock(zeros: [8])
            try batchNormBackward(dInput: &dx, dWeight: dw.slot, dBias: db.slot, dOutput: gy, input: x, weight: w, saved: saved)
            let gn = GroupNormOptions(groups: 4)
            let (g, gs) = try groupNormForward(input: x, weight: w, bias: b, options: gn)
            var gx: Tensor? = Tensor(zeros: x.shape)
            let gw = GradientBlock(zeros: [8]), gb = GradientBlock(zeros: [8])
            try groupNormBackward(dInput: &gx, dWeight: gw.slot, dBias: gb.slot, dOutput: gy, input: x, weight: w, saved: gs, options: gn)
            let p = try maxPoolForward(input: x)
            var px = Tensor(zeros: x.shape)
            try maxPoolBackward(dInput: &px, dOutput: p.output, argmax: p.argmax)
            let a = randomTensor([37, 300], seed: 75), lw = randomTensor([130, 300], seed: 76), lb = randomTensor([130], seed: 77)
            let l = try linearForward(input: a, weight: lw, bias: lb)
            var la: Tensor? = Tensor(zeros: a.shape)
            let lwg = GradientBlock(zeros: lw.shape), lbg = GradientBlock(zeros: lb.shape)
            try linearBackward(dInput: &la, dWeight: lwg.slot, dBias: lbg.slot, dOutput: l, input: a, weight: lw)
            return [y, dx!, dw.tensor, db.tensor, rm, rv, g, gx!, gw.tensor, gb.tensor, p.output, px, sigmoidForward(x),
                    try globalAvgPoolForward(input: x), l, la!, lwg.tensor, lbg.tensor]
        }
        // Our loops on 1 and 2 threads; OpenBLAS keeps the process's thread count (its bits
        // depend on it for some products and kernels: `dcn-bench blas`).
        let one = try Threads.with(1) { try run() }
        let two = try Threads.with(2) { try run() }
        #expect(one == two)
    }

    // MARK: Bad input

    @Test func badShapesThrow() throws {
        let x = randomTensor([2, 6, 3, 3], seed: 81)
        let w = Tensor(repeating: 1, shape: [6]), b = Tensor(zeros: [6])
        #expect(throws: ShapeError.self) { try groupNormForward(input: x, weight: w, bias: b, options: GroupNormOptions(groups: 4)) }
        #expect(throws: ShapeError.self) { try groupNormForward(input: x, weight: w, bias: b, options: GroupNormOptions(groups: 0)) }
        #expect(throws: ShapeError.self) {
            try frozenBatchNormForward(input: x, weight: Tensor(zeros: [5]), bias: b, runningMean: b, runningVar: w)
        }
        var rm = Tensor(zeros: [6]), rv = Tensor(zeros: [4])
        #expect(throws: ShapeError.self) { try batchNormTrainForward(input: x, weight: w, bias: b, runningMean: &rm, runningVar: &rv) }
        var rv6 = Tensor(zeros: [6])
        #expect(throws: ShapeError.self) {
            try batchNormTrainForward(input: Tensor(zeros: [1, 6, 1, 1]), weight: w, bias: b, runningMean: &rm, runningVar: &rv6)
        }
        #expect(throws: ShapeError.self) { try maxPoolForward(input: Tensor(zeros: [2, 3, 4])) }
        #expect(throws: ShapeError.self) { try maxPoolForward(input: x, options: MaxPoolOptions(kernel: 3, stride: 2, padding: 2)) }
        #expect(throws: ShapeError.self) { try maxPoolForward(input: Tensor(zeros: [1, 1, 1, 1]), options: MaxPoolOptions(kernel: 3, stride: 1, padding: 0)) }
        #expect(throws: ShapeError.self) { try linearForward(input: Tensor(zeros: [2, 3]), weight: Tensor(zeros: [4, 5]), bias: nil) }
        #expect(throws: ShapeError.self) { try linearForward(input: Tensor(zeros: [2, 3]), weight: Tensor(zeros: [4, 3]), bias: Tensor(zeros: [3])) }
        var dx = Tensor(zeros: [2, 6, 3, 3])
        #expect(throws: ShapeError.self) { try reluBackward(dInput: &dx, dOutput: Tensor(zeros: [2, 6, 3]), output: x) }
        #expect(throws: ShapeError.self) { try globalAvgPoolBackward(dInput: &dx, dOutput: Tensor(zeros: [6, 2])) }
        #expect(throws: ShapeError.self) { try maxPoolBackward(dInput: &dx, dOutput: Tensor(zeros: [2, 6, 2, 2]), argmax: [Int32](repeating: 99, count: 24)) }
    }
}
