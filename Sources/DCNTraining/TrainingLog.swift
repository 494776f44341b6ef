// What a run leaves in its output folder besides checkpoints: metrics.jsonl (one JSON object per
// logged iteration or evaluation), training_curves.svg, and the live progress line.
import DCNModels
import DCNTensor
import DCNDistributed
import DCNInference
import DCNRun
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Appends JSON lines to `metrics.jsonl` and keeps the logged iterations and evaluations for the
/// curves.
public final class MetricsLog {
    public let path: String
    public private(set) var records: [IterationRecord] = []
    public private(set) var evaluations: [EvaluationRecord] = []
    /// The lines of the kept file that are neither an iteration nor an evaluation record (not UTF-8,
    /// not JSON, cut short), in words ("<path> line N is not UTF-8 text"): they are left out when the
    /// file is rewritten.
    public private(set) var unreadableLines: [String] = []
    private let encoder: JSONEncoder
    /// The model's losses by part: the panels of the training curves.
    public var lossGroups: [LossGroup] = []

    /// `keepExisting`: read the records of the file at `path` (a resumed run), else start it empty.
    public init(path: String, keepExisting: Bool) throws {
        self.path = path
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if keepExisting, let bytes = FileManager.default.contents(atPath: path) {
            let decoder = JSONDecoder()
            // Line by line, as bytes: one damaged line must not hide the others.
            for (index, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
                let data = Data(line)
                if let record = try? decoder.decode(IterationRecord.self, from: data) {
                    records.append(record)
                } else if let evaluation = Self.evaluation(fromLine: data) {
                    evaluations.append(evaluation)
                } else {
                    let why = String(data: data, encoding: .utf8) == nil ? "is not UTF-8 text" : "is not an iteration or evaluation record"
                    unreadableLines.append("\(path) line \(index + 1) \(why)")
                }
            }
        } else {
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw TrainingError("cannot create \(path)") }
        }
    }

    /// Drops the iterations and evaluations past `iteration` (after resuming from an earlier
    /// checkpoint); the file keeps the others in iteration order.
    public func truncate(after iteration: Int) throws {
        records.removeAll { $0.iteration > iteration }
        evaluations.removeAll { $0.iteration > iteration }
        var lines: [(iteration: Int, text: String)] = try records.map { ($0.iteration, String(decoding: try encoder.encode($0), as: UTF8.self)) }
        lines += try evaluations.map { ($0.iteration, try evaluationLine($0)) }
        // Stable: an evaluation follows the iteration record it was logged after.
        let text = lines.enumerated().sorted { ($0.element.iteration, $0.offset) < ($1.element.iteration, $1.offset) }.map(\.element.text)
        try AtomicFile.write(Data((text.joined(separator: "\n") + (text.isEmpty ? "" : "\n")).utf8), to: path)
    }

    public func append(_ record: IterationRecord) throws {
        records.append(record)
        try appendLine(String(decoding: try encoder.encode(record), as: UTF8.self))
    }

    /// Appends an evaluation result line: {"iteration": N, "eval": {...}, "time": seconds}.
    public func appendEvaluation(iteration: Int, metrics: [(name: String, value: Double)], time: Date = Date()) throws {
        var values: [String: Double] = [:]
        for m in metrics { values[m.name] = m.value }
        let record = EvaluationRecord(iteration: iteration, metrics: values, time: time.timeIntervalSince1970)
        try appendLine(try evaluationLine(record))
        evaluations.append(record)
    }

    private func evaluationLine(_ e: EvaluationRecord) throws -> String {
        let evaluation = try JSONSerialization.jsonObject(with: try metricsJSON(e.metrics.map { ($0.key, $0.value) }))
        var object: [String: Any] = ["iteration": e.iteration, "eval": evaluation]
        if let time = e.time { object["time"] = time }
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }

    /// An evaluation line's record (a null metric, written for NaN, reads back as NaN).
    static func evaluation(fromLine line: Data) -> EvaluationRecord? {
        guard let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any], let iteration = object["iteration"] as? Int,
              let eval = object["eval"] as? [String: Any] else { return nil }
        var metrics: [String: Double] = [:]
        for (name, value) in eval { metrics[name] = (value as? NSNumber)?.doubleValue ?? .nan }
        return EvaluationRecord(iteration: iteration, metrics: metrics, time: (object["time"] as? NSNumber)?.doubleValue)
    }

    /// A failed write (a full disk) throws with the file's name; it never traps.
    private func appendLine(_ line: String) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else { throw TrainingError("cannot append to \(path)") }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: Data((line + "\n").utf8))
        } catch {
            throw TrainingError("cannot append to \(path): \(error.localizedDescription)")
        }
    }
}

/// The live progress line on a terminal, or plain log lines otherwise (a redirected log: one line
/// per log period).
public struct ProgressPrinter {
    public let isTerminal: Bool = progressReachesTerminal()

    public init() {}

    /// `communicationWait`: seconds per step spent waiting on other processes (data-parallel runs).
    public func report(iteration: Int, total: Int, losses: [String: Float], order: [String], lr: Float,
                       secondsPerIteration: Double, dataWait: Double, imagesPerBatch: Int, communicationWait: Double? = nil) {
        let terms = order.compactMap { name in losses[name].map { "\(name) \(String(format: "%.3f", $0))" } }.joined(separator: "  ")
        let remaining = Double(total - iteration) * secondsPerIteration
        let eta = remaining >= 3600 ? String(format: "%dh%02dm", Int(remaining) / 3600, Int(remaining) % 3600 / 60)
                                    : String(format: "%dm%02ds", Int(remaining) / 60, Int(remaining) % 60)
        let rate = String(format: "%.2f", Double(imagesPerBatch) / max(secondsPerIteration, 1e-9))
        let comm = communicationWait.map { "  comm \(String(format: "%.3f", $0)) s" } ?? ""
        let line = "[\(iteration)/\(total)] \(terms)  lr \(String(format: "%.4g", lr))  \(String(format: "%.2f", secondsPerIteration)) s/it  \(rate) img/s  "
            + "data \(String(format: "%.3f", dataWait)) s\(comm)  eta \(eta)"
        if isTerminal {
            print("\r\u{1B}[2K" + line, terminator: "")
            fflush(nil)
        } else {
            print(line)
        }
    }

    /// Ends the live line before other output.
    public func finishLine() { if isTerminal { print("") } }
}
