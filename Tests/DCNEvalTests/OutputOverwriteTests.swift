// Issue 29, defect 1: an output path that is an input (or a training run's file) is refused
// before anything is written, for every tool option that writes a file. Each case checks the
// message and that the file it named still has its bytes (and a symlink is still a symlink).
import Foundation
import TestSupport
import Testing

@Suite("No tool writes onto a file it reads")
struct OutputOverwriteTests {
    /// Runs `tool arguments`, which must fail naming `option path` as what it reads, and leave
    /// `path` (and every file in `kept`) as it was.
    func expectRefused(_ tool: String, _ arguments: [String], option: String, path: String, kept: [String] = []) throws {
        let watched = [path] + kept
        let before = watched.map { FileManager.default.contents(atPath: $0) }
        let wasLink = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil
        let run = try runBuiltTool(tool, arguments, timeout: 120)
        #expect(run.status != 0 && run.stderr.contains("\(option) \(path): is ") && run.stderr.contains("give another path"),
                "\(tool) \(arguments.joined(separator: " ")): \(run)")
        #expect(watched.map { FileManager.default.contents(atPath: $0) } == before, "\(tool) \(arguments): a file read was changed")
        #expect(((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil) == wasLink, "\(path) stopped being a symlink")
    }

    @Test("dcn-eval coco and voc refuse a --json that is the ground truth, the results or an annotation (another spelling, a symlink too)")
    func evaluationOfFiles() throws {
        let dir = try temporaryFolder("overwrite-files")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gt = try writeFile(dir, "gt.json", groundTruthJSON(segmentation: squarePolygon))
        let results = try writeFile(dir, "results.json", "[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.9, \"bbox\": [10, 10, 10, 10]}]")
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.json", withDestinationPath: "gt.json")
        let coco = ["coco", "--gt", gt, "--results", results, "--json"]
        try expectRefused("dcn-eval", coco + [gt], option: "--json", path: gt)
        try expectRefused("dcn-eval", coco + [results], option: "--json", path: results)
        try expectRefused("dcn-eval", coco + [dir + "/./gt.json"], option: "--json", path: dir + "/./gt.json", kept: [gt])
        try expectRefused("dcn-eval", coco + [dir + "/link.json"], option: "--json", path: dir + "/link.json", kept: [gt])
        // A copy of the fixture devkit: a failing run must not damage the fixture.
        let devkit = dir + "/VOC2007"
        try FileManager.default.copyItem(atPath: repositoryRoot + "/Tests/Fixtures/voc/VOCdevkit/VOC2007", toPath: devkit)
        try FileManager.default.copyItem(atPath: repositoryRoot + "/Tests/Fixtures/voc/results", toPath: dir + "/voc-results")
        let annotation = devkit + "/Annotations/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: devkit + "/Annotations").sorted().first))
        let voc = ["voc", "--devkit", devkit, "--results", dir + "/voc-results", "--json"]
        try expectRefused("dcn-eval", voc + [annotation], option: "--json", path: annotation)
        try expectRefused("dcn-eval", voc + [devkit + "/ImageSets/Main/test.txt"], option: "--json", path: devkit + "/ImageSets/Main/test.txt")
        let resultFile = dir + "/voc-results/comp4_det_test_aeroplane.txt"
        try expectRefused("dcn-eval", voc + [resultFile], option: "--json", path: resultFile)
        // A new file is still written.
        let fine = try runBuiltTool("dcn-eval", coco + [dir + "/metrics.json"])
        #expect(fine.status == 0 && FileManager.default.fileExists(atPath: dir + "/metrics.json"), "\(fine)")
    }

    @Test("dcn-eval model, sweep, dcn-vis and dcn-bench refuse outputs onto the checkpoint, latest, the run's files, the config, the dataset and the image")
    func evaluationOfModels() throws {
        let dir = try temporaryFolder("overwrite-model")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let synth = try runBuiltTool("dcn-data", ["synth", "--out", dir + "/data", "--train", "2", "--val", "2", "--size", "96", "--seed", "3"])
        try #require(synth.status == 0, "\(synth)")
        let overrides = ["data.root=\(dir)/data", "data.min_size=[96]", "data.max_size=128", "data.test_min_size=96", "mimic.patch_size=32",
                         "mimic.rois_per_image=2", "roi_head.batch_size_per_image=16", "rpn.batch_size_per_image=32", "solver.max_iter=2",
                         "solver.warmup_iters=1", "solver.steps=[]", "solver.eval_period=0", "solver.checkpoint_period=1", "output.dir=\(dir)/run"]
        let train = try runBuiltTool("dcn-train", ["--config", repositoryRoot + "/configs/demo.yaml", "--threads", "1"] + overrides.flatMap { ["--set", $0] },
                                     timeout: 300)
        try #require(train.status == 0, "\(train)")
        let run = dir + "/run", config = run + "/config.yaml", final = run + "/model_final.safetensors"
        let first = run + "/model_0000001.safetensors"
        try #require(FileManager.default.fileExists(atPath: first), "\((try? FileManager.default.contentsOfDirectory(atPath: run)) ?? [])")
        let model = ["model", "--config", config, "--checkpoint", final, "--threads", "1"]
        try expectRefused("dcn-eval", model + ["--results", final], option: "--results", path: final)
        try expectRefused("dcn-eval", model + ["--results", run + "/latest"], option: "--results", path: run + "/latest")
        try expectRefused("dcn-eval", model + ["--json", first], option: "--json", path: first)
        try expectRefused("dcn-eval", model + ["--results", run + "/metrics.jsonl"], option: "--results", path: run + "/metrics.jsonl")
        try expectRefused("dcn-eval", model + ["--results", config], option: "--results", path: config)
        let annotations = dir + "/data/annotations/instances_val.json"
        try expectRefused("dcn-eval", model + ["--results", annotations], option: "--results", path: annotations)
        let image = dir + "/data/images/val/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: dir + "/data/images/val").sorted().first))
        try expectRefused("dcn-eval", model + ["--json", image], option: "--json", path: image)
        // The default outputs (eval_model_* beside the checkpoint) are an evaluation's own: written, and written again.
        for _ in 0..<2 {
            let fine = try runBuiltTool("dcn-eval", model, timeout: 120)
            #expect(fine.status == 0 && FileManager.default.fileExists(atPath: run + "/eval_model_results.json"), "\(fine)")
        }
        // sweep writes OUT.md and OUT.svg: a config named c.md is one of them.
        try FileManager.default.copyItem(atPath: config, toPath: dir + "/c.md")
        try expectRefused("dcn-eval", ["sweep", "--configs", dir + "/c.md", "--checkpoints", final, "--sizes", "96", "--out", dir + "/c"],
                          option: "--out", path: dir + "/c.md")
        // dcn-vis: the picture onto the image it analyses, the numbers onto the checkpoint.
        let png = dir + "/p.png"
        try FileManager.default.copyItem(atPath: repositoryRoot + "/Tests/Fixtures/images/upright.png", toPath: png)
        let vis = ["--config", config, "--checkpoint", final, "--threads", "1"]
        try expectRefused("dcn-vis", ["sampling"] + vis + ["--image", png, "--point", "10,10", "--out", png], option: "--out", path: png)
        try FileManager.default.copyItem(atPath: config, toPath: dir + "/c.png")
        try expectRefused("dcn-vis", ["figure", "--configs", dir + "/c.png", "--checkpoints", final, "--out", dir + "/c.png", "--threads", "1"],
                          option: "--out", path: dir + "/c.png")
        // `all` writes OUT_sampling.png, OUT_erf.png and OUT_saliency.png.
        try FileManager.default.copyItem(atPath: png, toPath: dir + "/x_erf.png")
        try expectRefused("dcn-vis", ["all"] + vis + ["--image", dir + "/x_erf.png", "--point", "10,10", "--out", dir + "/x.png"],
                          option: "--out", path: dir + "/x_erf.png")
        try expectRefused("dcn-vis", ["focus"] + vis + ["--json", first], option: "--json", path: first)
        try expectRefused("dcn-bench", ["train-step", "--config", config, "--gradient-out", final], option: "--gradient-out", path: final)
        try expectRefused("dcn-bench", ["train-step", "--config", config, "--gradient-out", config], option: "--gradient-out", path: config)
    }
}

@Suite("dcn-train does not replace the config it reads")
struct TrainConfigOverwriteTests {
    /// `dcn-train --config run/config.yaml --force` (output.dir = run) used to remove the config it
    /// had read with the run's files and write the resolved one in its place.
    @Test func aNewRunFromItsOutputFoldersConfigIsRefused() throws {
        let dir = try temporaryFolder("train-config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
        let config = try writeFile(dir + "/run", "config.yaml", "# my notes\nbase: \(repositoryRoot)/configs/demo.yaml\noutput:\n  dir: \(dir)/run\n")
        let before = FileManager.default.contents(atPath: config)
        let run = try runBuiltTool("dcn-train", ["--config", config, "--force", "--set", "data.root=\(dir)/missing"])
        #expect(run.status == 2 && run.stderr.contains("this run would replace \(dir)/run/config.yaml, the config it reads"), "\(run)")
        #expect(FileManager.default.contents(atPath: config) == before)
    }
}
