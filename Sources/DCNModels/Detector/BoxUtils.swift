// Boxes, anchors, the box coder, the IoU matcher and the balanced sampler of Faster R-CNN
// (detectron2's conventions: boxes (x1, y1, x2, y2) in pixels without +1).
import DCNOps
import DCNTensor
import Foundation

extension Array where Element == Box {
    /// `[K, 4]` tensor of the boxes.
    public var tensor: Tensor {
        var t = Tensor(zeros: [count, 4])
        for (i, b) in enumerated() { t.data[4 * i] = b.x1; t.data[4 * i + 1] = b.y1; t.data[4 * i + 2] = b.x2; t.data[4 * i + 3] = b.y2 }
        return t
    }

    /// `[K, 5]` RoIs (batch_index, x1, y1, x2, y2) for image `batchIndex`.
    public func rois(batchIndex: Int) -> [Float] {
        flatMap { [Float(batchIndex), $0.x1, $0.y1, $0.x2, $0.y2] }
    }
}

/// Box regression deltas (dx, dy, dw, dh) relative to a reference box, scaled by `weights`
/// (detectron2's Box2BoxTransform). Decoded dw, dh are clamped at log(1000/16).
public struct BoxCoder: Sendable, Equatable {
    public var weights: (Float, Float, Float, Float)
    public static let scaleClamp = Float(log(1000.0 / 16.0))

    public init(weights: (Float, Float, Float, Float)) { self.weights = weights }

    public static func == (a: BoxCoder, b: BoxCoder) -> Bool {
        a.weights.0 == b.weights.0 && a.weights.1 == b.weights.1 && a.weights.2 == b.weights.2 && a.weights.3 == b.weights.3
    }

    /// Deltas that turn `reference` into `target`.
    public func encode(_ target: Box, reference r: Box) -> (Float, Float, Float, Float) {
        let pw = r.width, ph = r.height, px = r.x1 + 0.5 * pw, py = r.y1 + 0.5 * ph
        let gw = target.width, gh = target.height, gx = target.x1 + 0.5 * gw, gy = target.y1 + 0.5 * gh
        return (weights.0 * (gx - px) / pw, weights.1 * (gy - py) / ph, weights.2 * log(gw / pw), weights.3 * log(gh / ph))
    }

    /// The box that `deltas` turn `reference` into.
    public func decode(_ d: (Float, Float, Float, Float), reference r: Box) -> Box {
        let pw = r.width, ph = r.height, px = r.x1 + 0.5 * pw, py = r.y1 + 0.5 * ph
        let dx = d.0 / weights.0, dy = d.1 / weights.1
        let dw = min(d.2 / weights.2, Self.scaleClamp), dh = min(d.3 / weights.3, Self.scaleClamp)
        let cx = dx * pw + px, cy = dy * ph + py, w = exp(dw) * pw, h = exp(dh) * ph
        return Box(cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h)
    }
}

/// Anchors of one feature map: `sizes.count * ratios.count` per cell, centred on the cell's
/// top-left pixel times the stride (detectron2's DefaultAnchorGenerator, offset 0), ordered
/// (row, column, size, ratio).
public struct AnchorGenerator: Sendable, Equatable {
    public var sizes: [Float]
    public var aspectRatios: [Float]
    public var stride: Int

    public init(sizes: [Float], aspectRatios: [Float], stride: Int) {
        self.sizes = sizes; self.aspectRatios = aspectRatios; self.stride = stride
    }

    public var anchorsPerCell: Int { sizes.count * aspectRatios.count }

    /// Cell anchors centred at 0: area size^2, height / width = ratio.
    public var cellAnchors: [Box] {
        sizes.flatMap { size in
            aspectRatios.map { ratio in
                let w = (size * size / ratio).squareRoot(), h = w * ratio
                return Box(-w / 2, -h / 2, w / 2, h / 2)
            }
        }
    }

    public func anchors(height: Int, width: Int) -> [Box] {
        let cell = cellAnchors
        var out: [Box] = []
        out.reserveCapacity(height * width * cell.count)
        for i in 0..<height {
            for j in 0..<width {
                let sx = Float(j * stride), sy = Float(i * stride)
                for a in cell { out.append(Box(a.x1 + sx, a.y1 + sy, a.x2 + sx, a.y2 + sy)) }
            }
        }
        return out
    }
}

/// Label of a box in matching: foreground, background, or ignored.
public enum MatchLabel: Int8, Sendable {
    case ignore = -1, background = 0, foreground = 1
}

/// The result of matching boxes (anchors or proposals) to ground truth.
public struct Matches: Sendable {
    /// Index of the best ground truth for each box (0 when there is none).
    public var groundTruth: [Int]
    public var labels: [MatchLabel]
    public var iou: [Float]
}

/// Matches each box to the ground truth of highest IoU: foreground at IoU >= `foreground`,
/// background below `background`, ignored in between. With `lowQualityMatches`, every box that
/// has a ground truth's highest IoU (> 0) is also foreground (detectron2's allow_low_quality_matches).
/// Background boxes lying inside an ignore region (intersection over the box's area > 0.7, like
/// Detectron's crowd filter) become ignored.
public func matchBoxes(_ boxes: [Box], groundTruth: [Box], ignoreRegions: [Box] = [], foreground: Float, background: Float,
                       lowQualityMatches: Bool) -> Matches {
    var m = Matches(groundTruth: [Int](repeating: 0, count: boxes.count),
                    labels: [MatchLabel](repeating: .background, count: boxes.count),
                    iou: [Float](repeating: 0, count: boxes.count))
    if !groundTruth.isEmpty {
        var bestForGT = [Float](repeating: 0, count: groundTruth.count)
        var ious = [Float](repeating: 0, count: boxes.count * groundTruth.count)
        for (i, b) in boxes.enumerated() {
            var best: Float = -1, arg = 0
            for (g, t) in groundTruth.enumerated() {
                let v = b.iou(t)
                ious[i * groundTruth.count + g] = v
                if v > best { best = v; arg = g }
                if v > bestForGT[g] { bestForGT[g] = v }
            }
            m.groundTruth[i] = arg
            m.iou[i] = best
            m.labels[i] = best >= foreground ? .foreground : (best < background ? .background : .ignore)
        }
        if lowQualityMatches {
            for i in 0..<boxes.count where m.labels[i] != .foreground {
                for g in 0..<groundTruth.count where bestForGT[g] > 0 && ious[i * groundTruth.count + g] == bestForGT[g] {
                    m.labels[i] = .foreground
                }
            }
        }
    }
    if !ignoreRegions.isEmpty {
        for (i, b) in boxes.enumerated() where m.labels[i] == .background && b.area > 0 {
            if ignoreRegions.contains(where: { b.intersection($0) / b.area > 0.7 }) { m.labels[i] = .ignore }
        }
    }
    return m
}

/// Picks up to `batchSize` labelled boxes, at most `positiveFraction` of them foreground, at random
/// (detectron2's subsample_labels). Returns (foreground indices, background indices), each in
/// the order drawn.
public func sampleLabels(_ labels: [MatchLabel], batchSize: Int, positiveFraction: Float,
                         rng: inout SeededGenerator) -> (foreground: [Int], background: [Int]) {
    var fg = labels.indices.filter { labels[$0] == .foreground }
    var bg = labels.indices.filter { labels[$0] == .background }
    let numFG = min(fg.count, Int(Float(batchSize) * positiveFraction))
    let numBG = min(bg.count, batchSize - numFG)
    partialShuffle(&fg, count: numFG, rng: &rng)
    partialShuffle(&bg, count: numBG, rng: &rng)
    return (Array(fg.prefix(numFG)), Array(bg.prefix(numBG)))
}

/// Moves a uniformly random choice of `count` elements to the front (Fisher-Yates, seeded).
func partialShuffle(_ a: inout [Int], count: Int, rng: inout SeededGenerator) {
    guard a.count > 1 else { return }
    for i in 0..<min(count, a.count - 1) {
        let j = i + Int(rng.next() % UInt64(a.count - i))
        a.swapAt(i, j)
    }
}
