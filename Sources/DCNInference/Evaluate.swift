// A detector's evaluation with the evaluator API: COCO metrics for COCO and synthetic data, VOC
// AP50/AP70 for VOC data, MSRA's VID AP for ImageNet VID data (`EvaluationTruth` maps each to its
// detections file and its scoring). Used during and after training and by `dcn-eval model`.
import DCNConfig
import DCNData
import DCNDistributed
import DCNEval
import DCNModels
import DCNOps
import DCNTensor
import Foundation
import DCNAnnotations
import DCNPictures
import DCNRun

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

extension DetectionAddition {
    /// The COCO evaluation that scores this addition.
    var iouType: COCOIoUType {
        switch self {
        case .mask: return .segm
        }
    }
}

/// A model detection as the evaluators take it ([x, y, w, h] box, mask).
func evaluationDetection(_ d: ImageDetection, categoryID: Int) -> COCODetection {
    COCODetection(categoryID: categoryID, score: Double(d.detection.score), box: cocoBox(d.detection.box), mask: d.mask)
}

func cocoBox(_ b: Box) -> COCOBox {
    COCOBox(x: Double(b.x1), y: Double(b.y1), width: Double(b.width), height: Double(b.height))
}

/// The ground truth the evaluator scores against.
func evaluationTruth(_ c: ExperimentConfig) throws -> EvaluationTruth {
    switch c.data.format {
    case .coco, .synth:
        guard let p = try cocoPaths(c, train: false) else { throw TrainingError("the config names no validation split", exitCode: 2) }
        return .coco(try COCOGroundTruth.load(path: p.annotations))
    case .voc:
        let s = try vocSplit(c, c.data.valSplit)
        return .voc(try VOCDataset.load(devkit: s.devkit, split: s.split, allowOutsideRoot: c.data.allowOutsideRoot))
    case .imagefolder:
        throw TrainingError("ImageFolder data is scored with top-1 / top-5 accuracy, not by a detection evaluator", exitCode: 2)
    case .vid:
        let (root, lists) = try vidLists(c, train: false)
        let classes = c.data.classes ?? vidClassWNIDs
        let frames = try namingKeys("data.val_list") {
            try loadVIDGroundTruth(annotations: root + "/Annotations/VID", imageset: lists[0].path, classes: classes,
                                   allowOutsideRoot: c.data.allowOutsideRoot)
        }
        return .vid(VIDTruth(frames: frames, classNames: classes.map(vidDisplayName)))
    case .vocSeg, .sbd, .cityscapes:
        throw TrainingError("segmentation data is scored with mIoU (evaluateSegmenter), not by a detection evaluator", exitCode: 2)
    }
}

/// An evaluation's report and the pictures it drew.
public struct ModelEvaluation {
    public var report: EvaluationReport
    public var drawings: [DrawnImage] = []
    /// The detections file written (`<prefix>_results.json`, `.txt` for VID); nil when none was.
    public var detectionsPath: String? = nil

    public init(report: EvaluationReport, drawings: [DrawnImage] = [], detectionsPath: String? = nil) {
        self.report = report; self.drawings = drawings; self.detectionsPath = detectionsPath
    }
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
