// Codable COCO ground truth and results (the fields evaluation reads), and their loaders.
// Loading uses JSONReader (one pass over the bytes); the types stay Codable so training and
// tests can also write them with JSONEncoder.
import Foundation

/// A box `[x, y, width, height]` in pixels (COCO convention, no +1).
public struct COCOBox: Codable, Equatable, Sendable {
    public var x: Double, y: Double, width: Double, height: Double
    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }
    public init(_ v: [Double]) { self.init(x: v[0], y: v[1], width: v[2], height: v[3]) }
    public var array: [Double] { [x, y, width, height] }
    public init(from decoder: Decoder) throws {
        var c = try decoder.unkeyedContainer()
        self.init(x: try c.decode(Double.self), y: try c.decode(Double.self), width: try c.decode(Double.self), height: try c.decode(Double.self))
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.unkeyedContainer()
        try c.encode(x); try c.encode(y); try c.encode(width); try c.encode(height)
    }
}

/// A COCO segmentation: polygons, an uncompressed RLE (`counts` as numbers) or a compressed
/// RLE (`counts` as a string).
public enum COCOSegmentation: Codable, Equatable, Sendable {
    case polygons([[Double]])
    case uncompressedRLE(height: Int, width: Int, counts: [UInt32])
    case compressedRLE(height: Int, width: Int, counts: String)

    private enum Keys: String, CodingKey { case size, counts }

    public init(from decoder: Decoder) throws {
        if let p = try? decoder.singleValueContainer().decode([[Double]].self) { self = .polygons(p); return }
        let c = try decoder.container(keyedBy: Keys.self)
        let size = try c.decode([Int].self, forKey: .size)
        guard size.count == 2 else { throw DecodingError.dataCorruptedError(forKey: .size, in: c, debugDescription: "size must be [height, width]") }
        if let s = try? c.decode(String.self, forKey: .counts) {
            self = .compressedRLE(height: size[0], width: size[1], counts: s)
        } else {
            self = .uncompressedRLE(height: size[0], width: size[1], counts: try c.decode([UInt32].self, forKey: .counts))
        }
    }

    public func encode(to encoder: Encoder) throws {
        switch self {
        case .polygons(let p):
            var c = encoder.singleValueContainer(); try c.encode(p)
        case .uncompressedRLE(let h, let w, let counts):
            var c = encoder.container(keyedBy: Keys.self); try c.encode([h, w], forKey: .size); try c.encode(counts, forKey: .counts)
        case .compressedRLE(let h, let w, let counts):
            var c = encoder.container(keyedBy: Keys.self); try c.encode([h, w], forKey: .size); try c.encode(counts, forKey: .counts)
        }
    }

    /// The mask as an RLE, rasterising polygons at `height x width` (`annToRLE`). RLE forms keep
    /// their own size; their runs must add up to exactly that many pixels.
    public func rle(height: Int, width: Int) throws -> RLE {
        let mask: RLE
        switch self {
        case .polygons(let p): return try RLE(polygons: p, height: height, width: width)
        case .uncompressedRLE(let h, let w, let counts): mask = RLE(height: h, width: w, counts: counts)
        case .compressedRLE(let h, let w, let s): mask = try RLE(height: h, width: w, compressed: s)
        }
        try mask.validate()
        return mask
    }
}

public struct COCOImage: Codable, Equatable, Sendable {
    public var id: Int
    public var width: Int
    public var height: Int
    public var fileName: String?
    enum CodingKeys: String, CodingKey { case id, width, height, fileName = "file_name" }
    public init(id: Int, width: Int, height: Int, fileName: String? = nil) {
        self.id = id; self.width = width; self.height = height; self.fileName = fileName
    }
}

public struct COCOCategory: Codable, Equatable, Sendable {
    public var id: Int
    public var name: String
    public var supercategory: String?
    public init(id: Int, name: String, supercategory: String? = nil) {
        self.id = id; self.name = name; self.supercategory = supercategory
    }
}

/// A ground-truth annotation.
public struct COCOAnnotation: Codable, Equatable, Sendable {
    public var id: Int
    public var imageID: Int
    public var categoryID: Int
    public var bbox: COCOBox?
    public var area: Double
    public var isCrowd: Bool
    public var segmentation: COCOSegmentation?
    enum CodingKeys: String, CodingKey {
        case id, imageID = "image_id", categoryID = "category_id", bbox, area, isCrowd = "iscrowd", segmentation
    }
    public init(id: Int, imageID: Int, categoryID: Int, bbox: COCOBox?, area: Double, isCrowd: Bool = false, segmentation: COCOSegmentation? = nil) {
        self.id = id; self.imageID = imageID; self.categoryID = categoryID; self.bbox = bbox
        self.area = area; self.isCrowd = isCrowd; self.segmentation = segmentation
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int.self, forKey: .id)
        imageID = try c.decode(Int.self, forKey: .imageID)
        categoryID = try c.decode(Int.self, forKey: .categoryID)
        bbox = try c.decodeIfPresent(COCOBox.self, forKey: .bbox)
        area = try c.decode(Double.self, forKey: .area)
        isCrowd = (try? c.decodeIfPresent(Int.self, forKey: .isCrowd)).flatMap { $0 } .map { $0 != 0 } ?? false
        segmentation = try c.decodeIfPresent(COCOSegmentation.self, forKey: .segmentation)
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(imageID, forKey: .imageID); try c.encode(categoryID, forKey: .categoryID)
        try c.encodeIfPresent(bbox, forKey: .bbox); try c.encode(area, forKey: .area)
        try c.encode(isCrowd ? 1 : 0, forKey: .isCrowd); try c.encodeIfPresent(segmentation, forKey: .segmentation)
    }
}

/// A COCO ground-truth file (`instances_*.json`).
public struct COCOGroundTruth: Codable, Equatable, Sendable {
    public var images: [COCOImage]
    public var annotations: [COCOAnnotation]
    public var categories: [COCOCategory]
    public init(images: [COCOImage], annotations: [COCOAnnotation], categories: [COCOCategory]) {
        self.images = images; self.annotations = annotations; self.categories = categories
    }
}

/// One detection in a COCO results file.
public struct COCOResult: Codable, Equatable, Sendable {
    public var imageID: Int
    public var categoryID: Int
    public var score: Double
    public var bbox: COCOBox?
    public var segmentation: COCOSegmentation?
    /// The image's file (`dcn-detect` writes it; evaluation ignores it and reads results without it).
    public var fileName: String?
    enum CodingKeys: String, CodingKey { case imageID = "image_id", categoryID = "category_id", score, bbox, segmentation, fileName = "file_name" }
    public init(imageID: Int, categoryID: Int, score: Double, bbox: COCOBox? = nil, segmentation: COCOSegmentation? = nil, fileName: String? = nil) {
        self.imageID = imageID; self.categoryID = categoryID; self.score = score; self.bbox = bbox; self.segmentation = segmentation
        self.fileName = fileName
    }
}

// MARK: - Loading

/// A file that is valid JSON but not what COCO evaluation expects.
public struct COCOFormatError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

extension JSONReader {
    mutating func readBox() throws -> COCOBox? {
        let v = try readDoubleArray()
        if v.isEmpty { return nil }  // pycocotools treats `"bbox": []` as absent
        guard v.count == 4 else { throw error("a bbox needs 4 numbers [x, y, width, height], found \(v.count)") }
        guard v.allSatisfy(\.isFinite) else { throw error("a bbox needs 4 finite numbers [x, y, width, height], found \(v)") }
        return COCOBox(v)
    }

    mutating func readSegmentation() throws -> COCOSegmentation {
        if peek() == UInt8(ascii: "[") {
            var polygons = [[Double]]()
            try readArray { r in polygons.append(try r.readDoubleArray()) }
            return .polygons(polygons)
        }
        var size: [Int]? = nil
        var compressed: String? = nil
        var counts: [UInt32]? = nil
        try readObject { r, key in
            switch key {
            case "size":
                var s = [Int]()
                try r.readArray { r in s.append(try r.readInt(key: "size")) }
                guard s.count == 2, s[0] >= 0, s[1] >= 0 else { throw r.error("segmentation size must be [height, width]") }
                size = s
            case "counts":
                if r.peek() == UInt8(ascii: "\"") {
                    compressed = try r.readString()
                } else {
                    var c = [UInt32]()
                    try r.readArray { r in
                        let v = try r.readInt(key: "counts")
                        guard v >= 0 && v <= Int(UInt32.max) else { throw r.error("RLE count \(v) out of range") }
                        c.append(UInt32(v))
                    }
                    counts = c
                }
            default: try r.skipValue()
            }
        }
        guard let size else { throw error("an RLE segmentation needs \"size\": [height, width]") }
        if let compressed { return .compressedRLE(height: size[0], width: size[1], counts: compressed) }
        guard let counts else { throw error("an RLE segmentation needs \"counts\"") }
        return .uncompressedRLE(height: size[0], width: size[1], counts: counts)
    }
}

/// The annotation ids of a file read so far, to refuse a repeated one: pycocotools indexes
/// annotations by id, so a repeat silently drops the first annotation and scores the last twice.
struct UniqueAnnotationIDs {
    private var seen = Set<Int>()

    /// Records annotations[`index`]'s `id`; a repeat is an error at `objectStart` (the byte offset
    /// where that annotation begins). `earlier(id)` finds the first annotation with the id.
    mutating func insert(_ id: Int, index: Int, objectStart: Int, _ r: JSONReader, earlier: (Int) -> Int?) throws {
        guard seen.insert(id).inserted else {
            let first = earlier(id).map { "annotations[\($0)]" } ?? "an earlier annotation"
            throw r.error("duplicate annotation id \(id): annotations[\(index)] has the id of \(first); annotation ids must be unique", at: objectStart)
        }
    }
}

extension COCOGroundTruth {
    /// Reads a COCO ground-truth file. Unknown keys are skipped (COCO files carry `info`,
    /// `licenses`, `coco_url`, ...); missing required fields are errors naming the entry.
    public static func load(path: String) throws -> COCOGroundTruth {
        var r = try JSONReader(path: path)
        var images = [COCOImage](), annotations = [COCOAnnotation](), categories = [COCOCategory]()
        var sawImages = false, sawCategories = false
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
                    var id: Int?, imageID: Int?, categoryID: Int?, area: Double?, crowd = false
                    var bbox: COCOBox?, segmentation: COCOSegmentation?
                    try r.readObject { r, k in
                        switch k {
                        case "id": id = try r.readInt(key: "id")
                        case "image_id": imageID = try r.readInt(key: "image_id")
                        case "category_id": categoryID = try r.readInt(key: "category_id")
                        case "area": area = try r.readDouble()
                        case "iscrowd":
                            let c = r.peek()
                            if c == UInt8(ascii: "t") || c == UInt8(ascii: "f") { crowd = try r.readBool() } else { crowd = try r.readDouble() != 0 }
                        case "bbox": bbox = try r.readBox()
                        case "segmentation": segmentation = try r.readSegmentation()
                        default: try r.skipValue()
                        }
                    }
                    let n = annotations.count
                    guard let id else { throw r.error("annotations[\(n)] has no \"id\"") }
                    guard let imageID else { throw r.error("annotation id \(id) has no \"image_id\"") }
                    guard let categoryID else { throw r.error("annotation id \(id) has no \"category_id\"") }
                    guard let area else { throw r.error("annotation id \(id) has no \"area\" (needed for the small/medium/large ranges)") }
                    try ids.insert(id, index: n, objectStart: objectStart, r) { id in annotations.firstIndex { $0.id == id } }
                    annotations.append(COCOAnnotation(id: id, imageID: imageID, categoryID: categoryID, bbox: bbox, area: area, isCrowd: crowd, segmentation: segmentation))
                }
            default: try r.skipValue()
            }
        }
        try r.expectEnd()
        guard sawImages else { throw COCOFormatError(file: path, "no \"images\" list: expected a COCO ground-truth file") }
        guard sawCategories else { throw COCOFormatError(file: path, "no \"categories\" list: expected a COCO ground-truth file") }
        return COCOGroundTruth(images: images, annotations: annotations, categories: categories)
    }
}

extension COCOResult {
    /// Reads a COCO results file: a JSON array of `{image_id, category_id, score, bbox and/or
    /// segmentation}`. An empty array is an error (pycocotools cannot evaluate it either).
    public static func loadArray(path: String) throws -> [COCOResult] {
        var r = try JSONReader(path: path)
        guard r.peek() == UInt8(ascii: "[") else {
            throw COCOFormatError(file: path, "expected a JSON array of detections [{\"image_id\", \"category_id\", \"score\", \"bbox\" or \"segmentation\"}, ...]")
        }
        var results = [COCOResult]()
        try r.readArray { r in
            var imageID: Int?, categoryID: Int?, score: Double?
            var bbox: COCOBox?, segmentation: COCOSegmentation?
            try r.readObject { r, k in
                switch k {
                case "image_id": imageID = try r.readInt(key: "image_id")
                case "category_id": categoryID = try r.readInt(key: "category_id")
                case "score": score = try r.readDouble()
                case "bbox": bbox = try r.readBox()
                case "segmentation": segmentation = try r.readSegmentation()
                default: try r.skipValue()
                }
            }
            let n = results.count
            guard let imageID else { throw r.error("detection \(n) has no \"image_id\"") }
            guard let categoryID else { throw r.error("detection \(n) has no \"category_id\"") }
            guard let score else { throw r.error("detection \(n) has no \"score\"") }
            guard score.isFinite else { throw r.error("detection \(n): score \(score) is not a finite number") }
            results.append(COCOResult(imageID: imageID, categoryID: categoryID, score: score, bbox: bbox, segmentation: segmentation))
        }
        try r.expectEnd()
        if results.isEmpty {
            throw COCOFormatError(file: path, "the results array is empty: there are no detections to evaluate")
        }
        return results
    }
}

extension COCOCategory {
    /// The `categories` list of a JSON object such as a COCO ground-truth file (other keys are
    /// skipped): `dcn-eval voc --categories`.
    public static func loadList(path: String) throws -> [COCOCategory] {
        var r = try JSONReader(path: path)
        var categories: [COCOCategory]?
        try r.readObject { r, key in
            if key == "categories" { categories = try readCOCOCategories(&r) } else { try r.skipValue() }
        }
        try r.expectEnd()
        guard let categories else {
            throw COCOFormatError(file: path, "no \"categories\" list: expected a JSON object with \"categories\": [{\"id\", \"name\"}]")
        }
        return categories
    }
}

/// The `images` array of a COCO file (id required; width, height, file_name optional).
func readCOCOImages(_ r: inout JSONReader) throws -> [COCOImage] {
    var images = [COCOImage]()
    try r.readArray { r in
        var id: Int?, w: Int?, h: Int?, name: String?
        try r.readObject { r, k in
            switch k {
            case "id": id = try r.readInt(key: "id")
            case "width": w = try r.readInt(key: "width")
            case "height": h = try r.readInt(key: "height")
            case "file_name": name = try r.readString()
            default: try r.skipValue()
            }
        }
        guard let id else { throw r.error("images[\(images.count)] has no \"id\"") }
        images.append(COCOImage(id: id, width: w ?? 0, height: h ?? 0, fileName: name))
    }
    return images
}

/// The `categories` array of a COCO file (id required; name defaults to the id).
func readCOCOCategories(_ r: inout JSONReader) throws -> [COCOCategory] {
    var categories = [COCOCategory]()
    try r.readArray { r in
        var id: Int?, name: String?, sup: String?
        try r.readObject { r, k in
            switch k {
            case "id": id = try r.readInt(key: "id")
            case "name": name = try r.readString()
            case "supercategory": sup = r.readNullIfPresent() ? nil : try r.readString()
            default: try r.skipValue()
            }
        }
        guard let id else { throw r.error("categories[\(categories.count)] has no \"id\"") }
        categories.append(COCOCategory(id: id, name: name ?? String(id), supercategory: sup))
    }
    return categories
}
