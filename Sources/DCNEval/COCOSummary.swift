// Text output of COCO evaluation: pycocotools' 12-line summary and detectron2's per-category
// AP table.
import Foundation
import DCNAnnotations

extension COCOEvalResult {
    /// The 12 lines `COCOeval.summarize()` prints, e.g.
    /// ` Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505`.
    public var summaryLines: [String] {
        let thr = parameters.iouThresholds
        let range = String(format: "%0.2f:%0.2f", thr.first!, thr.last!)
        let rows: [(ap: Bool, iou: String, area: String, maxDets: Int)] = [
            (true, range, "all", 100), (true, "0.50", "all", 100), (true, "0.75", "all", 100),
            (true, range, "small", 100), (true, range, "medium", 100), (true, range, "large", 100),
            (false, range, "all", 1), (false, range, "all", 10), (false, range, "all", 100),
            (false, range, "small", 100), (false, range, "medium", 100), (false, range, "large", 100),
        ]
        let values = stats.values
        return rows.enumerated().map { n, row in
            // Python: ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}'
            let title = row.ap ? "Average Precision" : "Average Recall"
            let type = row.ap ? "(AP)" : "(AR)"
            return " " + pad(title, 18) + " " + type + " @[ IoU=" + pad(row.iou, 9) + " | area="
                + padLeft(row.area, 6) + " | maxDets=" + padLeft(String(row.maxDets), 3) + " ] = "
                + String(format: "%0.3f", values[n])
        }
    }

    /// detectron2's "Per-category bbox AP" table (pipe format, three category/AP pairs per row).
    public func perCategoryTable(names: [Int: String]) -> String {
        let entries = perCategoryAP().map { (names[$0.categoryID] ?? String($0.categoryID), $0.ap.isNaN ? "nan" : String(format: "%.3f", $0.ap)) }
        let pairs = min(3, entries.count)
        if pairs == 0 { return "" }
        var cells = [[String]]()
        var row = [String]()
        for (name, ap) in entries {
            row += [name, ap]
            if row.count == pairs * 2 { cells.append(row); row = [] }
        }
        if !row.isEmpty { row += Array(repeating: "", count: pairs * 2 - row.count); cells.append(row) }
        let headers = Array(repeating: ["category", "AP"], count: pairs).flatMap { $0 }
        var widths = headers.map(\.count)
        for r in cells { for (c, v) in r.enumerated() { widths[c] = max(widths[c], v.count) } }
        func line(_ r: [String]) -> String { "| " + r.enumerated().map { pad($1, widths[$0]) }.joined(separator: " | ") + " |" }
        var out = [line(headers)]
        out.append("|" + widths.map { ":" + String(repeating: "-", count: $0 + 1) }.joined(separator: "|") + "|")
        out += cells.map(line)
        return out.joined(separator: "\n")
    }
}

private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
private func padLeft(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

/// Writes `data` to `path` atomically (a temporary file in the same folder, then rename). The
/// error names the path and the reason (e.g. "is a directory").
public func writeFileAtomically(_ data: Data, to path: String) throws {
    if let problem = fileWriteProblem(path) { throw FileError(path: path, "cannot write the file (\(problem))") }
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)")
    do { try data.write(to: tmp) } catch {
        throw FileError(path: path, "cannot write the file (\(describeFileError(error)))")
    }
    if rename(tmp.path, url.path) != 0 {
        let code = errno
        try? FileManager.default.removeItem(at: tmp)
        throw FileError(path: path, "cannot write the file (\(String(cString: strerror(code))))")
    }
}

/// JSON with the keys in the given order and numbers printed as Python's `repr` would
/// (shortest round-trip form), so files are diffable against the reference tools' output.
func orderedJSONObject(_ pairs: [(String, String)], indent: String = "") -> String {
    let inner = indent + " "
    return "{\n" + pairs.map { "\(inner)\"\($0.0)\": \($0.1)" }.joined(separator: ",\n") + "\n\(indent)}"
}

func jsonNumber(_ v: Double) -> String {
    if v.isNaN { return "NaN" }
    if v.isInfinite { return v > 0 ? "Infinity" : "-Infinity" }
    if v == v.rounded() && abs(v) < 1e16 { return String(format: "%.1f", v) }
    return "\(v)"
}

func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

extension COCOStats {
    /// `{"AP": ..., ..., "ARl": ...}` in the summary's order.
    public var jsonText: String {
        orderedJSONObject(zip(COCOStats.names, values).map { ($0, jsonNumber($1)) }) + "\n"
    }
}

/// Loads both files and evaluates: `dcn-eval coco`.
public func evaluateCOCOFiles(groundTruthPath: String, resultsPath: String, iouType: COCOIoUType,
                              threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws -> (COCOGroundTruth, COCOEvalResult) {
    let gt = try COCOGroundTruth.load(path: groundTruthPath)
    let results = try COCOResult.loadArray(path: resultsPath)
    do {
        return (gt, try evaluateCOCO(groundTruth: gt, results: results, iouType: iouType, threads: threads))
    } catch let e as COCOEvalError {
        throw COCOFormatError(file: e.input == .groundTruth ? groundTruthPath : resultsPath, e.message)
    }
}
