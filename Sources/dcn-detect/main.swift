// dcn-detect: a trained detector on any images (files, folders, list files): COCO-format
// detections with the file names, a picture per image, and optionally one PNG per mask (issue 33).
import ArgumentParser
import DCNAnnotations
import DCNCommandLine
import DCNConfig
import DCNData
import DCNDistributed
import DCNInference
import DCNRun
import DCNTensor
import Foundation

/// The exit status when the run finished but some inputs could not be read (they are reported on
/// standard error and listed under "failed" in images.json; the detections of the others are written).
let someImagesFailed: Int32 = 3

struct DetectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcn-detect",
        abstract: "Run a trained detector on images: COCO-format detections, a picture per image, mask PNGs.",
        discussion: """
            INPUT is an image file (JPEG or PNG, whatever its name) or a folder, searched recursively for \
            .jpg, .jpeg and .png files (sorted by their path inside it; hidden files and the --out folder skipped). \
            --list FILE adds the paths of a list file (one per line, relative to the list's folder; # starts a comment). \
            EXIF orientation is applied; grayscale, palette, 16-bit and CMYK images are converted to RGB.

            Writes in --out: detections.json (COCO results with a file_name per detection; image ids 1, 2, ... in \
            input order, or those of --annotations matched by file_name), images.json (each image's id, file name, \
            size and picture; the categories; the images that failed), pictures/<name>.png (the detections scoring \
            at least --score) and, with --mask-pngs, masks/<name>_<k>.png.

            A file that cannot be read (corrupt, truncated, not an image, missing) is reported on standard error \
            with its path and the reason and skipped; the others finish. Exit status: 0, or 3 when some images \
            could not be read (the rest are written), 1 for any other error (2 for a bad config), 128 + signal when stopped.

            --scales and --flip set the config's test section as in dcn-eval model; batches are the config's \
            data.images_per_batch, as there. Under mpirun (mpirun -np N dcn-detect ...) each process runs its share \
            of the images and rank 0 writes the files: the same files as one process.
            """)

    @OptionGroup var configOptions: ConfigOptions

    @OptionGroup var checkpointOptions: CheckpointOptions

    @Argument(help: ArgumentHelp("Image files or folders of images.", valueName: "input"))
    var inputs: [String] = []

    @Option(help: ArgumentHelp("A file listing image paths, one per line (repeatable).", valueName: "file"))
    var list: [String] = []

    @Option(help: ArgumentHelp("The output folder (created if missing).", valueName: "dir"))
    var out: String

    @Flag(help: "Replace the files of an earlier dcn-detect run in --out (detections.json, images.json, pictures/, masks/); nothing else is touched.")
    var force = false

    @Option(help: "Draw (and write masks of) the detections scoring at least this (default: the config's output.draw_score_threshold). detections.json holds every detection the model keeps (roi_head.score_threshold).")
    var score: Float?

    @Flag(name: .customLong("mask-pngs"), help: "Also write one PNG (255 inside, 0 outside) per instance scoring at least --score (Mask R-CNN configs).")
    var maskPNGs = false

    @Option(help: ArgumentHelp("A COCO annotation file of these images: image ids and category ids are taken from it (images matched by file_name, the end of their path; categories by name).",
                               valueName: "file"))
    var annotations: String?

    @OptionGroup var testViewOptions: TestViewOptions

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if inputs.isEmpty && list.isEmpty { throw ValidationError("give images: files or folders, or --list FILE") }
        if let problem = fileReadProblem(configOptions.config) {
            throw ValidationError("--config \(configOptions.config): \(problem); expected an experiment config (YAML)")
        }
        if let problem = fileReadProblem(checkpointOptions.checkpoint) {
            throw ValidationError("--checkpoint \(checkpointOptions.checkpoint): \(problem); expected a dcn-train checkpoint")
        }
        for file in list {
            if let problem = fileReadProblem(file) { throw ValidationError("--list \(file): \(problem); expected a file of image paths, one per line") }
        }
        if let annotations, let problem = fileReadProblem(annotations) {
            throw ValidationError("--annotations \(annotations): \(problem); expected a COCO annotation file (instances_*.json)")
        }
        if let score, !(score >= 0 && score <= 1) { throw ValidationError("--score \(score): expected a score from 0 to 1") }
        if let problem = folderCreateProblem(out) { throw ValidationError("--out \(out): \(problem); expected a folder (created if missing)") }
    }

    func run() throws {
        threadOptions.apply()
        System.keepFreedMemoryForReuse()
        let group = ProcessGroup.world
        var experiment: ExperimentConfig
        do { experiment = try loadConfig(path: configOptions.config, overrides: configOptions.overrides + testViewOptions.overrides) } catch let e as ConfigErrors {
            printError(e.description)
            throw ExitCode(2)
        }
        guard experiment.model.task == .detection else {
            throw DetectError("\(configOptions.config) is a classifier (model.task: classification); dcn-detect runs detectors")
        }
        // The checkpoint holds every weight: the pretrained backbone is not read.
        experiment.backbone.weights = nil

        let found = try collectDetectInputs(arguments: inputs, lists: list, skipping: out)
        guard !found.isEmpty else {
            throw DetectError("no images in \((inputs + list).joined(separator: ", ")): a folder contributes its .jpg, .jpeg and .png files, a list file its lines")
        }

        // Never write onto what is read.
        var read = checkpointInputs(config: configOptions.config, checkpoint: checkpointOptions.checkpoint)
        for file in list { read.add(file, as: "the list given to --list") }
        if let annotations { read.add(annotations, as: "the annotations given to --annotations") }
        for input in found { read.add(input.path, as: "the input image \(input.path)") }
        if let problem = detectFolderProblem(out, inputs: found, read: read) { throw DetectError("--out \(out): \(problem)") }

        // Rank 0 owns the folder (before the model is read: a refused folder fails at once).
        let lock = group.isRoot ? try prepareDetectFolder(out, force: force) : nil
        defer { lock?.release() }

        // Classes from the checkpoint (the config's data when it records none); ids from --annotations.
        let classNames = try modelClassNames(experiment)
        var imageIDs = Array(1...found.count)
        var categoryIDs = Array(1...classNames.count)
        if let annotations {
            let file = try COCOLeanFile.load(path: annotations, keepPolygons: false)
            imageIDs = try annotationImageIDs(found, images: file.images, annotations: annotations)
            categoryIDs = try annotationCategoryIDs(classNames: classNames, categories: file.categories, annotations: annotations)
        }
        let model = try buildModel(experiment, classes: classNames.count)
        _ = try Checkpoint.load(path: checkpointOptions.checkpoint, into: model.parameters, optimizer: nil)

        // Every process checks its share of the images.
        let checked = try checkDetectInputs(found, group: group)
        if group.isRoot {
            for (i, reason) in checked.errors.sorted(by: { $0.key < $1.key }) {
                printError("dcn-detect: \(found[i].path): \(reason) (skipped)")
            }
        }
        StopRequest.installSignalHandlers()
        let request = DetectRequest(inputs: found, checked: checked, imageIDs: imageIDs, classNames: classNames, categoryIDs: categoryIDs,
                                    folder: out, scoreThreshold: score ?? Float(experiment.output.drawScoreThreshold), maskPNGs: maskPNGs)
        let progress = group.isRoot ? DetectProgress() : nil
        let summary: DetectSummary?
        do {
            summary = try runDetection(model, config: experiment, request: request, stop: .signals, group: group,
                                       progress: progress.map { p in { p.report(done: $0, total: $1) } })
        } catch let stopped as Stopped {
            let stop = StopRequest()
            stop.request(stopped.signal)
            if group.isRoot { printError("\ndcn-detect: stopped by \(stop.signalName); detections.json was not written") }
            FileHandle.standardOutput.synchronizeFile()
            Foundation.exit(stop.exitCode)
        }
        guard let summary else { return }
        print("\(summary.images) image\(summary.images == 1 ? "" : "s"), \(summary.detections) detections: \(out)/\(DetectFiles.detections)")
        print("pictures: \(summary.pictures) in \(out)/\(DetectFiles.pictures)" + (maskPNGs ? "; masks: \(summary.masks) in \(out)/\(DetectFiles.masks)" : ""))
        if maskPNGs && model.detectionAdditions.isEmpty { printError("warning: --mask-pngs: \(configOptions.config) has no mask head; no mask was written") }
        if summary.failed > 0 {
            printError("dcn-detect: \(summary.failed) of \(found.count) images could not be read (listed under \"failed\" in \(out)/\(DetectFiles.images))")
            throw ExitCode(someImagesFailed)
        }
    }

    /// The model's classes: the checkpoint's, or (older checkpoints) the config's evaluation or
    /// training split's.
    func modelClassNames(_ experiment: ExperimentConfig) throws -> [String] {
        if let names = try Checkpoint.classNames(path: checkpointOptions.checkpoint), !names.isEmpty { return names }
        for train in [false, true] {
            if let dataset = try? loadDataset(experiment, train: train), !dataset.classNames.isEmpty { return dataset.classNames }
        }
        throw DetectError("\(checkpointOptions.checkpoint) records no class names (an older checkpoint), and the config's data cannot be read "
                          + "to name them: make the config's data available")
    }
}

/// Prints to stderr.
func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

do {
    var command = try DetectCommand.parseAsRoot()
    try command.run()
} catch let error where error is DetectError || error is FileError || error is JSONReadError || error is COCOFormatError
    || error is ImageError || error is CheckpointError || error is TrainingError || error is FileWriteError {
    printError("dcn-detect: error: \(error)")
    ProcessGroup.world.exit(1)
} catch let code as ExitCode where code.rawValue != 0 && ProcessGroup.world.isDistributed {
    // Under mpirun a failing process takes the others with it; one with some unreadable images ends normally.
    if code.rawValue == someImagesFailed { Foundation.exit(someImagesFailed) }
    ProcessGroup.world.exit(code.rawValue)
} catch {
    DetectCommand.exit(withError: error)
}
