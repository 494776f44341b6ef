// COCO evaluation with pycocotools' exact semantics (cocoeval.py: evaluateImg, accumulate,
// summarize), see docs in ../shared/design/EVALUATION.md. Per-image matching runs in parallel
// over (category, image) pairs and accumulation over (category, maxDets); every task writes
// only its own slots, so results do not depend on scheduling.
import Foundation
import DCNAnnotations

/// What is compared: boxes or masks.
public enum COCOIoUType: String, CaseIterable, Sendable {
    case bbox
    case segm
}

/// pycocotools' default parameters.
public struct COCOParameters: Sendable {
    /// `np.linspace(.5, .95, 10)`: `0.5 + k * ((0.95 - 0.5) / 9)`, the last exactly 0.95.
    public var iouThresholds: [Double]
    /// `np.linspace(0, 1, 101)`: `k * 0.01`, the last exactly 1.
    public var recallThresholds: [Double]
    public var maxDetections: [Int] = [1, 10, 100]
    /// all, small, medium, large; a value is out of range iff `a < lo || a > hi`.
    public var areaRanges: [(lo: Double, hi: Double)] = [(0, 1e10), (0, 1024), (1024, 9216), (9216, 1e10)]
    public var areaLabels = ["all", "small", "medium", "large"]

    public init() {
        let step = (0.95 - 0.5) / 9
        iouThresholds = (0..<10).map { 0.5 + Double($0) * step }
        iouThresholds[9] = 0.95
        recallThresholds = (0..<101).map { Double($0) * 0.01 }
        recallThresholds[100] = 1.0
    }
}

/// The 12 numbers of `COCOeval.summarize()`.
public struct COCOStats: Codable, Equatable, Sendable {
    public var AP, AP50, AP75, APs, APm, APl: Double
    public var AR1, AR10, AR100, ARs, ARm, ARl: Double

    public static let names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]

    public init(_ v: [Double]) {
        precondition(v.count == 12)
        AP = v[0]; AP50 = v[1]; AP75 = v[2]; APs = v[3]; APm = v[4]; APl = v[5]
        AR1 = v[6]; AR10 = v[7]; AR100 = v[8]; ARs = v[9]; ARm = v[10]; ARl = v[11]
    }

    public var values: [Double] { [AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl] }
}

/// Errors in the inputs of an evaluation; `input` says which one is at fault.
public struct COCOEvalError: Error, CustomStringConvertible, Sendable {
    public enum Input: Sendable { case groundTruth, results }
    public let input: Input
    public let message: String
    public init(_ message: String, in input: Input = .results) { self.message = message; self.input = input }
    public var description: String { message }
}

/// Pointer to a buffer whose slots are partitioned between concurrent tasks: each task
/// writes only indices that no other task touches, and nobody reads until all are done.
struct DisjointSlots<Element>: @unchecked Sendable {
    let base: UnsafeMutablePointer<Element>
    @inline(__always) func write(_ i: Int, _ v: Element) { base[i] = v }
}

/// Runs `body` over `0..<count` in contiguous chunks on up to `threads` cores
/// (`DispatchQueue.concurrentPerform`), or inline for one thread.
func parallelChunks(_ count: Int, threads: Int, _ body: @Sendable (Range<Int>) -> Void) {
    if count == 0 { return }
    if threads <= 1 || count == 1 { body(0..<count); return }
    let chunks = min(count, threads * 16)
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        body((c * count / chunks)..<((c + 1) * count / chunks))
    }
}

/// Everything `evaluate` needs, laid out flat: detections and ground truths grouped by
/// (category, image) in file order (`bucket = k * imageCount + i`).
struct PreparedCOCO: Sendable {
    var imageIDs: [Int]
    var categoryIDs: [Int]
    var iouType: COCOIoUType

    var gtBucketStart: [Int]  // imageCount * categoryCount + 1
    var gtID: [Int], gtArea: [Double], gtCrowd: [Bool], gtBox: [Double]  // box: 4 per gt
    var gtMask: [RLE], gtMaskBox: [Double]

    var dtBucketStart: [Int]
    var dtScore: [Double], dtArea: [Double], dtBox: [Double]
    var dtMask: [RLE], dtMaskBox: [Double]
}

/// Bucket ids in file order, grouped by bucket (counting sort): returns start offsets and the
/// permutation.
private func groupByBucket(_ buckets: [Int], bucketCount: Int) -> (start: [Int], order: [Int]) {
    var start = [Int](repeating: 0, count: bucketCount + 1)
    for b in buckets { start[b + 1] += 1 }
    for b in 0..<bucketCount { start[b + 1] += start[b] }
    var fill = start
    var order = [Int](repeating: 0, count: buckets.count)
    for (n, b) in buckets.enumerated() { order[fill[b]] = n; fill[b] += 1 }
    return (start, order)
}

extension PreparedCOCO {
    /// `COCO.loadRes` + `COCOeval._prepare`: images and categories of the ground truth,
    /// sorted; results of unknown categories dropped; unknown images are an error.
    init(groundTruth gt: COCOGroundTruth, results: [COCOResult], iouType: COCOIoUType, threads: Int) throws {
        self.iouType = iouType
        imageIDs = Array(Set(gt.images.map(\.id))).sorted()
        categoryIDs = Array(Set(gt.categories.map(\.id))).sorted()
        var imageIndex = [Int: Int](minimumCapacity: imageIDs.count)
        for (i, id) in imageIDs.enumerated() { imageIndex[id] = i }
        var categoryIndex = [Int: Int]()
        for (k, id) in categoryIDs.enumerated() { categoryIndex[id] = k }
        var imageSize = [Int: (h: Int, w: Int)]()
        for im in gt.images { imageSize[im.id] = (im.height, im.width) }
        let I = imageIDs.count, K = categoryIDs.count

        // An empty results file is rejected when it is read (as pycocotools' loadRes does); in
        // memory, a model that detects nothing simply scores 0.
        for (n, r) in results.enumerated() where imageIndex[r.imageID] == nil {
            throw COCOEvalError("detection \(n) (image_id \(r.imageID)) refers to an image that is not in the ground truth (results do not correspond to this ground-truth set)")
        }
        // loadRes decides the form from the first result: a non-empty bbox means box results.
        let boxResults = results.first.map { $0.bbox != nil } ?? (iouType == .bbox)
        if let first = results.first, !boxResults && first.segmentation == nil {
            throw COCOEvalError("detection 0 has neither \"bbox\" nor \"segmentation\"")
        }

        // Ground truth of the evaluated images and categories, file order.
        var keptGT = [Int](), gtBuckets = [Int]()
        for (n, a) in gt.annotations.enumerated() {
            guard let i = imageIndex[a.imageID], let k = categoryIndex[a.categoryID] else { continue }
            keptGT.append(n); gtBuckets.append(k * I + i)
        }
        let gtGroups = groupByBucket(gtBuckets, bucketCount: K * I)
        gtBucketStart = gtGroups.start
        let gtOrder = gtGroups.order.map { keptGT[$0] }
        gtID = gtOrder.map { gt.annotations[$0].id }
        gtArea = gtOrder.map { gt.annotations[$0].area }
        gtCrowd = gtOrder.map { gt.annotations[$0].isCrowd }
        gtBox = []; gtMask = []; gtMaskBox = []
        dtBox = []; dtMask = []; dtMaskBox = []

        // Results of known categories, file order; area as loadRes computes it.
        var keptDT = [Int](), dtBuckets = [Int]()
        for (n, r) in results.enumerated() {
            guard let k = categoryIndex[r.categoryID] else { continue }  // dropped, as _prepare does
            keptDT.append(n); dtBuckets.append(k * I + imageIndex[r.imageID]!)
        }
        let dtGroups = groupByBucket(dtBuckets, bucketCount: K * I)
        dtBucketStart = dtGroups.start
        let dtOrder = dtGroups.order.map { keptDT[$0] }
        dtScore = dtOrder.map { results[$0].score }

        switch iouType {
        case .bbox:
            gtBox.reserveCapacity(gtOrder.count * 4)
            for n in gtOrder {
                guard let b = gt.annotations[n].bbox else { throw COCOEvalError("annotations[\(n)] (id \(gt.annotations[n].id)) has no \"bbox\"", in: .groundTruth) }
                gtBox += [b.x, b.y, b.width, b.height]
            }
        case .segm:
            let anns = gtOrder.map { gt.annotations[$0] }
            let sizes = anns.map { imageSize[$0.imageID]! }
            (gtMask, gtMaskBox) = try rasterise(count: anns.count, threads: threads, input: .groundTruth) { j in
                let name = "annotations[\(gtOrder[j])] (id \(anns[j].id))"
                guard let s = anns[j].segmentation else { throw MaskError("\(name) has no \"segmentation\"") }
                do { return try imageMask(s, imageID: anns[j].imageID, size: sizes[j]) } catch {
                    throw MaskError("\(name): segmentation: \(error)")
                }
            }
        }

        if boxResults {
            var areas = [Double](), boxes = [Double]()
            areas.reserveCapacity(dtOrder.count); boxes.reserveCapacity(dtOrder.count * 4)
            for n in dtOrder {
                guard let b = results[n].bbox else { throw COCOEvalError("detection \(n) has no \"bbox\" (the first detection has one, so all must)") }
                areas.append(b.width * b.height)
                boxes += [b.x, b.y, b.width, b.height]
            }
            dtArea = areas
            if iouType == .bbox { dtBox = boxes }
            if iouType == .segm {
                let rs = dtOrder.map { results[$0] }
                let sizes = rs.map { imageSize[$0.imageID]! }
                (dtMask, dtMaskBox) = try rasterise(count: rs.count, threads: threads, input: .results) { j in
                    do {
                        if let s = rs[j].segmentation { return try imageMask(s, imageID: rs[j].imageID, size: sizes[j]) }
                        // loadRes stores the box as the polygon [x1,y1, x1,y2, x2,y2, x2,y1].
                        let b = rs[j].bbox!
                        let x1 = b.x, x2 = b.x + b.width, y1 = b.y, y2 = b.y + b.height
                        return try RLE(polygons: [[x1, y1, x1, y2, x2, y2, x2, y1]], height: sizes[j].h, width: sizes[j].w)
                    } catch {
                        throw MaskError("detection \(dtOrder[j]): \(error)")
                    }
                }
            }
        } else {
            let rs = dtOrder.map { results[$0] }
            var masks = [RLE]()
            masks.reserveCapacity(rs.count)
            for (j, r) in rs.enumerated() {
                guard let s = r.segmentation else { throw COCOEvalError("detection \(dtOrder[j]) has no \"segmentation\" (the first detection has one, so all must)") }
                if case .polygons = s { throw COCOEvalError("detection \(dtOrder[j]): segmentation results must be RLE ({\"size\", \"counts\"}), not polygons") }
                do { masks.append(try imageMask(s, imageID: r.imageID, size: imageSize[r.imageID]!)) } catch {
                    throw COCOEvalError("detection \(dtOrder[j]): \(error)")
                }
            }
            dtArea = masks.map { Double(UInt32(truncatingIfNeeded: $0.area)) }
            if iouType == .bbox {
                dtBox = []
                dtBox.reserveCapacity(rs.count * 4)
                for (j, r) in rs.enumerated() { dtBox += r.bbox?.array ?? masks[j].boundingBox }
            } else {
                dtMask = masks
                dtMaskBox = masks.flatMap(\.boundingBox)
            }
        }
    }
}

/// The mask of `segmentation` on image `imageID` of `size`; an RLE of another size is an error
/// (`rleSizeProblem`).
private func imageMask(_ segmentation: COCOSegmentation, imageID: Int, size: (h: Int, w: Int)) throws -> RLE {
    let mask = try segmentation.rle(height: size.h, width: size.w)
    if let problem = rleSizeProblem(height: mask.height, width: mask.width, imageID: imageID, imageHeight: size.h, imageWidth: size.w) {
        throw MaskError(problem)
    }
    return mask
}

/// Builds masks in parallel and their boxes; the first error (in index order) is thrown as a
/// problem of `input`.
private func rasterise(count: Int, threads: Int, input: COCOEvalError.Input, _ make: @Sendable (Int) throws -> RLE) throws -> ([RLE], [Double]) {
    var masks = [RLE](repeating: RLE(height: 0, width: 0, counts: []), count: count)
    var errors = [String?](repeating: nil, count: count)
    masks.withUnsafeMutableBufferPointer { mb in
        errors.withUnsafeMutableBufferPointer { eb in
            let m = DisjointSlots(base: mb.baseAddress ?? UnsafeMutablePointer(bitPattern: 8)!)
            let e = DisjointSlots(base: eb.baseAddress ?? UnsafeMutablePointer(bitPattern: 8)!)
            parallelChunks(count, threads: threads) { range in
                for j in range {
                    do { m.write(j, try make(j)) } catch { e.write(j, "\(error)") }
                }
            }
        }
    }
    if let e = errors.first(where: { $0 != nil }) { throw COCOEvalError(e!, in: input) }
    return (masks, masks.flatMap(\.boundingBox))
}

/// Full COCO evaluation output: the precision and recall tables of `accumulate()` and the
/// 12 summary numbers.
public struct COCOEvalResult: Sendable {
    public let parameters: COCOParameters
    public let imageIDs: [Int]
    public let categoryIDs: [Int]
    /// `precision[t][r][k][a][m]`, C order, -1 where undefined (T x R x K x A x M).
    public let precision: [Double]
    /// `recall[t][k][a][m]`, C order (T x K x A x M).
    public let recall: [Double]
    public let stats: COCOStats

    /// detectron2's per-category AP: mean over IoU thresholds and recall thresholds of
    /// `precision[:, :, k, area=all, maxDets=100]` entries > -1, times 100 (NaN if none).
    public func perCategoryAP() -> [(categoryID: Int, ap: Double)] {
        let T = parameters.iouThresholds.count, R = parameters.recallThresholds.count
        let K = categoryIDs.count, A = parameters.areaRanges.count, M = parameters.maxDetections.count
        return categoryIDs.enumerated().map { k, id in
            var v = [Double]()
            for t in 0..<T { for r in 0..<R {
                let p = precision[(((t * R + r) * K + k) * A + 0) * M + (M - 1)]
                if p > -1 { v.append(p) }
            } }
            return (id, v.isEmpty ? .nan : numpyMean(v) * 100)
        }
    }
}

/// COCO evaluation of `results` against `groundTruth` (pycocotools' `COCOeval` with default
/// parameters: evaluate, accumulate, summarize).
public func evaluateCOCO(groundTruth: COCOGroundTruth, results: [COCOResult], iouType: COCOIoUType, threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws -> COCOEvalResult {
    let t0 = Date()
    let prepared = try PreparedCOCO(groundTruth: groundTruth, results: results, iouType: iouType, threads: threads)
    let t1 = Date()
    let result = evaluatePrepared(prepared, parameters: COCOParameters(), threads: threads)
    if ProcessInfo.processInfo.environment["DCN_EVAL_TIMING"] != nil {
        let line = String(format: "dcn-eval timing: prepare %.3f s, evaluate+accumulate+summarize %.3f s (%d threads)\n",
                          t1.timeIntervalSince(t0), Date().timeIntervalSince(t1), threads)
        FileHandle.standardError.write(Data(line.utf8))
    }
    return result
}

/// Per-image results, flat: for the first `min(n, maxDets.last)` detections of each bucket
/// (sorted by score), their score and for each (area, threshold) a flag byte
/// (bit 0: matched to a ground truth with non-zero id, bit 1: ignored).
private struct ImageEvaluations {
    var start: [Int]  // per bucket, into the flat detection slots
    var score: [Double]
    var flags: [UInt8]  // [slot * (A * T) + a * T + t]: one detection's flags are adjacent
    var nonIgnoredGT: [Int32]  // [(k * A + a) * I + i]
}

func evaluatePrepared(_ p: PreparedCOCO, parameters: COCOParameters, threads: Int) -> COCOEvalResult {
    let I = p.imageIDs.count, K = p.categoryIDs.count
    let T = parameters.iouThresholds.count, A = parameters.areaRanges.count
    let maxDet = parameters.maxDetections.last!
    let buckets = I * K

    // Slots: the first maxDet detections of every bucket.
    var start = [Int](repeating: 0, count: buckets + 1)
    for b in 0..<buckets { start[b + 1] = start[b] + min(p.dtBucketStart[b + 1] - p.dtBucketStart[b], maxDet) }
    let slots = start[buckets]
    var score = [Double](repeating: 0, count: slots)
    var flags = [UInt8](repeating: 0, count: slots * A * T)
    var npig = [Int32](repeating: 0, count: K * A * I)

    let slotStart = start
    score.withUnsafeMutableBufferPointer { sb in
    flags.withUnsafeMutableBufferPointer { fb in
    npig.withUnsafeMutableBufferPointer { nb in
        let scoreOut = DisjointSlots(base: sb.baseAddress ?? UnsafeMutablePointer(bitPattern: 8)!)
        let flagOut = DisjointSlots(base: fb.baseAddress ?? UnsafeMutablePointer(bitPattern: 8)!)
        let npigOut = DisjointSlots(base: nb.baseAddress!)
        parallelChunks(buckets, threads: threads) { range in
            var ious = [Double]()
            var order = [Int]()
            var dts = [Int]()
            var gtIgnore = [Bool]()
            var gtOrder = [Int]()
            var matched = [Bool]()
            for b in range {
                let k = b / I, i = b % I
                let g0 = p.gtBucketStart[b], G = p.gtBucketStart[b + 1] - g0
                let d0 = p.dtBucketStart[b], n = p.dtBucketStart[b + 1] - d0
                if G == 0 && n == 0 { continue }
                // Detections by score descending, ties in file order (a stable sort).
                order.removeAll(keepingCapacity: true)
                order.append(contentsOf: d0..<(d0 + n))
                order.sort { (x: Int, y: Int) -> Bool in
                    let sx: Double = p.dtScore[x], sy: Double = p.dtScore[y]
                    return sx > sy || (sx == sy && x < y)
                }
                let D = min(n, maxDet)
                dts.removeAll(keepingCapacity: true)
                dts.append(contentsOf: order[0..<D])
                let s0 = slotStart[b]
                for d in 0..<D { scoreOut.write(s0 + d, p.dtScore[dts[d]]) }

                // IoU of every detection with every ground truth (file order).
                ious.removeAll(keepingCapacity: true)
                ious.reserveCapacity(D * G)
                for d in 0..<D {
                    let dj = dts[d]
                    for g in 0..<G {
                        let gj = g0 + g
                        switch p.iouType {
                        case .bbox:
                            ious.append(boxIoU(p.dtBox[4 * dj], p.dtBox[4 * dj + 1], p.dtBox[4 * dj + 2], p.dtBox[4 * dj + 3],
                                               p.gtBox[4 * gj], p.gtBox[4 * gj + 1], p.gtBox[4 * gj + 2], p.gtBox[4 * gj + 3], crowd: p.gtCrowd[gj]))
                        case .segm:
                            ious.append(RLE.iou(detection: p.dtMask[dj], detectionBox: Array(p.dtMaskBox[(4 * dj)..<(4 * dj + 4)]),
                                                groundTruth: p.gtMask[gj], groundTruthBox: Array(p.gtMaskBox[(4 * gj)..<(4 * gj + 4)]), crowd: p.gtCrowd[gj]))
                        }
                    }
                }

                for a in 0..<A {
                    let (lo, hi) = parameters.areaRanges[a]
                    gtIgnore.removeAll(keepingCapacity: true)
                    var nonIgnored: Int32 = 0
                    for g in 0..<G {
                        let ar = p.gtArea[g0 + g]
                        let ig = p.gtCrowd[g0 + g] || ar < lo || ar > hi
                        gtIgnore.append(ig)
                        if !ig { nonIgnored += 1 }
                    }
                    npigOut.write((k * A + a) * I + i, nonIgnored)
                    // Non-ignored ground truths first, stable.
                    gtOrder.removeAll(keepingCapacity: true)
                    for g in 0..<G where !gtIgnore[g] { gtOrder.append(g) }
                    for g in 0..<G where gtIgnore[g] { gtOrder.append(g) }

                    for t in 0..<T {
                        matched.removeAll(keepingCapacity: true)
                        matched.append(contentsOf: repeatElement(false, count: G))
                        let flagStride = A * T
                        let base = s0 * flagStride + a * T + t
                        for d in 0..<D {
                            var best = min(parameters.iouThresholds[t], 1 - 1e-10)
                            var m = -1
                            for g in gtOrder {
                                if matched[g] && !p.gtCrowd[g0 + g] { continue }
                                if m > -1 && !gtIgnore[m] && gtIgnore[g] { break }
                                let v = ious[d * G + g]
                                if v < best { continue }
                                best = v
                                m = g
                            }
                            let da = p.dtArea[dts[d]]
                            let outside = da < lo || da > hi
                            var f: UInt8 = 0
                            if m == -1 {
                                if outside { f = 2 }
                            } else {
                                matched[m] = true
                                // A ground-truth id of 0 reads as "unmatched" in pycocotools.
                                let realMatch = p.gtID[g0 + m] != 0
                                if realMatch { f |= 1 }
                                if gtIgnore[m] || (!realMatch && outside) { f |= 2 }
                            }
                            flagOut.write(base + d * flagStride, f)
                        }
                    }
                }
            }
        }
    }
    }
    }
    let evals = ImageEvaluations(start: start, score: score, flags: flags, nonIgnoredGT: npig)
    return accumulate(evals, prepared: p, parameters: parameters, threads: threads)
}

private func accumulate(_ e: ImageEvaluations, prepared p: PreparedCOCO, parameters: COCOParameters, threads: Int) -> COCOEvalResult {
    let I = p.imageIDs.count, K = p.categoryIDs.count
    let T = parameters.iouThresholds.count, R = parameters.recallThresholds.count
    let A = parameters.areaRanges.count, M = parameters.maxDetections.count
    var precision = [Double](repeating: -1, count: T * R * K * A * M)
    var recall = [Double](repeating: -1, count: T * K * A * M)

    precision.withUnsafeMutableBufferPointer { pb in
    recall.withUnsafeMutableBufferPointer { rb in
        let precisionOut = DisjointSlots(base: pb.baseAddress!)
        let recallOut = DisjointSlots(base: rb.baseAddress!)
        parallelChunks(K * M, threads: threads) { range in
            var positions = [Int]()
            var sortedFlags = [UInt8]()
            var rc = [Double](), pr = [Double]()
            for task in range {
                let k = task / M, m = task % M
                let maxDet = parameters.maxDetections[m]
                // Each image's first maxDet detections, images in id order, then a stable
                // sort by score (slot numbers increase in concatenation order).
                positions.removeAll(keepingCapacity: true)
                for i in 0..<I {
                    let b = k * I + i
                    let s = e.start[b]
                    positions.append(contentsOf: s..<(s + min(e.start[b + 1] - s, maxDet)))
                }
                let scores = e.score
                positions.sort { (x: Int, y: Int) -> Bool in scores[x] > scores[y] || (scores[x] == scores[y] && x < y) }
                let nd = positions.count
                // Gather the sorted detections' flags into a local, contiguous table.
                let flagStride = A * T
                sortedFlags.removeAll(keepingCapacity: true)
                sortedFlags.reserveCapacity(nd * flagStride)
                for s in positions {
                    let f0 = s * flagStride
                    sortedFlags.append(contentsOf: e.flags[f0..<(f0 + flagStride)])
                }
                for a in 0..<A {
                    var npig = 0
                    for i in 0..<I { npig += Int(e.nonIgnoredGT[(k * A + a) * I + i]) }
                    if npig == 0 { continue }
                    for t in 0..<T {
                        rc.removeAll(keepingCapacity: true)
                        pr.removeAll(keepingCapacity: true)
                        var tp = 0.0, fp = 0.0
                        for n in 0..<nd {
                            let f = sortedFlags[n * flagStride + a * T + t]
                            if f & 2 == 0 { if f & 1 != 0 { tp += 1 } else { fp += 1 } }
                            rc.append(tp / Double(npig))
                            pr.append(tp / ((fp + tp) + 2.220446049250313e-16))
                        }
                        recallOut.write(((t * K + k) * A + a) * M + m, nd > 0 ? rc[nd - 1] : 0)
                        // Precision envelope: non-increasing from the right.
                        if nd > 1 {
                            for j in stride(from: nd - 1, to: 0, by: -1) where pr[j] > pr[j - 1] { pr[j - 1] = pr[j] }
                        }
                        // For each recall threshold the first index with recall >= threshold
                        // (np.searchsorted, side='left'); 0 beyond the last detection.
                        var j = 0
                        for r in 0..<R {
                            let thr = parameters.recallThresholds[r]
                            while j < nd && rc[j] < thr { j += 1 }
                            precisionOut.write((((t * R + r) * K + k) * A + a) * M + m, j < nd ? pr[j] : 0)
                        }
                    }
                }
            }
        }
    }
    }
    let stats = summarize(precision: precision, recall: recall, parameters: parameters, categoryCount: K)
    return COCOEvalResult(parameters: parameters, imageIDs: p.imageIDs, categoryIDs: p.categoryIDs,
                          precision: precision, recall: recall, stats: COCOStats(stats))
}

/// `COCOeval.summarize`: each number is the mean of the selected entries > -1 (-1 if none),
/// taken in numpy's C order (IoU, recall threshold, category).
func summarize(precision: [Double], recall: [Double], parameters: COCOParameters, categoryCount K: Int) -> [Double] {
    let T = parameters.iouThresholds.count, R = parameters.recallThresholds.count
    let A = parameters.areaRanges.count, M = parameters.maxDetections.count
    func select(ap: Bool, iou: Double?, area: Int, maxDets: Int) -> Double {
        guard let m = parameters.maxDetections.firstIndex(of: maxDets) else { return -1 }
        let ts: [Int]
        if let iou { ts = (0..<T).filter { parameters.iouThresholds[$0] == iou } } else { ts = Array(0..<T) }
        var v = [Double]()
        for t in ts {
            if ap {
                for r in 0..<R { for k in 0..<K {
                    let x = precision[(((t * R + r) * K + k) * A + area) * M + m]
                    if x > -1 { v.append(x) }
                } }
            } else {
                for k in 0..<K {
                    let x = recall[((t * K + k) * A + area) * M + m]
                    if x > -1 { v.append(x) }
                }
            }
        }
        return v.isEmpty ? -1 : numpyMean(v)
    }
    let last = parameters.maxDetections.last!
    return [
        select(ap: true, iou: nil, area: 0, maxDets: last),
        select(ap: true, iou: 0.5, area: 0, maxDets: last),
        select(ap: true, iou: 0.75, area: 0, maxDets: last),
        select(ap: true, iou: nil, area: 1, maxDets: last),
        select(ap: true, iou: nil, area: 2, maxDets: last),
        select(ap: true, iou: nil, area: 3, maxDets: last),
        select(ap: false, iou: nil, area: 0, maxDets: parameters.maxDetections[0]),
        select(ap: false, iou: nil, area: 0, maxDets: parameters.maxDetections[1]),
        select(ap: false, iou: nil, area: 0, maxDets: last),
        select(ap: false, iou: nil, area: 1, maxDets: last),
        select(ap: false, iou: nil, area: 2, maxDets: last),
        select(ap: false, iou: nil, area: 3, maxDets: last),
    ]
}
