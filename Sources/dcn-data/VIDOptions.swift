// dcn-data's ImageNet VID options: `synth --video` (synthetic videos in the VID layout) and
// `check --vid ROOT --vid-list LIST` (FGFA's lists: DET and VID images, their annotations). See
// docs/video.md.
import ArgumentParser
import DCNAnnotations
import DCNData
import Foundation

struct SynthVideoOptions: ParsableArguments {
    @Flag(help: "Write videos in the ImageNet VID layout instead (DIR/Data/VID, DIR/Annotations/VID, DIR/ImageSets/VID): --train and --val count videos of --frames frames of the shapes moving, scaling and deforming.")
    var video = false

    @Option(parsing: .unconditional, help: "With --video: frames per video.")
    var frames: Int = 12

    func validate() throws {
        if frames < 1 || frames > 10_000 { throw ValidationError("--frames must be between 1 and 10000, got \(frames)") }
    }

    /// Writes the videos (`Synth.run` with --video).
    func write(out: String, train: Int, val: Int, seed: UInt64, size: Int, quality: Int, difficulty: SyntheticDifficulty, voc: Bool) throws {
        if voc { throw ValidationError("--voc and --video write different layouts; give one of them") }
        guard (train + val) * frames <= maxSyntheticImages else {
            throw ValidationError("--train \(train) --val \(val) --frames \(frames): at most \(maxSyntheticImages) frames in all")
        }
        let config = SyntheticVideoConfig(trainVideos: train, valVideos: val, frames: frames, size: size, seed: seed, jpegQuality: quality, difficulty: difficulty)
        let s = try writeSyntheticVideoDataset(out: out, config: config)
        print("wrote \(train) train + \(val) val videos of \(frames) frames (\(s.trainImages + s.valImages) frames, \(s.objects) objects) to \(out) in \(String(format: "%.1f", s.seconds)) s")
    }
}

struct VIDCheckOptions: ParsableArguments {
    @Option(name: .customLong("vid"), help: "An ILSVRC2015 root (Data/, Annotations/) whose --vid-list lists to check.")
    var root: String?

    @Option(name: .customLong("vid-list"), help: "With --vid: a list to check, e.g. ImageSets/VID/VID_val_frames.txt or ImageSets/DET_train_30classes.txt (relative to the root; a name starting DET_ reads Data/DET and Annotations/DET, as MSRA's FGFA). Repeat to concatenate lists.")
    var lists: [String] = []

    /// Check's validate with --vid: no COCO/VOC option (`alone`), at least one readable list.
    func validateAlone(_ alone: Bool) throws {
        guard let root else { return }
        if !alone { throw ValidationError("--vid checks an ILSVRC root; give it without --coco, --voc, --images or --split") }
        if let problem = folderProblem(root) { throw ValidationError("--vid \(root): \(problem); expected an ILSVRC2015 root folder (Data/, Annotations/, ImageSets/)") }
        if lists.isEmpty { throw ValidationError("--vid needs --vid-list LIST, e.g. --vid-list ImageSets/VID/VID_val_frames.txt") }
        for list in lists {
            let path = list.hasPrefix("/") ? list : root + "/" + list
            if let problem = fileReadProblem(path) { throw ValidationError("--vid-list \(list): \(path): \(problem); expected a list of '<frame path> <frame id>' lines") }
        }
    }
}
