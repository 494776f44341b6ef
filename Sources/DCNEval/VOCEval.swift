// PASCAL VOC detection AP with py-faster-rcnn's voc_eval semantics (EVALUATION.md): +1 box
// widths, difficult objects neither true nor false positives, a match needs IoU strictly
// above the threshold, 11-point (VOC07) and area (VOC2010+) metrics.
import Foundation
import DCNAnnotations

/// One detection of one class in VOC pixels.
public struct VOCDetection: Equatable, Sendable {
    public var imageID: String
    public var score: Double
    public var box: VOCBox
    public init(imageID: String, score: Double, box: VOCBox) { self.imageID = imageID; self.score = score; self.box = box }
}

public enum VOCMetric: String, CaseIterable, Sendable {
    /// VOC2007: mean over t in {0, 0.1, ..., 1} of the best precision at recall >= t.
    case voc07 = "voc07_11point"
    /// VOC2010+: area under the precision envelope.
    case area
}

/// AP of one class: detections (any order; sorted here by score, stable) against the
/// class's ground truth per image.
public func vocAveragePrecision(detections: [VOCDetection], groundTruth: [String: [VOCObject]], className: String,
                                iouThreshold: Double, metric: VOCMetric) throws -> Double {
    struct ImageRecord { var boxes: [VOCBox]; var difficult: [Bool]; var detected: [Bool] }
    var records = [String: ImageRecord]()
    var npos = 0
    for (id, objs) in groundTruth {
        let mine = objs.filter { $0.name == className }
        npos += mine.filter { !$0.difficult }.count
        records[id] = ImageRecord(boxes: mine.map(\.box), difficult: mine.map(\.difficult), detected: Array(repeating: false, count: mine.count))
    }
    let order = detections.indices.sorted { a, b in
        detections[a].score > detections[b].score || (detections[a].score == detections[b].score && a < b)
    }
    var tp = [Double](), fp = [Double]()
    tp.reserveCapacity(order.count); fp.reserveCapacity(order.count)
    for d in order {
        let det = detections[d]
        guard var rec = records[det.imageID] else {
            throw VOCError(file: className, "detection of image '\(det.imageID)' is not in the split")
        }
        let bb = det.box
        var ovmax = -Double.infinity, jmax = 0
        for (j, g) in rec.boxes.enumerated() {
            let iw = max(min(g.xmax, bb.xmax) - max(g.xmin, bb.xmin) + 1, 0)
            let ih = max(min(g.ymax, bb.ymax) - max(g.ymin, bb.ymin) + 1, 0)
            let inter = iw * ih
            let union = ((bb.xmax - bb.xmin + 1) * (bb.ymax - bb.ymin + 1) + (g.xmax - g.xmin + 1) * (g.ymax - g.ymin + 1)) - inter
            let ov = inter / union
            if ov > ovmax { ovmax = ov; jmax = j }  // np.argmax: the first maximum
        }
        var isTP = 0.0, isFP = 0.0
        if ovmax > iouThreshold {
            if !rec.difficult[jmax] {
                if !rec.detected[jmax] { isTP = 1; rec.detected[jmax] = true; records[det.imageID] = rec } else { isFP = 1 }
            }
        } else {
            isFP = 1
        }
        tp.append(isTP); fp.append(isFP)
    }
    // Cumulative sums, recall and precision.
    var ctp = 0.0, cfp = 0.0
    var rec = [Double](), prec = [Double]()
    for n in 0..<tp.count {
        ctp += tp[n]; cfp += fp[n]
        rec.append(ctp / Double(npos))
        prec.append(ctp / max(ctp + cfp, Double.ulpOfOne))
    }
    switch metric {
    case .voc07:
        var ap = 0.0
        for k in 0...10 {
            let t = Double(k) * 0.1  // np.arange(0, 1.1, 0.1)
            var p = 0.0
            var any = false
            for n in 0..<rec.count where rec[n] >= t { p = any ? max(p, prec[n]) : prec[n]; any = true }
            ap = ap + (any ? p : 0) / 11.0
        }
        return ap
    case .area:
        let mrec = [0.0] + rec + [1.0]
        var mpre = [0.0] + prec + [0.0]
        for i in stride(from: mpre.count - 1, to: 0, by: -1) { mpre[i - 1] = max(mpre[i - 1], mpre[i]) }
        var terms = [Double]()
        for i in 0..<(mrec.count - 1) where mrec[i + 1] != mrec[i] { terms.append((mrec[i + 1] - mrec[i]) * mpre[i + 1]) }
        return pairwiseSum(terms)
    }
}

/// Per-class AP and mAP at one IoU threshold and metric (one entry of expected_ap.json).
public struct VOCMetricResult: Sendable {
    public var iouThreshold: Double
    public var metric: VOCMetric
    public var ap: [(className: String, ap: Double)]
    public var mAP: Double { numpyMean(ap.map(\.ap)) }
}

/// All classes, thresholds and metrics.
public func evaluateVOC(dataset: VOCDataset, detections: [String: [VOCDetection]], classNames: [String],
                        iouThresholds: [Double], metrics: [VOCMetric]) throws -> [VOCMetricResult] {
    var out = [VOCMetricResult]()
    for thr in iouThresholds {
        for metric in metrics {
            let aps = try classNames.map { c in
                (c, try vocAveragePrecision(detections: detections[c] ?? [], groundTruth: dataset.objects, className: c, iouThreshold: thr, metric: metric))
            }
            out.append(VOCMetricResult(iouThreshold: thr, metric: metric, ap: aps))
        }
    }
    return out
}

/// The layout of Tests/Fixtures/voc/expected_ap.json.
public func vocResultsJSON(_ results: [VOCMetricResult], classNames: [String]) -> String {
    let metrics = results.map { r in
        orderedJSONObject([
            ("iou_threshold", jsonNumber(r.iouThreshold)),
            ("metric", jsonString(r.metric.rawValue)),
            ("ap", orderedJSONObject(r.ap.map { (jsonString($0.className).dropFirst().dropLast().description, jsonNumber($0.ap)) }, indent: "   ")),
            ("mAP", jsonNumber(r.mAP)),
        ], indent: "  ")
    }
    return orderedJSONObject([
        ("reference", jsonString("dcn-eval (py-faster-rcnn voc_eval semantics, stable sort)")),
        ("classes", "[" + classNames.map(jsonString).joined(separator: ", ") + "]"),
        ("metrics", "[\n  " + metrics.joined(separator: ",\n  ") + "\n ]"),
    ]) + "\n"
}

/// Reads `comp4_det_test_<class>.txt` files (lines `image_id score x1 y1 x2 y2`, LF or CRLF
/// line ends); a class without a file has no detections. A line that is not six fields, whose
/// numbers are not finite, or (when `imageIDs` is given) whose image is not one of them, is an
/// error naming the file and the line.
public func loadVOCResultFiles(directory: String, classNames: [String], imageIDs: Set<String>? = nil,
                               prefix: String = "comp4_det_test_") throws -> [String: [VOCDetection]] {
    var out = [String: [VOCDetection]]()
    for c in classNames {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("\(prefix)\(c).txt").path
        guard FileManager.default.fileExists(atPath: path) else { continue }
        let text = String(decoding: try readFileContents(path, expected: "a text file of 'image_id score x1 y1 x2 y2' lines"), as: UTF8.self)
        var dets = [VOCDetection]()
        // "\r\n" is one Character, a newline like "\n".
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.isEmpty { continue }
            let numbers = f.dropFirst().compactMap { Double($0) }
            guard f.count == 6, numbers.count == 5 else {
                throw VOCError(file: path, "line \(n + 1): expected 'image_id score x1 y1 x2 y2', found '\(line)'")
            }
            guard numbers.allSatisfy(\.isFinite) else {
                throw VOCError(file: path, "line \(n + 1): the score and box must be finite numbers, found '\(line)'")
            }
            if let imageIDs, !imageIDs.contains(String(f[0])) {
                throw VOCError(file: path, "line \(n + 1): image '\(f[0])' is not in the split")
            }
            dets.append(VOCDetection(imageID: String(f[0]), score: numbers[0],
                                     box: VOCBox(xmin: numbers[1], ymin: numbers[2], xmax: numbers[3], ymax: numbers[4])))
        }
        out[c] = dets
    }
    return out
}

/// Converts COCO-format results to VOC detections: category ids name classes through
/// `categoryNames`; integer image ids match VOC ids by value ("000005" = 5).
public func vocDetections(fromCOCO results: [COCOResult], categoryNames: [Int: String], dataset: VOCDataset, file: String) throws -> [String: [VOCDetection]] {
    var byNumber = [Int: String]()
    for id in dataset.imageIDs { if let n = Int(id) { byNumber[n] = id } }
    var out = [String: [VOCDetection]]()
    for (n, r) in results.enumerated() {
        guard let name = categoryNames[r.categoryID] else { throw VOCError(file: file, "detection \(n): category_id \(r.categoryID) has no class name") }
        guard let id = byNumber[r.imageID] else { throw VOCError(file: file, "detection \(n): image_id \(r.imageID) is not in the split") }
        guard let b = r.bbox else { throw VOCError(file: file, "detection \(n) has no \"bbox\"") }
        out[name, default: []].append(VOCDetection(imageID: id, score: r.score, box: VOCBox(coco: b)))
    }
    return out
}
