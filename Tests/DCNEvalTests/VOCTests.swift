import DCNEval
import Foundation
import TestSupport
import Testing
import DCNAnnotations

private struct ExpectedVOC: Decodable {
    struct Metric: Decodable { let iou_threshold: Double; let metric: String; let ap: [String: Double]; let mAP: Double }
    let classes: [String]
    let metrics: [Metric]
}

private func expectedVOC() throws -> ExpectedVOC {
    try JSONDecoder().decode(ExpectedVOC.self, from: Data(contentsOf: URL(fileURLWithPath: fixturePath("voc/expected_ap.json"))))
}

@Test func vocMatchesReference() throws {
    let expected = try expectedVOC()
    let dataset = try VOCDataset.load(devkit: fixturePath("voc/VOCdevkit/VOC2007"), split: "test")
    #expect(dataset.classNames == expected.classes)
    let detections = try loadVOCResultFiles(directory: fixturePath("voc/results"), classNames: expected.classes)
    let results = try evaluateVOC(dataset: dataset, detections: detections, classNames: expected.classes,
                                  iouThresholds: [0.5, 0.7], metrics: [.voc07, .area])
    #expect(results.count == expected.metrics.count)
    var worst = 0.0
    for (ours, ref) in zip(results, expected.metrics) {
        #expect(ours.iouThreshold == ref.iou_threshold && ours.metric.rawValue == ref.metric)
        for (c, ap) in ours.ap { worst = max(worst, abs(ap - ref.ap[c]!)) }
        worst = max(worst, abs(ours.mAP - ref.mAP))
    }
    print("VOC: max |ours - reference| = \(worst)")
    #expect(worst <= 1e-12)

    // The --json layout round-trips into the reference file's shape.
    let text = vocResultsJSON(results, classNames: expected.classes)
    let back = try JSONDecoder().decode(ExpectedVOC.self, from: Data(text.utf8))
    #expect(back.classes == expected.classes)
    for (a, b) in zip(back.metrics, expected.metrics) { #expect(a.ap == b.ap || a.ap.allSatisfy { abs($0.value - b.ap[$0.key]!) <= 1e-12 }) }
}

@Test func vocEvaluatorOnCOCOStyleDetections() throws {
    // The same detections given in memory as COCO boxes ([x, y, w, h] = [x1 - 1, y1 - 1, x2 - x1 + 1, ...]).
    let expected = try expectedVOC()
    let dataset = try VOCDataset.load(devkit: fixturePath("voc/VOCdevkit/VOC2007"), split: "test")
    let files = try loadVOCResultFiles(directory: fixturePath("voc/results"), classNames: expected.classes)
    var evaluator = VOCEvaluator(dataset: dataset, classNames: expected.classes, iouThresholds: [0.5], metrics: [.area])
    for (k, c) in expected.classes.enumerated() {
        for d in files[c]! {
            let box = COCOBox(x: d.box.xmin - 1, y: d.box.ymin - 1, width: d.box.xmax - d.box.xmin + 1, height: d.box.ymax - d.box.ymin + 1)
            evaluator.process(imageID: d.imageID, detections: [COCODetection(categoryID: k + 1, score: d.score, box: box)])
        }
    }
    let report = try evaluator.evaluate()
    let ref = expected.metrics.first { $0.iou_threshold == 0.5 && $0.metric == "area" }!
    #expect(report.metrics[0].name == "AP50/area/mAP")
    #expect(abs(report.metrics[0].value - ref.mAP) <= 1e-9)
}

@Test func malformedXMLNamesFileAndElement() throws {
    let file = "/x/Annotations/000001.xml"
    do {
        _ = try parseVOCAnnotation(data: Data("<annotation><object><name>cat</name><bndbox><xmin>1</xmin></object></annotation>".utf8), file: file)
        Issue.record("expected an error")
    } catch let e as VOCError {
        #expect(e.file == file && e.message.contains("malformed XML") && e.message.contains("<annotation>"), "\(e)")
    }
    do {
        _ = try parseVOCAnnotation(data: Data("<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax></bndbox></object></annotation>".utf8), file: file)
        Issue.record("expected an error")
    } catch let e as VOCError {
        #expect(e.file == file && e.message.contains("<ymax>"))
    }
    do {
        _ = try parseVOCAnnotation(data: Data("<annotation><object><name>cat</name><bndbox><xmin>a</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>".utf8), file: file)
        Issue.record("expected an error")
    } catch let e as VOCError {
        #expect(e.message.contains("<xmin>") && e.message.contains("'a'"))
    }
    let ok = try parseVOCAnnotation(data: Data("<annotation><object><name> dog </name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>".utf8), file: file)
    #expect(ok == [VOCObject(name: "dog", box: VOCBox(xmin: 1, ymin: 2, xmax: 3, ymax: 4), difficult: true)])
}

/// The fixture 000005.xml (4 objects) with each `<pose>` replaced by `depth` nested elements.
func vocXMLWithNestedPose(depth: Int) throws -> Data {
    let xml = try String(contentsOfFile: fixturePath("voc/VOCdevkit/VOC2007/Annotations/000005.xml"), encoding: .utf8)
    let nested = String(repeating: "<p>", count: depth) + String(repeating: "</p>", count: depth)
    return Data(xml.replacingOccurrences(of: "<pose>Unspecified</pose>", with: nested).utf8)
}

/// Issue 29, defect 2: 50,000 nested elements crashed every reader (the tree's recursive
/// deinit overflowed the stack); now a located error, while VOC's own nesting still reads.
@Test func deeplyNestedXMLIsALocatedError() throws {
    let file = "/x/Annotations/000005.xml"
    #expect(try parseVOCAnnotation(data: vocXMLWithNestedPose(depth: 20), file: file).count == 4)
    for depth in [100, 50_000] {
        do {
            _ = try parseVOCAnnotation(data: vocXMLWithNestedPose(depth: depth), file: file)
            Issue.record("depth \(depth): expected an error")
        } catch let e as VOCError {
            #expect(e.file == file && e.message.hasPrefix("elements nested more than 64 levels deep at line 7 (inside <annotation><object><p>...)"), "\(e)")
        }
    }
}

/// Issue 29, defect 17: `<name><![CDATA[arrow]]></name>` read as an empty name.
@Test func cdataTextIsRead() throws {
    let xml = "<annotation><object><name><![CDATA[arrow]]></name><difficult><![CDATA[1]]></difficult><bndbox><xmin>1</xmin><ymin> <![CDATA[2]]> </ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>"
    #expect(try parseVOCAnnotation(data: Data(xml.utf8), file: "f") == [VOCObject(name: "arrow", box: VOCBox(xmin: 1, ymin: 2, xmax: 3, ymax: 4), difficult: true)])
}
