// The one file that calls the C image codec (Sources/CImageCodec). Everything else in the
// project sees only `RGBImage`, `ImageError` and the functions below.
import CImageCodec
import DCNTensor
import Foundation

#if canImport(Glibc)
import Glibc
import DCNAnnotations
#endif

/// Options of `decodeImage`.
public struct DecodeOptions: Sendable {
    /// Rotate/flip by the file's EXIF orientation tag as detectron2 does (default true).
    public var applyEXIFOrientation: Bool
    public init(applyEXIFOrientation: Bool = true) { self.applyEXIFOrientation = applyEXIFOrientation }
}

/// Reads and decodes a JPEG or PNG file (format chosen by its magic bytes, not its name) into
/// upright RGB. Errors name the file: "truncated JPEG", "not a JPEG or PNG file", ...
/// Safe to call from many threads at once (each call has its own decoder state).
public func decodeImage(path: String, options: DecodeOptions = DecodeOptions()) throws -> RGBImage {
    try decodeImage(data: readFile(path), name: path, options: options)
}

private func readFile(_ path: String) throws -> Data {
    do {
        return try readFileContents(path, expected: "a JPEG or PNG file")
    } catch let error as FileError {
        throw ImageError(file: path, kind: .io, message: error.message)
    }
}

/// A decoded image with what the decoder noticed on the way (for `dcn-data check`).
public struct DecodedImage: Sendable {
    /// Upright RGB (orientation applied unless the options said otherwise).
    public var image: RGBImage
    public var format: ImageFormat
    /// The file's EXIF orientation tag 1...8, or nil.
    public var orientation: Int?
    /// Recoverable problems (e.g. "Corrupt JPEG data: 3 extraneous bytes before marker 0xd9"):
    /// the count and the first message. Pillow and detectron2 accept such files silently.
    public var warningCount: Int
    public var firstWarning: String?
}

/// Decodes a file and also reports its orientation tag and recoverable decoder warnings.
public func decodeImageReportingWarnings(path: String, options: DecodeOptions = DecodeOptions()) throws -> DecodedImage {
    try decodeImageReportingWarnings(data: readFile(path), name: path, options: options)
}

/// Decodes bytes and also reports the orientation tag and recoverable decoder warnings.
public func decodeImageReportingWarnings(data: Data, name: String, options: DecodeOptions = DecodeOptions()) throws -> DecodedImage {
    try data.withUnsafeBytes { raw in
        let raw = try decodeRaw(raw.bindMemory(to: UInt8.self), name: name)
        let image = RGBImage(unchecked: raw.width, raw.height, raw.pixels)
        return DecodedImage(image: options.applyEXIFOrientation ? image.applyingEXIFOrientation(raw.orientation) : image,
                            format: raw.format, orientation: raw.orientation == 0 ? nil : raw.orientation,
                            warningCount: raw.warningCount, firstWarning: raw.firstWarning)
    }
}

/// Decodes JPEG or PNG bytes; `name` (a path or any label) is used in error messages.
public func decodeImage(data: Data, name: String, options: DecodeOptions = DecodeOptions()) throws -> RGBImage {
    try data.withUnsafeBytes { raw in
        try decodeBytes(raw.bindMemory(to: UInt8.self), name: name, options: options)
    }
}

/// Decodes JPEG or PNG bytes; `name` is used in error messages.
public func decodeImage(bytes: [UInt8], name: String, options: DecodeOptions = DecodeOptions()) throws -> RGBImage {
    try bytes.withUnsafeBufferPointer { try decodeBytes($0, name: name, options: options) }
}

/// What a file's headers say, without decoding its pixels.
public struct ImageInfo: Sendable, Equatable {
    public var format: ImageFormat
    /// Size of the pixels as stored in the file.
    public var storedSize: ImageSize
    /// EXIF orientation tag 1...8, or nil when the file has none.
    public var orientation: Int?

    /// Size after `decodeImage` applies the orientation (5...8 swap width and height).
    public var size: ImageSize {
        (orientation ?? 1) >= 5 ? ImageSize(height: storedSize.width, width: storedSize.height) : storedSize
    }
}

/// Reads only the headers of a JPEG or PNG file (for sizes and aspect ratios without decoding).
/// A PNG's eXIf chunk is seen only when it comes before the image data.
public func probeImage(path: String) throws -> ImageInfo {
    try probeImage(data: readFile(path), name: path)
}

/// Reads only the headers of JPEG or PNG bytes.
public func probeImage(data: Data, name: String) throws -> ImageInfo {
    try data.withUnsafeBytes { raw in
        let bytes = raw.bindMemory(to: UInt8.self)
        let format = try detectFormat(bytes, name: name)
        let (decoded, _) = try callDecoder(format, bytes, name: name, headerOnly: true)
        return ImageInfo(format: format, storedSize: ImageSize(height: Int(decoded.height), width: Int(decoded.width)),
                         orientation: decoded.orientation == 0 ? nil : Int(decoded.orientation))
    }
}

/// The size `decodeImage(path:)` gives the file (EXIF orientation applied), from its headers when
/// they settle it: a PNG whose eXIf chunk may follow the image data is decoded.
public func decodedImageSize(path: String) throws -> ImageSize {
    let info = try probeImage(path: path)
    if info.format == .png && info.orientation == nil {
        let image = try decodeImage(path: path)
        return ImageSize(height: image.height, width: image.width)
    }
    return info.size
}

/// The EXIF orientation tag (1...8) stored in JPEG or PNG bytes, or nil when there is none.
public func exifOrientation(data: Data, name: String) throws -> Int? {
    try probeImage(data: data, name: name).orientation
}

/// Encodes as JPEG (quality 1...100, 4:2:0 chroma subsampling as Pillow does by default).
public func encodeJPEG(_ image: RGBImage, quality: Int = 95) throws -> Data {
    try encode(image, name: "<jpeg>") { rgb, out, size, message, capacity in
        dcn_encode_jpeg(rgb, Int32(image.width), Int32(image.height), Int32(min(max(quality, 1), 100)),
                        out, size, message, capacity)
    }
}

/// Encodes as an 8-bit RGB PNG (lossless).
public func encodePNG(_ image: RGBImage) throws -> Data {
    try encode(image, name: "<png>") { rgb, out, size, message, capacity in
        dcn_encode_png(rgb, Int32(image.width), Int32(image.height), out, size, message, capacity)
    }
}

/// Writes an image as JPEG or PNG according to the path's extension (.jpg, .jpeg, .png). The
/// file appears atomically: the bytes go to a temporary file in the same folder, then rename(2).
public func writeImage(_ image: RGBImage, to path: String, jpegQuality: Int = 95) throws {
    guard let format = ImageFormat.forPath(path) else {
        throw ImageError(file: path, kind: .invalidArgument, message: "unknown image extension (use .jpg, .jpeg or .png)")
    }
    let data: Data
    do {
        data = format == .jpeg ? try encodeJPEG(image, quality: jpegQuality) : try encodePNG(image)
    } catch let error as ImageError {
        throw ImageError(file: path, kind: error.kind, message: error.message)
    }
    try writeAtomically(data, to: path)
}

/// Writes bytes to `path` through a temporary sibling file and rename(2), so readers never see a
/// partial file.
public func writeAtomically(_ data: Data, to path: String) throws {
    do {
        try AtomicFile.write(data, to: path)
    } catch let error as FileWriteError {
        throw ImageError(file: path, kind: .io, message: error.reason)
    }
}

// MARK: - C calls

private struct RawDecoded {
    var pixels: [UInt8]
    var width: Int
    var height: Int
    var orientation: Int
    var format: ImageFormat
    var warningCount: Int
    var firstWarning: String?
}

private let messageCapacity = 256

private func detectFormat(_ bytes: UnsafeBufferPointer<UInt8>, name: String) throws -> ImageFormat {
    guard let format = ImageFormat.detect(bytes) else {
        let what = bytes.isEmpty ? "empty file, not a JPEG or PNG file" : "not a JPEG or PNG file"
        throw ImageError(file: name, kind: .unsupportedFormat, message: what)
    }
    return format
}

/// Calls the shim's decoder or header reader; the caller owns (and must free) `pixels`. Returns
/// the first warning's text as well.
private func callDecoder(_ format: ImageFormat, _ bytes: UnsafeBufferPointer<UInt8>, name: String,
                         headerOnly: Bool) throws -> (dcn_decoded_image, String?) {
    var decoded = dcn_decoded_image()
    var message = [CChar](repeating: 0, count: messageCapacity)
    let status = message.withUnsafeMutableBufferPointer { msg in
        switch (format, headerOnly) {
        case (.jpeg, false): return dcn_decode_jpeg(bytes.baseAddress, bytes.count, &decoded, msg.baseAddress, messageCapacity)
        case (.jpeg, true): return dcn_probe_jpeg(bytes.baseAddress, bytes.count, &decoded, msg.baseAddress, messageCapacity)
        case (.png, false): return dcn_decode_png(bytes.baseAddress, bytes.count, &decoded, msg.baseAddress, messageCapacity)
        case (.png, true): return dcn_probe_png(bytes.baseAddress, bytes.count, &decoded, msg.baseAddress, messageCapacity)
        }
    }
    if status != Int32(DCN_CODEC_OK.rawValue) {
        dcn_codec_free(decoded.pixels)
        let detail = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw codecError(status: status, label: format == .jpeg ? "JPEG" : "PNG", detail: detail, file: name)
    }
    let warning = decoded.warnings > 0 ? message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : nil
    return (decoded, warning)
}

private func decodeRaw(_ bytes: UnsafeBufferPointer<UInt8>, name: String) throws -> RawDecoded {
    let format = try detectFormat(bytes, name: name)
    let (decoded, warning) = try callDecoder(format, bytes, name: name, headerOnly: false)
    defer { dcn_codec_free(decoded.pixels) }
    let width = Int(decoded.width), height = Int(decoded.height)
    let pixels = [UInt8](UnsafeBufferPointer(start: decoded.pixels, count: width * height * 3))
    return RawDecoded(pixels: pixels, width: width, height: height, orientation: Int(decoded.orientation),
                      format: format, warningCount: Int(decoded.warnings), firstWarning: warning)
}

private func decodeBytes(_ bytes: UnsafeBufferPointer<UInt8>, name: String, options: DecodeOptions) throws -> RGBImage {
    let raw = try decodeRaw(bytes, name: name)
    let image = RGBImage(unchecked: raw.width, raw.height, raw.pixels)
    return options.applyEXIFOrientation ? image.applyingEXIFOrientation(raw.orientation) : image
}

private func codecError(status: Int32, label: String, detail: String, file: String) -> ImageError {
    switch UInt32(bitPattern: status) {
    case DCN_CODEC_TRUNCATED.rawValue:
        // The shim's messages already start with "truncated <format>".
        return ImageError(file: file, kind: .truncated,
                          message: detail.hasPrefix("truncated") ? detail : "truncated \(label) (\(detail))")
    case DCN_CODEC_UNSUPPORTED.rawValue:
        return ImageError(file: file, kind: .unsupportedFormat, message: "unsupported \(label): \(detail)")
    case DCN_CODEC_TOO_LARGE.rawValue:
        return ImageError(file: file, kind: .tooLarge, message: "\(label) too large: \(detail)")
    case DCN_CODEC_NO_MEMORY.rawValue:
        return ImageError(file: file, kind: .io, message: "out of memory decoding \(label)")
    case DCN_CODEC_BAD_ARGUMENT.rawValue:
        return ImageError(file: file, kind: .invalidArgument, message: "\(label): \(detail)")
    default:
        return ImageError(file: file, kind: .corrupt, message: "corrupt \(label) (\(detail))")
    }
}

private func encode(
    _ image: RGBImage, name: String,
    _ call: (UnsafePointer<UInt8>?, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>,
             UnsafeMutablePointer<Int>, UnsafeMutablePointer<CChar>?, Int) -> Int32
) throws -> Data {
    try encode(image.pixels, name: name, call)
}

private func encode(
    _ pixels: [UInt8], name: String,
    _ call: (UnsafePointer<UInt8>?, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>,
             UnsafeMutablePointer<Int>, UnsafeMutablePointer<CChar>?, Int) -> Int32
) throws -> Data {
    var out: UnsafeMutablePointer<UInt8>? = nil
    var size = 0
    var message = [CChar](repeating: 0, count: messageCapacity)
    let status = pixels.withUnsafeBufferPointer { rgb in
        message.withUnsafeMutableBufferPointer { msg in
            call(rgb.baseAddress, &out, &size, msg.baseAddress, messageCapacity)
        }
    }
    defer { dcn_codec_free(out) }
    if status != Int32(DCN_CODEC_OK.rawValue) || out == nil {
        let detail = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw ImageError(file: name, kind: .corrupt, message: "encoding failed (\(detail))")
    }
    return Data(bytes: out!, count: size)
}

// MARK: - Label maps (palette or grayscale PNG samples, no conversion)

/// The stored samples of a palette or grayscale PNG: one byte per pixel, row-major (the palette
/// index of a palette PNG, not its colour).
public struct PNGSamples: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var samples: [UInt8]
    /// Whether the file is a palette PNG (VOC's SegmentationClass) rather than grayscale.
    public var isPalette: Bool
}

/// Decodes a palette or grayscale PNG of at most 8 bits to its samples. Any other file (a JPEG,
/// an RGB or 16-bit PNG, truncated or corrupt data) is an `ImageError` naming `name`.
public func decodePNGSamples(data: Data, name: String) throws -> PNGSamples {
    try data.withUnsafeBytes { raw in
        let bytes = raw.bindMemory(to: UInt8.self)
        if try detectFormat(bytes, name: name) == .jpeg {
            throw ImageError(file: name, kind: .unsupportedFormat,
                             message: "a JPEG file; a label map is a palette or grayscale PNG (JPEG compression changes class indices)")
        }
        var decoded = dcn_decoded_labels()
        var message = [CChar](repeating: 0, count: messageCapacity)
        let status = message.withUnsafeMutableBufferPointer { msg in
            dcn_decode_png_samples(bytes.baseAddress, bytes.count, &decoded, msg.baseAddress, messageCapacity)
        }
        defer { dcn_codec_free(decoded.samples) }
        if status != Int32(DCN_CODEC_OK.rawValue) {
            let detail = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw codecError(status: status, label: "PNG", detail: detail, file: name)
        }
        let width = Int(decoded.width), height = Int(decoded.height)
        return PNGSamples(width: width, height: height, samples: [UInt8](UnsafeBufferPointer(start: decoded.samples, count: width * height)),
                          isPalette: decoded.is_palette != 0)
    }
}

/// Encodes one byte per pixel as an 8-bit grayscale PNG, or as a palette PNG when `palette`
/// (RGB triples, 1...256 entries) is given.
public func encodePNGSamples(_ samples: [UInt8], width: Int, height: Int, palette: [UInt8]? = nil) throws -> Data {
    guard width > 0, height > 0, samples.count == width * height else {
        throw ImageError(file: "<png>", kind: .invalidArgument, message: "\(samples.count) samples for a \(width)x\(height) label map")
    }
    guard palette.map({ $0.count % 3 == 0 && (3...768).contains($0.count) }) ?? true else {
        throw ImageError(file: "<png>", kind: .invalidArgument, message: "a palette is 1 to 256 RGB triples, got \(palette!.count) bytes")
    }
    return try encode(samples, name: "<png>") { pixels, out, size, message, capacity in
        if let palette {
            return palette.withUnsafeBufferPointer {
                dcn_encode_png_samples(pixels, Int32(width), Int32(height), $0.baseAddress, Int32(palette.count / 3), out, size, message, capacity)
            }
        }
        return dcn_encode_png_samples(pixels, Int32(width), Int32(height), nil, 0, out, size, message, capacity)
    }
}
