// The safetensors file format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
// {string: string}}, then the raw little-endian bytes. Files are memory-mapped for reading.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An error reading or writing a safetensors file; the message names the file.
public struct SafeTensorsError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Element types of the format that this project reads.
public enum SafeTensorsDType: String, Sendable, Codable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16", i64 = "I64", i32 = "I32", u8 = "U8", bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .u8, .bool: return 1
        }
    }
}

/// One tensor's entry in the header.
public struct SafeTensorsEntry: Sendable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range inside the data section.
    public let byteRange: Range<Int>
}

/// A read-only memory mapping of a whole file, unmapped when released.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let size: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SafeTensorsError("\(path): cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SafeTensorsError("\(path): cannot stat") }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw SafeTensorsError("\(path): is \(info.st_mode & S_IFMT == S_IFDIR ? "a directory" : "not a regular file"); expected a safetensors file")
        }
        size = Int(info.st_size)
        guard size >= 8 else { throw SafeTensorsError("\(path): \(size) bytes is too short for a safetensors file") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw SafeTensorsError("\(path): cannot map the file into memory")
        }
        base = UnsafeRawPointer(p)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }
}

/// A safetensors file opened for reading. Tensors are decoded on request from the mapping, so a
/// large checkpoint is not copied into memory as a whole.
public struct SafeTensorsFile: Sendable {
    public let path: String
    /// Entries in file order (by data offset).
    public let entries: [SafeTensorsEntry]
    /// The header's `__metadata__` (string to string).
    public let metadata: [String: String]
    private let file: MappedFile
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        self.file = file
        let headerLength = UInt64(littleEndian: file.base.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(file.size - 8) else {
            throw SafeTensorsError("\(path): header length \(headerLength) runs past the end of the \(file.size)-byte file")
        }
        let dataStart = 8 + Int(headerLength)
        self.dataStart = dataStart
        let headerBytes = Data(bytes: file.base + 8, count: Int(headerLength))
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: headerBytes)
        } catch {
            throw SafeTensorsError("\(path): the header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = object as? [String: Any] else {
            throw SafeTensorsError("\(path): the header is not a JSON object")
        }
        var entries: [SafeTensorsEntry] = []
        var metadata: [String: String] = [:]
        let dataSize = file.size - dataStart
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw SafeTensorsError("\(path): __metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw SafeTensorsError("\(path): __metadata__.\(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let e = value as? [String: Any],
                  let dtypeName = e["dtype"] as? String,
                  let shape = e["shape"] as? [Int],
                  let offsets = e["data_offsets"] as? [Int], offsets.count == 2
            else { throw SafeTensorsError("\(path): entry '\(name)' needs dtype, shape and data_offsets") }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw SafeTensorsError("\(path): tensor '\(name)' has unsupported dtype \(dtypeName)")
            }
            // The element count, refusing negative sizes and products that overflow.
            var count = 1, overflow = false
            for d in shape + [dtype.byteSize] {
                guard d >= 0 else { throw SafeTensorsError("\(path): tensor '\(name)' has a negative size in its shape \(shape)") }
                (count, overflow) = count.multipliedReportingOverflow(by: d)
                if overflow { throw SafeTensorsError("\(path): tensor '\(name)' has shape \(shape), too large for any file") }
            }
            let expected = count
            guard offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] <= dataSize, offsets[1] - offsets[0] == expected else {
                throw SafeTensorsError("\(path): tensor '\(name)' has byte range \(offsets) but shape \(shape) of \(dtypeName) needs \(expected) bytes within \(dataSize)")
            }
            entries.append(SafeTensorsEntry(name: name, dtype: dtype, shape: shape, byteRange: offsets[0]..<offsets[1]))
        }
        self.entries = entries.sorted { ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound) }
        // Tensors own disjoint bytes: two entries over the same bytes are a damaged or forged header.
        for (a, b) in zip(self.entries, self.entries.dropFirst()) where b.byteRange.lowerBound < a.byteRange.upperBound {
            throw SafeTensorsError("\(path): tensors '\(a.name)' (bytes \(a.byteRange)) and '\(b.name)' (bytes \(b.byteRange)) overlap")
        }
        self.metadata = metadata
    }

    public var names: [String] { entries.map(\.name) }

    public func entry(_ name: String) -> SafeTensorsEntry? { entries.first { $0.name == name } }

    private func requireEntry(_ name: String) throws -> SafeTensorsEntry {
        guard let e = entry(name) else { throw SafeTensorsError("\(path): no tensor named '\(name)'") }
        return e
    }

    /// The tensor converted to Double (every floating and integer type).
    public func doubles(_ name: String) throws -> (shape: [Int], values: [Double]) {
        let e = try requireEntry(name)
        let n = e.shape.reduce(1, *)
        let raw = file.base + dataStart + e.byteRange.lowerBound
        var out = [Double](repeating: 0, count: n)
        for i in 0..<n {
            let p = raw + i * e.dtype.byteSize
            switch e.dtype {
            case .f64: out[i] = Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
            case .f32: out[i] = Double(Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))))
            case .f16: out[i] = Double(halfToFloat(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))))
            case .bf16: out[i] = Double(Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))) << 16))
            case .i64: out[i] = Double(Int64(littleEndian: p.loadUnaligned(as: Int64.self)))
            case .i32: out[i] = Double(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
            case .u8, .bool: out[i] = Double(p.load(as: UInt8.self))
            }
        }
        return (e.shape, out)
    }

    /// The tensor converted to float32.
    public func tensor(_ name: String) throws -> Tensor {
        let e = try requireEntry(name)
        if e.dtype == .f32 {
            let n = e.shape.reduce(1, *)
            var data = [Float](repeating: 0, count: n)
            let raw = file.base + dataStart + e.byteRange.lowerBound
            data.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: n * 4)) }
            #if _endian(big)
            data = data.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
            #endif
            return try Tensor(shape: e.shape, data: data)
        }
        let (shape, values) = try doubles(name)
        return try Tensor(shape: shape, data: values.map { Float($0) })
    }

    /// Integer tensors (I64, I32, U8) as Int; a value that is not a whole number in Int's range is an error.
    public func ints(_ name: String) throws -> (shape: [Int], values: [Int]) {
        let (shape, values) = try doubles(name)
        return (shape, try values.map { v in
            guard let i = Int(exactly: v) else { throw SafeTensorsError("\(path): tensor '\(name)' holds \(v), not an integer") }
            return i
        })
    }
}

/// IEEE 754 half precision to single precision.
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        // Zero or subnormal: value = mantissa * 2^-24.
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 31 {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
}

/// Writes tensors to a safetensors file atomically (a temporary file renamed into place).
public enum SafeTensorsWriter {
    public enum Payload: Sendable {
        case f32(shape: [Int], values: [Float])
        case f64(shape: [Int], values: [Double])
        case i64(shape: [Int], values: [Int64])
    }

    public static func write(_ tensors: [(name: String, payload: Payload)], metadata: [String: String] = [:],
                             to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var body = Data()
        for (name, payload) in tensors {
            let start = body.count
            let (dtype, shape): (String, [Int])
            switch payload {
            case let .f32(s, v):
                try checkCount(name, s, v.count)
                dtype = "F32"; shape = s
                v.withUnsafeBufferPointer { b in b.forEach { var x = $0.bitPattern.littleEndian; body.append(Data(bytes: &x, count: 4)) } }
            case let .f64(s, v):
                try checkCount(name, s, v.count)
                dtype = "F64"; shape = s
                v.forEach { var x = $0.bitPattern.littleEndian; body.append(Data(bytes: &x, count: 8)) }
            case let .i64(s, v):
                try checkCount(name, s, v.count)
                dtype = "I64"; shape = s
                v.forEach { var x = $0.littleEndian; body.append(Data(bytes: &x, count: 8)) }
            }
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [start, body.count]] as [String: Any]
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data section starts 8-byte aligned.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var length = UInt64(json.count).littleEndian
        var file = Data(bytes: &length, count: 8)
        file.append(json)
        file.append(body)
        try AtomicFile.write(file, to: path)
    }

    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        try write(tensors.keys.sorted().map { ($0, Payload.f32(shape: tensors[$0]!.shape, values: tensors[$0]!.data)) },
                  metadata: metadata, to: path)
    }

    private static func checkCount(_ name: String, _ shape: [Int], _ count: Int) throws {
        guard shape.reduce(1, *) == count else {
            throw SafeTensorsError("tensor '\(name)': shape \(shape) does not match \(count) values")
        }
    }
}

/// An error writing a file (the message names the file and the reason).
public struct FileWriteError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Whole-file writes that never leave a half-written file behind: write a uniquely named
/// temporary sibling and flush it to the disk (fsync), then rename(2) it over `path` and flush
/// the folder, so readers see the old or the new file, also after a power loss.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporary = folder + "/.\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        func failure(_ what: String) -> FileWriteError {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            return FileWriteError(path: path, reason: "\(what) (\(reason))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("cannot write") }
        let written = data.withUnsafeBytes { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        guard written, fsync(fd) == 0 else {
            let error = failure("cannot write")
            close(fd)
            throw error
        }
        guard close(fd) == 0 else { throw failure("cannot write") }
        guard rename(temporary, path) == 0 else { throw failure("cannot move the finished file into place") }
        // The rename itself reaches the disk with the folder's entry.
        let dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { _ = fsync(dir); close(dir) }
    }
}
