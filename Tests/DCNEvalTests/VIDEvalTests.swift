// dcn-eval vid against MSRA's imagenet_vid_eval.py / imagenet_vid_eval_motion.py (the Python 3
// port in scripts/, run on Tests/Fixtures/vid by Tests/Fixtures/generate_vid.py), and the VID
// annotation and list readers.
import DCNAnnotations
import DCNEval
import Foundation
import Testing
import TestSupport

private let root = fixturePath("vid")
private let annotations = root + "/Annotations/VID"
private let framesList = root + "/ImageSets/VID/VID_val_frames.txt"

/// The expected JSON's per-class values in class order (null -> NaN).
private func expectedValues(_ object: Any?) -> [Double] {
    let perClass = object as! [String: Any]
    return vidClassNames.map { (perClass[$0] as? NSNumber)?.doubleValue ?? .nan }
}

private func expected(_ name: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/" + name))) as! [String: Any]
}

private func expectClose(_ got: [Double], _ want: [Double], _ what: String) {
    #expect(got.count == want.count)
    for (k, (g, w)) in zip(got, want).enumerated() {
        let same = (g.isNaN && w.isNaN) || abs(g - w) <= 1e-9
        #expect(same, "\(what) \(vidClassNames[k]): \(g) vs the script's \(w)")
    }
}

@Suite struct VIDEvalFixtureTests {
    @Test func perClassAPMatchesMSRAScript() throws {
        let want = try expected("expected.json")
        let frames = try loadVIDGroundTruth(annotations: annotations, imageset: framesList)
        let dets = try loadVIDDetections(path: root + "/detections.txt", classCount: 30)
        let ap = evaluateVID(frames: frames, detections: dets, classCount: 30)
        expectClose(ap, expectedValues(want["per_class"]), "AP")
        let result = VIDEvaluation(classNames: vidClassNames, ap: ap)
        #expect(abs(result.mean - (want["AP"] as! Double)) <= 1e-9)
        // The fixture has classes with AP strictly between 0 and 1 and classes without detections.
        #expect(ap.contains { $0 > 0 && $0 < 1 })
        #expect(ap[vidClassNames.firstIndex(of: "watercraft")!] == 0)
    }

    @Test(arguments: VIDMotionRange.msra)
    func motionSplitMatchesMSRAScript(range: VIDMotionRange) throws {
        let want = (try expected("expected.json")["motion"] as! [String: Any])[range.name] as! [String: Any]
        let frames = try loadVIDGroundTruth(annotations: annotations, imageset: framesList)
        let dets = try loadVIDDetections(path: root + "/detections.txt", classCount: 30)
        let iou = try loadVIDMotionIoU(path: root + "/motion_iou.txt", frames: frames)
        let ap = evaluateVIDMotion(frames: frames, detections: dets, classCount: 30, motionIoU: iou, range: range)
        expectClose(ap, expectedValues(want["per_class"]), "motion \(range.name) AP")
        #expect(abs(vidMeanOfValid(ap) - (want["AP"] as! Double)) <= 1e-9)
    }

    /// A class with detections but no ground truth: the script's recall is 0/0, its AP NaN, and so the mean.
    @Test func classWithoutGroundTruthIsNaNAsInTheScript() throws {
        let want = try expected("expected_class_without_truth.json")
        let frames = try loadVIDGroundTruth(annotations: annotations, imageset: framesList)
        let dets = try loadVIDDetections(path: root + "/detections_class_without_truth.txt", classCount: 30)
        let ap = evaluateVID(frames: frames, detections: dets, classCount: 30)
        expectClose(ap, expectedValues(want["per_class"]), "AP")
        #expect(ap[1].isNaN && VIDEvaluation(classNames: vidClassNames, ap: ap).mean.isNaN && want["AP"] is NSNull)
        #expect(VIDEvaluation(classNames: vidClassNames, ap: ap).json.contains("\"AP\": null"))
    }

    /// `VID_val_videos.txt` lines expand to the frames `VID_val_frames.txt` lists (MSRA's do_python_eval_gen).
    @Test func videoLinesExpandToTheFrameList() throws {
        let fromFrames = try loadVIDGroundTruth(annotations: annotations, imageset: framesList)
        let fromVideos = try loadVIDGroundTruth(annotations: annotations, imageset: root + "/ImageSets/VID/VID_val_videos.txt")
        #expect(fromFrames == fromVideos)
        #expect(fromFrames.count == 23 && fromFrames.first?.path == "val/ILSVRC2015_val_00000000/000000")
    }

    @Test func smallObjectsGetALowerThreshold() {
        // 9 x 7 pixels (xmax = xmin + 8): 63 / (19 * 17).
        #expect(vidMatchThreshold(VOCBox(xmin: 200, ymin: 150, xmax: 208, ymax: 156)) == 63.0 / (19.0 * 17.0))
        #expect(vidMatchThreshold(VOCBox(xmin: 0, ymin: 0, xmax: 99, ymax: 99)) == 0.5)
        // A detection at IoU 0.3 matches a 9 x 7 box (threshold 0.195) and not a 100 x 100 one.
        let small = VIDGroundTruthFrame(frameID: 1, path: "a", labels: [1], boxes: [VOCBox(xmin: 0, ymin: 0, xmax: 8, ymax: 6)])
        let shifted = VIDDetection(frameID: 1, label: 1, score: 0.9, box: VOCBox(xmin: 4, ymin: 0, xmax: 12, ymax: 6))  // IoU 35/91
        #expect(evaluateVID(frames: [small], detections: [shifted], classCount: 1) == [1])
        let large = VIDGroundTruthFrame(frameID: 1, path: "a", labels: [1], boxes: [VOCBox(xmin: 0, ymin: 0, xmax: 99, ymax: 99)])
        let half = VIDDetection(frameID: 1, label: 1, score: 0.9, box: VOCBox(xmin: 50, ymin: 0, xmax: 149, ymax: 99))  // IoU 1/3
        #expect(evaluateVID(frames: [large], detections: [half], classCount: 1) == [0])
    }

    @Test func eachDetectionTakesTheBestUnmatchedTruthOfItsClass() {
        // Two boxes of class 1; the higher-scored detection takes the one it overlaps most, the
        // second takes the other although it overlaps the first more.
        let frame = VIDGroundTruthFrame(frameID: 4, path: "a", labels: [1, 1, 2],
                                        boxes: [VOCBox(xmin: 0, ymin: 0, xmax: 99, ymax: 99), VOCBox(xmin: 20, ymin: 0, xmax: 119, ymax: 99),
                                                VOCBox(xmin: 0, ymin: 0, xmax: 99, ymax: 99)])
        let dets = [VIDDetection(frameID: 4, label: 1, score: 0.5, box: VOCBox(xmin: 5, ymin: 0, xmax: 104, ymax: 99)),
                    VIDDetection(frameID: 4, label: 1, score: 0.8, box: VOCBox(xmin: 0, ymin: 0, xmax: 99, ymax: 99))]
        #expect(evaluateVID(frames: [frame], detections: dets, classCount: 2) == [1, 0])
    }
}

@Suite struct VIDInputTests {
    @Test func readsAFrameAnnotation() throws {
        let path = annotations + "/val/ILSVRC2015_val_00000001/000003.xml"
        let a = try parseVIDAnnotation(data: Data(contentsOf: URL(fileURLWithPath: path)), file: path)
        #expect(a.width == 320 && a.height == 240 && a.objects.count == 3)
        let bird = a.objects[0]
        #expect(bird.name == "n01503061" && vidDisplayName(bird.name) == "bird" && bird.label == 5 && bird.trackID == 0)
        #expect(bird.box == VOCBox(xmin: 106, ymin: 66, xmax: 120, ymax: 75))
        #expect(a.objects[1].occluded && !a.objects[0].occluded)
        #expect(a.objects.map(\.label) == [5, 5, 9])
    }

    @Test func canonicalClassOrder() {
        #expect(vidClassWNIDs.count == 30 && Set(vidClassWNIDs).count == 30 && vidClassNames.count == 30)
        #expect(vidClassWNIDs.first == "n02691156" && vidClassNames.first == "airplane")
        #expect(vidClassWNIDs.last == "n02391049" && vidClassNames.last == "zebra")
    }

    @Test func corruptXMLNamesTheFileAndLine() throws {
        let path = root + "/bad/corrupt.xml"
        let error = #expect(throws: VOCError.self) { try parseVIDAnnotation(data: Data(contentsOf: URL(fileURLWithPath: path)), file: path) }
        #expect(error?.file == path)
        #expect(error?.message.contains("line") == true, "\(String(describing: error))")
    }

    @Test func unknownWordNetIDNamesTheFileAndValue() throws {
        let path = root + "/bad/unknown_wnid.xml"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let error = #expect(throws: VIDError.self) { try parseVIDAnnotation(data: data, file: path) }
        #expect(error?.file == path && error?.message.contains("'n09999999'") == true)
        // DET files name 200 classes: the loader skips the others when told to.
        let skipped = try parseVIDAnnotation(data: data, file: path, unknownClasses: .skip)
        #expect(skipped.objects.isEmpty && skipped.skipped == ["object #1 (n09999999)"])
    }

    @Test func missingFrameNamesThePathAndTheListLine() throws {
        let dir = try temporaryFolder("vid-missing-frame")
        let list = dir + "/list.txt"
        try "val/ILSVRC2015_val_00000000/000000 1\nval/ILSVRC2015_val_00000000/000099 2\n".write(toFile: list, atomically: true, encoding: .utf8)
        let error = #expect(throws: FileError.self) { try loadVIDGroundTruth(annotations: annotations, imageset: list) }
        #expect(error?.path.hasSuffix("val/ILSVRC2015_val_00000000/000099.xml") == true)
        #expect(error?.message.contains("line 2") == true && error?.message.contains("no such file") == true)
    }

    @Test(arguments: [
        ("a/b 1 2\n", "line 1: 3 fields"),
        ("a/b x\n", "line 1: the frame id is 'x'"),
        ("a/b 1\n\na/c -2\n", "line 3: the frame id is '-2'"),
        ("v 1 0 0\n", "line 1: the video length is '0'"),
        ("../x 1\n", "line 1: path '../x' has a '..' component"),
    ])
    func badListLinesAreLocated(text: String, message: String) throws {
        let dir = try temporaryFolder("vid-bad-list")
        let list = dir + "/list.txt"
        try text.write(toFile: list, atomically: true, encoding: .utf8)
        let error = #expect(throws: VIDError.self) { try readVIDList(path: list) }
        #expect(error?.file == list && error?.message.hasPrefix(message) == true, "\(error.map(String.init(describing:)) ?? "")")
    }

    @Test func duplicateFrameIDIsAnError() throws {
        let dir = try temporaryFolder("vid-duplicate-id")
        let list = dir + "/list.txt"
        try "val/ILSVRC2015_val_00000000/000000 1\nval/ILSVRC2015_val_00000000/000001 1\n".write(toFile: list, atomically: true, encoding: .utf8)
        let error = #expect(throws: VIDError.self) { try loadVIDGroundTruth(annotations: annotations, imageset: list) }
        #expect(error?.message.contains("line 2: frame id 1") == true && error?.message.contains("line 1") == true)
    }

    @Test(arguments: [
        ("1 1 0.5 1 2 3\n", "line 1: 6 fields"),
        ("1 31 0.5 1 2 3 4\n", "line 1: class index '31' is not in 1...30"),
        ("1 0 0.5 1 2 3 4\n", "line 1: class index '0'"),
        ("\n-1 1 0.5 1 2 3 4\n", "line 2: frame id '-1'"),
        ("1 1 nan 1 2 3 4\n", "line 1: the score and box must be finite"),
        ("1 1 0.5 1 2 3 4\r\n2 1 0.5 1 2 x 4\r\n", "line 2: the score and box must be finite"),
    ])
    func badDetectionLinesAreLocated(text: String, message: String) {
        let error = #expect(throws: VIDError.self) { try parseVIDDetections(Data(text.utf8), file: "dets.txt", classCount: 30) }
        #expect(error?.file == "dets.txt" && error?.message.hasPrefix(message) == true, "\(error.map(String.init(describing:)) ?? "")")
    }

    @Test func motionFileMustFollowTheImageSet() throws {
        let frames = try loadVIDGroundTruth(annotations: annotations, imageset: framesList)
        let dir = try temporaryFolder("vid-bad-motion")
        let good = try String(contentsOfFile: root + "/motion_iou.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        let cases: [([String], String)] = [
            (Array(good.dropLast()), "22 lines for the 23 frames"),
            ([good[1], good[0]] + good.dropFirst(2), "line 1: frame 'val/ILSVRC2015_val_00000000/000001'"),
            (["val/ILSVRC2015_val_00000000/000000 0.5"] + good.dropFirst(), "line 1: 1 motion IoU values for frame"),
        ]
        for (lines, message) in cases {
            let path = dir + "/motion.txt"
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            let error = #expect(throws: VIDError.self) { try loadVIDMotionIoU(path: path, frames: frames) }
            #expect(error?.message.hasPrefix(message) == true, "\(error.map(String.init(describing:)) ?? "")")
        }
    }

    @Test func segmentMiddleFramesAsInMSRATrainingList() {
        // VID_train_15frames.txt takes frames 10, 30, ..., 290 of a 300-frame video.
        #expect(vidSegmentMiddleFrames(length: 300) == Array(stride(from: 10, through: 290, by: 20)))
        #expect(vidSegmentMiddleFrames(length: 4) == [0, 1, 2, 3])
        #expect(vidSegmentMiddleFrames(length: 30).count == 15)
    }
}

@Suite struct VIDToolTests {
    @Test func dcnEvalVIDWritesTheScriptsNumbers() throws {
        let dir = try temporaryFolder("vid-tool")
        let json = dir + "/vid.json"
        let r = try runBuiltTool("dcn-eval", ["vid", "--annotations", annotations, "--imageset", framesList,
                                              "--detections", root + "/detections.txt", "--motion", root + "/motion_iou.txt", "--json", json])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("AP for airplane = 0.2411") && r.stdout.contains("Mean AP@0.5 = 0.1015"), "\(r)")
        #expect(r.stderr.contains("2 of 80 detections have frame ids not in"), "\(r)")
        let got = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
        let want = try expected("expected.json")
        #expect(abs((got["AP"] as! Double) - (want["AP"] as! Double)) <= 1e-9)
        expectClose(expectedValues(got["per_class"]), expectedValues(want["per_class"]), "JSON AP")
        let slow = (got["motion"] as! [String: Any])["slow"] as! [String: Any]
        let wantSlow = (want["motion"] as! [String: Any])["slow"] as! [String: Any]
        #expect(abs((slow["AP"] as! Double) - (wantSlow["AP"] as! Double)) <= 1e-9)
        #expect((slow["per_class"] as! [String: Any])["watercraft"] is NSNull)
    }

    @Test func dcnEvalVIDBadDetectionLineIsLocated() throws {
        let dir = try temporaryFolder("vid-tool-bad")
        let dets = dir + "/dets.txt"
        try "1 1 0.5 1 2 3 4\n2 40 0.5 1 2 3 4\n".write(toFile: dets, atomically: true, encoding: .utf8)
        let r = try runBuiltTool("dcn-eval", ["vid", "--annotations", annotations, "--imageset", framesList, "--detections", dets])
        #expect(r.status == 1 && r.stderr.contains("\(dets): line 2: class index '40' is not in 1...30"), "\(r)")
    }
}
