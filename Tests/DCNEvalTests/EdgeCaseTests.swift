import DCNEval
import Foundation
import TestSupport
import Testing
import DCNAnnotations

private struct EdgeFile: Decodable {
    struct Polygon: Decodable { let height: Int; let width: Int; let polygons: [[Double]]; let area: Int; let bbox: [Double]; let counts: String }
    struct RLEString: Decodable { let height: Int; let width: Int; let mask_column_major: [UInt8]; let counts: String; let area: Int; let bbox: [Double] }
    struct IoU: Decodable { let height: Int; let width: Int; let detections: [String]; let ground_truths: [String]; let crowd: [Int]; let iou: [[Double]] }
    struct Evaluation: Decodable { let name: String; let ground_truth: COCOGroundTruth; let results: [COCOResult]; let iou_type: String; let stats: [Double] }
    let polygons: [Polygon]
    let rle_strings: [RLEString]
    let iou: IoU
    let evaluations: [Evaluation]
}

private let edge: EdgeFile = {
    let data = try! Data(contentsOf: URL(fileURLWithPath: fixturePath("coco/edge_cases.json")))
    return try! JSONDecoder().decode(EdgeFile.self, from: data)
}()

@Test func polygonToRLEMatchesPycocotools() throws {
    for p in edge.polygons {
        let rle = try RLE(polygons: p.polygons, height: p.height, width: p.width)
        #expect(rle.area == p.area, "\(p.polygons)")
        #expect(rle.boundingBox == p.bbox, "\(p.polygons)")
        #expect(rle.compressedString == p.counts, "\(p.polygons)")
    }
}

@Test func compressedStringRoundTrip() throws {
    for s in edge.rle_strings {
        let encoded = RLE(height: s.height, width: s.width, columnMajorMask: s.mask_column_major)
        #expect(encoded.compressedString == s.counts)
        let decoded = try RLE(height: s.height, width: s.width, compressed: s.counts)
        #expect(decoded == encoded)
        #expect(try decoded.decode() == s.mask_column_major)
        #expect(decoded.area == s.area)
        #expect(decoded.boundingBox == s.bbox)
    }
    // Large counts need several 5-bit groups and negative differences.
    let big = RLE(height: 1000, width: 1000, counts: [123_456, 7, 800_000, 3, 76_534])
    #expect(try RLE(height: 1000, width: 1000, compressed: big.compressedString) == big)
}

@Test func malformedCompressedStringsThrow() {
    #expect(throws: MaskError.self) { try RLE(height: 2, width: 2, compressed: "0~") }  // outside the alphabet
    #expect(throws: MaskError.self) { try RLE(height: 2, width: 2, compressed: "P") }   // a group announcing more, then the end
    #expect(throws: MaskError.self) { try RLE(height: 2, width: 2, compressed: "@") }  // negative run
}

@Test func maskIoUWithCrowdMatchesPycocotools() throws {
    let e = edge.iou
    let dts = try e.detections.map { try RLE(height: e.height, width: e.width, compressed: $0) }
    let gts = try e.ground_truths.map { try RLE(height: e.height, width: e.width, compressed: $0) }
    for (d, dt) in dts.enumerated() {
        for (g, gt) in gts.enumerated() {
            #expect(RLE.iou(detection: dt, groundTruth: gt, crowd: e.crowd[g] != 0) == e.iou[d][g])
        }
    }
}

@Test func mergeIsUnion() throws {
    let a = try RLE(polygon: [0, 0, 10, 0, 10, 10, 0, 10], height: 20, width: 20)
    let b = try RLE(polygon: [5, 5, 15, 5, 15, 15, 5, 15], height: 20, width: 20)
    let u = RLE.merge([a, b])
    let i = RLE.merge([a, b], intersect: true)
    let ma = try a.decode(), mb = try b.decode()
    #expect(try u.decode() == zip(ma, mb).map { $0 | $1 })
    #expect(try i.decode() == zip(ma, mb).map { $0 & $1 })
    #expect(u.area + i.area == a.area + b.area)
}

@Test(arguments: edge.evaluations.map(\.name))
func smallEvaluationsMatchPycocotools(_ name: String) throws {
    let c = edge.evaluations.first { $0.name == name }!
    let result = try evaluateCOCO(groundTruth: c.ground_truth, results: c.results, iouType: COCOIoUType(rawValue: c.iou_type)!, threads: 2)
    for (ours, ref) in zip(result.stats.values, c.stats) {
        #expect(abs(ours - ref) <= 1e-12, "\(name): \(result.stats.values) vs \(c.stats)")
    }
}

@Test func unknownCategoryIsDroppedLikePycocotools() throws {
    let withUnknown = edge.evaluations[0], without = edge.evaluations[1]
    let a = try evaluateCOCO(groundTruth: withUnknown.ground_truth, results: withUnknown.results, iouType: .bbox)
    let b = try evaluateCOCO(groundTruth: without.ground_truth, results: without.results, iouType: .bbox)
    #expect(a.stats == b.stats)
}

@Test func unknownImageIsAClearError() throws {
    let c = edge.evaluations[0]
    var results = c.results
    results.append(COCOResult(imageID: 12345, categoryID: 1, score: 0.5, bbox: COCOBox(x: 0, y: 0, width: 5, height: 5)))
    do {
        _ = try evaluateCOCO(groundTruth: c.ground_truth, results: results, iouType: .bbox)
        Issue.record("expected an error")
    } catch let e as COCOEvalError {
        #expect(e.message.contains("12345") && e.message.contains("not in the ground truth"))
    }
}

private func temporaryFile(_ name: String, _ text: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dcn-eval-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent(name).path
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return path
}

@Test func emptyResultsFileIsAClearError() throws {
    let path = try temporaryFile("empty.json", "[]\n")
    do {
        _ = try COCOResult.loadArray(path: path)
        Issue.record("expected an error")
    } catch let e as COCOFormatError {
        #expect(e.file == path && e.message.contains("empty"))
    }
}

@Test func malformedJSONNamesFileAndLine() throws {
    let path = try temporaryFile("bad.json", "[\n {\"image_id\": 1, \"category_id\": 1, \"score\": 0.5,\n  \"bbox\": [1, 2, 3]}\n]")
    do {
        _ = try COCOResult.loadArray(path: path)
        Issue.record("expected an error")
    } catch let e as JSONReadError {
        #expect(e.file == path && e.line == 3 && e.message.contains("4 numbers"))
    }
    let path2 = try temporaryFile("trunc.json", "[{\"image_id\": 1,")
    #expect(throws: JSONReadError.self) { try COCOResult.loadArray(path: path2) }
    let path3 = try temporaryFile("obj.json", "{\"annotations\": []}")
    #expect(throws: COCOFormatError.self) { try COCOResult.loadArray(path: path3) }
}

@Test func imagesWithoutGroundTruthOnlyAddFalsePositives() throws {
    // One image with one perfect detection; adding an image without ground truth and a
    // lower-scored detection on it leaves AP unchanged, a higher-scored one lowers it.
    let gt = COCOGroundTruth(
        images: [COCOImage(id: 1, width: 100, height: 100), COCOImage(id: 2, width: 100, height: 100)],
        annotations: [COCOAnnotation(id: 1, imageID: 1, categoryID: 1, bbox: COCOBox(x: 10, y: 10, width: 40, height: 40), area: 1600)],
        categories: [COCOCategory(id: 1, name: "a")])
    let hit = COCOResult(imageID: 1, categoryID: 1, score: 0.9, bbox: COCOBox(x: 10, y: 10, width: 40, height: 40))
    let base = try evaluateCOCO(groundTruth: gt, results: [hit], iouType: .bbox)
    #expect(abs(base.stats.AP - 1) < 1e-15)  // precision is tp / (tp + fp + eps)
    let low = try evaluateCOCO(groundTruth: gt, results: [hit, COCOResult(imageID: 2, categoryID: 1, score: 0.5, bbox: COCOBox(x: 0, y: 0, width: 9, height: 9))], iouType: .bbox)
    #expect(low.stats.AP == base.stats.AP)
    let high = try evaluateCOCO(groundTruth: gt, results: [hit, COCOResult(imageID: 2, categoryID: 1, score: 0.95, bbox: COCOBox(x: 0, y: 0, width: 9, height: 9))], iouType: .bbox)
    #expect(abs(high.stats.AP - 0.5) < 1e-15)
}

@Test func pairwiseSumMatchesNumpyOrder() {
    // 1e16 + 1 + ... : the order of additions decides the result; these values were checked
    // with numpy (np.sum of 200 values: 1e16 followed by 199 ones -> 1.0000000000000188e16).
    let v = [1e16] + Array(repeating: 1.0, count: 199)
    #expect(pairwiseSum(v) == 1.0000000000000188e16)
}

@Test func inMemoryEvaluatorMatchesFiles() throws {
    let gt = try COCOGroundTruth.load(path: fixturePath("coco/instances_val2014_100.json"))
    let results = try COCOResult.loadArray(path: fixturePath("coco/instances_val2014_fakebbox100_results.json"))
    var evaluator = COCOEvaluator(groundTruth: gt, iouTypes: [.bbox])
    let byImage = Dictionary(grouping: results, by: \.imageID)
    // Feed images in file order of first appearance so detection ids match the file.
    var seen = Set<Int>()
    for r in results where !seen.contains(r.imageID) {
        seen.insert(r.imageID)
        evaluator.process(imageID: r.imageID, detections: byImage[r.imageID]!.map { COCODetection(categoryID: $0.categoryID, score: $0.score, box: $0.bbox!) })
    }
    let report = try evaluator.evaluate()
    let expected = expectedCOCOCases().first { $0.iou_type == "bbox" && $0.ground_truth == "instances_val2014_100.json" }!
    #expect(abs(report.metrics[0].value - expected.stats["AP"]!) <= 1e-12)
    evaluator.reset()
    #expect(evaluator.results.isEmpty)
}

/// In memory, a model that detects nothing scores 0 where there is ground truth (an empty results
/// *file* is still an error, as in pycocotools).
@Test func emptyInMemoryResultsScoreZero() throws {
    let gt = COCOGroundTruth(images: [COCOImage(id: 1, width: 10, height: 10)],
                             annotations: [COCOAnnotation(id: 1, imageID: 1, categoryID: 1, bbox: COCOBox(x: 1, y: 1, width: 4, height: 4), area: 16)],
                             categories: [COCOCategory(id: 1, name: "a")])
    let result = try evaluateCOCO(groundTruth: gt, results: [], iouType: .bbox, threads: 1)
    #expect(result.stats.AP == 0 && result.stats.AR100 == 0)
}
