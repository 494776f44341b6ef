// ImageNet VID detection AP, number for number with MSRA's Flow-Guided Feature Aggregation
// evaluation (`lib/dataset/imagenet_vid_eval.py` `vid_eval`, and `imagenet_vid_eval_motion.py`
// `vid_eval_motion` for the slow / medium / fast split). What it does, in its order:
// - every ground-truth box of w x h pixels (w = xmax - xmin + 1) has its own IoU threshold
//   min(0.5, wh / ((w + 10)(h + 10))), so small objects need less overlap;
// - per frame, detections in descending score; each takes, among the unmatched ground truths of
//   its class that it overlaps (+1 widths) at least at their threshold, the one of highest IoU
//   (the first on ties); matched -> true positive, otherwise false positive;
// - all frames' detections in descending score, per class cumulative sums, recall = tp / npos,
//   precision = tp / max(tp + fp, eps); VOC's all-point AP (precision envelope, sum of recall
//   steps times precision, summed as numpy sums); the mean over the classes.
// Ties in score are taken in file order here (stable sorts); numpy's default sort leaves the
// order of equal scores to its algorithm and CPU, so only scores that differ within a class give
// the same numbers everywhere (the fixtures' do).
import Foundation
import DCNAnnotations

/// One detection line: `<frame id> <class index 1...C> <score> <x1> <y1> <x2> <y2>` (ILSVRC pixels,
/// 0-based and inclusive).
public struct VIDDetection: Equatable, Sendable {
    public var frameID: Int
    /// 1...C, the class list's order (the 30 VID classes: 1 airplane ... 30 zebra).
    public var label: Int
    public var score: Double
    public var box: VOCBox
    public init(frameID: Int, label: Int, score: Double, box: VOCBox) { self.frameID = frameID; self.label = label; self.score = score; self.box = box }
}

/// One frame of the evaluated list with its ground truth.
public struct VIDGroundTruthFrame: Equatable, Sendable {
    public var frameID: Int
    /// Below the annotations folder, without `.xml`.
    public var path: String
    public var labels: [Int]
    public var boxes: [VOCBox]
    /// Each box's IoU threshold (`vidMatchThreshold`).
    public var thresholds: [Double]
    public init(frameID: Int, path: String, labels: [Int], boxes: [VOCBox]) {
        self.frameID = frameID; self.path = path; self.labels = labels; self.boxes = boxes
        self.thresholds = boxes.map { vidMatchThreshold($0) }
    }
}

/// The IoU a detection needs to match a ground-truth box: min(0.5, wh / ((w + 10)(h + 10))) with
/// w = xmax - xmin + 1, h = ymax - ymin + 1 (`parse_vid_rec`'s `defaultIOUthr`, `pixelTolerance`).
public func vidMatchThreshold(_ b: VOCBox, defaultIoU: Double = 0.5, pixelTolerance: Double = 10) -> Double {
    let w = b.xmax - b.xmin + 1, h = b.ymax - b.ymin + 1
    let thr = (w * h) / ((w + pixelTolerance) * (h + pixelTolerance))
    return min(thr, defaultIoU)
}

/// IoU with +1 widths; nil when the boxes do not overlap (width or height of the intersection <= 0).
@inline(__always)
func vidOverlap(_ bb: VOCBox, _ g: VOCBox) -> Double? {
    let iw = min(bb.xmax, g.xmax) - max(bb.xmin, g.xmin) + 1
    let ih = min(bb.ymax, g.ymax) - max(bb.ymin, g.ymin) + 1
    guard iw > 0 && ih > 0 else { return nil }
    let ua = (bb.xmax - bb.xmin + 1) * (bb.ymax - bb.ymin + 1) + (g.xmax - g.xmin + 1) * (g.ymax - g.ymin + 1) - iw * ih
    return iw * ih / ua
}

// MARK: - Reading

/// Reads the frames of `imageset` (`readVIDList`, 4-column video lines expanded to their frames
/// as MSRA's evaluation does) and their `<annotations>/<path>.xml`. Errors: a frame id listed
/// twice (file and both lines), an unreadable or malformed annotation, a class not in `classes`
/// (file and value).
public func loadVIDGroundTruth(annotations: String, imageset: String, classes: [String] = vidClassWNIDs,
                               allowOutsideRoot: Bool = false) throws -> [VIDGroundTruthFrame] {
    let entries = try readVIDList(path: imageset, videoLines: .wholeVideo, allowOutsideRoot: allowOutsideRoot)
    var seen = [Int: Int]()
    var frames = [VIDGroundTruthFrame]()
    frames.reserveCapacity(entries.count)
    for e in entries {
        if let first = seen[e.frameID] {
            throw VIDError(file: imageset, "line \(e.line): frame id \(e.frameID) (\(e.path)) was already given on line \(first); every frame needs its own id")
        }
        seen[e.frameID] = e.line
        let path = URL(fileURLWithPath: annotations).appendingPathComponent(e.path + ".xml").path
        let data = try readFileContents(path, expected: "the annotation XML of frame \(e.path) (\(imageset) line \(e.line))")
        let a = try parseVIDAnnotation(data: data, file: path, classes: classes, unknownClasses: .error)
        frames.append(VIDGroundTruthFrame(frameID: e.frameID, path: e.path, labels: a.objects.map(\.label), boxes: a.objects.map(\.box)))
    }
    return frames
}

/// Parses detection lines `<frame id> <class index> <score> <x1> <y1> <x2> <y2>` (spaces or tabs,
/// LF or CRLF, blank lines skipped). Errors name the file and line: not seven fields, a frame id
/// that is not a whole number >= 0, a class index outside 1...classCount, a score or coordinate
/// that is not a finite number.
public func parseVIDDetections(_ data: Data, file: String, classCount: Int) throws -> [VIDDetection] {
    var out = [VIDDetection]()
    let format = "'<frame id> <class index 1-\(classCount)> <score> <x1> <y1> <x2> <y2>'"
    for (n, line) in String(decoding: data, as: UTF8.self).split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
        let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        if f.isEmpty { continue }
        guard f.count == 7 else { throw VIDError(file: file, "line \(n + 1): \(f.count) fields, expected \(format); found '\(line)'") }
        guard let frame = Int(f[0]), frame >= 0 else {
            throw VIDError(file: file, "line \(n + 1): frame id '\(f[0])' is not a whole number >= 0; expected \(format)")
        }
        guard let label = Int(f[1]), (1...classCount).contains(label) else {
            throw VIDError(file: file, "line \(n + 1): class index '\(f[1])' is not in 1...\(classCount); expected \(format)")
        }
        let numbers = f[2...].map { Double($0) }
        guard numbers.allSatisfy({ $0?.isFinite == true }) else {
            throw VIDError(file: file, "line \(n + 1): the score and box must be finite numbers; expected \(format), found '\(line)'")
        }
        let v = numbers.map { $0! }
        out.append(VIDDetection(frameID: frame, label: label, score: v[0], box: VOCBox(xmin: v[1], ymin: v[2], xmax: v[3], ymax: v[4])))
    }
    return out
}

/// Reads a detection file (see `parseVIDDetections`).
public func loadVIDDetections(path: String, classCount: Int) throws -> [VIDDetection] {
    try parseVIDDetections(readFileContents(path, expected: "a text file of '<frame id> <class index> <score> <x1> <y1> <x2> <y2>' lines"),
                           file: path, classCount: classCount)
}

/// Reads a motion IoU file: one line per frame of `frames`, in their order,
/// `<frame path> <motion IoU of object 1> <of object 2> ...` (the values of MSRA's
/// `imagenet_vid_groundtruth_motion_iou.mat`, whose rows follow the evaluated list; convert it with
/// `scripts/vid_motion_mat_to_text.py`). A frame needs at least one value per object (the script
/// fails otherwise); extra values are kept, as the script counts them in the empty-frame weight.
/// Errors name the file and line.
public func loadVIDMotionIoU(path: String, frames: [VIDGroundTruthFrame]) throws -> [[Double]] {
    let data = try readFileContents(path, expected: "a motion IoU text file of '<frame path> <IoU> ...' lines, one per frame")
    var rows = [[Double]]()
    rows.reserveCapacity(frames.count)
    for (n, line) in String(decoding: data, as: UTF8.self).split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
        let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        if f.isEmpty { continue }
        guard rows.count < frames.count else {
            throw VIDError(file: path, "line \(n + 1): more lines than the \(frames.count) frames of the image set")
        }
        let frame = frames[rows.count]
        guard f[0] == frame.path else {
            throw VIDError(file: path, "line \(n + 1): frame '\(f[0])', but frame \(rows.count + 1) of the image set is '\(frame.path)'; expected one line per frame in the image set's order")
        }
        let values = f.dropFirst().map { Double($0) }
        guard values.allSatisfy({ $0?.isFinite == true }) else {
            throw VIDError(file: path, "line \(n + 1): the motion IoUs must be finite numbers, found '\(line)'")
        }
        guard values.count >= frame.labels.count else {
            throw VIDError(file: path, "line \(n + 1): \(values.count) motion IoU values for frame \(frame.path), which has \(frame.labels.count) objects; expected one per object")
        }
        rows.append(values.map { $0! })
    }
    guard rows.count == frames.count else {
        throw VIDError(file: path, "\(rows.count) lines for the \(frames.count) frames of the image set; expected one line per frame")
    }
    return rows
}

// MARK: - Evaluation

/// Each listed frame's detections as indices into `detections`, by descending score (stable).
func vidDetectionsByFrame(_ detections: [VIDDetection], frames: [VIDGroundTruthFrame]) -> [Int: [Int]] {
    let listed = Set(frames.map(\.frameID))
    var out = [Int: [Int]]()
    for (i, d) in detections.enumerated() where listed.contains(d.frameID) { out[d.frameID, default: []].append(i) }
    for (k, v) in out {
        out[k] = v.sorted { a, b in detections[a].score > detections[b].score || (detections[a].score == detections[b].score && a < b) }
    }
    return out
}

/// `vid_ap`: VOC's all-point AP from recall and precision, summed as `np.sum` sums.
func vidAllPointAP(recall rec: [Double], precision prec: [Double]) -> Double {
    let mrec = [0.0] + rec + [1.0]
    var mpre = [0.0] + prec + [0.0]
    for i in stride(from: mpre.count - 1, to: 0, by: -1) { mpre[i - 1] = max(mpre[i - 1], mpre[i]) }
    var terms = [Double]()
    for i in 0..<(mrec.count - 1) where mrec[i + 1] != mrec[i] { terms.append((mrec[i + 1] - mrec[i]) * mpre[i + 1]) }
    return pairwiseSum(terms)
}

/// Per-class AP from each frame's true/false-positive weights (`calculate_ap`): the frames'
/// detections concatenated in list order, sorted by descending score (stable), cumulative sums
/// per class. `negativeWithoutPositives`: a class with npos <= 0 gets -1 (the motion script)
/// instead of the plain script's arithmetic (0 without detections, NaN with some).
func vidClassAPs(frames: [VIDGroundTruthFrame], byFrame: [Int: [Int]], detections: [VIDDetection],
                 tp: [Int: [Double]], fp: [Int: [Double]], npos: [Double], classCount: Int, negativeWithoutPositives: Bool) -> [Double] {
    var order = [(score: Double, label: Int, tp: Double, fp: Double)]()
    for f in frames {
        guard let dets = byFrame[f.frameID], let t = tp[f.frameID], let p = fp[f.frameID] else { continue }
        for (j, d) in dets.enumerated() { order.append((detections[d].score, detections[d].label, t[j], p[j])) }
    }
    let sorted = order.indices.sorted { a, b in order[a].score > order[b].score || (order[a].score == order[b].score && a < b) }
    var ap = [Double](repeating: 0, count: classCount)
    var ctp = [Double](repeating: 0, count: classCount + 1), cfp = ctp
    var rec = [[Double]](repeating: [], count: classCount + 1), prec = rec
    for i in sorted {
        let o = order[i], c = o.label
        ctp[c] += o.tp; cfp[c] += o.fp
        rec[c].append(ctp[c] / npos[c])
        prec[c].append(ctp[c] / max(ctp[c] + cfp[c], Double.ulpOfOne))
    }
    for c in 1...classCount {
        if negativeWithoutPositives && npos[c] <= 0 { ap[c - 1] = -1; continue }
        ap[c - 1] = vidAllPointAP(recall: rec[c], precision: prec[c])
    }
    return ap
}

/// `vid_eval`: AP per class (index 0 = class 1). A class without ground truth gets what the script
/// computes: 0 without detections, NaN with some.
public func evaluateVID(frames: [VIDGroundTruthFrame], detections: [VIDDetection], classCount: Int) -> [Double] {
    var npos = [Double](repeating: 0, count: classCount + 1)
    for f in frames { for l in f.labels { npos[l] += 1 } }
    let byFrame = vidDetectionsByFrame(detections, frames: frames)
    var tpCells = [Int: [Double]](), fpCells = [Int: [Double]]()
    for f in frames {
        guard let dets = byFrame[f.frameID] else { continue }
        var detected = [Bool](repeating: false, count: f.labels.count)
        var tp = [Double](repeating: 0, count: dets.count), fp = tp
        for (j, d) in dets.enumerated() {
            let det = detections[d]
            var ovmax = -1.0, kmax = -1
            for k in f.labels.indices where det.label == f.labels[k] && !detected[k] {
                if let ov = vidOverlap(det.box, f.boxes[k]), ov >= f.thresholds[k] && ov > ovmax { ovmax = ov; kmax = k }
            }
            if kmax >= 0 { tp[j] = 1; detected[kmax] = true } else { fp[j] = 1 }
        }
        tpCells[f.frameID] = tp; fpCells[f.frameID] = fp
    }
    return vidClassAPs(frames: frames, byFrame: byFrame, detections: detections, tp: tpCells, fp: fpCells, npos: npos,
                       classCount: classCount, negativeWithoutPositives: false)
}

/// A motion range of `vid_eval_motion`: ground truths whose motion IoU (the mean IoU of the object
/// with itself in the frames +-10 around) lies in `low...high` count, the others are ignored.
public struct VIDMotionRange: Sendable, Equatable {
    public var name: String
    public var low: Double, high: Double
    public init(name: String, low: Double, high: Double) { self.name = name; self.low = low; self.high = high }
    /// MSRA's four (`imagenet_vid.py` `do_python_eval_gen`): all, fast (< 0.7), medium, slow (> 0.9).
    public static let msra: [VIDMotionRange] = [
        VIDMotionRange(name: "all", low: 0.0, high: 1.0), VIDMotionRange(name: "fast", low: 0.0, high: 0.7),
        VIDMotionRange(name: "medium", low: 0.7, high: 0.9), VIDMotionRange(name: "slow", low: 0.9, high: 1.0),
    ]
}

/// `vid_eval_motion` for one motion range and area range: AP per class, -1 for a class with no
/// ground truth in the range. A matched ground truth outside the ranges makes its detection
/// neither true nor false positive; an unmatched detection is a false positive with weight 1 when
/// its best-overlapping ground truth is in the motion range, 0 when it is outside (or the
/// detection's area is outside the area range), and on ties the fraction of the frame's ground
/// truths outside the range (of all ground truths in the set when the frame has none).
/// `motionIoU[i]` holds frame i's values, one per object at least.
public func evaluateVIDMotion(frames: [VIDGroundTruthFrame], detections: [VIDDetection], classCount: Int, motionIoU: [[Double]],
                              range: VIDMotionRange, areaRange: (Double, Double) = (0, 1e5 * 1e5)) -> [Double] {
    var npos = [Double](repeating: 0, count: classCount + 1)
    for f in frames { for l in f.labels { npos[l] += 1 } }
    let byFrame = vidDetectionsByFrame(detections, frames: frames)
    let all = motionIoU.joined()
    let inRange = all.reduce(0) { $0 + ($1 >= range.low && $1 <= range.high ? 1 : 0) }
    let emptyWeight = all.isEmpty ? 0 : Double(inRange) / Double(all.count)
    var tpCells = [Int: [Double]](), fpCells = [Int: [Double]]()
    for (index, f) in frames.enumerated() {
        let n = f.labels.count
        let ignoredMotion = (0..<n).map { motionIoU[index][$0] < range.low || motionIoU[index][$0] > range.high }
        let ignoredArea = f.boxes.map { b -> Bool in
            let area = (b.ymax - b.ymin + 1) * (b.xmax - b.xmin + 1)
            return area < areaRange.0 || area > areaRange.1
        }
        if let dets = byFrame[f.frameID] {
            var detected = [Bool](repeating: false, count: n)
            var tp = [Double](repeating: 0, count: dets.count), fp = tp
            for (j, d) in dets.enumerated() {
                let det = detections[d]
                var ovmax = -1.0, kmax = -1, ovmaxIgnored = -1.0, ovmaxKept = -1.0
                for k in 0..<n {
                    let ov = vidOverlap(det.box, f.boxes[k]) ?? 0
                    if ov >= f.thresholds[k] && ov > ovmax && !detected[k] && det.label == f.labels[k] { ovmax = ov; kmax = k }
                    if ignoredMotion[k] && ov > ovmaxIgnored { ovmaxIgnored = ov }
                    if !ignoredMotion[k] && ov > ovmaxKept { ovmaxKept = ov }
                }
                if kmax >= 0 {
                    detected[kmax] = true
                    if !ignoredMotion[kmax] && !ignoredArea[kmax] { tp[j] = 1 }
                } else {
                    let b = det.box
                    let area = (b.ymax - b.ymin + 1) * (b.xmax - b.xmin + 1)
                    if area < areaRange.0 || area > areaRange.1 { fp[j] = 0; continue }
                    if ovmaxKept > ovmaxIgnored { fp[j] = 1 }
                    else if ovmaxIgnored > ovmaxKept { fp[j] = 0 }
                    else if n == 0 { fp[j] = emptyWeight }
                    else { fp[j] = Double(ignoredMotion.filter { $0 }.count) / Double(n) }
                }
            }
            tpCells[f.frameID] = tp; fpCells[f.frameID] = fp
        }
        for k in 0..<n where ignoredMotion[k] || ignoredArea[k] { npos[f.labels[k]] -= 1 }
    }
    return vidClassAPs(frames: frames, byFrame: byFrame, detections: detections, tp: tpCells, fp: fpCells, npos: npos,
                       classCount: classCount, negativeWithoutPositives: true)
}

/// `np.mean` of the APs that are >= 0 (the motion script's mean; NaN when none is).
public func vidMeanOfValid(_ ap: [Double]) -> Double {
    let valid = ap.filter { $0 >= 0 }
    return valid.isEmpty ? .nan : numpyMean(valid)
}

// MARK: - Output

/// The result of `dcn-eval vid`: the plain evaluation and, with a motion file, each motion range.
public struct VIDEvaluation: Sendable {
    /// Class names as the output shows them (`vidDisplayName`), in label order.
    public var classNames: [String]
    /// `vid_eval`'s AP per class.
    public var ap: [Double]
    /// `vid_eval_motion`'s AP per class for each range (-1: no ground truth in the range).
    public var motion: [(range: VIDMotionRange, ap: [Double])]
    public init(classNames: [String], ap: [Double], motion: [(range: VIDMotionRange, ap: [Double])] = []) {
        self.classNames = classNames; self.ap = ap; self.motion = motion
    }
    /// The mean over all classes (`np.mean(ap)`, as MSRA's `do_python_eval` prints it).
    public var mean: Double { numpyMean(ap) }

    /// The lines MSRA's script prints (`AP for <class> = 0.xxxx`, `Mean AP@0.5 = 0.xxxx`), then per
    /// motion range its mean over the classes with ground truth in the range.
    public var table: String {
        var s = ""
        for (c, v) in zip(classNames, ap) { s += "AP for \(c) = \(String(format: "%.4f", v))\n" }
        s += "Mean AP@0.5 = \(String(format: "%.4f", mean))\n"
        for (r, ap) in motion {
            s += "motion \(r.name) [\(String(format: "%.1f", r.low)) \(String(format: "%.1f", r.high))]: Mean AP@0.5 = \(String(format: "%.4f", vidMeanOfValid(ap)))"
            s += " (\(ap.filter { $0 >= 0 }.count) classes with ground truth in the range)\n"
        }
        return s
    }

    /// `{"AP": mean, "per_class": {name: AP}, "motion": {range: {"AP", "per_class"}}}`; NaN and the
    /// motion script's -1 (no ground truth in the range) are `null`.
    public var json: String {
        func number(_ v: Double) -> String { v.isNaN || v < 0 ? "null" : jsonNumber(v) }
        func perClass(_ ap: [Double], _ indent: String) -> String {
            orderedJSONObject(zip(classNames, ap).map { (String(jsonString($0.0).dropFirst().dropLast()), number($0.1)) }, indent: indent)
        }
        var pairs = [("AP", number(mean)), ("per_class", perClass(ap, "  "))]
        if !motion.isEmpty {
            let ranges = motion.map { r in
                (r.range.name, orderedJSONObject([("low", jsonNumber(r.range.low)), ("high", jsonNumber(r.range.high)),
                                                  ("AP", number(vidMeanOfValid(r.ap))), ("per_class", perClass(r.ap, "      "))], indent: "    "))
            }
            pairs.append(("motion", orderedJSONObject(ranges, indent: "  ")))
        }
        return orderedJSONObject(pairs) + "\n"
    }
}
