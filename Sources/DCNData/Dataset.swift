// The training/evaluation view of a detection dataset: images with their objects (0-based pixel
// boxes, contiguous labels, ignore flags, polygons), read from COCO instance files or PASCAL VOC
// devkits. Input problems either stop loading (syntax, structure) or skip one entry with a
// warning naming its id (see each loader's doc comment for which is which).
import DCNTensor
import Foundation
import DCNAnnotations

/// One object of an image.
public struct DatasetObject: Sendable, Equatable {
    /// 0-based pixel box (x1, y1, x2, y2), x2/y2 exclusive (no +1).
    public var box: Box
    /// Contiguous class label in 1...C (0 is background).
    public var label: Int
    /// A region to ignore in training rather than a target: COCO crowd, VOC difficult.
    public var ignore: Bool
    /// Polygon parts, each [x0, y0, x1, y1, ...] in the same pixel coordinates (may be empty).
    public var polygons: [[Float]]
    /// COCO annotation id, to name the object in messages (nil for VOC).
    public var annotationID: Int?

    public init(box: Box, label: Int, ignore: Bool = false, polygons: [[Float]] = [], annotationID: Int? = nil) {
        self.box = box; self.label = label; self.ignore = ignore; self.polygons = polygons; self.annotationID = annotationID
    }
}

/// One image of a dataset and its objects.
public struct DatasetImage: Sendable, Equatable {
    /// COCO image id; for VOC, the position in the combined image list (0-based).
    public var id: Int
    /// COCO `file_name`; VOC image id (e.g. "000005" or "2008_000002").
    public var name: String
    /// Path of the image file.
    public var path: String
    /// Size from the annotation file (0 when it does not say; the loader uses the decoded size).
    public var width: Int
    public var height: Int
    public var objects: [DatasetObject]
    /// Classification: the image's class index, 0-based (-1 in detection datasets).
    public var classLabel: Int
    /// Semantic segmentation: the image's label map (a PNG of class indices, 255 void).
    public var labelPath: String?

    public init(id: Int, name: String, path: String, width: Int, height: Int, objects: [DatasetObject], classLabel: Int = -1,
                labelPath: String? = nil) {
        self.id = id; self.name = name; self.path = path; self.width = width; self.height = height; self.objects = objects
        self.classLabel = classLabel; self.labelPath = labelPath
    }
}

/// An error that stops loading a dataset (malformed files are reported by the readers of
/// DCNEval: `JSONReadError` with line and column, `VOCError` with line or element).
public struct DatasetError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

/// A dataset ready for the loader and the evaluators.
public struct Dataset: Sendable {
    public var images: [DatasetImage]
    /// Class names; `classNames[label - 1]`.
    public var classNames: [String]
    /// `categoryIDs[label - 1]` is the original COCO category id (for writing results back);
    /// for VOC, the label itself.
    public var categoryIDs: [Int]
    /// Entries skipped while loading, one line each, naming the offending id.
    public var warnings: [String]

    public init(images: [DatasetImage], classNames: [String], categoryIDs: [Int], warnings: [String] = []) {
        self.images = images; self.classNames = classNames; self.categoryIDs = categoryIDs; self.warnings = warnings
    }

    public var objectCount: Int { images.reduce(0) { $0 + $1.objects.count } }

    /// The first object that is a training target (not ignored) but has no polygon, named by
    /// image id, file and annotation id; nil when every one has a polygon. Mask R-CNN needs a
    /// mask for every such object, so its training refuses the dataset at start.
    public var objectWithoutPolygon: String? {
        for im in images {
            for (k, o) in im.objects.enumerated() where !o.ignore && o.polygons.isEmpty {
                let object = o.annotationID.map { "annotation id \($0)" } ?? "object #\(k + 1)"
                return "image id \(im.id) (\(im.name)): \(object) has no polygon segmentation (an RLE or none)"
            }
        }
        return nil
    }

    /// Label for a COCO category id (nil when unknown).
    public func label(forCategoryID id: Int) -> Int? {
        categoryIDs.firstIndex(of: id).map { $0 + 1 }
    }
}

// MARK: - COCO

extension Dataset {
    /// Reads a COCO instances file. Categories sorted by id become labels 1...C (detectron2's
    /// contiguous mapping); boxes [x, y, w, h] become (x, y, x + w, y + h); crowd objects are kept
    /// with `ignore = true`. Image paths are `imageRoot/file_name`.
    ///
    /// Errors (thrown): malformed JSON (file, line and column), no "images" or "categories"
    /// list, a duplicate image, category or annotation id, an image without `file_name`, a
    /// `file_name` that can lead outside `imageRoot` (absolute or with a `..` component, see
    /// `outsideFolderProblem`) unless `allowOutsideRoot`, a malformed polygon (see `COCOLeanFile`).
    /// Skipped with a warning naming the annotation id: an annotation whose `image_id` has no
    /// image entry, an unknown `category_id`, a missing or non-positive box (w <= 0 or h <= 0,
    /// or not finite). Kept with a warning: an annotation whose RLE segmentation is unusable (runs
    /// that do not add up to its size, or a size that is not its image's; training reads only the box).
    /// `skipEmpty` drops images with no non-crowd object (detectron2's training filter); keep
    /// them for evaluation.
    public static func coco(annotations: String, imageRoot: String, skipEmpty: Bool, allowOutsideRoot: Bool = false) throws -> Dataset {
        let file = try COCOLeanFile.load(path: annotations)
        let categories = file.categories.sorted { $0.id < $1.id }
        var labelOf = [Int: Int](minimumCapacity: categories.count)
        for (i, c) in categories.enumerated() {
            if labelOf[c.id] != nil { throw DatasetError(file: annotations, "duplicate category id \(c.id)") }
            labelOf[c.id] = i + 1
        }
        var indexOf = [Int: Int](minimumCapacity: file.images.count)
        var images = [DatasetImage]()
        images.reserveCapacity(file.images.count)
        let root = imageRoot.hasSuffix("/") || imageRoot.isEmpty ? imageRoot : imageRoot + "/"
        for im in file.images {
            if indexOf[im.id] != nil { throw DatasetError(file: annotations, "duplicate image id \(im.id)") }
            guard let name = im.fileName else { throw DatasetError(file: annotations, "image id \(im.id) has no \"file_name\"") }
            if !allowOutsideRoot, let problem = outsideFolderProblem(name) {
                throw DatasetError(file: annotations, "image id \(im.id): file_name '\(name)' \(problem), so it can lie outside the image folder \(imageRoot); expected a path inside it (\(outsideFolderRemedy))")
            }
            indexOf[im.id] = images.count
            images.append(DatasetImage(id: im.id, name: name, path: root + name, width: im.width, height: im.height, objects: []))
        }
        var warnings = file.warnings
        var annotationsOf = file.annotations
        for k in annotationsOf.indices {
            let a = annotationsOf[k]
            guard let index = indexOf[a.imageID] else {
                warnings.append("annotation id \(a.id): image id \(a.imageID) has no entry in \"images\"; skipped")
                continue
            }
            guard let label = labelOf[a.categoryID] else {
                warnings.append("annotation id \(a.id) (image id \(a.imageID)): unknown category id \(a.categoryID); skipped")
                continue
            }
            guard let b = a.bbox else {
                warnings.append("annotation id \(a.id) (image id \(a.imageID)): no bbox; skipped")
                continue
            }
            guard b.width > 0, b.height > 0, b.x.isFinite, b.y.isFinite, b.width.isFinite, b.height.isFinite else {
                warnings.append("annotation id \(a.id) (image id \(a.imageID)): non-positive box [\(b.x), \(b.y), \(b.width), \(b.height)]; skipped")
                continue
            }
            if let s = a.rleSize, let problem = rleSizeProblem(height: s.height, width: s.width, imageID: a.imageID,
                                                               imageHeight: images[index].height, imageWidth: images[index].width) {
                warnings.append("annotation id \(a.id) (image id \(a.imageID)): segmentation: \(problem)")
            }
            let polygons = a.polygons
            annotationsOf[k].polygons = []  // hand the arrays over without a copy
            images[index].objects.append(DatasetObject(box: Box(b.x, b.y, b.x + b.width, b.y + b.height), label: label,
                                                       ignore: a.isCrowd, polygons: polygons, annotationID: a.id))
        }
        annotationsOf = []
        if skipEmpty { images.removeAll { im in !im.objects.contains { !$0.ignore } } }
        return Dataset(images: images, classNames: categories.map(\.name), categoryIDs: categories.map(\.id), warnings: warnings)
    }
}

// MARK: - PASCAL VOC

extension Dataset {
    /// Reads PASCAL VOC devkit folders (e.g. `.../VOC2007`, `.../VOC2012`), each with every split
    /// in `splits` (`ImageSets/Main/<split>.txt`), combined in that order (devkit-major), e.g.
    /// VOC07+12 trainval. Boxes are 1-based inclusive in the files and become 0-based:
    /// (xmin - 1, ymin - 1, xmax, ymax), as detectron2 converts them. Labels follow `classes`
    /// (default: the 20 VOC classes). Difficult objects are kept with `ignore = true` when
    /// `difficultAsIgnore`, dropped otherwise. Image paths are `JPEGImages/<id>.jpg`.
    ///
    /// Errors (thrown): an unreadable split list or annotation file, malformed XML (file and
    /// line/column, or the element at fault), a missing `<name>`/`<bndbox>` element, an image id
    /// that can lead outside the devkit folder unless `allowOutsideRoot` (see `vocSplitImageIDs`).
    /// Skipped with a warning naming the image id: an object of a class not in `classes`, an
    /// object with a non-positive box (xmax < xmin or ymax < ymin).
    public static func voc(devkits: [String], splits: [String], classes: [String]? = nil,
                           difficultAsIgnore: Bool = true, allowOutsideRoot: Bool = false) throws -> Dataset {
        let classNames = classes ?? vocClassNames
        var labelOf = [String: Int]()
        for (i, c) in classNames.enumerated() { labelOf[c] = i + 1 }
        // (devkit, image id) in order.
        var entries = [(devkit: String, id: String)]()
        for devkit in devkits {
            for split in splits {
                entries += try vocSplitImageIDs(devkit: devkit, split: split, allowOutsideRoot: allowOutsideRoot).map { (devkit, $0) }
            }
        }
        // Parse the XML files on all cores; each slot is written by one task.
        let entriesCopy = entries
        let parsed = parallelResults(entries.count, grain: 16) { i in
            let (devkit, id) = entriesCopy[i]
            let path = vocAnnotationPath(devkit: devkit, imageID: id)
            let data = try readFileContents(path, expected: "the annotation XML of image \(id)")
            return (try parseVOCAnnotation(data: data, file: path), vocImageSize(data))
        }
        var images = [DatasetImage]()
        var warnings = [String]()
        images.reserveCapacity(entries.count)
        for (i, (devkit, id)) in entries.enumerated() {
            let (objects, size) = try parsed[i].get()
            var out = [DatasetObject]()
            for (n, o) in objects.enumerated() {
                guard let label = labelOf[o.name] else {
                    warnings.append("image \(id) (\(devkit)): object #\(n + 1) has class '\(o.name)', not in the class list; skipped")
                    continue
                }
                guard o.box.xmax >= o.box.xmin, o.box.ymax >= o.box.ymin else {
                    warnings.append("image \(id) (\(devkit)): object #\(n + 1) (\(o.name)) has a non-positive box [\(o.box.xmin), \(o.box.ymin), \(o.box.xmax), \(o.box.ymax)]; skipped")
                    continue
                }
                if o.difficult && !difficultAsIgnore { continue }
                let box = Box(Float(o.box.xmin - 1), Float(o.box.ymin - 1), Float(o.box.xmax), Float(o.box.ymax))
                out.append(DatasetObject(box: box, label: label, ignore: o.difficult))
            }
            let path = URL(fileURLWithPath: devkit).appendingPathComponent("JPEGImages/\(id).jpg").path
            images.append(DatasetImage(id: i, name: id, path: path, width: size.0, height: size.1, objects: out))
        }
        return Dataset(images: images, classNames: classNames, categoryIDs: classNames.indices.map { $0 + 1 },
                       warnings: warnings)
    }
}

/// `<size><width>W</width><height>H</height></size>` of a VOC annotation (0, 0 when absent);
/// the file has already been validated by `parseVOCAnnotation`.
private func vocImageSize(_ data: Data) -> (Int, Int) {
    let text = String(decoding: data, as: UTF8.self)
    guard let size = text.range(of: "<size>"), let end = text.range(of: "</size>", range: size.upperBound..<text.endIndex) else { return (0, 0) }
    let inside = text[size.upperBound..<end.lowerBound]
    func value(_ tag: String) -> Int {
        guard let a = inside.range(of: "<\(tag)>"), let b = inside.range(of: "</\(tag)>", range: a.upperBound..<inside.endIndex) else { return 0 }
        return Int(inside[a.upperBound..<b.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
    return (value("width"), value("height"))
}
