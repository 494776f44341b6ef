// Loading a config: Yams `compose` (nodes with line/column marks) -> our node tree ->
// `base:` inheritance (mappings merged key by key, lists replaced) -> `--set` overrides ->
// a walk of the tree against the schema that collects every error -> cross-field validation.
import Foundation
import Yams

/// Loads the experiment config at `path`, following `base:` files and applying `overrides`
/// (`key.path=value` strings from `--set`, values parsed as YAML scalars or flow lists).
/// Throws `ConfigErrors` listing every problem as `file: key.path (line L, column C): message`.
public func loadConfig(path: String, overrides: [String] = []) throws -> ExperimentConfig {
    var loader = ConfigLoader()
    let tree = loader.loadFile(path, includedFrom: nil, chain: [])
    return try loader.finish(tree, overrides: overrides)
}

/// Loads a config from YAML text; `name` stands for the file name in messages, and `base:`
/// paths are resolved against `directory` (the working directory by default).
public func loadConfig(yaml: String, name: String = "<config>", directory: String? = nil,
                       overrides: [String] = []) throws -> ExperimentConfig {
    var loader = ConfigLoader()
    let dir = directory ?? FileManager.default.currentDirectoryPath
    let tree = loader.loadText(yaml, name: name, directory: dir, chain: [])
    return try loader.finish(tree, overrides: overrides)
}

extension ExperimentConfig {
    /// Every top-level key, section by section, with its field keys (schema order).
    public static var schemaKeys: [(section: String, keys: [String])] {
        var lister = KeyLister()
        var config = ExperimentConfig()
        config.visitSections(&lister)
        return lister.sections
    }
}

struct ConfigLoader {
    var errors: [ConfigError] = []
    /// Values one file may expand to. A real config holds a few hundred; YAML aliases nested a
    /// few levels deep ("billion laughs") expand to billions, which this stops early.
    static let maximumValues = 100_000
    var valuesLeft = 0

    // MARK: Files and base inheritance

    /// Reads one file and its bases, merged; nil if it could not be read at all.
    mutating func loadFile(_ path: String, includedFrom: (ConfigOrigin, String)?, chain: [String]) -> ConfigNode? {
        let canonical = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        if let (origin, keyPath) = includedFrom, chain.contains(canonical) {
            let names = (chain + [canonical]).map { ($0 as NSString).lastPathComponent }
            errors.append(ConfigError(path: keyPath, origin: origin,
                                      message: "inheritance cycle: \(names.joined(separator: " -> "))"))
            return nil
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            var isFolder: ObjCBool = false
            let message = !FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) ? "no such file '\(path)'"
                : isFolder.boolValue ? "'\(path)' is a folder; expected a YAML config file"
                : !FileManager.default.isReadableFile(atPath: path) ? "cannot read '\(path)' (permission denied)"
                : "cannot read '\(path)' as UTF-8 text"
            if let (origin, keyPath) = includedFrom {
                errors.append(ConfigError(path: keyPath, origin: origin, message: message))
            } else {
                errors.append(ConfigError(path: "", origin: .wholeFile(path), message: message))
            }
            return nil
        }
        let directory = (path as NSString).deletingLastPathComponent
        return loadText(text, name: path, directory: directory.isEmpty ? "." : directory, chain: chain + [canonical])
    }

    /// Parses one document, then merges it over its `base:` (if any).
    mutating func loadText(_ text: String, name: String, directory: String, chain: [String]) -> ConfigNode? {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            errors.append(yamlSyntaxError(error, file: name))
            return nil
        }
        guard let root else { return .mapping([], origin: .file(name, line: 1, column: 1)) }
        valuesLeft = Self.maximumValues
        guard let tree = convert(root, file: name, path: "") else { return nil }
        guard case .mapping(var entries, let origin) = tree else {
            errors.append(ConfigError(path: "", origin: tree.origin,
                                      message: "expected a mapping of sections (model, backbone, ...), got \(tree.kindDescription)"))
            return nil
        }
        guard let index = entries.firstIndex(where: { $0.key == "base" }) else { return tree }
        let baseEntry = entries.remove(at: index)
        let child = ConfigNode.mapping(entries, origin: origin)
        guard case let .scalar(basePath, _, _) = baseEntry.value, !baseEntry.value.isNull, !basePath.isEmpty else {
            errors.append(ConfigError(path: "base", origin: baseEntry.value.origin,
                                      message: "expected a file name, got \(baseEntry.value.kindDescription)"))
            return child
        }
        let resolved = basePath.hasPrefix("/") ? basePath : (directory as NSString).appendingPathComponent(basePath)
        guard let base = loadFile(resolved, includedFrom: (baseEntry.value.origin, "base"), chain: chain) else { return child }
        return merge(base, child)
    }

    /// `over` wins; mappings merge key by key, everything else (lists included) is replaced.
    func merge(_ base: ConfigNode, _ over: ConfigNode) -> ConfigNode {
        guard case var .mapping(baseEntries, _) = base, case let .mapping(overEntries, origin) = over else { return over }
        for entry in overEntries {
            if let i = baseEntries.firstIndex(where: { $0.key == entry.key }) {
                baseEntries[i] = ConfigEntry(key: entry.key, keyOrigin: entry.keyOrigin, value: merge(baseEntries[i].value, entry.value))
            } else {
                baseEntries.append(entry)
            }
        }
        return .mapping(baseEntries, origin: origin)
    }

    func yamlSyntaxError(_ error: Error, file: String) -> ConfigError {
        let origin: (Mark) -> ConfigOrigin = { .file(file, line: $0.line, column: $0.column) }
        switch error as? YamlError {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let detail = context.map { "\($0.text), " } ?? ""
            return ConfigError(path: "", origin: origin(mark), message: "invalid YAML: \(detail)\(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            return ConfigError(path: "", origin: origin(context.mark),
                               message: "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in a mapping")
        default:
            return ConfigError(path: "", origin: .file(file, line: 1, column: 1), message: "invalid YAML: \(error)")
        }
    }

    /// Yams node -> our node, keeping every mark.
    mutating func convert(_ node: Node, file: String, path: String) -> ConfigNode? {
        let origin: ConfigOrigin = node.mark.map { .file(file, line: $0.line, column: $0.column) } ?? .file(file, line: 1, column: 1)
        valuesLeft -= 1
        if valuesLeft == -1 {
            errors.append(ConfigError(path: path, origin: origin, message:
                "the document expands to more than \(Self.maximumValues) values (YAML aliases nested in each other?); a config holds a few hundred"))
        }
        if valuesLeft < 0 { return nil }
        switch node {
        case let .scalar(scalar):
            return .scalar(scalar.string, plain: scalar.style == .plain, origin: origin)
        case let .sequence(sequence):
            var items: [ConfigNode] = []
            for (i, item) in sequence.enumerated() {
                if let converted = convert(item, file: file, path: "\(path)[\(i)]") { items.append(converted) }
            }
            return .sequence(items, origin: origin)
        case let .mapping(mapping):
            var entries: [ConfigEntry] = []
            for (key, value) in mapping {
                let keyOrigin: ConfigOrigin = key.mark.map { .file(file, line: $0.line, column: $0.column) } ?? origin
                guard case let .scalar(keyScalar) = key else {
                    errors.append(ConfigError(path: path, origin: keyOrigin, message: "keys must be plain names"))
                    continue
                }
                let keyPath = path.isEmpty ? keyScalar.string : "\(path).\(keyScalar.string)"
                if let converted = convert(value, file: file, path: keyPath) {
                    entries.append(ConfigEntry(key: keyScalar.string, keyOrigin: keyOrigin, value: converted))
                }
            }
            return .mapping(entries, origin: origin)
        case .alias:
            errors.append(ConfigError(path: path, origin: origin, message: "YAML aliases are not supported in configs"))
            return nil
        }
    }

    // MARK: Overrides

    /// Applies one `key.path=value` argument to the tree.
    mutating func applyOverride(_ argument: String, to tree: ConfigNode) -> ConfigNode {
        let origin = ConfigOrigin.override(argument)
        guard let equals = argument.firstIndex(of: "=") else {
            errors.append(ConfigError(path: "", origin: origin, message: "expected key.path=value"))
            return tree
        }
        let keyPath = argument[..<equals].trimmingCharacters(in: .whitespaces)
        let valueText = String(argument[argument.index(after: equals)...])
        let parts = keyPath.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let schema = ExperimentConfig.schemaKeys
        let sections = schema.map(\.section)
        guard let section = schema.first(where: { $0.section == parts[0] }) else {
            var message = "unknown section '\(parts[0])'"
            if let near = closestMatch(parts[0], among: sections) { message += "; did you mean '\(near)'?" }
            errors.append(ConfigError(path: keyPath, origin: origin, message: message))
            return tree
        }
        guard parts.count == 2 else {
            errors.append(ConfigError(path: keyPath, origin: origin,
                                      message: parts.count == 1 ? "expected section.key, e.g. \(section.section).\(section.keys[0])"
                                                                : "'\(parts[1])' in \(section.section) has no sub-keys"))
            return tree
        }
        guard section.keys.contains(parts[1]) else {
            var message = "unknown key '\(parts[1])' in \(section.section)"
            if let near = closestMatch(parts[1], among: section.keys) { message += "; did you mean '\(near)'?" }
            errors.append(ConfigError(path: keyPath, origin: origin, message: message))
            return tree
        }
        let value: ConfigNode
        do {
            if let node = try Yams.compose(yaml: valueText) {
                guard let converted = convertOverride(node, origin: origin) else { return tree }
                value = converted
            } else {
                value = .scalar("", plain: true, origin: origin)
            }
        } catch {
            errors.append(ConfigError(path: keyPath, origin: origin, message: "invalid YAML value '\(valueText)'"))
            return tree
        }
        let patch = ConfigNode.mapping([ConfigEntry(key: parts[0], keyOrigin: origin, value:
            .mapping([ConfigEntry(key: parts[1], keyOrigin: origin, value: value)], origin: origin))], origin: origin)
        return merge(tree, patch)
    }

    /// Like `convert`, but every node gets the override's origin.
    mutating func convertOverride(_ node: Node, origin: ConfigOrigin) -> ConfigNode? {
        guard let converted = convert(node, file: "--set", path: "") else { return nil }
        func retag(_ n: ConfigNode) -> ConfigNode {
            switch n {
            case let .scalar(text, plain, _): return .scalar(text, plain: plain, origin: origin)
            case let .sequence(items, _): return .sequence(items.map(retag), origin: origin)
            case let .mapping(entries, _):
                return .mapping(entries.map { ConfigEntry(key: $0.key, keyOrigin: origin, value: retag($0.value)) }, origin: origin)
            }
        }
        return retag(converted)
    }

    // MARK: Decoding

    mutating func finish(_ tree: ConfigNode?, overrides: [String]) throws -> ExperimentConfig {
        // A file that could not be read or parsed leaves a partial tree: report what is in it,
        // but no cross-field rule (those would only complain about missing parts).
        let loadFailed = !errors.isEmpty
        var tree = tree ?? .mapping([], origin: .builtIn)
        for argument in overrides { tree = applyOverride(argument, to: tree) }
        guard case let .mapping(entries, _) = tree else { throw ConfigErrors(errors) }
        var decoder = SectionDecoder(entries: entries)
        var config = ExperimentConfig()
        config.visitSections(&decoder)
        let known = ExperimentConfig.schemaKeys.map(\.section)
        for entry in entries where !known.contains(entry.key) {
            var message = "unknown section '\(entry.key)'"
            if let near = closestMatch(entry.key, among: known) { message += "; did you mean '\(near)'?" }
            decoder.errors.append(ConfigError(path: entry.key, origin: entry.keyOrigin, message: message))
        }
        errors += decoder.errors
        // Cross-field rules run even after field errors, skipping the rules on rejected keys.
        if !loadFailed {
            var validator = Validator(origins: decoder.origins, rejected: errors)
            validator.validate(config)
            errors += validator.errors
        }
        guard errors.isEmpty else { throw ConfigErrors(sorted(errors)) }
        return config
    }

    /// Errors by file, then position; overrides after files, defaults last.
    func sorted(_ errors: [ConfigError]) -> [ConfigError] {
        func rank(_ e: ConfigError) -> (Int, String, Int, Int) {
            switch e.origin {
            case let .file(f, l, c): return (0, f, l, c)
            case let .override(a): return (1, a, 0, 0)
            case .builtIn: return (2, "", 0, 0)
            case let .wholeFile(f): return (-1, f, 0, 0)
            }
        }
        return errors.enumerated().sorted { a, b in
            let ra = rank(a.element), rb = rank(b.element)
            if ra != rb { return ra < rb }
            return a.offset < b.offset
        }.map(\.element)
    }
}

/// Decodes each section from its mapping, collecting errors and the origin of every value.
struct SectionDecoder: SectionVisitor {
    let entries: [ConfigEntry]
    var errors: [ConfigError] = []
    var origins: [String: ConfigOrigin] = [:]

    init(entries: [ConfigEntry]) { self.entries = entries }

    mutating func section<S: ConfigSection>(_ section: inout S) {
        guard let entry = entries.last(where: { $0.key == S.key }) else { return }
        if entry.value.isNull { return }  // `rpn:` with nothing under it = all defaults
        guard case let .mapping(fields, _) = entry.value else {
            errors.append(ConfigError(path: S.key, origin: entry.value.origin,
                                      message: "expected a mapping of \(S.key) fields, got \(entry.value.kindDescription)"))
            return
        }
        origins[S.key] = entry.value.origin
        var fieldDecoder = FieldDecoder(section: S.key, fields: fields)
        section.visit(&fieldDecoder)
        for field in fields where !fieldDecoder.seen.contains(field.key) {
            var message = "unknown key '\(field.key)' in \(S.key)"
            if let near = closestMatch(field.key, among: fieldDecoder.seen) { message += "; did you mean '\(near)'?" }
            fieldDecoder.errors.append(ConfigError(path: "\(S.key).\(field.key)", origin: field.keyOrigin, message: message))
        }
        errors += fieldDecoder.errors
        origins.merge(fieldDecoder.origins) { $1 }
    }
}

struct FieldDecoder: FieldVisitor {
    let section: String
    let fields: [ConfigEntry]
    var seen: [String] = []
    var errors: [ConfigError] = []
    var origins: [String: ConfigOrigin] = [:]

    init(section: String, fields: [ConfigEntry]) {
        self.section = section
        self.fields = fields
    }

    mutating func field<T: ConfigValue>(_ key: String, _ value: inout T, _ check: Check<T>?) {
        seen.append(key)
        guard let entry = fields.last(where: { $0.key == key }) else { return }
        let path = "\(section).\(key)"
        record(entry.value, path: path)
        guard let decoded = T.decode(entry.value, path: path, errors: &errors) else { return }
        if let check, let failure = check.test(decoded) {
            var at = path, origin = entry.value.origin
            if let i = failure.index, case let .sequence(items, _) = entry.value, i < items.count {
                at = "\(path)[\(i)]"
                origin = items[i].origin
            }
            errors.append(ConfigError(path: at, origin: origin, message: failure.message))
            return
        }
        value = decoded
    }

    mutating func record(_ node: ConfigNode, path: String) {
        origins[path] = node.origin
        if case let .sequence(items, _) = node {
            for (i, item) in items.enumerated() { record(item, path: "\(path)[\(i)]") }
        }
    }
}

/// Lists the schema's keys.
struct KeyLister: SectionVisitor {
    var sections: [(section: String, keys: [String])] = []

    mutating func section<S: ConfigSection>(_ section: inout S) {
        var fields = FieldLister()
        section.visit(&fields)
        sections.append((S.key, fields.keys))
    }

    struct FieldLister: FieldVisitor {
        var keys: [String] = []
        mutating func field<T: ConfigValue>(_ key: String, _ value: inout T, _ check: Check<T>?) { keys.append(key) }
    }
}
