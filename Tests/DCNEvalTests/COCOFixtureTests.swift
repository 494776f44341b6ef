import DCNEval
import Foundation
import TestSupport
import Testing
import DCNAnnotations

struct ExpectedCase: Decodable, Sendable, CustomStringConvertible {
    let ground_truth: String
    let results: String
    let iou_type: String
    let stats: [String: Double]
    var description: String { "\(results) (\(iou_type))" }
}

struct ExpectedFile: Decodable { let cases: [ExpectedCase] }

func expectedCOCOCases() -> [ExpectedCase] {
    let data = try! Data(contentsOf: URL(fileURLWithPath: fixturePath("coco/expected_stats.json")))
    return try! JSONDecoder().decode(ExpectedFile.self, from: data).cases
}

@Test(arguments: expectedCOCOCases())
func cocoMatchesPycocotools(_ c: ExpectedCase) throws {
    for threads in [1, 2] {
        let (_, result) = try evaluateCOCOFiles(groundTruthPath: fixturePath("coco/" + c.ground_truth),
                                                resultsPath: fixturePath("coco/" + c.results),
                                                iouType: COCOIoUType(rawValue: c.iou_type)!, threads: threads)
        var worst = 0.0
        for (name, ours) in zip(COCOStats.names, result.stats.values) {
            let ref = try #require(c.stats[name])
            worst = max(worst, abs(ours - ref))
            #expect(abs(ours - ref) <= 1e-12, "\(c) \(name): ours \(ours), pycocotools \(ref)")
        }
        print("\(c) threads=\(threads): max |ours - pycocotools| = \(worst)")
    }
}
