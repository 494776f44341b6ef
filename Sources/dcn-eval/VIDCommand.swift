// dcn-eval vid: ImageNet VID AP, number for number with MSRA's imagenet_vid_eval.py (and
// imagenet_vid_eval_motion.py with --motion). See docs/video.md.
import ArgumentParser
import DCNAnnotations
import DCNEval
import Foundation

struct VIDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vid",
        abstract: "ImageNet VID AP (MSRA's imagenet_vid_eval.py semantics) per class and the mean; the slow/medium/fast split with --motion.",
        discussion: """
            Detections are lines '<frame id> <class index> <score> <x1> <y1> <x2> <y2>' (ILSVRC pixels,
            0-based and inclusive), class indices 1-30 in MSRA's order (1 airplane n02691156 ... 30 zebra
            n02391049), or in the order of --classes. A ground-truth box of w x h pixels matches at
            IoU >= min(0.5, wh / ((w+10)(h+10))).
            """)

    @Option(help: "ILSVRC's Annotations/VID folder: frame annotations <path>.xml.")
    var annotations: String

    @Option(help: "The evaluated frames: lines '<frame path below --annotations, without .xml> <frame id>' (VID_val_frames.txt), or video lines '<video folder> <first frame id> <first frame index> <frames>' (VID_val_videos.txt).")
    var imageset: String

    @Option(help: "The detections: lines '<frame id> <class index> <score> <x1> <y1> <x2> <y2>'.")
    var detections: String

    @Option(help: "Motion IoUs for the slow / medium / fast split: one line per frame of --imageset, in its order, '<frame path> <IoU of object 1> ...' (scripts/vid_motion_mat_to_text.py converts MSRA's imagenet_vid_groundtruth_motion_iou.mat).")
    var motion: String?

    @Option(help: "The class names of <name> in label order, comma separated (default: the 30 VID WordNet ids; the synthetic videos' are ring,cross,star,arrow,L,T).")
    var classes: String?

    @Option(help: "Write {\"AP\", \"per_class\", \"motion\"} to this JSON file.")
    var json: String?

    @Flag(help: "Accept image-set paths that can lead outside the annotations folder (absolute, or with a '..' component).")
    var allowOutsideRoot = false

    var classList: [String] { classes.map(parseClassList) ?? vidClassWNIDs }

    func validate() throws {
        if let problem = folderProblem(annotations) {
            throw ValidationError("--annotations \(annotations): \(problem); expected ILSVRC's Annotations/VID folder")
        }
        try requireReadableFile(imageset, "--imageset", "a frame list such as ImageSets/VID/VID_val_frames.txt")
        try requireReadableFile(detections, "--detections", "a text file of '<frame id> <class index> <score> <x1> <y1> <x2> <y2>' lines")
        if let motion { try requireReadableFile(motion, "--motion", "a motion IoU text file (one line per frame: '<frame path> <IoU> ...')") }
        if let classes, parseClassList(classes).isEmpty {
            throw ValidationError("--classes '\(classes)' names no class; expected comma-separated names, e.g. --classes ring,cross,star,arrow,L,T")
        }
        if let json {
            try requireWritableFile(json, "--json", "a JSON file")
            var read = ReadFiles()
            read.add(imageset, as: "the image set given to --imageset")
            read.add(detections, as: "the detections given to --detections")
            if let motion { read.add(motion, as: "the motion IoUs given to --motion") }
            try requireNotRead(json, "--json", read)
        }
    }

    func run() throws {
        do {
            let classes = classList
            let frames = try loadVIDGroundTruth(annotations: annotations, imageset: imageset, classes: classes, allowOutsideRoot: allowOutsideRoot)
            guard !frames.isEmpty else { throw ToolError("\(imageset): lists no frames; nothing to evaluate") }
            let dets = try loadVIDDetections(path: detections, classCount: classes.count)
            let listed = Set(frames.map(\.frameID))
            let outside = dets.filter { !listed.contains($0.frameID) }.count
            if dets.isEmpty { printError("warning: \(detections): no detections; every AP is 0") }
            if outside > 0 { printError("warning: \(detections): \(outside) of \(dets.count) detections have frame ids not in \(imageset); they are ignored (as MSRA's script ignores them)") }
            var result = VIDEvaluation(classNames: classes.map(vidDisplayName),
                                       ap: evaluateVID(frames: frames, detections: dets, classCount: classes.count))
            for (c, name) in result.classNames.enumerated() where result.ap[c].isNaN {
                printError("warning: class \(name) has detections but no ground truth: its AP is NaN, as in MSRA's script, and so is the mean (null in the JSON)")
            }
            if let motion {
                let iou = try loadVIDMotionIoU(path: motion, frames: frames)
                result.motion = VIDMotionRange.msra.map { range in
                    (range, evaluateVIDMotion(frames: frames, detections: dets, classCount: classes.count, motionIoU: iou, range: range))
                }
            }
            print(result.table, terminator: "")
            if let json { try writeFileAtomically(Data(result.json.utf8), to: json) }
        } catch let e as VIDError {
            throw ToolError(e.description)
        }
    }
}
