// Seeded mutations of the files DCNData reads from a path (JPEG and PNG images, a VOC devkit's
// annotation XML, a COCO instances file), through the same calls the loader and `dcn-data check`
// make. A trap would kill the test process, so passing is the evidence that none traps; each
// call must return within a second and every error must name the file.
import DCNData
import DCNEval
import DCNTensor
import Foundation
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
    case jpeg, png, vocAnnotation, cocoInstances
    var description: String { rawValue }

    var fixture: String {
        switch self {
        case .jpeg: imageFixture("exif_6.jpg")
        case .png: imageFixture("palette.png")
        case .vocAnnotation: dataFixture("voc/VOCdevkit/VOC2007/Annotations/000005.xml")
        case .cocoInstances: dataFixture("coco/fuzz_gt.json")
        }
    }

    /// Where the mutated copy goes in the temporary `folder` (a devkit for the VOC file).
    func target(_ folder: String) -> String {
        switch self {
        case .jpeg: folder + "/image.jpg"
        case .png: folder + "/image.png"
        case .vocAnnotation: folder + "/VOC2007/Annotations/000005.xml"
        case .cocoInstances: folder + "/instances.json"
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
