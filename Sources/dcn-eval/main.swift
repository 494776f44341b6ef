// dcn-eval: COCO (bbox/segm) and PASCAL VOC evaluation, number for number with pycocotools
// and py-faster-rcnn's voc_eval (issue 3). A `model` subcommand is added by the training work.
import ArgumentParser
import DCNCommandLine
import DCNConfig
import DCNDistributed
import DCNEval
import Foundation
import DCNAnnotations
import DCNRun

/// Prints to stderr.
func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// A failure with a message for the user (printed to stderr; exit status 1).
struct ToolError: Error, CustomStringConvertible {
    let description: String
    init(_ s: String) { description = s }
}

/// `option path` must be a readable file: otherwise says why ("is a directory") and what is expected.
func requireReadableFile(_ path: String, _ option: String, _ what: String) throws {
    if let problem = fileReadProblem(path) { throw ValidationError("\(option) \(path): \(problem); expected \(what)") }
}

/// `option path` must be a file this process can write (not a directory, in an existing folder).
func requireWritableFile(_ path: String, _ option: String, _ what: String) throws {
    if let problem = fileWriteProblem(path) { throw ValidationError("\(option) \(path): \(problem); expected the path of \(what) to write") }
}

/// `option path`, an output, must not replace a file the command reads.
func requireNotRead(_ path: String, _ option: String, _ read: ReadFiles) throws {
    if let problem = outputProblem(path, read: read) { throw ValidationError("\(option) \(path): \(problem)") }
}

/// Shorter sides given as `option` ("480,576,688"): each a whole number of pixels in the configs'
/// range (32 to 4096).
func shorterSides(_ text: String, _ option: String) throws -> [Int] {
    let values = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
    guard !values.isEmpty, values.allSatisfy({ shorterSideRange.contains($0 ?? 0) }) else {
        throw ValidationError("\(option) takes shorter sides of \(shorterSideRange.lowerBound) to \(shorterSideRange.upperBound) pixels separated by commas, "
                              + "e.g. 400,800,1200; got '\(text)'")
    }
    return values.map { $0! }
}

struct DCNEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcn-eval",
        abstract: "Score detections with COCO (pycocotools) or PASCAL VOC (voc_eval) semantics.",
        subcommands: [COCOCommand.self, VOCCommand.self, VIDCommand.self, ModelCommand.self, SweepCommand.self, SegCommand.self]
    )
}

struct COCOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coco",
        abstract: "COCO bbox/segm evaluation; prints pycocotools' 12-line summary.")

    @Option(help: "Ground-truth annotations (instances_*.json).")
    var gt: String

    @Option(help: "Results: a JSON array of {image_id, category_id, score, bbox | segmentation}.")
    var results: String

    @Option(name: .customLong("iou-type"), help: "bbox or segm.")
    var iouType: String = "bbox"

    @Option(help: "Write {\"AP\", ..., \"ARl\"} to this JSON file.")
    var json: String?

    @Flag(name: .customLong("per-category"), help: "Also print the per-category AP table (as detectron2).")
    var perCategory = false

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard COCOIoUType(rawValue: iouType) != nil else {
            throw ValidationError("--iou-type must be bbox or segm, got '\(iouType)'")
        }
        try requireReadableFile(gt, "--gt", "a COCO ground-truth JSON file")
        try requireReadableFile(results, "--results", "a COCO results JSON file")
        if let json {
            try requireWritableFile(json, "--json", "a JSON file")
            var read = ReadFiles()
            read.add(gt, as: "the ground truth given to --gt")
            read.add(results, as: "the results given to --results")
            try requireNotRead(json, "--json", read)
        }
    }

    func run() throws {
        let type = COCOIoUType(rawValue: iouType)!
        let (groundTruth, result) = try evaluateCOCOFiles(groundTruthPath: gt, resultsPath: results, iouType: type, threads: threadOptions.threads)
        print(result.summaryLines.joined(separator: "\n"))
        if perCategory {
            let names = Dictionary(groundTruth.categories.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
            print("Per-category \(type.rawValue) AP:")
            print(result.perCategoryTable(names: names))
        }
        if let json {
            try writeFileAtomically(Data(result.stats.jsonText.utf8), to: json)
        }
    }
}

struct VOCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "voc",
        abstract: "PASCAL VOC AP (py-faster-rcnn voc_eval semantics) per class and mAP.")

    @Option(help: "The devkit year folder, e.g. VOCdevkit/VOC2007 (Annotations/, ImageSets/Main/).")
    var devkit: String

    @Option(help: "Image set: ImageSets/Main/<split>.txt.")
    var split: String = "test"

    @Option(help: "A folder of comp4_det_test_<class>.txt files, or a COCO-format results JSON file.")
    var results: String

    @Option(help: "IoU thresholds, comma separated.")
    var iou: String = "0.5,0.7"

    @Option(help: "area (VOC2010+) or voc07 (11-point); both when omitted.")
    var metric: String?

    @Option(help: "Class names, comma separated (default: the classes of the split's annotations).")
    var classes: String?

    @Option(help: "For a COCO results file: a JSON file with \"categories\": [{id, name}] (default: ids 1...20 are the VOC classes in order).")
    var categories: String?

    @Option(help: "Write per-class AP and mAP to this JSON file (layout of expected_ap.json).")
    var json: String?

    @Flag(help: "Accept split lines that can lead outside the devkit folder (an absolute id or one with a '..' component), as the config's data.allow_outside_root: true does.")
    var allowOutsideRoot = false

    var thresholds: [Double] { iou.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        let parts = iou.split(separator: ",", omittingEmptySubsequences: false)
        guard !parts.isEmpty, thresholds.count == parts.count, thresholds.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
            throw ValidationError("--iou must be comma-separated numbers in [0, 1), e.g. 0.5,0.7; got '\(iou)'")
        }
        if let metric, metric != "area", metric != "voc07" {
            throw ValidationError("--metric must be area or voc07, got '\(metric)'")
        }
        if let problem = folderProblem(devkit) {
            throw ValidationError("--devkit \(devkit): \(problem); expected a devkit year folder such as VOCdevkit/VOC2007 (Annotations/, ImageSets/Main/)")
        }
        guard FileManager.default.fileExists(atPath: results) else {
            throw ValidationError("--results \(results): no such file or folder; expected a folder of comp4_det_test_<class>.txt files or a COCO results JSON file")
        }
        if let classes, parseClassList(classes).isEmpty {
            throw ValidationError("--classes '\(classes)' names no class; expected comma-separated class names, e.g. --classes cat,dog")
        }
        if let categories { try requireReadableFile(categories, "--categories", "a JSON file with \"categories\": [{\"id\", \"name\"}]") }
        if let json {
            try requireWritableFile(json, "--json", "a JSON file")
            var read = ReadFiles()
            read.add(results, as: "the results given to --results")
            read.addFiles(in: results, as: "the results folder given to --results")
            if let categories { read.add(categories, as: "the categories given to --categories") }
            read.addFiles(in: devkit + "/Annotations", as: "the devkit's Annotations folder")
            read.addFiles(in: devkit + "/ImageSets/Main", as: "the devkit's ImageSets/Main folder")
            try requireNotRead(json, "--json", read)
        }
    }

    func run() throws {
        let dataset = try VOCDataset.load(devkit: devkit, split: split, allowOutsideRoot: allowOutsideRoot)
        guard !dataset.imageIDs.isEmpty else { throw ToolError("\(devkit): ImageSets/Main/\(split).txt lists no images; nothing to evaluate") }
        let classNames = classes.map(parseClassList) ?? dataset.classNames
        guard !classNames.isEmpty else {
            throw ToolError("\(devkit): the split '\(split)' has no annotated objects, so it names no classes; pass --classes a,b,...")
        }
        let detections: [String: [VOCDetection]]
        if folderProblem(results) == nil {
            detections = try loadVOCResultFiles(directory: results, classNames: classNames, imageIDs: Set(dataset.imageIDs))
            if detections.isEmpty {
                throw ToolError("\(results): no comp4_det_test_<class>.txt file for any of the classes \(classNames.joined(separator: ", "))")
            }
            for c in classNames where detections[c] == nil {
                printError("warning: \(results): no comp4_det_test_\(c).txt; class '\(c)' has no detections (AP 0)")
            }
        } else {
            let coco = try COCOResult.loadArray(path: results)
            var names = [Int: String]()
            if let categories {
                names = Dictionary(try COCOCategory.loadList(path: categories).map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
            } else {
                for (k, n) in vocClassNames.enumerated() { names[k + 1] = n }
            }
            detections = try vocDetections(fromCOCO: coco, categoryNames: names, dataset: dataset, file: results)
            let evaluated = classNames.reduce(0) { $0 + (detections[$1]?.count ?? 0) }
            let naming = categories.map { "named by --categories \($0)" } ?? "read as the 20 VOC classes (1 = aeroplane ... 20 = tvmonitor)"
            if evaluated == 0 {
                throw ToolError("\(results): none of the \(coco.count) detections has one of the evaluated classes (\(classNames.joined(separator: ", "))): "
                    + "their category ids were \(naming), giving \(detections.keys.sorted().joined(separator: ", ")); "
                    + "pass --categories FILE, a JSON file with the \"categories\" [{\"id\", \"name\"}] the model was trained with (e.g. its COCO annotation file)")
            }
            if evaluated < coco.count {
                printError("warning: \(results): \(coco.count - evaluated) of \(coco.count) detections have classes that are not evaluated (category ids \(naming))")
            }
        }
        let metrics: [VOCMetric] = metric.map { $0 == "area" ? [.area] : [.voc07] } ?? [.voc07, .area]
        let evaluated: [VOCMetricResult]
        do {
            evaluated = try evaluateVOC(dataset: dataset, detections: detections, classNames: classNames, iouThresholds: thresholds, metrics: metrics)
        } catch let e as VOCError {
            throw ToolError("\(results) (class \(e.file)): \(e.message)")
        }
        print(vocTable(evaluated), terminator: "")
        if let json {
            try writeFileAtomically(Data(vocResultsJSON(evaluated, classNames: classNames).utf8), to: json)
        }
    }
}

do {
    var command = try DCNEvalCommand.parseAsRoot()
    try command.run()
} catch let error where error is ToolError || error is FileError || error is JSONReadError || error is COCOFormatError
    || error is VOCError || error is MaskError {
    printError("dcn-eval: error: \(error)")
    ProcessGroup.world.exit(1)
} catch let code as ExitCode where code.rawValue != 0 && ProcessGroup.world.isDistributed {
    // Under mpirun a failing process takes the others with it.
    ProcessGroup.world.exit(code.rawValue)
} catch {
    DCNEvalCommand.exit(withError: error)
}
