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

/// A detection in the original image: box, score and label, and for Mask R-CNN its mask pasted
/// into the image (COCO run lengths).
public struct ImageDetection: Sendable {
    public var detection: Detection
    public var mask: RLE?
}

/// Detections of every image of `dataset` (in dataset order) in original image coordinates,
/// decoded and resized ahead by the evaluation loader; Mask R-CNN masks are pasted into the
/// original image (detectron2's paste_masks_in_image, threshold 0.5). A `stop` request is
/// honoured between batches (it throws `Stopped`).
public func runInference(_ model: FasterRCNN, dataset: Dataset, shortEdge: Int, maxSize: Int, imagesPerBatch: Int,
                         workers: Int = 2, stop: StopRequest? = nil) throws -> [[ImageDetection]] {
    let ws = Workspace()
    let loader = try DataLoader.evaluation(dataset: dataset, imagesPerBatch: imagesPerBatch, shortEdge: shortEdge,
                                           maxSize: maxSize, workers: workers)
    let maskSize = model.spec.mask?.maskSize ?? 0
    var all: [[ImageDetection]] = []
    while let batch = try loader.nextIfAvailable() {
        try stop?.check()
        let detections = try model.detect(images: batch.images, sizes: batch.sizes, ws)
        for (i, dets) in detections.enumerated() {
            let boxes = batch.toOriginal(dets.map { $0.box }, image: i)
            let size = batch.originalSizes[i]
            var mapped: [ImageDetection] = []
            for (d, b) in zip(dets, boxes) {
                let mask = try d.mask.map {
                    try pasteMaskRLE(probabilities: $0, maskSize: maskSize, box: MaskBox(x0: b.x1, y0: b.y1, x1: b.x2, y1: b.y2),
                                     imageHeight: size.height, imageWidth: size.width)
                }
                mapped.append(ImageDetection(detection: Detection(box: b, score: d.score, label: d.label), mask: mask))
            }
            all.append(mapped)
        }
    }
    return all
}

/// A model detection as the evaluators take it ([x, y, w, h] box, mask).
func evaluationDetection(_ d: ImageDetection, categoryID: Int) -> COCODetection {
    COCODetection(categoryID: categoryID, score: Double(d.detection.score), box: cocoBox(d.detection.box), mask: d.mask)
}

func cocoBox(_ b: Box) -> COCOBox {
    COCOBox(x: Double(b.x1), y: Double(b.y1), width: Double(b.width), height: Double(b.height))
}

/// COCO-format results (original category ids, [x, y, w, h] boxes, masks as compressed RLE
/// strings, as pycocotools' `encode` writes them) of per-image detections.
public func cocoResults(_ detections: [[ImageDetection]], dataset: Dataset) -> [COCOResult] {
    var results: [COCOResult] = []
    for (image, dets) in zip(dataset.images, detections) {
        for d in dets {
            let segmentation = d.mask.map { COCOSegmentation.compressedRLE(height: $0.height, width: $0.width, counts: $0.compressedString) }
            results.append(COCOResult(imageID: image.id, categoryID: dataset.categoryIDs[d.detection.label - 1],
                                      score: Double(d.detection.score), bbox: cocoBox(d.detection.box), segmentation: segmentation))
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
        var evaluator = COCOEvaluator(groundTruth: truth, iouTypes: model.maskHead == nil ? [.bbox] : [.bbox, .segm])
        for (image, dets) in zip(dataset.images, detections) {
            evaluator.process(imageID: image.id, detections: dets.map { evaluationDetection($0, categoryID: dataset.categoryIDs[$0.detection.label - 1]) })
        }
        report = try evaluator.evaluate()
    case .voc(let truth):
        var evaluator = VOCEvaluator(dataset: truth, classNames: dataset.classNames)
        for (image, dets) in zip(dataset.images, detections) {
            evaluator.process(imageID: image.name, detections: dets.map { evaluationDetection($0, categoryID: $0.detection.label) })
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
