// mIoU of a semantic segmentation model on the config's validation split, in one process or
// sharded over the processes of an MPI job (the confusion matrices are summed: integer counts,
// so any split gives the same numbers).
import DCNConfig
import DCNData
import DCNDistributed
import DCNEval
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import Foundation

/// The class of every pixel: the argmax over `scores` [1, K, H, W] (the first class on ties).
func argmaxLabels(_ scores: Tensor) -> [UInt8] {
    let (k, plane) = (scores.dim(1), scores.dim(2) * scores.dim(3))
    var out = [UInt8](repeating: 0, count: plane)
    scores.withUnsafeBufferPointer { s in
        for p in 0..<plane {
            var best = 0, value = s[p]
            for c in 1..<k where s[c * plane + p] > value { best = c; value = s[c * plane + p] }
            out[p] = UInt8(best)
        }
    }
    return out
}

/// Scores `model` on `dataset` (images with label maps): each image resized to
/// `data.test_min_size` (longer side at most `data.max_size`), its class scores upsampled
/// bilinearly to the original size, the argmax against the label map. Writes
/// `<outputPrefix>_metrics.json` (the `dcn-eval seg` JSON: mIoU, per-class IoU, ...) and, with
/// `predictions`, one label-map PNG per image there (VOC colours for VOC data), which
/// `dcn-eval seg` scores to the same numbers. Process r runs images r, r + N, ... and writes their
/// PNGs; rank 0 returns the report (nil on the others). A stop request ends every process between
/// images (`Stopped`) and no metrics are written.
public func evaluateSegmenter(_ model: SemanticSegmenter, config: ExperimentConfig, dataset: Dataset, outputPrefix: String,
                              predictions: String? = nil, stop: StopRequest? = nil, group: ProcessGroup = .world) throws -> EvaluationReport? {
    var shard = dataset
    shard.images = stride(from: group.rank, to: dataset.images.count, by: group.size).map { dataset.images[$0] }
    let ws = Workspace()
    var evaluator = SegmentationEvaluator(classes: model.classes, classNames: dataset.classNames)
    let rounds = (dataset.images.count + group.size - 1) / group.size
    let loader = shard.images.isEmpty ? nil
        : try DataLoader.evaluation(dataset: shard, shortEdge: config.data.testMinSize, maxSize: config.data.maxSize)
    if let predictions, group.isRoot { try makeFolder(predictions, key: "the predictions folder") }
    if group.isDistributed { _ = try group.sum([0]) }  // the folder exists before any process writes
    for round in 0..<rounds {
        let signal = try group.max(Double(stop?.signal ?? 0))
        if signal != 0 { throw Stopped(signal: Int32(signal)) }
        guard let batch = try loader?.nextIfAvailable() else { continue }
        let item = shard.images[round]
        guard let labelPath = item.labelPath else { throw TrainingError("image \(item.name) has no label map to score against") }
        let labels = try readLabelMap(path: labelPath, classes: model.classes)
        let original = batch.originalSizes[0], resized = batch.sizes[0]
        guard labels.width == original.width && labels.height == original.height else {
            throw TrainingError("\(labelPath): the label map is \(labels.width)x\(labels.height) but its image \(item.path) is \(original.width)x\(original.height)")
        }
        // Original pixel (y, x) lies at input pixel (y + 0.5) * resized / original - 0.5.
        let scale = (y: Double(resized.height) / Double(original.height), x: Double(resized.width) / Double(original.width))
        let scores = try model.scores(batch.images, height: original.height, width: original.width, inputScale: scale, ws)
        let predicted = argmaxLabels(scores)
        evaluator.process(labels: labels.labels, predictions: predicted)
        if let predictions {
            try writeLabelMap(LabelMap(width: original.width, height: original.height, labels: predicted),
                              to: "\(predictions)/\(URL(fileURLWithPath: item.name).lastPathComponent).png",
                              vocColours: config.data.format != .cityscapes)
        }
    }
    let summed = try group.sum(evaluator.result.matrix.counts.map(Double.init) + [Double(evaluator.images)])
    guard group.isRoot else { return nil }
    let result = SegmentationResult(matrix: ConfusionMatrix(classes: model.classes, counts: summed.dropLast().map { Int($0) }),
                                    classNames: dataset.classNames, images: Int(summed.last!))
    try AtomicFile.write(Data(result.jsonText.utf8), to: outputPrefix + "_metrics.json")
    var metrics = [(name: String, value: Double)]()
    if let m = result.meanIoU { metrics.append(("mIoU", 100 * m)) }
    if let a = result.pixelAccuracy { metrics.append(("aAcc", 100 * a)) }
    return EvaluationReport(metrics: metrics, text: result.table)
}
