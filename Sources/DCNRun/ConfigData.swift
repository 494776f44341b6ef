// Where a config's data lives, and the datasets it names.
import DCNConfig
import DCNData
import DCNEval
import DCNModels
import DCNTensor
import Foundation
import DCNAnnotations

/// Annotation file and image folder of a COCO-format split.
public struct COCOSplitPaths {
    public let annotations: String
    public let images: String
}

/// The COCO-format paths of the training or validation split (COCO or synthetic data).
public func cocoPaths(_ c: ExperimentConfig, train: Bool) throws -> COCOSplitPaths? {
    let d = c.data
    switch d.format {
    case .coco:
        let ann = train ? d.trainAnnotations : d.valAnnotations
        let img = train ? d.trainImages : d.valImages
        guard let ann, let img else {
            if train { throw TrainingError("data.train_annotations and data.train_images are needed for COCO data", exitCode: 2) }
            return nil
        }
        return COCOSplitPaths(annotations: ann, images: img)
    case .synth:
        guard let root = d.root else { throw TrainingError("data.root is needed for synthetic data (make it with dcn-data synth --out DIR)", exitCode: 2) }
        let split = train ? "train" : "val"
        return COCOSplitPaths(annotations: "\(root)/annotations/instances_\(split).json", images: "\(root)/images/\(split)")
    case .voc, .imagefolder, .vid, .vocSeg, .sbd, .cityscapes:
        return nil
    }
}

/// ImageNet VID: the ILSVRC2015 folder (data.root) and the paths of a split's lists
/// (data.train_lists, or data.val_list), each with the key that names it.
public func vidLists(_ c: ExperimentConfig, train: Bool) throws -> (root: String, lists: [(path: String, key: String)]) {
    guard let root = c.data.root else { throw TrainingError("data.root is needed for ImageNet VID data: the ILSVRC2015 folder (Data/, Annotations/)", exitCode: 2) }
    let lists = train ? c.data.trainLists.enumerated().map { ($1, "data.train_lists[\($0)]") } : [(c.data.valList, "data.val_list")]
    return (root, lists.map { (ilsvrcListPath(root: root, list: $0.0), $0.1) })
}

/// A VOC split "VOC2007/test" as (devkit folder, split name).
public func vocSplit(_ c: ExperimentConfig, _ split: String) throws -> (devkit: String, split: String) {
    guard let root = c.data.vocDevkit else { throw TrainingError("data.voc_devkit is needed for VOC data", exitCode: 2) }
    let parts = split.split(separator: "/")
    guard parts.count == 2 else { throw TrainingError("VOC split '\(split)' should look like VOC2007/trainval", exitCode: 2) }
    return ("\(root)/\(parts[0])", String(parts[1]))
}

/// `body`'s result; a problem with the files it reads (a list line, an annotation, a missing or
/// unreadable file) becomes a training error (exit status 2) that names the config `keys` first.
public func namingKeys<T>(_ keys: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let error where error is VIDError || error is VOCError || error is FileError || error is DatasetError {
        throw TrainingError("\(keys): \(error)", exitCode: 2)
    }
}

/// Checks that a path exists, with a message naming the config key.
public func requireExists(_ path: String, _ what: String) throws {
    guard FileManager.default.fileExists(atPath: path) else {
        throw TrainingError("\(what): \(path) does not exist", exitCode: 2)
    }
}

/// The training dataset (images without objects skipped as configured) and the evaluation
/// dataset (every image), when the config names one. ImageFolder splits must have the class
/// folders of `classes` (a resumed checkpoint's), and the val split those of the train split.
public func loadTrainingData(_ c: ExperimentConfig, classes: Dataset.ClassList? = nil) throws -> (train: Dataset, val: Dataset?) {
    let train = try loadDataset(c, train: true, classes: classes)!
    let val = try loadDataset(c, train: false, classes: Dataset.ClassList(names: train.classNames, source: "the training split \(try splitSource(c, train: true))"))
    for w in train.warnings.prefix(20) { printToStandardError("warning: \(w)") }
    // Every split the run uses is checked now, not when it is first used (the evaluation comes after training).
    if train.images.isEmpty {
        throw TrainingError("the training split (\(try splitSource(c, train: true))) has no images with objects; expected at least one", exitCode: 2)
    }
    if let val, val.images.isEmpty {
        throw TrainingError("the validation split (\(try splitSource(c, train: false))) has no images; expected at least one to evaluate on", exitCode: 2)
    }
    return (train, val)
}

/// Where a split's list of images comes from, for messages: its annotation file, VOC split lists or
/// ImageFolder folder.
public func splitSource(_ c: ExperimentConfig, train: Bool) throws -> String {
    switch c.data.format {
    case .coco, .synth:
        return try cocoPaths(c, train: train)?.annotations ?? "none"
    case .voc:
        return try (train ? c.data.trainSplits : [c.data.valSplit]).map { s in
            let (devkit, split) = try vocSplit(c, s)
            return "\(devkit)/ImageSets/Main/\(split).txt"
        }.joined(separator: ", ")
    case .imagefolder:
        return (c.data.root ?? "") + (train ? "/train" : "/val")
    case .vid:
        return try vidLists(c, train: train).lists.map(\.path).joined(separator: ", ")
    case .vocSeg, .sbd, .cityscapes:
        let lists = c.data.format == .cityscapes ? "gtFine/" : "ImageSets/Segmentation/"
        return (train ? c.data.trainSplits : [c.data.valSplit]).map { "\(c.data.root ?? "")/\(lists)\($0)\(c.data.format == .cityscapes ? "" : ".txt")" }
            .joined(separator: ", ")
    }
}

/// The label-map layout of a segmentation format.
public func segmentationLayout(_ format: DataFormat) -> SegmentationLayout? {
    switch format {
    case .vocSeg: return .voc
    case .sbd: return .sbd
    case .cityscapes: return .cityscapes
    case .coco, .voc, .synth, .imagefolder, .vid: return nil
    }
}

/// Segmentation classes in label order, background first: the layout's, or background and
/// `data.classes` (the synthetic data's shapes, say).
public func segmentationClassNames(_ c: ExperimentConfig) -> [String] {
    c.data.classes.map { ["background"] + $0 } ?? segmentationLayout(c.data.format)?.classNames ?? []
}

/// Object classes when the data is not loaded: the config's, else the format's usual count.
public func defaultClassCount(_ c: ExperimentConfig) -> Int {
    if let n = c.model.classes { return n }
    switch c.data.format {
    case .coco: return 80
    case .voc: return c.data.classes?.count ?? 20
    case .synth: return syntheticClassNames.count
    case .imagefolder: return 1000
    case .vid: return c.data.classes?.count ?? vidClassWNIDs.count
    case .vocSeg, .sbd, .cityscapes: return segmentationClassNames(c).count
    }
}

/// One split of the config's data (nil when the config names no such split). `classes`: the class
/// folders an ImageFolder split must have (COCO and VOC files list their own categories).
public func loadDataset(_ c: ExperimentConfig, train: Bool, classes: Dataset.ClassList? = nil) throws -> Dataset? {
    switch c.data.format {
    case .coco, .synth:
        guard let p = try cocoPaths(c, train: train) else { return nil }
        try requireExists(p.annotations, train ? "training annotations" : "validation annotations")
        try requireExists(p.images, train ? "training images" : "validation images")
        let dataset = try Dataset.coco(annotations: p.annotations, imageRoot: p.images, skipEmpty: train && c.data.skipEmpty,
                                       allowOutsideRoot: c.data.allowOutsideRoot)
        if train && c.mask.enabled, let missing = dataset.objectWithoutPolygon {
            throw TrainingError("\(p.annotations): \(missing); the mask branch (mask.enabled) needs a polygon for every non-crowd object", exitCode: 2)
        }
        return dataset
    case .voc:
        let splits = try (train ? c.data.trainSplits : [c.data.valSplit]).map { try vocSplit(c, $0) }
        // Each "VOC20xx/split" pair on its own, concatenated with image ids renumbered.
        var combined: Dataset? = nil
        for s in splits {
            try requireExists(s.devkit, "data.voc_devkit")
            var part = try Dataset.voc(devkits: [s.devkit], splits: [s.split], classes: c.data.classes,
                                       difficultAsIgnore: c.data.difficultAsIgnore, allowOutsideRoot: c.data.allowOutsideRoot)
            let offset = combined?.images.count ?? 0
            for i in part.images.indices { part.images[i].id = offset + i }
            if combined == nil { combined = part } else {
                combined!.images += part.images
                combined!.warnings += part.warnings
            }
        }
        return combined
    case .imagefolder:
        guard let root = c.data.root else { throw TrainingError("data.root is needed for ImageFolder data", exitCode: 2) }
        let folder = root + (train ? "/train" : "/val")
        if !train && !FileManager.default.fileExists(atPath: folder) { return nil }
        try requireExists(folder, train ? "training images (data.root/train)" : "validation images (data.root/val)")
        do { return try Dataset.imageFolder(root: folder, expected: classes) } catch let error as DatasetError {
            throw TrainingError("data.root: \(error)", exitCode: 2)
        }
    case .vid:
        // FGFA: the training lists concatenated, images without boxes dropped (filter_roidb); the
        // evaluated list with its video lines expanded to every frame, as the VID evaluation reads it.
        let (root, lists) = try vidLists(c, train: train)
        try requireExists(root, "data.root (the ILSVRC2015 folder)")
        for list in lists { try requireExists(list.path, list.key) }
        var dataset = try namingKeys(lists.map(\.key).joined(separator: ", ")) {
            try Dataset.imagenetVID(root: root, lists: lists.map(\.path), classes: c.data.classes ?? vidClassWNIDs,
                                    videoLines: train ? .oneFrame : .wholeVideo, allowOutsideRoot: c.data.allowOutsideRoot)
        }
        if train && c.data.skipEmpty { dataset.images.removeAll { $0.objects.isEmpty } }
        return dataset
    case .vocSeg, .sbd, .cityscapes:
        guard let root = c.data.root else { throw TrainingError("data.root is needed for segmentation data", exitCode: 2) }
        try requireExists(root, "data.root")
        let samples = try (train ? c.data.trainSplits : [c.data.valSplit]).flatMap { split in
            try loadSegmentationSplit(layout: segmentationLayout(c.data.format)!, root: root, split: split, allowOutsideRoot: c.data.allowOutsideRoot)
        }
        return Dataset.segmentation(samples, classNames: segmentationClassNames(c))
    }
}

/// The classification transforms the config describes.
public func classificationTransform(_ c: ExperimentConfig) -> ClassificationTransform {
    let d = c.data
    var t = ClassificationTransform(train: RandomResizedCrop(size: d.cropSize, scale: (d.cropScale[0], d.cropScale[1]),
                                                             ratio: (d.cropRatio[0], d.cropRatio[1])),
                                    test: ResizeCenterCrop(resizeSize: d.resizeSize, cropSize: d.cropSize))
    if !d.flip { t.flipProbability = 0 }
    return t
}
