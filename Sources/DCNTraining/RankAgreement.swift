// Every process of a data-parallel run trains the same job: the same resolved config, binary,
// training data and parameter layout. Checked once, before the first sum.
import DCNConfig
import DCNData
import DCNDistributed
import DCNModels
import DCNRun
import Foundation

/// Throws (on every process, which then end together) when some process's config, binary,
/// training data or parameters differ from rank 0's, naming the keys that differ.
func requireProcessesAgree(_ group: ProcessGroup, config: ExperimentConfig, data: Dataset, parameters: ParameterList) throws {
    guard group.isDistributed else { return }
    var facts = configFacts(config)
    facts.append(RankFact("the dcn-train binary", executableDigest()))
    facts.append(RankFact("the training data", "\(data.images.count) images, digest \(datasetDigest(data))"))
    facts.append(RankFact("the parameters", "\(parameters.all.count) tensors, digest "
                          + hexDigest(parameters.all.map { "\($0.name)\($0.shape)" }.joined(separator: ";").utf8)))
    if let differences = try group.disagreement(facts) {
        throw TrainingError("the processes do not run the same job (each must be started with the same config, --set options, binary and data): "
                            + differences, exitCode: 2, everyProcess: true)
    }
}

/// The resolved config as "section.key" facts.
func configFacts(_ config: ExperimentConfig) -> [RankFact] {
    var section = "", facts: [RankFact] = []
    for line in config.resolvedYAML().split(separator: "\n") where !line.hasPrefix("#") {
        if !line.hasPrefix(" ") { section = String(line.dropLast()); continue }
        let text = line.drop { $0 == " " }
        guard let colon = text.firstIndex(of: ":") else { continue }
        facts.append(RankFact(section + "." + text[..<colon], String(text[text.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
    }
    return facts
}

/// What identifies the training data: each image's name, size and objects, in order.
func datasetDigest(_ data: Dataset) -> String {
    var text = data.classNames.joined(separator: ",")
    for image in data.images {
        text += "\n\(image.name) \(image.width)x\(image.height) \(image.classLabel)"
        for o in image.objects { text += " \(o.label):\(o.box.x1),\(o.box.y1),\(o.box.x2),\(o.box.y2),\(o.ignore),\(o.polygons.count)" }
    }
    return hexDigest(text.utf8)
}

/// The running executable's bytes, digested (the same build gives the same digest on every machine).
func executableDigest() -> String {
    guard let bytes = FileManager.default.contents(atPath: "/proc/self/exe") else { return "unknown" }
    return hexDigest(bytes)
}

/// 64-bit FNV-1a, in hex: a fingerprint to compare, not a cryptographic hash.
func hexDigest<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return String(h, radix: 16)
}
