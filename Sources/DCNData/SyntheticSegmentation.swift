// The synthetic dataset's semantic labels in the PASCAL VOC 2012 layout (`dcn-data synth
// --semantic`, issue 32): the same images as the detection data of the same settings (same
// renderer, seed, ids and JPEG bytes), each with a class-index PNG made from the shapes' masks.
import DCNAnnotations
import DCNTensor
import Foundation

/// Segmentation classes of the synthetic dataset: 0 background (also distractor shapes), then the
/// six categories with their detection ids 1...6.
public let syntheticSegmentationClassNames = ["background"] + syntheticClassNames

/// Writes `out/VOCdevkit/VOC2012/`:
/// - `JPEGImages/<id>.jpg`: the images of `writeSyntheticDataset(out:config:)` (same bytes);
/// - `SegmentationClass/<id>.png`: palette PNGs (VOC colours) whose index is the class of
///   `syntheticSegmentationClassNames`: the topmost shape covering a pixel by more than half
///   (the masks of the detection annotations after occlusion; distractors and background are 0);
///   no void (255) pixels;
/// - `ImageSets/Segmentation/{train,val,trainval}.txt`.
/// Ids are those of the detection data: 1...train for train, then the val images. Images are
/// rendered on all cores; the files are the same bytes for a seed whatever the thread count.
public func writeSyntheticSegmentation(out: String, config: SyntheticConfig) throws -> SyntheticSummary {
    let start = Date()
    let root = out + "/VOCdevkit/VOC2012"
    for sub in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] { try createFolder(root + "/" + sub) }
    var lists = [String: [String]]()
    var objects = 0
    for (splitIndex, (name, count, firstID)) in [("train", config.train, 0), ("val", config.val, config.train)].enumerated() {
        let results = parallelResults(count) { i in
            let rendered = renderSyntheticImage(seed: config.seed, split: splitIndex, index: i, size: config.size, difficulty: config.difficulty)
            let file = String(format: "%06d", firstID + i + 1)
            try writeAtomically(try encodeJPEG(rendered.image, quality: config.jpegQuality), to: "\(root)/JPEGImages/\(file).jpg")
            let labels = LabelMap(width: rendered.image.width, height: rendered.image.height, labels: rendered.classMap)
            try writeLabelMap(labels, to: "\(root)/SegmentationClass/\(file).png", vocColours: true)
            return rendered.objects.count
        }
        for slot in results { objects += try slot.get() }
        lists[name] = (0..<count).map { String(format: "%06d", firstID + $0 + 1) }
    }
    let train = lists["train"] ?? [], val = lists["val"] ?? []
    for (split, ids) in [("train", train), ("val", val), ("trainval", train + val)] {
        try writeAtomically(Data(ids.map { $0 + "\n" }.joined().utf8), to: "\(root)/ImageSets/Segmentation/\(split).txt")
    }
    return SyntheticSummary(trainImages: config.train, valImages: config.val, objects: objects, seconds: Date().timeIntervalSince(start))
}
