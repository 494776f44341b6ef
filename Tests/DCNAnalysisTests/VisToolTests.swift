// dcn-vis end to end on a tiny trained demo detector (DCNv2 res3-res5, mdpool): the three
// analyses write a picture and their numbers, the figure and focus commands run, and bad input
// is a clear error.
import DCNData
import Foundation
import TestSupport
import Testing

@Suite(.serialized) struct VisTool {
    @Test func analysesFiguresAndFocusRunOnATrainedDetector() throws {
        let dir = temporaryDirectory("vis")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (settings, _) = try trainTinyDemo(dir)
        let common = ["--config", repositoryPath("configs/demo.yaml"), "--checkpoint", dir + "/out/latest", "--threads", "1"]
            + settings.flatMap { ["--set", $0] }
        let image = dir + "/data/images/val/" + (try FileManager.default.contentsOfDirectory(atPath: dir + "/data/images/val").sorted()[0])
        for tool in ["sampling", "erf", "saliency"] {
            let run = try ToolRun.run("dcn-vis", [tool] + common + ["--image", image, "--point", "40,50", "--out", "\(dir)/\(tool).png"],
                                      ranks: nil, folder: dir, name: tool)
            #expect(run.process.terminationStatus == 0, "\(tool): \(run.output)\n\(run.errors)")
            let picture = try decodeImage(path: "\(dir)/\(tool).png")
            #expect(picture.width > 0)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(tool).json"))) as? [String: Any])
            #expect((json["node"] as? [String: Any])?["stage"] as? String == "res5")
            switch tool {
            case "sampling":
                let points = try #require(json["sampling_points"] as? [[String: Any]])
                // DCNv2 in res3, res4 and res5: every stage's layers have locations.
                let layers = Set(points.compactMap { $0["layer"] as? String })
                #expect(["layer2.", "layer3.", "layer4."].allSatisfy { stage in layers.contains { $0.contains(stage) } }, "\(layers)")
            case "erf":
                let field = try #require(json["receptive_field"] as? [String: Any])
                #expect((field["values"] as? [Double])?.count == (field["height"] as! Int) * (field["width"] as! Int))
            default:
                let saliency = try #require(json["saliency"] as? [String: Any])
                #expect((saliency["error"] as! Double) <= 0.1 && (saliency["curve"] as? [Any])?.isEmpty == false)
            }
        }
        // The RoI head's node: the mdpool bins are its sampling locations.
        let roi = try ToolRun.run("dcn-vis", ["sampling"] + common + ["--image", image, "--roi", "10,10,60,70", "--out", "\(dir)/roi.png"],
                                  ranks: nil, folder: dir, name: "roi")
        #expect(roi.process.terminationStatus == 0, "\(roi.output)\n\(roi.errors)")
        let roiJSON = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/roi.json"))) as? [String: Any])
        let bins = (roiJSON["sampling_points"] as? [[String: Any]] ?? []).filter { $0["layer"] as? String == "roi_bins" }
        #expect(!bins.isEmpty && bins.count <= 49, "\(bins.count) bins")
        let badRoI = try ToolRun.run("dcn-vis", ["erf"] + common + ["--image", image, "--roi", "50,10,10,60", "--out", "\(dir)/x.png"],
                                     ranks: nil, folder: dir, name: "badroi")
        // Refused by the option's validation, before the model loads (ArgumentParser's status 64).
        #expect(badRoI.process.terminationStatus == 64 && badRoI.errors.contains("--roi 50,10,10,60: expected x0,y0,x1,y1"), "\(badRoI.errors)")
        let outside = try ToolRun.run("dcn-vis", ["erf"] + common + ["--image", image, "--point", "4000,5", "--out", "\(dir)/x.png"],
                                      ranks: nil, folder: dir, name: "outside")
        #expect(outside.process.terminationStatus == 1 && outside.errors.contains("--point 4000,5 is outside"), "\(outside.errors)")

        let figureArguments = ["figure", "--configs", repositoryPath("configs/demo.yaml"), "--checkpoints", "\(dir)/out/latest,\(dir)/out/latest",
                               "--labels", "a,b", "--threads", "1", "--cell-width", "120", "--out", "\(dir)/figure.png"] + settings.flatMap { ["--set", $0] }
        let figure = try ToolRun.run("dcn-vis", figureArguments, ranks: nil, folder: dir, name: "figure")
        #expect(figure.process.terminationStatus == 0, "\(figure.output)\n\(figure.errors)")
        // Two rows, nine pictures each (three nodes x three analyses).
        #expect(try decodeImage(path: "\(dir)/figure.png").width > 9 * 120)

        let focus = try ToolRun.run("dcn-vis", ["focus"] + common + ["--max-objects", "2", "--json", "\(dir)/focus.json"], ranks: nil, folder: dir, name: "focus")
        #expect(focus.process.terminationStatus == 0, "\(focus.output)\n\(focus.errors)")
        let summary = try #require((try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/focus.json"))) as? [String: Any])?["summary"] as? [String: Any])
        #expect(summary["objects"] as? Int == 2)
        let erf = try #require(summary["erf_inside"] as? [String: Double])
        #expect((0...1).contains(erf["mean"]!) && erf["q1"]! <= erf["median"]! && erf["median"]! <= erf["q3"]!)

        // DCNv1's Table 2 on the demo detector (mdconv at c3~c5): every layer has background nodes
        // and object nodes, with finite positive effective dilations.
        let dilation = try ToolRun.run("dcn-vis", ["dilation"] + common + ["--max-images", "2", "--json", "\(dir)/dilation.json",
                                                                           "--markdown", "\(dir)/dilation.md"], ranks: nil, folder: dir, name: "dilation")
        #expect(dilation.process.terminationStatus == 0 && dilation.output.contains("| layer | small | medium | large | background |"),
                "\(dilation.output)\n\(dilation.errors)")
        let rows = try #require((try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/dilation.json"))) as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(Set(rows.compactMap { $0["layer"] as? String }) == ["backbone.layer2.0.conv2", "backbone.layer3.0.conv2", "backbone.layer4.0.conv2"])
        #expect(rows.contains { $0["region"] as? String == "background" } && rows.contains { $0["region"] as? String != "background" })
        #expect(rows.allSatisfy { (($0["mean"] as? Double) ?? -1) > 0 && (($0["nodes"] as? Int) ?? 0) > 0 }, "\(rows)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/dilation.md"))
    }
}
