// Watching a run: the metrics log, TensorBoard event files of a run (every logged scalar), the
// curves, and detections drawn on validation images (the event file format: DCNTensorBoardTests).
import DCNConfig
import DCNData
import DCNModels
import DCNPictures
import DCNRun
import DCNTensor
import DCNTensorBoard
import DCNTraining
import Foundation
import TestSupport
import Testing

@Suite struct EventFiles {
    /// Resuming from an earlier checkpoint drops the later iterations and evaluations and keeps the
    /// others, evaluations included, in order.
    @Test func metricsLogKeepsEvaluationsThroughATruncation() throws {
        let dir = temporaryDirectory("metrics-log")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/metrics.jsonl"
        let log = try MetricsLog(path: path, keepExisting: false)
        for i in 1...4 {
            try log.append(IterationRecord(iteration: i, losses: ["a": Double(i)], totalLoss: Double(i), lr: 0.1, secondsPerIteration: 1,
                                           dataWaitSeconds: 0, time: 100 + Double(i)))
            if i % 2 == 0 { try log.appendEvaluation(iteration: i, metrics: [("bbox/AP", Double(i) / 10), ("bbox/APs", .nan)]) }
        }
        try log.truncate(after: 3)
        let again = try MetricsLog(path: path, keepExisting: true)
        #expect(again.records.map(\.iteration) == [1, 2, 3])
        #expect(again.evaluations.map(\.iteration) == [2] && again.evaluations[0].metrics["bbox/AP"] == 0.2)
        #expect(again.evaluations[0].metrics["bbox/APs"]?.isNaN == true)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4 && lines[2].contains("\"eval\""), "\(lines)")
    }
}

@Suite struct Drawing {
    /// Every printable ASCII character has its own 5x7 glyph.
    @Test func theFontHasEveryPrintableCharacter() {
        var seen: [[UInt8]: Character] = [:]
        for code in 32...126 {
            let c = Character(UnicodeScalar(UInt8(code)))
            guard let glyph = BitmapFont.glyph(c) else { Issue.record("no glyph for \(c)"); continue }
            #expect(glyph.count == BitmapFont.glyphHeight && glyph.allSatisfy { $0 < 32 }, "glyph \(c)")
            if let other = seen[glyph] { Issue.record("\(c) and \(other) have the same glyph") }
            seen[glyph] = c
        }
        #expect(BitmapFont.size(of: "ab", scale: 2) == (22, 14))
    }

    /// The picture: ground truth left, detections above the threshold right, each box in its
    /// class's colour with a label; a detection below the threshold is not drawn.
    @Test func detectionsAreDrawnNextToTheGroundTruth() throws {
        let image = try RGBImage.filled(width: 240, height: 240, color: RGBColor(128, 128, 128))
        let truth = DatasetImage(id: 1, name: "a.png", path: "", width: 240, height: 240,
                                 objects: [DatasetObject(box: Box(40, 60, 200, 220), label: 1, ignore: false, polygons: [])])
        let detections = [ImageDetection(detection: Detection(box: Box(40, 60, 200, 220), score: 0.9, label: 2), mask: nil),
                          ImageDetection(detection: Detection(box: Box(100, 100, 140, 140), score: 0.2, label: 3), mask: nil)]
        let picture = try detectionPicture(image: image, truth: truth, detections: detections, classNames: ["ring", "star", "blob"],
                                           scoreThreshold: 0.5)
        // 240 px images are drawn at 480: two panels of 480 with a 12 px gap, under a 30 px header.
        #expect(picture.width == 2 * 480 + 12 && picture.height == 480 + 30)
        func pixel(_ x: Int, _ y: Int) -> RGBColor {
            let i = 3 * (y * picture.width + x)
            return RGBColor(picture.pixels[i], picture.pixels[i + 1], picture.pixels[i + 2])
        }
        // The box's left edge (x = 80 at scale 2), halfway down, in the class colour.
        #expect(pixel(81, 30 + 280) == RGBColor.forLabel(1))
        #expect(pixel(480 + 12 + 81, 30 + 280) == RGBColor.forLabel(2))
        // The low-scoring detection's box (x = 200 at scale 2) is not drawn.
        #expect(pixel(480 + 12 + 201, 30 + 240) == RGBColor(128, 128, 128))
        // The label sits above the box: its background in the class colour, text in a readable colour.
        let labelRows = (30 + 120 - 18)..<(30 + 120)
        let labelPixels = labelRows.flatMap { y in (80..<200).map { pixel($0, y) } }
        #expect(labelPixels.contains(RGBColor.forLabel(1)) && labelPixels.contains(RGBColor.forLabel(1).readableTextColor))
    }
}

@Suite(.serialized) struct WatchedRuns {
    /// A run with evaluations: the event file holds every logged scalar at its step (the values of
    /// metrics.jsonl), the evaluation numbers and the drawn images; the curves have their panels;
    /// the pictures are on disk; `dcn-eval model --draw` draws too.
    @Test func theTrainerWritesTensorBoardEventsCurvesAndPictures() throws {
        let dir = temporaryDirectory("watched")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = try distributedData(dir) + ["output.dir=\(dir)/out", "solver.max_iter=12", "solver.steps=[10]", "solver.eval_period=6",
                                                   "solver.checkpoint_period=6", "output.log_period=3", "output.draw_images=2"]
        let config = try loadConfig(path: repositoryPath("configs/demo.yaml"), overrides: settings)
        try Threads.with(1) { try train(config: config, resume: nil, force: false) }
        let out = dir + "/out"
        let names = try FileManager.default.contentsOfDirectory(atPath: out)
        let eventFiles = names.filter { $0.hasPrefix("events.out.tfevents.") }
        #expect(eventFiles.count == 1)
        let events = try readEventFile(out + "/" + eventFiles[0])
        #expect(events.first?.fileVersion == "brain.Event:2")
        var scalars: [String: [Int64: Float]] = [:]
        var images: [String: [Int64: TensorBoardSummary.Image]] = [:]
        for e in events.dropFirst() {
            for v in e.summary.value {
                if case .simpleValue(let x)? = v.value { scalars[v.tag, default: [:]][e.step] = x }
                if case .image(let picture)? = v.value { images[v.tag, default: [:]][e.step] = picture }
            }
        }
        let log = try MetricsLog(path: out + "/metrics.jsonl", keepExisting: true)
        #expect(log.records.map(\.iteration) == [1, 3, 6, 9, 12])
        for r in log.records {
            for (name, value) in r.losses { #expect(scalars["loss/\(name)"]?[Int64(r.iteration)] == Float(value), "loss/\(name) at \(r.iteration)") }
            #expect(scalars["loss/total"]?[Int64(r.iteration)] == Float(r.totalLoss))
            #expect(scalars["lr"]?[Int64(r.iteration)] == Float(r.lr))
            #expect(scalars["time/seconds_per_iteration"]?[Int64(r.iteration)] == Float(r.secondsPerIteration))
            #expect(scalars["time/data_wait_seconds"]?[Int64(r.iteration)] == Float(r.dataWaitSeconds))
            #expect(r.time != nil)
        }
        #expect(log.evaluations.map(\.iteration) == [6, 12])
        for e in log.evaluations {
            for (name, value) in e.metrics where value.isFinite { #expect(scalars["eval/\(name)"]?[Int64(e.iteration)] == Float(value), "eval/\(name)") }
            #expect(e.metrics["segm/AP"] != nil)
        }
        // Two drawn validation images at each evaluation, as PNGs TensorBoard shows.
        #expect(images.count == 2 && images.values.allSatisfy { Set($0.keys) == [6, 12] }, "\(images.keys)")
        for picture in images.values.flatMap(\.values) {
            let decoded = try decodeImage(data: picture.encodedImageString, name: "summary")
            #expect(decoded.width == Int(picture.width) && decoded.height == Int(picture.height) && picture.colorspace == 3)
        }
        let drawn = try FileManager.default.contentsOfDirectory(atPath: out + "/detections").sorted()
        #expect(drawn.count == 4 && drawn.filter { $0.hasPrefix("0000006_") }.count == 2 && drawn.filter { $0.hasPrefix("final_") }.count == 2, "\(drawn)")
        // The curves: a panel per loss group, the total, the learning rate and the evaluations.
        let svg = try String(contentsOfFile: out + "/training_curves.svg", encoding: .utf8)
        for panel in ["RPN losses", "R-CNN head losses", "mask loss", "mimic losses", "total loss", "learning rate", "evaluation"] {
            #expect(svg.contains(">\(panel)</text>"), "panel \(panel)")
        }
        #expect(svg.contains(">bbox/AP "))

        // dcn-eval model --draw 2 --out DIR.
        let pictures = dir + "/pictures"
        let eval = try ToolRun.run("dcn-eval", ["model", "--config", repositoryPath("configs/demo.yaml"), "--checkpoint", out + "/latest",
                                                "--threads", "1", "--draw", "2", "--out", pictures, "--results", dir + "/dets.json"]
                                               + settings.flatMap { ["--set", $0] }, ranks: nil, folder: dir, name: "eval")
        #expect(eval.process.terminationStatus == 0, "\(eval.output)\n\(eval.errors)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: pictures).filter { $0.hasSuffix(".png") }.count == 2)
    }
}
