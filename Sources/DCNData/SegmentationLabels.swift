// Semantic-segmentation label maps and the dataset layouts that hold them (issue 32):
// - PASCAL VOC 2012: `SegmentationClass/<id>.png`, palette PNGs whose palette index is the class
//   (0 background, 1...20 the VOC classes, 255 the void boundary);
// - SBD-augmented VOC ("trainaug"): `SegmentationClassAug/<id>.png`, 8-bit grayscale, same values;
// - Cityscapes: `gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png`, 8-bit grayscale, train ids
//   0...18, 255 ignored.
// A label map is read as its stored samples (the palette is never applied), and every value must
// be a class index or 255; errors name the file and the value.
import DCNAnnotations
import Foundation

/// The value of a pixel that no class claims (VOC's object boundaries, Cityscapes' ignored ids):
/// left out of training losses and of evaluation.
public let voidLabel: UInt8 = 255

/// A per-pixel class map, row-major.
public struct LabelMap: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// `width * height` class indices (or `voidLabel`).
    public var labels: [UInt8]

    public init(width: Int, height: Int, labels: [UInt8]) {
        precondition(width > 0 && height > 0 && labels.count == width * height, "a \(width)x\(height) label map needs \(width * height) labels")
        self.width = width; self.height = height; self.labels = labels
    }
}

/// A label map that cannot be used: a value that is not a class, a size that does not match, a
/// file that is missing from a folder. The description names the file.
public struct LabelMapError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

/// The dataset layouts whose label maps the tools read.
public enum SegmentationLayout: String, Sendable, CaseIterable {
    /// VOCdevkit/VOC2012: `ImageSets/Segmentation/<split>.txt`, `JPEGImages/<id>.jpg`,
    /// `SegmentationClass/<id>.png` (palette PNGs).
    case voc
    /// The same devkit folder with the SBD-augmented labels: `ImageSets/Segmentation/<split>.txt`
    /// (usually `trainaug`), `JPEGImages/<id>.jpg`, `SegmentationClassAug/<id>.png` (grayscale).
    case sbd
    /// The Cityscapes root: `gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png` and
    /// `leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`.
    case cityscapes

    /// The classes in label order: VOC's background and 20 classes, or Cityscapes' 19 train ids.
    public var classNames: [String] {
        switch self {
        case .voc, .sbd: return vocSegmentationClassNames
        case .cityscapes: return cityscapesClassNames
        }
    }

    /// Where the layout keeps its label maps, relative to the root.
    public var labelFolder: String {
        switch self {
        case .voc: return "SegmentationClass"
        case .sbd: return "SegmentationClassAug"
        case .cityscapes: return "gtFine"
        }
    }
}

/// VOC segmentation classes: 0 background, then the 20 detection classes.
public let vocSegmentationClassNames = ["background"] + vocClassNames

/// Cityscapes' 19 evaluated classes in train-id order (cityscapesScripts `labels.py`).
public let cityscapesClassNames = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
                                   "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]

/// The PASCAL VOC colour map (the devkit's `VOClabelcolormap.m`): 256 RGB triples, class k's
/// colour spreads the bits of k over the high bits of R, G and B; 255 is (224, 224, 192).
public let vocPalette: [UInt8] = (0..<256).flatMap { index -> [UInt8] in
    var r = 0, g = 0, b = 0, c = index
    for j in 0..<8 {
        r |= (c & 1) << (7 - j); g |= ((c >> 1) & 1) << (7 - j); b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    }
    return [UInt8(r), UInt8(g), UInt8(b)]
}

// MARK: - Reading and writing label maps

/// Reads a label map (palette or grayscale PNG) and checks that every value is a class index
/// below `classes` or `voidLabel`. Errors name the file: missing, unreadable, not such a PNG,
/// truncated or corrupt (`FileError` / `ImageError`), or a value that is not a class
/// (`LabelMapError`, with the value, where it first occurs and how many pixels have it).
public func readLabelMap(path: String, classes: Int) throws -> LabelMap {
    let decoded = try readLabelSamples(path: path)
    let map = LabelMap(width: decoded.width, height: decoded.height, labels: decoded.samples)
    try checkLabelValues(map, classes: classes, file: path)
    return map
}

/// The stored samples of a label map file, values unchecked (`readLabelMap` checks them).
public func readLabelSamples(path: String) throws -> PNGSamples {
    try decodePNGSamples(data: readFileContents(path, expected: "a label map (palette or grayscale PNG)"), name: path)
}

/// Throws a `LabelMapError` naming `file` when a value of `map` is neither below `classes` nor
/// `voidLabel`; returns the pixels of each value 0...255.
@discardableResult
public func checkLabelValues(_ map: LabelMap, classes: Int, file: String) throws -> [Int] {
    var histogram = [Int](repeating: 0, count: 256)
    for v in map.labels { histogram[Int(v)] += 1 }
    let bad = (max(0, classes)..<255).filter { histogram[$0] > 0 }
    guard let value = bad.first else { return histogram }
    let at = map.labels.firstIndex(of: UInt8(value))!
    let others = bad.count > 1 ? " (other such values: \(bad.dropFirst().prefix(8).map(String.init).joined(separator: ", "))\(bad.count > 9 ? ", ..." : ""))" : ""
    throw LabelMapError(file: file, "value \(value) at x \(at % map.width), y \(at / map.width) (\(histogram[value]) pixels) is neither a class index "
                        + "0...\(classes - 1) nor \(voidLabel) (void)\(others); expected a label map of \(classes) classes")
}

/// Writes `map` as an 8-bit PNG: grayscale (as SBD's and Cityscapes' labels), or with the VOC
/// colour map as its palette (as VOC's SegmentationClass, viewable in colour). Atomic, as
/// `writeImage`.
public func writeLabelMap(_ map: LabelMap, to path: String, vocColours: Bool = false) throws {
    let data: Data
    do {
        data = try encodePNGSamples(map.labels, width: map.width, height: map.height, palette: vocColours ? vocPalette : nil)
    } catch let error as ImageError {
        throw ImageError(file: path, kind: error.kind, message: error.message)
    }
    try writeAtomically(data, to: path)
}

// MARK: - Dataset layouts

/// One image of a segmentation split and its label map.
public struct SegmentationSample: Sendable, Equatable {
    /// The VOC image id, or the Cityscapes name without its `_gtFine_labelTrainIds` suffix.
    public var id: String
    public var imagePath: String
    public var labelPath: String

    public init(id: String, imagePath: String, labelPath: String) { self.id = id; self.imagePath = imagePath; self.labelPath = labelPath }
}

/// The samples of `split` in a `layout` rooted at `root` (a VOC devkit year folder such as
/// VOCdevkit/VOC2012, or the Cityscapes folder holding gtFine/ and leftImg8bit/), in list order
/// (VOC) or sorted by path (Cityscapes). Only the lists and folders are read; a missing image or
/// label file is found by `checkSegmentationSample`. VOC ids that can lead outside the root are
/// refused unless `allowOutsideRoot` (as for detection).
public func loadSegmentationSplit(layout: SegmentationLayout, root: String, split: String, allowOutsideRoot: Bool = false) throws -> [SegmentationSample] {
    let base = URL(fileURLWithPath: root)
    switch layout {
    case .voc, .sbd:
        return try vocSplitImageIDs(devkit: root, split: split, imageSet: "Segmentation", allowOutsideRoot: allowOutsideRoot).map { id in
            SegmentationSample(id: id, imagePath: base.appendingPathComponent("JPEGImages/\(id).jpg").path,
                               labelPath: base.appendingPathComponent("\(layout.labelFolder)/\(id).png").path)
        }
    case .cityscapes:
        let folder = base.appendingPathComponent("gtFine/\(split)").path
        if let problem = folderProblem(folder) {
            throw FileError(path: folder, "\(problem); expected the Cityscapes label folder gtFine/\(split)/<city>/ of the root \(root)")
        }
        let files = try pngFiles(under: folder)
        let suffix = "_gtFine_labelTrainIds.png"
        let labels = files.filter { $0.hasSuffix(suffix) }
        if labels.isEmpty {
            let hint = files.contains { $0.hasSuffix("_gtFine_labelIds.png") }
                ? "; it has *_gtFine_labelIds.png: make the train-id maps with cityscapesScripts' createTrainIdLabelImgs.py" : ""
            throw FileError(path: folder, "no *\(suffix) file in its city folders\(hint)")
        }
        return labels.map { relative in
            let name = String(relative.dropLast(suffix.count))
            return SegmentationSample(id: URL(fileURLWithPath: name).lastPathComponent,
                                      imagePath: base.appendingPathComponent("leftImg8bit/\(split)/\(name)_leftImg8bit.png").path,
                                      labelPath: "\(folder)/\(relative)")
        }
    }
}

/// The `.png` files below `folder` (any depth), as paths relative to it, sorted.
func pngFiles(under folder: String) throws -> [String] {
    guard let walk = FileManager.default.enumerator(atPath: folder) else {
        throw FileError(path: folder, "cannot list the folder")
    }
    var files = [String]()
    while let relative = walk.nextObject() as? String {
        if relative.lowercased().hasSuffix(".png") { files.append(relative) }
    }
    return files.sorted()
}

// MARK: - Matching predictions to labels

/// The key that matches a prediction to its label map: the file name without `.png` and without a
/// Cityscapes suffix (`_gtFine_labelTrainIds`, `_leftImg8bit`), so that `X_gtFine_labelTrainIds.png`
/// matches a prediction `X.png`.
public func labelMapKey(_ fileName: String) -> String {
    var name = URL(fileURLWithPath: fileName).lastPathComponent
    if name.lowercased().hasSuffix(".png") { name.removeLast(4) }
    for suffix in ["_gtFine_labelTrainIds", "_leftImg8bit"] where name.hasSuffix(suffix) {
        name.removeLast(suffix.count)
        break
    }
    return name
}

/// A label map and the prediction for it.
public struct LabelMapPair: Sendable, Equatable {
    public var key: String
    public var label: String
    public var prediction: String
}

/// Pairs every `.png` below `labels` (any depth) with the `.png` below `predictions` of the same
/// `labelMapKey`, sorted by key. A label without a prediction, a folder without label maps, and
/// two files of one key in a folder are errors naming the files; predictions without a label are
/// counted in `unmatched`.
public func matchLabelMaps(labels: String, predictions: String) throws -> (pairs: [LabelMapPair], unmatched: Int) {
    func index(_ folder: String, _ role: String) throws -> [String: String] {
        if let problem = folderProblem(folder) { throw FileError(path: folder, "\(problem); expected a folder of \(role) PNGs") }
        var byKey = [String: String]()
        for relative in try pngFiles(under: folder) {
            let path = URL(fileURLWithPath: folder).appendingPathComponent(relative).path
            let key = labelMapKey(relative)
            if let other = byKey[key] {
                throw LabelMapError(file: path, "has the same name (\(key)) as \(other); each image has one \(role) file")
            }
            byKey[key] = path
        }
        return byKey
    }
    let labelFiles = try index(labels, "label map"), predictionFiles = try index(predictions, "prediction")
    if labelFiles.isEmpty { throw FileError(path: labels, "no .png label map in the folder or below it") }
    var pairs = [LabelMapPair]()
    for key in labelFiles.keys.sorted() {
        guard let prediction = predictionFiles[key] else {
            throw LabelMapError(file: labelFiles[key]!, "has no prediction: expected \(predictions)/\(key).png (predictions are matched to labels by file name)")
        }
        pairs.append(LabelMapPair(key: key, label: labelFiles[key]!, prediction: prediction))
    }
    return (pairs, predictionFiles.count - pairs.count)
}

// MARK: - Training data

extension Dataset {
    /// A segmentation split as a dataset: one image per sample, in order (ids 0, 1, ...; names the
    /// sample ids), its label map attached; `classNames` with background first.
    public static func segmentation(_ samples: [SegmentationSample], classNames: [String]) -> Dataset {
        Dataset(images: samples.enumerated().map { i, s in
                    DatasetImage(id: i, name: s.id, path: s.imagePath, width: 0, height: 0, objects: [], labelPath: s.labelPath)
                },
                classNames: classNames, categoryIDs: Array(0..<classNames.count))
    }
}

extension LabelMap {
    /// The map resized to `width` x `height` by nearest neighbour (pixel centres: output pixel x
    /// reads input pixel floor((x + 0.5) * inputWidth / width)), then flipped horizontally when `flip`.
    public func resized(width: Int, height: Int, flip: Bool = false) -> LabelMap {
        var out = [UInt8](repeating: voidLabel, count: width * height)
        let columns = (0..<width).map { x in min(self.width - 1, Int((Double(x) + 0.5) * Double(self.width) / Double(width))) }
        for y in 0..<height {
            let row = min(self.height - 1, Int((Double(y) + 0.5) * Double(self.height) / Double(height))) * self.width
            for x in 0..<width { out[y * width + (flip ? width - 1 - x : x)] = labels[row + columns[x]] }
        }
        return LabelMap(width: width, height: height, labels: out)
    }
}
