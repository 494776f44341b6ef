// Inference over a dataset and its evaluation with the evaluator API: COCO metrics for COCO and
// synthetic data, VOC AP50/AP70 for VOC data, MSRA's VID AP for ImageNet VID data (`EvaluationTruth`
// maps each to its detections file and its scoring). Used during and after training and by `dcn-eval model`.
import DCNConfig
import DCNData
import DCNDistributed
import DCNEval
import DCNModels
import DCNOps
import DCNTensor
import Foundation
import DCNAnnotations

/// The configured evaluation split's ground truth. It decides how the detections are written and
/// scored (`evaluate`): the one place that maps a data format to its evaluator.
enum EvaluationTruth {
    /// COCO and synthetic data: COCO results JSON, pycocotools' metrics (`bbox/AP`, ...).
    case coco(COCOGroundTruth)
    /// VOC: COCO results JSON, py-faster-rcnn's AP50 / AP70 (`AP50/area/mAP`, ...).
    case voc(VOCDataset)
    /// ImageNet VID: MSRA's detection lines, imagenet_vid_eval.py's AP (`vid/AP`, `vid/AP/<class>`).
    case vid(VIDTruth)
}

/// The evaluated VID frames, in the order of the evaluated dataset's images (both read the val
/// list with its video lines expanded), and the class names the report shows.
struct VIDTruth {
    var frames: [VIDGroundTruthFrame]
    var classNames: [String]
}

extension DataFormat {
    /// The extension of an evaluation's detections file (`<prefix>_results.<ext>`): json (COCO
    /// results) or txt (the VID lines `dcn-eval vid --detections` reads).
    public var detectionsFileExtension: String {
        switch self {
        case .coco, .synth, .voc, .imagefolder, .vocSeg, .sbd, .cityscapes: return "json"
        case .vid: return "txt"
        }
    }
}

extension EvaluationTruth {
    /// The detections file and the report of `detections` (one list per image of `dataset`, in order).
    /// COCO and VOC score the detections in memory and write COCO results; VID writes MSRA's lines
    /// and scores what it wrote (scores to 4 decimals, boxes to 2), so `dcn-eval vid` on the file
    /// gives the same numbers.
    func evaluate(_ detections: [[ImageDetection]], dataset: Dataset, iouTypes: [COCOIoUType]) throws -> (file: Data, report: EvaluationReport) {
        switch self {
        case .coco(let truth):
            var evaluator = COCOEvaluator(groundTruth: truth, iouTypes: iouTypes)
            for (image, dets) in zip(dataset.images, detections) {
                evaluator.process(imageID: image.id, detections: dets.map { evaluationDetection($0, categoryID: dataset.categoryIDs[$0.detection.label - 1]) })
            }
            return (try cocoResultsJSON(detections, dataset: dataset), try evaluator.evaluate())
        case .voc(let truth):
            var evaluator = VOCEvaluator(dataset: truth, classNames: dataset.classNames)
            for (image, dets) in zip(dataset.images, detections) {
                evaluator.process(imageID: image.name, detections: dets.map { evaluationDetection($0, categoryID: $0.detection.label) })
            }
            return (try cocoResultsJSON(detections, dataset: dataset), try evaluator.evaluate())
        case .vid(let truth):
            guard truth.frames.count == dataset.images.count,
                  zip(truth.frames, dataset.images).allSatisfy({ "\(ILSVRCPart.vid.rawValue)/\($0.path)" == $1.name }) else {
                throw TrainingError("the VID evaluation's frames (\(truth.frames.count)) are not the evaluated images (\(dataset.images.count)) in the same order (internal error)")
            }
            let file = Data(vidDetectionLines(detections, frameIDs: truth.frames.map(\.frameID)).utf8)
            let written = try parseVIDDetections(file, file: "the written detections", classCount: truth.classNames.count)
            let result = VIDEvaluation(classNames: truth.classNames,
                                       ap: evaluateVID(frames: truth.frames, detections: written, classCount: truth.classNames.count))
            let metrics = [("vid/AP", result.mean)] + zip(truth.classNames, result.ap).map { ("vid/AP/\($0)", $1) }
            return (file, EvaluationReport(metrics: metrics, text: result.table))
        }
    }
}

/// MSRA's VID detection lines (FGFA `imagenet_vid.py` `write_vid_results`): for each image in
/// order, its detections class by class, `<frame id> <class index> <score> <x1> <y1> <x2> <y2>`
/// written `{:d} {:d} {:.4f} {:.2f} {:.2f} {:.2f} {:.2f}`, the box in ILSVRC's inclusive pixels
/// (our exclusive x2, y2 minus 1). `frameIDs[i]` is image i's frame id.
public func vidDetectionLines(_ detections: [[ImageDetection]], frameIDs: [Int]) -> String {
    var out = ""
    for (frameID, dets) in zip(frameIDs, detections) {
        let byClass = dets.indices.sorted { (dets[$0].detection.label, $0) < (dets[$1].detection.label, $1) }
        for k in byClass {
            let d = dets[k].detection, b = d.box
            out += "\(frameID) \(d.label) " + String(format: "%.4f %.2f %.2f %.2f %.2f", d.score, b.x1, b.y1, b.x2 - 1, b.y2 - 1) + "\n"
        }
    }
    return out
}

/// A detection in the original image: box, score and label, and for Mask R-CNN its mask pasted
/// into the image (COCO run lengths).
public struct ImageDetection: Sendable {
    public var detection: Detection
    public var mask: RLE?

    public init(detection: Detection, mask: RLE? = nil) { self.detection = detection; self.mask = mask }
}

/// Detections of every image of `dataset` (in dataset order) in original image coordinates,
/// decoded and resized ahead by the evaluation loader; Mask R-CNN masks are pasted into the
/// original image (detectron2's paste_masks_in_image, threshold 0.5). A `stop` request is
/// honoured between batches (it throws `Stopped`).
///
/// With `merged` false the detector runs once per image at `views[0]`. With `merged` true it runs
/// every view (multi-scale and flipped testing) and merges the detections: see `mergedDetections`.
///
/// With several processes (`group`), process r runs the batches r, r + size, ... (the same batches,
/// padded the same way, as one process runs) and rank 0 gathers every image's detections: it
/// returns them all, the other processes nil. A stop request of any process stops every process
/// between batches.
///
/// `progress(done, total)` is called before each batch and at the end with the number of images
/// done (with several processes: the images of the rounds of batches every process finished).
public func runInference(_ model: GeneralizedRCNN, dataset: Dataset, views: [TestView], maxSize: Int, merged: Bool, imagesPerBatch: Int,
                         workers: Int = 2, stop: StopRequest? = nil, group: ProcessGroup = .world,
                         progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> [[ImageDetection]]? {
    guard let first = views.first, merged || (views.count == 1 && !first.flip) else {
        throw TrainingError("inference needs one unflipped view, or merged views (got \(views.map(\.description)))")
    }
    let shard = { (images: Dataset, beforeBatch: () throws -> Void) throws -> [[ImageDetection]] in
        merged ? try runMergedInferenceShard(model, dataset: images, views: views, maxSize: maxSize, imagesPerBatch: imagesPerBatch,
                                             beforeBatch: beforeBatch)
               : try runInferenceShard(model, dataset: images, shortEdge: first.shortEdge, maxSize: maxSize, imagesPerBatch: imagesPerBatch,
                                       workers: workers, beforeBatch: beforeBatch)
    }
    let total = dataset.images.count
    guard group.isDistributed else {
        var batch = 0
        let all = try shard(dataset) {
            try stop?.check()
            progress?(min(total, batch * imagesPerBatch), total)
            batch += 1
        }
        progress?(total, total)
        return all
    }
    let batches = (dataset.images.count + imagesPerBatch - 1) / imagesPerBatch
    let mine = stride(from: group.rank, to: batches, by: group.size).flatMap { b in
        b * imagesPerBatch ..< min(dataset.images.count, (b + 1) * imagesPerBatch)
    }
    var subset = dataset
    subset.images = mine.map { dataset.images[$0] }
    let rounds = (batches + group.size - 1) / group.size
    var round = 0
    // Every process checks for a stop in each round, including those whose shard has ended.
    let agreeOnStop = {
        let signal = try group.max(Double(stop?.signal ?? 0))
        if signal != 0 { throw Stopped(signal: Int32(signal)) }
        progress?(min(total, round * group.size * imagesPerBatch), total)
        round += 1
    }
    let detections = subset.images.isEmpty ? [] : try shard(subset, agreeOnStop)
    while round < rounds { try agreeOnStop() }
    guard let parts = try group.gather(DetectionCodec.encode(zip(mine, detections).map { ($0, $1) })) else { return nil }
    progress?(total, total)
    var all = [[ImageDetection]](repeating: [], count: dataset.images.count)
    for part in parts { for (index, dets) in try DetectionCodec.decode(part) { all[index] = dets } }
    return all
}

/// Detections of every image of `dataset` in order, one pass at `shortEdge`; `beforeBatch` runs
/// before each batch.
func runInferenceShard(_ model: GeneralizedRCNN, dataset: Dataset, shortEdge: Int, maxSize: Int, imagesPerBatch: Int, workers: Int,
                       beforeBatch: () throws -> Void) throws -> [[ImageDetection]] {
    let ws = Workspace()
    let loader = try DataLoader.evaluation(dataset: dataset, imagesPerBatch: imagesPerBatch, shortEdge: shortEdge,
                                           maxSize: maxSize, workers: workers)
    var all: [[ImageDetection]] = []
    while let batch = try loader.nextIfAvailable() {
        try beforeBatch()
        let detections = try model.detect(images: batch.images, sizes: batch.sizes, ws)
        for (i, dets) in detections.enumerated() {
            all.append(try originalImageDetections(dets, boxes: batch.toOriginal(dets.map(\.box), image: i), mirrored: dets.map { _ in false },
                                                   imageSize: batch.originalSizes[i], maskSize: model.pastedMaskSize))
        }
    }
    return all
}

/// Multi-view testing (the MSRA Deformable-ConvNets tester's merge, plus flipped views): every view
/// of a batch runs the detector up to the RoI head's candidates (scores above the threshold,
/// decoded, clipped, before NMS); each view's candidates are mapped into the first view's pixels
/// (un-flipped, scaled per axis); the union gets one per-class NMS (`roi_head.nms_threshold`) and
/// keeps the top `roi_head.detections_per_image`. A kept box's mask comes from its own view
/// (mirrored back for a flipped view). Merging in the first view's pixels makes one unflipped view
/// give exactly the one-pass detections.
///
/// The views' loaders advance together, so only the current batch of every view is in memory.
func runMergedInferenceShard(_ model: GeneralizedRCNN, dataset: Dataset, views: [TestView], maxSize: Int, imagesPerBatch: Int,
                             beforeBatch: () throws -> Void) throws -> [[ImageDetection]] {
    let ws = Workspace()
    let loaders = try views.map {
        try DataLoader.evaluation(dataset: dataset, imagesPerBatch: imagesPerBatch, shortEdge: $0.shortEdge, maxSize: maxSize, flip: $0.flip,
                                  workers: 1, prefetch: 1)
    }
    var all: [[ImageDetection]] = []
    while let first = try loaders[0].nextIfAvailable() {
        try beforeBatch()
        var batches = [first]
        for loader in loaders.dropFirst() {
            guard let batch = try loader.nextIfAvailable(), batch.imageIDs == first.imageIDs else {
                throw TrainingError("multi-view testing: the views' loaders returned different images (internal error)")
            }
            batches.append(batch)
        }
        let outputs = try batches.map { try model.detectionCandidates(images: $0.images, sizes: $0.sizes, ws) }
        let merged = try first.sizes.indices.map { i in
            try mergeViewCandidates(outputs.map { $0.candidates[i] }, sizes: batches.map { $0.sizes[i] }, flipped: views.map(\.flip),
                                    select: model.boxHead.selection)
        }
        var detections = merged.map { $0.map(\.detection) }
        if !model.detectionAdditions.isEmpty {
            // Each view annotates its kept boxes (masks, ...), on its own features and boxes.
            for v in views.indices {
                let mine = merged.map { kept in kept.indices.filter { kept[$0].view == v } }
                var boxes = mine.indices.map { i in mine[i].map { outputs[v].candidates[i][merged[i][$0].index] } }
                if boxes.allSatisfy(\.isEmpty) { continue }
                try model.annotate(&boxes, features: outputs[v].features, ws)
                for i in mine.indices { for (j, d) in zip(mine[i], boxes[i]) { detections[i][j].takeAdditions(from: d) } }
            }
        }
        for i in first.sizes.indices {
            all.append(try originalImageDetections(detections[i], boxes: first.toOriginal(detections[i].map(\.box), image: i),
                                                   mirrored: merged[i].map { views[$0.view].flip },
                                                   imageSize: first.originalSizes[i], maskSize: model.pastedMaskSize))
        }
    }
    return all
}

/// One image's candidates from every view (`candidates[v]`, predicted on the image resized to
/// `sizes[v]`, flipped first if `flipped[v]`) merged: each mapped into the first view's pixels, the
/// union selected by `select` (per-class NMS and the top detections). Returns the kept detections
/// by descending score, each with its view and its index among that view's candidates.
public func mergeViewCandidates(_ candidates: [[Detection]], sizes: [ImageSize], flipped: [Bool],
                                select: ([Detection]) throws -> [Int]) throws -> [(detection: Detection, view: Int, index: Int)] {
    var union: [Detection] = [], source: [(view: Int, index: Int)] = []
    for (v, viewCandidates) in candidates.enumerated() {
        for (k, c) in viewCandidates.enumerated() {
            var d = c
            d.box = mapBetweenViews(c.box, from: sizes[v], flipped: flipped[v], to: sizes[0])
            union.append(d); source.append((v, k))
        }
    }
    return try select(union).map { (union[$0], source[$0].view, source[$0].index) }
}

/// A box predicted on an image of size `from` (flipped horizontally first if `flipped`) in the
/// pixels of the same image at size `to`: un-flipped, then each axis scaled by to / from.
public func mapBetweenViews(_ b: Box, from: ImageSize, flipped: Bool, to: ImageSize) -> Box {
    let w = Float(from.width)
    let unflipped = flipped ? Box(w - b.x2, b.y1, w - b.x1, b.y2) : b
    if from == to { return unflipped }
    let sx = Float(to.width) / Float(from.width), sy = Float(to.height) / Float(from.height)
    return Box(unflipped.x1 * sx, unflipped.y1 * sy, unflipped.x2 * sx, unflipped.y2 * sy)
}

/// Detections with their boxes in the original image (`boxes`) and masks pasted into it (a mask
/// predicted on a flipped view is mirrored first).
func originalImageDetections(_ detections: [Detection], boxes: [Box], mirrored: [Bool], imageSize: ImageSize,
                             maskSize: Int) throws -> [ImageDetection] {
    var out: [ImageDetection] = []
    for (k, d) in detections.enumerated() {
        let b = boxes[k]
        let mask = try d.mask.map { probabilities in
            let grid = mirrored[k] ? mirrorRows(probabilities, width: maskSize) : probabilities
            return try pasteMaskRLE(probabilities: grid, maskSize: maskSize, box: MaskBox(x0: b.x1, y0: b.y1, x1: b.x2, y1: b.y2),
                                    imageHeight: imageSize.height, imageWidth: imageSize.width)
        }
        out.append(ImageDetection(detection: Detection(box: b, score: d.score, label: d.label), mask: mask))
    }
    return out
}

extension DetectionAddition {
    /// The COCO evaluation that scores this addition.
    var iouType: COCOIoUType {
        switch self {
        case .mask: return .segm
        }
    }
}

extension GeneralizedRCNN {
    /// Side of the mask grids the model predicts (0: none).
    var pastedMaskSize: Int {
        for addition in detectionAdditions {
            switch addition {
            case .mask(let size): return size
            }
        }
        return 0
    }
}

/// A row-major grid of rows `width` wide, each row reversed (a horizontal flip).
func mirrorRows(_ grid: [Float], width: Int) -> [Float] {
    var out = grid
    for row in stride(from: 0, to: grid.count, by: width) {
        for x in 0..<width { out[row + x] = grid[row + width - 1 - x] }
    }
    return out
}

/// A model detection as the evaluators take it ([x, y, w, h] box, mask).
func evaluationDetection(_ d: ImageDetection, categoryID: Int) -> COCODetection {
    COCODetection(categoryID: categoryID, score: Double(d.detection.score), box: cocoBox(d.detection.box), mask: d.mask)
}

func cocoBox(_ b: Box) -> COCOBox {
    COCOBox(x: Double(b.x1), y: Double(b.y1), width: Double(b.width), height: Double(b.height))
}

/// COCO-format results (original category ids, [x, y, w, h] boxes, masks as compressed RLE
/// strings, as pycocotools' `encode` writes them) of per-image detections; with `fileNames`, each
/// also names its image's file (the dataset image's `name`).
public func cocoResults(_ detections: [[ImageDetection]], dataset: Dataset, fileNames: Bool = false) -> [COCOResult] {
    var results: [COCOResult] = []
    for (image, dets) in zip(dataset.images, detections) {
        for d in dets {
            let segmentation = d.mask.map { COCOSegmentation.compressedRLE(height: $0.height, width: $0.width, counts: $0.compressedString) }
            results.append(COCOResult(imageID: image.id, categoryID: dataset.categoryIDs[d.detection.label - 1],
                                      score: Double(d.detection.score), bbox: cocoBox(d.detection.box), segmentation: segmentation,
                                      fileName: fileNames ? image.name : nil))
        }
    }
    return results
}

/// COCO results of `cocoResults` as JSON (keys sorted).
func cocoResultsJSON(_ detections: [[ImageDetection]], dataset: Dataset) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return try encoder.encode(cocoResults(detections, dataset: dataset))
}

/// An evaluation's report and the pictures it drew.
public struct ModelEvaluation {
    public var report: EvaluationReport
    public var drawings: [DrawnImage] = []
    /// The detections file written (`<prefix>_results.json`, `.txt` for VID); nil when none was.
    public var detectionsPath: String? = nil
}

/// Runs the model on `dataset`, writes `<outputPrefix>_results.json` (COCO format; for VID data
/// `<outputPrefix>_results.txt`, MSRA's detection lines) and
/// `<outputPrefix>_metrics.json` (and the pictures `draw` asks for), and returns the report. A
/// `stop` request ends the inference between batches (it throws `Stopped`) and nothing is written.
/// With several processes each runs its share of the images and rank 0 scores them all, writes the
/// files and returns the report (nil on the other processes).
public func evaluateModel(_ model: GeneralizedRCNN, config: ExperimentConfig, dataset: Dataset, outputPrefix: String, draw: DrawingRequest? = nil,
                          stop: StopRequest? = nil, group: ProcessGroup = .world) throws -> ModelEvaluation? {
    guard let detections = try runInference(model, dataset: dataset, views: config.testViews, maxSize: config.testMaxSize,
                                            merged: config.isMultiViewTest, imagesPerBatch: max(1, config.data.imagesPerBatch),
                                            stop: stop, group: group) else { return nil }
    let (file, report) = try evaluationTruth(config).evaluate(detections, dataset: dataset,
                                                              iouTypes: [.bbox] + model.detectionAdditions.map(\.iouType))
    let detectionsPath = outputPrefix + "_results." + config.data.format.detectionsFileExtension
    try AtomicFile.write(file, to: detectionsPath)
    try AtomicFile.write(metricsJSON(report.metrics), to: outputPrefix + "_metrics.json")
    let drawings = try draw.map { try drawDetections(detections, dataset: dataset, request: $0) } ?? []
    return ModelEvaluation(report: report, drawings: drawings, detectionsPath: detectionsPath)
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
