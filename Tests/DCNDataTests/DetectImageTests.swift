// The decoding dcn-detect relies on, checked against values known by construction rather than
// against Pillow's decode (ImageTests does that): an EXIF orientation tag written into a JPEG's
// APP1 segment here turns the stored blocks where the tag says, and a CMYK JPEG's flat colours
// come back as the RGB their CMYK values give.
import DCNData
import Foundation
import TestSupport
import Testing

@Suite("dcn-detect's images")
struct DetectImageTests {
    /// Six 16-pixel blocks (whole JPEG MCUs, so chroma subsampling does not mix them), numbered 0...5
    /// row-major: 0 1 2 / 3 4 5.
    static let colours: [[UInt8]] = [[230, 20, 20], [20, 200, 20], [20, 20, 230], [230, 230, 20], [20, 220, 220], [220, 20, 220]]

    static func blocks() throws -> RGBImage {
        let block = 16, width = 3 * block, height = 2 * block
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let c = colours[(y / block) * 3 + x / block]
                pixels.replaceSubrange(3 * (y * width + x) ..< 3 * (y * width + x) + 3, with: c)
            }
        }
        return try RGBImage(width: width, height: height, pixels: pixels)
    }

    /// An APP1 segment "Exif\0\0" + a big-endian TIFF header with one IFD entry: orientation `k`.
    static func exifSegment(orientation k: Int) -> [UInt8] {
        let tiff: [UInt8] = [0x4D, 0x4D, 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,   // "MM", 42, IFD0 at 8
                             0x00, 0x01,                                         // one entry
                             0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,     // tag 0x0112, SHORT, count 1
                             0x00, UInt8(k), 0x00, 0x00,                         // the value, padded
                             0x00, 0x00, 0x00, 0x00]                             // no next IFD
        let payload = Array("Exif".utf8) + [0, 0] + tiff
        let length = payload.count + 2
        return [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + payload
    }

    /// Which stored block shows at each upright position (row-major), from the tag's definition:
    /// 2 mirrors, 3 turns 180 degrees, 4 flips upside down, 5 transposes, 6 turns the stored image
    /// 90 degrees clockwise, 7 transverses, 8 turns it 90 degrees counter-clockwise.
    static let upright: [Int: (width: Int, blocks: [Int])] = [
        1: (3, [0, 1, 2, 3, 4, 5]), 2: (3, [2, 1, 0, 5, 4, 3]), 3: (3, [5, 4, 3, 2, 1, 0]), 4: (3, [3, 4, 5, 0, 1, 2]),
        5: (2, [0, 3, 1, 4, 2, 5]), 6: (2, [3, 0, 4, 1, 5, 2]), 7: (2, [5, 2, 4, 1, 3, 0]), 8: (2, [2, 5, 1, 4, 0, 3]),
    ]

    @Test("An EXIF orientation k written into a JPEG turns its blocks as the tag says", arguments: 1...8)
    func exifOrientationTurnsTheBlocks(k: Int) throws {
        let jpeg = [UInt8](try encodeJPEG(Self.blocks(), quality: 100))
        let tagged = Array(jpeg[0..<2]) + Self.exifSegment(orientation: k) + Array(jpeg[2...])  // after SOI
        #expect(try exifOrientation(data: Data(tagged), name: "tagged") == k)
        let image = try decodeImage(bytes: tagged, name: "tagged_\(k).jpg")
        let expected = Self.upright[k]!
        #expect(image.width == expected.width * 16 && image.height == (6 / expected.width) * 16)
        for (position, block) in expected.blocks.enumerated() {
            let x = (position % expected.width) * 16 + 8, y = (position / expected.width) * 16 + 8
            let pixel = Array(image.pixels[3 * (y * image.width + x) ..< 3 * (y * image.width + x) + 3])
            let want = Self.colours[block]
            #expect(zip(pixel, want).allSatisfy { abs(Int($0) - Int($1)) <= 12 },
                    "orientation \(k): upright block \(position) is \(pixel), expected stored block \(block) \(want)")
        }
    }

    @Test("A CMYK JPEG (Adobe inverted) decodes to the RGB of its CMYK values")
    func cmykQuadrants() throws {
        // Tests/Fixtures/detect/make_fixtures.py: cyan, magenta, yellow and 50 % black quadrants.
        let image = try decodeImage(path: fixturePath("detect/cmyk_quadrants.jpg"))
        #expect(image.width == 32 && image.height == 32)
        let expected: [(x: Int, y: Int, rgb: [Int])] = [(8, 8, [0, 255, 255]), (24, 8, [255, 0, 255]), (8, 24, [255, 255, 0]),
                                                         (24, 24, [127, 127, 127])]
        for (x, y, rgb) in expected {
            let pixel = image.pixels[3 * (y * 32 + x) ..< 3 * (y * 32 + x) + 3].map(Int.init)
            #expect(zip(pixel, rgb).allSatisfy { abs($0 - $1) <= 3 }, "(\(x), \(y)) is \(pixel), expected \(rgb)")
        }
    }
}
