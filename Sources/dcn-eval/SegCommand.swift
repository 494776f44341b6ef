// dcn-eval seg: per-class IoU and mIoU of predicted label maps against ground-truth label maps
// (issue 32), the numbers of torchvision's segmentation reference and mmseg's IoUMetric. Under
// mpirun each process reads every size-th pair and the confusion matrices are summed: integer
// counts, so the numbers are those of one process.
import ArgumentParser
import DCNAnnotations
import DCNCommandLine
import DCNData
import DCNDistributed
import DCNEval
import DCNTensor
import Foundation

struct SegCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seg",
        abstract: "Semantic segmentation: per-class IoU and mIoU of predicted label maps (torchvision's ConfusionMatrix, mmseg's IoUMetric).",
        discussion: """
            Both folders hold PNG label maps (palette or grayscale, the value is the class; 255 is void),
            searched at any depth and matched by file name: X.png with X.png, and a Cityscapes
            X_gtFine_labelTrainIds.png with X.png. Every label needs a prediction of its size; void
            label pixels are not counted; a void prediction at a labelled pixel is a miss. A class
            absent from both labels and predictions has no IoU (null in the JSON) and is left out of
            mIoU. Under mpirun the processes share the files; rank 0 prints and writes the JSON.
            """)

    @Option(help: "The ground-truth label maps, e.g. VOCdevkit/VOC2012/SegmentationClass or cityscapes/gtFine/val.")
    var labels: String

    @Option(help: "The predicted label maps, one per label map, with the same file names.")
    var predictions: String

    @Option(parsing: .unconditional, help: "Number of classes, label values 0..<N (default: the number of --class-names, else 21 as in VOC).")
    var classes: Int?

    @Option(name: .customLong("class-names"), help: "Class names in label order, comma-separated, for the table and the JSON (default: 0, 1, ...; the 21 VOC names when --classes is 21 or absent).")
    var classNames: String?

    @Option(help: "Write {\"mIoU\", \"IoU\": [per class, null if absent], \"aAcc\", \"Acc\", \"classes\", \"images\", \"pixels\"} to this JSON file.")
    var json: String?

    @OptionGroup var threadOptions: ThreadOptions

    /// The class count and names the options give.
    var classList: (count: Int, names: [String]) {
        if let classNames {
            let names = parseClassList(classNames)
            return (classes ?? names.count, names)
        }
        let count = classes ?? vocSegmentationClassNames.count
        return (count, count == vocSegmentationClassNames.count ? vocSegmentationClassNames : (0..<count).map(String.init))
    }

    func validate() throws {
        if let problem = folderProblem(labels) { throw ValidationError("--labels \(labels): \(problem); expected a folder of PNG label maps") }
        if let problem = folderProblem(predictions) { throw ValidationError("--predictions \(predictions): \(problem); expected a folder of PNG label maps") }
        if let classes, !(1...255).contains(classes) {
            throw ValidationError("--classes must be 1 to 255 (label values 0..<N; 255 is void), got \(classes)")
        }
        if let classNames {
            let names = parseClassList(classNames)
            if names.isEmpty || names.count > 255 { throw ValidationError("--class-names '\(classNames)': expected 1 to 255 comma-separated names") }
            if let classes, classes != names.count {
                throw ValidationError("--class-names names \(names.count) classes but --classes is \(classes)")
            }
        }
        if let json {
            try requireWritableFile(json, "--json", "a JSON file")
            var read = ReadFiles()
            read.addFiles(in: labels, as: "the label maps given to --labels")
            read.addFiles(in: predictions, as: "the predictions given to --predictions")
            try requireNotRead(json, "--json", read)
        }
    }

    func run() throws {
        let group = ProcessGroup.world
        let (count, names) = classList
        do {
            let (pairs, unmatched) = try matchLabelMaps(labels: labels, predictions: predictions)
            let mine = Array(stride(from: group.rank, to: pairs.count, by: group.size)).map { pairs[$0] }
            var matrix = try Threads.with(threadOptions.threads) { try confusion(of: mine, classes: count) }
            // Every process takes part in the sum, also one whose share is empty.
            let summed = try group.sum(matrix.counts.map(Double.init))
            matrix = ConfusionMatrix(classes: count, counts: summed.map { Int($0) })
            guard group.isRoot else { return }
            if unmatched > 0 { printError("dcn-eval seg: note: \(unmatched) prediction(s) in \(predictions) have no label map and were not scored") }
            let result = SegmentationResult(matrix: matrix, classNames: names, images: pairs.count)
            print(result.table, terminator: "")
            if let json { try writeFileAtomically(Data(result.jsonText.utf8), to: json) }
        } catch let error as LabelMapError {
            throw ToolError(error.description)
        } catch let error as ImageError {
            throw ToolError(error.description)
        }
    }
}

/// The confusion matrix of `pairs`, read on all threads (each pair's counts in its own slot, added
/// in order). The first failing pair's error is thrown.
func confusion(of pairs: [LabelMapPair], classes: Int) throws -> ConfusionMatrix {
    let slots = parallelResults(pairs.count) { i in
        let pair = pairs[i]
        let label = try readLabelMap(path: pair.label, classes: classes)
        let prediction = try readLabelMap(path: pair.prediction, classes: classes)
        guard label.width == prediction.width && label.height == prediction.height else {
            throw LabelMapError(file: pair.prediction, "is \(prediction.width)x\(prediction.height) pixels but its label map \(pair.label) is "
                                + "\(label.width)x\(label.height); expected a prediction of the label's size")
        }
        var m = ConfusionMatrix(classes: classes)
        m.add(labels: label.labels, predictions: prediction.labels)
        return m
    }
    var total = ConfusionMatrix(classes: classes)
    for slot in slots { total.add(try slot.get()) }
    return total
}
