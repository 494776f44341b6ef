// Loading pretrained weights (torchvision / timm state_dict names, in safetensors files) into a
// model's parameters, with every mismatch reported at once.
import DCNTensor

/// All problems found while matching a file's tensors to a model's parameters.
public struct WeightLoadError: Error, CustomStringConvertible {
    public let path: String
    public let missing: [String]
    public let unexpected: [String]
    public let wrongShape: [(name: String, model: [Int], file: [Int])]

    public var description: String {
        var lines = ["\(path): the weights do not match the model"]
        if !missing.isEmpty { lines.append("  missing in the file (\(missing.count)): " + missing.prefix(20).joined(separator: ", ") + (missing.count > 20 ? ", ..." : "")) }
        if !unexpected.isEmpty { lines.append("  unexpected in the file (\(unexpected.count)): " + unexpected.prefix(20).joined(separator: ", ") + (unexpected.count > 20 ? ", ..." : "")) }
        for w in wrongShape.prefix(20) { lines.append("  wrong shape: \(w.name) is \(w.file) in the file, the model needs \(w.model)") }
        return lines.joined(separator: "\n")
    }
}

/// What a successful load did.
public struct WeightLoadReport: Sendable {
    /// Model parameter names that received values.
    public var loaded: [String] = []
    /// Model parameters that kept their initial values (allowed to be missing, e.g. offset branches).
    public var keptInitial: [String] = []
    /// File tensors that were not used (ignored by the rules, e.g. `num_batches_tracked`, `fc.*`).
    public var ignored: [String] = []
    /// Model parameters the file has but that kept their initial values on request (`keepInitial`).
    public var reinitialised: [String] = []

    /// "loaded 161 tensors; kept initial: ...; skipped in the file: ..." for logs.
    public var summary: String {
        func list(_ names: [String]) -> String { names.prefix(6).joined(separator: ", ") + (names.count > 6 ? ", ..." : "") }
        var parts = ["loaded \(loaded.count) tensors"]
        if !reinitialised.isEmpty { parts.append("re-initialised as asked \(reinitialised.count) (\(list(reinitialised)))") }
        if !keptInitial.isEmpty { parts.append("not in the file, kept initial \(keptInitial.count) (\(list(keptInitial)))") }
        if !ignored.isEmpty { parts.append("skipped in the file \(ignored.count) (\(list(ignored)))") }
        return parts.joined(separator: "; ")
    }
}

/// How file names map onto model names and what may differ.
public struct WeightLoadOptions: Sendable {
    /// Prefix of the names in the file (e.g. `weights.` or `module.`), removed before matching.
    public var filePrefix: String = ""
    /// Prefix of the model's names (e.g. `backbone.`), removed before matching.
    public var modelPrefix: String = ""
    /// Model parameters that may be absent from the file and keep their initial values.
    /// Default: deformable offset branches (a regular checkpoint has none).
    public var mayBeMissing: @Sendable (String) -> Bool = { $0.contains("_offset.") }
    /// File tensors that may be left unused. Default: batch norm's `num_batches_tracked`.
    public var mayBeUnused: @Sendable (String) -> Bool = { $0.hasSuffix("num_batches_tracked") }
    /// Model parameters that keep their initial values even when the file has them.
    public var keepInitial: @Sendable (String) -> Bool = { _ in false }

    public init(filePrefix: String = "", modelPrefix: String = "") {
        self.filePrefix = filePrefix
        self.modelPrefix = modelPrefix
    }
}

/// Copies the file's tensors into the matching parameters (F32/F16/BF16/F64 converted to float32).
/// Nothing is changed unless every parameter matches; otherwise throws `WeightLoadError` listing
/// the missing, unexpected and wrongly shaped names.
@discardableResult
public func loadWeights(_ parameters: ParameterList, from file: SafeTensorsFile, options: WeightLoadOptions = WeightLoadOptions()) throws -> WeightLoadReport {
    var fileNames: [String: SafeTensorsEntry] = [:]
    var unexpected: [String] = []
    var report = WeightLoadReport()
    for entry in file.entries {
        // Tensors outside the prefix are other content of the file (inputs, optimiser state).
        guard entry.name.hasPrefix(options.filePrefix) else { continue }
        fileNames[String(entry.name.dropFirst(options.filePrefix.count))] = entry
    }
    var missing: [String] = []
    var wrongShape: [(String, [Int], [Int])] = []
    var plan: [(Parameter, String)] = []
    var used = Set<String>()
    for p in parameters.all {
        let key = p.name.hasPrefix(options.modelPrefix) ? String(p.name.dropFirst(options.modelPrefix.count)) : p.name
        guard let entry = fileNames[key] else {
            if options.mayBeMissing(p.name) { report.keptInitial.append(p.name) } else { missing.append(p.name) }
            continue
        }
        used.insert(key)
        if options.keepInitial(p.name) {
            report.reinitialised.append(p.name)
            continue
        }
        if entry.shape != p.shape {
            wrongShape.append((p.name, p.shape, entry.shape))
            continue
        }
        plan.append((p, entry.name))
    }
    for (key, entry) in fileNames where !used.contains(key) {
        if options.mayBeUnused(entry.name) { report.ignored.append(entry.name) } else { unexpected.append(entry.name) }
    }
    if !missing.isEmpty || !unexpected.isEmpty || !wrongShape.isEmpty {
        throw WeightLoadError(path: file.path, missing: missing, unexpected: unexpected.sorted(), wrongShape: wrongShape)
    }
    // Every tensor is read and checked before any parameter changes.
    let values = try plan.map { (_, name) -> Tensor in
        let value = try file.tensor(name)
        if let bad = value.data.firstIndex(where: { !$0.isFinite }) {
            throw SafeTensorsError("\(file.path): tensor '\(name)' holds \(value.data[bad]) at element \(bad); weights must be finite")
        }
        return value
    }
    for ((p, _), value) in zip(plan, values) {
        p.value = value
        report.loaded.append(p.name)
    }
    report.ignored.sort()
    return report
}

/// Writes every parameter and buffer (float32, under its full name) atomically.
public func saveWeights(_ parameters: ParameterList, metadata: [String: String] = [:], to path: String) throws {
    try SafeTensorsWriter.write(parameters.all.map { ($0.name, SafeTensorsWriter.Payload.f32(shape: $0.shape, values: $0.value.data)) },
                                metadata: metadata, to: path)
}
