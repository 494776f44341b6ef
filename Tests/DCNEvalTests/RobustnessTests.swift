// Bad input found by trying it (issue 12), in process: masks whose runs do not cover their size,
// VOC result lines with nan/inf or CRLF line ends, unreadable paths, broken JSON strings. Every
// error names the file and the entry at fault.
import DCNEval
import Foundation
import TestSupport
import Testing
import DCNAnnotations

/// Writes `text` to `folder/name` and returns the path.
@discardableResult
func writeFile(_ folder: String, _ name: String, _ text: String) throws -> String {
    let path = folder + "/" + name
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return path
}

/// A 190x132 image with one annotation (id 7) whose segmentation is `segmentation` (JSON).
func groundTruthJSON(segmentation: String) -> String {
    """
    {"images": [{"id": 1, "width": 190, "height": 132, "file_name": "a.jpg"}],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "area": 100, "bbox": [10, 10, 10, 10], "iscrowd": 0,
                      "segmentation": \(segmentation)}],
     "categories": [{"id": 1, "name": "a"}]}
    """
}

/// One detection on image 1 with the given segmentation (JSON).
func resultsJSON(segmentation: String) -> String {
    "[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.9, \"segmentation\": \(segmentation)}]"
}

let squarePolygon = "[[10, 10, 20, 10, 20, 20, 10, 20]]"
/// Runs add up to 75,245 pixels, more than 132 x 190 = 25,080 (made the IoU loop spin forever).
let overLongRLE = "{\"size\": [132, 190], \"counts\": \"5X_Y2\"}"
/// Runs add up to 30 pixels, fewer than 25,080.
let shortRLE = "{\"size\": [132, 190], \"counts\": [10, 20]}"

@Suite("Bad masks and result files")
struct RobustnessTests {
    @Test("An RLE whose runs do not add up to h*w is an error naming the file and the entry, in results and ground truth",
          arguments: [overLongRLE, shortRLE])
    func rleThatDoesNotCoverItsSize(_ bad: String) throws {
        let dir = try temporaryFolder("rle")
        let goodGT = try writeFile(dir, "gt.json", groundTruthJSON(segmentation: squarePolygon))
        let badGT = try writeFile(dir, "bad_gt.json", groundTruthJSON(segmentation: bad))
        let goodResults = try writeFile(dir, "results.json", resultsJSON(segmentation: "{\"size\": [132, 190], \"counts\": [1500, 20, 23560]}"))
        let badResults = try writeFile(dir, "bad_results.json", resultsJSON(segmentation: bad))
        // The good pair evaluates.
        _ = try evaluateCOCOFiles(groundTruthPath: goodGT, resultsPath: goodResults, iouType: .segm, threads: 1)
        for (gt, results, culprit, entry) in [(goodGT, badResults, badResults, "detection 0"), (badGT, goodResults, badGT, "annotations[0] (id 7)"),
                                              (badGT, badResults, badGT, "annotations[0] (id 7)")] {
            let start = Date()
            do {
                _ = try evaluateCOCOFiles(groundTruthPath: gt, resultsPath: results, iouType: .segm, threads: 1)
                Issue.record("\(gt) + \(results): expected an error")
            } catch let e as COCOFormatError {
                #expect(e.file == culprit, "\(e)")
                #expect(e.message.contains(entry) && e.message.contains("132x190 = 25080"), "\(e)")
            }
            #expect(Date().timeIntervalSince(start) < 1)
        }
        // A box evaluation does not read the masks.
        _ = try evaluateCOCOFiles(groundTruthPath: badGT, resultsPath: try writeFile(dir, "boxes.json",
            "[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.9, \"bbox\": [10, 10, 10, 10]}]"), iouType: .bbox, threads: 1)
    }

    @Test("The mask IoU ends even for masks whose runs add up to different totals")
    func iouOfMismatchedMasksEnds() throws {
        let valid = RLE(height: 10, width: 10, counts: [0, 100])
        let tooLong = RLE(height: 10, width: 10, counts: [0, 200])
        let tooShort = RLE(height: 10, width: 10, counts: [0, 50])
        #expect(throws: MaskError.self) { try tooLong.validate() }
        #expect(throws: MaskError.self) { try tooShort.validate() }
        #expect(throws: MaskError.self) { try tooLong.decode() }
        #expect(RLE.iou(detection: tooLong, groundTruth: valid, crowd: false) == 1)
        #expect(RLE.iou(detection: valid, groundTruth: tooLong, crowd: false) == 1)
        #expect((0...1).contains(RLE.iou(detection: tooShort, groundTruth: valid, crowd: false)))
        #expect(RLE.merge([tooShort, valid]).counts == [0, 50])
        // In memory too: the evaluator rejects such a mask with the detection's index.
        let gt = COCOGroundTruth(images: [COCOImage(id: 1, width: 10, height: 10)],
                                 annotations: [COCOAnnotation(id: 1, imageID: 1, categoryID: 1, bbox: COCOBox(x: 0, y: 0, width: 10, height: 10),
                                                              area: 100, segmentation: .uncompressedRLE(height: 10, width: 10, counts: [0, 100]))],
                                 categories: [COCOCategory(id: 1, name: "a")])
        var evaluator = COCOEvaluator(groundTruth: gt, iouTypes: [.segm], threads: 1)
        evaluator.process(imageID: 1, detections: [COCODetection(categoryID: 1, score: 1, box: COCOBox(x: 0, y: 0, width: 10, height: 10), mask: tooLong)])
        #expect(throws: COCOEvalError.self) { try evaluator.evaluate() }
    }

    @Test("Mask sizes that are negative or above 2^32 pixels, and polygons reaching absurdly far out, are errors, not traps")
    func absurdMaskSizes() throws {
        #expect(throws: MaskError.self) { try RLE(polygons: [[0, 0, 5, 0, 5, 5]], height: 3_000_000_000, width: 3_000_000_000) }
        #expect(throws: MaskError.self) { try RLE(polygons: [], height: -1, width: 5) }
        #expect(throws: MaskError.self) { try RLE(height: -2, width: 3, counts: []).decode() }
        #expect(throws: MaskError.self) { try COCOSegmentation.uncompressedRLE(height: Int.max, width: 2, counts: [1]).rle(height: 0, width: 0) }
        // An edge 70 million pixels long: refused quickly (it needed 5.6 GB before) ...
        let start = Date()
        #expect(throws: MaskError.self) { try RLE(polygon: [10, 10, 70_000_000, 10, 20, 20], height: 132, width: 190) }
        #expect(Date().timeIntervalSince(start) < 1)
        // ... while one 100,000 pixels outside the image still rasterises, clipped.
        let far = try RLE(polygon: [0, 0, 100_000, 0, 100_000, 10, 0, 10], height: 20, width: 20)
        #expect(far.area == 200 && far.boundingBox == [0, 0, 20, 10])
    }

    @Test("Non-finite scores and boxes in COCO results are errors with the line")
    func nonFiniteCOCONumbers() throws {
        let dir = try temporaryFolder("inf")
        let score = try writeFile(dir, "score.json", "[{\"image_id\": 1, \"category_id\": 1,\n \"score\": 1e400, \"bbox\": [1, 2, 3, 4]}]")
        let box = try writeFile(dir, "box.json", "[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.5,\n \"bbox\": [1, -1e999, 3, 4]}]")
        for path in [score, box] {
            do {
                _ = try COCOResult.loadArray(path: path)
                Issue.record("expected an error")
            } catch let e as JSONReadError {
                #expect(e.file == path && e.line == 2 && e.message.contains("finite"), "\(e)")
            }
        }
    }

    @Test("VOC result files: CRLF line ends read as LF; nan, inf and unknown images are errors with file and line")
    func vocResultLines() throws {
        let dir = try temporaryFolder("voc-lines")
        let lines = ["000005 0.9 10 20 30 40", "000007 0.25 1.5 2 3 4", ""]
        try writeFile(dir, "comp4_det_test_cat.txt", lines.joined(separator: "\n"))
        try writeFile(dir, "comp4_det_test_dog.txt", lines.joined(separator: "\r\n"))
        let read = try loadVOCResultFiles(directory: dir, classNames: ["cat", "dog"], imageIDs: ["000005", "000007"])
        #expect(read["cat"]!.count == 2 && read["cat"] == read["dog"])
        for (bad, expected) in [("000005 nan 10 20 30 40", "finite"), ("000005 0.5 10 20 inf 40", "finite"), ("000005 -inf 1 2 3 4", "finite"),
                                ("000009 0.5 1 2 3 4", "not in the split"), ("000005 0.5 1 2 3", "expected 'image_id score x1 y1 x2 y2'")] {
            let path = try writeFile(dir, "comp4_det_test_bird.txt", "000007 0.25 1.5 2 3 4\r\n" + bad + "\r\n")
            do {
                _ = try loadVOCResultFiles(directory: dir, classNames: ["bird"], imageIDs: ["000005", "000007"])
                Issue.record("\(bad): expected an error")
            } catch let e as VOCError {
                #expect(e.file == path && e.message.hasPrefix("line 2: ") && e.message.contains(expected), "\(e)")
            }
        }
    }

    @Test("Unreadable paths say why: a directory, a missing file")
    func unreadablePaths() throws {
        let dir = try temporaryFolder("paths")
        #expect(fileReadProblem(dir) == "is a directory")
        #expect(fileReadProblem(dir + "/missing.json") == "no such file")
        #expect(fileWriteProblem(dir) == "is a directory")
        #expect(fileWriteProblem(dir + "/missing/x.json") == "the folder \(dir)/missing does not exist")
        #expect(fileWriteProblem(dir + "/x.json") == nil)
        let file = try writeFile(dir, "file", "x")
        #expect(folderProblem(file) == "is a file, not a folder")
        #expect(folderCreateProblem(file + "/sub") == "\(file) is a file, not a folder")
        let loaders: [() throws -> Void] = [{ _ = try COCOResult.loadArray(path: dir) }, { _ = try COCOGroundTruth.load(path: dir) },
                                            { _ = try COCOLeanFile.load(path: dir) }]
        for load in loaders {
            do {
                try load()
                Issue.record("expected an error")
            } catch let e as FileError {
                #expect(e.path == dir && e.message.hasPrefix("is a directory; expected a"), "\(e)")
            }
        }
        // A device or pipe is read to its end (here: empty, so a JSON error, not "permission").
        #expect(throws: JSONReadError.self) { try COCOGroundTruth.load(path: "/dev/null") }
        do {
            try writeFileAtomically(Data("{}".utf8), to: dir)
            Issue.record("expected an error")
        } catch let e as FileError {
            #expect(e.description == "\(dir): cannot write the file (is a directory)")
        }
        do {
            try createFolder(file + "/sub")
            Issue.record("expected an error")
        } catch let e as FileError {
            #expect(e.description.contains("\(file) is a file, not a folder"), "\(e)")
        }
    }

    @Test("A backslash at the end of the file and deep nesting are JSON errors, not traps")
    func jsonEdges() throws {
        let dir = try temporaryFolder("json")
        for (name, text, expected) in [("escape.json", "[{\"a\\", "unterminated string"),
                                       ("deep.json", "[{\"a\": " + String(repeating: "[", count: 100_000), "nested more than 256 levels")] {
            let path = try writeFile(dir, name, text)
            do {
                _ = try COCOResult.loadArray(path: path)
                Issue.record("\(name): expected an error")
            } catch let e as JSONReadError {
                #expect(e.file == path && e.message.contains(expected), "\(e)")
            }
        }
    }

    @Test("A --categories file is read strictly, with line and column")
    func categoriesFile() throws {
        let dir = try temporaryFolder("categories")
        let good = try writeFile(dir, "good.json", "{\"info\": {}, \"categories\": [{\"id\": 1, \"name\": \"ring\"}, {\"id\": 2}]}")
        #expect(try COCOCategory.loadList(path: good) == [COCOCategory(id: 1, name: "ring"), COCOCategory(id: 2, name: "2")])
        let bad = try writeFile(dir, "bad.json", "{\"categories\": [\n{\"id\": \"x\"}]}")
        do {
            _ = try COCOCategory.loadList(path: bad)
            Issue.record("expected an error")
        } catch let e as JSONReadError {
            #expect(e.file == bad && e.line == 2 && e.message.contains("expected a number"), "\(e)")
        }
        #expect(throws: COCOFormatError.self) { try COCOCategory.loadList(path: try writeFile(dir, "none.json", "{}")) }
    }

    @Test("Class lists: blanks trimmed, empty names dropped")
    func classLists() {
        #expect(parseClassList(" cat, dog ,,") == ["cat", "dog"])
        #expect(parseClassList(",").isEmpty && parseClassList(" , ").isEmpty)
    }
}

/// Loads `path` with every COCO ground-truth reader (the evaluator's and the training loader's):
/// each must throw a `JSONReadError`, which `check` inspects.
func expectEveryCOCOLoaderFails(_ path: String, _ check: (JSONReadError) -> Void) throws {
    let loads: [() throws -> Void] = [{ _ = try COCOGroundTruth.load(path: path) }, { _ = try COCOLeanFile.load(path: path) }]
    for load in loads {
        do {
            try load()
            Issue.record("expected an error")
        } catch let e as JSONReadError {
            check(e)
        }
    }
}

/// Issue 29, defect 17: an id of 2^53 or more read as "expected an integer, found
/// 9007199254740992.0"; now the message names the key and the range of exact integers.
@Test(arguments: [("\"id\": 7", "\"id\": 9007199254740992", "\"id\": 9007199254740992 is outside the range of exact integers, -(2^53 - 1) to 2^53 - 1 = 9007199254740991"),
                  ("\"image_id\": 1, \"category_id\"", "\"image_id\": -1e400, \"category_id\"", "\"image_id\": -1e400 is outside the range of exact integers, -(2^53 - 1) to 2^53 - 1 = 9007199254740991"),
                  ("\"id\": 7", "\"id\": 7.5", "\"id\": expected an integer, found 7.5")])
func integersBeyondTheExactRangeNameTheKey(_ replacing: (String, String, String)) throws {
    let (good, bad, expected) = replacing
    let dir = try temporaryFolder("ids")
    let path = try writeFile(dir, "gt.json", groundTruthJSON(segmentation: squarePolygon).replacingOccurrences(of: good, with: bad))
    try expectEveryCOCOLoaderFails(path) { e in #expect(e.file == path && e.line == 2 && e.message == expected, "\(e)") }
    // 2^53 - 1 is still an exact id.
    let largest = try writeFile(dir, "largest.json", groundTruthJSON(segmentation: squarePolygon).replacingOccurrences(of: "\"id\": 7", with: "\"id\": 9007199254740991"))
    #expect(try COCOGroundTruth.load(path: largest).annotations[0].id == 9_007_199_254_740_991)
}

/// Issue 29, defect 13: two ground-truth annotations with one id were both kept (AP 1.000 where
/// pycocotools, which indexes them by id, gives 0.777); now a located error in every loader.
@Test func duplicateAnnotationIDsAreALocatedError() throws {
    let dir = try temporaryFolder("duplicate-ids")
    let path = try writeFile(dir, "gt.json", """
        {"images": [{"id": 1, "width": 190, "height": 132, "file_name": "a.jpg"}],
         "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "area": 100, "bbox": [10, 10, 10, 10]},
                         {"id": 8, "image_id": 1, "category_id": 1, "area": 100, "bbox": [50, 10, 10, 10]},
                         {"id": 7, "image_id": 1, "category_id": 1, "area": 100, "bbox": [90, 10, 10, 10]}],
         "categories": [{"id": 1, "name": "a"}]}
        """)
    try expectEveryCOCOLoaderFails(path) { e in
        #expect(e.description == "\(path) (line 4, column 18): duplicate annotation id 7: annotations[2] has the id of annotations[0]; annotation ids must be unique")
    }
}

/// Issue 29, defect 14: an RLE of another size than its image ([width, height] written for
/// [height, width]) scored 0 without a word, as in pycocotools; now an error naming the entry.
@Test func rleOfAnotherSizeThanItsImageIsAnError() throws {
    let dir = try temporaryFolder("rle-size")
    let swapped = "{\"size\": [190, 132], \"counts\": [1500, 20, 23560]}"
    let right = "{\"size\": [132, 190], \"counts\": [1500, 20, 23560]}"
    let goodGT = try writeFile(dir, "gt.json", groundTruthJSON(segmentation: right))
    let badGT = try writeFile(dir, "bad_gt.json", groundTruthJSON(segmentation: swapped))
    let goodResults = try writeFile(dir, "results.json", resultsJSON(segmentation: right))
    let badResults = try writeFile(dir, "bad_results.json", resultsJSON(segmentation: swapped))
    #expect(try evaluateCOCOFiles(groundTruthPath: goodGT, resultsPath: goodResults, iouType: .segm, threads: 1).1.stats.AP > 0.99)
    let differs = "the RLE's size [190, 132] differs from image id 1's [height, width] = [132, 190] (width and height swapped?); an RLE must have its image's size"
    for (gt, results, type, culprit, message) in [(goodGT, badResults, COCOIoUType.segm, badResults, "detection 0: " + differs),
                                                  (goodGT, badResults, .bbox, badResults, "detection 0: " + differs),
                                                  (badGT, goodResults, .segm, badGT, "annotations[0] (id 7): segmentation: " + differs)] {
        do {
            _ = try evaluateCOCOFiles(groundTruthPath: gt, resultsPath: results, iouType: type, threads: 1)
            Issue.record("\(gt) + \(results) (\(type)): expected an error")
        } catch let e as COCOFormatError {
            #expect(e.file == culprit && e.message == message, "\(e)")
        }
    }
}
