// The deformation statistics while training: a tiny deformable run logs finite values for each
// deformable layer and the mdpool in metrics.jsonl, TensorBoard and the curves' panel; a regular
// run (RoIAlign) logs none.
import DCNConfig
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

@Suite struct DeformationLog {
    func run(_ config: String, _ dir: String) throws -> [[String: Any]] {
        let settings = try distributedData(dir) + ["output.dir=\(dir)/out", "solver.max_iter=4", "solver.warmup_iters=2", "solver.steps=[]",
                                                   "output.log_period=2", "solver.checkpoint_period=100"]
        let experiment = try loadConfig(path: repositoryPath(config), overrides: settings)
        try Threads.with(1) { try train(config: experiment, resume: nil, force: false) }
        let lines = try String(contentsOfFile: "\(dir)/out/\(RunFiles.metrics)", encoding: .utf8).split(separator: "\n")
        return try lines.compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.filter { $0["losses"] != nil }
    }

    @Test func aDeformableRunLogsEachLayersStatisticsAndARegularRunNone() throws {
        let dir = temporaryDirectory("deformation-log")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = try run("configs/demo.yaml", dir + "/dcn")
        #expect(records.map { $0["iteration"] as? Int } == [1, 2, 4])
        // The demo's mdconv at c3~c5 and its mdpool (which has no kernel, so no effective dilation).
        let layers = ["backbone.layer2.0.conv2", "backbone.layer3.0.conv2", "backbone.layer4.0.conv2", "roi_heads.pooler"]
        let names = ["offset_mean", "offset_p95", "offset_mean_image_px", "offset_p95_image_px", "modulation_mean", "modulation_below_0.1",
                     "update_ratio"]
        for record in records {
            let deformation = try #require(record["deformation"] as? [String: [String: Double]], "\(record)")
            #expect(deformation.keys.sorted() == layers)
            for (layer, statistics) in deformation {
                let expected = layer.hasPrefix("backbone") ? names + ["effective_dilation_image_px"] : names
                #expect(statistics.keys.sorted() == expected.sorted() && statistics.values.allSatisfy(\.isFinite), "\(layer): \(statistics)")
            }
        }
        // The offsets start at zero and move: res5's dilation 2 at stride 16 is 32 px at first.
        let first = try #require(records.first?["deformation"] as? [String: [String: Double]])
        #expect(first["backbone.layer4.0.conv2"]?["effective_dilation_image_px"] == 32 && first["backbone.layer2.0.conv2"]?["offset_mean"] == 0)
        let last = try #require(records.last?["deformation"] as? [String: [String: Double]])
        #expect(layers.allSatisfy { (last[$0]?["offset_mean"] ?? 0) > 0 })
        let svg = try String(contentsOfFile: "\(dir)/dcn/out/\(RunFiles.curves)", encoding: .utf8)
        #expect(svg.contains("deformation: mean |offset| (input px)") && svg.contains(">res3 ") && svg.contains(">res5 "))
        let events = try #require(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/dcn/out").first { $0.hasPrefix("events.out.tfevents.") })
        let bytes = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/dcn/out/\(events)"))
        #expect(bytes.range(of: Data("deform/backbone.layer3.0.conv2/effective_dilation_image_px".utf8)) != nil)

        let regular = try run("configs/demo_regular.yaml", dir + "/regular")
        #expect(regular.count == 3 && regular.allSatisfy { $0["deformation"] == nil })
        let regularSVG = try String(contentsOfFile: "\(dir)/regular/out/\(RunFiles.curves)", encoding: .utf8)
        #expect(!regularSVG.contains("deformation"))
    }
}
