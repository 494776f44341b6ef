// dcn-bench eval: a deterministic val2017-sized COCO bbox case (5,000 images, ~37,700 ground
// truths with some crowd, 500,000 detections over 80 categories) written to JSON files, and
// the time of our full evaluation from those files (load + evaluate + accumulate + summarize).
import DCNEval
import Foundation
import DCNAnnotations

/// Outcome of one evaluation benchmark run.
public struct EvalBenchResult: Sendable {
    public var groundTruthPath: String
    public var resultsPath: String
    public var images: Int
    public var groundTruths: Int
    public var crowd: Int
    public var detections: Int
    public var resultsFileBytes: Int
    public var threads: Int
    /// Seconds to write both files (not part of the timed evaluation).
    public var generateSeconds: Double
    /// Reading and parsing both JSON files.
    public var loadSeconds: Double
    /// evaluate + accumulate + summarize.
    public var evaluateSeconds: Double
    /// loadSeconds + evaluateSeconds: what `dcn-eval coco` spends.
    public var totalSeconds: Double
    /// Foundation's JSONDecoder on the same results file (only when requested), for comparison.
    public var jsonDecoderSeconds: Double?
    public var stats: COCOStats
    public var summary: [String]
}

/// SplitMix64: a small deterministic generator so the case is identical on every machine.
private struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }
    mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * uniform() }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// Standard normal (Box-Muller).
    mutating func gaussian() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

/// Appends `v` with two decimals (the text is what both tools parse, so rounding here is
/// irrelevant to agreement).
private func appendFixed2(_ out: inout [UInt8], _ v: Double) {
    var x = (v * 100).rounded()
    if x < 0 { out.append(UInt8(ascii: "-")); x = -x }
    let n = Int(x)
    out.append(contentsOf: Array(String(n / 100).utf8))
    out.append(UInt8(ascii: "."))
    let f = n % 100
    out.append(UInt8(48 + f / 10)); out.append(UInt8(48 + f % 10))
}

/// Writes `gt.json` and `results.json` of the synthetic case into `directory`.
/// Box sizes follow COCO's mix (about 41% small, 34% medium, 25% large); each image has 100
/// detections: noisy copies of its ground truths (score rising with overlap, some with the
/// wrong class) and background boxes with low scores.
public func writeSyntheticCOCOCase(directory: String, seed: UInt64 = 2017) throws -> (gt: String, results: String, images: Int, groundTruths: Int, crowd: Int, detections: Int) {
    var rng = SplitMix64(state: seed)
    let imageCount = 5000, categoryCount = 80, detectionsPerImage = 100
    var gt = [UInt8](), res = [UInt8]()
    gt.reserveCapacity(8 << 20); res.reserveCapacity(48 << 20)
    gt.append(contentsOf: Array("{\"images\": [".utf8))
    var sizes = [(Int, Int)]()
    for i in 0..<imageCount {
        let w = 640, h = 360 + rng.int(281)
        sizes.append((w, h))
        if i > 0 { gt.append(UInt8(ascii: ",")) }
        gt.append(contentsOf: Array("{\"id\": \(i + 1), \"width\": \(w), \"height\": \(h), \"file_name\": \"\(String(format: "%012d", i + 1)).jpg\"}".utf8))
    }
    gt.append(contentsOf: Array("], \"categories\": [".utf8))
    for k in 0..<categoryCount {
        if k > 0 { gt.append(UInt8(ascii: ",")) }
        gt.append(contentsOf: Array("{\"id\": \(k + 1), \"name\": \"class\(k + 1)\", \"supercategory\": \"thing\"}".utf8))
    }
    gt.append(contentsOf: Array("], \"annotations\": [".utf8))
    res.append(UInt8(ascii: "["))
    var annotationID = 0, crowd = 0, detections = 0
    for i in 0..<imageCount {
        let (w, h) = sizes[i]
        // Poisson-like count with mean ~7.54 (37,700 / 5,000).
        let n = max(0, Int((7.40 + 4.5 * rng.gaussian()).rounded()))
        var boxes = [(x: Double, y: Double, w: Double, h: Double, k: Int)]()
        for _ in 0..<n {
            // log-normal side: median ~45 px.
            let side = min(max(exp(log(45.0) + 1.05 * rng.gaussian()), 2), 600)
            let aspect = exp(0.5 * rng.gaussian())
            let bw = min(side * aspect.squareRoot(), Double(w) - 1), bh = min(side / aspect.squareRoot(), Double(h) - 1)
            let x = rng.uniform(0, Double(w) - bw), y = rng.uniform(0, Double(h) - bh)
            let k = min(categoryCount - 1, Int(Double(categoryCount) * pow(rng.uniform(), 1.6)))  // some classes frequent
            let isCrowd = rng.uniform() < 0.01
            annotationID += 1
            if isCrowd { crowd += 1 }
            if annotationID > 1 { gt.append(UInt8(ascii: ",")) }
            gt.append(contentsOf: Array("{\"id\": \(annotationID), \"image_id\": \(i + 1), \"category_id\": \(k + 1), \"iscrowd\": \(isCrowd ? 1 : 0), \"area\": ".utf8))
            appendFixed2(&gt, bw * bh * 0.8)  // mask area is below the box area, as in COCO
            gt.append(contentsOf: Array(", \"bbox\": [".utf8))
            appendFixed2(&gt, x); gt.append(UInt8(ascii: ","))
            appendFixed2(&gt, y); gt.append(UInt8(ascii: ","))
            appendFixed2(&gt, bw); gt.append(UInt8(ascii: ","))
            appendFixed2(&gt, bh)
            gt.append(contentsOf: Array("]}".utf8))
            boxes.append((x, y, bw, bh, k))
        }
        var made = 0
        func emit(_ k: Int, _ x: Double, _ y: Double, _ bw: Double, _ bh: Double, _ score: Double) {
            if detections > 0 { res.append(UInt8(ascii: ",")) }
            res.append(contentsOf: Array("{\"image_id\": \(i + 1), \"category_id\": \(k + 1), \"bbox\": [".utf8))
            appendFixed2(&res, x); res.append(UInt8(ascii: ","))
            appendFixed2(&res, y); res.append(UInt8(ascii: ","))
            appendFixed2(&res, max(bw, 1)); res.append(UInt8(ascii: ","))
            appendFixed2(&res, max(bh, 1))
            res.append(contentsOf: Array("], \"score\": ".utf8))
            // Three decimals: ties happen, as with real detectors' rounded scores.
            let s = (min(max(score, 0.001), 0.999) * 1000).rounded() / 1000
            res.append(contentsOf: Array(String(s).utf8))
            res.append(UInt8(ascii: "}"))
            detections += 1
            made += 1
        }
        for b in boxes where made < detectionsPerImage - 10 {
            let copies = 1 + rng.int(3)
            for _ in 0..<copies {
                let noise = rng.uniform(0.02, 0.35)
                let dx = noise * b.w * rng.gaussian(), dy = noise * b.h * rng.gaussian()
                let sw = b.w * exp(noise * rng.gaussian()), sh = b.h * exp(noise * rng.gaussian())
                let k = rng.uniform() < 0.1 ? rng.int(categoryCount) : b.k
                emit(k, b.x + dx, b.y + dy, sw, sh, 1 - noise * 2.2 + 0.15 * rng.gaussian())
            }
        }
        while made < detectionsPerImage {
            let side = min(max(exp(log(60.0) + 1.0 * rng.gaussian()), 4), 500)
            let bw = side * rng.uniform(0.6, 1.4), bh = side * rng.uniform(0.6, 1.4)
            emit(rng.int(categoryCount), rng.uniform(0, Double(w) - 4), rng.uniform(0, Double(h) - 4), bw, bh, 0.35 * pow(rng.uniform(), 2))
        }
    }
    gt.append(contentsOf: Array("]}\n".utf8))
    res.append(contentsOf: Array("]\n".utf8))
    let gtPath = URL(fileURLWithPath: directory).appendingPathComponent("synthetic_val2017_gt.json").path
    let resPath = URL(fileURLWithPath: directory).appendingPathComponent("synthetic_val2017_bbox_results.json").path
    try Data(gt).write(to: URL(fileURLWithPath: gtPath))
    try Data(res).write(to: URL(fileURLWithPath: resPath))
    return (gtPath, resPath, imageCount, annotationID, crowd, detections)
}

/// Generates the case (into `directory`, or a fresh temporary folder) and times our COCO bbox
/// evaluation of it from the files with `threads` worker threads.
public func runEvalBenchmark(directory: String?, threads: Int, compareJSONDecoder: Bool = false) throws -> EvalBenchResult {
    let dir = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("dcn-eval-bench-\(ProcessInfo.processInfo.processIdentifier)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    // A temporary folder is removed afterwards; a folder the caller named keeps the files.
    defer { if directory == nil { try? FileManager.default.removeItem(atPath: dir) } }
    let t0 = Date()
    let c = try writeSyntheticCOCOCase(directory: dir)
    let t1 = Date()
    let gt = try COCOGroundTruth.load(path: c.gt)
    let results = try COCOResult.loadArray(path: c.results)
    let t2 = Date()
    let result = try evaluateCOCO(groundTruth: gt, results: results, iouType: .bbox, threads: threads)
    let summary = result.summaryLines
    let t3 = Date()
    var decoderSeconds: Double? = nil
    if compareJSONDecoder {
        let d0 = Date()
        _ = try JSONDecoder().decode([COCOResult].self, from: Data(contentsOf: URL(fileURLWithPath: c.results)))
        decoderSeconds = Date().timeIntervalSince(d0)
    }
    let bytes = (try? FileManager.default.attributesOfItem(atPath: c.results)[.size] as? Int) ?? 0
    return EvalBenchResult(groundTruthPath: c.gt, resultsPath: c.results, images: c.images, groundTruths: c.groundTruths, crowd: c.crowd,
                           detections: c.detections, resultsFileBytes: bytes ?? 0, threads: threads,
                           generateSeconds: t1.timeIntervalSince(t0), loadSeconds: t2.timeIntervalSince(t1),
                           evaluateSeconds: t3.timeIntervalSince(t2), totalSeconds: t3.timeIntervalSince(t1),
                           jsonDecoderSeconds: decoderSeconds, stats: result.stats, summary: summary)
}
