// A lean loading path for COCO instance files, for training: one read of the file straight into
// the parser's buffer (no Foundation `Data` copy), polygons kept as exact-size Float arrays and
// RLE segmentations skipped (training only needs crowd boxes). On an instances_train2017-sized
// file this keeps the peak memory to about the file size plus the polygons.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One annotation as training reads it. `bbox` is COCO's [x, y, width, height] (nil when absent);
/// `polygons` are the polygon parts (empty for RLE or missing segmentations); `rleSize` is an RLE
/// segmentation's [height, width] (nil for polygons or none).
public struct COCOLeanAnnotation: Sendable {
    public var id: Int
    public var imageID: Int
    public var categoryID: Int
    public var bbox: (x: Float, y: Float, width: Float, height: Float)?
    public var isCrowd: Bool
    public var polygons: [[Float]]
    public var rleSize: (height: Int, width: Int)?

    public init(id: Int, imageID: Int, categoryID: Int, bbox: (x: Float, y: Float, width: Float, height: Float)?,
                isCrowd: Bool, polygons: [[Float]], rleSize: (height: Int, width: Int)? = nil) {
        self.id = id; self.imageID = imageID; self.categoryID = categoryID
        self.bbox = bbox; self.isCrowd = isCrowd; self.polygons = polygons; self.rleSize = rleSize
    }
}

/// The parts of a COCO instances file that training uses.
public struct COCOLeanFile: Sendable {
    public var images: [COCOImage]
    public var categories: [COCOCategory]
    public var annotations: [COCOLeanAnnotation]
    /// Annotations whose RLE segmentation is unusable (runs that do not add up to the mask's
    /// size, a bad compressed string), one line each naming the annotation id. Training does not
    /// read RLE masks, so they do not stop loading; `dcn-data check` reports them.
    public var warnings: [String] = []

    /// Reads `path` strictly (syntax errors name the file, line and column; a missing "images"
    /// or "categories" list is an error). Unknown keys are skipped. `keepPolygons: false` skips
    /// polygons (box-only training). RLE segmentations are checked and dropped (see `warnings`).
    /// Kept polygons are checked: a part with fewer than 3 points, an odd count or a coordinate
    /// that is not a finite Float, or an empty polygon list, is an error naming the annotation
    /// and image ids (with the line and column); so is a repeated annotation id.
    public static func load(path: String, keepPolygons: Bool = true) throws -> COCOLeanFile {
        var r = try JSONReader(leanPath: path)
        var images = [COCOImage](), annotations = [COCOLeanAnnotation](), categories = [COCOCategory]()
        var warnings = [String]()
        var sawImages = false, sawCategories = false
        var scratch = [Float]()
        scratch.reserveCapacity(4096)
        try r.readObject { r, key in
            switch key {
            case "images":
                sawImages = true
                images = try readCOCOImages(&r)
            case "categories":
                sawCategories = true
                categories = try readCOCOCategories(&r)
            case "annotations":
                var ids = UniqueAnnotationIDs()
                try r.readArray { r in
                    r.skipWhitespace()
                    let objectStart = r.position
                    var id: Int?, imageID: Int?, categoryID: Int?, crowd = false
                    var bbox: (x: Float, y: Float, width: Float, height: Float)?
                    var polygons = [[Float]]()
                    var maskProblem: String?, rleSize: (height: Int, width: Int)?
                    // The first malformed polygon part (or an empty list), refused once the ids are known.
                    var badPolygon: String?, segmentationStart = 0
                    try r.readObject { r, k in
                        switch k {
                        case "id": id = try r.readInt(key: "id")
                        case "image_id": imageID = try r.readInt(key: "image_id")
                        case "category_id": categoryID = try r.readInt(key: "category_id")
                        case "iscrowd":
                            let c = r.peek()
                            if c == UInt8(ascii: "t") || c == UInt8(ascii: "f") { crowd = try r.readBool() } else { crowd = try r.readDouble() != 0 }
                        case "bbox":
                            scratch.removeAll(keepingCapacity: true)
                            try r.readArray { r in scratch.append(Float(try r.readDouble())) }
                            if scratch.isEmpty { break }  // `"bbox": []` is treated as absent, as pycocotools does
                            guard scratch.count == 4 else { throw r.error("a bbox needs 4 numbers [x, y, width, height], found \(scratch.count)") }
                            bbox = (scratch[0], scratch[1], scratch[2], scratch[3])
                        case "segmentation":
                            r.skipWhitespace()
                            segmentationStart = r.position
                            if r.peek() == UInt8(ascii: "{") {
                                let segmentation = try r.readSegmentation()
                                do {
                                    let mask = try segmentation.rle(height: 0, width: 0)
                                    rleSize = (mask.height, mask.width)
                                } catch let e as MaskError { maskProblem = e.message }
                            } else if keepPolygons && r.peek() == UInt8(ascii: "[") {
                                try r.readArray { r in
                                    scratch.removeAll(keepingCapacity: true)
                                    try r.readArray { r in scratch.append(Float(try r.readDouble())) }
                                    // A fresh exact-size array (Array(scratch) would share scratch's large buffer).
                                    polygons.append([Float](unsafeUninitializedCapacity: scratch.count) { b, n in
                                        _ = b.initialize(from: scratch)
                                        n = scratch.count
                                    })
                                    if badPolygon == nil, let problem = polygonProblem(polygons[polygons.count - 1]) {
                                        badPolygon = "polygon \(polygons.count - 1) \(problem)"
                                    }
                                }
                                if polygons.isEmpty { badPolygon = "is an empty polygon list; expected [[x0, y0, x1, y1, x2, y2, ...], ...] or an RLE" }
                            } else {
                                try r.skipValue()
                            }
                        default: try r.skipValue()
                        }
                    }
                    let n = annotations.count
                    guard let id else { throw r.error("annotations[\(n)] has no \"id\"") }
                    guard let imageID else { throw r.error("annotation id \(id) has no \"image_id\"") }
                    guard let categoryID else { throw r.error("annotation id \(id) has no \"category_id\"") }
                    try ids.insert(id, index: n, objectStart: objectStart, r) { id in annotations.firstIndex { $0.id == id } }
                    // Mask R-CNN trains on these polygons: a bad one is refused here, at the start,
                    // rather than when its batch comes up (docs/mask-rcnn.md).
                    if let badPolygon { throw r.error("annotation id \(id) (image id \(imageID)): segmentation \(badPolygon)", at: segmentationStart) }
                    if let maskProblem { warnings.append("annotation id \(id) (image id \(imageID)): segmentation: \(maskProblem)") }
                    annotations.append(COCOLeanAnnotation(id: id, imageID: imageID, categoryID: categoryID, bbox: bbox,
                                                          isCrowd: crowd, polygons: polygons, rleSize: rleSize))
                }
            default: try r.skipValue()
            }
        }
        try r.expectEnd()
        guard sawImages else { throw COCOFormatError(file: path, "no \"images\" list: expected a COCO instances file") }
        guard sawCategories else { throw COCOFormatError(file: path, "no \"categories\" list: expected a COCO instances file") }
        return COCOLeanFile(images: images, categories: categories, annotations: annotations, warnings: warnings)
    }
}

extension JSONReader {
    /// Reads the file with `read(2)` straight into the parser's buffer (plus the terminating 0),
    /// without the intermediate `Data` that doubles the peak memory on large files.
    init(leanPath path: String) throws {
        if let problem = fileReadProblem(path) { throw FileError(path: path, "\(problem); expected a COCO instances JSON file") }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FileError(path: path, "cannot open the file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, "cannot read the file (\(String(cString: strerror(errno))))") }
        let size = Int(st.st_size)
        var failure: String?
        let buffer = [UInt8](unsafeUninitializedCapacity: size + 1) { b, count in
            var done = 0
            while done < size {
                let n = read(fd, b.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { failure = n == 0 ? "the file shrank while reading" : String(cString: strerror(errno)); break }
                done += n
            }
            b[done] = 0
            count = done + 1
        }
        if let failure { throw FileError(path: path, "cannot read the file (\(failure))") }
        self.bytes = buffer
        self.file = path
        self.position = 0
    }
}
