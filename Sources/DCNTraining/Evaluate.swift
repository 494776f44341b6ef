// Inference over a dataset and its evaluation with the evaluator API: COCO metrics for COCO and
// synthetic data, VOC AP50/AP70 for VOC data. Used during and after training and by `dcn-eval model`.
import DCNConfig
import DCNData
import DCNDistributed
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
///
/// With several processes (`group`), process r runs the batches r, r + size, ... (the same batches,
/// padded the same way, as one process runs) and rank 0 gathers every image's detections: it
/// returns them all, the other processes nil. A stop request of any process stops every process
/// between batches.
public func runInference(_ model: FasterRCNN, dataset: Dataset, shortEdge: Int, maxSize: Int, imagesPerBatch: Int,
                         workers: Int = 2, stop: StopRequest? = nil, group: ProcessGroup = .world) throws -> [[ImageDetection]]? {
    guard group.isDistributed else {
        return try runInferenceShard(model, dataset: dataset, shortEdge: shortEdge, maxSize: maxSize, imagesPerBatch: imagesPerBatch,
                                     workers: workers) { try stop?.check() }
    }
    let batches = (dataset.images.count + imagesPerBatch - 1) / imagesPerBatch
    let mine = stride(from: group.rank, to: batches, by: group.size).flatMap { b in
        b * imagesPerBatch ..< min(dataset.images.count, (b + 1) * imagesPerBatch)
    }
    var shard = dataset
    shard.images = mine.map { dataset.images[$0] }
    let rounds = (batches + group.size - 1) / group.size
    var round = 0
    // Every process checks for a stop in each round, including those whose shard has ended.
    let agreeOnStop = {
        let signal = try group.max(Double(stop?.signal ?? 0))
        if signal != 0 { throw Stopped(signal: Int32(signal)) }
        round += 1
    }
    let detections = shard.images.isEmpty ? [] : try runInferenceShard(model, dataset: shard, shortEdge: shortEdge, maxSize: maxSize,
                                                                        imagesPerBatch: imagesPerBatch, workers: workers, beforeBatch: agreeOnStop)
    while round < rounds { try agreeOnStop() }
    guard let parts = try group.gather(DetectionCodec.encode(zip(mine, detections).map { ($0, $1) })) else { return nil }
    var all = [[ImageDetection]](repeating: [], count: dataset.images.count)
    for part in parts { for (index, dets) in try DetectionCodec.decode(part) { all[index] = dets } }
    return all
}

/// Detections of every image of `dataset` in order; `beforeBatch` runs before each batch.
func runInferenceShard(_ model: FasterRCNN, dataset: Dataset, shortEdge: Int, maxSize: Int, imagesPerBatch: Int, workers: Int,
                       beforeBatch: () throws -> Void) throws -> [[ImageDetection]] {
    let ws = Workspace()
    let loader = try DataLoader.evaluation(dataset: dataset, imagesPerBatch: imagesPerBatch, shortEdge: shortEdge,
                                           maxSize: maxSize, workers: workers)
    let maskSize = model.spec.mask?.maskSize ?? 0
    var all: [[ImageDetection]] = []
    while let batch = try loader.nextIfAvailable() {
        try beforeBatch()
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
/// between batches (it throws `Stopped`) and nothing is written. With several processes each runs
/// its share of the images and rank 0 scores them all, writes the files and returns the report
/// (nil on the other processes).
public func evaluateModel(_ model: FasterRCNN, config: ExperimentConfig, dataset: Dataset, outputPrefix: String,
                          stop: StopRequest? = nil, group: ProcessGroup = .world) throws -> EvaluationReport? {
    guard let detections = try runInference(model, dataset: dataset, shortEdge: config.data.testMinSize, maxSize: config.data.maxSize,
                                            imagesPerBatch: max(1, config.data.imagesPerBatch), stop: stop, group: group) else { return nil }
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

/// Per-image detections as bytes, to gather them from the processes of a distributed evaluation:
/// for each image its dataset index and detections (box, score, label, optional mask run lengths),
/// little-endian 64-bit integers and 32-bit floats.
enum DetectionCodec {
    static func encode(_ images: [(index: Int, detections: [ImageDetection])]) -> [UInt8] {
        var out: [UInt8] = []
        func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { out += $0 } }
        func float(_ v: Float) { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        int(images.count)
        for (index, detections) in images {
            int(index); int(detections.count)
            for d in detections {
                for v in [d.detection.box.x1, d.detection.box.y1, d.detection.box.x2, d.detection.box.y2, d.detection.score] { float(v) }
                int(d.detection.label)
                if let mask = d.mask {
                    int(1); int(mask.height); int(mask.width); int(mask.counts.count)
                    for c in mask.counts { int(Int(c)) }
                } else {
                    int(0)
                }
            }
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) throws -> [(index: Int, detections: [ImageDetection])] {
        var at = 0
        func int() throws -> Int {
            guard at + 8 <= bytes.count else { throw TrainingError("gathered detections end early (\(bytes.count) bytes)") }
            var v: Int64 = 0
            for k in 0..<8 { v |= Int64(bytes[at + k]) << (8 * k) }
            at += 8
            return Int(v)
        }
        func float() throws -> Float {
            guard at + 4 <= bytes.count else { throw TrainingError("gathered detections end early (\(bytes.count) bytes)") }
            var v: UInt32 = 0
            for k in 0..<4 { v |= UInt32(bytes[at + k]) << (8 * k) }
            at += 4
            return Float(bitPattern: v)
        }
        var images: [(index: Int, detections: [ImageDetection])] = []
        for _ in 0..<(try int()) {
            let index = try int()
            var detections: [ImageDetection] = []
            for _ in 0..<(try int()) {
                let x1 = try float(), y1 = try float(), x2 = try float(), y2 = try float(), score = try float()
                let label = try int()
                var mask: RLE? = nil
                if try int() == 1 {
                    let height = try int(), width = try int()
                    let counts = try (0..<(try int())).map { _ in UInt32(try int()) }
                    mask = RLE(height: height, width: width, counts: counts)
                }
                detections.append(ImageDetection(detection: Detection(box: Box(x1, y1, x2, y2), score: score, label: label), mask: mask))
            }
            images.append((index, detections))
        }
        return images
    }
}
