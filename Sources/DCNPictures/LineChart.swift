// A dependency-free SVG line chart: labelled axes with round tick values, one coloured line with
// point markers per series, and a legend. Used for the resolution sweep (the paper's Figure 4).
import Foundation

public struct ChartSeries: Sendable {
    public var name: String
    public var points: [(x: Double, y: Double)]
    public init(name: String, points: [(x: Double, y: Double)]) { self.name = name; self.points = points }
}

/// Round tick values covering lo...hi: steps of 1, 2 or 5 times a power of ten, about `count` of them.
func niceTicks(_ lo: Double, _ hi: Double, count: Int = 6) -> [Double] {
    guard lo.isFinite, hi.isFinite else { return [] }
    if hi <= lo { return [lo] }
    let raw = (hi - lo) / Double(max(1, count - 1))
    let magnitude = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
    var ticks: [Double] = []
    var t = floor(lo / step) * step
    while t <= hi + step * 1e-9 {
        if t >= lo - step * 1e-9 { ticks.append(t) }
        t += step
    }
    return ticks
}

/// A tick label without trailing zeros (400, 0.5, 37.5).
func tickLabel(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e9 { return String(Int(v)) }
    var s = String(format: "%.3f", v)
    while s.hasSuffix("0") { s.removeLast() }
    return s
}

func xmlEscaped(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

/// The chart as an SVG document. The y axis spans the data with a margin (not from zero).
public func lineChartSVG(title: String, xLabel: String, yLabel: String, series: [ChartSeries],
                         width: Double = 640, height: Double = 420) -> String {
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    let left = 64.0, right = 20.0, top = 58.0, bottom = 56.0
    let plotW = width - left - right, plotH = height - top - bottom
    let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
    var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    svg += "<text x=\"\(width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">\(xmlEscaped(title))</text>\n"
    guard let xMin = xs.min(), let xMax = xs.max(), let yLo = ys.min(), let yHi = ys.max() else {
        return svg + "<text x=\"\(left)\" y=\"\(top + 20)\">no data</text>\n</svg>\n"
    }
    let xPad = xMax > xMin ? 0.04 * (xMax - xMin) : 1
    let yPad = yHi > yLo ? 0.1 * (yHi - yLo) : max(abs(yHi) * 0.1, 1)
    let x0 = xMin - xPad, x1 = xMax + xPad, y0 = yLo - yPad, y1 = yHi + yPad
    func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotW }
    func py(_ y: Double) -> Double { top + plotH - (y - y0) / (y1 - y0) * plotH }
    func f(_ v: Double) -> String { String(format: "%.1f", v) }
    // Grid, ticks and tick labels.
    for t in niceTicks(y0, y1) {
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(py(t)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(py(t)))\" stroke=\"#e5e5e5\"/>\n"
        svg += "<text x=\"\(f(left - 6))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\">\(tickLabel(t))</text>\n"
    }
    let xTicks = Set(xs).count <= 12 ? Array(Set(xs)).sorted() : niceTicks(x0, x1)
    for t in xTicks {
        svg += "<line x1=\"\(f(px(t)))\" y1=\"\(f(top))\" x2=\"\(f(px(t)))\" y2=\"\(f(top + plotH))\" stroke=\"#f0f0f0\"/>\n"
        svg += "<text x=\"\(f(px(t)))\" y=\"\(f(top + plotH + 16))\" text-anchor=\"middle\">\(tickLabel(t))</text>\n"
    }
    svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#777\"/>\n"
    svg += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 14))\" text-anchor=\"middle\">\(xmlEscaped(xLabel))</text>\n"
    svg += "<text transform=\"translate(16 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(xmlEscaped(yLabel))</text>\n"
    // Lines, markers and the legend (one row between the title and the plot).
    for (k, s) in series.enumerated() {
        let color = colors[k % colors.count]
        let points = s.points.filter { $0.y.isFinite }.sorted { $0.x < $1.x }
        svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " "))\"/>\n"
        for p in points { svg += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3.5\" fill=\"\(color)\"/>\n" }
        let lx = left + Double(k) * plotW / Double(max(series.count, 1)), ly = top - 10
        svg += "<line x1=\"\(f(lx))\" y1=\"\(f(ly - 4))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly - 4))\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
        svg += "<text x=\"\(f(lx + 30))\" y=\"\(f(ly))\">\(xmlEscaped(s.name))</text>\n"
    }
    return svg + "</svg>\n"
}
