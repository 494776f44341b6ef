// dcn-eval model: inference of a trained checkpoint on the config's evaluation split, COCO-format
// results, and the metrics (COCO for COCO/synthetic data, VOC AP50/AP70 for VOC data).
import ArgumentParser
import DCNConfig
import DCNEval
import DCNModels
import DCNTensor
import DCNTraining
import Foundation

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Evaluate a trained checkpoint on the config's evaluation split.")

    @Option(help: "The experiment config the checkpoint was trained with (YAML).")
    var config: String

    @Option(help: "A dcn-train checkpoint (.safetensors, or an output folder's `latest`).")
    var checkpoint: String

    @Option(name: .customLong("set"), help: "Override a config value (repeatable), e.g. data.test_min_size=600.")
    var overrides: [String] = []

    @Option(help: "Write the metrics as JSON here.")
    var json: String?

    @Option(help: "Write the COCO-format detections here (default: next to the checkpoint).")
    var results: String?

    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        try requireReadableFile(checkpoint, "--checkpoint", "a dcn-train checkpoint")
        if let json { try requireWritableParent(json, "--json") }
    }

    func run() throws {
        Threads.set(threads.threads)
        let experiment: ExperimentConfig
        do { experiment = try loadConfig(path: config, overrides: overrides) } catch let e as ConfigErrors {
            printError(e.description)
            throw ExitCode(2)
        }
        do {
            guard let dataset = try loadDataset(experiment, train: false) else {
                throw ToolError("\(config): the config names no evaluation split")
            }
            let model = try buildModel(experiment, classes: dataset.classNames.count)
            _ = try Checkpoint.load(path: checkpoint, into: model.parameters, optimizer: nil)
            let prefix = results.map { String($0.dropLast($0.hasSuffix(".json") ? 5 : 0)) }
                ?? (URL(fileURLWithPath: checkpoint).deletingLastPathComponent().path + "/eval_model")
            let report = try evaluateModel(model, config: experiment, dataset: dataset, outputPrefix: prefix)
            print(report.text)
            print("detections: \(prefix)_results.json")
            if let json {
                try writeFileAtomically(try metricsJSON(report.metrics), to: json)
            }
        } catch let error as TrainingError {
            printError("dcn-eval: \(error)")
            throw ExitCode(error.exitCode)
        } catch let error as CheckpointError {
            printError("dcn-eval: \(error)")
            throw ExitCode(1)
        }
    }
}
