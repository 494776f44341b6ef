// ImageNet VID end to end: a tiny run of configs/synth_vid on synthetic videos trains, evaluates
// with MSRA's VID AP and writes the detections as MSRA's lines, which `dcn-eval vid` scores to the
// same numbers; `dcn-eval model` does the same for the checkpoint. And the data errors of a VID
// config name its keys.
import DCNAnnotations
import DCNConfig
import DCNData
import DCNEval
import DCNRun
import DCNTraining
import Foundation
import TestSupport
import Testing

/// Tiny synthetic videos in `dir`/data (3 training and 4 validation videos of 4 frames at about
/// 96 px) and the overrides of configs/synth_vid/regular.yaml that train on them for 6 steps.
func tinyVIDOverrides(_ dir: String) throws -> [String] {
    _ = try writeSyntheticVideoDataset(out: dir + "/data", config: SyntheticVideoConfig(trainVideos: 3, valVideos: 4, frames: 4, size: 96,
                                                                                       seed: 5, difficulty: .standard))
    return ["data.root=\(dir)/data", "data.min_size=[96]", "data.max_size=128", "data.test_min_size=96",
            "roi_head.batch_size_per_image=16", "rpn.batch_size_per_image=32", "solver.max_iter=6", "solver.warmup_iters=2",
            "solver.steps=[4]", "solver.checkpoint_period=6", "output.dir=\(dir)/out", "output.log_period=1", "output.draw_images=1"]
}

/// A metrics or `dcn-eval vid --json` file as a dictionary.
@Test func aTinyVIDRunIsScoredWithMSRAsAPOnTheDetectionsItWrites() throws {
    let dir = try temporaryFolder("vid-run")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let settings = try tinyVIDOverrides(dir)
    let classes = "ring,cross,star,arrow,L,T"
    // Every class has ground truth in the val videos, so no class's AP is NaN (MSRA's script gives
    // NaN to a class with detections and no ground truth).
    let truth = try loadVIDGroundTruth(annotations: dir + "/data/Annotations/VID", imageset: dir + "/data/ImageSets/VID/VID_val_videos.txt",
                                       classes: classes.split(separator: ",").map(String.init))
    #expect(truth.count == 16 && Set(truth.flatMap(\.labels)) == Set(1...6))

    let train = try ToolRun.run("dcn-train", ["--config", repositoryPath("configs/synth_vid/regular.yaml"), "--threads", "1"]
                                + settings.flatMap { ["--set", $0] }, ranks: nil, folder: dir, name: "train", seconds: 240)
    #expect(train.process.terminationStatus == 0, "\(train.errors)")
    #expect(train.output.contains("Mean AP@0.5 = "), "the run prints MSRA's table")
    let out = dir + "/out"
    // The detections: MSRA's lines, one frame id of the 16 val frames each, classes 1-6.
    let lines = try String(contentsOfFile: out + "/eval_final_results.txt", encoding: .utf8).split(separator: "\n")
    #expect(!lines.isEmpty)
    for line in lines.prefix(50) {
        let f = line.split(separator: " ")
        #expect(f.count == 7 && (1...16).contains(Int(f[0]) ?? 0) && (1...6).contains(Int(f[1]) ?? 0), "\(line)")
        #expect(f[2].split(separator: ".").last?.count == 4 && f[3].split(separator: ".").last?.count == 2, "\(line)")
    }
    #expect(RunFiles.isRunFile("eval_final_results.txt") && RunFiles.isRunFile("eval_model_results.txt"))
    let metrics = try #require(try readJSON(out + "/eval_final_metrics.json") as? [String: Any])
    let ap = try #require(metrics["vid/AP"] as? Double)
    #expect(ap >= 0 && ap <= 1)
    #expect(Set(metrics.keys) == Set(["vid/AP"] + ["ring", "cross", "star", "arrow", "L", "T"].map { "vid/AP/\($0)" }))

    // dcn-eval vid on the written file: the same numbers, bit for bit.
    let rescored = try ToolRun.run("dcn-eval", ["vid", "--annotations", dir + "/data/Annotations/VID",
                                                "--imageset", dir + "/data/ImageSets/VID/VID_val_videos.txt",
                                                "--detections", out + "/eval_final_results.txt", "--classes", classes,
                                                "--json", dir + "/rescored.json"], ranks: nil, folder: dir, name: "vid")
    #expect(rescored.process.terminationStatus == 0, "\(rescored.errors)")
    let again = try #require(try readJSON(dir + "/rescored.json") as? [String: Any])
    #expect(again["AP"] as? Double == ap)
    let perClass = try #require(again["per_class"] as? [String: Double])
    for (name, value) in perClass { #expect(metrics["vid/AP/\(name)"] as? Double == value, "\(name)") }

    // dcn-eval model on the final checkpoint writes eval_model_results.txt and the same metrics.
    let evaluated = try ToolRun.run("dcn-eval", ["model", "--config", repositoryPath("configs/synth_vid/regular.yaml"),
                                                 "--checkpoint", out + "/model_final.safetensors", "--threads", "1"]
                                    + settings.flatMap { ["--set", $0] }, ranks: nil, folder: dir, name: "model")
    #expect(evaluated.process.terminationStatus == 0, "\(evaluated.errors)")
    #expect(evaluated.output.contains("detections: \(out)/eval_model_results.txt"), "\(evaluated.output)")
    #expect(try String(contentsOfFile: out + "/eval_model_results.txt", encoding: .utf8).split(separator: "\n") == lines)
    #expect(try #require(try readJSON(out + "/eval_model_metrics.json") as? [String: Any])["vid/AP"] as? Double == ap)
}

@Test func vidDataErrorsNameTheConfigKey() throws {
    let dir = try temporaryFolder("vid-errors")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let settings = try tinyVIDOverrides(dir)
    func config(_ extra: [String]) throws -> ExperimentConfig {
        try loadConfig(path: repositoryPath("configs/synth_vid/regular.yaml"), overrides: settings + extra)
    }
    // A list that does not exist, a malformed line, a class outside data.classes: exit status 2, the key first.
    expectTrainingError(2, ["data.train_lists[1]", "ImageSets/VID/missing.txt", "does not exist"]) {
        _ = try loadDataset(try config(["data.train_lists=[ImageSets/VID/VID_train_15frames.txt, ImageSets/VID/missing.txt]"]), train: true)
    }
    try "val/synthetic_val_00000 1 0\n".write(toFile: dir + "/data/ImageSets/VID/bad.txt", atomically: true, encoding: .utf8)
    expectTrainingError(2, ["data.val_list: ", "bad.txt: line 1: 3 fields"]) {
        _ = try loadDataset(try config(["data.val_list=ImageSets/VID/bad.txt"]), train: false)
    }
    expectTrainingError(2, ["data.train_lists[0]: ", "<name> is 'ring', not a class of the evaluation"]) {
        _ = try loadDataset(try config(["data.classes=[cross, star, arrow, L, T]"]), train: true)
    }
    // The evaluated split: every frame of VID_val_videos (its video lines expanded), ids as the list gives them.
    let val = try #require(try loadDataset(try config([]), train: false))
    #expect(val.images.count == 16 && val.images[0].name == "VID/val/synthetic_val_00000/000000" && val.classNames.count == 6)
}
