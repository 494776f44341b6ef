// `dcn-data check --segmentation voc|sbd|cityscapes --root DIR --split NAME`: every label map and
// image of a semantic-segmentation split read, with a summary and every problem, as `check` does
// for COCO and VOC detection data.
import ArgumentParser
import DCNAnnotations
import DCNData
import DCNTensor
import Foundation

extension SegmentationLayout: ExpressibleByArgument {}

/// The options `check` takes for segmentation data; `check` hands over when `--segmentation` is given.
struct SegmentationCheckOptions: ParsableArguments {
    @Option(help: "Check a semantic-segmentation split instead (with --root and --split): voc (VOC2012 SegmentationClass palette PNGs), sbd (SegmentationClassAug grayscale PNGs, e.g. --split trainaug) or cityscapes (gtFine/<split>/<city>/*_gtFine_labelTrainIds.png).")
    var segmentation: SegmentationLayout?

    @Option(help: "With --segmentation: the devkit year folder (VOCdevkit/VOC2012) or the Cityscapes folder (gtFine/, leftImg8bit/).")
    var root: String?

    var isRequested: Bool { segmentation != nil }

    /// The classes in label order: the layout's, or with `--classes` the names given (for voc and sbd
    /// the foreground classes, background being 0).
    func classNames(_ check: Check) -> [String] {
        guard let list = check.classes.map(parseClassList) else { return segmentation!.classNames }
        return segmentation == .cityscapes ? list : ["background"] + list
    }

    func validate(_ check: Check) throws {
        if check.coco != nil || check.voc != nil || check.images != nil {
            throw ValidationError("--segmentation checks the split under --root; --coco, --voc and --images are for detection data")
        }
        guard let root else { throw ValidationError("--segmentation \(segmentation!.rawValue) needs --root DIR (\(rootDescription))") }
        try requireFolder(root, "--root", rootDescription)
        if check.split == nil { throw ValidationError("--segmentation needs --split NAME (e.g. train, val or trainaug)") }
        if let classes = check.classes, parseClassList(classes).isEmpty {
            throw ValidationError("--classes '\(classes)' names no class; expected comma-separated class names, e.g. --classes ring,cross")
        }
        if classNames(check).count > 255 { throw ValidationError("--classes: at most 255 classes (255 is void)") }
    }

    var rootDescription: String {
        segmentation == .cityscapes ? "the Cityscapes folder holding gtFine/ and leftImg8bit/" : "a devkit year folder such as VOCdevkit/VOC2012"
    }

    func run(_ check: Check) throws {
        let t0 = Date()
        let layout = segmentation!, split = check.split!, names = classNames(check)
        let samples = try loadSegmentationSplit(layout: layout, root: root!, split: split, allowOutsideRoot: check.allowOutsideRoot)
        var problems = [String]()
        if samples.isEmpty { problems.append("\(root!): the split '\(split)' lists no images") }

        // Every label map (and image) read on all cores; each slot is written by one task.
        var found = [SampleCheck?](repeating: nil, count: samples.count)
        found.withUnsafeMutableBufferPointer { slots in
            let out = DisjointWrites(slots.baseAddress!)
            parallelFor(samples.count) { range in
                for i in range { out[i] = SampleCheck(samples[i], classes: names.count, decodeImage: !check.noImages) }
            }
        }
        var pixels = [Int](repeating: 0, count: names.count), images = pixels
        var void = 0, palette = 0, gray = 0
        var sizes = [String: Int]()
        for c in found.map({ $0! }) {
            problems += c.problems
            guard let histogram = c.histogram else { continue }
            if c.isPalette { palette += 1 } else { gray += 1 }
            sizes[c.size, default: 0] += 1
            for k in 0..<names.count where histogram[k] > 0 { pixels[k] += histogram[k]; images[k] += 1 }
            void += histogram[Int(voidLabel)]
        }
        let labelled = pixels.reduce(0, +)
        print("images: \(samples.count) (\(layout.rawValue) layout, split \(split); label maps: \(palette) palette, \(gray) grayscale PNGs)")
        print("pixels: \(labelled) labelled, \(void) void (\(voidLabel))")
        print("classes (label, name, pixels, % of labelled, images):")
        for (k, name) in names.enumerated() {
            let share = labelled > 0 ? 100 * Double(pixels[k]) / Double(labelled) : 0
            print("  \(k)\t\(name)\t\(pixels[k])\t\(String(format: "%.2f", share))\t\(images[k])")
        }
        print("label sizes (width x height: images), most common first:")
        for (s, n) in sizes.sorted(by: { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }).prefix(10) { print("  \(s): \(n)") }
        if sizes.count > 10 { print("  ... \(sizes.count - 10) more sizes") }
        print(String(format: "checked in %.2f s", Date().timeIntervalSince(t0)) + (check.noImages ? " (label maps only)" : ""))
        print("problems: \(problems.count)")
        for p in problems { print("problem: \(p)") }
        if !problems.isEmpty { throw ExitCode(1) }
    }
}

/// What reading one sample found: its label histogram (nil if unreadable) and its problems.
private struct SampleCheck {
    var histogram: [Int]?
    var isPalette = false
    var size = ""
    var problems = [String]()

    init(_ sample: SegmentationSample, classes: Int, decodeImage: Bool) {
        var labelSize: (Int, Int)?
        do {
            let decoded = try readLabelSamples(path: sample.labelPath)
            let map = LabelMap(width: decoded.width, height: decoded.height, labels: decoded.samples)
            histogram = try checkLabelValues(map, classes: classes, file: sample.labelPath)
            isPalette = decoded.isPalette
            size = "\(map.width)x\(map.height)"
            labelSize = (map.width, map.height)
        } catch {
            problems.append("\(sample.id): \(error)")
        }
        guard decodeImage else { return }
        do {
            let d = try decodeImageReportingWarnings(path: sample.imagePath)
            if let (w, h) = labelSize, d.image.width != w || d.image.height != h {
                problems.append("\(sample.id): \(sample.imagePath) is \(d.image.width)x\(d.image.height) but its label map \(sample.labelPath) is \(w)x\(h)")
            }
            if d.warningCount > 0 { problems.append("\(sample.id): \(sample.imagePath): \(d.warningCount) decoder warning(s): \(d.firstWarning ?? "")") }
        } catch {
            problems.append("\(sample.id): \(error)")
        }
    }
}
