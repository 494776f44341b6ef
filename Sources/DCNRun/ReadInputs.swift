// What an evaluation of a trained model reads, so that none of its outputs replaces it (see
// DCNAnnotations/ReadFiles.swift).
import DCNAnnotations
import DCNConfig
import DCNData
import Foundation

/// The files read when `checkpoint` of `config` is loaded.
public func checkpointInputs(config: String, checkpoint: String) -> ReadFiles {
    var read = ReadFiles()
    read.add(config, as: "the config given to --config")
    read.add(checkpoint, as: "the checkpoint given to --checkpoint")
    return read
}

/// Why a tool must not write `output`, or nil: it is one of the files `read`, or a file of a
/// training run (a checkpoint, `latest`, config.yaml, metrics.jsonl, ... in a folder a run trains
/// into: one holding `.lock` or `latest`), which only dcn-train writes. A run's `eval_*` files are
/// evaluations' outputs and may be replaced.
public func outputProblem(_ output: String, read: ReadFiles) -> String? {
    if let problem = read.overwriteProblem(output) { return problem }
    let url = URL(fileURLWithPath: output)
    let folder = url.deletingLastPathComponent().path, name = url.lastPathComponent
    var st = stat()
    let isRunFolder = [RunFiles.lock, RunFiles.latest].contains { lstat(folder + "/" + $0, &st) == 0 }
    guard isRunFolder, RunFiles.isRunFile(name), !name.hasPrefix("eval_"), lstat(output, &st) == 0 else { return nil }
    return "is the file \(name) of the training run in \(folder), which only dcn-train writes: give another path"
}

/// `checkpointInputs` and the evaluation split's annotation files and images.
public func evaluationInputs(config: String, checkpoint: String, experiment: ExperimentConfig, dataset: Dataset?) -> ReadFiles {
    var read = checkpointInputs(config: config, checkpoint: checkpoint)
    if let annotations = try? cocoPaths(experiment, train: false)?.annotations {
        read.add(annotations, as: "the evaluation split's annotations")
    }
    if experiment.data.format == .voc, let split = try? vocSplit(experiment, experiment.data.valSplit) {
        read.add(split.devkit + "/ImageSets/Main/\(split.split).txt", as: "the evaluation split's image list")
    }
    if experiment.data.format == .vid, let list = try? vidLists(experiment, train: false).lists.first {
        read.add(list.path, as: "the evaluation split's frame list (data.val_list)")
    }
    for image in dataset?.images ?? [] {
        read.add(image.path, as: "the image \(image.name) of the evaluation split")
        if experiment.data.format == .voc {
            // JPEGImages/<id>.jpg -> Annotations/<id>.xml of the same devkit.
            let devkit = URL(fileURLWithPath: image.path).deletingLastPathComponent().deletingLastPathComponent().path
            read.add(vocAnnotationPath(devkit: devkit, imageID: image.name), as: "the annotation of image \(image.name)")
        }
        if experiment.data.format == .vid, let root = experiment.data.root {
            // Data/VID/<path>.JPEG -> Annotations/VID/<path>.xml (the image's name is VID/<path>).
            read.add("\(root)/Annotations/\(image.name).xml", as: "the annotation of frame \(image.name)")
        }
    }
    return read
}
