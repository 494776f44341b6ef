// The evaluator protocol used by training and `dcn-eval model`: feed detections image by
// image (in memory), then evaluate (detectron2's DatasetEvaluator: reset / process / evaluate).
import Foundation
import DCNAnnotations

/// A detection produced in memory by a model.
public struct COCODetection: Sendable {
    public var categoryID: Int
    public var score: Double
    /// `[x, y, w, h]` in pixels, 0-based continuous (COCO convention).
    public var box: COCOBox
    /// Instance mask, for segm evaluation.
    public var mask: RLE?
    public init(categoryID: Int, score: Double, box: COCOBox, mask: RLE? = nil) {
        self.categoryID = categoryID; self.score = score; self.box = box; self.mask = mask
    }
}

/// Named metrics plus the text a tool prints.
public struct EvaluationReport: Sendable {
    /// Metric name -> value, in print order.
    public var metrics: [(name: String, value: Double)]
    public var text: String

    public init(metrics: [(name: String, value: Double)], text: String) { self.metrics = metrics; self.text = text }
}

/// Accumulates detections image by image and scores them at the end.
public protocol DetectionEvaluator {
    associatedtype ImageID: Hashable
    /// Forgets every processed detection.
    mutating func reset()
    /// Adds the detections of one image (call once per image; an image without detections
    /// may be skipped).
    mutating func process(imageID: ImageID, detections: [COCODetection])
    /// Scores everything processed so far.
    func evaluate() throws -> EvaluationReport
}

/// COCO evaluation of in-memory detections against a loaded ground truth.
public struct COCOEvaluator: DetectionEvaluator {
    public let groundTruth: COCOGroundTruth
    public let iouTypes: [COCOIoUType]
    public var threads: Int
    public private(set) var results: [COCOResult] = []

    public init(groundTruth: COCOGroundTruth, iouTypes: [COCOIoUType] = [.bbox], threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.groundTruth = groundTruth; self.iouTypes = iouTypes; self.threads = threads
    }

    public mutating func reset() { results.removeAll() }

    public mutating func process(imageID: Int, detections: [COCODetection]) {
        for d in detections {
            let seg = d.mask.map { COCOSegmentation.uncompressedRLE(height: $0.height, width: $0.width, counts: $0.counts) }
            results.append(COCOResult(imageID: imageID, categoryID: d.categoryID, score: d.score, bbox: d.box, segmentation: seg))
        }
    }

    /// Evaluates each IoU type; metrics are named `bbox/AP`, `segm/AP50`, ...
    public func evaluate() throws -> EvaluationReport {
        var metrics = [(String, Double)]()
        var text = ""
        for type in iouTypes {
            // Segm results are scored by their masks and the mask area (loadRes' segm branch).
            let rs = type == .segm ? results.map { var r = $0; r.bbox = nil; return r } : results
            let result = try evaluateCOCO(groundTruth: groundTruth, results: rs, iouType: type, threads: threads)
            metrics += zip(COCOStats.names, result.stats.values).map { ("\(type.rawValue)/\($0)", $1) }
            text += "Evaluate annotation type *\(type.rawValue)*\n" + result.summaryLines.joined(separator: "\n") + "\n"
        }
        return EvaluationReport(metrics: metrics, text: text)
    }
}

/// PASCAL VOC evaluation of in-memory detections (class = `classNames[categoryID - 1]`).
public struct VOCEvaluator: DetectionEvaluator {
    public let dataset: VOCDataset
    public let classNames: [String]
    public var iouThresholds: [Double]
    public var metrics: [VOCMetric]
    public private(set) var detections: [String: [VOCDetection]] = [:]

    public init(dataset: VOCDataset, classNames: [String], iouThresholds: [Double] = [0.5, 0.7], metrics: [VOCMetric] = [.voc07, .area]) {
        self.dataset = dataset; self.classNames = classNames; self.iouThresholds = iouThresholds; self.metrics = metrics
    }

    public mutating func reset() { detections.removeAll() }

    public mutating func process(imageID: String, detections: [COCODetection]) {
        for d in detections where d.categoryID >= 1 && d.categoryID <= classNames.count {
            self.detections[classNames[d.categoryID - 1], default: []].append(VOCDetection(imageID: imageID, score: d.score, box: VOCBox(coco: d.box)))
        }
    }

    /// Metrics named `AP50/voc07_11point/mAP`, `AP70/area/bird`, ...
    public func evaluate() throws -> EvaluationReport {
        let results = try evaluateVOC(dataset: dataset, detections: detections, classNames: classNames, iouThresholds: iouThresholds, metrics: metrics)
        var metricList = [(String, Double)]()
        for r in results {
            let prefix = "AP\(Int((r.iouThreshold * 100).rounded()))/\(r.metric.rawValue)"
            metricList.append(("\(prefix)/mAP", r.mAP))
            metricList += r.ap.map { ("\(prefix)/\($0.className)", $0.ap) }
        }
        return EvaluationReport(metrics: metricList, text: vocTable(results))
    }
}

/// Text table: one row per class, one column per (IoU, metric), mAP last.
public func vocTable(_ results: [VOCMetricResult]) -> String {
    guard let first = results.first else { return "" }
    let names = first.ap.map(\.className)
    let width = max(8, (names.map(\.count).max() ?? 0))
    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
    let headers = results.map { "AP@\(String(format: "%.2f", $0.iouThreshold)) \($0.metric == .voc07 ? "voc07" : "area")" }
    let colWidth = max(16, headers.map(\.count).max() ?? 0)
    var lines = [pad("class", width) + " | " + headers.map { pad($0, colWidth) }.joined(separator: " | ")]
    lines.append(String(repeating: "-", count: lines[0].count))
    for (c, name) in names.enumerated() {
        lines.append(pad(name, width) + " | " + results.map { pad(String(format: "%.4f", $0.ap[c].ap), colWidth) }.joined(separator: " | "))
    }
    lines.append(String(repeating: "-", count: lines[0].count))
    lines.append(pad("mAP", width) + " | " + results.map { pad(String(format: "%.4f", $0.mAP), colWidth) }.joined(separator: " | "))
    return lines.joined(separator: "\n") + "\n"
}
