// Inference over a dataset and its evaluation with the evaluator API: COCO metrics for COCO and
// synthetic data, VOC AP50/AP70 for VOC data. Used during and after training and by `dcn-eval model`.
import DCNConfig
import DCNData
import DCNEval
import DCNModels
import DCNOps
import DCNTensor
import Foundation
import DCNAnnotations

/// The configured evaluation split's ground truth for the COCO evaluator, or the VOC split.
enum EvaluationTruth {
    case coco(COCOGroundTruth)
    case voc(VOCDataset)
}

/// Detections of every image of `dataset` (in dataset order) in original image coordinates,
/// decoded and resized ahead by the evaluation loader. A `stop` request is honoured between
/// batches (it throws `Stopped`).
public func runInference(_ model: FasterRCNN, dataset: Dataset, shortEdge: Int, maxSize: Int, imagesPerBatch: Int,
                         workers: Int = 2, stop: StopRequest? = nil) throws -> [[Detection]] {
    let ws = Workspace()
    let loader = try DataLoader.evaluation(dataset: dataset, imagesPerBatch: imagesPerBatch, shortEdge: shortEdge,
                                           maxSize: maxSize, workers: workers)
    var all: [[Detection]] = []
    while let batch = try loader.nextIfAvailable() {
        try stop?.check()
        let detections = try model.detect(images: batch.images, sizes: batch.sizes, ws)
        for (i, dets) in detections.enumerated() {
            let boxes = batch.toOriginal(dets.map { $0.box }, image: i)
            var mapped: [Detection] = []
            for (d, b) in zip(dets, boxes) { mapped.append(Detection(box: b, score: d.score, label: d.label)) }
            all.append(mapped)
        }
    }
    return all
}

/// A model detection as the evaluators take it ([x, y, w, h] box).
func evaluationDetection(_ d: Detection, categoryID: Int) -> COCODetection {
    COCODetection(categoryID: categoryID, score: Double(d.score), box: cocoBox(d.box))
}

func cocoBox(_ b: Box) -> COCOBox {
    COCOBox(x: Double(b.x1), y: Double(b.y1), width: Double(b.width), height: Double(b.height))
}

/// COCO-format results (original category ids, [x, y, w, h] boxes) of per-image detections.
public func cocoResults(_ detections: [[Detection]], dataset: Dataset) -> [COCOResult] {
    var results: [COCOResult] = []
    for (image, dets) in zip(dataset.images, detections) {
        for d in dets {
            results.append(COCOResult(imageID: image.id, categoryID: dataset.categoryIDs[d.label - 1], score: Double(d.score),
                                      bbox: cocoBox(d.box)))
        }
    }
    return results
}

/// Runs the model on `dataset`, writes `<outputPrefix>_results.json` (COCO format) and
/// `<outputPrefix>_metrics.json`, and returns the report. A `stop` request ends the inference
/// between batches (it throws `Stopped`) and nothing is written.
public func evaluateModel(_ model: FasterRCNN, config: ExperimentConfig, dataset: Dataset, outputPrefix: String,
                          stop: StopRequest? = nil) throws -> EvaluationReport {
    let detections = try runInference(model, dataset: dataset, shortEdge: config.data.testMinSize, maxSize: config.data.maxSize,
                                      imagesPerBatch: max(1, config.data.imagesPerBatch), stop: stop)
    let results = cocoResults(detections, dataset: dataset)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try AtomicFile.write(try encoder.encode(results), to: outputPrefix + "_results.json")
    let report: EvaluationReport
    switch try evaluationTruth(config) {
    case .coco(let truth):
        var evaluator = COCOEvaluator(groundTruth: truth, iouTypes: [.bbox])
        for (image, dets) in zip(dataset.images, detections) {
            evaluator.process(imageID: image.id, detections: dets.map { evaluationDetection($0, categoryID: dataset.categoryIDs[$0.label - 1]) })
        }
        report = try evaluator.evaluate()
    case .voc(let truth):
        var evaluator = VOCEvaluator(dataset: truth, classNames: dataset.classNames)
        for (image, dets) in zip(dataset.images, detections) {
            evaluator.process(imageID: image.name, detections: dets.map { evaluationDetection($0, categoryID: $0.label) })
        }
        report = try evaluator.evaluate()
    }
    try AtomicFile.write(metricsJSON(report.metrics), to: outputPrefix + "_metrics.json")
    return report
}

/// Metrics as a flat JSON object, sorted by name; a metric without a value (NaN: VOC AP of a class
/// with no ground truth, pycocotools' -1 stays -1) is written as null.
public func metricsJSON(_ metrics: [(name: String, value: Double)], extra: [String: Any] = [:]) throws -> Data {
    var object = extra
    for m in metrics { object[m.name] = m.value.isFinite ? m.value : NSNull() }
    return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
}
