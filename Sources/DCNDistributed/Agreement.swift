// Ranks that must run the same job check it before their first sum: each names the facts it runs
// with (config keys, binary, data, parameter layout), rank 0 compares every rank's to its own, and
// every rank learns the verdict. Ranks that disagreed would otherwise sum gradients of different
// sizes (heap corruption), wait for sums the others never start (a hang), or average different
// updates (wrong weights with exit 0).
import Foundation

/// One fact a rank runs with, e.g. ("solver.base_lr", "0.02").
public struct RankFact: Sendable, Equatable {
    public let key: String
    public let value: String
    public init(_ key: String, _ value: String) { self.key = key; self.value = value }
}

extension ProcessGroup {
    /// The facts on which some rank differs from rank 0, in words ("solver.base_lr: rank 0 has 0.02,
    /// rank 1 has 0.01"), the same on every rank; nil when every rank has rank 0's facts. A single
    /// process agrees with itself.
    public func disagreement(_ facts: [RankFact]) throws -> String? {
        guard isDistributed else { return nil }
        // Key and value separated by a 0 byte, facts by a 1 byte: neither occurs in the texts.
        let encoded = Array(facts.map { $0.key + "\u{0}" + $0.value }.joined(separator: "\u{1}").utf8)
        var verdict: [UInt8] = []
        if let all = try gather(encoded) {
            let decoded = all.map { bytes -> [String: String] in
                var facts: [String: String] = [:]
                for fact in String(decoding: bytes, as: UTF8.self).split(separator: "\u{1}", omittingEmptySubsequences: true) {
                    let parts = fact.split(separator: "\u{0}", maxSplits: 1, omittingEmptySubsequences: false)
                    facts[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
                }
                return facts
            }
            var lines: [String] = []
            for rank in 1..<all.count {
                for key in Set(decoded[0].keys).union(decoded[rank].keys).sorted() where decoded[0][key] != decoded[rank][key] {
                    lines.append("\(key): rank 0 has \(decoded[0][key] ?? "nothing"), rank \(rank) has \(decoded[rank][key] ?? "nothing")")
                }
            }
            verdict = Array(lines.joined(separator: "; ").utf8)
        }
        let shared = try broadcast(verdict)
        return shared.isEmpty ? nil : String(decoding: shared, as: UTF8.self)
    }
}
