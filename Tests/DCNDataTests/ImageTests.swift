// Image decoding and encoding against Pillow references (Tests/Fixtures/images, made by
// make_fixtures.py there): round trips, EXIF orientation, JPEG colour spaces, PNG variants,
// and truncated/corrupt files that must throw (never exit or crash).
import DCNData
import DCNTensor
import Foundation
import TestSupport
import Testing

/// Absolute path of a file under Tests/Fixtures/images (works in any checkout).
func imageFixture(_ name: String) -> String { fixturePath("images/" + name) }

func fixtureBytes(_ name: String) throws -> Data {
    try Data(contentsOf: URL(fileURLWithPath: imageFixture(name)))
}

/// Largest and mean absolute difference over all channels of two same-sized images.
func pixelDifference(_ a: RGBImage, _ b: RGBImage) -> (max: Int, mean: Double) {
    precondition(a.width == b.width && a.height == b.height, "\(a.width)x\(a.height) vs \(b.width)x\(b.height)")
    var worst = 0, sum = 0
    for i in 0..<a.pixels.count {
        let d = abs(Int(a.pixels[i]) - Int(b.pixels[i]))
        worst = max(worst, d)
        sum += d
    }
    return (worst, Double(sum) / Double(a.pixels.count))
}

/// A random image (noise, so PNG filters and compression get exercised).
func randomImage(width: Int, height: Int, seed: UInt64) -> RGBImage {
    var rng = SeededGenerator(seed: seed)
    let pixels = (0..<(width * height * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 56) }
    return try! RGBImage(width: width, height: height, pixels: pixels)
}

/// A smooth image (gradients), which JPEG keeps close.
func smoothImage(width: Int, height: Int) -> RGBImage {
    var image = RGBImage(width: width, height: height)
    for y in 0..<height {
        for x in 0..<width {
            image[x, y] = (UInt8(255 * x / max(1, width - 1)), UInt8(255 * y / max(1, height - 1)),
                           UInt8(128 + 100 * sin(Double(x) / 7) * cos(Double(y) / 9)))
        }
    }
    return image
}

/// Runs `body`, which must throw an ImageError; returns it (or nil after recording a failure).
func expectImageError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> ImageError? {
    do {
        try body()
        Issue.record("expected an ImageError, got success", sourceLocation: sourceLocation)
    } catch let error as ImageError {
        return error
    } catch {
        Issue.record("expected an ImageError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

@Suite("Image codec")
struct ImageCodecTests {
    @Test("PNG encode -> decode is exact", arguments: [(1, 1), (2, 3), (37, 23), (64, 48), (301, 7)])
    func pngRoundTrip(size: (Int, Int)) throws {
        let image = randomImage(width: size.0, height: size.1, seed: UInt64(size.0 * 1000 + size.1))
        let decoded = try decodeImage(data: encodePNG(image), name: "roundtrip.png")
        #expect(decoded == image)
    }

    @Test("JPEG encode -> decode is close", arguments: [(16, 16), (37, 23), (640, 480)])
    func jpegRoundTrip(size: (Int, Int)) throws {
        let image = smoothImage(width: size.0, height: size.1)
        let decoded = try decodeImage(data: encodeJPEG(image, quality: 95), name: "roundtrip.jpg")
        #expect(decoded.width == image.width && decoded.height == image.height)
        let d = pixelDifference(decoded, image)
        #expect(d.mean < 2.5, "mean difference \(d.mean)")
        #expect(d.max < 24, "max difference \(d.max)")
    }

    @Test("JPEG quality trades size for fidelity")
    func jpegQuality() throws {
        let image = randomImage(width: 64, height: 64, seed: 3)
        let low = try encodeJPEG(image, quality: 20), high = try encodeJPEG(image, quality: 98)
        #expect(low.count < high.count)
        let dLow = pixelDifference(try decodeImage(data: low, name: "q20"), image)
        let dHigh = pixelDifference(try decodeImage(data: high, name: "q98"), image)
        #expect(dHigh.mean < dLow.mean)
    }

    @Test("writeImage writes atomically by extension and reads back", arguments: ["png", "jpg", "JPEG"])
    func writeAndRead(ext: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dcn-image-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.\(ext)").path
        let image = smoothImage(width: 50, height: 30)
        try writeImage(image, to: path)
        try writeImage(image, to: path)  // overwriting works too
        let back = try decodeImage(path: path)
        if ext == "png" {
            #expect(back == image)
        } else {
            #expect(pixelDifference(back, image).mean < 1.5)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(3) == Data([0xFF, 0xD8, 0xFF]))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.\(ext)"])
        let bad = expectImageError { try writeImage(image, to: dir.appendingPathComponent("out.bmp").path) }
        #expect(bad?.kind == .invalidArgument)
        let nowhere = dir.appendingPathComponent("missing/out.\(ext)").path
        let io = expectImageError { try writeImage(image, to: nowhere) }
        #expect(io?.kind == .io && io?.description.hasPrefix(nowhere) == true)
    }

    @Test("EXIF orientation 1...8 decodes to the upright image, as detectron2 does", arguments: 1...8)
    func exifOrientation(orientation: Int) throws {
        let name = "exif_\(orientation).jpg"
        let decoded = try decodeImage(path: imageFixture(name))
        let reference = try decodeImage(path: imageFixture(name + ".ref.png"))
        let upright = try decodeImage(path: imageFixture("upright.png"))
        #expect(decoded.width == 37 && decoded.height == 23)
        #expect(pixelDifference(decoded, reference).max <= 1, "vs Pillow + exif transpose")
        // JPEG's chroma subsampling differs per stored orientation; a wrong transpose is far off.
        #expect(pixelDifference(decoded, upright).mean < 8, "vs the upright original")
        #expect(pixelDifference(decoded, upright.applyingEXIFOrientation(3)).mean > 40)
        #expect(try DCNData.exifOrientation(data: fixtureBytes(name), name: name) == orientation)
        let info = try probeImage(path: imageFixture(name))
        #expect(info.format == .jpeg && info.orientation == orientation)
        #expect(info.size == ImageSize(height: 23, width: 37))
        // Without applying the tag the stored (unrotated) pixels come back.
        let stored = try decodeImage(path: imageFixture(name), options: DecodeOptions(applyEXIFOrientation: false))
        #expect(stored.width == (orientation >= 5 ? 23 : 37))
        #expect(stored.applyingEXIFOrientation(orientation) == decoded)
    }

    @Test("Big-endian EXIF in a JPEG and an eXIf chunk in a PNG", arguments: ["exif_6_mm.jpg", "exif_8.png"])
    func otherExif(name: String) throws {
        let decoded = try decodeImage(path: imageFixture(name))
        let reference = try decodeImage(path: imageFixture(name + ".ref.png"))
        #expect(pixelDifference(decoded, reference).max <= 1)
        let upright = try decodeImage(path: imageFixture("upright.png"))
        #expect(pixelDifference(decoded, upright).mean < 8)
    }

    @Test("Orientation transposes are the PIL ones on a 3x2 image")
    func orientationMaps() throws {
        // Pixels numbered 0...5 in row-major order:  0 1 2 / 3 4 5.
        let image = try RGBImage(width: 3, height: 2, pixels: (0..<6).flatMap { [UInt8($0), 0, 0] })
        func red(_ o: Int) -> [UInt8] { stride(from: 0, to: 18, by: 3).map { image.applyingEXIFOrientation(o).pixels[$0] } }
        #expect(red(1) == [0, 1, 2, 3, 4, 5])
        #expect(red(2) == [2, 1, 0, 5, 4, 3])            // FLIP_LEFT_RIGHT
        #expect(red(3) == [5, 4, 3, 2, 1, 0])            // ROTATE_180
        #expect(red(4) == [3, 4, 5, 0, 1, 2])            // FLIP_TOP_BOTTOM
        #expect(red(5) == [0, 3, 1, 4, 2, 5])            // TRANSPOSE (2 wide, 3 high)
        #expect(red(6) == [3, 0, 4, 1, 5, 2])            // ROTATE_270 = 90 degrees clockwise
        #expect(red(7) == [5, 2, 4, 1, 3, 0])            // TRANSVERSE
        #expect(red(8) == [2, 5, 1, 4, 0, 3])            // ROTATE_90 = 90 degrees counter-clockwise
        #expect(image.applyingEXIFOrientation(6).width == 2)
    }

    @Test("JPEG colour spaces and PNG variants match Pillow's convert(\"RGB\")", arguments: [
        ("rgb.jpg", 1), ("progressive.jpg", 1), ("gray.jpg", 1), ("cmyk.jpg", 1),
        ("palette.png", 0), ("gray.png", 0), ("gray1bit.png", 0), ("gray_alpha.png", 0), ("rgba.png", 0),
        ("rgb16.png", 0), ("gray16.png", 0), ("rgba16.png", 0), ("interlaced.png", 0),
    ])
    func variants(name: String, tolerance: Int) throws {
        let decoded = try decodeImage(path: imageFixture(name))
        let reference = try decodeImage(path: imageFixture(name + ".ref.png"))
        #expect(decoded.width == reference.width && decoded.height == reference.height)
        let d = pixelDifference(decoded, reference)
        #expect(d.max <= tolerance, "\(name): max difference \(d.max), mean \(d.mean)")
    }

    @Test("Header probe: sizes without decoding", arguments: [
        ("gray.png", 31, 45, ImageFormat.png), ("rgb16.png", 19, 27, .png), ("cmyk.jpg", 31, 45, .jpeg),
        ("exif_8.png", 23, 37, .png), ("progressive.jpg", 31, 45, .jpeg),
    ])
    func probe(name: String, height: Int, width: Int, format: ImageFormat) throws {
        let info = try probeImage(path: imageFixture(name))
        #expect(info.format == format && info.size == ImageSize(height: height, width: width))
        let decoded = try decodeImage(path: imageFixture(name))
        #expect(decoded.width == width && decoded.height == height)
        let cut = expectImageError { _ = try probeImage(data: fixtureBytes(name).prefix(20), name: "head.bin") }
        #expect(cut?.kind == .truncated)
    }

    @Test("Decoding on many threads at once gives the same images")
    func concurrentDecoding() throws {
        let names = ["rgb.jpg", "cmyk.jpg", "progressive.jpg", "palette.png", "rgba16.png", "interlaced.png", "exif_6.jpg"]
        let datas = try names.map(fixtureBytes)
        let expected = try zip(datas, names).map { try decodeImage(data: $0, name: $1) }
        let results = ResultBox(count: 8 * names.count)
        DispatchQueue.concurrentPerform(iterations: 8 * names.count) { i in
            let k = i % names.count
            let ok = (try? decodeImage(data: datas[k], name: names[k])) == expected[k]
            // Also fail on corrupt input concurrently.
            let failed = (try? decodeImage(data: datas[k].prefix(datas[k].count / 2), name: names[k])) == nil
            results.set(i, ok && failed)
        }
        #expect(results.all)
    }

    @Test("Magic bytes, not the extension, choose the decoder")
    func magicBytes() throws {
        let png = try fixtureBytes("gray.png")
        let decoded = try decodeImage(data: png, name: "misnamed.jpg")
        #expect(decoded.width == 45)
        let text = expectImageError { _ = try decodeImage(data: Data("hello, world".utf8), name: "notes.jpg") }
        #expect(text?.kind == .unsupportedFormat)
        #expect(text?.description == "notes.jpg: not a JPEG or PNG file")
        let empty = expectImageError { _ = try decodeImage(data: Data(), name: "empty.png") }
        #expect(empty?.kind == .unsupportedFormat)
        let missing = expectImageError { _ = try decodeImage(path: "/nonexistent/dir/img.jpg") }
        #expect(missing?.kind == .io)
        #expect(missing?.description.contains("/nonexistent/dir/img.jpg") == true)
    }

    @Test("Truncated files throw an error naming the file", arguments: [
        ("rgb.jpg", 3), ("rgb.jpg", 20), ("rgb.jpg", 300), ("rgb.jpg", -200), ("progressive.jpg", -100),
        ("cmyk.jpg", -50), ("palette.png", 12), ("palette.png", 30), ("rgba.png", -300), ("interlaced.png", -40),
    ])
    func truncated(name: String, cut: Int) throws {
        let bytes = try fixtureBytes(name)
        let keep = cut > 0 ? cut : bytes.count + cut
        let label = "/data/cut-\(name)"
        let error = expectImageError { _ = try decodeImage(data: bytes.prefix(keep), name: label) }
        #expect(error?.kind == .truncated, "\(String(describing: error))")
        #expect(error?.description.hasPrefix(label + ": truncated ") == true, "\(String(describing: error))")
        // Same through a real file.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dcn-trunc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent(name).path
        try bytes.prefix(keep).write(to: URL(fileURLWithPath: path))
        let fileError = expectImageError { _ = try decodeImage(path: path) }
        #expect(fileError?.description.contains(path) == true)
    }

    @Test("Missing end marker: a PNG without IEND decodes, a JPEG without EOI is truncated (as in Pillow)")
    func missingEnd() throws {
        let png = try fixtureBytes("gray.png")
        #expect(try decodeImage(data: png.dropLast(12), name: "noiend.png") == decodeImage(data: png, name: "gray.png"))
        let jpeg = try fixtureBytes("rgb.jpg")
        let error = expectImageError { _ = try decodeImage(data: jpeg.dropLast(2), name: "noeoi.jpg") }
        #expect(error?.kind == .truncated)
    }

    @Test("Recoverable JPEG corruption decodes (as in Pillow) and is reported")
    func warnings() throws {
        let clean = try decodeImageReportingWarnings(path: imageFixture("rgb.jpg"))
        #expect(clean.warningCount == 0 && clean.firstWarning == nil && clean.format == .jpeg)
        // Junk bytes before the SOS marker: libjpeg warns about extraneous bytes and goes on.
        var bytes = try fixtureBytes("rgb.jpg")
        let sos = try #require((0..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xDA })
        bytes.insert(contentsOf: [0x12, 0x34, 0x56], at: sos)
        let noisy = try decodeImageReportingWarnings(data: bytes, name: "junk.jpg")
        #expect(noisy.image == clean.image)
        #expect(noisy.warningCount >= 1)
        #expect(noisy.firstWarning?.contains("extraneous bytes") == true, "\(String(describing: noisy.firstWarning))")
        let oriented = try decodeImageReportingWarnings(path: imageFixture("exif_6.jpg"))
        #expect(oriented.orientation == 6 && oriented.image.width == 37)
    }

    @Test("Corrupt headers throw, naming the file")
    func corrupt() throws {
        // JPEG: junk right after the SOI marker.
        var jpeg = try fixtureBytes("rgb.jpg")
        for i in 3..<40 { jpeg[i] = 0x11 }
        let j = expectImageError { _ = try decodeImage(data: jpeg, name: "bad.jpg") }
        #expect(j?.kind == .corrupt)
        #expect(j?.description.hasPrefix("bad.jpg: corrupt JPEG") == true, "\(String(describing: j))")
        // PNG: a changed IHDR byte fails the chunk CRC.
        var png = try fixtureBytes("gray.png")
        png[18] ^= 0x40
        let p = expectImageError { _ = try decodeImage(data: png, name: "bad.png") }
        #expect(p?.kind == .corrupt)
        #expect(p?.description.hasPrefix("bad.png: corrupt PNG") == true, "\(String(describing: p))")
    }

    // DCN_FUZZ_TRIALS=N raises the trial count (e.g. with `swift test --sanitize=address`).
    @Test("Random truncations and byte flips never crash", arguments: ["rgb.jpg", "progressive.jpg", "palette.png", "rgba16.png"])
    func fuzz(name: String) throws {
        let bytes = try fixtureBytes(name)
        var rng = SeededGenerator(seed: 99)
        var failures = 0
        for trial in 0..<(ProcessInfo.processInfo.environment["DCN_FUZZ_TRIALS"].flatMap { Int($0) } ?? 150) {
            var data = bytes
            if trial % 2 == 0 {
                data = data.prefix(Int(rng.next() % UInt64(data.count)))
            } else {
                for _ in 0..<(1 + Int(rng.next() % 8)) {
                    let i = 2 + Int(rng.next() % UInt64(data.count - 2))
                    data[i] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            do {
                let image = try decodeImage(data: data, name: "fuzz")
                #expect(image.pixels.count == image.width * image.height * 3)
            } catch let error as ImageError {
                failures += 1
                #expect(error.description.hasPrefix("fuzz: "))
            }
        }
        #expect(failures > 0)
    }
}

/// Per-iteration flags written from concurrentPerform (each index by one iteration only).
final class ResultBox: @unchecked Sendable {
    private var flags: [Bool]
    private let lock = NSLock()
    init(count: Int) { flags = Array(repeating: false, count: count) }
    func set(_ i: Int, _ value: Bool) { lock.lock(); flags[i] = value; lock.unlock() }
    var all: Bool { lock.lock(); defer { lock.unlock() }; return flags.allSatisfy { $0 } }
}
