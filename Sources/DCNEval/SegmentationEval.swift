// Semantic-segmentation evaluation (issue 32): one confusion matrix over the whole split, per-class
// IoU and their mean over the classes present, the numbers of torchvision's
// references/segmentation/utils.py `ConfusionMatrix` and mmsegmentation's `IoUMetric`:
// - torchvision counts `mat[label, prediction]` over the pixels whose label is a class (0 <= label
//   < n; void 255 is left out) and takes IoU = diag / (row sum + column sum - diag);
// - mmseg drops void-labelled pixels, counts the intersection, prediction and label areas per
//   class (a prediction outside 0..<n counts in no class's prediction area), IoU = intersection /
//   union, and its mIoU is `np.nanmean`: a class absent from both labels and predictions has
//   IoU NaN and is left out of the mean.
// The two agree whenever predictions are class indices; a prediction of void (or of any value not
// a class) at a labelled pixel is counted as mmseg counts it: a miss for the label's class.
// The numbers come from integer counts, so summing the matrices of several processes gives the
// same result as one process.
import Foundation

/// Pixel counts of a segmentation split: row = label class, column = predicted class, and one more
/// column for labelled pixels whose prediction is not a class (void).
public struct ConfusionMatrix: Sendable, Equatable {
    public let classes: Int
    /// `classes x (classes + 1)` counts, row-major.
    public private(set) var counts: [Int]

    public init(classes: Int) {
        precondition(classes >= 1 && classes <= 255, "1 to 255 classes (255 is void), got \(classes)")
        self.classes = classes
        counts = [Int](repeating: 0, count: classes * (classes + 1))
    }

    /// A matrix from its counts (for example summed over processes).
    public init(classes: Int, counts: [Int]) {
        self.init(classes: classes)
        precondition(counts.count == self.counts.count, "\(classes) classes need \(self.counts.count) counts, got \(counts.count)")
        self.counts = counts
    }

    /// Pixels labelled `label` and predicted `predicted` (`classes` = predicted as no class).
    public subscript(label: Int, predicted: Int) -> Int { counts[label * (classes + 1) + predicted] }

    /// Adds one image's pixels (`labels` and `predictions` of equal length, row-major). Pixels whose
    /// label is not a class (void) are skipped; a prediction that is not a class goes to the last
    /// column. Values are not checked here (`checkLabelValues` names bad files).
    public mutating func add(labels: [UInt8], predictions: [UInt8]) {
        precondition(labels.count == predictions.count, "\(labels.count) labels but \(predictions.count) predictions")
        let n = classes, stride = n + 1
        counts.withUnsafeMutableBufferPointer { m in
            for i in 0..<labels.count {
                let a = Int(labels[i])
                if a >= n { continue }
                let b = Int(predictions[i])
                m[a * stride + (b < n ? b : n)] += 1
            }
        }
    }

    /// Adds another matrix's counts (another shard of the split).
    public mutating func add(_ other: ConfusionMatrix) {
        precondition(other.classes == classes, "matrices of \(classes) and \(other.classes) classes")
        for i in counts.indices { counts[i] += other.counts[i] }
    }

    /// Correctly predicted pixels per class (the diagonal).
    public var intersection: [Int] { (0..<classes).map { self[$0, $0] } }
    /// Labelled pixels per class (row sums).
    public var labelArea: [Int] { (0..<classes).map { c in (0...classes).reduce(0) { $0 + self[c, $1] } } }
    /// Pixels predicted as each class among the labelled pixels (column sums).
    public var predictedArea: [Int] { (0..<classes).map { c in (0..<classes).reduce(0) { $0 + self[$1, c] } } }
    /// Label area + predicted area - intersection, per class.
    public var union: [Int] {
        let i = intersection, l = labelArea, p = predictedArea
        return (0..<classes).map { l[$0] + p[$0] - i[$0] }
    }
}

/// Per-class and mean scores of a confusion matrix.
public struct SegmentationResult: Sendable, Equatable {
    public var matrix: ConfusionMatrix
    /// Class names in label order (`classes` of them), or nil.
    public var classNames: [String]?
    /// Label maps evaluated.
    public var images: Int

    public init(matrix: ConfusionMatrix, classNames: [String]? = nil, images: Int) {
        precondition(classNames.map { $0.count == matrix.classes } ?? true, "\(classNames?.count ?? 0) names for \(matrix.classes) classes")
        self.matrix = matrix; self.classNames = classNames; self.images = images
    }

    /// intersection / union per class; nil for a class absent from both labels and predictions.
    public var iou: [Double?] {
        zip(matrix.intersection, matrix.union).map { i, u in u == 0 ? nil : Double(i) / Double(u) }
    }

    /// Per-class accuracy (recall): intersection / label area; nil for a class without labelled pixels.
    public var accuracy: [Double?] {
        zip(matrix.intersection, matrix.labelArea).map { i, l in l == 0 ? nil : Double(i) / Double(l) }
    }

    /// Mean IoU over the classes present (`np.nanmean`: numpy's pairwise sum with the absent classes
    /// as 0, divided by the number present); nil when no class is present.
    public var meanIoU: Double? { nanMean(iou) }

    /// Classes that count in `meanIoU`.
    public var classesPresent: Int { iou.compactMap { $0 }.count }

    /// Correct pixels / labelled pixels (mmseg's aAcc); nil without labelled pixels.
    public var pixelAccuracy: Double? {
        let labelled = matrix.labelArea.reduce(0, +)
        return labelled == 0 ? nil : Double(matrix.intersection.reduce(0, +)) / Double(labelled)
    }

    /// Labelled (non-void) pixels.
    public var pixels: Int { matrix.labelArea.reduce(0, +) }

    /// `{"mIoU", "IoU": [per class, null if absent], "aAcc", "Acc", "classes", "images", "pixels"}`;
    /// numbers as Python's `repr` prints them (COCO's JSON helpers).
    public var jsonText: String {
        func number(_ v: Double?) -> String { v.map(jsonNumber) ?? "null" }
        func list(_ values: [String]) -> String { "[" + values.joined(separator: ", ") + "]" }
        let names = classNames ?? (0..<matrix.classes).map(String.init)
        return orderedJSONObject([("mIoU", number(meanIoU)), ("IoU", list(iou.map(number))), ("aAcc", number(pixelAccuracy)),
                                  ("Acc", list(accuracy.map(number))), ("classes", list(names.map(jsonString))),
                                  ("images", String(images)), ("pixels", String(pixels))]) + "\n"
    }

    /// One row per class (IoU and accuracy in percent, labelled pixels), then mIoU and aAcc.
    public var table: String {
        let names = classNames ?? (0..<matrix.classes).map(String.init)
        let width = max(8, names.map(\.count).max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func left(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        func percent(_ v: Double?) -> String { v.map { String(format: "%.2f", 100 * $0) } ?? "-" }
        let area = matrix.labelArea, iou = self.iou, accuracy = self.accuracy
        var lines = [pad("class", width) + " | " + left("IoU", 7) + " | " + left("Acc", 7) + " | " + left("pixels", 12)]
        lines.append(String(repeating: "-", count: lines[0].count))
        for (c, name) in names.enumerated() {
            lines.append(pad(name, width) + " | " + left(percent(iou[c]), 7) + " | " + left(percent(accuracy[c]), 7) + " | " + left(String(area[c]), 12))
        }
        lines.append(String(repeating: "-", count: lines[0].count))
        let absent = matrix.classes - classesPresent
        lines.append("mIoU \(percent(meanIoU)) over \(classesPresent) classes" + (absent > 0 ? " (\(absent) absent from labels and predictions: -)" : "")
                     + "; aAcc \(percent(pixelAccuracy)); \(images) images, \(pixels) labelled pixels")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// `np.nanmean` of values with nil for NaN: numpy sums with the NaNs replaced by 0, then divides by
/// the count of the others.
func nanMean(_ values: [Double?]) -> Double? {
    let present = values.compactMap { $0 }.count
    guard present > 0 else { return nil }
    return pairwiseSum(values.map { $0 ?? 0 }) / Double(present)
}

/// Accumulates label/prediction maps image by image and scores them at the end (reset / process /
/// evaluate, as the detection evaluators).
public struct SegmentationEvaluator: Sendable {
    public private(set) var matrix: ConfusionMatrix
    public private(set) var images = 0
    public let classNames: [String]?

    public init(classes: Int, classNames: [String]? = nil) {
        matrix = ConfusionMatrix(classes: classes); self.classNames = classNames
    }

    public mutating func reset() {
        matrix = ConfusionMatrix(classes: matrix.classes); images = 0
    }

    /// Adds one image (labels and predictions row-major, the same size).
    public mutating func process(labels: [UInt8], predictions: [UInt8]) {
        matrix.add(labels: labels, predictions: predictions)
        images += 1
    }

    public var result: SegmentationResult { SegmentationResult(matrix: matrix, classNames: classNames, images: images) }

    /// Metrics `mIoU`, `aAcc` and `IoU/<class>` (absent classes left out) as fractions (the JSON's
    /// numbers; the table shows percent), and the table.
    public func evaluate() -> EvaluationReport {
        let r = result
        let names = classNames ?? (0..<matrix.classes).map(String.init)
        var metrics = [(name: String, value: Double)]()
        if let m = r.meanIoU { metrics.append(("mIoU", m)) }
        if let a = r.pixelAccuracy { metrics.append(("aAcc", a)) }
        for (name, v) in zip(names, r.iou) { if let v { metrics.append(("IoU/\(name)", v)) } }
        return EvaluationReport(metrics: metrics, text: r.table)
    }
}
