// dcn-bench data: a deterministic instances_train2017-sized COCO file (118,287 images, 860,001
// objects with polygons, ~1% crowd with RLE, ~450 MB) and the time and peak memory of
// `Dataset.coco` loading it. pycocotools' `COCO()` takes 25.8 s and 2.85 GB on this machine.
import DCNData
import DCNTensor
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Outcome of one annotation-loading benchmark run.
public struct DataLoadBenchResult: Sendable {
    public var annotationPath: String
    public var fileBytes: Int
    public var images: Int
    public var objects: Int
    /// Seconds to write the file (0 when it already existed; not part of the timed load).
    public var generateSeconds: Double
    /// `Dataset.coco(annotations:imageRoot:skipEmpty: false)` wall time.
    public var seconds: Double
    /// Peak resident memory of the load (VmHWM after resetting it), in bytes.
    public var peakRSSBytes: Int
    /// The process peak (VmHWM) before the reset, when the reset is not supported.
    public var peakResetSupported: Bool
    /// pycocotools' `COCO()` on the same kind of file, for comparison.
    public static let pycocotoolsSeconds = 25.8
    public static let pycocotoolsPeakBytes = 2_850_000_000
}

/// Sizes of the generated file (those of instances_train2017.json).
public enum DataBenchShape {
    public static let images = 118_287
    public static let annotations = 860_001
    public static let categories = 80
}

/// Writes the train2017-sized file to `directory` (default: a temporary folder; reused when it
/// is already there with the right size marker), then loads it with `Dataset.coco` and reports
/// the time and peak memory of the load.
public func runDataLoadBenchmark(directory: String?) throws -> DataLoadBenchResult {
    let dir = directory ?? (NSTemporaryDirectory() + "dcn-bench-data")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/instances_train2017_synthetic.json"
    let marker = path + ".complete"
    var generateSeconds = 0.0
    if !FileManager.default.fileExists(atPath: marker) {
        let t0 = Date()
        try writeTrain2017SizedFile(path: path)
        try Data("ok\n".utf8).write(to: URL(fileURLWithPath: marker))
        generateSeconds = Date().timeIntervalSince(t0)
    }
    let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    let resetOK = System.resetPeakResidentBytes()
    let t0 = Date()
    let dataset = try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false)
    let seconds = Date().timeIntervalSince(t0)
    let peak = System.peakResidentBytes()
    return DataLoadBenchResult(annotationPath: path, fileBytes: bytes, images: dataset.images.count, objects: dataset.objectCount,
                               generateSeconds: generateSeconds, seconds: seconds, peakRSSBytes: peak, peakResetSupported: resetOK)
}


/// Streams the file in 4 MB chunks so generating it does not itself use much memory.
/// COCO's key order and number formats (two decimals for polygons and boxes).
func writeTrain2017SizedFile(path: String) throws {
    FileManager.default.createFile(atPath: path, contents: nil)
    guard let handle = FileHandle(forWritingAtPath: path) else { throw DatasetError(file: path, "cannot write the benchmark file") }
    defer { try? handle.close() }
    var out = [UInt8]()
    out.reserveCapacity(1 << 23)
    func flush(force: Bool = false) throws {
        if force || out.count > 1 << 22 {
            try handle.write(contentsOf: out)
            out.removeAll(keepingCapacity: true)
        }
    }
    func put(_ s: String) { out.append(contentsOf: s.utf8) }
    func putInt(_ v: Int) { put(String(v)) }
    func putFixed2(_ v: Double) {
        var x = Int((v * 100).rounded())
        if x < 0 { out.append(UInt8(ascii: "-")); x = -x }
        putInt(x / 100)
        out.append(UInt8(ascii: "."))
        let f = x % 100
        out.append(UInt8(ascii: "0") + UInt8(f / 10))
        out.append(UInt8(ascii: "0") + UInt8(f % 10))
    }
    var rng = SeededGenerator(seed: 2017)
    func int(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
    let n = DataBenchShape.images
    var sizes = [(Int, Int)]()
    sizes.reserveCapacity(n)
    put("{\"info\": {\"description\": \"synthetic instances_train2017-sized file\", \"year\": 2017}, \"licenses\": [{\"url\": \"http://example.com\", \"id\": 1, \"name\": \"x\"}], \"images\": [")
    for i in 0..<n {
        let w = [640, 640, 640, 480, 500, 427][int(6)], h = [480, 427, 640, 640, 375, 640][int(6)]
        sizes.append((w, h))
        if i > 0 { put(", ") }
        let name = String(repeating: "0", count: 12 - String(i + 1).count) + String(i + 1)
        put("{\"license\": \(1 + int(8)), \"file_name\": \"\(name).jpg\", \"coco_url\": \"http://images.cocodataset.org/train2017/\(name).jpg\", \"height\": \(h), \"width\": \(w), \"date_captured\": \"2013-11-14 11:18:45\", \"flickr_url\": \"http://farm4.staticflickr.com/3/\(name)_z.jpg\", \"id\": \(i + 1)}")
        try flush()
    }
    put("], \"annotations\": [")
    for a in 0..<DataBenchShape.annotations {
        // Every image gets at least one object when a <= n; the rest land at random.
        let image = a < n - 1000 ? a : int(n)  // ~1,000 images stay empty, as in train2017
        let (w, h) = sizes[image]
        let bw = 4 + rng.uniform() * Float(w - 8) * 0.6, bh = 4 + rng.uniform() * Float(h - 8) * 0.6
        let bx = rng.uniform() * (Float(w) - bw), by = rng.uniform() * (Float(h) - bh)
        let crowd = int(100) == 0
        if a > 0 { put(", ") }
        put("{\"segmentation\": ")
        if crowd {
            put("{\"counts\": [")
            let runs = 20 + int(200)
            for r in 0..<runs { if r > 0 { put(", ") }; putInt(int(400)) }
            put("], \"size\": [\(h), \(w)]}")
        } else {
            put("[[")
            let points = 8 + int(33)
            let cx = Double(bx + bw / 2), cy = Double(by + bh / 2)
            for p in 0..<points {
                let t = 2 * Double.pi * Double(p) / Double(points)
                let r = 0.7 + 0.3 * Double(rng.uniform())
                if p > 0 { put(", ") }
                putFixed2(cx + r * Double(bw) / 2 * cos(t)); put(", "); putFixed2(cy + r * Double(bh) / 2 * sin(t))
            }
            put("]]")
        }
        put(", \"area\": "); putFixed2(Double(bw * bh) * 0.7)
        put(", \"iscrowd\": \(crowd ? 1 : 0), \"image_id\": \(image + 1), \"bbox\": [")
        putFixed2(Double(bx)); put(", "); putFixed2(Double(by)); put(", "); putFixed2(Double(bw)); put(", "); putFixed2(Double(bh))
        put("], \"category_id\": \(1 + int(DataBenchShape.categories)), \"id\": \(a + 1)}")
        try flush()
    }
    put("], \"categories\": [")
    for c in 0..<DataBenchShape.categories {
        if c > 0 { put(", ") }
        put("{\"supercategory\": \"thing\", \"id\": \(c + 1), \"name\": \"class\(c + 1)\"}")
    }
    put("]}")
    try flush(force: true)
}
