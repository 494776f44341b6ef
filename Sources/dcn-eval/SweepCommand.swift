// dcn-eval sweep: trained detectors evaluated at several shorter sides of the test image (the
// paper's Figure 4), optionally with multi-scale testing (Table 5): a Markdown table and an SVG chart.
import ArgumentParser
import DCNCommandLine
import DCNAnnotations
import DCNConfig
import DCNDistributed
import DCNEval
import DCNInference
import DCNRun
import DCNTensor
import Foundation

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Evaluate checkpoints at several test sizes: AP against the shorter side (table and SVG chart).",
        discussion: """
            Each checkpoint is evaluated on its config's evaluation split once per shorter side (the longest \
            side keeps the config's test aspect, e.g. 1333/800), and with --multi-scale also with those scales \
            merged (see test.scales in configs/README.md). Writes OUT.md, OUT.svg and every evaluation's \
            detections and metrics in OUT/<label>/.
            """)

    @Option(help: ArgumentHelp("The experiment configs, comma-separated, one per checkpoint.", valueName: "yaml,..."))
    var configs: String

    @Option(help: ArgumentHelp("The checkpoints, comma-separated, in the order of --configs.", valueName: "safetensors,..."))
    var checkpoints: String

    @Option(help: ArgumentHelp("Names of the models in the table and chart (default: each config's model.name).", valueName: "name,..."))
    var labels: String?

    @Option(help: ArgumentHelp("Shorter sides of the test image, comma-separated, e.g. 400,600,800,1000,1200,1400.", valueName: "sides"))
    var sizes: String

    @Option(name: .customLong("multi-scale"), help: ArgumentHelp("Also evaluate with these scales merged (test.scales), e.g. 480,576,688,864,1200,1400.", valueName: "sides"))
    var multiScale: String?

    @Flag(help: "With --multi-scale, also merge the flipped images (test.flip).")
    var flip = false

    @OptionGroup var overrideOptions: OverrideOptions

    @Option(help: "Output prefix: OUT.md, OUT.svg and the folder OUT/.")
    var out = "results/resolution_sweep"

    @OptionGroup var threadOptions: ThreadOptions

    var configList: [String] { configs.split(separator: ",").map(String.init) }
    var checkpointList: [String] { checkpoints.split(separator: ",").map(String.init) }

    func validate() throws {
        for c in configList { try requireReadableFile(c, "--configs", "an experiment config (YAML)") }
        for k in checkpointList { try requireReadableFile(k, "--checkpoints", "a dcn-train checkpoint") }
        guard !configList.isEmpty, configList.count == checkpointList.count else {
            throw ValidationError("--configs names \(configList.count) configs and --checkpoints \(checkpointList.count) checkpoints; give one checkpoint per config")
        }
        if let labels, labels.split(separator: ",").count != configList.count {
            throw ValidationError("--labels names \(labels.split(separator: ",").count) models for \(configList.count) configs")
        }
        _ = try shorterSides(sizes, "--sizes")
        if let multiScale { _ = try shorterSides(multiScale, "--multi-scale") }
        if flip && multiScale == nil { throw ValidationError("--flip applies to the multi-scale evaluation: give --multi-scale too") }
        try requireWritableFile(out + ".md", "--out", "an output prefix")
        var read = ReadFiles()
        for c in configList { read.add(c, as: "the config \(c) given to --configs") }
        for k in checkpointList { read.add(k, as: "the checkpoint \(k) given to --checkpoints") }
        for output in [out + ".md", out + ".svg"] { try requireNotRead(output, "--out", read) }
    }

    func run() throws {
        lineBufferStandardOutput()  // one progress line per evaluation, as it ends
        threadOptions.apply()
        var models: [SweepModel] = []
        for (k, (path, checkpoint)) in zip(configList, checkpointList).enumerated() {
            let config = try loadExperiment(path, overrides: overrideOptions.overrides)
            let label = labels.map { String($0.split(separator: ",")[k]) } ?? config.model.name
            models.append(SweepModel(label: label, config: config, checkpoint: checkpoint))
        }
        let multi = try multiScale.map { try shorterSides($0, "--multi-scale") }
        try reportingEvaluationFailures(whenStopped: "before the sweep finished; the table and chart were not written") {
            StopRequest.installSignalHandlers()
            guard let results = try resolutionSweep(models, sizes: try shorterSides(sizes, "--sizes"), multiScale: multi, flip: flip, folder: out,
                                                    load: { m, classes in
                                                        let model = try buildModel(m.config, classes: classes)
                                                        _ = try Checkpoint.load(path: m.checkpoint, into: model.parameters, optimizer: nil)
                                                        return model
                                                    }, stop: .signals) else { return }
            let markdown = sweepMarkdown(results, multiScale: multi, flip: flip)
            try writeFileAtomically(Data(markdown.utf8), to: out + ".md")
            try writeFileAtomically(Data(sweepSVG(results).utf8), to: out + ".svg")
            print(markdown)
            print("wrote \(out).md and \(out).svg")
        }
    }
}
