// dcn-export: a trained model in another format (issue 33). `onnx` writes the ONNX model;
// `check-weights` and `maps` are what scripts/check_onnx.py compares it with: a checkpoint of
// non-trivial seeded weights (no training needed) and our own backbone maps for given inputs.
import ArgumentParser
import DCNAnnotations
import DCNCommandLine
import DCNConfig
import DCNData
import DCNExport
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import Foundation

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcn-export",
        abstract: "Export a trained model: ONNX (checked by onnxruntime in scripts/check_onnx.py).",
        subcommands: [ONNXCommand.self, CheckWeightsCommand.self, MapsCommand.self])
}

extension ExportPart: ExpressibleByArgument {}

/// Prints to stderr.
func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// The config of `options` (errors printed with their line and column, exit status 2), with the
/// pretrained backbone left out: the checkpoint holds every weight.
func experimentConfig(_ options: ConfigOptions) throws -> ExperimentConfig {
    var experiment: ExperimentConfig
    do { experiment = try loadConfig(path: options.config, overrides: options.overrides) } catch let e as ConfigErrors {
        printError(e.description)
        throw ExitCode(2)
    }
    guard experiment.model.task == .detection else {
        throw ExportError("\(options.config) is not a detector (model.task: \(experiment.model.task.rawValue)); dcn-export exports detectors")
    }
    experiment.backbone.weights = nil
    return experiment
}

/// The detector of `config` with the weights of `checkpoint` (classes as the checkpoint records
/// them, else the config's count).
func loadDetector(_ experiment: ExperimentConfig, checkpoint: String) throws -> GeneralizedRCNN {
    let classes = try Checkpoint.classNames(path: checkpoint)?.count ?? defaultClassCount(experiment)
    let model = try buildModel(experiment, classes: classes)
    _ = try Checkpoint.load(path: checkpoint, into: model.parameters, optimizer: nil)
    return model
}

/// Refuses `--out` when it is the config, the checkpoint or a training run's file.
func checkOutput(_ out: String, config: String, checkpoint: String?, extra: [(String, String)] = []) throws {
    var read = ReadFiles()
    read.add(config, as: "the config given to --config")
    if let checkpoint { read.add(checkpoint, as: "the checkpoint given to --checkpoint") }
    for (path, role) in extra { read.add(path, as: role) }
    if let problem = outputProblem(out, read: read) { throw ValidationError("--out \(out): \(problem)") }
    if let problem = fileWriteProblem(out) { throw ValidationError("--out \(out): \(problem)") }
}

/// Why a file cannot be written at `path` (its folder is missing, or it is a folder), or nil.
func fileWriteProblem(_ path: String) -> String? {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return "is a folder; expected a file path" }
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
        return "its folder \(folder) does not exist; create it first"
    }
    return nil
}

struct ONNXCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx",
        abstract: "Write a trained model as ONNX (opset 19: Conv, DeformConv with mask, ...; no custom operator).",
        discussion: """
            --part backbone exports the backbone: input 'image' [batch, 3, height, width] (RGB in [0, 1] normalised \
            with ImageNet's mean and std, any height and width), outputs 'res4' and 'res5' (docs/export.md); --part rpn \
            adds the RPN head's outputs 'rpn_objectness_logits' and 'rpn_anchor_deltas'; --part proposals adds the proposals \
            of each image: 'proposals' [S, 4], 'proposal_logits' [S] and 'proposal_batch_index' [S] (anchors, top-k, decoding, \
            clipping to the input's size, NMS); --part detector adds the box head's detections: \
            'detection_boxes' [D, 4], 'detection_scores' [D], 'detection_labels' [D] (int64), 'detection_batch_index' [D], and for Mask R-CNN \
            'detection_masks' [D, M, M] (each detection's mask probabilities over its box, to paste into the image). \
            Batch norms are folded into the convolutions; group norm is built from InstanceNormalization; deformable \
            convolutions are DeformConv, with the modulation (sigmoid) as its mask input for mdconv; RoI pooling is \
            RoiAlign, MaxRoiPool, or for (m)dpool RoiAlign, the offset fcs and GridSample. The mimic branch trains only \
            and is left out.
            """)

    @OptionGroup var configOptions: ConfigOptions

    @OptionGroup var checkpointOptions: CheckpointOptions

    @Option(help: ArgumentHelp("The ONNX file to write (replaced atomically).", valueName: "file"))
    var out: String

    @Option(help: "What to export: \(ExportPart.allCases.map(\.rawValue).joined(separator: ", ")).")
    var part: ExportPart = .backbone

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if let problem = fileReadProblem(configOptions.config) { throw ValidationError("--config \(configOptions.config): \(problem); expected an experiment config (YAML)") }
        if let problem = fileReadProblem(checkpointOptions.checkpoint) { throw ValidationError("--checkpoint \(checkpointOptions.checkpoint): \(problem); expected a dcn-train checkpoint") }
        try checkOutput(out, config: configOptions.config, checkpoint: checkpointOptions.checkpoint)
    }

    func run() throws {
        threadOptions.apply()
        let experiment = try experimentConfig(configOptions)
        let model = try loadDetector(experiment, checkpoint: checkpointOptions.checkpoint)
        let onnx: Onnx_ModelProto
        onnx = try detectorModel(model, part: part, metadata: [("config", (configOptions.config as NSString).lastPathComponent),
                                                                ("checkpoint", (checkpointOptions.checkpoint as NSString).lastPathComponent)])
        let data = try serializedModel(onnx)
        try AtomicFile.write(data, to: out)
        print("dcn-export: wrote \(out) (\(part.rawValue): \(onnx.graph.node.count) nodes, \(onnx.graph.initializer.count) initializers, "
              + "\(String(format: "%.1f", Double(data.count) / 1e6)) MB)")
    }
}

struct CheckWeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-weights",
        abstract: "Write a checkpoint of seeded non-trivial weights for checking an export (no training).",
        discussion: """
            The config's model, freshly initialised with --seed, then every offset branch, norm and bias made non-zero \
            (offsets of about a pixel, norms that are not identities), so that an export with a wrong layout cannot \
            match by accident. The checkpoint is an ordinary dcn-train checkpoint at iteration 0.
            """)

    @OptionGroup var configOptions: ConfigOptions

    @Option(help: "The seed of the initialisation and of the changed weights.")
    var seed: UInt64 = 0

    @Option(help: ArgumentHelp("The checkpoint to write (.safetensors).", valueName: "file"))
    var out: String

    func validate() throws {
        if let problem = fileReadProblem(configOptions.config) { throw ValidationError("--config \(configOptions.config): \(problem); expected an experiment config (YAML)") }
        try checkOutput(out, config: configOptions.config, checkpoint: nil)
    }

    func run() throws {
        var experiment = try experimentConfig(configOptions)
        experiment.solver.seed = Int(seed % UInt64(Int32.max))
        let classNames = experiment.data.format == .synth ? syntheticClassNames : (1...defaultClassCount(experiment)).map { "class\($0)" }
        let model = try buildModel(experiment, classes: classNames.count)
        randomizeForExportCheck(model.parameters, seed: seed)
        let state = TrainingState(iteration: 0, rngState: [seed, 1, 2, 3], config: experiment.resolvedYAML(),
                                  classNames: classNames)
        try Checkpoint.save(parameters: model.parameters, optimizer: nil, state: state, to: out)
        print("dcn-export: wrote \(out) (\(model.parameters.all.count) tensors, seed \(seed))")
    }
}

struct MapsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maps",
        abstract: "Write the backbone's maps for given inputs (the reference an exported backbone is compared with).",
        discussion: """
            --inputs is a safetensors file of float32 tensors [N, 3, H, W] (normalised images, as the exported \
            model's 'image' input), any names; --out gets '<name>.res4', '<name>.res5', '<name>.rpn_objectness_logits' and \
            '<name>.rpn_anchor_deltas' for each (inference mode), '<name>.proposals' [S, 4] and \
            '<name>.detection_boxes', '_scores', '_labels' (the proposals and detections clipped to the tensor's size, image by \
            image, with '<name>.proposal_batch_index' and '<name>.detection_batch_index'), \
            and with a mask head '<name>.detection_masks' [D, M, M] (probabilities over each box) and \
            '<name>.detection_masks_pasted' [D, H, W] (pasted into the input's size at 0.5, 0 or 1, as dcn-detect pastes).
            """)

    @OptionGroup var configOptions: ConfigOptions

    @OptionGroup var checkpointOptions: CheckpointOptions

    @Option(help: ArgumentHelp("Input tensors (safetensors, float32 [1, 3, H, W]).", valueName: "file"))
    var inputs: String

    @Option(help: ArgumentHelp("The maps to write (safetensors).", valueName: "file"))
    var out: String

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        for (flag, path) in [("--config", configOptions.config), ("--checkpoint", checkpointOptions.checkpoint), ("--inputs", inputs)] {
            if let problem = fileReadProblem(path) { throw ValidationError("\(flag) \(path): \(problem)") }
        }
        try checkOutput(out, config: configOptions.config, checkpoint: checkpointOptions.checkpoint,
                        extra: [(inputs, "the inputs given to --inputs")])
    }

    func run() throws {
        threadOptions.apply()
        let experiment = try experimentConfig(configOptions)
        let model = try loadDetector(experiment, checkpoint: checkpointOptions.checkpoint)
        let file = try SafeTensorsFile(path: inputs)
        var maps: [String: Tensor] = [:]
        let ws = Workspace()
        for name in file.names {
            let x = try file.tensor(name)
            let (features, _) = try model.backbone.forward(x, training: false, ws)
            for stage in ["res4", "res5"] { maps["\(name).\(stage)"] = features[stage] }
            let rpn = try model.rpn.forward(features[model.rpn.inFeature]!, ws)
            maps["\(name).\(rpnLogitsName)"] = rpn.logits
            maps["\(name).\(rpnDeltasName)"] = rpn.deltas
            // Proposals and detections image by image, with each one's image in the batch (as float).
            let n = x.dim(0), sizes = [ImageSize](repeating: ImageSize(height: x.dim(2), width: x.dim(3)), count: n)
            let proposals = try model.rpn.proposals(rpn, imageSizes: sizes, training: false)
            let allBoxes = proposals.flatMap { $0 }
            maps["\(name).\(proposalsName)"] = allBoxes.isEmpty ? Tensor(zeros: [0, 4]) : allBoxes.tensor
            maps["\(name).\(proposalImagesName)"] = try Tensor(shape: [allBoxes.count],
                                                                data: proposals.enumerated().flatMap { i, p in p.map { _ in Float(i) } })
            let perImage = try model.detect(images: x, sizes: sizes, ws)
            let detections = perImage.flatMap { $0 }
            maps["\(name).\(detectionBoxesName)"] = detections.isEmpty ? Tensor(zeros: [0, 4]) : detections.map(\.box).tensor
            maps["\(name).\(detectionScoresName)"] = try Tensor(shape: [detections.count], data: detections.map(\.score))
            maps["\(name).\(detectionLabelsName)"] = try Tensor(shape: [detections.count], data: detections.map { Float($0.label) })
            maps["\(name).\(detectionImagesName)"] = try Tensor(shape: [detections.count],
                                                                 data: perImage.enumerated().flatMap { i, d in d.map { _ in Float(i) } })
            for case .mask(let m) in model.detectionAdditions {
                var masks: [Float] = [], pasted: [Float] = []
                for d in detections {
                    guard let mask = d.mask else { throw ExportError("\(name): a detection has no mask") }
                    masks += mask
                    pasted += try pasteMask(probabilities: mask, maskSize: m, box: MaskBox(x0: d.box.x1, y0: d.box.y1, x1: d.box.x2, y1: d.box.y2),
                                            imageHeight: x.dim(2), imageWidth: x.dim(3)).map(Float.init)
                }
                maps["\(name).\(detectionMasksName)"] = try Tensor(shape: [detections.count, m, m], data: masks)
                maps["\(name).\(detectionMasksName)_pasted"] = try Tensor(shape: [detections.count, x.dim(2), x.dim(3)], data: pasted)
            }
        }
        try SafeTensorsWriter.write(maps, to: out)
        print("dcn-export: wrote \(out) (res4, res5 and the RPN head's outputs of \(file.names.count) inputs)")
    }
}

ExportCommand.main()
