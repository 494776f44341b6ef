// DeepLab end to end on the synthetic label maps: it learns (two images fitted to a stated mIoU),
// training evaluates with mIoU, and `dcn-eval model --predictions` writes label maps that
// `dcn-eval seg` scores to the same numbers.
import DCNConfig
import DCNData
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

/// Synthetic images with label maps in dir/data/VOCdevkit/VOC2012 and the settings that make
/// configs/synth_seg small: a `tiny` split of the first two training images.
func segmentationData(_ dir: String) throws -> [String] {
    let config = SyntheticConfig(train: 6, val: 3, size: 128, seed: 5)
    _ = try writeSyntheticDataset(out: dir + "/data", config: config)
    _ = try writeSyntheticSegmentation(out: dir + "/data", config: config)
    let root = dir + "/data/VOCdevkit/VOC2012"
    try Data("000001\n000002\n".utf8).write(to: URL(fileURLWithPath: root + "/ImageSets/Segmentation/tiny.txt"))
    return ["data.root=\(root)", "data.min_size=[128]", "data.max_size=192", "data.test_min_size=128", "data.loader_threads=1",
            "solver.warmup_iters=10", "output.log_period=10"]
}

@Suite(.serialized) struct SegmentationTraining {
    /// Fitting two images is what any working segmenter does in a few hundred steps (58 % mIoU
    /// after 200 here); a broken label alignment, loss or upsampling stays at predicting the
    /// background (one class of the 6 present right: about 15 %).
    @Test func deepLabFitsTwoImages() throws {
        let dir = temporaryDirectory("seg-fit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = try segmentationData(dir) + [
            "data.train_splits=[tiny]", "data.val_split=tiny", "data.flip=false", "solver.base_lr=0.02", "solver.max_iter=200",
            "solver.steps=[170]", "solver.checkpoint_period=200", "output.dir=\(dir)/out",
        ]
        let config = try loadConfig(path: repositoryPath("configs/synth_seg/regular.yaml"), overrides: settings)
        try Threads.with(1) { try train(config: config, resume: nil, force: false) }
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/out/eval_final_metrics.json"))) as? [String: Any]
        let mIoU = try #require(metrics?["mIoU"] as? Double)
        #expect(mIoU > 0.4, "mIoU \(mIoU) on the two training images")
    }

    @Test func dcnEvalModelPredictionsScoreTheSameWithDcnEvalSeg() throws {
        let dir = temporaryDirectory("seg-eval")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = try segmentationData(dir) + [
            "solver.max_iter=20", "solver.steps=[15]", "solver.checkpoint_period=10", "solver.eval_period=10", "output.dir=\(dir)/out",
        ]
        let config = try loadConfig(path: repositoryPath("configs/synth_seg/dcnv2.yaml"), overrides: settings)
        try Threads.with(1) { try train(config: config, resume: nil, force: false) }
        // The run logged its losses and an evaluation every 10 steps.
        let log = try String(contentsOfFile: "\(dir)/out/\(RunFiles.metrics)", encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(log.compactMap { ($0["losses"] as? [String: Double])?["seg"] }.count == 3)
        #expect(log.compactMap { ($0["eval"] as? [String: Double])?["mIoU"] }.count == 2, "\(log.compactMap { $0["eval"] })")

        let model = try runBuiltTool("dcn-eval", ["model", "--config", "\(dir)/out/config.yaml", "--checkpoint", "\(dir)/out/model_final.safetensors",
                                                  "--predictions", "\(dir)/predictions", "--json", "\(dir)/model.json", "--threads", "1"], timeout: 120)
        #expect(model.status == 0, "\(model.stdout)\n\(model.stderr)")
        // The val split's label maps alone (the label folder holds every split's).
        let labels = "\(dir)/data/VOCdevkit/VOC2012/SegmentationClass", valLabels = "\(dir)/val-labels"
        try FileManager.default.createDirectory(atPath: valLabels, withIntermediateDirectories: true)
        let predicted = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/predictions").sorted()
        #expect(predicted == ["000007.png", "000008.png", "000009.png"])
        for name in predicted { try FileManager.default.copyItem(atPath: "\(labels)/\(name)", toPath: "\(valLabels)/\(name)") }
        let seg = try runBuiltTool("dcn-eval", ["seg", "--labels", valLabels, "--predictions", "\(dir)/predictions", "--classes", "7",
                                                "--json", "\(dir)/seg.json", "--threads", "1"])
        #expect(seg.status == 0, "\(seg.stdout)\n\(seg.stderr)")
        func mIoU(_ path: String) throws -> Double? {
            (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])?["mIoU"] as? Double
        }
        #expect(try mIoU("\(dir)/model.json") != nil && mIoU("\(dir)/model.json") == mIoU("\(dir)/seg.json"))
        // A detector's option on a segmenter is an error naming it.
        let draw = try runBuiltTool("dcn-eval", ["model", "--config", "\(dir)/out/config.yaml", "--checkpoint", "\(dir)/out/model_final.safetensors",
                                                 "--draw", "2", "--json", "\(dir)/x.json"])
        #expect(draw.status != 0 && draw.stderr.contains("--predictions DIR"), "\(draw.stderr)")
    }
}
