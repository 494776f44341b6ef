// training_curves.svg: small multiples a person reads at a glance. One panel per loss group (RPN,
// R-CNN head, mask, mimic, classification), the total, the learning rate and the evaluations
// (AP / AP50 / top-1 ...). Each loss is drawn raw (faint) and smoothed with a debiased exponential
// moving average (TensorBoard's smoothing), against the iteration, with the elapsed wall-clock
// time under the iteration ticks. A dependency-free SVG a browser opens.
import DCNModels
import DCNRun
import DCNTensor
import Foundation

/// The metrics an evaluation panel shows: COCO AP and AP50 (boxes and masks), VOC mAPs, VID AP, top-1/top-5.
func plottedEvaluationMetric(_ name: String) -> Bool {
    ["bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50", "vid/AP", "top1", "top5"].contains(name) || name.hasSuffix("/mAP")
}

/// The panel a loss is drawn in: its part's (`lossGroups`, the model's), or "losses".
func lossPanel(_ name: String, _ lossGroups: [LossGroup]) -> String {
    lossGroups.first { $0.names.contains(name) }?.title ?? "losses"
}

/// TensorBoard's smoothing: an exponential moving average with weight `weight`, debiased so the
/// first values are not pulled towards zero.
func smoothed(_ values: [Double], weight: Double) -> [Double] {
    var last = 0.0, count = 0
    return values.map { v in
        guard v.isFinite else { return v }
        last = last * weight + (1 - weight) * v
        count += 1
        return last / (1 - pow(weight, Double(count)))
    }
}

/// "45s", "12m", "3h05": a duration short enough for a tick label.
func shortDuration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m" + (s < 600 ? String(format: "%02ds", s % 60) : "") }
    return "\(s / 3600)h" + String(format: "%02d", s % 3600 / 60)
}

private struct PanelSeries {
    var name: String
    var points: [(x: Double, y: Double)]
    /// Drawn raw (faint) behind its smoothed line; false for step-like series (lr, evaluations).
    var smooth: Bool
    var markers: Bool
}

/// The SVG of `records` and `evaluations`, written atomically to `path`; the losses are drawn in one
/// panel per part (`lossGroups`, the model's).
public func writeTrainingCurves(_ records: [IterationRecord], evaluations: [EvaluationRecord] = [], lossGroups: [LossGroup],
                                to path: String) throws {
    try AtomicFile.write(Data(trainingCurvesSVG(records, evaluations: evaluations, lossGroups: lossGroups).utf8), to: path)
}

public func trainingCurvesSVG(_ records: [IterationRecord], evaluations: [EvaluationRecord], lossGroups: [LossGroup]) -> String {
    let panelW = 440.0, panelH = 230.0, columns = 2, titleH = 40.0
    let records = records.sorted { $0.iteration < $1.iteration }
    guard let first = records.first, let last = records.last, last.iteration > first.iteration else {
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"480\" height=\"80\" font-family=\"sans-serif\" font-size=\"13\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"20\" y=\"45\">not enough iterations logged yet</text>\n</svg>\n"
    }
    // The EMA spans about 1/30 of the run's logged points (at least 2).
    let weight = 1 - 1 / max(2, Double(records.count) / 30)
    var names: [String] = []
    for r in records { for name in r.losses.keys.sorted() where !names.contains(name) { names.append(name) } }
    var groups: [(title: String, series: [PanelSeries])] = []
    for name in names {
        let points = records.compactMap { r in r.losses[name].map { (x: Double(r.iteration), y: $0) } }
        let series = PanelSeries(name: name, points: points, smooth: true, markers: false)
        let title = lossPanel(name, lossGroups)
        if let k = groups.firstIndex(where: { $0.title == title }) { groups[k].series.append(series) } else { groups.append((title, [series])) }
    }
    // The model's order of its parts.
    let order = lossGroups.map(\.title) + ["losses"]
    groups.sort { (order.firstIndex(of: $0.title) ?? order.count) < (order.firstIndex(of: $1.title) ?? order.count) }
    groups.append(("total loss", [PanelSeries(name: "total", points: records.map { (Double($0.iteration), $0.totalLoss) }, smooth: true, markers: false)]))
    groups.append(("learning rate", [PanelSeries(name: "lr", points: records.map { (Double($0.iteration), $0.lr) }, smooth: false, markers: false)]))
    // The deformable layers' mean |offset| (their input pixels), averaged over each stage's layers.
    let deformed = records.compactMap(\.deformation)
    let stages = Set(deformed.flatMap { $0.keys.map { stageLabel(ofLayerNamed: $0) } }).sorted()
    if !stages.isEmpty {
        let series = stages.map { stage in
            PanelSeries(name: stage, points: records.compactMap { r -> (x: Double, y: Double)? in
                let values = (r.deformation ?? [:]).filter { stageLabel(ofLayerNamed: $0.key) == stage }.compactMap { $0.value["offset_mean"] }
                return values.isEmpty ? nil : (Double(r.iteration), values.reduce(0, +) / Double(values.count))
            }, smooth: true, markers: false)
        }
        groups.append(("deformation: mean |offset| (input px)", series))
    }
    let metricNames = evaluations.flatMap { $0.metrics.keys }.reduce(into: [String]()) { if plottedEvaluationMetric($1) && !$0.contains($1) { $0.append($1) } }.sorted()
    if !metricNames.isEmpty {
        let series = metricNames.map { m in
            PanelSeries(name: m, points: evaluations.compactMap { e in e.metrics[m].flatMap { $0.isFinite ? (Double(e.iteration), $0) : nil } },
                        smooth: false, markers: true)
        }
        groups.append(("evaluation", series))
    }
    // Elapsed wall time at an iteration, interpolated between logged records that carry a time.
    let timed = records.compactMap { r in r.time.map { (x: Double(r.iteration), t: $0) } }
    let elapsed: ((Double) -> Double)? = timed.count < 2 ? nil : { x in
        let t0 = timed[0].t
        guard let k = timed.firstIndex(where: { $0.x >= x }) else { return timed.last!.t - t0 }
        if k == 0 { return 0 }
        let a = timed[k - 1], b = timed[k]
        return a.t + (b.t - a.t) * (x - a.x) / max(b.x - a.x, 1e-9) - t0
    }
    let rows = (groups.count + columns - 1) / columns
    let width = panelW * Double(columns), height = titleH + panelH * Double(rows)
    var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    var subtitle = "iterations \(first.iteration)-\(last.iteration)"
    if let elapsed { subtitle += ", \(shortDuration(elapsed(Double(last.iteration)))) wall-clock" }
    subtitle += "; thick lines: smoothed (EMA \(String(format: "%.2f", weight))), faint: logged values"
    svg += "<text x=\"12\" y=\"18\" font-size=\"14\" font-weight=\"bold\">Training curves</text>\n"
    svg += "<text x=\"12\" y=\"33\" fill=\"#555\">\(xmlEscaped(subtitle))</text>\n"
    for (k, group) in groups.enumerated() {
        let ox = Double(k % columns) * panelW, oy = titleH + Double(k / columns) * panelH
        svg += panelSVG(title: group.title, series: group.series, xRange: (Double(first.iteration), Double(last.iteration)),
                        elapsed: elapsed, weight: weight, width: panelW, height: panelH, origin: (ox, oy), id: k)
    }
    return svg + "</svg>\n"
}

/// One panel as a `<g>` group whose top-left corner is `origin`.
private func panelSVG(title: String, series: [PanelSeries], xRange: (Double, Double), elapsed: ((Double) -> Double)?, weight: Double,
                      width: Double, height: Double, origin: (Double, Double), id: Int) -> String {
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    let left = 58.0, right = 26.0, top = 40.0, bottom = elapsed == nil ? 30.0 : 42.0
    let plotW = width - left - right, plotH = height - top - bottom
    func f(_ v: Double) -> String { String(format: "%.1f", v) }
    var g = "<g transform=\"translate(\(f(origin.0)) \(f(origin.1)))\">\n<text x=\"\(f(left))\" y=\"16\" font-size=\"12\" font-weight=\"bold\">\(xmlEscaped(title))</text>\n"
    // The y range: from 0 (losses and rates are non-negative) to the smoothed lines' maximum, raised
    // to cover the raw values unless a few spikes would flatten everything (they are clipped).
    let smoothedSeries = series.map { s in s.smooth ? smoothed(s.points.map(\.y), weight: weight) : s.points.map(\.y) }
    let allSmoothed = smoothedSeries.flatMap { $0 }.filter(\.isFinite)
    let raw = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite).sorted()
    let rawHigh = raw.isEmpty ? 0 : raw[min(raw.count - 1, Int(Double(raw.count) * 0.98))]
    let isEvaluation = series.contains { $0.markers }
    var lo = isEvaluation ? max(0, (raw.first ?? 0) - 0.1 * ((raw.last ?? 1) - (raw.first ?? 0))) : min(0, raw.first ?? 0)
    var hi = max(allSmoothed.max() ?? 1, rawHigh) * 1.08
    if isEvaluation { hi = (raw.last ?? 1) + 0.1 * max((raw.last ?? 1) - (raw.first ?? 0), 1) }
    if !(hi > lo) { hi = lo + 1 }
    if raw.isEmpty { lo = 0; hi = 1 }
    let x0 = xRange.0, x1 = max(xRange.1, xRange.0 + 1)
    func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotW }
    func py(_ y: Double) -> Double { top + plotH - (y - lo) / (hi - lo) * plotH }
    for t in niceTicks(lo, hi, count: 5) {
        g += "<line x1=\"\(f(left))\" y1=\"\(f(py(t)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(py(t)))\" stroke=\"#e8e8e8\"/>\n"
        g += "<text x=\"\(f(left - 5))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\">\(compactTickLabel(t))</text>\n"
    }
    for t in niceTicks(x0, x1, count: 5) {
        g += "<line x1=\"\(f(px(t)))\" y1=\"\(f(top))\" x2=\"\(f(px(t)))\" y2=\"\(f(top + plotH))\" stroke=\"#f0f0f0\"/>\n"
        g += "<text x=\"\(f(px(t)))\" y=\"\(f(top + plotH + 14))\" text-anchor=\"middle\">\(compactTickLabel(t))</text>\n"
        if let elapsed { g += "<text x=\"\(f(px(t)))\" y=\"\(f(top + plotH + 27))\" text-anchor=\"middle\" fill=\"#777\">\(shortDuration(elapsed(t)))</text>\n" }
    }
    g += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#888\"/>\n"
    g += "<text x=\"\(f(left + plotW))\" y=\"\(f(height - 3))\" text-anchor=\"end\" fill=\"#555\">iteration\(elapsed == nil ? "" : " / elapsed time")</text>\n"
    g += "<clipPath id=\"plot\(id)\"><rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\"/></clipPath>\n"
    g += "<g clip-path=\"url(#plot\(id))\">\n"
    for (k, s) in series.enumerated() {
        let color = colors[k % colors.count]
        let finite = zip(s.points, smoothedSeries[k]).filter { $0.0.y.isFinite }
        if s.smooth {
            g += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-opacity=\"0.25\" stroke-width=\"1\" points=\"\(finite.map { "\(f(px($0.0.x))),\(f(py($0.0.y)))" }.joined(separator: " "))\"/>\n"
        }
        g += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(finite.map { "\(f(px($0.0.x))),\(f(py($0.1)))" }.joined(separator: " "))\"/>\n"
        if s.markers { for (p, _) in finite { g += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3\" fill=\"\(color)\"/>\n" } }
    }
    g += "</g>\n"
    // Legend under the title: each series' name and last (smoothed) value in its colour.
    var lx = left
    for (k, s) in series.enumerated() {
        let lastValue = smoothedSeries[k].last(where: \.isFinite).map { " " + compactTickLabel($0, digits: 3) } ?? ""
        let label = s.name + lastValue
        g += "<text x=\"\(f(lx))\" y=\"31\" fill=\"\(colors[k % colors.count])\">\(xmlEscaped(label))</text>\n"
        lx += Double(label.count) * 6.2 + 14
    }
    return g + "</g>\n"
}

/// A tick label: plain for ordinary numbers, scientific for very small or large ones (1e-04).
func compactTickLabel(_ v: Double, digits: Int = 4) -> String {
    if v == 0 { return "0" }
    if abs(v) < 1e-3 || abs(v) >= 1e6 { return String(format: "%.1e", v) }
    var s = String(format: "%.\(digits)g", v)
    if s.contains("e") { s = String(format: "%.\(digits)f", v) }
    return s
}
