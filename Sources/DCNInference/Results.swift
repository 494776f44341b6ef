// What an evaluation writes: detections in the original image, as COCO results, as MSRA's VID
// lines, and metrics as JSON.
import DCNAnnotations
import DCNData
import DCNEval
import DCNModels
import Foundation

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

/// Metrics as a flat JSON object, sorted by name; a metric without a value (NaN: VOC AP of a class
/// with no ground truth, pycocotools' -1 stays -1) is written as null.
public func metricsJSON(_ metrics: [(name: String, value: Double)], extra: [String: Any] = [:]) throws -> Data {
    var object = extra
    for m in metrics { object[m.name] = m.value.isFinite ? m.value : NSNull() }
    return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
}
