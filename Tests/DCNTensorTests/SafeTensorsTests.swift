// safetensors reading and writing, the random generator, and BLAS sanity.
import DCNTensor
import Foundation
import Testing

private func temporaryPath(_ name: String) -> String {
    NSTemporaryDirectory() + "dcn-\(getpid())-\(name)"
}

@Test func safetensorsRoundTripKeepsBitsAndMetadata() throws {
    var rng = SeededGenerator(seed: 1)
    let a = Tensor.normal([3, 4, 5], using: &rng)
    var b = Tensor.normal([7], using: &rng)
    b.data[0] = .nan; b.data[1] = -0.0; b.data[2] = .infinity; b.data[3] = .leastNonzeroMagnitude
    let path = temporaryPath("roundtrip.safetensors")
    defer { unlink(path) }
    try SafeTensorsWriter.write(["layer.weight": a, "layer.bias": b], metadata: ["format": "pt", "iteration": "10"], to: path)
    let file = try SafeTensorsFile(path: path)
    #expect(file.metadata == ["format": "pt", "iteration": "10"])
    #expect(Set(file.names) == ["layer.weight", "layer.bias"])
    let a2 = try file.tensor("layer.weight"), b2 = try file.tensor("layer.bias")
    #expect(a2.shape == [3, 4, 5])
    #expect(a2.data.map(\.bitPattern) == a.data.map(\.bitPattern))
    #expect(b2.data.map(\.bitPattern) == b.data.map(\.bitPattern))
    // The data section starts 8-byte aligned.
    let raw = try Data(contentsOf: URL(fileURLWithPath: path))
    let headerLength = raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    #expect((8 + headerLength) % 8 == 0)
}

/// Builds a safetensors file by hand so the reader is checked against the format, not our writer.
private func handMadeFile(_ entries: [(String, String, [Int], [UInt8])]) throws -> String {
    var header: [String: Any] = [:]
    var body: [UInt8] = []
    for (name, dtype, shape, bytes) in entries {
        header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [body.count, body.count + bytes.count]]
        body += bytes
    }
    let json = try JSONSerialization.data(withJSONObject: header)
    var length = UInt64(json.count).littleEndian
    var data = Data(bytes: &length, count: 8)
    data.append(json)
    data.append(contentsOf: body)
    let path = temporaryPath("hand-\(entries.map(\.0).joined()).safetensors")
    try data.write(to: URL(fileURLWithPath: path))
    return path
}

@Test func readsHalfBFloatDoubleAndIntegers() throws {
    // F16: 1.0 = 0x3C00, -2.5 = 0xC100, 65504 = 0x7BFF, smallest subnormal 0x0001 = 2^-24.
    let f16: [UInt8] = [0x00, 0x3C, 0x00, 0xC1, 0xFF, 0x7B, 0x01, 0x00]
    // BF16: 1.0 = 0x3F80, -3.0 = 0xC040.
    let bf16: [UInt8] = [0x80, 0x3F, 0x40, 0xC0]
    var f64: [UInt8] = []
    for v in [0.1, -1e300] { withUnsafeBytes(of: v.bitPattern.littleEndian) { f64 += $0 } }
    var i64: [UInt8] = []
    for v: Int64 in [-5, 1 << 40] { withUnsafeBytes(of: v.littleEndian) { i64 += $0 } }
    let path = try handMadeFile([("h", "F16", [4], f16), ("b", "BF16", [2], bf16), ("d", "F64", [2], f64), ("i", "I64", [2], i64)])
    defer { unlink(path) }
    let file = try SafeTensorsFile(path: path)
    #expect(try file.tensor("h").data == [1.0, -2.5, 65504, Float(sign: .plus, exponent: -24, significand: 1)])
    #expect(try file.tensor("b").data == [1.0, -3.0])
    #expect(try file.doubles("d").values == [0.1, -1e300])
    #expect(try file.ints("i").values == [-5, 1 << 40])
}

@Test func corruptFilesGiveErrorsNamingTheFile() throws {
    let path = temporaryPath("bad.safetensors")
    defer { unlink(path) }
    try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
    #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: path) }
    var length = UInt64(1000).littleEndian
    var data = Data(bytes: &length, count: 8)
    data.append(contentsOf: Array("{}".utf8))
    try data.write(to: URL(fileURLWithPath: path))
    do {
        _ = try SafeTensorsFile(path: path)
        Issue.record("a header longer than the file must be rejected")
    } catch let error as SafeTensorsError {
        #expect(error.message.contains(path))
    }
    // A tensor whose byte range does not match its shape.
    let bad = try handMadeFile([("x", "F32", [3], [0, 0, 0, 0])])
    defer { unlink(bad) }
    #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: bad) }
    #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: "/nonexistent/file.safetensors") }
}

@Test func seededGeneratorIsReproducible() {
    var a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42)
    let xs = (0..<100).map { _ in a.normal() }, ys = (0..<100).map { _ in b.normal() }
    #expect(xs == ys)
    let restored = SeededGenerator(state: a.stateArray)
    #expect(restored == a)
    let mean = xs.reduce(0, +) / 100
    #expect(abs(mean) < 0.3)
}

@Test func sgemmMatchesNaiveProduct() {
    var rng = SeededGenerator(seed: 3)
    let m = 5, n = 7, k = 3
    let a = Tensor.normal([k, m], using: &rng), b = Tensor.normal([k, n], using: &rng)  // A stored transposed
    var c = Tensor(zeros: [m, n])
    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
        BLAS.sgemm(transA: true, transB: false, m: m, n: n, k: k, alpha: 1, a: ap.baseAddress!, lda: m,
                   b: bp.baseAddress!, ldb: n, beta: 0, c: cp.baseAddress!, ldc: n)
    } } }
    for i in 0..<m {
        for j in 0..<n {
            var s: Float = 0
            for p in 0..<k { s += a.data[p * m + i] * b.data[p * n + j] }
            #expect(abs(c.data[i * n + j] - s) < 1e-5)
        }
    }
}

@Test func linearSolveThroughLAPACKE() {
    var a: [Double] = [2, 1, 1, 3], b: [Double] = [3, 5]
    #expect(BLAS.solve(&a, &b, n: 2))
    #expect(abs(b[0] - 0.8) < 1e-12 && abs(b[1] - 1.4) < 1e-12)
    var singular: [Double] = [1, 2, 2, 4], rhs: [Double] = [1, 1]
    #expect(!BLAS.solve(&singular, &rhs, n: 2))
}

/// A file with one hand-written header (no data checks beyond what the header claims).
private func headerOnlyFile(_ name: String, header: String, body: Int = 16) throws -> String {
    var length = UInt64(header.utf8.count).littleEndian
    var data = Data(bytes: &length, count: 8)
    data.append(contentsOf: Array(header.utf8))
    data.append(Data(count: body))
    let path = temporaryPath(name)
    try data.write(to: URL(fileURLWithPath: path))
    return path
}

@Test("Forged headers are errors naming the file and the tensor, never traps", arguments: [
    (#"{"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}"#, "too large"),
    (#"{"t":{"dtype":"F64","shape":[9223372036854775807],"data_offsets":[0,16]}}"#, "too large"),
    (#"{"t":{"dtype":"F32","shape":[-4,-1],"data_offsets":[0,16]}}"#, "negative size"),
    (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, "overlap"),
    (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, "overlap"),
])
func forgedHeadersAreRejected(header: String, expected: String) throws {
    let path = try headerOnlyFile("forged-\(abs(header.hashValue)).safetensors", header: header)
    defer { unlink(path) }
    do {
        _ = try SafeTensorsFile(path: path)
        Issue.record("accepted \(header)")
    } catch let error as SafeTensorsError {
        #expect(error.message.contains(path) && error.message.contains(expected), "\(error.message)")
    }
}

@Test func aDirectoryOrNonIntegerValuesAreClearErrors() throws {
    let dir = temporaryPath("a-folder.safetensors")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect { _ = try SafeTensorsFile(path: dir) } throws: { ($0 as? SafeTensorsError)?.message == "\(dir): is a directory; expected a safetensors file" }
    // ints() of a float tensor holding NaN or 1e300 is an error, not a trap.
    var f64: [UInt8] = []
    for v in [Double.nan, 1e300] { withUnsafeBytes(of: v.bitPattern.littleEndian) { f64 += $0 } }
    let path = try handMadeFile([("nonint", "F64", [2], f64)])
    defer { unlink(path) }
    #expect { _ = try SafeTensorsFile(path: path).ints("nonint") } throws: { "\($0)".contains("not an integer") }
}

@Test func fuzzedHeadersNeverTrap() throws {
    // Mutations of a valid file's header (bytes flipped, spans cut or repeated, digits changed):
    // each either reads or throws a SafeTensorsError naming the file.
    let good = temporaryPath("fuzz-base.safetensors")
    defer { unlink(good) }
    try SafeTensorsWriter.write([("w", .f32(shape: [3, 4], values: (0..<12).map(Float.init))), ("i", .i64(shape: [2], values: [1, -2]))],
                                metadata: ["format": "x"], to: good)
    let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
    let headerEnd = 8 + Int(original[0]) + Int(original[1]) << 8
    var rng = SeededGenerator(seed: 11)
    let path = temporaryPath("fuzz.safetensors")
    defer { unlink(path) }
    let digits = Array("0123456789-e.".utf8)
    for round in 0..<400 {
        var bytes = original
        for _ in 0...Int(rng.next() % 3) where bytes.count > 9 {
            // A place in the header (or in what is left of the file after a cut).
            let at = 8 + Int(rng.next() % UInt64(min(headerEnd, bytes.count - 1) - 8))
            switch rng.next() % 5 {
            case 0: bytes[at] ^= UInt8(1 << (rng.next() % 8))
            case 1: bytes[at] = digits[Int(rng.next() % UInt64(digits.count))]
            case 2: bytes.insert(contentsOf: Array("99999999999999999999".utf8.prefix(Int(rng.next() % 20) + 1)), at: at)
            case 3: bytes.removeSubrange(at..<min(bytes.count, at + Int(rng.next() % 8) + 1))
            default: bytes = Array(bytes.prefix(at))
            }
        }
        if round % 50 == 0 { bytes.replaceSubrange(0..<8, with: withUnsafeBytes(of: rng.next().littleEndian) { Array($0) }) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            let file = try SafeTensorsFile(path: path)
            for name in file.names { _ = try file.tensor(name) }
        } catch let error as SafeTensorsError {
            #expect(error.message.contains(path), "round \(round): \(error.message)")
        }
    }
}
