// TensorBoard event files (`events.out.tfevents.<seconds>.<host>`): TFRecord files whose records
// are serialized `Event` messages. A record is
//   length (UInt64, little-endian) | masked CRC32C of the 8 length bytes (UInt32 LE)
//   | data | masked CRC32C of the data (UInt32 LE),
// where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32) and CRC32C is the Castagnoli
// CRC (reflected polynomial 0x82F63B78). The first record carries file_version "brain.Event:2".
import Foundation
import SwiftProtobuf
#if canImport(Glibc)
import Glibc
#endif

public typealias TensorBoardEvent = Tensorboard_Event
public typealias TensorBoardSummary = Tensorboard_Summary

public struct EventFileError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// CRC32C (Castagnoli), as TFRecord uses it.
public enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord's masked form, which keeps a CRC of data that contains CRCs from being trivial.
    public static func masked<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        let c = checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

/// One TFRecord: the framed bytes of `data`.
public func tfRecord(_ data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(data.count + 16)
    let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
    out += length
    withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { out += $0 }
    out += data
    withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out += $0 }
    return out
}

/// The records of a TFRecord file's bytes, every CRC checked. The error names the file, the record
/// and what is wrong (a file cut short by a killed writer, a flipped byte).
public func tfRecords(_ bytes: [UInt8], file: String) throws -> [[UInt8]] {
    var records: [[UInt8]] = []
    var at = 0
    func uint32(_ i: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[i + $1]) << (8 * $1) } }
    while at < bytes.count {
        let n = records.count
        guard at + 12 <= bytes.count else { throw EventFileError("\(file): record \(n) at byte \(at) is cut short (its header needs 12 bytes)") }
        let lengthBytes = Array(bytes[at..<at + 8])
        guard uint32(at + 8) == CRC32C.masked(lengthBytes) else { throw EventFileError("\(file): record \(n) at byte \(at): the length's CRC does not match") }
        let length = lengthBytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) }
        guard length <= UInt64(bytes.count - at - 16) else {
            throw EventFileError("\(file): record \(n) at byte \(at) says \(length) bytes but the file ends before them")
        }
        let data = Array(bytes[at + 12..<at + 12 + Int(length)])
        guard uint32(at + 12 + Int(length)) == CRC32C.masked(data) else { throw EventFileError("\(file): record \(n) at byte \(at): the data's CRC does not match") }
        records.append(data)
        at += 16 + Int(length)
    }
    return records
}

/// The events of an event file, in order (the reader the tests use; TensorBoard has its own).
public func readEventFile(_ path: String) throws -> [TensorBoardEvent] {
    guard let data = FileManager.default.contents(atPath: path) else { throw EventFileError("cannot read \(path)") }
    return try tfRecords([UInt8](data), file: path).enumerated().map { i, record in
        do { return try TensorBoardEvent(serializedBytes: record) } catch {
            throw EventFileError("\(path): record \(i) is not an Event message: \(error)")
        }
    }
}

/// Appends events to a new `events.out.tfevents.<seconds>.<host>` file in a folder, each record
/// written whole with one `write` and flushed to the kernel, so TensorBoard sees it at once and a
/// killed run leaves every earlier record readable.
public final class EventFileWriter {
    public let path: String
    private let handle: FileHandle

    /// A new event file in `folder` whose first record is the file version.
    public init(folder: String, now: Date = Date()) throws {
        var host = [CChar](repeating: 0, count: 256)
        let hostname = gethostname(&host, host.count) == 0
            ? String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "localhost"
        var name = "events.out.tfevents.\(Int(now.timeIntervalSince1970)).\(hostname)"
        // A second writer in the same second (a resumed run) gets its own file.
        var k = 1
        while FileManager.default.fileExists(atPath: folder + "/" + name) {
            name = "events.out.tfevents.\(Int(now.timeIntervalSince1970)).\(hostname).\(k)"
            k += 1
        }
        path = folder + "/" + name
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw EventFileError("cannot create the TensorBoard event file \(path)")
        }
        self.handle = handle
        var first = TensorBoardEvent()
        first.wallTime = now.timeIntervalSince1970
        first.fileVersion = "brain.Event:2"
        try write(first)
    }

    deinit { try? handle.close() }

    public func write(_ event: TensorBoardEvent) throws {
        let bytes: [UInt8] = try event.serializedBytes()
        do { try handle.write(contentsOf: tfRecord(bytes)) } catch {
            throw EventFileError("cannot append to \(path): \(error.localizedDescription)")
        }
    }

    /// Scalars at `step` (one Summary with a value per tag).
    public func writeScalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Date = Date()) throws {
        guard !values.isEmpty else { return }
        var summary = TensorBoardSummary()
        summary.value = values.map { tag, value in
            var v = TensorBoardSummary.Value()
            v.tag = tag
            v.simpleValue = Float(value)
            return v
        }
        try write(event(summary, step: step, wallTime: wallTime))
    }

    /// A resumed run's start at `step`: TensorBoard drops the earlier files' events from `step` on
    /// (the iterations the resumed checkpoint did not keep).
    public func writeSessionStart(step: Int, checkpoint: String, wallTime: Date = Date()) throws {
        var e = TensorBoardEvent()
        e.wallTime = wallTime.timeIntervalSince1970
        e.step = Int64(step)
        var log = Tensorboard_SessionLog()
        log.status = .start
        log.checkpointPath = checkpoint
        e.sessionLog = log
        try write(e)
    }

    /// PNG images at `step` (TensorBoard's image summaries).
    public func writeImages(_ images: [(tag: String, png: Data, width: Int, height: Int)], step: Int, wallTime: Date = Date()) throws {
        guard !images.isEmpty else { return }
        var summary = TensorBoardSummary()
        summary.value = images.map { image in
            var v = TensorBoardSummary.Value()
            v.tag = image.tag
            var picture = TensorBoardSummary.Image()
            picture.height = Int32(image.height)
            picture.width = Int32(image.width)
            picture.colorspace = 3
            picture.encodedImageString = image.png
            v.image = picture
            return v
        }
        try write(event(summary, step: step, wallTime: wallTime))
    }

    private func event(_ summary: TensorBoardSummary, step: Int, wallTime: Date) -> TensorBoardEvent {
        var e = TensorBoardEvent()
        e.wallTime = wallTime.timeIntervalSince1970
        e.step = Int64(step)
        e.summary = summary
        return e
    }
}
