// Semantic-segmentation evaluation (issue 32) against the reference numbers of torchvision's
// references/segmentation ConfusionMatrix and mmseg's IoUMetric (Tests/Fixtures/
// generate_segmentation.py): exact confusion counts, IoU and mIoU within 1e-9, a class absent from
// labels and predictions left out of the mean, void pixels skipped; and dcn-eval seg on the same
// files, with its errors.
import DCNData
import DCNEval
import Foundation
import TestSupport
import Testing

/// Tests/Fixtures/segmentation/expected.json.
struct SegmentationExpected: Decodable {
    var classes: Int
    var confusion: [[Int]]
    var iou: [Double?]
    var mIoU: Double
    var aAcc: Double
    var acc: [Double?]
    var pixels: Int

    static func load() throws -> SegmentationExpected {
        try JSONDecoder().decode(SegmentationExpected.self, from: Data(contentsOf: URL(fileURLWithPath: fixturePath("segmentation/expected.json"))))
    }
}

/// The fixture's confusion matrix, read as dcn-eval seg reads the files.
func fixtureMatrix(classes: Int) throws -> (ConfusionMatrix, Int) {
    let (pairs, unmatched) = try matchLabelMaps(labels: fixturePath("segmentation/labels"), predictions: fixturePath("segmentation/predictions"))
    #expect(unmatched == 0 && pairs.map(\.key) == ["img_a", "img_b", "img_c"])
    var m = ConfusionMatrix(classes: classes)
    for p in pairs {
        let label = try readLabelMap(path: p.label, classes: classes), prediction = try readLabelMap(path: p.prediction, classes: classes)
        #expect(label.width == prediction.width && label.height == prediction.height)
        m.add(labels: label.labels, predictions: prediction.labels)
    }
    return (m, pairs.count)
}

/// `a` and `b` agree: both nil, or within `tolerance`.
func close(_ a: Double?, _ b: Double?, _ tolerance: Double = 1e-9) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (x?, y?): return abs(x - y) <= tolerance
    default: return false
    }
}

@Suite("Semantic segmentation evaluation")
struct SegmentationEvalTests {
    @Test("Fixture: exact confusion counts, IoU, mIoU and aAcc as torchvision's ConfusionMatrix and mmseg's IoUMetric")
    func fixtureMatchesReferences() throws {
        let expected = try SegmentationExpected.load()
        let (m, images) = try fixtureMatrix(classes: expected.classes)
        for a in 0..<expected.classes {
            for b in 0..<expected.classes { #expect(m[a, b] == expected.confusion[a][b], "label \(a), predicted \(b)") }
            #expect(m[a, expected.classes] == 0, "no prediction of void at a labelled pixel")
        }
        let result = SegmentationResult(matrix: m, images: images)
        #expect(result.pixels == expected.pixels)
        #expect(zip(result.iou, expected.iou).allSatisfy { close($0, $1) }, "\(result.iou) vs \(expected.iou)")
        #expect(result.iou[3] == nil && result.classesPresent == 4, "class 3 is predicted only at void pixels: absent")
        #expect(close(result.meanIoU, expected.mIoU), "\(String(describing: result.meanIoU)) vs \(expected.mIoU)")
        #expect(close(result.pixelAccuracy, expected.aAcc) && zip(result.accuracy, expected.acc).allSatisfy { close($0, $1) })
        print("segmentation fixture: mIoU \(result.meanIoU!) (reference \(expected.mIoU)), IoU \(result.iou)")
    }

    @Test("Matrices of shards add up to the matrix of the whole split")
    func shardsAddUp() throws {
        let expected = try SegmentationExpected.load()
        let (whole, _) = try fixtureMatrix(classes: expected.classes)
        let (pairs, _) = try matchLabelMaps(labels: fixturePath("segmentation/labels"), predictions: fixturePath("segmentation/predictions"))
        var shards = [ConfusionMatrix(classes: expected.classes), ConfusionMatrix(classes: expected.classes)]
        for (i, p) in pairs.enumerated() {
            shards[i % 2].add(labels: try readLabelMap(path: p.label, classes: 5).labels, predictions: try readLabelMap(path: p.prediction, classes: 5).labels)
        }
        var summed = shards[0]
        summed.add(shards[1])
        #expect(summed == whole)
        #expect(ConfusionMatrix(classes: 5, counts: whole.counts.map { Int(Double($0)) }) == whole)
    }

    @Test("Void labels are skipped; a void prediction at a labelled pixel is a miss for the label's class (mmseg)")
    func voidHandling() {
        var m = ConfusionMatrix(classes: 3)
        // labels:      0 0 1 1 255 2
        // predictions: 0 1 1 255 2 255
        m.add(labels: [0, 0, 1, 1, 255, 2], predictions: [0, 1, 1, 255, 2, 255])
        let r = SegmentationResult(matrix: m, images: 1)
        // class 0: I 1, label 2, predicted 1 -> U 2; class 1: I 1, label 2, predicted 2 -> U 3;
        // class 2: I 0, label 1, predicted 0 -> U 1.
        #expect(m.intersection == [1, 1, 0] && m.labelArea == [2, 2, 1] && m.predictedArea == [1, 2, 0])
        #expect(r.iou == [0.5, 1.0 / 3, 0])
        #expect(r.meanIoU == (0.5 + 1.0 / 3 + 0) / 3 && r.pixelAccuracy == 2.0 / 5)
        var evaluator = SegmentationEvaluator(classes: 3, classNames: ["a", "b", "c"])
        evaluator.process(labels: [0, 0, 1, 1, 255, 2], predictions: [0, 1, 1, 255, 2, 255])
        let report = evaluator.evaluate()
        #expect(report.metrics.map(\.name) == ["mIoU", "aAcc", "IoU/a", "IoU/b", "IoU/c"] && report.metrics[0].value == r.meanIoU && evaluator.result.matrix == m)
        evaluator.reset()
        #expect(evaluator.images == 0 && evaluator.matrix == ConfusionMatrix(classes: 3))
        var empty = ConfusionMatrix(classes: 2)
        empty.add(labels: [255, 255], predictions: [0, 1])
        let none = SegmentationResult(matrix: empty, images: 1)
        #expect(none.iou == [nil, nil] && none.meanIoU == nil && none.pixelAccuracy == nil)
        #expect(none.jsonText.contains("\"mIoU\": null") && none.jsonText.contains("\"IoU\": [null, null]"))
    }

    @Test("nan-mean of more than 8 classes adds as numpy does (pairwise, absent classes as 0)")
    func nanMeanOrder() {
        var m = ConfusionMatrix(classes: 21)
        var labels = [UInt8](), predictions = [UInt8]()
        for c in 0..<21 where c != 7 {
            for k in 0..<(c + 3) { labels.append(UInt8(c)); predictions.append(UInt8(k % 3 == 0 ? (c + 1) % 21 : c)) }
        }
        m.add(labels: labels, predictions: predictions)
        let r = SegmentationResult(matrix: m, images: 1)
        let iou = r.iou
        #expect(iou[7] != nil, "class 7 is predicted, so present (IoU 0)")
        let values = iou.map { $0 ?? 0 }
        #expect(r.meanIoU == pairwiseSum(values) / Double(iou.compactMap { $0 }.count))
        #expect(abs(r.meanIoU! - values.reduce(0, +) / Double(iou.compactMap { $0 }.count)) < 1e-15)
    }

    @Test("dcn-eval seg prints the table and writes the fixture's numbers to --json")
    func toolOnFixture() throws {
        let expected = try SegmentationExpected.load()
        let dir = try temporaryFolder("seg-tool")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let json = dir + "/seg.json"
        let run = try runBuiltTool("dcn-eval", ["seg", "--labels", fixturePath("segmentation/labels"), "--predictions", fixturePath("segmentation/predictions"),
                                                "--class-names", "bg,a,b,absent,d", "--json", json, "--threads", "2"])
        #expect(run.status == 0 && run.stdout.contains("absent   |       - |") && run.stdout.contains("mIoU 59.69 over 4 classes"), "\(run)")
        struct Written: Decodable { var mIoU: Double?; var IoU: [Double?]; var aAcc: Double?; var classes: [String]; var images: Int; var pixels: Int }
        let written = try JSONDecoder().decode(Written.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
        #expect(close(written.mIoU, expected.mIoU) && zip(written.IoU, expected.iou).allSatisfy { close($0, $1) } && written.IoU.count == 5)
        #expect(written.IoU[3] == nil && written.classes == ["bg", "a", "b", "absent", "d"] && written.images == 3 && written.pixels == expected.pixels)
    }

    @Test("dcn-eval seg: a missing prediction, a prediction of another size, a bad value and a corrupt file are errors naming the files")
    func toolErrors() throws {
        let dir = try temporaryFolder("seg-tool-errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let labels = fixturePath("segmentation/labels"), predictions = dir + "/predictions"
        func run(_ setUp: () throws -> Void, classes: Int = 5) throws -> ToolResult {
            try? FileManager.default.removeItem(atPath: predictions)
            try FileManager.default.copyItem(atPath: fixturePath("segmentation/predictions"), toPath: predictions)
            try setUp()
            return try runBuiltTool("dcn-eval", ["seg", "--labels", labels, "--predictions", predictions, "--classes", String(classes)])
        }
        let b = predictions + "/img_b.png"
        let missing = try run { try FileManager.default.removeItem(atPath: b) }
        #expect(missing.status == 1 && missing.stderr.contains("\(labels)/img_b.png: has no prediction: expected \(b)"), "\(missing)")
        let size = try run {
            try FileManager.default.removeItem(atPath: b)
            try FileManager.default.copyItem(atPath: predictions + "/img_a.png", toPath: b)
        }
        #expect(size.status == 1 && size.stderr.contains("\(b): is 13x9 pixels but its label map \(labels)/img_b.png is 7x16"), "\(size)")
        let value = try run({}, classes: 3)
        #expect(value.status == 1 && value.stderr.contains("value 3 at x") && value.stderr.contains("is neither a class index 0...2 nor 255"), "\(value)")
        let corrupt = try run { try Data("not a png".utf8).write(to: URL(fileURLWithPath: b)) }
        #expect(corrupt.status == 1 && corrupt.stderr.contains("\(b): "), "\(corrupt)")
        let nested = try run {
            try FileManager.default.createDirectory(atPath: predictions + "/sub", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: b, toPath: predictions + "/sub/img_b.png")
        }
        #expect(nested.status == 1 && nested.stderr.contains("has the same name (img_b) as"), "\(nested)")
        let noFolder = try runBuiltTool("dcn-eval", ["seg", "--labels", dir + "/nowhere", "--predictions", predictions])
        #expect(noFolder.status != 0 && noFolder.stderr.contains("--labels \(dir)/nowhere: no such folder"), "\(noFolder)")
    }
}
