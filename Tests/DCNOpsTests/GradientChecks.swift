// Shared helpers for op tests: the weighted-sum loss and finite differences.
import DCNTensor
import Foundation
import Testing

/// sum(output * weights) accumulated in Double: the scalar whose gradient backward computes
/// when it is fed `weights` as the output gradient.
func weightedSum(_ output: Tensor, _ weights: Tensor) -> Double {
    precondition(output.shape == weights.shape, "\(output.shape) vs \(weights.shape)")
    var s = 0.0
    for i in 0..<output.count { s += Double(output.data[i]) * Double(weights.data[i]) }
    return s
}

/// Compares an analytic gradient with central differences `(L(x + h e_i) - L(x - h e_i)) / 2h` of
/// a scalar loss computed in Double, at `samples` indices chosen with a fixed seed (all of them
/// when the tensor is small). Returns the worst error relative to max(|numeric|, |analytic|, floor).
func finiteDifferenceError(
    at x: Tensor, analytic: Tensor, step h: Float = 1e-2, samples: Int = 40, floor: Double = 1e-2,
    seed: UInt64 = 7, loss: (Tensor) throws -> Double
) rethrows -> Double {
    precondition(x.shape == analytic.shape)
    var rng = SeededGenerator(seed: seed)
    let indices = x.count <= samples ? Array(0..<x.count) : (0..<samples).map { _ in Int(rng.next() % UInt64(x.count)) }
    var worst = 0.0
    for i in indices {
        var plus = x, minus = x
        plus.data[i] += h
        minus.data[i] -= h
        // The actual step after float rounding, so the quotient uses the true difference.
        let actual = Double(plus.data[i]) - Double(minus.data[i])
        let numeric = (try loss(plus) - loss(minus)) / actual
        let a = Double(analytic.data[i])
        let err = abs(numeric - a) / max(abs(numeric), abs(a), floor)
        worst = max(worst, err)
    }
    return worst
}
