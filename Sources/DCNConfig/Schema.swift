import Foundation

// The schema machinery: value types that know how to read themselves from a YAML node (with
// positions) and write themselves back as flow YAML, per-field checks, and the visitor that
// each config section walks once for decoding, encoding and documentation alike.

/// Where a config value came from.
public enum ConfigOrigin: Equatable, Sendable {
    /// A position in a YAML file (1-based line and column).
    case file(String, line: Int, column: Int)
    /// A `--set key.path=value` argument (the whole argument).
    case override(String)
    /// The default written in code.
    case builtIn
    /// A whole file (it could not be read).
    case wholeFile(String)
}

/// One problem in a config: `file: key.path (line L, column C): message`.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Dotted key path, with `[i]` for list elements; empty for whole-document problems.
    public var path: String
    public var origin: ConfigOrigin
    public var message: String

    public init(path: String, origin: ConfigOrigin, message: String) {
        self.path = path
        self.origin = origin
        self.message = message
    }

    public var description: String {
        let key = path.isEmpty ? "" : "\(path) "
        switch origin {
        case let .file(file, line, column):
            return "\(file): \(key)(line \(line), column \(column)): \(message)"
        case let .override(argument):
            return "\(key)(--set \(argument)): \(message)"
        case .builtIn:
            return "\(key)(default): \(message)"
        case let .wholeFile(file):
            return "\(file): \(message)"
        }
    }
}

/// Every problem found while loading a config (never only the first).
public struct ConfigErrors: Error, Equatable, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public init(_ errors: [ConfigError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

// MARK: - The node tree the loader works on

/// A YAML node with the origin of every value and key (Yams' `Node`, flattened to what a
/// config can hold, so that `base:` merging and `--set` overrides keep positions).
indirect enum ConfigNode {
    /// `plain` is false for quoted scalars ("null" in quotes is a string, not null).
    case scalar(String, plain: Bool, origin: ConfigOrigin)
    case sequence([ConfigNode], origin: ConfigOrigin)
    case mapping([ConfigEntry], origin: ConfigOrigin)

    var origin: ConfigOrigin {
        switch self {
        case let .scalar(_, _, origin), let .sequence(_, origin), let .mapping(_, origin): return origin
        }
    }

    var isNull: Bool {
        if case let .scalar(text, true, _) = self { return ["", "~", "null", "Null", "NULL"].contains(text) }
        return false
    }

    /// How an error message names what was found instead.
    var kindDescription: String {
        switch self {
        case let .scalar(text, plain, _): return isNull ? "null" : (plain ? "'\(text)'" : "\"\(text)\"")
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }
}

struct ConfigEntry {
    var key: String
    var keyOrigin: ConfigOrigin
    var value: ConfigNode
}

// MARK: - Values

/// A type a config field can have.
protocol ConfigValue: Equatable, Sendable {
    /// How the documentation names the type ("int", "list of float", "roipool | roialign").
    static var typeDescription: String { get }
    /// Reads a value, appending an error (at the offending node) if it cannot.
    static func decode(_ node: ConfigNode, path: String, errors: inout [ConfigError]) -> Self?
    /// The value as flow YAML that `decode` reads back to an equal value.
    var yaml: String { get }
}

private func typeError(_ expected: String, _ node: ConfigNode, _ path: String) -> ConfigError {
    ConfigError(path: path, origin: node.origin, message: "expected \(expected), got \(node.kindDescription)")
}

extension Int: ConfigValue {
    static var typeDescription: String { "int" }
    static func decode(_ node: ConfigNode, path: String, errors: inout [ConfigError]) -> Int? {
        if case let .scalar(text, true, _) = node, let value = Int(text) { return value }
        errors.append(typeError("an integer", node, path))
        return nil
    }
    var yaml: String { String(self) }
}

extension Double: ConfigValue {
    static var typeDescription: String { "float" }
    static func decode(_ node: ConfigNode, path: String, errors: inout [ConfigError]) -> Double? {
        if case let .scalar(text, true, _) = node, let value = Double(text), value.isFinite,
           text.first != "+" || text.count > 1 {
            return value
        }
        errors.append(typeError("a number", node, path))
        return nil
    }
    var yaml: String { description }
}

extension Bool: ConfigValue {
    static var typeDescription: String { "bool" }
    static func decode(_ node: ConfigNode, path: String, errors: inout [ConfigError]) -> Bool? {
        if case let .scalar(text, true, _) = node {
            if ["true", "True", "TRUE"].contains(text) { return true }
            if ["false", "False", "FALSE"].contains(text) { return false }
        }
        errors.append(typeError("true or false", node, path))
        return nil
    }
    var yaml: String { self ? "true" : "false" }
}

extension String: ConfigValue {
    static var typeDescription: String { "string" }
    static func decode(_ node: ConfigNode, path: String, errors: inout [ConfigError]) -> String? {
        if case let .scalar(text, _, _) = node, !node.isNull { return text }
        errors.append(typeError("a string", node, path))
        return nil
    }
    var yaml: String { yamlQuoted(self) }
}

/// A double-quoted YAML string (JSON escapes are valid YAML escapes).
func yamlQuoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 { out += String(format: "\\x%02X", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}

extension Optional: ConfigValue where Wrapped: ConfigValue {
    static var typeDescription: String { "\(Wrapped.typeDescription) or null" }
    static func decode(_ node: ConfigNode, path: String, errors: inout [ConfigError]) -> Wrapped?? {
        if node.isNull { return .some(nil) }
        guard let value = Wrapped.decode(node, path: path, errors: &errors) else { return nil }
        return .some(value)
    }
    var yaml: String { map(\.yaml) ?? "null" }
}

extension Array: ConfigValue where Element: ConfigValue {
    static var typeDescription: String { "list of \(Element.typeDescription)" }
    static func decode(_ node: ConfigNode, path: String, errors: inout [ConfigError]) -> [Element]? {
        guard case let .sequence(items, _) = node else {
            errors.append(typeError("a list of \(Element.typeDescription)", node, path))
            return nil
        }
        var values: [Element] = []
        var ok = true
        for (i, item) in items.enumerated() {
            if let value = Element.decode(item, path: "\(path)[\(i)]", errors: &errors) { values.append(value) } else { ok = false }
        }
        return ok ? values : nil
    }
    var yaml: String { "[" + map(\.yaml).joined(separator: ", ") + "]" }
}

/// A fixed choice: a Swift enum whose raw values are the YAML spellings.
protocol ConfigChoice: ConfigValue, CaseIterable, RawRepresentable where RawValue == String {}

extension ConfigChoice {
    static var typeDescription: String { allCases.map(\.rawValue).joined(separator: " | ") }
    static func decode(_ node: ConfigNode, path: String, errors: inout [ConfigError]) -> Self? {
        if case let .scalar(text, _, _) = node, !node.isNull, let value = Self(rawValue: text) { return value }
        let choices = allCases.map(\.rawValue)
        var message = "expected one of \(choices.joined(separator: ", ")), got \(node.kindDescription)"
        if case let .scalar(text, _, _) = node, let near = closestMatch(text, among: choices) {
            message += "; did you mean '\(near)'?"
        }
        errors.append(ConfigError(path: path, origin: node.origin, message: message))
        return nil
    }
    /// Quoted if YAML 1.1 would read the word as a boolean (`off`, `yes`, ...).
    var yaml: String {
        ["y", "n", "yes", "no", "on", "off", "true", "false"].contains(rawValue.lowercased()) ? "\"\(rawValue)\"" : rawValue
    }
}

// MARK: - Checks

/// A failed check: the message and, for lists, the offending element.
struct CheckFailure {
    var index: Int?
    var message: String
}

/// A per-field constraint, with its description for the documentation.
struct Check<T> {
    var text: String
    var test: (T) -> CheckFailure?

    init(_ text: String, _ test: @escaping (T) -> CheckFailure?) {
        self.text = text
        self.test = test
    }

    init(_ text: String, message: String, _ ok: @escaping (T) -> Bool) {
        self.init(text) { ok($0) ? nil : CheckFailure(message: message) }
    }
}

extension Check where T: Comparable & ConfigValue {
    static func range(_ r: ClosedRange<T>) -> Check {
        Check("\(r.lowerBound.yaml)..\(r.upperBound.yaml)", message: "must be in \(r.lowerBound.yaml)..\(r.upperBound.yaml)") { r.contains($0) }
    }
    static func atLeast(_ low: T) -> Check {
        Check(">= \(low.yaml)", message: "must be at least \(low.yaml)") { $0 >= low }
    }
    static func atMost(_ high: T) -> Check {
        Check("<= \(high.yaml)", message: "must be at most \(high.yaml)") { $0 <= high }
    }
    static func above(_ low: T) -> Check {
        Check("> \(low.yaml)", message: "must be greater than \(low.yaml)") { $0 > low }
    }
    /// low < x <= high.
    static func halfOpen(_ low: T, _ high: T) -> Check {
        Check("in (\(low.yaml), \(high.yaml)]", message: "must be in (\(low.yaml), \(high.yaml)]") { $0 > low && $0 <= high }
    }
    /// low <= x < high.
    static func rightOpen(_ low: T, _ high: T) -> Check {
        Check("in [\(low.yaml), \(high.yaml))", message: "must be in [\(low.yaml), \(high.yaml))") { $0 >= low && $0 < high }
    }
    static func oneOf(_ values: [T]) -> Check {
        let list = values.map(\.yaml).joined(separator: " or ")
        return Check(list, message: "must be \(list)") { values.contains($0) }
    }
}

extension Check {
    /// Every element passes `element`; optionally exactly `count` elements / not empty.
    static func each<E>(_ element: Check<E>?, count: Int? = nil, nonEmpty: Bool = false) -> Check where T == [E] {
        var parts: [String] = []
        if let count { parts.append("\(count) values") } else if nonEmpty { parts.append("not empty") }
        if let element { parts.append("each \(element.text)") }
        return Check(parts.joined(separator: ", ")) { list in
            if let count, list.count != count { return CheckFailure(message: "expected \(count) values, got \(list.count)") }
            if nonEmpty, list.isEmpty { return CheckFailure(message: "must not be empty") }
            if let element {
                for (i, value) in list.enumerated() {
                    if let failure = element.test(value) { return CheckFailure(index: i, message: failure.message) }
                }
            }
            return nil
        }
    }

    /// The check applies when the value is not null.
    static func ifSet<W>(_ inner: Check<W>) -> Check where T == W? {
        Check(inner.text) { value in value.flatMap(inner.test) }
    }
}

// MARK: - Sections and visitors

/// Something that walks the fields of a section: decoding, encoding, or listing them.
protocol FieldVisitor {
    mutating func field<T: ConfigValue>(_ key: String, _ value: inout T, _ check: Check<T>?)
}

extension FieldVisitor {
    mutating func field<T: ConfigValue>(_ key: String, _ value: inout T) { field(key, &value, nil) }
}

/// A top-level section of the config: its YAML key and its fields, listed once in `visit`.
protocol ConfigSection: Equatable, Sendable {
    static var key: String { get }
    init()
    mutating func visit<V: FieldVisitor>(_ v: inout V)
}

/// Something that walks the sections of the whole config.
protocol SectionVisitor {
    mutating func section<S: ConfigSection>(_ section: inout S)
}

// MARK: - Suggestions

/// Levenshtein distance between two strings.
public func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = previous
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// The candidate closest to `word` if it is close enough to be a likely misspelling.
public func closestMatch(_ word: String, among candidates: [String]) -> String? {
    let lowered = word.lowercased()
    let scored = candidates.map { ($0, editDistance(lowered, $0.lowercased())) }
    guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
    let limit = max(2, word.count / 3)
    if best.1 <= limit { return best.0 }
    // A key with a missing or extra word part ("batch_size" for "batch_size_per_image").
    if word.count >= 4, let prefix = candidates.first(where: { $0.hasPrefix(lowered) || lowered.hasPrefix($0) }) {
        return prefix
    }
    return nil
}
