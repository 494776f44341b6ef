// Watching a run: the metrics log, TensorBoard event files of a run (every logged scalar), the
// curves, and detections drawn on validation images (the event file format: DCNTensorBoardTests;
// the pictures themselves: DCNPicturesTests).
import DCNConfig
import DCNData
import DCNModels
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
