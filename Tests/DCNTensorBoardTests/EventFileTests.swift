// TensorBoard event files: CRC32C, TFRecord framing, and a written file read back with every CRC checked.
import DCNData
import DCNPictures
import DCNTensorBoard
import Foundation
import TestSupport
import Testing

@Suite struct EventFiles {
    /// CRC32C's check value, TFRecord's framing, and a written file read back with every CRC checked.
    @Test func recordsAreFramedWithMaskedCRCsAndReadBack() throws {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        let record = tfRecord([1, 2, 3])
        #expect(record.count == 3 + 16)
        #expect(Array(record[0..<8]) == [3, 0, 0, 0, 0, 0, 0, 0])
        let dir = temporaryDirectory("events")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = try EventFileWriter(folder: dir, now: Date(timeIntervalSince1970: 1_700_000_000))
        try writer.writeScalars([("loss/total", 1.5), ("lr", 0.02)], step: 7, wallTime: Date(timeIntervalSince1970: 1_700_000_010))
        let png = try encodePNG(try RGBImage.filled(width: 3, height: 2, color: RGBColor(10, 20, 30)))
        try writer.writeImages([("detections/a.jpg", png, 3, 2)], step: 7)
        try writer.writeSessionStart(step: 8, checkpoint: "model.safetensors")
        #expect((writer.path as NSString).lastPathComponent.hasPrefix("events.out.tfevents.1700000000."))
        let events = try readEventFile(writer.path)
        #expect(events.count == 4)
        #expect(events[0].fileVersion == "brain.Event:2")
        #expect(events[1].step == 7 && events[1].wallTime == 1_700_000_010)
        #expect(events[1].summary.value.map(\.tag) == ["loss/total", "lr"] && events[1].summary.value.map(\.simpleValue) == [1.5, 0.02])
        let image = events[2].summary.value[0].image
        #expect(image.width == 3 && image.height == 2 && image.colorspace == 3 && image.encodedImageString == png)
        #expect(events[3].sessionLog.status == .start && events[3].step == 8)
        // A flipped byte in the second record's data, and a file cut short, are named.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: writer.path)))
        let firstLength = Int(bytes[0]) + 16
        bytes[firstLength + 14] ^= 0x40
        #expect(throws: EventFileError.self) { try tfRecords(bytes, file: "x") }
        do { _ = try tfRecords(bytes, file: "x") } catch { #expect("\(error)".contains("record 1") && "\(error)".contains("CRC")) }
        bytes[firstLength + 14] ^= 0x40
        do { _ = try tfRecords(Array(bytes.dropLast(3)), file: "x"); Issue.record("a cut file was read") } catch {
            #expect("\(error)".contains("record 3"), "\(error)")
        }
    }
}
