// dcn-bench verify: runs the op named in a fixture file's metadata on the fixture's inputs and
// compares every output and gradient with the reference values by relative L2 error.
import DCNTensor

/// One compared tensor: `||ours - reference|| / ||reference||`.
public struct Comparison: Sendable {
    public let name: String
    public let relativeError: Double
}

/// The outcome of one fixture file.
public struct VerifyResult: Sendable {
    public let path: String
    public let op: String
    public let comparisons: [Comparison]
    /// Largest relative error of all compared tensors.
    public var worst: Double { comparisons.map(\.relativeError).max() ?? .infinity }
    /// Whole networks accumulate float32 rounding over many layers: they pass at 1e-4 (the
    /// fixtures' README), single ops at the given tolerance.
    public func passed(tolerance: Double) -> Bool {
        !comparisons.isEmpty && worst <= (op == "resnet" ? max(tolerance, 1e-4) : tolerance)
    }
}

/// The relative L2 error; 0 when both are zero, the absolute norm when only the reference is.
public func relativeL2(_ ours: [Double], _ reference: [Double]) -> Double {
    precondition(ours.count == reference.count)
    var diff = 0.0, norm = 0.0
    for i in 0..<ours.count {
        let d = ours[i] - reference[i]
        diff += d * d
        norm += reference[i] * reference[i]
    }
    if !diff.isFinite { return .infinity }
    if norm == 0 { return diff.squareRoot() }
    return (diff / norm).squareRoot()
}

/// Reading parameters and reference tensors out of one fixture file.
public struct Fixture {
    public let file: SafeTensorsFile
    public init(path: String) throws { file = try SafeTensorsFile(path: path) }

    public var op: String { file.metadata["op"] ?? "" }

    /// An integer parameter of the metadata; `fallback` when absent, an error if absent without one.
    public func int(_ key: String, default fallback: Int? = nil) throws -> Int {
        guard let text = file.metadata[key] else {
            if let fallback { return fallback }
            throw SafeTensorsError("\(file.path): metadata has no '\(key)'")
        }
        guard let v = Int(text) else { throw SafeTensorsError("\(file.path): metadata '\(key)' = '\(text)' is not an integer") }
        return v
    }

    public func double(_ key: String, default fallback: Double? = nil) throws -> Double {
        guard let text = file.metadata[key] else {
            if let fallback { return fallback }
            throw SafeTensorsError("\(file.path): metadata has no '\(key)'")
        }
        guard let v = Double(text) else { throw SafeTensorsError("\(file.path): metadata '\(key)' = '\(text)' is not a number") }
        return v
    }

    public func has(_ name: String) -> Bool { file.entry(name) != nil }
    public func tensor(_ name: String) throws -> Tensor { try file.tensor(name) }
    public func optionalTensor(_ name: String) throws -> Tensor? { has(name) ? try file.tensor(name) : nil }

    /// Compares `ours` with the reference tensor `name` (shape and values).
    public func compare(_ name: String, _ ours: Tensor) throws -> Comparison {
        try compare(name, shape: ours.shape, ours.data.map(Double.init))
    }

    public func compare(_ name: String, shape: [Int], _ ours: [Double]) throws -> Comparison {
        let (refShape, ref) = try file.doubles(name)
        guard refShape == shape else {
            throw SafeTensorsError("\(file.path): '\(name)' has shape \(refShape), ours \(shape)")
        }
        return Comparison(name: name, relativeError: relativeL2(ours, ref))
    }
}

/// Runs the fixture at `path` through the op its metadata names.
public func verifyFixture(path: String) throws -> VerifyResult {
    let fixture = try Fixture(path: path)
    let comparisons: [Comparison]
    switch fixture.op {
    case "conv2d": comparisons = try verifyConv2d(fixture)
    case "conv_transpose2d": comparisons = try verifyConvTranspose2d(fixture)
    case "deform_conv2d": comparisons = try verifyDeformConv2d(fixture)
    case "frozen_batch_norm": comparisons = try verifyFrozenBatchNorm(fixture)
    case "batch_norm": comparisons = try verifyBatchNorm(fixture)
    case "group_norm": comparisons = try verifyGroupNorm(fixture)
    case "relu", "sigmoid": comparisons = try verifyActivation(fixture)
    case "max_pool2d": comparisons = try verifyMaxPool(fixture)
    case "global_avg_pool": comparisons = try verifyGlobalAvgPool(fixture)
    case "linear": comparisons = try verifyLinear(fixture)
    case "softmax_cross_entropy": comparisons = try verifySoftmaxCrossEntropy(fixture)
    case "pixel_cross_entropy": comparisons = try verifyPixelCrossEntropy(fixture)
    case "bilinear_resize": comparisons = try verifyBilinearResize(fixture)
    case "sigmoid_bce": comparisons = try verifySigmoidBCE(fixture)
    case "smooth_l1": comparisons = try verifySmoothL1(fixture)
    case "cosine_mimic": comparisons = try verifyCosineMimic(fixture)
    case "roi_align": comparisons = try verifyRoIAlign(fixture)
    case "roi_pool": comparisons = try verifyRoIPool(fixture)
    case "deform_roi_pool": comparisons = try verifyDeformRoIPool(fixture, modulated: false)
    case "modulated_deform_roi_pool": comparisons = try verifyDeformRoIPool(fixture, modulated: true)
    case "nms": comparisons = try verifyNMS(fixture)
    case "resnet": comparisons = try verifyResNet(fixture)
    default:
        throw SafeTensorsError("\(path): unknown op '\(fixture.op)'")
    }
    return VerifyResult(path: path, op: fixture.op, comparisons: comparisons)
}
