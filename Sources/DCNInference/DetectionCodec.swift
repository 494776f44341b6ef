// The MPI byte codec of per-image detections: what the processes of a distributed inference send
// rank 0 to gather.
import DCNAnnotations
import DCNModels
import DCNRun
import DCNTensor
import Foundation

/// Per-image detections as bytes, to gather them from the processes of a distributed evaluation:
/// for each image its dataset index and detections (box, score, label, optional mask run lengths),
/// little-endian 64-bit integers and 32-bit floats.
enum DetectionCodec {
    static func encode(_ images: [(index: Int, detections: [ImageDetection])]) -> [UInt8] {
        var out: [UInt8] = []
        func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { out += $0 } }
        func float(_ v: Float) { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        int(images.count)
        for (index, detections) in images {
            int(index); int(detections.count)
            for d in detections {
                for v in [d.detection.box.x1, d.detection.box.y1, d.detection.box.x2, d.detection.box.y2, d.detection.score] { float(v) }
                int(d.detection.label)
                if let mask = d.mask {
                    int(1); int(mask.height); int(mask.width); int(mask.counts.count)
                    for c in mask.counts { int(Int(c)) }
                } else {
                    int(0)
                }
            }
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) throws -> [(index: Int, detections: [ImageDetection])] {
        var at = 0
        func int() throws -> Int {
            guard at + 8 <= bytes.count else { throw TrainingError("gathered detections end early (\(bytes.count) bytes)") }
            var v: Int64 = 0
            for k in 0..<8 { v |= Int64(bytes[at + k]) << (8 * k) }
            at += 8
            return Int(v)
        }
        func float() throws -> Float {
            guard at + 4 <= bytes.count else { throw TrainingError("gathered detections end early (\(bytes.count) bytes)") }
            var v: UInt32 = 0
            for k in 0..<4 { v |= UInt32(bytes[at + k]) << (8 * k) }
            at += 4
            return Float(bitPattern: v)
        }
        var images: [(index: Int, detections: [ImageDetection])] = []
        for _ in 0..<(try int()) {
            let index = try int()
            var detections: [ImageDetection] = []
            for _ in 0..<(try int()) {
                let x1 = try float(), y1 = try float(), x2 = try float(), y2 = try float(), score = try float()
                let label = try int()
                var mask: RLE? = nil
                if try int() == 1 {
                    let height = try int(), width = try int()
                    let counts = try (0..<(try int())).map { _ in UInt32(try int()) }
                    mask = RLE(height: height, width: width, counts: counts)
                }
                detections.append(ImageDetection(detection: Detection(box: Box(x1, y1, x2, y2), score: score, label: label), mask: mask))
            }
            images.append((index, detections))
        }
        return images
    }
}
