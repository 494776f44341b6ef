// numpy's pairwise summation (`pairwise_sum_DOUBLE` in loops_utils.h), so that means of
// precision/recall entries agree with `np.mean` to the last bit.

/// Sum of `values` in numpy's order: below 8 values a plain loop; up to 128 values eight
/// interleaved accumulators combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) plus the tail;
/// above that the halves (split at a multiple of 8) are summed recursively.
public func pairwiseSum(_ values: [Double]) -> Double {
    values.withUnsafeBufferPointer { pairwiseSum($0.baseAddress, $0.count) }
}

func pairwiseSum(_ a: UnsafePointer<Double>?, _ n: Int) -> Double {
    guard let a, n > 0 else { return 0 }
    if n < 8 {
        var s = 0.0
        for i in 0..<n { s += a[i] }
        return s
    }
    if n <= 128 {
        var r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5], r6 = a[6], r7 = a[7]
        var i = 8
        while i < n - (n % 8) {
            r0 += a[i]; r1 += a[i + 1]; r2 += a[i + 2]; r3 += a[i + 3]
            r4 += a[i + 4]; r5 += a[i + 5]; r6 += a[i + 6]; r7 += a[i + 7]
            i += 8
        }
        var s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n { s += a[i]; i += 1 }
        return s
    }
    var half = n / 2
    half -= half % 8
    return pairwiseSum(a, half) + pairwiseSum(a + half, n - half)
}

/// `np.mean` of the entries (numpy adds them pairwise, then divides by the count).
public func numpyMean(_ values: [Double]) -> Double {
    pairwiseSum(values) / Double(values.count)
}
