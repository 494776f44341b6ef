// The built dcn-eval and dcn-data on bad input (issue 12): each run ends (a hang is killed and
// reported), exits non-zero and says on stderr which path or entry is wrong and what is expected.
import Foundation
import TestSupport
import Testing

@Suite("Command-line tools on bad input")
struct ToolTests {
    @Test("coco --iou-type segm with an over-long RLE ends within a second, naming the file that holds it")
    func overLongRLEEndsQuickly() throws {
        let dir = try temporaryFolder("tool-rle")
        let gt = try writeFile(dir, "gt.json", groundTruthJSON(segmentation: squarePolygon))
        let badGT = try writeFile(dir, "bad_gt.json", groundTruthJSON(segmentation: overLongRLE))
        let results = try writeFile(dir, "results.json", resultsJSON(segmentation: "{\"size\": [132, 190], \"counts\": [1500, 20, 23560]}"))
        let badResults = try writeFile(dir, "bad_results.json", resultsJSON(segmentation: overLongRLE))
        for (g, r, message) in [(gt, badResults, "\(badResults): detection 0: RLE runs add up to 75245 pixels, expected 132x190 = 25080"),
                                (badGT, results, "\(badGT): annotations[0] (id 7): segmentation: RLE runs add up to 75245 pixels")] {
            let run = try runBuiltTool("dcn-eval", ["coco", "--gt", g, "--results", r, "--iou-type", "segm"], timeout: 10)
            #expect(!run.timedOut && run.status == 1 && run.stderr.contains(message), "\(run)")
            #expect(run.seconds < 1, "\(run)")
        }
    }

    @Test("dcn-data check reports garbage and over-long RLE counts and an empty VOC split as problems")
    func checkReportsBadMasksAndEmptySplits() throws {
        let dir = try temporaryFolder("tool-check")
        for (name, segmentation, problem) in [("garbage.json", "{\"size\": [132, 190], \"counts\": \"garbage~\"}", "compressed RLE string has a character outside"),
                                              ("overlong.json", overLongRLE, "RLE runs add up to 75245 pixels, expected 132x190 = 25080")] {
            let path = try writeFile(dir, name, groundTruthJSON(segmentation: segmentation))
            let run = try runBuiltTool("dcn-data", ["check", "--coco", path, "--no-images"])
            #expect(run.status == 1 && run.stdout.contains("problems: 1")
                    && run.stdout.contains("problem: annotation id 7 (image id 1): segmentation: \(problem)"), "\(run)")
        }
        let devkit = dir + "/VOC2007"
        try FileManager.default.createDirectory(atPath: devkit + "/ImageSets/Main", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: devkit + "/Annotations", withIntermediateDirectories: true)
        try writeFile(devkit + "/ImageSets/Main", "test.txt", "\n")
        let run = try runBuiltTool("dcn-data", ["check", "--voc", devkit, "--split", "test"])
        #expect(run.status == 1 && run.stdout.contains("problem: \(devkit)/ImageSets/Main/test.txt lists no images"), "\(run)")
    }

    @Test("voc with COCO-format results whose categories name no evaluated class says to pass --categories")
    func vocCOCOResultsWithoutCategories() throws {
        let dir = try temporaryFolder("tool-voc")
        let devkit = dir + "/VOC2007"
        try FileManager.default.createDirectory(atPath: devkit + "/ImageSets/Main", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: devkit + "/Annotations", withIntermediateDirectories: true)
        try writeFile(devkit + "/ImageSets/Main", "test.txt", "000001\r\n000002\r\n")
        for id in ["000001", "000002"] {
            try writeFile(devkit + "/Annotations", "\(id).xml", "<annotation><object><name>ring</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>")
        }
        // Category 1 is "ring" in the data's own categories, "aeroplane" when read as VOC's.
        let results = try writeFile(dir, "results.json", "[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.9, \"bbox\": [0, 0, 20, 20]}]")
        let categories = try writeFile(dir, "categories.json", "{\"categories\": [{\"id\": 1, \"name\": \"ring\"}]}")
        let run = try runBuiltTool("dcn-eval", ["voc", "--devkit", devkit, "--results", results])
        #expect(run.status == 1 && run.stderr.contains("\(results): none of the 1 detections has one of the evaluated classes (ring)")
                && run.stderr.contains("pass --categories FILE"), "\(run)")
        let named = try runBuiltTool("dcn-eval", ["voc", "--devkit", devkit, "--results", results, "--categories", categories, "--metric", "area", "--iou", "0.5"])
        #expect(named.status == 0 && named.stdout.contains("mAP      | 0.5000"), "\(named)")
    }

    @Test("Paths of the wrong kind are named with what is expected, never a raw NSError")
    func wrongKindsOfPaths() throws {
        let dir = try temporaryFolder("tool-paths")
        let file = try writeFile(dir, "file", "x")
        let gt = try writeFile(dir, "gt.json", groundTruthJSON(segmentation: squarePolygon))
        let results = try writeFile(dir, "results.json", "[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.9, \"bbox\": [10, 10, 10, 10]}]")
        try FileManager.default.createDirectory(atPath: dir + "/images/a.jpg", withIntermediateDirectories: true)
        let voc = repositoryRoot + "/Tests/Fixtures/voc"
        let cases: [(String, [String], String)] = [
            ("dcn-data", ["synth", "--out", file, "--train", "1", "--val", "0", "--size", "64"], "--out \(file): \(file) is a file, not a folder; expected a folder"),
            ("dcn-eval", ["coco", "--gt", gt, "--results", results, "--json", dir], "--json \(dir): is a directory; expected the path of a JSON file to write"),
            ("dcn-eval", ["coco", "--gt", dir, "--results", results], "--gt \(dir): is a directory; expected a COCO ground-truth JSON file"),
            ("dcn-eval", ["coco", "--gt", gt, "--results", dir], "--results \(dir): is a directory; expected a COCO results JSON file"),
            ("dcn-eval", ["coco", "--gt", dir + "/missing.json", "--results", results], "--gt \(dir)/missing.json: no such file; expected"),
            ("dcn-eval", ["voc", "--devkit", voc + "/VOCdevkit/VOC2007", "--results", voc + "/results", "--classes", ","], "--classes ',' names no class; expected comma-separated class names"),
            ("dcn-data", ["check", "--coco", gt, "--images", dir + "/images"], "problem: image id 1: \(dir)/images/a.jpg: is a directory; expected a JPEG or PNG file"),
            ("dcn-data", ["check", "--coco", dir, "--images", dir], "--coco \(dir): is a directory; expected a COCO instances JSON file"),
        ]
        for (tool, arguments, message) in cases {
            let run = try runBuiltTool(tool, arguments)
            let output = run.stdout + run.stderr
            #expect(run.status != 0 && output.contains(message) && !output.contains("Error Domain"), "\(tool) \(arguments): \(run)")
        }
    }

    @Test("model --results writes exactly that file, and the metrics beside it (or at --json)")
    func modelWritesTheGivenPaths() throws {
        let dir = try temporaryFolder("tool-model")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let synth = try runBuiltTool("dcn-data", ["synth", "--out", dir + "/data", "--train", "2", "--val", "2", "--size", "96", "--seed", "3"])
        try #require(synth.status == 0, "\(synth)")
        let overrides = ["data.root=\(dir)/data", "data.min_size=[96]", "data.max_size=128", "data.test_min_size=96", "mimic.patch_size=32",
                         "mimic.rois_per_image=2", "roi_head.batch_size_per_image=16", "rpn.batch_size_per_image=32", "solver.max_iter=1",
                         "solver.warmup_iters=1", "solver.steps=[]", "solver.eval_period=0", "output.dir=\(dir)/out"]
        let train = try runBuiltTool("dcn-train", ["--config", repositoryRoot + "/configs/demo.yaml", "--threads", "1"] + overrides.flatMap { ["--set", $0] })
        try #require(train.status == 0, "\(train)")
        try FileManager.default.createDirectory(atPath: dir + "/eval", withIntermediateDirectories: true)
        let model = ["model", "--config", dir + "/out/config.yaml", "--checkpoint", dir + "/out/latest", "--threads", "1"]
        let run = try runBuiltTool("dcn-eval", model + ["--results", dir + "/eval/dets.json"])
        #expect(run.status == 0 && run.stdout.contains("detections: \(dir)/eval/dets.json"), "\(run)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/eval").sorted() == ["dets.json", "dets_metrics.json"])
        let withJSON = try runBuiltTool("dcn-eval", model + ["--results", dir + "/eval/other.json", "--json", dir + "/metrics.json"])
        #expect(withJSON.status == 0, "\(withJSON)")
        #expect(FileManager.default.fileExists(atPath: dir + "/eval/other.json") && FileManager.default.fileExists(atPath: dir + "/metrics.json"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/eval/other_metrics.json"))
        let detections = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/eval/dets.json")))
        #expect(detections is [Any])
    }
}
