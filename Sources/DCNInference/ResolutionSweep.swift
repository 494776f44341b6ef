// The resolution sweep (the paper's Figure 4 and Table 5): trained detectors evaluated at several
// shorter sides of the test image, and optionally with multi-scale testing, written as a Markdown
// table and an SVG chart of AP against the shorter side.
import DCNConfig
import DCNData
import DCNDistributed
import DCNModels
import DCNPictures
import DCNRun
import DCNTensor
import Foundation

/// One detector of the sweep: its name in the table, config and checkpoint.
public struct SweepModel: Sendable {
    public var label: String
    public var config: ExperimentConfig
    public var checkpoint: String
    public init(label: String, config: ExperimentConfig, checkpoint: String) {
        self.label = label; self.config = config; self.checkpoint = checkpoint
    }
}

/// One evaluation of the sweep.
public struct SweepPoint: Sendable {
    /// Shorter side (single scale), or nil for the multi-scale evaluation.
    public var shortEdge: Int?
    public var maxSize: Int
    /// The evaluation's first metric (bbox AP for COCO and synthetic data, the VOC mAP for VOC).
    public var value: Double
    public var secondsPerImage: Double
    /// Peak resident memory of the process during this evaluation (MB), model and data included.
    public var peakMegabytes: Double
    /// Whether the peak is this evaluation's alone (false: the process's peak so far).
    public var peakIsOwn: Bool
}

public struct SweepResult: Sendable {
    public var label: String
    public var metric: String
    public var points: [SweepPoint]
    public var multiScale: SweepPoint?

    /// The best single-scale point (of equal ones, the smallest size).
    public var best: SweepPoint? {
        points.reduce(nil) { best, p in
            guard let best else { return p }
            return p.value > best.value || (p.value == best.value && p.shortEdge! < best.shortEdge!) ? p : best
        }
    }
}

/// The longest side used with shorter side `shortEdge`: the config's test aspect (longest side /
/// shorter side at test time) kept, e.g. 1333 / 800 -> 2334 at 1400.
public func sweepMaxSize(_ config: ExperimentConfig, shortEdge: Int) -> Int {
    Int((Double(shortEdge) * Double(config.testMaxSize) / Double(config.data.testMinSize)).rounded(.up))
}

/// Evaluates every model at every shorter side in `sizes` (increasing), one pass per image, and with
/// `multiScale` also with those scales merged (and flipped views with `flip`). The evaluations'
/// detections and metrics go to `folder/<label>/short<S>_{results,metrics}.json` and
/// `folder/<label>/multiscale_*`. `load` builds a model's detector for its dataset's classes with
/// its checkpoint's weights, one model at a time. Returns the results on rank 0 (nil on other processes).
public func resolutionSweep(_ models: [SweepModel], sizes: [Int], multiScale: [Int]?, flip: Bool, folder: String,
                            load: (SweepModel, _ classes: Int) throws -> GeneralizedRCNN,
                            stop: StopRequest? = nil, group: ProcessGroup = .world, log: (String) -> Void = { print($0) }) throws -> [SweepResult]? {
    guard !models.isEmpty, !sizes.isEmpty else { throw TrainingError("the sweep needs at least one model and one size") }
    let labels = models.map(\.label)
    if let repeated = labels.enumerated().first(where: { labels[..<$0.offset].contains($0.element) }) {
        throw TrainingError("the label '\(repeated.element)' is given to two models; labels name the output folders and must differ")
    }
    var results: [SweepResult] = []
    for m in models where m.config.model.task == .classification {
        throw TrainingError("\(m.label): the sweep evaluates detectors; this config is a classifier (model.task classification)")
    }
    for m in models {
        guard let dataset = try loadDataset(m.config, train: false) else { throw TrainingError("\(m.label): the config names no evaluation split") }
        let model = try load(m, dataset.classNames.count)
        try FileManager.default.createDirectory(atPath: "\(folder)/\(m.label)", withIntermediateDirectories: true)
        var result = SweepResult(label: m.label, metric: "", points: [], multiScale: nil)
        func evaluate(_ config: ExperimentConfig, name: String, shortEdge: Int?) throws -> SweepPoint? {
            let own = System.resetPeakResidentBytes()
            let start = Date()
            let report = try evaluateModel(model, config: config, dataset: dataset, outputPrefix: "\(folder)/\(m.label)/\(name)", stop: stop, group: group)?.report
            guard let report, let first = report.metrics.first else { return nil }
            result.metric = first.name
            let point = SweepPoint(shortEdge: shortEdge, maxSize: config.testMaxSize, value: first.value,
                                   secondsPerImage: Date().timeIntervalSince(start) / Double(dataset.images.count),
                                   peakMegabytes: Double(System.peakResidentBytes()) / 1_048_576, peakIsOwn: own)
            log("\(m.label) \(shortEdge.map { "shorter side \($0)" } ?? "multi-scale"): \(first.name) \(String(format: "%.4f", first.value)), "
                + "\(String(format: "%.2f", point.secondsPerImage)) s/image, peak \(Int(point.peakMegabytes)) MB")
            return point
        }
        for size in sizes.sorted() {
            var c = m.config
            c.data.testMinSize = size
            c.test = TestConfig()
            c.test.maxSize = sweepMaxSize(m.config, shortEdge: size)
            if let p = try evaluate(c, name: "short\(size)", shortEdge: size) { result.points.append(p) }
        }
        if let multiScale {
            var c = m.config
            c.test.scales = multiScale
            c.test.flip = flip
            c.test.maxSize = sweepMaxSize(m.config, shortEdge: multiScale.max()!)
            result.multiScale = try evaluate(c, name: "multiscale", shortEdge: nil)
        }
        results.append(result)
    }
    return group.isRoot ? results : nil
}

/// The sweep as Markdown: one row per shorter side (the value of each model), the best single
/// scale and the multi-scale result, then time and memory per size.
public func sweepMarkdown(_ results: [SweepResult], multiScale: [Int]?, flip: Bool) -> String {
    let metric = results.first?.metric ?? "AP"
    func cell(_ p: SweepPoint?) -> String { p.map { String(format: "%.1f", 100 * $0.value) } ?? "-" }
    var md = "# Resolution sweep: \(metric) (%) against the test image's shorter side\n\n"
    md += "Each size is one pass per image; the longest side is capped at the config's test aspect (column 2).\n\n"
    md += "| shorter side | longest side | " + results.map(\.label).joined(separator: " | ") + " |\n"
    md += "| --- | --- |" + String(repeating: " --- |", count: results.count) + "\n"
    let sizes = Array(Set(results.flatMap { $0.points.compactMap(\.shortEdge) })).sorted()
    for size in sizes {
        let points = results.map { r in r.points.first { $0.shortEdge == size } }
        md += "| \(size) | \(points.compactMap { $0?.maxSize }.first.map(String.init) ?? "-") | " + points.map(cell).joined(separator: " | ") + " |\n"
    }
    md += "| best single scale | | " + results.map { r in r.best.map { "\(cell($0)) (\($0.shortEdge!))" } ?? "-" }.joined(separator: " | ") + " |\n"
    if let multiScale {
        let name = "multi-scale \(multiScale.map(String.init).joined(separator: ","))\(flip ? " + flip" : "")"
        md += "| \(name) | | " + results.map { cell($0.multiScale) }.joined(separator: " | ") + " |\n"
    }
    let own = results.allSatisfy { $0.points.allSatisfy(\.peakIsOwn) }
    md += "\nTime per image (loading, inference and scoring included) and the process's peak resident memory "
        + (own ? "during each evaluation" : "so far (this system cannot reset the peak)") + ":\n\n"
    md += "| shorter side | " + results.map { "\($0.label) s/image | peak MB" }.joined(separator: " | ") + " |\n"
    md += "| --- |" + String(repeating: " --- | --- |", count: results.count) + "\n"
    func timeCells(_ points: [SweepPoint?]) -> String {
        points.map { p in p.map { String(format: "%.2f | %.0f", $0.secondsPerImage, $0.peakMegabytes) } ?? "- | -" }.joined(separator: " | ")
    }
    for size in sizes { md += "| \(size) | " + timeCells(results.map { r in r.points.first { $0.shortEdge == size } }) + " |\n" }
    if multiScale != nil { md += "| multi-scale | " + timeCells(results.map(\.multiScale)) + " |\n" }
    return md
}

/// The sweep as an SVG chart (the paper's Figure 4 layout): the metric against the shorter side,
/// one line per model.
public func sweepSVG(_ results: [SweepResult]) -> String {
    let metric = results.first?.metric ?? "AP"
    return lineChartSVG(title: "\(metric) against the test image's shorter side", xLabel: "shorter side of the test image (pixels)",
                        yLabel: "\(metric) (%)",
                        series: results.map { r in ChartSeries(name: r.label, points: r.points.map { (Double($0.shortEdge!), 100 * $0.value) }) })
}
