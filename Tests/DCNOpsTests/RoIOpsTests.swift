// RoIAlign, RoIPool and (modulated) deformable RoI pooling: reference fixtures, finite
// differences, invariants, thread-count determinism, input validation (the `dcn-bench roi`
// benchmark's tiny run is in BenchmarkTests.swift).
import DCNVerify
import DCNOps
import DCNTensor
import TestSupport
import Testing

@Test(arguments: ["roi_align_aligned", "roi_align_legacy", "roi_align_adaptive", "roi_pool",
                  "deform_roi_pool", "modulated_deform_roi_pool"])
func roiFixture(_ name: String) throws {
    let result = try verifyFixture(path: fixturePath("ops/\(name).safetensors"))
    for c in result.comparisons { print("\(name) \(c.name): \(c.relativeError)") }
    #expect(result.comparisons.count >= 2)
    #expect(result.worst <= 1e-5, "\(name): worst relative error \(result.worst)")
}

// MARK: - Tiny problems with sample points away from integers

/// A small feature map and RoIs (in image coordinates at scale 0.5) whose sample points are not integers.
private struct TinyRoIProblem {
    var input: Tensor
    var rois: Tensor
    var rng: SeededGenerator

    init(seed: UInt64 = 11) {
        rng = SeededGenerator(seed: seed)
        input = Tensor.normal([2, 2, 7, 8], using: &rng)
        rois = try! Tensor(shape: [3, 5], data: [
            0, 2.3, 1.7, 11.1, 9.9,
            1, 0.9, 4.1, 13.3, 12.7,
            0, 6.2, 3.4, 9.8, 7.3,
        ])
    }
}

/// Every sample coordinate of the deformable pooling (aligned, fixed sampling ratio) of `rois`
/// at `scale` with `offset`, to check that none sits on or near an integer.
private func deformSampleCoordinates(rois: Tensor, offset: Tensor, options o: DeformRoIPoolOptions) -> [Double] {
    var coords = [Double]()
    let bins = o.outputHeight * o.outputWidth
    for r in 0..<rois.dim(0) {
        let v = (1...4).map { Double(rois.data[r * 5 + $0]) * o.spatialScale - 0.5 }
        let rw = v[2] - v[0], rh = v[3] - v[1]
        let bw = rw / Double(o.outputWidth), bh = rh / Double(o.outputHeight)
        for ph in 0..<o.outputHeight {
            for pw in 0..<o.outputWidth {
                let bin = ph * o.outputWidth + pw
                let sx = v[0] + Double(pw) * bw + o.gamma * rw * Double(offset.data[r * 2 * bins + bin])
                let sy = v[1] + Double(ph) * bh + o.gamma * rh * Double(offset.data[(r * 2 + 1) * bins + bin])
                for i in 0..<o.samplingRatio {
                    coords.append(sx + (Double(i) + 0.5) * bw / Double(o.samplingRatio))
                    coords.append(sy + (Double(i) + 0.5) * bh / Double(o.samplingRatio))
                }
            }
        }
    }
    return coords
}

private func distanceToInteger(_ x: Double) -> Double { abs(x - x.rounded()) }

/// Offsets ~ U(-1, 1) redrawn until every sample point is at least `margin` from an integer.
private func offsetsAwayFromIntegers(rois: Tensor, options: DeformRoIPoolOptions, margin: Double,
                                     rng: inout SeededGenerator) -> Tensor {
    let shape = [rois.dim(0), 2, options.outputHeight, options.outputWidth]
    for _ in 0..<1000 {
        let offset = Tensor.uniform(shape, -1, 1, using: &rng)
        let coords = deformSampleCoordinates(rois: rois, offset: offset, options: options)
        if coords.allSatisfy({ distanceToInteger($0) >= margin }) { return offset }
    }
    Issue.record("no offsets found with samples away from integers")
    return Tensor(zeros: shape)
}

@Test(arguments: [(true, 2), (false, 2), (true, 0), (false, 0)])
func roiAlignFiniteDifferences(aligned: Bool, samplingRatio: Int) throws {
    var p = TinyRoIProblem()
    let options = RoIAlignOptions(outputHeight: 2, outputWidth: 3, spatialScale: 0.5, samplingRatio: samplingRatio,
                                  aligned: aligned)
    let out = try roiAlignForward(input: p.input, rois: p.rois, options: options)
    let weights = Tensor.normal(out.shape, using: &p.rng)
    var dInput = Tensor(zeros: p.input.shape)
    try roiAlignBackward(dInput: &dInput, dOutput: weights, rois: p.rois, options: options)
    // Linear in the input: a large step removes most float rounding noise from the quotient.
    let err = try finiteDifferenceError(at: p.input, analytic: dInput, step: 0.5, samples: 200) { x in
        weightedSum(try roiAlignForward(input: x, rois: p.rois, options: options), weights)
    }
    print("roiAlign FD aligned=\(aligned) ratio=\(samplingRatio): \(err)")
    #expect(err < 1e-4)
}

@Test func roiPoolFiniteDifferences() throws {
    var p = TinyRoIProblem()
    // Distinct values 0.05 apart, so a step of 0.01 never changes a bin's argmax.
    var values = (0..<p.input.count).map { Float($0) * 0.05 }
    values.shuffle(using: &p.rng)
    let input = try Tensor(shape: p.input.shape, data: values)
    let options = RoIPoolOptions(outputHeight: 3, outputWidth: 2, spatialScale: 0.5)
    let (out, argmax) = try roiPoolForward(input: input, rois: p.rois, options: options)
    let weights = Tensor.normal(out.shape, using: &p.rng)
    var dInput = Tensor(zeros: input.shape)
    try roiPoolBackward(dInput: &dInput, dOutput: weights, argmax: argmax, rois: p.rois, options: options)
    let err = try finiteDifferenceError(at: input, analytic: dInput, samples: 300) { x in
        weightedSum(try roiPoolForward(input: x, rois: p.rois, options: options).output, weights)
    }
    print("roiPool FD: \(err)")
    #expect(err < 1e-4)
}

/// torchvision computes the bins in float: a 29-row RoI at 7 bins ends its last bin at row 28
/// (in double 7 * (29 / 7) is above 29, and the bin would take row 29, past the RoI). The value
/// torchvision.ops.roi_pool gives here is 0 in every bin.
@Test func roiPoolBinsInFloatAsTorchvision() throws {
    var input = Tensor(zeros: [1, 1, 40, 40])
    for x in 0..<40 { input.data[29 * 40 + x] = 5 }
    let rois = try Tensor(shape: [1, 5], data: [0, 0, 0, 10, 28])
    let (out, _) = try roiPoolForward(input: input, rois: rois, options: RoIPoolOptions(outputHeight: 7, outputWidth: 7, spatialScale: 1))
    #expect(out.data.allSatisfy { $0 == 0 }, "row 29 is outside the RoI (rows 0...28): \(out.data)")
}

@Test(arguments: [false, true])
func deformRoIPoolFiniteDifferences(modulated: Bool) throws {
    var p = TinyRoIProblem(seed: modulated ? 13 : 12)
    let options = DeformRoIPoolOptions(outputHeight: 2, outputWidth: 2, spatialScale: 0.5, samplingRatio: 2, gamma: 0.1)
    let offset = offsetsAwayFromIntegers(rois: p.rois, options: options, margin: 0.03, rng: &p.rng)
    let mask = modulated ? Tensor.uniform([3, 1, 2, 2], 0.2, 1, using: &p.rng) : nil
    let out = try deformRoIPoolForward(input: p.input, rois: p.rois, offset: offset, mask: mask, options: options)
    let weights = Tensor.normal(out.shape, using: &p.rng)
    var dInput = Tensor(zeros: p.input.shape), dOffset = Tensor(zeros: offset.shape)
    var dMask = Tensor(zeros: [3, 1, 2, 2])
    if let mask {
        try modulatedDeformRoIPoolBackward(dInput: &dInput, dOffset: &dOffset, dMask: &dMask, dOutput: weights,
                                           input: p.input, rois: p.rois, offset: offset, mask: mask, options: options)
    } else {
        try deformRoIPoolBackward(dInput: &dInput, dOffset: &dOffset, dOutput: weights, input: p.input, rois: p.rois,
                                  offset: offset, options: options)
    }
    func loss(_ x: Tensor, _ o: Tensor, _ m: Tensor?) throws -> Double {
        weightedSum(try deformRoIPoolForward(input: x, rois: p.rois, offset: o, mask: m, options: options), weights)
    }
    let errInput = try finiteDifferenceError(at: p.input, analytic: dInput, step: 0.5, samples: 200) {
        try loss($0, offset, mask)
    }
    // A step of 0.04 moves a sample by at most gamma * roi size (< 6.3) * 0.04 < 0.03, the margin
    // kept from every integer: inside one bilinear cell the loss is linear in each offset.
    let errOffset = try finiteDifferenceError(at: offset, analytic: dOffset, step: 0.04, samples: 100) {
        try loss(p.input, $0, mask)
    }
    print("deformRoIPool FD modulated=\(modulated): input \(errInput), offset \(errOffset)")
    #expect(errInput < 1e-4)
    #expect(errOffset < 1e-3)
    #expect(dOffset.data.contains { $0 != 0 })
    if let mask {
        let errMask = try finiteDifferenceError(at: mask, analytic: dMask, step: 0.1, samples: 100) {
            try loss(p.input, offset, $0)
        }
        print("modulatedDeformRoIPool FD mask: \(errMask)")
        #expect(errMask < 1e-4)
    }
}

// MARK: - Invariants

@Test(arguments: [2, 0])
func deformRoIPoolWithZeroOffsetsIsRoIAlign(samplingRatio: Int) throws {
    var p = TinyRoIProblem(seed: 21)
    let align = RoIAlignOptions(outputHeight: 3, outputWidth: 2, spatialScale: 0.5, samplingRatio: samplingRatio, aligned: true)
    let deform = DeformRoIPoolOptions(outputHeight: 3, outputWidth: 2, spatialScale: 0.5, samplingRatio: samplingRatio,
                                      gamma: 0.1)
    let zeros = Tensor(zeros: [3, 2, 3, 2])
    let a = try roiAlignForward(input: p.input, rois: p.rois, options: align)
    let d = try deformRoIPoolForward(input: p.input, rois: p.rois, offset: zeros, options: deform)
    let m = try deformRoIPoolForward(input: p.input, rois: p.rois, offset: zeros,
                                     mask: Tensor(repeating: 1, shape: [3, 1, 3, 2]), options: deform)
    #expect(a.data == d.data)
    #expect(a.data == m.data)

    let weights = Tensor.normal(a.shape, using: &p.rng)
    var gA = Tensor(zeros: p.input.shape), gD = Tensor(zeros: p.input.shape), dOffset = Tensor(zeros: zeros.shape)
    try roiAlignBackward(dInput: &gA, dOutput: weights, rois: p.rois, options: align)
    try deformRoIPoolBackward(dInput: &gD, dOffset: &dOffset, dOutput: weights, input: p.input, rois: p.rois,
                              offset: zeros, options: deform)
    #expect(gA.data == gD.data)
}

@Test func modulatedDeformRoIPoolWithHalfMaskHalves() throws {
    var p = TinyRoIProblem(seed: 22)
    let options = DeformRoIPoolOptions(outputHeight: 2, outputWidth: 3, spatialScale: 0.5, samplingRatio: 2, gamma: 0.1)
    let offset = Tensor.uniform([3, 2, 2, 3], -0.5, 0.5, using: &p.rng)
    let full = try deformRoIPoolForward(input: p.input, rois: p.rois, offset: offset, options: options)
    let half = try deformRoIPoolForward(input: p.input, rois: p.rois, offset: offset,
                                        mask: Tensor(repeating: 0.5, shape: [3, 1, 2, 3]), options: options)
    #expect(half.data == full.data.map { $0 * 0.5 })
}

// MARK: - Backward accumulates

@Test func roiBackwardsAddIntoGradients() throws {
    var p = TinyRoIProblem(seed: 23)
    let options = RoIAlignOptions(outputHeight: 2, outputWidth: 2, spatialScale: 0.5, samplingRatio: 2, aligned: true)
    let weights = Tensor.normal([3, 2, 2, 2], using: &p.rng)
    var once = Tensor(zeros: p.input.shape)
    try roiAlignBackward(dInput: &once, dOutput: weights, rois: p.rois, options: options)
    let start = Tensor.normal(p.input.shape, using: &p.rng)
    var accumulated = start
    try roiAlignBackward(dInput: &accumulated, dOutput: weights, rois: p.rois, options: options)
    for i in 0..<start.count { #expect(abs(accumulated.data[i] - (start.data[i] + once.data[i])) <= 1e-6) }
}

// MARK: - Same bits on 1 and 2 threads

/// Every RoI op's outputs and gradients on a problem large enough to be split across threads.
private func allRoIResults() throws -> [[Float]] {
    var rng = SeededGenerator(seed: 31)
    let input = Tensor.normal([2, 16, 20, 24], using: &rng)
    var roiData = [Float]()
    for r in 0..<40 {
        let x = rng.uniform(-4, 40), y = rng.uniform(-4, 34)
        roiData += [Float(r % 2), x, y, x + rng.uniform(1, 20), y + rng.uniform(1, 20)]
    }
    let rois = try Tensor(shape: [40, 5], data: roiData)
    var results = [[Float]]()

    for (aligned, ratio) in [(true, 2), (false, 0)] {
        let o = RoIAlignOptions(outputHeight: 7, outputWidth: 7, spatialScale: 0.5, samplingRatio: ratio, aligned: aligned)
        let out = try roiAlignForward(input: input, rois: rois, options: o)
        let dOut = Tensor.normal(out.shape, using: &rng)
        var dIn = Tensor(zeros: input.shape)
        try roiAlignBackward(dInput: &dIn, dOutput: dOut, rois: rois, options: o)
        results += [out.data, dIn.data]
    }

    let po = RoIPoolOptions(outputHeight: 7, outputWidth: 7, spatialScale: 0.5)
    let (pooled, argmax) = try roiPoolForward(input: input, rois: rois, options: po)
    var dPool = Tensor(zeros: input.shape)
    try roiPoolBackward(dInput: &dPool, dOutput: Tensor.normal(pooled.shape, using: &rng), argmax: argmax, rois: rois,
                        options: po)
    results += [pooled.data, argmax.map(Float.init), dPool.data]

    let dOpt = DeformRoIPoolOptions(outputHeight: 7, outputWidth: 7, spatialScale: 0.5, samplingRatio: 2, gamma: 0.1)
    let offset = Tensor.normal([40, 2, 7, 7], std: 0.5, using: &rng)
    let mask = Tensor.uniform([40, 1, 7, 7], using: &rng)
    let out = try deformRoIPoolForward(input: input, rois: rois, offset: offset, mask: mask, options: dOpt)
    var dIn = Tensor(zeros: input.shape), dOff = Tensor(zeros: offset.shape), dMask = Tensor(zeros: mask.shape)
    try modulatedDeformRoIPoolBackward(dInput: &dIn, dOffset: &dOff, dMask: &dMask,
                                       dOutput: Tensor.normal(out.shape, using: &rng), input: input, rois: rois,
                                       offset: offset, mask: mask, options: dOpt)
    results += [out.data, dIn.data, dOff.data, dMask.data]

    let boxes = Tensor.uniform([500, 4], 0, 50, using: &rng)
    var b = boxes
    for i in 0..<500 { b.data[i * 4 + 2] += b.data[i * 4]; b.data[i * 4 + 3] += b.data[i * 4 + 1] }
    results.append(try boxIoU(b, b).data)
    return results
}

struct RoIThreadDeterminism {
    @Test func sameBitsOnOneAndTwoThreads() throws {
        let one = try Threads.with(1) { try allRoIResults() }
        let two = try Threads.with(2) { try allRoIResults() }
        #expect(one.count == two.count)
        for (i, (a, b)) in zip(one, two).enumerated() {
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "result \(i) differs between 1 and 2 threads")
        }
    }
}

// MARK: - Bad input throws

@Test func roiOpsRejectBadInput() throws {
    let input = Tensor(zeros: [2, 3, 8, 8])
    let good = try Tensor(shape: [1, 5], data: [1, 0, 0, 4, 4])
    let align = RoIAlignOptions(outputHeight: 2, outputWidth: 2, spatialScale: 1, samplingRatio: 2)
    let pool = RoIPoolOptions(outputHeight: 2, outputWidth: 2, spatialScale: 1)
    let deform = DeformRoIPoolOptions(outputHeight: 2, outputWidth: 2, spatialScale: 1)
    _ = try roiAlignForward(input: input, rois: good, options: align)

    let fourColumns = Tensor(zeros: [1, 4])
    let batchOutOfRange = try Tensor(shape: [1, 5], data: [2, 0, 0, 4, 4])
    let negativeBatch = try Tensor(shape: [1, 5], data: [-1, 0, 0, 4, 4])
    let fractionalBatch = try Tensor(shape: [1, 5], data: [0.5, 0, 0, 4, 4])
    let nonFinite = try Tensor(shape: [1, 5], data: [0, .nan, 0, 4, 4])
    for rois in [fourColumns, batchOutOfRange, negativeBatch, fractionalBatch, nonFinite] {
        #expect(throws: ShapeError.self) { try roiAlignForward(input: input, rois: rois, options: align) }
        #expect(throws: ShapeError.self) { try roiPoolForward(input: input, rois: rois, options: pool) }
        #expect(throws: ShapeError.self) {
            try deformRoIPoolForward(input: input, rois: rois, offset: Tensor(zeros: [1, 2, 2, 2]), options: deform)
        }
    }
    #expect(throws: ShapeError.self) { try roiAlignForward(input: Tensor(zeros: [3, 8, 8]), rois: good, options: align) }
    var zeroSize = align
    zeroSize.outputWidth = 0
    #expect(throws: ShapeError.self) { try roiAlignForward(input: input, rois: good, options: zeroSize) }
    var negativeRatio = align
    negativeRatio.samplingRatio = -1
    #expect(throws: ShapeError.self) { try roiAlignForward(input: input, rois: good, options: negativeRatio) }
    var zeroScale = pool
    zeroScale.spatialScale = 0
    #expect(throws: ShapeError.self) { try roiPoolForward(input: input, rois: good, options: zeroScale) }

    // Offset and mask shapes.
    #expect(throws: ShapeError.self) {
        try deformRoIPoolForward(input: input, rois: good, offset: Tensor(zeros: [1, 2, 3, 3]), options: deform)
    }
    #expect(throws: ShapeError.self) {
        try deformRoIPoolForward(input: input, rois: good, offset: Tensor(zeros: [1, 2, 2, 2]),
                                 mask: Tensor(zeros: [1, 2, 2, 2]), options: deform)
    }
    // Gradient buffers of the wrong shape.
    var dInput = Tensor(zeros: input.shape)
    #expect(throws: ShapeError.self) {
        try roiAlignBackward(dInput: &dInput, dOutput: Tensor(zeros: [1, 3, 3, 3]), rois: good, options: align)
    }
    var dOffset = Tensor(zeros: [1, 2, 2, 2]), dMask = Tensor(zeros: [1, 1, 2, 3])
    #expect(throws: ShapeError.self) {
        try modulatedDeformRoIPoolBackward(dInput: &dInput, dOffset: &dOffset, dMask: &dMask,
                                           dOutput: Tensor(zeros: [1, 3, 2, 2]), input: input, rois: good,
                                           offset: Tensor(zeros: [1, 2, 2, 2]), mask: Tensor(zeros: [1, 1, 2, 2]),
                                           options: deform)
    }
    #expect(throws: ShapeError.self) {
        try roiPoolBackward(dInput: &dInput, dOutput: Tensor(zeros: [1, 3, 2, 2]), argmax: [0], rois: good, options: pool)
    }
    #expect(dInput.data.allSatisfy { $0 == 0 })

    // Adaptive sampling of an absurdly large RoI would need billions of samples: an error, not a crash.
    let huge = try Tensor(shape: [1, 5], data: [0, 0, 0, 9e6, 9e6])
    var adaptive = align
    adaptive.samplingRatio = 0
    #expect(throws: ShapeError.self) { try roiAlignForward(input: input, rois: huge, options: adaptive) }
    // Coordinates far outside any feature map.
    let far = try Tensor(shape: [1, 5], data: [0, 0, 0, 1e30, 4])
    #expect(throws: ShapeError.self) { try roiPoolForward(input: input, rois: far, options: pool) }
}

@Test func emptyRoIListGivesEmptyOutput() throws {
    let input = Tensor(repeating: 1, shape: [1, 2, 4, 4])
    let rois = Tensor(zeros: [0, 5])
    let out = try roiAlignForward(input: input, rois: rois,
                                  options: RoIAlignOptions(outputHeight: 2, outputWidth: 2, spatialScale: 1))
    #expect(out.shape == [0, 2, 2, 2])
    let (pooled, argmax) = try roiPoolForward(input: input, rois: rois,
                                              options: RoIPoolOptions(outputHeight: 2, outputWidth: 2, spatialScale: 1))
    #expect(pooled.shape == [0, 2, 2, 2] && argmax.isEmpty)

    // A feature map without pixels: every bin is empty (0, argmax -1), nothing traps.
    let flat = Tensor(zeros: [1, 2, 0, 4])
    let one = try Tensor(shape: [1, 5], data: [0, 0, 0, 2, 2])
    let (emptyPool, emptyArg) = try roiPoolForward(input: flat, rois: one,
                                                   options: RoIPoolOptions(outputHeight: 2, outputWidth: 2, spatialScale: 1))
    #expect(emptyPool.data.allSatisfy { $0 == 0 } && emptyArg.allSatisfy { $0 == -1 })
    let emptyAlign = try roiAlignForward(input: flat, rois: one,
                                         options: RoIAlignOptions(outputHeight: 2, outputWidth: 2, spatialScale: 1))
    #expect(emptyAlign.shape == [1, 2, 2, 2] && emptyAlign.data.allSatisfy { $0 == 0 })
}
