// In-memory RGB images, the errors of reading and writing them, and EXIF orientation.
// Decoding and encoding (the only code that touches the C shim) live in ImageCodec.swift.
import DCNTensor

/// An 8-bit RGB image: rows top to bottom, pixels left to right, channels interleaved
/// (`pixels[(y * width + x) * 3 + c]`), no row padding.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    /// Wraps interleaved RGB bytes; throws unless `pixels.count == width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0 else { throw ShapeError("RGBImage: size \(width)x\(height) must be positive") }
        guard pixels.count == width * height * 3 else {
            throw ShapeError("RGBImage: \(pixels.count) bytes for \(width)x\(height)x3 (expected \(width * height * 3))")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image filled with one colour.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        precondition(width > 0 && height > 0, "RGBImage: size \(width)x\(height) must be positive")
        self.width = width
        self.height = height
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            p[3 * i] = fill.0
            p[3 * i + 1] = fill.1
            p[3 * i + 2] = fill.2
        }
        self.pixels = p
    }

    /// Trusted initialiser for code in this module that has already sized `pixels`.
    init(unchecked width: Int, _ height: Int, _ pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The pixel at column x, row y.
    public subscript(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8) {
        get {
            let i = (y * width + x) * 3
            return (pixels[i], pixels[i + 1], pixels[i + 2])
        }
        set {
            let i = (y * width + x) * 3
            pixels[i] = newValue.r
            pixels[i + 1] = newValue.g
            pixels[i + 2] = newValue.b
        }
    }
}

/// Why an image could not be read or written. The description names the file.
public struct ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        case truncated          // the file ends before the image does
        case corrupt            // the decoder rejected the data
        case unsupportedFormat  // neither JPEG nor PNG (by magic bytes), or an unsupported variant
        case tooLarge           // more pixels than the decompression-bomb limit
        case io                 // the file could not be read or written
        case invalidArgument    // e.g. an unknown output extension
    }

    public let file: String
    public let kind: Kind
    public let message: String

    public init(file: String, kind: Kind, message: String) {
        self.file = file
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}

/// The image formats this module reads and writes.
public enum ImageFormat: String, Sendable {
    case jpeg
    case png

    /// The format given by a file's first bytes (JPEG: FF D8 FF; PNG: the 8-byte signature).
    public static func detect<C: Collection>(_ bytes: C) -> ImageFormat? where C.Element == UInt8 {
        let head = Array(bytes.prefix(8))
        if head.count >= 3, head[0] == 0xFF, head[1] == 0xD8, head[2] == 0xFF { return .jpeg }
        if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        return nil
    }

    /// The format for a path's extension (.jpg/.jpeg/.png, any case).
    public static func forPath(_ path: String) -> ImageFormat? {
        guard let dot = path.lastIndex(of: ".") else { return nil }
        switch path[path.index(after: dot)...].lowercased() {
        case "jpg", "jpeg": return .jpeg
        case "png": return .png
        default: return nil
        }
    }
}

extension RGBImage {
    /// The image as it should be displayed given its EXIF orientation tag, exactly as detectron2's
    /// `_apply_exif_orientation` (PIL `Image.transpose`) does:
    /// 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270 (clockwise 90),
    /// 7 TRANSVERSE, 8 ROTATE_90 (counter-clockwise 90). Other values return the image unchanged.
    public func applyingEXIFOrientation(_ orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return self }
        let w = width, h = height
        let swaps = orientation >= 5
        let ow = swaps ? h : w, oh = swaps ? w : h
        // Source pixel (sx, sy) of output pixel (x, y) for each transpose.
        let source: @Sendable (Int, Int) -> (Int, Int)
        switch orientation {
        case 2: source = { x, y in (w - 1 - x, y) }
        case 3: source = { x, y in (w - 1 - x, h - 1 - y) }
        case 4: source = { x, y in (x, h - 1 - y) }
        case 5: source = { x, y in (y, x) }
        case 6: source = { x, y in (y, h - 1 - x) }
        case 7: source = { x, y in (w - 1 - y, h - 1 - x) }
        default: source = { x, y in (w - 1 - y, x) }  // 8
        }
        var out = [UInt8](repeating: 0, count: ow * oh * 3)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let input = SharedReads(src.baseAddress!)
                let output = DisjointWrites(dst.baseAddress!)
                parallelFor(oh, grain: max(1, 65536 / max(1, ow))) { rows in
                    for y in rows {
                        for x in 0..<ow {
                            let (sx, sy) = source(x, y)
                            let s = (sy * w + sx) * 3, d = (y * ow + x) * 3
                            output[d] = input[s]
                            output[d + 1] = input[s + 1]
                            output[d + 2] = input[s + 2]
                        }
                    }
                }
            }
        }
        return RGBImage(unchecked: ow, oh, out)
    }
}
