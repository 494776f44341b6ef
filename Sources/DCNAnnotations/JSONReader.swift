// A small, strict, fast pull reader for JSON (RFC 8259). Foundation's JSONDecoder builds a
// generic tree first and is several times slower on a 40 MB results file; this reader walks
// the bytes once and lets the COCO loaders pull exactly the fields they need.
import Foundation

/// A JSON syntax or schema error with the file and the byte offset (line and column).
public struct JSONReadError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String
    public var description: String { "\(file) (line \(line), column \(column)): \(message)" }
}

/// Cursor over the bytes of one JSON document. Numbers are parsed with correct rounding
/// (Clinger's fast path for short decimals, `strtod` otherwise), as Python's `json` does.
struct JSONReader {
    let bytes: [UInt8]  // the file plus a terminating 0
    let file: String
    var position = 0
    /// Arrays and objects open around the current position (bounded: see `maxDepth`).
    var depth = 0
    /// Deeper nesting is an error rather than a stack overflow (COCO files nest 4 levels).
    static let maxDepth = 256

    init(data: Data, file: String) {
        var b = [UInt8](data)
        b.append(0)
        bytes = b
        self.file = file
    }

    /// Reads the file; an unreadable path is a `FileError` saying why ("is a directory", ...).
    init(path: String) throws {
        self.init(data: try readFileContents(path, expected: "a JSON file"), file: path)
    }

    /// An error at the current position, or at the byte offset `at`.
    func error(_ message: String, at offset: Int? = nil) -> JSONReadError {
        var line = 1, column = 1
        var i = 0
        let end = min(offset ?? position, bytes.count - 1)
        while i < end {
            if bytes[i] == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
            i += 1
        }
        return JSONReadError(file: file, line: line, column: column, message: message)
    }

    var atEnd: Bool { position >= bytes.count - 1 }

    mutating func skipWhitespace() {
        while true {
            let c = bytes[position]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { position += 1 } else { return }
        }
    }

    /// The next non-whitespace byte without consuming it (0 at the end).
    mutating func peek() -> UInt8 {
        skipWhitespace()
        return bytes[position]
    }

    mutating func expect(_ c: UInt8, _ what: String) throws {
        skipWhitespace()
        guard bytes[position] == c else {
            throw error("expected \(what), found \(describeNext())")
        }
        position += 1
    }

    func describeNext() -> String {
        if atEnd { return "the end of the file" }
        let c = bytes[position]
        if c >= 0x20 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x\(String(c, radix: 16))"
    }

    /// Requires that only whitespace remains.
    mutating func expectEnd() throws {
        skipWhitespace()
        if !atEnd { throw error("unexpected \(describeNext()) after the top-level value") }
    }

    private mutating func enter() throws {
        depth += 1
        if depth > JSONReader.maxDepth { throw error("arrays and objects nested more than \(JSONReader.maxDepth) levels deep") }
    }

    /// Calls `body` once per element of an array.
    mutating func readArray(_ body: (inout JSONReader) throws -> Void) throws {
        try expect(UInt8(ascii: "["), "'[' (an array)")
        try enter()
        defer { depth -= 1 }
        if peek() == UInt8(ascii: "]") { position += 1; return }
        while true {
            try body(&self)
            skipWhitespace()
            let c = bytes[position]
            if c == UInt8(ascii: ",") { position += 1; continue }
            if c == UInt8(ascii: "]") { position += 1; return }
            throw error("expected ',' or ']' in an array, found \(describeNext())")
        }
    }

    /// Calls `body` with each key of an object; `body` must consume the value.
    mutating func readObject(_ body: (inout JSONReader, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"), "'{' (an object)")
        try enter()
        defer { depth -= 1 }
        if peek() == UInt8(ascii: "}") { position += 1; return }
        while true {
            skipWhitespace()
            guard bytes[position] == UInt8(ascii: "\"") else { throw error("expected a key string, found \(describeNext())") }
            let key = try readString()
            try expect(UInt8(ascii: ":"), "':' after a key")
            try body(&self, key)
            skipWhitespace()
            let c = bytes[position]
            if c == UInt8(ascii: ",") { position += 1; continue }
            if c == UInt8(ascii: "}") { position += 1; return }
            throw error("expected ',' or '}' in an object, found \(describeNext())")
        }
    }

    /// True (and consumed) when the next value is `null`.
    mutating func readNullIfPresent() -> Bool {
        if peek() == UInt8(ascii: "n"), position + 3 < bytes.count,
            bytes[position + 1] == UInt8(ascii: "u"), bytes[position + 2] == UInt8(ascii: "l"),
            bytes[position + 3] == UInt8(ascii: "l")
        {
            position += 4
            return true
        }
        return false
    }

    mutating func readBool() throws -> Bool {
        skipWhitespace()
        if matchLiteral("true") { return true }
        if matchLiteral("false") { return false }
        throw error("expected true or false, found \(describeNext())")
    }

    private mutating func matchLiteral(_ word: String) -> Bool {
        let w = Array(word.utf8)
        let n = w.count
        guard position + n < bytes.count else { return false }
        for k in 0..<n where bytes[position + k] != w[k] { return false }
        position += n
        return true
    }

    mutating func readString() throws -> String {
        try expect(UInt8(ascii: "\""), "a string")
        let start = position
        var hasEscape = false
        while true {
            let c = bytes[position]
            if c == UInt8(ascii: "\"") { break }
            if c == 0 && atEnd { throw error("unterminated string") }
            if c < 0x20 { throw error("control character in a string") }
            if c == UInt8(ascii: "\\") {
                if position + 1 >= bytes.count - 1 { throw error("unterminated string") }
                hasEscape = true
                position += 2
                continue
            }
            position += 1
        }
        let end = position
        position += 1
        if !hasEscape {
            return String(decoding: bytes[start..<end], as: UTF8.self)
        }
        return try unescape(start, end)
    }

    private func unescape(_ start: Int, _ end: Int) throws -> String {
        var out = [UInt8]()
        out.reserveCapacity(end - start)
        var i = start
        func hex4(_ at: Int) throws -> UInt32 {
            guard at + 4 <= end else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for k in 0..<4 {
                let c = bytes[at + k]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw error("bad \\u escape")
                }
                v = v * 16 + d
            }
            return v
        }
        while i < end {
            let c = bytes[i]
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(i)
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00, i + 6 <= end, bytes[i] == 0x5C, bytes[i + 1] == UInt8(ascii: "u") {
                    let low = try hex4(i + 2)
                    if low >= 0xDC00 && low < 0xE000 {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                let s = String(Unicode.Scalar(scalar).map(Character.init) ?? "\u{FFFD}")
                out.append(contentsOf: Array(s.utf8))
            default: throw error("bad escape \\\(Character(Unicode.Scalar(e)))")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let exactPowersOfTen: [Double] = (0...22).map { k in
        var p = 1.0
        for _ in 0..<k { p *= 10 }
        return p
    }

    /// Reads a JSON number as a correctly rounded Double.
    mutating func readDouble() throws -> Double {
        skipWhitespace()
        let start = position
        var i = position
        var negative = false
        if bytes[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        guard bytes[i] >= 0x30 && bytes[i] <= 0x39 else { throw error("expected a number, found \(describeNext())") }
        if bytes[i] == 0x30 && bytes[i + 1] >= 0x30 && bytes[i + 1] <= 0x39 { throw error("leading zero in a number") }
        var mantissa: UInt64 = 0
        var digits = 0
        var fractionDigits = 0
        while bytes[i] >= 0x30 && bytes[i] <= 0x39 {
            if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(bytes[i] - 0x30) }
            if mantissa != 0 { digits += 1 }
            i += 1
        }
        var simple = true
        if bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard bytes[i] >= 0x30 && bytes[i] <= 0x39 else { throw error("expected a digit after '.'") }
            while bytes[i] >= 0x30 && bytes[i] <= 0x39 {
                if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(bytes[i] - 0x30) }
                if mantissa != 0 { digits += 1 }
                fractionDigits += 1
                i += 1
            }
        }
        if bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            simple = false
            i += 1
            if bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard bytes[i] >= 0x30 && bytes[i] <= 0x39 else { throw error("expected a digit in the exponent") }
            while bytes[i] >= 0x30 && bytes[i] <= 0x39 { i += 1 }
        }
        position = i
        // Clinger's fast path: an exact integer mantissa below 2^53 and an exact power of ten
        // give a correctly rounded quotient.
        if simple && digits <= 15 && fractionDigits <= 22 {
            let value = Double(mantissa) / JSONReader.exactPowersOfTen[fractionDigits]
            return negative ? -value : value
        }
        return bytes.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { base in
                strtod(base + start, nil)
            }
        }
    }

    /// Every integer of magnitude up to 2^53 - 1 is exact in a Double; beyond it neighbouring
    /// integers read as one (9007199254740993 as 9007199254740992).
    static let largestExactInteger = 9_007_199_254_740_991.0

    /// Reads a JSON number that must be an integer, the value of `key` (Python accepts `3.0` as
    /// an image id only through equality, so we require an integral value). Integers beyond
    /// ±(2^53 - 1) are refused: two such ids could silently become one.
    mutating func readInt(key: String) throws -> Int {
        skipWhitespace()
        let start = position
        let v = try readDouble()
        let literal = String(decoding: bytes[start..<position], as: UTF8.self)
        guard v.rounded() == v else {
            throw error("\"\(key)\": expected an integer, found \(literal)", at: start)
        }
        guard abs(v) <= JSONReader.largestExactInteger else {
            throw error("\"\(key)\": \(literal) is outside the range of exact integers, -(2^53 - 1) to 2^53 - 1 = 9007199254740991", at: start)
        }
        return Int(v)
    }

    mutating func readDoubleArray() throws -> [Double] {
        var out = [Double]()
        try readArray { r in out.append(try r.readDouble()) }
        return out
    }

    /// Skips any value.
    mutating func skipValue() throws {
        let c = peek()
        switch c {
        case UInt8(ascii: "{"): try readObject { r, _ in try r.skipValue() }
        case UInt8(ascii: "["): try readArray { r in try r.skipValue() }
        case UInt8(ascii: "\""): _ = try readString()
        case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try readBool()
        case UInt8(ascii: "n"):
            if !readNullIfPresent() { throw error("unexpected \(describeNext())") }
        default: _ = try readDouble()
        }
    }
}
