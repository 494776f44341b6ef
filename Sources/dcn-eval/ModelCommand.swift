// dcn-eval model: inference of a trained checkpoint on the config's evaluation split, the detections
// (COCO-format results; MSRA's VID lines for VID data), and the metrics (COCO for COCO/synthetic
// data, VOC AP50/AP70 for VOC data, MSRA's VID AP for VID data).
import ArgumentParser
import DCNCommandLine
import DCNConfig
import DCNData
import DCNDistributed
import DCNEval
import DCNModels
import DCNTensor
import Foundation
import DCNAnnotations
import DCNInference
import DCNPictures
import DCNRun

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Evaluate a trained checkpoint on the config's evaluation split.",
        discussion: """
            Under mpirun (mpirun -np N dcn-eval model ...) each process runs its share of the images and \
            rank 0 scores them all and writes the files: the same numbers as one process. --scales and \
            --flip set the config's test section (multi-scale and flipped testing, see configs/README.md).
            """)

    @OptionGroup var configOptions: ConfigOptions

    @OptionGroup var checkpointOptions: CheckpointOptions

    @OptionGroup var testViewOptions: TestViewOptions

    @Option(help: "Write the metrics as JSON to this file (default: beside the detections, their file name with .json, .txt, _results.json or _results.txt replaced by _metrics.json).")
    var json: String?

    @Option(help: "Write the detections to this file: COCO-format results, or for VID data (data.format vid) MSRA's lines '<frame id> <class index> <score> <x1> <y1> <x2> <y2>' that dcn-eval vid --detections reads (default: eval_model_results.json beside the checkpoint; eval_model_results.txt for VID data).")
    var results: String?

    @Option(help: ArgumentHelp("Draw the first N images of the split with their detections (score at least output.draw_score_threshold) next to the ground truth, as PNGs in --out.",
                               valueName: "N"))
    var draw: Int?

    @Option(help: ArgumentHelp("The folder for the --draw pictures (default: a detections folder beside the detections file).", valueName: "dir"))
    var out: String?

    @Option(help: ArgumentHelp("Segmentation: also write the predicted label map of every image as a PNG in this folder (dcn-eval seg scores them).",
                               valueName: "dir"))
    var predictions: String?

    @OptionGroup var threadOptions: ThreadOptions

    var config: String { configOptions.config }
    var checkpoint: String { checkpointOptions.checkpoint }

    /// Where the detections go: `--results`, or eval_model_results.<ext> beside the checkpoint, the
    /// extension the data format's (`DataFormat.detectionsFileExtension`: json, txt for VID).
    func resultsPath(extension ext: String) -> String {
        results ?? URL(fileURLWithPath: checkpoint).deletingLastPathComponent().appendingPathComponent("eval_model_results.\(ext)").path
    }

    /// Where the metrics go: `--json`, or the detections' path with `.json` or `.txt` (and a trailing
    /// `_results`) replaced by `_metrics.json` (dets.json -> dets_metrics.json,
    /// eval_model_results.json -> eval_model_metrics.json, as dcn-train names its evaluations).
    func metricsPath(results resultsPath: String) -> String {
        if let json { return json }
        var stem = resultsPath
        if let ext = [".json", ".txt"].first(where: { stem.hasSuffix($0) }) { stem = String(stem.dropLast(ext.count)) }
        if stem.hasSuffix("_results") { stem = String(stem.dropLast(8)) }
        return stem + "_metrics.json"
    }

    func validate() throws {
        try requireReadableFile(config, "--config", "an experiment config (YAML)")
        try requireReadableFile(checkpoint, "--checkpoint", "a dcn-train checkpoint")
        if let results { try requireWritableFile(results, "--results", "a JSON file") }
        if let json { try requireWritableFile(json, "--json", "a JSON file") }
        if let draw, draw < 1 { throw ValidationError("--draw \(draw): give the number of images to draw, at least 1") }
        if let predictions, let problem = folderCreateProblem(predictions) {
            throw ValidationError("--predictions \(predictions): \(problem); expected a folder for the label-map PNGs (created if missing)")
        }
        if out != nil && draw == nil { throw ValidationError("--out is the folder of the --draw pictures: add --draw N") }
        if let out, let problem = folderCreateProblem(out) {
            throw ValidationError("--out \(out): \(problem); expected a folder for the --draw pictures (created if missing)")
        }
        if let results, sameOutputPath(results, metricsPath(results: results)) {
            throw ValidationError("--results and --json name the same file \(results); give two files")
        }
    }

    func run() throws {
        threadOptions.apply()
        System.keepFreedMemoryForReuse()
        // --scales and --flip are the test section's keys; they override the config and any --set.
        let experiment = try loadExperiment(config, overrides: configOptions.overrides + testViewOptions.overrides)
        try reportingEvaluationFailures(whenStopped: "before the evaluation finished; nothing was written") {
            // A classifier's split must have the checkpoint's classes (older checkpoints record none).
            let classes = experiment.model.task == .classification
                ? try Checkpoint.classNames(path: checkpoint).map { Dataset.ClassList(names: $0, source: "the checkpoint \(checkpoint)") } : nil
            guard let dataset = try loadDataset(experiment, train: false, classes: classes) else {
                throw ToolError("\(config): the config names no evaluation split")
            }
            let read = evaluationInputs(config: config, checkpoint: checkpoint, experiment: experiment, dataset: dataset)
            let resultsPath = resultsPath(extension: experiment.data.format.detectionsFileExtension)
            let metricsPath = metricsPath(results: resultsPath)
            if sameOutputPath(resultsPath, metricsPath) { throw ToolError("--json \(metricsPath): the detections go to that file; give another file") }
            for (path, option) in [(resultsPath, "--results"), (metricsPath, "--json")] {
                if let problem = outputProblem(path, read: read) { throw ToolError("\(option) \(path): \(problem)") }
            }
            if experiment.model.task == .segmentation {
                if draw != nil { throw ToolError("--draw draws detections, and \(config) is a segmenter (model.task: segmentation): use --predictions DIR") }
                try evaluateSegmentation(experiment, dataset: dataset, metricsPath: metricsPath)
                return
            }
            if predictions != nil { throw ToolError("--predictions is for segmentation models; \(config) is a \(experiment.model.task.rawValue) model") }
            if experiment.model.task == .classification {
                if draw != nil { throw ToolError("--draw draws detections, and \(config) is a classifier (model.task: classification)") }
                try evaluateClassification(experiment, dataset: dataset, metricsPath: metricsPath)
                return
            }
            let model = try buildModel(experiment, classes: dataset.classNames.count)
            _ = try Checkpoint.load(path: checkpoint, into: model.parameters, optimizer: nil)
            // evaluateModel writes <prefix>_results.json (.txt) and <prefix>_metrics.json: a hidden prefix
            // beside the detections file, then the detections are renamed to the path asked for.
            let folder = URL(fileURLWithPath: resultsPath).deletingLastPathComponent().path
            let prefix = folder + "/.dcn-eval-model-\(getpid())"
            defer { for suffix in ["_results.\(experiment.data.format.detectionsFileExtension)", "_metrics.json"] { unlink(prefix + suffix) } }
            // Ctrl-C or SIGTERM ends the inference between batches: nothing is written, the hidden
            // files are removed, and the exit status says which signal (128 + signal).
            StopRequest.installSignalHandlers()
            // Under mpirun rank 0 gets the report and writes the files; the others are done.
            let drawFolder = out ?? URL(fileURLWithPath: resultsPath).deletingLastPathComponent().appendingPathComponent("detections").path
            let request = draw.map { DrawingRequest(count: $0, folder: drawFolder, scoreThreshold: Float(experiment.output.drawScoreThreshold)) }
            guard let evaluation = try evaluateModel(model, config: experiment, dataset: dataset, outputPrefix: prefix, draw: request,
                                                     stop: .signals) else { return }
            let report = evaluation.report
            guard let written = evaluation.detectionsPath, rename(written, resultsPath) == 0 else {
                throw FileError(path: resultsPath, "cannot write the file (\(String(cString: strerror(errno))))")
            }
            try writeFileAtomically(try metricsJSON(report.metrics), to: metricsPath)
            print(report.text)
            print("detections: \(resultsPath)")
            print("metrics: \(metricsPath)")
            if !evaluation.drawings.isEmpty { print("pictures: \(evaluation.drawings.count) in \(drawFolder)") }
        }
    }

    /// A segmenter's mIoU on the config's val split: the metrics file is `dcn-eval seg`'s JSON.
    func evaluateSegmentation(_ experiment: ExperimentConfig, dataset: Dataset, metricsPath: String) throws {
        let segmenter = try buildSegmenter(experiment, classes: dataset.classNames.count)
        _ = try Checkpoint.load(path: checkpoint, into: segmenter.parameters, optimizer: nil)
        let folder = URL(fileURLWithPath: metricsPath).deletingLastPathComponent().path
        let prefix = folder + "/.dcn-eval-model-\(getpid())"
        defer { unlink(prefix + "_metrics.json") }
        StopRequest.installSignalHandlers()
        guard let report = try evaluateSegmenter(segmenter, config: experiment, dataset: dataset, outputPrefix: prefix,
                                                 predictions: predictions, stop: .signals) else { return }
        guard rename(prefix + "_metrics.json", metricsPath) == 0 else {
            throw FileError(path: metricsPath, "cannot write the file (\(String(cString: strerror(errno))))")
        }
        print(report.text)
        print("metrics: \(metricsPath)")
        if let predictions { print("label maps: \(predictions)") }
    }

    /// A classifier's top-1 / top-5 accuracy on the config's val split, written to the metrics file.
    func evaluateClassification(_ experiment: ExperimentConfig, dataset: Dataset, metricsPath: String) throws {
        let classifier = try buildClassifier(experiment, classes: dataset.classNames.count)
        _ = try Checkpoint.load(path: checkpoint, into: classifier.parameters, optimizer: nil)
        let folder = URL(fileURLWithPath: metricsPath).deletingLastPathComponent().path
        let prefix = folder + "/.dcn-eval-model-\(getpid())"
        defer { unlink(prefix + "_metrics.json") }
        StopRequest.installSignalHandlers()
        guard let report = try evaluateClassifier(classifier, config: experiment, dataset: dataset, outputPrefix: prefix, stop: .signals) else { return }
        try writeFileAtomically(try metricsJSON(report.metrics), to: metricsPath)
        print(report.text)
        print("metrics: \(metricsPath)")
    }
}

/// An experiment config with `--set` overrides; its errors are printed (every problem, with file and
/// line) and end the tool with status 2.
func loadExperiment(_ path: String, overrides: [String]) throws -> ExperimentConfig {
    do { return try loadConfig(path: path, overrides: overrides) } catch let e as ConfigErrors {
        printError(e.description)
        throw ExitCode(2)
    }
}

/// Runs the evaluation of trained models in `body`: a failure is one message and an exit status
/// (1, or 2 for bad data; a training error brings its own), and a stop (Ctrl-C, SIGTERM) ends every
/// process with 128 + signal after rank 0 says "stopped by SIGINT <whenStopped>".
func reportingEvaluationFailures(whenStopped: String, _ body: () throws -> Void) throws {
    do { try body() } catch let error as TrainingError {
        printError("dcn-eval: \(error)")
        throw ExitCode(error.exitCode)
    } catch let error as CheckpointError {
        printError("dcn-eval: \(error)")
        throw ExitCode(1)
    } catch let error as DatasetError {
        printError("dcn-eval: \(error)")
        throw ExitCode(2)
    } catch let stopped as Stopped {
        // Every process stops at the same batch; rank 0 says so.
        let request = StopRequest()
        request.request(stopped.signal)
        if ProcessGroup.world.isRoot { printError("dcn-eval: stopped by \(request.signalName) \(whenStopped)") }
        FileHandle.standardOutput.synchronizeFile()
        Foundation.exit(request.exitCode)
    }
}
