// Multi-scale and flipped testing: views mapped back and merged, one unflipped view giving exactly
// the one-pass evaluation, and `dcn-eval model --scales --flip` and `dcn-eval sweep` end to end.
import DCNConfig
import DCNData
import DCNInference
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

func boxesClose(_ a: Box, _ b: Box, _ tolerance: Float = 1e-4) -> Bool {
    abs(a.x1 - b.x1) <= tolerance && abs(a.y1 - b.y1) <= tolerance && abs(a.x2 - b.x2) <= tolerance && abs(a.y2 - b.y2) <= tolerance
}

/// A RoI head's selection (per-class NMS at IoU 0.5, the top 100), for two classes.
func roiHeadSelection() -> ([Detection]) throws -> [Int] {
    var rng = SeededGenerator(seed: 0)
    return BoxHead(spec: RoIHeadSpec(RoIHeadConfig()), inFeature: "res5", input: ShapeSpec(channels: 8, stride: 16), classes: 2, rng: &rng).selection
}

@Test func aBoxFromAFlippedLargerViewMapsBackToTheFirstView() {
    // Predicted on the image flipped and resized to 300 x 150; the first view is 200 x 100.
    let b = mapBetweenViews(Box(30, 15, 90, 60), from: ImageSize(height: 150, width: 300), flipped: true, to: ImageSize(height: 100, width: 200))
    #expect(boxesClose(b, Box(140, 10, 180, 40)), "\(b)")
    let same = Box(1.5, 2.25, 3, 4)
    #expect(mapBetweenViews(same, from: ImageSize(height: 10, width: 10), flipped: false, to: ImageSize(height: 10, width: 10)) == same)
}

/// A horizontally symmetric image (two mirrored objects and one centred, symmetric object) is its own
/// flip, so a detector returns the same candidates on the flipped view. Mapped back, they are the
/// unflipped candidates (up to float rounding), and merging the views keeps one box per object.
@Test func aSymmetricImageGivesTheSameDetectionsFlippedAndUnflipped() throws {
    let size = ImageSize(height: 100, width: 200)
    let objects = [(Box(20, 30, 60, 70), 1), (Box(140, 30, 180, 70), 1), (Box(80, 10, 120, 50), 2)]
    // Each object's box and two jittered, lower-scoring duplicates mirrored into each other, so
    // the candidate set is its own mirror image.
    var candidates: [Detection] = []
    for (box, label) in objects {
        candidates.append(Detection(box: box, score: 0.9, label: label))
        candidates.append(Detection(box: Box(box.x1 + 3, box.y1 + 1, box.x2 + 3, box.y2), score: 0.6, label: label))
        candidates.append(Detection(box: Box(box.x1 - 3, box.y1 + 1, box.x2 - 3, box.y2), score: 0.6, label: label))
    }
    let scaled = ImageSize(height: 150, width: 300)
    let views: [(candidates: [Detection], size: ImageSize, flipped: Bool)] = [
        (candidates, size, false),
        (candidates, size, true),  // the flipped image is the same image
        (candidates.map { var d = $0; d.box = Box($0.box.x1 * 1.5, $0.box.y1 * 1.5, $0.box.x2 * 1.5, $0.box.y2 * 1.5); return d }, scaled, true),
    ]
    for view in views.dropFirst() {
        var unmatched = candidates
        for c in view.candidates {
            let b = mapBetweenViews(c.box, from: view.size, flipped: view.flipped, to: size)
            let match = unmatched.firstIndex { $0.label == c.label && $0.score == c.score && boxesClose($0.box, b) }
            #expect(match != nil, "\(b) of the \(view.size) flipped view has no unflipped counterpart")
            if let match { unmatched.remove(at: match) }
        }
        #expect(unmatched.isEmpty)
    }
    let merged = try mergeViewCandidates(views.map(\.candidates), sizes: views.map(\.size), flipped: views.map(\.flipped),
                                         select: roiHeadSelection())
    #expect(merged.count == objects.count, "\(merged.map(\.detection.box))")
    for (box, label) in objects {
        #expect(merged.filter { $0.detection.label == label && boxesClose($0.detection.box, box) && $0.detection.score == 0.9 }.count == 1)
    }
    // Equal scores: the first view's box wins (a stable order).
    #expect(merged.allSatisfy { $0.view == 0 })
}

@Suite(.serialized) struct MultiViewEvaluation {
    /// The demo detector (mask branch included) after 20 steps on tiny synthetic data.
    @Test func oneViewGivesTheOnePassNumbersAndMoreViewsRunEndToEnd() throws {
        let dir = temporaryDirectory("multi-view")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (settings, config) = try trainTinyDemo(dir)
        let dataset = try #require(try loadDataset(config, train: false))
        let model = try buildModel(config, classes: dataset.classNames.count)
        _ = try Checkpoint.load(path: "\(dir)/out/\(RunFiles.finalCheckpoint)", into: model.parameters, optimizer: nil)

        // One unflipped view through the merging path = the one-pass evaluation, byte for byte.
        var oneView = config
        oneView.test.scales = [config.data.testMinSize]
        #expect(oneView.isMultiViewTest && !config.isMultiViewTest)
        let onePass = try #require(try Threads.with(1) { try evaluateModel(model, config: config, dataset: dataset, outputPrefix: "\(dir)/one_pass")?.report })
        let merged = try #require(try Threads.with(1) { try evaluateModel(model, config: oneView, dataset: dataset, outputPrefix: "\(dir)/one_view")?.report })
        let onePassResults = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/one_pass_results.json"))
        #expect(onePassResults == (try Data(contentsOf: URL(fileURLWithPath: "\(dir)/one_view_results.json"))))
        #expect(onePass.metrics.map(\.name) == merged.metrics.map(\.name) && onePass.metrics.map(\.value) == merged.metrics.map(\.value))
        let detections = try #require(try JSONSerialization.jsonObject(with: onePassResults) as? [[String: Any]])
        #expect(!detections.isEmpty && detections.allSatisfy { $0["segmentation"] != nil }, "the model should detect something, with masks")

        // dcn-eval model at two scales and flipped: runs, reports bbox and segm AP.
        let arguments = ["model", "--config", repositoryPath("configs/demo.yaml"), "--checkpoint", "\(dir)/out/\(RunFiles.finalCheckpoint)",
                         "--results", "\(dir)/multi_results.json", "--scales", "80,112", "--flip", "--threads", "1"]
            + (settings + ["test.max_size=160"]).flatMap { ["--set", $0] }
        let run = try ToolRun.run("dcn-eval", arguments, ranks: nil, folder: dir, name: "multi")
        #expect(run.process.terminationStatus == 0, "\(run.output)\n\(run.errors)")
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/multi_metrics.json"))) as? [String: Double]
        #expect(metrics?.count == 24 && metrics?["bbox/AP"] != nil && metrics?["segm/AP"] != nil, "\(String(describing: metrics))")
        #expect(run.output.contains("Average Precision"))

        // The sweep: two checkpoints x three sizes, a table and a chart.
        let sweep = try ToolRun.run("dcn-eval", ["sweep", "--configs", repositoryPath("configs/demo.yaml") + "," + repositoryPath("configs/demo.yaml"),
                                                 "--checkpoints", "\(dir)/out/model_0000010.safetensors,\(dir)/out/\(RunFiles.finalCheckpoint)",
                                                 "--labels", "step10,step20", "--sizes", "64,96,80", "--out", "\(dir)/sweep", "--threads", "1"]
                                    + settings.flatMap { ["--set", $0] }, ranks: nil, folder: dir, name: "sweep")
        #expect(sweep.process.terminationStatus == 0, "\(sweep.output)\n\(sweep.errors)")
        let table = (try? String(contentsOfFile: "\(dir)/sweep.md", encoding: .utf8)) ?? ""
        for row in ["| 64 | 86 |", "| 80 | 107 |", "| 96 | 128 |", "| best single scale |", "step10", "step20"] {
            #expect(table.contains(row), "\(row) missing from\n\(table)")
        }
        let svg = (try? String(contentsOfFile: "\(dir)/sweep.svg", encoding: .utf8)) ?? ""
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2 && svg.components(separatedBy: "<circle").count - 1 == 6)
        #expect(svg.contains("shorter side of the test image (pixels)") && svg.contains(">step10<") && svg.contains(">step20<"))
        for label in ["step10", "step20"] { for size in [64, 80, 96] {
            #expect(FileManager.default.fileExists(atPath: "\(dir)/sweep/\(label)/short\(size)_metrics.json"))
        } }
    }
}
