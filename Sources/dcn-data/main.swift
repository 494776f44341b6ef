// dcn-data: the synthetic dataset generator and a dataset checker.
import ArgumentParser
import DCNData
import DCNEval
import DCNTensor
import Foundation
import DCNAnnotations

struct DCNDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcn-data",
        abstract: "Generate the synthetic deformed-shapes dataset, or check a COCO/VOC dataset.",
        subcommands: [Synth.self, SynthCls.self, Check.self])
}

/// The most images a synthetic split may have (about 20 GB of JPEGs at the default size).
let maxSyntheticImages = 1_000_000

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the synthetic dataset: DIR/images/{train,val}, DIR/annotations/instances_{train,val}.json (and DIR/VOCdevkit with --voc).")

    @Option(help: "Output folder (created if missing).")
    var out: String

    @Option(parsing: .unconditional, help: "Number of training images.")
    var train: Int = 400

    @Option(parsing: .unconditional, help: "Number of validation images.")
    var val: Int = 100

    @Option(parsing: .unconditional, help: "Random seed: the same seed writes the same bytes.")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Nominal image size in pixels (each side is drawn from 0.8x to 1.2x of it).")
    var size: Int = 320

    @Flag(help: "Also write the data as a PASCAL VOC tree DIR/VOCdevkit/VOC2007.")
    var voc = false

    @Flag(help: "Also write semantic-segmentation labels of the same images in the VOC 2012 layout DIR/VOCdevkit/VOC2012 (docs/segmentation.md).")
    var semantic = false

    @Option(parsing: .unconditional, help: "JPEG quality (1-100).")
    var quality: Int = 92

    @Option(help: "Difficulty: standard (the ablation tables' dataset: 2-8 objects, 35% small, distractors, clutter) or easy (the demo's: 1-4 mostly medium/large objects, little clutter; same deformed shapes with random colours).")
    var difficulty: SyntheticDifficulty = .standard

    @OptionGroup var videoOptions: SynthVideoOptions

    func validate() throws {
        if train < 0 || val < 0 { throw ValidationError("--train and --val must be 0 or more") }
        if train > maxSyntheticImages || val > maxSyntheticImages {
            throw ValidationError("--train \(train) --val \(val): at most \(maxSyntheticImages) images each (COCO's train2017 has 118,287)")
        }
        if train + val == 0 { throw ValidationError("nothing to write: give --train or --val a positive count") }
        if semantic && videoOptions.video { throw ValidationError("--semantic writes still-image label maps; it does not combine with --video") }
        if size < 64 || size > 4096 { throw ValidationError("--size must be between 64 and 4096 pixels, got \(size)") }
        if quality < 1 || quality > 100 { throw ValidationError("--quality must be between 1 and 100, got \(quality)") }
        if let problem = folderCreateProblem(out) { throw ValidationError("--out \(out): \(problem); expected a folder (created if missing)") }
    }

    func run() throws {
        if videoOptions.video { return try videoOptions.write(out: out, train: train, val: val, seed: seed, size: size, quality: quality, difficulty: difficulty, voc: voc) }
        let config = SyntheticConfig(train: train, val: val, size: size, seed: seed, voc: voc, jpegQuality: quality, difficulty: difficulty)
        let s = try writeSyntheticDataset(out: out, config: config)
        let total = s.trainImages + s.valImages
        print("wrote \(s.trainImages) train + \(s.valImages) val images, \(s.objects) objects to \(out) in \(String(format: "%.1f", s.seconds)) s (\(String(format: "%.1f", Double(total) / max(s.seconds, 1e-9))) images/s)")
        if semantic { print("wrote their class-index label maps to \(out)/VOCdevkit/VOC2012 in \(String(format: "%.1f", try writeSyntheticSegmentation(out: out, config: config).seconds)) s") }
    }
}

extension SyntheticDifficulty: ExpressibleByArgument {}

struct SynthCls: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth-cls",
        abstract: "Write the synthetic classification set: an ImageFolder DIR/{train,val}/<NN_class>/*.jpg of one deformed shape per image, ten classes.",
        discussion: """
            The validation split has a geometric shift: its shapes are drawn from wider ranges than the
            training split's (written to DIR/geometry.json):
              train: size 0.32-0.45 of the image side, rotation +-15 deg, shear +-0.1, log-aspect +-0.1, elastic warp 0.04
              val:   size 0.20-0.60, rotation +-60 deg, shear +-0.45, log-aspect +-0.4, elastic warp 0.14
            """)

    @Option(help: "Output folder (created if missing).")
    var out: String

    @Option(parsing: .unconditional, help: "Training images per class.")
    var trainPerClass: Int = 200

    @Option(parsing: .unconditional, help: "Validation images per class.")
    var valPerClass: Int = 50

    @Option(parsing: .unconditional, help: "Image side in pixels.")
    var size: Int = 64

    @Option(parsing: .unconditional, help: "Random seed: the same seed writes the same bytes.")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "JPEG quality (1-100).")
    var quality: Int = 92

    @Option(parsing: .unconditional, help: ArgumentHelp("The training split's shape sizes (sqrt(area) / image side), e.g. 0.3,0.4. With this or --val-scale the splits differ in scale only: both take the training split's rotation, shear, aspect and warp ranges.", valueName: "lo,hi"))
    var trainScale: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("The validation split's shape sizes, e.g. 0.15,0.7 (see --train-scale).", valueName: "lo,hi"))
    var valScale: String?

    /// `--train-scale` / `--val-scale` as a range within (0, 0.9].
    func scaleRange(_ text: String?, _ option: String) throws -> ClosedRange<Double>? {
        guard let text else { return nil }
        let v = text.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard v.count == 2, v[0] > 0, v[0] <= v[1], v[1] <= 0.9 else {
            throw ValidationError("\(option) \(text): expected two sizes lo,hi with 0 < lo <= hi <= 0.9 (sqrt(area) / image side)")
        }
        return v[0]...v[1]
    }

    /// The splits' geometry: the default training and shifted ranges, or a scale-only shift.
    func geometry() throws -> (train: ShapeGeometry, val: ShapeGeometry) {
        let train = try scaleRange(trainScale, "--train-scale"), val = try scaleRange(valScale, "--val-scale")
        if train == nil && val == nil { return (.training, .shifted) }
        return (.training(size: train ?? ShapeGeometry.training.size), .training(size: val ?? ShapeGeometry.training.size))
    }

    func validate() throws {
        _ = try geometry()
        if trainPerClass < 1 || valPerClass < 1 { throw ValidationError("--train-per-class and --val-per-class must be at least 1") }
        if trainPerClass > maxSyntheticImages / 10 || valPerClass > maxSyntheticImages / 10 {
            throw ValidationError("--train-per-class \(trainPerClass) --val-per-class \(valPerClass): at most \(maxSyntheticImages / 10) images per class each")
        }
        if size < 16 || size > 1024 { throw ValidationError("--size must be between 16 and 1024 pixels, got \(size)") }
        if quality < 1 || quality > 100 { throw ValidationError("--quality must be between 1 and 100, got \(quality)") }
        if let problem = folderCreateProblem(out) { throw ValidationError("--out \(out): \(problem); expected a folder (created if missing)") }
    }

    func run() throws {
        let r = try writeSyntheticClassificationDataset(out: out, trainPerClass: trainPerClass, valPerClass: valPerClass, size: size,
                                                        seed: seed, jpegQuality: quality, geometry: try geometry())
        print("wrote \(r.images) images (\(trainPerClass) train + \(valPerClass) val per class, 10 classes) to \(out) in \(String(format: "%.1f", r.seconds)) s")
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a dataset, decode every image, print a summary and every problem (exit status 1 if any).")

    @Option(help: "COCO instances file (with --images DIR).")
    var coco: String?

    @Option(help: "Image folder of the COCO file.")
    var images: String?

    @Option(help: "PASCAL VOC devkit year folder, e.g. VOCdevkit/VOC2007 (with --split).")
    var voc: String?

    @Option(help: "VOC split name (ImageSets/Main/<split>.txt), e.g. trainval or test.")
    var split: String?

    @Option(help: "VOC class names, comma-separated, in label order (default: the 20 VOC classes; the synthetic dataset's are ring,cross,star,arrow,L,T).")
    var classes: String?

    @Flag(help: "Check the annotations only; do not decode the images.")
    var noImages = false

    @Flag(help: "Accept image paths that can lead outside the dataset folder (a file_name or VOC id that is absolute or has a '..' component), as the config's data.allow_outside_root: true does.")
    var allowOutsideRoot = false

    @OptionGroup var segmentationOptions: SegmentationCheckOptions

    @OptionGroup var vid: VIDCheckOptions

    func validate() throws {
        if segmentationOptions.isRequested && vid.root != nil { throw ValidationError("--segmentation and --vid check different datasets; give one of them") }
        if segmentationOptions.isRequested { return try segmentationOptions.validate(self) }
        if vid.root != nil { return try vid.validateAlone(coco == nil && voc == nil && images == nil && split == nil) }
        if (coco == nil) == (voc == nil) { throw ValidationError("give exactly one of --coco ANN.json or --voc DIR/VOC2007") }
        if let coco, let problem = fileReadProblem(coco) { throw ValidationError("--coco \(coco): \(problem); expected a COCO instances JSON file") }
        if let images { try requireFolder(images, "--images", "the image folder of the COCO file") }
        if let voc { try requireFolder(voc, "--voc", "a devkit year folder such as VOCdevkit/VOC2007") }
        if coco != nil && classes != nil { throw ValidationError("--classes is for --voc; COCO files list their categories") }
        if coco != nil {
            if split != nil { throw ValidationError("--split is for --voc; COCO splits are separate files") }
            if images == nil && !noImages { throw ValidationError("--coco needs --images DIR (or --no-images to check the annotations only)") }
        } else {
            if images != nil { throw ValidationError("--images is for --coco; VOC images are read from DIR/JPEGImages") }
            if let classes, parseClassList(classes).isEmpty {
                throw ValidationError("--classes '\(classes)' names no class; expected comma-separated class names, e.g. --classes ring,cross")
            }
            if split == nil { throw ValidationError("--voc needs --split NAME (e.g. trainval or test)") }
        }
    }

    func run() throws {
        if segmentationOptions.isRequested { return try segmentationOptions.run(self) }
        let t0 = Date()
        let dataset: Dataset
        let ignoreName: String
        if let root = vid.root {
            (dataset, ignoreName) = (try Dataset.imagenetVID(root: root, lists: vid.lists, classes: classes.map(parseClassList) ?? vidClassWNIDs, allowOutsideRoot: allowOutsideRoot), "ignored")
        } else if let coco {
            dataset = try Dataset.coco(annotations: coco, imageRoot: images ?? ".", skipEmpty: false, allowOutsideRoot: allowOutsideRoot)
            ignoreName = "crowd"
        } else {
            dataset = try Dataset.voc(devkits: [voc!], splits: [split!], classes: classes.map(parseClassList), allowOutsideRoot: allowOutsideRoot)
            ignoreName = "difficult"
        }
        let loadSeconds = Date().timeIntervalSince(t0)
        var problems = dataset.warnings
        if dataset.images.isEmpty {
            problems.append(coco.map { "\($0): the \"images\" list is empty" } ?? "\(voc!)/ImageSets/Main/\(split!).txt lists no images")
        }
        var perLabel = [Int](repeating: 0, count: dataset.classNames.count + 1)
        var ignoredPerLabel = perLabel
        var areaBins = [Int](repeating: 0, count: 8)
        let areaEdges: [Float] = [16, 32, 64, 96, 128, 256, 512].map { $0 * $0 }
        var empty = 0
        var sizes = [String: Int]()
        for im in dataset.images {
            if !im.objects.contains(where: { !$0.ignore }) { empty += 1 }
            sizes["\(im.width)x\(im.height)", default: 0] += 1
            if im.width <= 0 || im.height <= 0 { problems.append("image id \(im.id) (\(im.name)): no valid width/height in the annotations") }
            for (k, o) in im.objects.enumerated() {
                perLabel[o.label] += 1
                if o.ignore { ignoredPerLabel[o.label] += 1; continue }
                let a = o.box.area
                areaBins[areaEdges.firstIndex { a < $0 } ?? 7] += 1
                if im.width > 0 && im.height > 0 && (o.box.x1 < -0.5 || o.box.y1 < -0.5 || o.box.x2 > Float(im.width) + 0.5 || o.box.y2 > Float(im.height) + 0.5) {
                    problems.append("image id \(im.id) (\(im.name)): object #\(k + 1) box [\(o.box.x1), \(o.box.y1), \(o.box.x2), \(o.box.y2)] extends outside the \(im.width)x\(im.height) image")
                }
            }
        }
        // Decode every image on all cores; each slot is written by one task.
        var decodeSeconds = 0.0
        if !noImages {
            let t1 = Date()
            let list = dataset.images
            var found = [String?](repeating: nil, count: list.count)
            found.withUnsafeMutableBufferPointer { slots in
                let out = DisjointWrites(slots.baseAddress!)
                parallelFor(list.count) { range in
                    for i in range {
                        let im = list[i]
                        do {
                            let d = try decodeImageReportingWarnings(path: im.path)
                            var notes = [String]()
                            if im.width > 0 && im.height > 0 && (d.image.width != im.width || d.image.height != im.height) {
                                notes.append("decoded size \(d.image.width)x\(d.image.height) differs from the annotated \(im.width)x\(im.height)")
                            }
                            if d.warningCount > 0 { notes.append("\(d.warningCount) decoder warning(s): \(d.firstWarning ?? "")") }
                            if !notes.isEmpty { out[i] = "image id \(im.id) (\(im.path)): " + notes.joined(separator: "; ") }
                        } catch {
                            out[i] = "image id \(im.id): \(error)"
                        }
                    }
                }
            }
            problems += found.compactMap { $0 }
            decodeSeconds = Date().timeIntervalSince(t1)
        }

        print("images: \(dataset.images.count) (\(empty) without objects other than \(ignoreName))")
        print("objects: \(dataset.objectCount) (\(ignoredPerLabel.reduce(0, +)) \(ignoreName))")
        print("objects per category (label, id, name, count, \(ignoreName)):")
        for (i, name) in dataset.classNames.enumerated() {
            print("  \(i + 1)\t\(dataset.categoryIDs[i])\t\(name)\t\(perLabel[i + 1])\t\(ignoredPerLabel[i + 1])")
        }
        print("image sizes (width x height: images), most common first:")
        for (s, n) in sizes.sorted(by: { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }).prefix(10) { print("  \(s): \(n)") }
        if sizes.count > 10 { print("  ... \(sizes.count - 10) more sizes") }
        print("box areas (non-\(ignoreName); COCO small < 32^2 <= medium < 96^2 <= large):")
        let labels = ["< 16^2", "16^2-32^2", "32^2-64^2", "64^2-96^2", "96^2-128^2", "128^2-256^2", "256^2-512^2", ">= 512^2"]
        for (l, n) in zip(labels, areaBins) { print("  \(l.padding(toLength: 12, withPad: " ", startingAt: 0)) \(n)") }
        print(String(format: "annotations loaded in %.2f s (peak memory %.0f MB)", loadSeconds, Double(System.peakResidentBytes()) / 1e6)
              + (noImages ? "" : String(format: ", images decoded in %.2f s", decodeSeconds)))
        print("problems: \(problems.count)")
        for p in problems { print("problem: \(p)") }
        if !problems.isEmpty { throw ExitCode(1) }
    }
}

/// `option path` must be an existing folder: otherwise says what it is and what is expected.
func requireFolder(_ path: String, _ option: String, _ what: String) throws {
    if let problem = folderProblem(path) { throw ValidationError("\(option) \(path): \(problem); expected \(what)") }
}

DCNDataCommand.main()
