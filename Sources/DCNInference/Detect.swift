// dcn-detect's work: a trained detector on any images (files, folders, list files). The images
// are checked first (each decoded once; a bad one is reported and left out), the good ones run
// through the evaluation's inference (`runInference`: the same batches, views, merging and
// processes as `dcn-eval model`), and the output folder gets the detections as COCO results with
// file names, an index of the images, a picture per image and optionally a PNG per mask.
import DCNAnnotations
import DCNConfig
import DCNData
import DCNDistributed
import DCNModels
import DCNPictures
import DCNRun
import DCNTensor
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The files a `dcn-detect` run writes in its output folder (and, with --force, removes first).
public enum DetectFiles {
    /// COCO results: `[{image_id, category_id, bbox, score, segmentation?, file_name}]`.
    public static let detections = "detections.json"
    /// `{images: [{id, file_name, width, height, picture}], categories: [{id, name}], failed: [{id, file_name, error}]}`.
    public static let images = "images.json"
    /// One drawn picture per image: `pictures/<stem>.png`.
    public static let pictures = "pictures"
    /// With --mask-pngs: `masks/<stem>_<k>.png`, the k-th (from 1) of the image's detections in
    /// detections.json that scores at least --score.
    public static let masks = "masks"

    public static let all = [detections, images, pictures, masks]
}

/// The extensions of the files taken from a folder (any case). A file named on the command line
/// or in a list file is read whatever its name: the decoder goes by the magic bytes.
public let detectImageExtensions: Set<String> = ["jpg", "jpeg", "png"]

/// One image to run the detector on.
public struct DetectInput: Sendable, Equatable {
    /// Where the file is read.
    public var path: String
    /// Its `file_name` in the outputs: the path as given on the command line or written in the list
    /// file; for a file found in a folder, the folder as given, "/", and its path inside the folder.
    public var fileName: String
    /// Its picture's path inside `pictures/` without ".png": its path inside the folder it was found
    /// in, else its file name, without the extension; `_2`, `_3`, ... added when taken.
    public var pictureStem: String

    public init(path: String, fileName: String, pictureStem: String) {
        self.path = path; self.fileName = fileName; self.pictureStem = pictureStem
    }
}

/// A problem with the command's inputs or output folder (nothing was written).
public struct DetectError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The images of `arguments` (files, or folders searched recursively) then of the list files
/// `lists` (one path per line; empty lines and lines starting with # skipped; relative paths are
/// relative to the list file's folder; a folder in a list is searched as on the command line).
/// A folder contributes its files with an image extension (`detectImageExtensions`), sorted by
/// their path inside it, skipping hidden files and folders and the folder `skipping` (the output
/// folder). A missing path on the command line is an error; one in a list file stays an input
/// (reported as unreadable later, as a corrupt file is).
public func collectDetectInputs(arguments: [String], lists: [String] = [], skipping: String? = nil) throws -> [DetectInput] {
    let skipped = skipping.flatMap(canonicalPath)
    var found: [(path: String, fileName: String, stem: String)] = []
    func add(_ path: String, fileName: String, mustExist: String?) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            if let mustExist { throw DetectError("\(path): no such file or folder; expected \(mustExist)") }
            found.append((path, fileName, stemWithoutExtension((fileName as NSString).lastPathComponent)))
            return
        }
        if !isFolder.boolValue {
            found.append((path, fileName, stemWithoutExtension((path as NSString).lastPathComponent)))
            return
        }
        if let skipped, canonicalPath(path) == skipped {
            throw DetectError("\(path) is the output folder (--out); give the images in another folder, or another --out")
        }
        func trimmed(_ s: String) -> String {
            var s = s
            while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
            return s == "/" ? "" : s
        }
        for relative in try imagesInFolder(path, skipping: skipped) {
            found.append((trimmed(path) + "/" + relative, trimmed(fileName) + "/" + relative, stemWithoutExtension(relative)))
        }
    }
    for argument in arguments {
        try add(argument, fileName: argument, mustExist: "an image file or a folder of images")
    }
    for list in lists {
        let text: String
        do { text = String(decoding: try readFileContents(list, expected: "a list file (one image path per line)"), as: UTF8.self) } catch let error as FileError {
            throw DetectError(error.description)
        }
        let folder = (list as NSString).deletingLastPathComponent
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let entry = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if entry.isEmpty || entry.hasPrefix("#") { continue }
            let path = entry.hasPrefix("/") || folder.isEmpty ? entry : folder + "/" + entry
            try add(path, fileName: entry, mustExist: nil)
        }
    }
    var taken = Set<String>()
    return found.map { item in
        var stem = item.stem.isEmpty ? "image" : item.stem
        if taken.contains(stem) {
            var k = 2
            while taken.contains("\(stem)_\(k)") { k += 1 }
            stem = "\(stem)_\(k)"
        }
        taken.insert(stem)
        return DetectInput(path: item.path, fileName: item.fileName, pictureStem: stem)
    }
}

/// `name` without its extension, with no component that leads out of a folder ("", ".", "..").
func stemWithoutExtension(_ name: String) -> String {
    let parts = name.split(separator: "/").filter { $0 != "." && $0 != ".." }.map(String.init)
    guard let last = parts.last else { return "" }
    let base = (last as NSString).deletingPathExtension
    return (parts.dropLast() + [base.isEmpty ? last : base]).joined(separator: "/")
}

/// The image files under `folder` (recursively, following symlinks once each), as paths inside it
/// sorted byte by byte; hidden entries and the folder `skipping` (canonical) are left out.
func imagesInFolder(_ folder: String, skipping: String?) throws -> [String] {
    var out: [String] = []
    var visited = Set<String>()
    func walk(_ relative: String) throws {
        let path = relative.isEmpty ? folder : folder + "/" + relative
        guard let canonical = canonicalPath(path), !visited.contains(canonical), canonical != skipping else { return }
        visited.insert(canonical)
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
            throw DetectError("cannot list the folder \(path): \(describeFileError(error))")
        }
        for name in names where !name.hasPrefix(".") {
            let child = relative.isEmpty ? name : relative + "/" + name
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder + "/" + child, isDirectory: &isFolder) else { continue }
            if isFolder.boolValue {
                try walk(child)
            } else if detectImageExtensions.contains((name as NSString).pathExtension.lowercased()) {
                out.append(child)
            }
        }
    }
    try walk("")
    return out.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
}

/// What checking the inputs found: each image's size (EXIF orientation applied) or why it cannot
/// be read.
public struct CheckedImages: Sendable {
    /// nil for an image that cannot be read.
    public var sizes: [ImageSize?]
    /// The reason for each unreadable image, by input index (on rank 0: every one; on the other
    /// processes only those they checked).
    public var errors: [Int: String]

    public var good: [Int] { sizes.indices.filter { sizes[$0] != nil } }
}

/// Decodes every input once (on `Threads.count` threads) to find the unreadable ones: corrupt,
/// truncated, not an image, missing. With several processes each checks every `size`-th image and
/// they share the sizes; rank 0 gets every reason.
public func checkDetectInputs(_ inputs: [DetectInput], group: ProcessGroup = .world) throws -> CheckedImages {
    let mine = Array(stride(from: group.rank, to: inputs.count, by: group.size))
    let results = parallelResults(mine.count) { k in
        let image = try decodeImage(path: inputs[mine[k]].path)
        return ImageSize(height: image.height, width: image.width)
    }
    var sizes = [ImageSize?](repeating: nil, count: inputs.count)
    var errors: [Int: String] = [:]
    for (k, result) in zip(mine, results) {
        switch result {
        case .success(let size): sizes[k] = size
        case .failure(let error): errors[k] = imageErrorReason(error, path: inputs[k].path)
        }
    }
    guard group.isDistributed else { return CheckedImages(sizes: sizes, errors: errors) }
    // Sizes: each image's (height, width) from the process that checked it, zeros from the others.
    var flat = [Double](repeating: 0, count: 2 * inputs.count)
    for (i, s) in sizes.enumerated() { if let s { flat[2 * i] = Double(s.height); flat[2 * i + 1] = Double(s.width) } }
    let summed = try group.sum(flat)
    for i in inputs.indices {
        sizes[i] = summed[2 * i] > 0 ? ImageSize(height: Int(summed[2 * i]), width: Int(summed[2 * i + 1])) : nil
    }
    let lines = errors.sorted { $0.key < $1.key }.map { "\($0.key)\t\($0.value.replacingOccurrences(of: "\n", with: " "))" }
    if let parts = try group.gather(Array(lines.joined(separator: "\n").utf8)) {
        for part in parts {
            for line in String(decoding: part, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: "\t", maxSplits: 1)
                if fields.count == 2, let index = Int(fields[0]) { errors[index] = String(fields[1]) }
            }
        }
    }
    for i in inputs.indices where sizes[i] == nil && errors[i] == nil { errors[i] = "cannot be read (checked by another process)" }
    return CheckedImages(sizes: sizes, errors: errors)
}

/// The reason an image cannot be read, without the path (the report names it).
func imageErrorReason(_ error: Error, path: String) -> String {
    if let error = error as? ImageError { return error.message }
    let text = "\(error)"
    return text.hasPrefix(path + ": ") ? String(text.dropFirst(path.count + 2)) : text
}

/// The image ids of `inputs` in the COCO file `annotations` (`images`): an input is the image whose
/// `file_name` is its path or ends its path after a "/" (the longest such name wins). Every input
/// must be found, no two the same image.
public func annotationImageIDs(_ inputs: [DetectInput], images: [COCOImage], annotations: String) throws -> [Int] {
    var byName: [String: [Int]] = [:]
    for image in images {
        guard var name = image.fileName, !name.isEmpty else { continue }
        while name.hasPrefix("./") { name.removeFirst(2) }
        byName[name, default: []].append(image.id)
    }
    var ids: [Int] = [], owner: [Int: String] = [:]
    for input in inputs {
        // The path's suffixes after each "/", longest first.
        let parts = input.path.split(separator: "/", omittingEmptySubsequences: false)
        let candidates = [input.path] + (1..<max(1, parts.count)).map { parts[$0...].joined(separator: "/") }
        guard let match = candidates.first(where: { byName[$0] != nil }), let found = byName[match] else {
            throw DetectError("--annotations \(annotations): no image has the file_name of \(input.path) (its path or a part of it after a '/'); "
                              + "give the annotation file of these images, or leave --annotations out (image ids are then 1, 2, ... in input order)")
        }
        guard found.count == 1 else {
            throw DetectError("--annotations \(annotations): the images \(found.map(String.init).joined(separator: ", ")) all have the file_name \(match) of \(input.path)")
        }
        if let other = owner[found[0]] {
            throw DetectError("--annotations \(annotations): \(other) and \(input.path) are both the image \(found[0]) (file_name \(match)); give each image once")
        }
        owner[found[0]] = input.path
        ids.append(found[0])
    }
    return ids
}

/// The category id of each class (label 1...K is `classNames[label - 1]`) in a COCO file's
/// `categories`, by name.
public func annotationCategoryIDs(classNames: [String], categories: [COCOCategory], annotations: String) throws -> [Int] {
    try classNames.map { name in
        let ids = categories.filter { $0.name == name }.map(\.id)
        guard ids.count == 1 else {
            throw DetectError("--annotations \(annotations): " + (ids.isEmpty ? "no category is named '\(name)'" : "the categories \(ids) are all named '\(name)'")
                              + "; the model's classes are \(classNames.joined(separator: ", "))")
        }
        return ids[0]
    }
}

/// What a detection run needs besides the model.
public struct DetectRequest {
    public var inputs: [DetectInput]
    public var checked: CheckedImages
    /// The image id of each input.
    public var imageIDs: [Int]
    /// The model's classes (label k is `classNames[k - 1]`) and the category id written for each.
    public var classNames: [String]
    public var categoryIDs: [Int]
    /// The output folder (checked and prepared: `prepareDetectFolder`).
    public var folder: String
    /// Pictures and mask PNGs show the detections scoring at least this.
    public var scoreThreshold: Float
    public var maskPNGs: Bool

    public init(inputs: [DetectInput], checked: CheckedImages, imageIDs: [Int], classNames: [String], categoryIDs: [Int], folder: String,
                scoreThreshold: Float, maskPNGs: Bool) {
        self.inputs = inputs; self.checked = checked; self.imageIDs = imageIDs; self.classNames = classNames; self.categoryIDs = categoryIDs
        self.folder = folder; self.scoreThreshold = scoreThreshold; self.maskPNGs = maskPNGs
    }
}

/// What a run wrote (rank 0).
public struct DetectSummary {
    public var images: Int
    public var failed: Int
    public var detections: Int
    public var pictures: Int
    public var masks: Int
}

/// Why `folder` cannot take a dcn-detect run's files, or nil: it holds a training run, or an
/// output would replace an input (`read`; inputs inside its pictures/ or masks/ folders count).
public func detectFolderProblem(_ folder: String, inputs: [DetectInput], read: ReadFiles) -> String? {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    if names.contains(where: RunFiles.isCheckpoint) {
        return "holds a training run (checkpoints); give another folder"
    }
    for name in [DetectFiles.detections, DetectFiles.images] {
        if let problem = read.overwriteProblem(folder + "/" + name) { return "its \(name) \(problem)" }
    }
    for sub in [DetectFiles.pictures, DetectFiles.masks] {
        guard let inside = canonicalPath(folder + "/" + sub) else { continue }
        if let input = inputs.first(where: { canonicalPath($0.path)?.hasPrefix(inside + "/") ?? false }) {
            return "its \(sub) folder holds the input \(input.path), and a run replaces that folder; give another folder"
        }
    }
    return nil
}

/// Makes `folder` ready for a run, which holds its lock (`OutputFolderLock`) meanwhile: refused
/// when it holds another run's files (`DetectFiles`) unless `force`, which removes them (nothing
/// else is touched). Returns the lock.
public func prepareDetectFolder(_ folder: String, force: Bool) throws -> OutputFolderLock {
    if let problem = folderCreateProblem(folder) { throw DetectError("--out \(folder): \(problem); expected a folder (created if missing)") }
    do { try createFolder(folder) } catch { throw DetectError("--out \(folder): cannot create it: \(error)") }
    let lock: OutputFolderLock
    do { lock = try OutputFolderLock(folder: folder, tool: "dcn-detect", key: "--out") } catch let error as TrainingError {
        throw DetectError(error.message)
    }
    let present = DetectFiles.all.filter { FileManager.default.fileExists(atPath: folder + "/" + $0) }
    if !present.isEmpty {
        guard force else {
            throw DetectError("--out \(folder) holds another run's files (\(present.joined(separator: ", "))): pass --force to replace them "
                              + "(nothing else in the folder is touched), or give another --out")
        }
        do { _ = try removeFiles(in: folder, where: { DetectFiles.all.contains($0) }) } catch let error as TrainingError {
            throw DetectError(error.message)
        }
    }
    return lock
}

/// Runs `model` on the good images of `request` and, on rank 0, writes the output folder: the
/// pictures (and mask PNGs), images.json, and last detections.json. Batches, views and processes as
/// `dcn-eval model` (`config`'s test section, `data.images_per_batch`). Returns what was written on
/// rank 0, nil on the other processes.
public func runDetection(_ model: GeneralizedRCNN, config: ExperimentConfig, request: DetectRequest, stop: StopRequest? = nil,
                         group: ProcessGroup = .world, progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> DetectSummary? {
    let good = request.checked.good
    let dataset = Dataset(images: good.map { i in
        let size = request.checked.sizes[i]!
        return DatasetImage(id: request.imageIDs[i], name: request.inputs[i].fileName, path: request.inputs[i].path,
                            width: size.width, height: size.height, objects: [])
    }, classNames: request.classNames, categoryIDs: request.categoryIDs)
    let detections: [[ImageDetection]]
    if dataset.images.isEmpty {
        detections = []
    } else {
        guard let all = try runInference(model, dataset: dataset, views: config.testViews, maxSize: config.testMaxSize,
                                         merged: config.isMultiViewTest, imagesPerBatch: max(1, config.data.imagesPerBatch),
                                         stop: stop, group: group, progress: progress) else { return nil }
        detections = all
    }
    guard group.isRoot else { return nil }

    // Pictures and masks, one image at a time (each decoded again).
    let folder = request.folder
    var pictures = 0, masks = 0
    var imageEntries: [[String: Any]] = []
    for (k, i) in good.enumerated() {
        let input = request.inputs[i], size = request.checked.sizes[i]!
        let picture = DetectFiles.pictures + "/" + input.pictureStem + ".png"
        let pixels = try decodeImage(path: input.path)
        let drawn = try detectionsPicture(image: pixels, detections: detections[k], classNames: request.classNames,
                                          scoreThreshold: request.scoreThreshold)
        try writeInFolder(try encodePNG(drawn), folder: folder, relative: picture)
        pictures += 1
        var entry: [String: Any] = ["id": request.imageIDs[i], "file_name": input.fileName, "width": size.width, "height": size.height,
                                    "picture": picture]
        if request.maskPNGs {
            var written: [String] = []
            for (n, d) in detections[k].enumerated() where d.detection.score >= request.scoreThreshold {
                guard let rle = d.mask else { continue }
                let name = DetectFiles.masks + "/" + input.pictureStem + "_\(n + 1).png"
                try writeInFolder(try maskPNG(rle), folder: folder, relative: name)
                written.append(name)
            }
            entry["masks"] = written
            masks += written.count
        }
        imageEntries.append(entry)
    }
    let failed: [[String: Any]] = request.inputs.indices.filter { request.checked.sizes[$0] == nil }.map { i in
        ["id": request.imageIDs[i], "file_name": request.inputs[i].fileName, "error": request.checked.errors[i] ?? "cannot be read"]
    }
    let categories: [[String: Any]] = zip(request.categoryIDs, request.classNames).map { ["id": $0, "name": $1] }
    let index = try JSONSerialization.data(withJSONObject: ["images": imageEntries, "categories": categories, "failed": failed],
                                           options: [.sortedKeys, .withoutEscapingSlashes])
    try AtomicFile.write(index, to: folder + "/" + DetectFiles.images)
    // The detections last: their file's presence means the run finished.
    let results = cocoResults(detections, dataset: dataset, fileNames: true)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    try AtomicFile.write(try encoder.encode(results), to: folder + "/" + DetectFiles.detections)
    return DetectSummary(images: good.count, failed: failed.count, detections: results.count, pictures: pictures, masks: masks)
}

/// Writes `data` to `folder/relative` atomically, creating the folders between.
func writeInFolder(_ data: Data, folder: String, relative: String) throws {
    let path = folder + "/" + relative
    try createFolder((path as NSString).deletingLastPathComponent)
    try AtomicFile.write(data, to: path)
}

/// A mask as an 8-bit grayscale PNG of its image's size: 255 inside, 0 outside.
func maskPNG(_ rle: RLE) throws -> Data {
    let columnMajor = try rle.decode()
    var rows = [UInt8](repeating: 0, count: rle.width * rle.height)
    for x in 0..<rle.width {
        for y in 0..<rle.height where columnMajor[x * rle.height + y] != 0 { rows[y * rle.width + x] = 255 }
    }
    return try encodePNGSamples(rows, width: rle.width, height: rle.height)
}

/// The live progress line of `dcn-detect` on standard error when it is a terminal (nothing
/// otherwise): images done, seconds per image, time left.
public final class DetectProgress {
    public let isTerminal: Bool = progressReachesTerminal(STDERR_FILENO)
    private let start = Date()

    public init() {}

    public func report(done: Int, total: Int) {
        guard isTerminal, total > 0 else { return }
        let elapsed = Date().timeIntervalSince(start)
        let perImage = done > 0 ? elapsed / Double(done) : 0
        let left = Double(total - done) * perImage
        let width = 30, filled = width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let eta = done > 0 ? String(format: "  %.2f s/image  %dm%02ds left", perImage, Int(left) / 60, Int(left) % 60) : ""
        let line = "\r\u{1B}[2K[\(bar)] \(done)/\(total) images\(eta)" + (done == total ? "\n" : "")
        FileHandle.standardError.write(Data(line.utf8))
    }
}
