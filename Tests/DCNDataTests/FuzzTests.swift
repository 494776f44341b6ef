// Seeded mutations of the files DCNData reads from a path (JPEG and PNG images, a VOC devkit's
// annotation XML, a COCO instances file, a segmentation label map), through the same calls the loader and `dcn-data check`
// make. A trap would kill the test process, so passing is the evidence that none traps; each
// call must return within a second and every error must name the file.
import DCNData
import DCNEval
import DCNTensor
import Foundation
import TestSupport
import Testing
import DCNAnnotations

/// One seeded change of a binary file: bit flips, a truncation, a duplicated or removed span of
/// up to 64 bytes, or 1-4 bytes of 0x00 or 0xFF written into the first 256 (header sizes become
/// 0 or huge).
private func mutateBytes(_ original: [UInt8], _ random: inout SeededGenerator) -> [UInt8] {
    var bytes = original
    let at = Int(random.next() % UInt64(bytes.count))
    let span = at..<min(bytes.count, at + 1 + Int(random.next() % 64))
    switch random.next() % 5 {
    case 0: for _ in 0..<(1 + random.next() % 4) { bytes[Int(random.next() % UInt64(bytes.count))] ^= UInt8(1 << (random.next() % 8)) }
    case 1: bytes.removeLast(bytes.count - at)
    case 2: bytes.insert(contentsOf: bytes[span], at: span.upperBound)
    case 3: bytes.removeSubrange(span)
    default:
        let fill: UInt8 = random.next() % 2 == 0 ? 0x00 : 0xFF
        let start = Int(random.next() % UInt64(min(bytes.count, 256)))
        for i in start..<min(bytes.count, start + 1 + Int(random.next() % 4)) { bytes[i] = fill }
    }
    return bytes
}

/// What is mutated, and how it is read.
enum MutatedFile: String, CaseIterable, CustomStringConvertible {
    case jpeg, png, vocAnnotation, cocoInstances, labelMap
    var description: String { rawValue }

    var fixture: String {
        switch self {
        case .jpeg: imageFixture("exif_6.jpg")
        case .png: imageFixture("palette.png")
        case .vocAnnotation: fixturePath("voc/VOCdevkit/VOC2007/Annotations/000005.xml")
        case .cocoInstances: fixturePath("coco/fuzz_gt.json")
        case .labelMap: fixturePath("segmentation/labels/img_a.png")
        }
    }

    /// Where the mutated copy goes in the temporary `folder` (a devkit for the VOC file).
    func target(_ folder: String) -> String {
        switch self {
        case .jpeg: folder + "/image.jpg"
        case .png: folder + "/image.png"
        case .vocAnnotation: folder + "/VOC2007/Annotations/000005.xml"
        case .cocoInstances: folder + "/instances.json"
        case .labelMap: folder + "/label.png"
        }
    }

    /// Reads `path` as the loader and `dcn-data check` do.
    func read(_ path: String, folder: String) throws {
        switch self {
        case .jpeg, .png:
            _ = try probeImage(path: path)
            let decoded = try decodeImageReportingWarnings(path: path)
            #expect(decoded.image.pixels.count == decoded.image.width * decoded.image.height * 3)
        case .vocAnnotation:
            _ = try Dataset.voc(devkits: [folder + "/VOC2007"], splits: ["test"])
        case .cocoInstances:
            _ = try Dataset.coco(annotations: path, imageRoot: folder, skipEmpty: false)
        case .labelMap:
            _ = try readLabelMap(path: path, classes: 5)
        }
    }
}

@Suite("Fuzzed files")
struct DataFuzzTests {
    @Test("Mutated images, VOC XML and COCO files never trap or hang, and every error names the file", arguments: MutatedFile.allCases)
    func mutatedFilesFailCleanly(_ kind: MutatedFile) throws {
        let folder = try temporaryFolder("fuzz-\(kind)")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder + "/VOC2007/Annotations", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: folder + "/VOC2007/ImageSets/Main", withIntermediateDirectories: true)
        try writeText("000005\n", folder + "/VOC2007/ImageSets/Main/test.txt")
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: kind.fixture)))
        let path = kind.target(folder)
        try Data(original).write(to: URL(fileURLWithPath: path))
        try kind.read(path, folder: folder)

        var random = SeededGenerator(seed: 1200 + UInt64(MutatedFile.allCases.firstIndex(of: kind)!))
        var failures = 0, slowest = 0.0
        let trials = ProcessInfo.processInfo.environment["DCN_FUZZ_TRIALS"].flatMap { Int($0) } ?? 300  // more with DCN_FUZZ_TRIALS=N
        for trial in 0..<trials {
            try Data(mutateBytes(original, &random)).write(to: URL(fileURLWithPath: path))
            let start = Date()
            do {
                try kind.read(path, folder: folder)
            } catch {
                failures += 1
                #expect("\(error)".contains(path), "trial \(trial): \(error)")
            }
            let seconds = Date().timeIntervalSince(start)
            slowest = max(slowest, seconds)
            #expect(seconds < 1, "trial \(trial) took \(seconds) s")
        }
        print("fuzz \(kind): \(trials) mutations, \(failures) rejected, slowest \(String(format: "%.3f", slowest)) s")
        #expect(failures > trials / 10)
    }
}

/// Bad input that byte mutations almost never make (issue 29), placed at seeded positions:
/// VOC XML nested far deeper than VOC's 5 levels (it crashed every reader), and COCO
/// annotations with a repeated id or a malformed polygon (both passed `dcn-data check`; the
/// polygons then killed training mid-run).
enum StructuredDefect: String, CaseIterable, CustomStringConvertible {
    case deepXMLNesting, duplicateAnnotationID, badPolygon
    var description: String { rawValue }

    /// Writes one seeded instance of the defect over the fixture copy at `path`; returns what
    /// the error must say besides the path.
    func write(_ path: String, _ random: inout SeededGenerator) throws -> String {
        switch self {
        case .deepXMLNesting:
            // One element of the fixture's first object replaced by `depth` nested elements.
            let xml = try String(contentsOfFile: fixturePath("voc/VOCdevkit/VOC2007/Annotations/000005.xml"), encoding: .utf8)
            let element = ["<pose>Unspecified</pose>", "<truncated>0</truncated>", "<difficult>0</difficult>"].randomElement(using: &random)!
            let depth = [65, 100, 1000, 50_000].randomElement(using: &random)!
            let nested = String(repeating: "<x>", count: depth) + String(repeating: "</x>", count: depth)
            try writeText(xml.replacingOccurrences(of: element, with: nested), path)
            return "elements nested more than 64 levels deep"
        case .duplicateAnnotationID, .badPolygon:
            let data = try Data(contentsOf: URL(fileURLWithPath: fixturePath("coco/fuzz_gt.json")))
            var file = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            var annotations = file["annotations"] as! [[String: Any]]
            let k = Int.random(in: 1..<annotations.count, using: &random)
            var expected = ""
            if self == .duplicateAnnotationID {
                let earlier = Int.random(in: 0..<k, using: &random)
                annotations[k]["id"] = annotations[earlier]["id"]
                expected = "duplicate annotation id \(annotations[earlier]["id"]!)"
            } else {
                // A marker string, replaced below by JSON that JSONSerialization cannot write (1e400).
                annotations[k]["segmentation"] = "BAD-POLYGON"
                annotations[k]["iscrowd"] = Bool.random(using: &random) ? 1 : 0
                expected = "annotation id \(annotations[k]["id"]!) (image id \(annotations[k]["image_id"]!)): segmentation"
            }
            file["annotations"] = annotations
            var text = String(decoding: try JSONSerialization.data(withJSONObject: file), as: UTF8.self)
            let bad = ["[[1, 2, 3, 4]]", "[[1, 2, 3, 4, 5, 6, 7]]", "[]", "[[]]", "[[10, 10, 20, 10, 20, 20], [5, 5]]", "[[1e400, 2, 3, 4, 5, 6]]", "[[1, 2, 3, -1e39, 5, 6]]"]
            text = text.replacingOccurrences(of: "\"BAD-POLYGON\"", with: bad.randomElement(using: &random)!)
            try writeText(text, path)
            return expected
        }
    }

    /// Reads `path` as the loader (dcn-train) and `dcn-data check` do.
    func read(_ path: String, folder: String) throws {
        switch self {
        case .deepXMLNesting: _ = try Dataset.voc(devkits: [folder + "/VOC2007"], splits: ["test"])
        case .duplicateAnnotationID, .badPolygon: _ = try Dataset.coco(annotations: path, imageRoot: folder, skipEmpty: false)
        }
    }
}

extension DataFuzzTests {
    @Test("Deep XML nesting, repeated annotation ids and malformed polygons are refused at load, naming the file and the entry",
          arguments: StructuredDefect.allCases)
    func structuredDefectsAreRefused(_ defect: StructuredDefect) throws {
        let folder = try temporaryFolder("fuzz-\(defect)")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder + "/VOC2007/Annotations", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: folder + "/VOC2007/ImageSets/Main", withIntermediateDirectories: true)
        try writeText("000005\n", folder + "/VOC2007/ImageSets/Main/test.txt")
        let path = defect == .deepXMLNesting ? folder + "/VOC2007/Annotations/000005.xml" : folder + "/instances.json"
        var random = SeededGenerator(seed: 1300 + UInt64(StructuredDefect.allCases.firstIndex(of: defect)!))
        for trial in 0..<20 {
            let expected = try defect.write(path, &random)
            let start = Date()
            do {
                try defect.read(path, folder: folder)
                Issue.record("trial \(trial): expected an error saying '\(expected)'")
            } catch {
                #expect("\(error)".contains(path) && "\(error)".contains(expected), "trial \(trial): \(error)")
            }
            #expect(Date().timeIntervalSince(start) < 1, "trial \(trial)")
        }
    }
}
