// ImageNet VID training data as MSRA's FGFA baseline reads it (lib/dataset/imagenet_vid.py): an
// ILSVRC2015 root with Data/{DET,VID}, Annotations/{DET,VID} and list files, each list one
// "image set" whose name says which part it reads (`DET_train_30classes` -> DET, else VID, as
// `image_set.split('_')[0]`). FGFA's training set is `DET_train_30classes+VID_train_15frames`:
// the two lists concatenated (every listed DET image and every listed VID frame once per epoch,
// shuffled); VID_train_15frames.txt names 15 frames per video at fixed positions, the middles of
// 15 equal segments (`vidSegmentMiddleFrames`), so each epoch sees the same frames. docs/video.md.
import DCNAnnotations
import DCNTensor
import Foundation

/// Which half of ILSVRC a list reads.
public enum ILSVRCPart: String, Sendable, CaseIterable {
    /// ImageNet DET images (`Data/DET/<path>.JPEG`, `Annotations/DET/<path>.xml`); objects of the
    /// 170 classes that are not VID classes are dropped.
    case det = "DET"
    /// ImageNet VID frames (`Data/VID/<path>.JPEG`, `Annotations/VID/<path>.xml`).
    case vid = "VID"

    /// FGFA's rule: the list file's name up to the first '_' (`DET_train_30classes.txt` -> DET).
    public static func of(list: String) -> ILSVRCPart {
        URL(fileURLWithPath: list).lastPathComponent.split(separator: "_").first == "DET" ? .det : .vid
    }
}

extension Dataset {
    /// Reads ILSVRC training or evaluation lists below `root` (a relative list path is taken below
    /// `root`), concatenated in order (FGFA's `DET_train_30classes+VID_train_15frames`). Lines of
    /// four columns name one frame (`videoLines: .oneFrame`, the training lists) or the whole video
    /// from that frame (`.wholeVideo`, an evaluated `VID_val_videos.txt`, as `loadVIDGroundTruth`
    /// reads it, so the images follow its frames in order). Labels follow `classes` (the 30
    /// VID WordNet ids by default); boxes are ILSVRC's 0-based inclusive pixels clamped to the image
    /// as FGFA clamps them (`max(xmin, 0)`, `min(xmax, width - 1)`) and made exclusive (x2 = xmax + 1).
    ///
    /// Errors (thrown): an unreadable list or annotation, a malformed line (file and line) or XML
    /// (file and line/element), in VID frames a class not in `classes` (file and value), no images.
    /// Skipped with a warning: DET objects of other classes (counted per image), objects whose
    /// clamped box is empty.
    public static func imagenetVID(root: String, lists: [String], classes: [String] = vidClassWNIDs,
                                   videoLines: VIDVideoLines = .oneFrame, allowOutsideRoot: Bool = false) throws -> Dataset {
        var entries = [(part: ILSVRCPart, entry: VIDListEntry)]()
        for list in lists {
            let path = ilsvrcListPath(root: root, list: list)
            let part = ILSVRCPart.of(list: path)
            entries += try readVIDList(path: path, videoLines: videoLines, allowOutsideRoot: allowOutsideRoot).map { (part, $0) }
        }
        guard !entries.isEmpty else { throw DatasetError(file: lists.joined(separator: ", "), "the lists name no images") }
        let work = entries
        let parsed = parallelResults(entries.count, grain: 16) { i in
            let (part, e) = work[i]
            let path = "\(root)/Annotations/\(part.rawValue)/\(e.path).xml"
            let data = try readFileContents(path, expected: "the annotation XML of \(part.rawValue) image \(e.path)")
            return try parseVIDAnnotation(data: data, file: path, classes: classes, unknownClasses: part == .det ? .skip : .error)
        }
        var images = [DatasetImage](), warnings = [String]()
        images.reserveCapacity(entries.count)
        for (i, (part, e)) in entries.enumerated() {
            let a = try parsed[i].get()
            let name = "\(part.rawValue)/\(e.path)"
            if !a.skipped.isEmpty { warnings.append("image \(name): \(a.skipped.count) object(s) of classes outside the list skipped") }
            var objects = [DatasetObject]()
            for (n, o) in a.objects.enumerated() {
                let x1 = max(o.box.xmin, 0), y1 = max(o.box.ymin, 0)
                let x2 = a.width > 0 ? min(o.box.xmax, Double(a.width - 1)) : o.box.xmax
                let y2 = a.height > 0 ? min(o.box.ymax, Double(a.height - 1)) : o.box.ymax
                guard x2 >= x1, y2 >= y1 else {
                    warnings.append("image \(name): object #\(n + 1) (\(o.name)) has an empty box [\(o.box.xmin), \(o.box.ymin), \(o.box.xmax), \(o.box.ymax)] in the \(a.width)x\(a.height) image; skipped")
                    continue
                }
                objects.append(DatasetObject(box: Box(Float(x1), Float(y1), Float(x2 + 1), Float(y2 + 1)), label: o.label))
            }
            images.append(DatasetImage(id: i, name: name, path: "\(root)/Data/\(part.rawValue)/\(e.path).JPEG",
                                       width: a.width, height: a.height, objects: objects))
        }
        return Dataset(images: images, classNames: classes.map(vidDisplayName), categoryIDs: classes.indices.map { $0 + 1 }, warnings: warnings)
    }
}

/// The path of an ILSVRC list: `list` itself when absolute, else below `root`.
public func ilsvrcListPath(root: String, list: String) -> String {
    list.hasPrefix("/") ? list : URL(fileURLWithPath: root).appendingPathComponent(list).path
}
