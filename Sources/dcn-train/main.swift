// dcn-train: trains a DCNv2 detector from a YAML config, or prints its parameters and FLOPs.
import ArgumentParser
import DCNAnnotations
import DCNCommandLine
import DCNConfig
import DCNDistributed
import DCNModels
import DCNRun
import DCNTensor
import DCNTraining
import Foundation

@main
struct DCNTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcn-train",
        abstract: "Train a Deformable ConvNets v2 Faster R-CNN on the CPU.",
        discussion: """
            Examples:
              dcn-train --config configs/demo.yaml
              dcn-train --config configs/coco/faster_rcnn_r50_mdconv_c3-c5_mdpool.yaml --set solver.base_lr=0.01
              dcn-train --config configs/demo.yaml --summary --json
              mpirun -np 2 dcn-train --config configs/demo.yaml   (data-parallel: each process trains on
                half of every batch; data.images_per_batch is the global batch)
            Config errors are reported as `file: key.path (line L, column C): message` with exit status 2.
            """)

    @OptionGroup var configOptions: ConfigOptions

    @Option(help: "Continue from this checkpoint (or an output folder's `latest`).")
    var resume: String?

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Print parameters and FLOPs per component at the configured input size, then exit.")
    var summary = false

    @Flag(help: "With --summary: print JSON on stdout.")
    var json = false

    @Flag(help: "Replace the run an output folder holds: its checkpoints, latest, config.yaml, metrics.jsonl, training_curves.svg and eval_* files are removed first (nothing else).")
    var force = false

    func validate() throws {
        if json && !summary { throw ValidationError("--json goes with --summary") }
    }

    func run() throws {
        lineBufferStandardOutput()
        ignoreBrokenPipes()
        System.keepFreedMemoryForReuse()
        let group = summary ? nil : ProcessGroup.world
        threadOptions.apply()
        do {
            try trainOrSummarize(group ?? .single)
        } catch let errors as ConfigErrors {
            printToStandardError(errors.description)
            group?.exit(2)
            throw ExitCode(2)
        } catch {
            let training = error as? TrainingError
            let code = training?.exitCode ?? 1
            guard let group, group.isDistributed else {
                printToStandardError("dcn-train: \(error)")
                throw ExitCode(code)
            }
            // An outcome every process reached together (a stop they agreed on) is reported by rank 0
            // and every process exits normally; any other error aborts the whole job, naming the rank.
            if training?.everyProcess == true {
                if group.isRoot { printToStandardError("dcn-train: \(error)") }
                throw ExitCode(code)
            }
            printToStandardError("dcn-train (\(group.name)): \(error)")
            group.exit(code)
        }
    }

    func trainOrSummarize(_ group: ProcessGroup) throws {
        let config = configOptions.config
        if let problem = fileProblem(config) {
            throw TrainingError("--config \(config) \(problem); expected a YAML config file", exitCode: 2)
        }
        let experiment = try loadConfig(path: config, overrides: configOptions.overrides)
        if summary && experiment.model.task == .classification {
            let classifier = try ImageClassifier(spec: classifierSpec(experiment, classes: experiment.model.classes ?? 1000))
            let s = try ModelSummary(classifier: classifier, size: experiment.data.cropSize)
            print(json ? s.json : s.table)
            return
        }
        if summary && experiment.model.task == .segmentation {
            let segmenter = try SemanticSegmenter(spec: segmenterSpec(experiment, classes: defaultClassCount(experiment)))
            let size = summaryInputSize(experiment)
            let s = try ModelSummary(segmenter: segmenter, height: size.height, width: size.width)
            print(json ? s.json : s.table)
            return
        }
        if summary {
            let classes = defaultClassCount(experiment)
            let model = try GeneralizedRCNN(spec: detectorSpec(experiment, classes: classes))
            let size = summaryInputSize(experiment)
            let s = try ModelSummary(model: model, height: size.height, width: size.width)
            print(json ? s.json : s.table)
            return
        }
        // A run writes the resolved config as <output.dir>/config.yaml: starting a new run from
        // that very file would replace the file it reads (resuming that run rewrites it unchanged).
        var read = ReadFiles()
        read.add(config, as: "the config given to --config")
        let runConfig = experiment.outputDirectory + "/" + RunFiles.config
        if resume == nil, read.overwriteProblem(runConfig) != nil {
            throw TrainingError("output.dir \(experiment.outputDirectory): this run would replace \(runConfig), the config it reads (--config \(config)); "
                                + "copy the config elsewhere, or --resume that run", exitCode: 2)
        }
        StopRequest.installSignalHandlers()
        try train(config: experiment, resume: resume, force: force, stop: .signals, group: group)
    }
}
