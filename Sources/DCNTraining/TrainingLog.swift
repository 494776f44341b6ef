// What a run leaves in its output folder besides checkpoints: metrics.jsonl (one JSON object per
// logged iteration or evaluation), training_curves.svg, and the live progress line.
import DCNTensor
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One logged training iteration.
public struct IterationRecord: Codable, Sendable, Equatable {
    public var iteration: Int
    public var losses: [String: Double]
    public var totalLoss: Double
    public var lr: Double
    public var secondsPerIteration: Double
    public var dataWaitSeconds: Double
}

/// Appends JSON lines to `metrics.jsonl` and keeps the logged records for the curves.
public final class MetricsLog {
    public let path: String
    public private(set) var records: [IterationRecord] = []
    private let encoder: JSONEncoder

    public init(path: String, keepExisting: Bool) throws {
        self.path = path
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if keepExisting, let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let decoder = JSONDecoder()
            records = text.split(separator: "\n").compactMap { try? decoder.decode(IterationRecord.self, from: Data($0.utf8)) }
        } else {
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw TrainingError("cannot create \(path)") }
        }
    }

    /// Drops records past `iteration` (after resuming from an earlier checkpoint).
    public func truncate(after iteration: Int) throws {
        records.removeAll { $0.iteration > iteration }
        let lines = try records.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        try AtomicFile.write(Data((lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")).utf8), to: path)
    }

    public func append(_ record: IterationRecord) throws {
        records.append(record)
        try appendLine(String(decoding: try encoder.encode(record), as: UTF8.self))
    }

    /// Appends an evaluation result line: {"iteration": N, "eval": {...}}.
    public func appendEvaluation(iteration: Int, metrics: [(name: String, value: Double)]) throws {
        let evaluation = try JSONSerialization.jsonObject(with: try metricsJSON(metrics))
        let data = try JSONSerialization.data(withJSONObject: ["iteration": iteration, "eval": evaluation],
                                              options: [.sortedKeys, .withoutEscapingSlashes])
        try appendLine(String(decoding: data, as: UTF8.self))
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

/// An SVG with each loss term and the total over iterations (left axis, log scale) and the learning
/// rate (right axis), written atomically.
public func writeTrainingCurves(_ records: [IterationRecord], to path: String) throws {
    let width = 900.0, height = 420.0, left = 60.0, right = 70.0, top = 30.0, bottom = 40.0
    let plotW = width - left - right, plotH = height - top - bottom
    var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    guard let first = records.first, let last = records.last, last.iteration > first.iteration else {
        svg += "<text x=\"20\" y=\"40\">not enough iterations logged yet</text>\n</svg>\n"
        try AtomicFile.write(Data(svg.utf8), to: path)
        return
    }
    let x0 = Double(first.iteration), x1 = Double(last.iteration)
    func x(_ i: Int) -> Double { left + (Double(i) - x0) / (x1 - x0) * plotW }
    let names = ["total"] + (records.flatMap { $0.losses.keys }.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }).sorted()
    func value(_ r: IterationRecord, _ name: String) -> Double? { name == "total" ? r.totalLoss : r.losses[name] }
    let positive = records.flatMap { r in names.compactMap { value(r, $0) } }.filter { $0 > 0 && $0.isFinite }
    let lo = log10(max(positive.min() ?? 1e-3, 1e-6)), hi = log10(max(positive.max() ?? 1, 1e-5))
    let span = max(hi - lo, 1e-3)
    func y(_ v: Double) -> Double { top + (1 - (log10(max(v, 1e-6)) - lo) / span) * plotH }
    let colors = ["#000000", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#999\"/>\n"
    for (k, name) in names.enumerated() {
        let points = records.compactMap { r in value(r, name).flatMap { $0 > 0 && $0.isFinite ? String(format: "%.1f,%.1f", x(r.iteration), y($0)) : nil } }
        guard points.count > 1 else { continue }
        let color = colors[k % colors.count]
        svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(k == 0 ? 2 : 1.2)\" points=\"\(points.joined(separator: " "))\"/>\n"
        svg += "<text x=\"\(left + 8 + Double(k % 4) * 150)\" y=\"\(14 + Double(k / 4) * 13)\" fill=\"\(color)\">\(name)</text>\n"
    }
    // Learning rate on the right axis (linear).
    let lrMax = max(records.map(\.lr).max() ?? 1, 1e-12)
    let lrPoints = records.map { String(format: "%.1f,%.1f", x($0.iteration), top + (1 - $0.lr / lrMax) * plotH) }
    svg += "<polyline fill=\"none\" stroke=\"#17becf\" stroke-dasharray=\"4 3\" points=\"\(lrPoints.joined(separator: " "))\"/>\n"
    svg += "<text x=\"\(width - right + 6)\" y=\"\(top + 10)\" fill=\"#17becf\">lr \(String(format: "%.2g", lrMax))</text>\n"
    svg += "<text x=\"\(width - right + 6)\" y=\"\(top + plotH)\" fill=\"#17becf\">0</text>\n"
    svg += "<text x=\"4\" y=\"\(top + 10)\">\(String(format: "%.2g", pow(10, hi)))</text>\n"
    svg += "<text x=\"4\" y=\"\(top + plotH)\">\(String(format: "%.2g", pow(10, lo)))</text>\n"
    svg += "<text x=\"\(left)\" y=\"\(height - 12)\">iteration \(first.iteration)</text>\n"
    svg += "<text x=\"\(left + plotW - 80)\" y=\"\(height - 12)\">\(last.iteration)</text>\n"
    svg += "</svg>\n"
    try AtomicFile.write(Data(svg.utf8), to: path)
}

/// The live progress line on a terminal, or plain log lines otherwise.
public struct ProgressPrinter {
    public let isTerminal: Bool = isatty(STDOUT_FILENO) != 0

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
