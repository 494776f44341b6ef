// Mask R-CNN mask geometry against detectron2's algorithms run with pycocotools, torchvision
// and PyTorch (Tests/Fixtures/generate_masks.py writes Tests/Fixtures/masks/*.json): every
// binary output must be identical, and the float values under the thresholds bit for bit equal.
import DCNAnnotations
import Foundation
import TestSupport
import Testing

private struct MaskFixture<Case: Decodable & Sendable>: Decodable, Sendable {
    let reference: String
    let cases: [Case]
}

private struct PolygonCase: Decodable, Sendable {
    let name: String; let polygons: [[Double]]; let box: [Float]; let mask_size: Int; let target: String
}

private struct BitmaskCase: Decodable, Sendable {
    let name: String; let height: Int; let width: Int; let mask: String; let box: [Float]; let mask_size: Int
    let target: String; let roi_align: String
}

private struct PasteCase: Decodable, Sendable {
    let name: String; let mask_size: Int; let probabilities: String; let box: [Float]; let height: Int; let width: Int
    let threshold: Float; let region: [Int]; let region_values: String; let mask: String; let counts: String; let area: Int
}

private struct EncodeCase: Decodable, Sendable {
    let name: String; let height: Int; let width: Int; let mask: String; let counts: String; let area: Int
}

private func loadMasks<Case: Decodable & Sendable>(_ file: String, as _: Case.Type) -> MaskFixture<Case> {
    let data = try! Data(contentsOf: URL(fileURLWithPath: fixturePath("masks/" + file)))
    return try! JSONDecoder().decode(MaskFixture<Case>.self, from: data)
}

private let polygonFixture = loadMasks("polygon_targets.json", as: PolygonCase.self)
private let bitmaskFixture = loadMasks("bitmask_targets.json", as: BitmaskCase.self)
private let pasteFixture = loadMasks("paste.json", as: PasteCase.self)
private let encodeFixture = loadMasks("rle_encode.json", as: EncodeCase.self)

/// A row-major '0'/'1' string as bytes 0/1.
private func bits(_ s: String) -> [UInt8] { s.utf8.map { $0 == UInt8(ascii: "1") ? 1 : 0 } }

/// Base64 of little-endian float32 values.
private func floats(_ b64: String) -> [Float] {
    let data = Data(base64Encoded: b64)!
    let bytes = [UInt8](data)
    return stride(from: 0, to: bytes.count, by: 4).map { i -> Float in
        var word: UInt32 = 0
        for k in 0..<4 { word |= UInt32(bytes[i + k]) << (8 * UInt32(k)) }
        return Float(bitPattern: word)
    }
}

/// Positions where two equally long arrays differ (for the failure message).
private func differences<T: Equatable>(_ a: [T], _ b: [T]) -> [Int] {
    guard a.count == b.count else { return [-1] }
    return a.indices.filter { a[$0] != b[$0] }
}

/// Bit-pattern differences of Float arrays (so +0/-0 and NaNs are compared exactly too).
private func floatDifferences(_ a: [Float], _ b: [Float]) -> [Int] {
    differences(a.map(\.bitPattern), b.map(\.bitPattern))
}

// MARK: - Fixtures

@Test func maskFixturesCoverTheRequiredCases() {
    #expect(polygonFixture.cases.count >= 40 && bitmaskFixture.cases.count >= 30)
    #expect(pasteFixture.cases.count >= 30 && encodeFixture.cases.count >= 20)
    #expect(Set(polygonFixture.cases.map(\.mask_size)).isSuperset(of: [28, 14]))
    #expect(Set(bitmaskFixture.cases.map(\.mask_size)).isSuperset(of: [28, 14]))
    #expect(Set(pasteFixture.cases.map(\.mask_size)).isSuperset(of: [28, 14]))
    #expect(pasteFixture.cases.contains { $0.height != $0.width })
}

@Test func polygonTargetsMatchDetectron2() throws {
    for c in polygonFixture.cases {
        let target = try polygonMaskTarget(polygons: c.polygons, box: try MaskBox(c.box), maskSize: c.mask_size)
        let expected = bits(c.target).map(Float.init)
        let diff = differences(target, expected)
        #expect(diff.isEmpty, "\(c.name): \(diff.count) of \(expected.count) cells differ, first at \(diff.prefix(8))")
    }
}

@Test func polygonTargetsInABatchMatchOneByOne() throws {
    let cases = polygonFixture.cases.filter { $0.mask_size == 28 }
    let all = try polygonMaskTargets(polygons: cases.map(\.polygons), boxes: try cases.map { try MaskBox($0.box) }, maskSize: 28)
    #expect(all == cases.flatMap { bits($0.target).map(Float.init) })
}

@Test func bitMaskTargetsMatchDetectron2() throws {
    for c in bitmaskFixture.cases {
        let mask = bits(c.mask), box = try MaskBox(c.box)
        let raw = try roiAlignMask(mask: mask, height: c.height, width: c.width, box: box, maskSize: c.mask_size)
        let rawDiff = floatDifferences(raw, floats(c.roi_align))
        #expect(rawDiff.isEmpty, "\(c.name): RoIAlign differs from torchvision at \(rawDiff.count) cells, first \(rawDiff.prefix(8))")
        let target = try bitMaskTarget(mask: mask, height: c.height, width: c.width, box: box, maskSize: c.mask_size)
        let diff = differences(target, bits(c.target).map(Float.init))
        #expect(diff.isEmpty, "\(c.name): \(diff.count) target cells differ, first at \(diff.prefix(8))")
        // The same ground truth given as an RLE.
        let rle = try RLE.encode(rowMajor: mask, height: c.height, width: c.width)
        #expect(try bitMaskTarget(rle: rle, box: box, maskSize: c.mask_size) == target, "\(c.name) from its RLE")
    }
}

@Test func bitMaskTargetsInABatchMatchOneByOne() throws {
    let cases = bitmaskFixture.cases.filter { $0.height == 37 && $0.width == 53 && $0.mask_size == 14 }
    #expect(cases.count >= 5)
    let all = try bitMaskTargets(masks: cases.map { bits($0.mask) }, height: 37, width: 53,
                                 boxes: try cases.map { try MaskBox($0.box) }, maskSize: 14)
    #expect(all == cases.flatMap { bits($0.target).map(Float.init) })
}

@Test func pastedMasksMatchDetectron2() throws {
    for c in pasteFixture.cases {
        let probs = floats(c.probabilities), box = try MaskBox(c.box)
        let (region, values) = try pastedMaskValues(probabilities: probs, maskSize: c.mask_size, box: box,
                                                    imageHeight: c.height, imageWidth: c.width)
        #expect([region.x0, region.y0, region.x1, region.y1] == c.region, "\(c.name): region")
        let valueDiff = floatDifferences(values, floats(c.region_values))
        #expect(valueDiff.isEmpty, "\(c.name): grid_sample values differ at \(valueDiff.count) pixels, first \(valueDiff.prefix(8))")
        let mask = try pasteMask(probabilities: probs, maskSize: c.mask_size, box: box, imageHeight: c.height,
                                 imageWidth: c.width, threshold: c.threshold)
        let diff = differences(mask, bits(c.mask))
        #expect(diff.isEmpty, "\(c.name): \(diff.count) pixels differ, first at \(diff.prefix(8))")
        // The results-file form, byte for byte as pycocotools writes it.
        let rle = try pasteMaskRLE(probabilities: probs, maskSize: c.mask_size, box: box, imageHeight: c.height,
                                   imageWidth: c.width, threshold: c.threshold)
        #expect(rle.compressedString == c.counts, "\(c.name): RLE string")
        #expect(rle.area == c.area && rle.height == c.height && rle.width == c.width, "\(c.name): RLE size or area")
    }
}

@Test func pastingSeveralMasksMatchesOneByOne() throws {
    let cases = pasteFixture.cases.filter { $0.height == 45 && $0.width == 70 && $0.mask_size == 28 && $0.threshold == 0.5 }
    #expect(cases.count >= 5)
    let masks = try pasteMasks(probabilities: cases.flatMap { floats($0.probabilities) }, maskSize: 28,
                               boxes: try cases.map { try MaskBox($0.box) }, imageHeight: 45, imageWidth: 70)
    #expect(masks == cases.map { bits($0.mask) })
}

@Test func rleEncodingMatchesPycocotools() throws {
    for c in encodeFixture.cases {
        let mask = bits(c.mask)
        let rle = try RLE.encode(rowMajor: mask, height: c.height, width: c.width)
        #expect(rle.compressedString == c.counts, "\(c.name): counts string")
        #expect(rle.area == c.area, "\(c.name): area")
        let columnMajor = try RLE.transposeToColumnMajor(mask, height: c.height, width: c.width)
        #expect(try RLE.encode(columnMajor: columnMajor, height: c.height, width: c.width) == rle, "\(c.name): column-major")
        // Round trips: string -> runs -> pixels gives the mask back.
        let parsed = try RLE(height: c.height, width: c.width, compressed: c.counts)
        #expect(parsed == rle, "\(c.name): parsed string")
        #expect(try parsed.decodeRowMajor() == mask, "\(c.name): decoded row-major")
        #expect(try parsed.decode() == columnMajor, "\(c.name): decoded column-major")
    }
}

// MARK: - Round trips and properties

@Test func encodeDecodeRoundTripsOnRandomMasks() throws {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
    for _ in 0..<200 {
        let h = Int(next() % 40), w = Int(next() % 40), density = next() % 100
        // Runs of random lengths so both short and long runs (several 5-bit groups) occur.
        var mask = [UInt8](), value: UInt8 = UInt8(next() % 2)
        while mask.count < h * w {
            let run = Int(next() % (density < 50 ? 3 : 90)) + 1
            mask += [UInt8](repeating: value, count: min(run, h * w - mask.count))
            value ^= 1
        }
        let rle = try RLE.encode(rowMajor: mask, height: h, width: w)
        #expect(try rle.decodeRowMajor() == mask)
        #expect(try RLE(height: h, width: w, compressed: rle.compressedString) == rle)
        #expect(rle.area == mask.reduce(0) { $0 + Int($1) })
        let columnMajor = try RLE.transposeToColumnMajor(mask, height: h, width: w)
        #expect(try RLE.transposeToRowMajor(columnMajor, height: h, width: w) == mask)
        #expect(try RLE.encode(columnMajor: columnMajor, height: h, width: w) == rle)
    }
}

@Test func nonBinaryBytesCountAsInside() throws {
    let rle = try RLE.encode(rowMajor: [0, 255, 7, 1, 0, 0], height: 2, width: 3)
    #expect(try rle.decodeRowMajor() == [0, 1, 1, 1, 0, 0])
}

@Test func polygonTargetOfTheBoxItselfIsFull() throws {
    // The box's own outline covers every cell centre of the mask.
    let box = MaskBox(x0: 3, y0: 5, x1: 17, y1: 12)
    let target = try polygonMaskTarget(polygons: [[3, 5, 17, 5, 17, 12, 3, 12]], box: box, maskSize: 28)
    #expect(target.allSatisfy { $0 == 1 })
    #expect(try polygonMaskTarget(polygons: [], box: box, maskSize: 7) == [Float](repeating: 0, count: 49))
}

@Test func pasteOutsideTheImageIsEmpty() throws {
    let probs = [Float](repeating: 1, count: 16)
    for box in [MaskBox(x0: 30, y0: 2, x1: 40, y1: 8), MaskBox(x0: -20, y0: -9, x1: -3, y1: -2),
                MaskBox(x0: 8, y0: 8, x1: 2, y1: 2)] {  // right of, above-left of the image, inverted
        let (region, values) = try pastedMaskValues(probabilities: probs, maskSize: 4, box: box, imageHeight: 10, imageWidth: 20)
        #expect(region.isEmpty && values.isEmpty, "\(box)")
        let mask = try pasteMask(probabilities: probs, maskSize: 4, box: box, imageHeight: 10, imageWidth: 20)
        #expect(mask == [UInt8](repeating: 0, count: 200), "\(box)")
        let rle = try pasteMaskRLE(probabilities: probs, maskSize: 4, box: box, imageHeight: 10, imageWidth: 20)
        #expect(rle == RLE(height: 10, width: 20, counts: [200]), "\(box)")
    }
    // An image with no pixels.
    #expect(try pasteMask(probabilities: probs, maskSize: 4, box: MaskBox(x0: 0, y0: 0, x1: 1, y1: 1), imageHeight: 0, imageWidth: 5) == [])
}

@Test func pastedRLEEqualsTheEncodedImageMask() throws {
    // The region-only RLE against encoding the whole image, for boxes anywhere (also outside).
    var state: UInt64 = 12345
    func uniform(_ lo: Float, _ hi: Float) -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return lo + (hi - lo) * Float(state >> 40) / Float(1 << 24)
    }
    for _ in 0..<300 {
        let m = Int(uniform(1, 9)), h = Int(uniform(0, 30)), w = Int(uniform(0, 30))
        let probs = (0..<(m * m)).map { _ in uniform(0, 1) }
        let x0 = uniform(-15, 35), y0 = uniform(-15, 35)
        let box = MaskBox(x0: x0, y0: y0, x1: x0 + uniform(-3, 25), y1: y0 + uniform(-3, 25))
        let threshold = uniform(0, 1)
        let image = try pasteMask(probabilities: probs, maskSize: m, box: box, imageHeight: h, imageWidth: w, threshold: threshold)
        let rle = try pasteMaskRLE(probabilities: probs, maskSize: m, box: box, imageHeight: h, imageWidth: w, threshold: threshold)
        #expect(rle == (try RLE.encode(rowMajor: image, height: h, width: w)), "\(box) in \(h)x\(w)")
    }
}

@Test func extremeCoordinatesReturnOrThrowButNeverTrap() {
    // Boxes and polygons from huge, tiny, negative and inverted coordinates: every call either
    // returns a result of the right size or throws a MaskError.
    let values: [Float] = [-3e38, -1e6, -7.5, -1e-30, 0, 0.3, 1, 4.5, 1e6, 3e38]
    var state: UInt64 = 777
    func pick() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return values[Int(state >> 33) % values.count]
    }
    let mask: [UInt8] = (0..<35).map { UInt8($0 % 3 == 0 ? 1 : 0) }
    let probs: [Float] = (0..<16).map { Float($0) / 15 }
    for _ in 0..<400 {
        let box = MaskBox(x0: pick(), y0: pick(), x1: pick(), y1: pick())
        let polygon = (0..<6).map { _ in Double(pick()) }
        do { #expect(try polygonMaskTarget(polygons: [polygon], box: box, maskSize: 4).count == 16) } catch is MaskError {} catch { Issue.record("\(error)") }
        do { #expect(try bitMaskTarget(mask: mask, height: 5, width: 7, box: box, maskSize: 4).count == 16) } catch is MaskError {} catch { Issue.record("\(error)") }
        do { #expect(try pasteMask(probabilities: probs, maskSize: 4, box: box, imageHeight: 5, imageWidth: 7).count == 35) } catch {
            Issue.record("pasteMask of a finite box threw: \(error)")
        }
        do { #expect(try pasteMaskRLE(probabilities: probs, maskSize: 4, box: box, imageHeight: 5, imageWidth: 7).validate() == ()) } catch {
            Issue.record("pasteMaskRLE of a finite box threw: \(error)")
        }
    }
}

// MARK: - Bad input

@Test func badMaskInputThrowsClearErrors() throws {
    func message(_ body: () throws -> Any) -> String {
        do { _ = try body(); return "" } catch let e as MaskError { return e.message } catch { return "\(error)" }
    }
    let box = MaskBox(x0: 1, y0: 1, x1: 5, y1: 5)
    let tri: [[Double]] = [[1, 1, 4, 1, 2, 4]]
    // Sizes.
    #expect(message { try RLE.encode(rowMajor: [], height: -1, width: 3) }.contains("negative"))
    #expect(message { try RLE.encode(columnMajor: [1], height: 2, width: -2) }.contains("negative"))
    #expect(message { try RLE.encode(rowMajor: [0, 1, 1], height: 2, width: 2) }.contains("has 3 pixels, expected 2x2 = 4"))
    #expect(message { try RLE.encode(columnMajor: [0, 1, 1, 0, 1], height: 2, width: 2) }.contains("expected 2x2"))
    #expect(message { try RLE.transposeToRowMajor([1, 2, 3], height: 2, width: 2) }.contains("expected 2x2"))
    #expect(message { try RLE(height: 2, width: 2, counts: [1, 2]).decodeRowMajor() }.contains("add up to 3"))
    #expect(message { try polygonMaskTarget(polygons: tri, box: box, maskSize: 0) }.contains("mask size 0"))
    #expect(message { try polygonMaskTarget(polygons: tri, box: box, maskSize: -28) }.contains("mask size -28"))
    #expect(message { try roiAlignMask(mask: [1, 0], height: -1, width: -2, box: box, maskSize: 4) }.contains("negative"))
    #expect(message { try roiAlignMask(mask: [1, 0, 1], height: 2, width: 2, box: box, maskSize: 4) }.contains("has 3 pixels"))
    #expect(message { try roiAlignMask(mask: [], height: 0, width: 7, box: box, maskSize: 4) }.contains("no pixels"))
    #expect(message { try bitMaskTarget(mask: [1], height: 1, width: 1, box: box, maskSize: 100_000) }.contains("outside 1...4096"))
    #expect(message { try pasteMask(probabilities: [0.5], maskSize: 2, box: box, imageHeight: 4, imageWidth: 4) }.contains("1 mask values, expected 2x2 = 4"))
    #expect(message { try pasteMask(probabilities: [0.5], maskSize: 1, box: box, imageHeight: -4, imageWidth: 4) }.contains("negative"))
    // Polygons.
    #expect(message { try polygonMaskTarget(polygons: [[1, 1, 4, 1]], box: box, maskSize: 8) }.contains("polygon 0 has 4 numbers"))
    #expect(message { try polygonMaskTarget(polygons: tri + [[1, 1, 4, 1, 2]], box: box, maskSize: 8) }.contains("polygon 1 has 5 numbers"))
    #expect(message { try polygonMaskTarget(polygons: [[1, 1, .nan, 1, 2, 4]], box: box, maskSize: 8) }.contains("not a finite number"))
    // Boxes and thresholds.
    let infiniteBox = MaskBox(x0: 0, y0: 0, x1: .infinity, y1: 3)
    #expect(message { try MaskBox([1, 2, 3]) }.contains("4 numbers"))
    #expect(message { try polygonMaskTarget(polygons: tri, box: infiniteBox, maskSize: 8) }.contains("not a finite number"))
    #expect(message { try bitMaskTarget(mask: [1], height: 1, width: 1, box: MaskBox(x0: .nan, y0: 0, x1: 1, y1: 1), maskSize: 8) }.contains("finite"))
    #expect(message { try pasteMask(probabilities: [1], maskSize: 1, box: infiniteBox, imageHeight: 4, imageWidth: 4) }.contains("finite"))
    #expect(message { try pasteMask(probabilities: [1], maskSize: 1, box: box, imageHeight: 4, imageWidth: 4, threshold: -1) }.contains("threshold"))
    #expect(message { try pasteMask(probabilities: [1], maskSize: 1, box: box, imageHeight: 4, imageWidth: 4, threshold: .nan) }.contains("threshold"))
    #expect(message { try roiAlignMask(mask: [1], height: 1, width: 1, box: MaskBox(x0: 0, y0: 0, x1: 3e7, y1: 3e7), maskSize: 28) }.contains("more than"))
    #expect(message { try roiAlignMask(mask: [1], height: 1, width: 1, box: MaskBox(x0: 0, y0: 0, x1: 0, y1: 3e38), maskSize: 28) }.contains("more than"))
    #expect(message { try roiAlignMask(mask: [1], height: 1, width: 1, box: MaskBox(x0: -3e38, y0: 0, x1: 3e38, y1: 1), maskSize: 28) }.contains("more than"))
    // Mismatched lengths in the batch forms.
    #expect(message { try polygonMaskTargets(polygons: [tri, tri], boxes: [box], maskSize: 8) }.contains("2 instances but 1 boxes"))
    #expect(message { try polygonMaskTargets(polygons: [tri, [[1, 2]]], boxes: [box, box], maskSize: 8) }.hasPrefix("instance 1: "))
    #expect(message { try bitMaskTargets(masks: [[1]], height: 1, width: 1, boxes: [], maskSize: 8) }.contains("1 masks but 0 boxes"))
    #expect(message { try bitMaskTargets(masks: [[1]], height: 1, width: 1, boxes: [box], maskSize: Int.max) }.contains("outside 1...4096"))
    #expect(message { try polygonMaskTargets(polygons: [tri], boxes: [box], maskSize: Int.min) }.contains("outside 1...4096"))
    #expect(message { try pasteMasks(probabilities: [], maskSize: Int.max, boxes: [box], imageHeight: 4, imageWidth: 4) }.contains("outside 1...4096"))
    #expect(message { try pasteMasks(probabilities: [Float](repeating: 0, count: 7), maskSize: 2, boxes: [box, box], imageHeight: 4, imageWidth: 4) }.contains("expected 2 x 2x2 = 8"))
    #expect(message { try pasteMasks(probabilities: [0, 0], maskSize: 1, boxes: [box, infiniteBox], imageHeight: 4, imageWidth: 4) }.hasPrefix("prediction 1: "))
}
