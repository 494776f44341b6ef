// ImageNet VID (ILSVRC2015) annotations: per-frame XML under Annotations/VID (also the DET
// images' Annotations/DET), read with the VOC reader's XML parser (its located errors and depth
// limit), the 30 VID classes in MSRA's canonical order, and the ImageSets frame lists. See
// docs/video.md for the layout and the lists' formats.
import Foundation

/// A VID input problem (a frame list line, an unknown class, a detection line), naming the file
/// and the line or element at fault.
public struct VIDError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

/// The 30 ImageNet VID classes as WordNet ids, in the order of MSRA's Flow-Guided Feature
/// Aggregation (`lib/dataset/imagenet_vid.py`, `classes_map`): class index k (1-based, as in the
/// detection files) is `vidClassWNIDs[k - 1]`.
public let vidClassWNIDs = [
    "n02691156", "n02419796", "n02131653", "n02834778", "n01503061", "n02924116", "n02958343", "n02402425",
    "n02084071", "n02121808", "n02503517", "n02118333", "n02510455", "n02342885", "n02374451", "n02129165",
    "n01674464", "n02484322", "n03790512", "n02324045", "n02509815", "n02411705", "n01726692", "n02355227",
    "n02129604", "n04468005", "n01662784", "n04530566", "n02062744", "n02391049",
]

/// The readable names of `vidClassWNIDs`, in the same order (airplane ... zebra).
public let vidClassNames = [
    "airplane", "antelope", "bear", "bicycle", "bird", "bus", "car", "cattle",
    "dog", "domestic_cat", "elephant", "fox", "giant_panda", "hamster", "horse", "lion",
    "lizard", "monkey", "motorcycle", "rabbit", "red_panda", "sheep", "snake", "squirrel",
    "tiger", "train", "turtle", "watercraft", "whale", "zebra",
]

/// The readable name of a class as written in `<name>`: a VID WordNet id's name (n02691156 ->
/// airplane), any other name itself (the synthetic shapes are named in words).
public func vidDisplayName(_ name: String) -> String {
    vidClassWNIDs.firstIndex(of: name).map { vidClassNames[$0] } ?? name
}

/// One object of a frame.
public struct VIDObject: Equatable, Sendable {
    /// `<trackid>`: the same object across the frames of a video (nil in DET files, which have none).
    public var trackID: Int?
    /// `<name>` as written (a WordNet id in ILSVRC).
    public var name: String
    /// 1...C: the position of `name` in the class list plus one.
    public var label: Int
    /// `<bndbox>` in ILSVRC pixels: 0-based and inclusive (a box of width w has xmax = xmin + w - 1),
    /// the convention of MSRA's loader and evaluation (`+ 1` in widths).
    public var box: VOCBox
    /// `<occluded>` (false when absent).
    public var occluded: Bool
    /// `<generated>`: the box was interpolated by the annotation tool (false when absent).
    public var generated: Bool
    public init(trackID: Int?, name: String, label: Int, box: VOCBox, occluded: Bool = false, generated: Bool = false) {
        self.trackID = trackID; self.name = name; self.label = label; self.box = box; self.occluded = occluded; self.generated = generated
    }
}

/// One frame's annotation file.
public struct VIDFrameAnnotation: Equatable, Sendable {
    /// `<size><width>`, `<height>` (0 when the file has no `<size>`; the evaluation does not need it).
    public var width: Int
    public var height: Int
    public var objects: [VIDObject]
    /// Objects whose class is not in the class list, when they are skipped (DET files name 200 classes):
    /// "object #N (name)".
    public var skipped: [String]
}

/// What an object whose `<name>` is not in the class list does.
public enum VIDUnknownClass: Sendable {
    /// An error naming the file and the value (VID frames, the evaluation: MSRA's script fails on it).
    case error
    /// Skipped and listed in `skipped` (DET images of the 200 DET classes: MSRA's loader keeps the 30).
    case skip
}

/// Parses one ILSVRC annotation file (`<annotation>` with `<size>` and `<object>`s of `<trackid>`,
/// `<name>`, `<bndbox>`, `<occluded>`, `<generated>`). Errors name the file and the element or
/// line: malformed XML, a missing `<name>` or `<bndbox>` coordinate, a value that is not a number,
/// and (with `unknownClasses: .error`) a `<name>` not in `classes`.
public func parseVIDAnnotation(data: Data, file: String, classes: [String] = vidClassWNIDs,
                               unknownClasses: VIDUnknownClass = .error) throws -> VIDFrameAnnotation {
    let root = try parseAnnotationTree(data: data, file: file, expected: "an ILSVRC annotation XML file")
    var labelOf = [String: Int]()
    for (i, c) in classes.enumerated() where labelOf[c] == nil { labelOf[c] = i + 1 }
    func integer(_ node: XMLElementNode?, _ path: String, default value: Int) throws -> Int {
        guard let node else { return value }
        let text = node.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let v = Int(text) else { throw VOCError(file: file, "\(path) is '\(text)', expected a whole number") }
        return v
    }
    var width = 0, height = 0
    if let size = root.child("size") {
        width = try integer(size.child("width"), "<size><width>", default: 0)
        height = try integer(size.child("height"), "<size><height>", default: 0)
    }
    var objects = [VIDObject](), skipped = [String]()
    var index = 0
    for obj in root.children where obj.name == "object" {
        index += 1
        let path = "<annotation><object> #\(index)"
        guard let nameNode = obj.child("name") else { throw VOCError(file: file, "\(path) has no <name> element") }
        let name = nameNode.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty else { throw VOCError(file: file, "\(path) <name> is empty") }
        guard let label = labelOf[name] else {
            if unknownClasses == .skip { skipped.append("object #\(index) (\(name))"); continue }
            let known = classes == vidClassWNIDs ? "one of the 30 VID WordNet ids (n02691156 airplane ... n02391049 zebra)"
                : "one of the classes \(classes.prefix(8).joined(separator: ", "))\(classes.count > 8 ? ", ..." : "")"
            throw VIDError(file: file, "\(path) <name> is '\(name)', not a class of the evaluation; expected \(known)")
        }
        let box = try boundingBox(of: obj, path: "\(path) (\(name))", file: file)
        let track: Int? = obj.child("trackid") == nil ? nil : try integer(obj.child("trackid"), "\(path) (\(name)) <trackid>", default: 0)
        let occluded = try integer(obj.child("occluded"), "\(path) (\(name)) <occluded>", default: 0) != 0
        let generated = try integer(obj.child("generated"), "\(path) (\(name)) <generated>", default: 0) != 0
        objects.append(VIDObject(trackID: track, name: name, label: label, box: box, occluded: occluded, generated: generated))
    }
    return VIDFrameAnnotation(width: width, height: height, objects: objects, skipped: skipped)
}

// MARK: - Frame lists

/// One line of an `ImageSets/*.txt` list, as MSRA's `imagenet_vid.py` reads it.
public struct VIDListEntry: Equatable, Sendable {
    /// The frame's path below `Annotations/VID` (or `Annotations/DET`) and `Data/VID` (`Data/DET`),
    /// without `.xml` / `.JPEG`, e.g. `val/ILSVRC2015_val_00000000/000000`.
    public var path: String
    /// The frame id: the number the detection files give the frame (`VID_val_frames.txt`'s second
    /// column, 1-based and global over the list in ILSVRC's files).
    public var frameID: Int
    /// For a video line (4 columns), the frame's index in its video and the video's frame count.
    public var video: (folder: String, frameIndex: Int, length: Int)?
    /// 1-based line in the list file.
    public var line: Int

    public init(path: String, frameID: Int, video: (folder: String, frameIndex: Int, length: Int)? = nil, line: Int) {
        self.path = path; self.frameID = frameID; self.video = video; self.line = line
    }
    public static func == (a: VIDListEntry, b: VIDListEntry) -> Bool {
        a.path == b.path && a.frameID == b.frameID && a.line == b.line
            && a.video?.folder == b.video?.folder && a.video?.frameIndex == b.video?.frameIndex && a.video?.length == b.video?.length
    }
}

/// How the 4-column lines of a list are read.
public enum VIDVideoLines: Sendable {
    /// One frame per line: `<video folder> <frame id> <frame index> <video length>` names the frame
    /// `<video folder>/<frame index, 6 digits>` (MSRA's training lists, e.g. `VID_train_15frames.txt`).
    case oneFrame
    /// The whole video from the line's frame on: frames `index + j` with ids `frame id + j` for j in
    /// 0..<length (MSRA's `do_python_eval_gen`, which writes `VID_val_videos_eval.txt` this way from
    /// `VID_val_videos.txt`).
    case wholeVideo
}

/// The most frames a video line may expand to (ILSVRC's longest VID video has about 3,000 frames).
public let vidMaxVideoLength = 1_000_000

/// Reads an ImageSets list. Lines are `<path> <frame id>` (`VID_val_frames.txt`,
/// `DET_train_30classes.txt`) or `<video folder> <frame id> <frame index> <video length>`
/// (`VID_train_15frames.txt`, `VID_val_videos.txt`; see `VIDVideoLines`); blank lines are skipped,
/// fields are separated by spaces or tabs, LF or CRLF. Errors name the file and line: another
/// number of fields, a number that is not a whole number (frame ids and indices >= 0, lengths >= 1),
/// a path that can lead outside the dataset folder (absolute or with `..`) unless `allowOutsideRoot`.
public func readVIDList(path: String, videoLines: VIDVideoLines = .oneFrame, allowOutsideRoot: Bool = false) throws -> [VIDListEntry] {
    let expected = "'<frame path> <frame id>' or '<video folder> <frame id> <frame index> <video length>'"
    let data = try readFileContents(path, expected: "an ImageSets list of \(expected) lines")
    var entries = [VIDListEntry]()
    for (n, line) in String(decoding: data, as: UTF8.self).split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
        let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if f.isEmpty { continue }
        let lineNumber = n + 1
        guard f.count == 2 || f.count == 4 else {
            throw VIDError(file: path, "line \(lineNumber): \(f.count) fields, expected \(expected); found '\(line)'")
        }
        func number(_ k: Int, _ what: String, min: Int) throws -> Int {
            guard let v = Int(f[k]), v >= min else {
                throw VIDError(file: path, "line \(lineNumber): \(what) is '\(f[k])', expected a whole number >= \(min)")
            }
            return v
        }
        if !allowOutsideRoot, let problem = outsideFolderProblem(f[0]) {
            throw VIDError(file: path, "line \(lineNumber): path '\(f[0])' \(problem), so its files can lie outside the dataset folder; expected a path such as val/ILSVRC2015_val_00000000/000000 (\(outsideFolderRemedy))")
        }
        let frameID = try number(1, "the frame id", min: 0)
        if f.count == 2 {
            entries.append(VIDListEntry(path: f[0], frameID: frameID, line: lineNumber))
            continue
        }
        let index = try number(2, "the frame index", min: 0), length = try number(3, "the video length", min: 1)
        guard length <= vidMaxVideoLength else {
            throw VIDError(file: path, "line \(lineNumber): the video length \(length) is more than \(vidMaxVideoLength) frames")
        }
        switch videoLines {
        case .oneFrame:
            entries.append(VIDListEntry(path: f[0] + "/" + vidFrameName(index), frameID: frameID,
                                        video: (f[0], index, length), line: lineNumber))
        case .wholeVideo:
            for j in 0..<length {
                entries.append(VIDListEntry(path: f[0] + "/" + vidFrameName(index + j), frameID: frameID + j,
                                            video: (f[0], index + j, length), line: lineNumber))
            }
        }
    }
    return entries
}

/// The file name of frame `index` of a video: six digits (`000010`).
public func vidFrameName(_ index: Int) -> String { String(format: "%06d", index) }

/// The frames MSRA's `VID_train_15frames.txt` takes from a video of `length` frames: `count`
/// equal segments and the frame at the middle of each, `floor((2k + 1) * length / (2 count))`
/// for k in 0..<count (10, 30, ..., 290 for 300 frames), without repeats when the video is shorter.
public func vidSegmentMiddleFrames(length: Int, count: Int = 15) -> [Int] {
    guard length > 0, count > 0 else { return [] }
    var out = [Int]()
    for k in 0..<count {
        let f = (2 * k + 1) * length / (2 * count)
        if out.last != f { out.append(f) }
    }
    return out
}
