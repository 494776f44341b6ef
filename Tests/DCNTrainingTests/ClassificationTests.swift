// Classification (Table 6): the configs' parameter differences, training and evaluation of an
// ImageFolder tree of JPEGs end to end.
import DCNConfig
import DCNInference
import DCNModels
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

/// Table 6's parameter differences (M) from each architecture's regular network: DCNv1 (dconv in
/// res5) and DCNv2 (mdconv in res3-res5).
@Test(arguments: [("resnet50", 0.2, 0.8), ("resnet101", 0.3, 1.9), ("resnext101_32x4d", 0.5, 3.9)])
func classificationRowsHaveTable6ParameterDifferences(arch: String, dcnv1: Double, dcnv2: Double) throws {
    func parameters(_ method: String) throws -> (total: Double, flops: Double) {
        let config = try loadConfig(path: repositoryPath("configs/imagenet/\(arch)_\(method).yaml"))
        #expect(config.model.task == .classification && config.data.cropSize == 224)
        let s = try ModelSummary(classifier: try ImageClassifier(spec: classifierSpec(config, classes: 1000)), size: 224)
        return (Double(s.parametersTotal) / 1e6, Double(s.multiplyAddsTotal) / 1e9)
    }
    let regular = try parameters("regular"), v1 = try parameters("dcnv1"), v2 = try parameters("dcnv2")
    #expect(abs(v1.total - regular.total - dcnv1) <= 0.15, "\(arch) DCNv1: +\(v1.total - regular.total) M")
    #expect(abs(v2.total - regular.total - dcnv2) <= 0.15, "\(arch) DCNv2: +\(v2.total - regular.total) M")
    // torchvision's counts (R-50 25.56 M, 4.09 GMAC at 224), about 1 M below the paper's absolute ones.
    if arch == "resnet50" { #expect(abs(regular.total - 25.557) < 0.001 && abs(regular.flops - 4.09) < 0.01) }
}

/// Data settings for the fixture ImageFolder of JPEGs (3 classes, 40-50 px images): 32 px crops, batches of 4.
let fixtureImageFolderOverrides = [
    "data.root=" + URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/classification/imagefolder").path,
    "data.crop_size=32", "data.resize_size=36", "data.images_per_batch=4", "data.loader_threads=1",
]

/// The ImageFolder tree of JPEGs in the fixtures: a tiny DCNv2 classifier trains with evaluations
/// during the run, writes the class index, and its checkpoint evaluates to the same numbers.
@Test func imageFolderJPEGsTrainAndEvaluateEndToEnd() throws {
    let dir = temporaryDirectory("classification")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = try loadConfig(path: repositoryPath("configs/imagenet/resnet50_dcnv2.yaml"), overrides: fixtureImageFolderOverrides + [
        "backbone.layers=[1,1,1,1]", "backbone.stem_width=8", "backbone.stage_planes=[8,8,16,16]", "solver.max_iter=30",
        "solver.warmup_iters=3", "solver.eval_period=15", "solver.checkpoint_period=15", "solver.base_lr=0.05",
        "output.log_period=5", "output.dir=\(dir)/out",
    ])
    try Threads.with(1) { try train(config: config, resume: nil, force: false) }
    let classes = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/out/\(RunFiles.classIndex)"))) as? [String]
    #expect(classes == ["bar", "cross", "disc"])
    let log = try String(contentsOfFile: "\(dir)/out/\(RunFiles.metrics)", encoding: .utf8).split(separator: "\n")
        .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    let evaluations = log.compactMap { $0["eval"] as? [String: Double] }
    #expect(evaluations.count == 2 && evaluations.allSatisfy { $0["top1"] != nil && $0["top5"] == 100 }, "\(evaluations)")
    let losses = log.compactMap { ($0["losses"] as? [String: Double])?["cls"] }
    #expect(losses.count == 7 && losses.allSatisfy { $0.isFinite })  // iterations 1, 5, 10, ..., 30
    // The final checkpoint, evaluated again, gives the numbers of the run's last evaluation.
    let val = try loadDataset(config, train: false)!
    #expect(val.images.count == 6)
    let classifier = try buildClassifier(config, classes: 3)
    _ = try Checkpoint.load(path: "\(dir)/out/\(RunFiles.finalCheckpoint)", into: classifier.parameters, optimizer: nil)
    let report = try Threads.with(1) { try evaluateClassifier(classifier, config: config, dataset: val, outputPrefix: "\(dir)/again") }
    let again = report.map { $0.metrics.map(\.value) }
    #expect(again == [evaluations[1]["top1"]!, evaluations[1]["top5"]!])
}

/// Issue 29, defect 3: the validation split must have the training split's class folders (a label
/// is a folder's place among them), checked at start with the folder that differs named, and
/// `dcn-eval model` checks it against the checkpoint's classes. An extra val folder used to crash
/// the evaluation (index out of range), a missing one to shift every label silently, and dcn-eval
/// called the mismatch "a different architecture".
@Test func classificationSplitsMustHaveTheSameClassFolders() throws {
    let dir = temporaryDirectory("class-folders")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let fixture = String(fixtureImageFolderOverrides[0].dropFirst("data.root=".count))
    let root = dir + "/images"
    try FileManager.default.copyItem(atPath: fixture, toPath: root)
    let configPath = repositoryPath("configs/imagenet/resnet50_dcnv2.yaml")
    let overrides = fixtureImageFolderOverrides + [
        "data.root=\(root)", "backbone.layers=[1,1,1,1]", "backbone.stem_width=8", "backbone.stage_planes=[8,8,16,16]",
        "solver.max_iter=2", "solver.warmup_iters=1", "solver.eval_period=1", "output.dir=\(dir)/out",
    ]
    let arguments = ["--config", configPath, "--threads", "1"] + overrides.flatMap { ["--set", $0] }
    // An extra val folder (in a child process: the old code trapped).
    try FileManager.default.copyItem(atPath: root + "/val/disc", toPath: root + "/val/extra")
    let extra = try ToolRun.run("dcn-train", arguments, ranks: nil, folder: dir, name: "extra", seconds: 120)
    #expect(extra.process.terminationStatus == 2)
    #expect(extra.errors.contains("\(root)/val/extra: an extra class folder; expected exactly the class folders of the training split "
                                  + "\(root)/train (bar, cross, disc)"), "\(extra.errors)")
    #expect(!folderNames(dir + "/out").contains { RunFiles.isRunFile($0) })
    // A missing val folder.
    try FileManager.default.removeItem(atPath: root + "/val/extra")
    try FileManager.default.removeItem(atPath: root + "/val/cross")
    let config = try loadConfig(path: configPath, overrides: overrides)
    expectTrainingError(2, ["\(root)/val: no folder for the class 'cross'", "the training split \(root)/train"]) {
        try train(config: config, resume: nil, force: false)
    }
    // dcn-eval model: against the checkpoint's classes, which it records.
    let checkpoint = dir + "/classifier.safetensors"
    let classifier = try buildClassifier(config, classes: 3)
    try Checkpoint.save(parameters: classifier.parameters, optimizer: nil,
                        state: TrainingState(iteration: 0, rngState: [1, 2, 3, 4], config: "", classNames: ["bar", "cross", "disc"]), to: checkpoint)
    // A resume: the training split against the checkpoint's classes.
    let other = dir + "/other-classes.safetensors"
    try Checkpoint.save(parameters: classifier.parameters, optimizer: nil,
                        state: TrainingState(iteration: 0, rngState: [1, 2, 3, 4], config: "", classNames: ["bar", "cross", "disc", "ring"]), to: other)
    expectTrainingError(2, ["\(root)/train: no folder for the class 'ring'", "the checkpoint \(other)"]) {
        try train(config: config, resume: other, force: false)
    }
    let evalArguments = ["model", "--config", configPath, "--checkpoint", checkpoint, "--threads", "1"] + overrides.flatMap { ["--set", $0] }
    let missing = try ToolRun.run("dcn-eval", evalArguments, ranks: nil, folder: dir, name: "eval-missing", seconds: 120)
    #expect(missing.process.terminationStatus == 2)
    #expect(missing.errors.contains("\(root)/val: no folder for the class 'cross'") && missing.errors.contains("the checkpoint \(checkpoint)")
            && !missing.errors.contains("different architecture"), "\(missing.errors)")
    // A checkpoint from before the classes were recorded: those of the classes.json beside it.
    try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
    try Checkpoint.save(parameters: classifier.parameters, optimizer: nil, state: TrainingState(iteration: 0, rngState: [1, 2, 3, 4], config: ""),
                        to: dir + "/run/model_final.safetensors")
    try JSONSerialization.data(withJSONObject: ["bar", "cross", "disc"]).write(to: URL(fileURLWithPath: dir + "/run/" + RunFiles.classIndex))
    #expect(try Checkpoint.classNames(path: dir + "/run/model_final.safetensors") == ["bar", "cross", "disc"])
    #expect(try Checkpoint.classNames(path: checkpoint) == ["bar", "cross", "disc"])
    try FileManager.default.copyItem(atPath: fixture + "/val/cross", toPath: root + "/val/cross")
    let matching = try ToolRun.run("dcn-eval", evalArguments, ranks: nil, folder: dir, name: "eval", seconds: 120)
    #expect(matching.process.terminationStatus == 0, "\(matching.errors)")
    #expect(matching.output.contains("(6 images, 3 classes)"), "\(matching.output)")
}

/// Table 7's pretraining: a detector whose backbone starts from a dcn-train classification
/// checkpoint, with its offset and modulation branches (pretrained_offsets) or with them at zero.
@Test func detectorsStartFromAClassificationCheckpoint() throws {
    let dir = temporaryDirectory("pretraining")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let classifier = try loadConfig(path: repositoryPath("configs/synth_cls/dcnv2.yaml"), overrides: fixtureImageFolderOverrides + [
        "solver.max_iter=3", "solver.warmup_iters=1", "solver.eval_period=0", "output.dir=\(dir)/cls",
    ])
    try Threads.with(1) { try train(config: classifier, resume: nil, force: false) }
    let checkpoint = "\(dir)/cls/\(RunFiles.finalCheckpoint)"
    let file = try SafeTensorsFile(path: checkpoint)
    func detector(_ row: String, _ extra: [String]) throws -> (GeneralizedRCNN, String) {
        let config = try loadConfig(path: repositoryPath("configs/synth/faster_rcnn_r50_\(row).yaml"),
                                    overrides: ["backbone.weights=\(checkpoint)", "backbone.weights_prefix=model."] + extra)
        var log = ""
        let model = try buildModel(config, classes: 6) { log += $0 }
        return (model, log)
    }
    func value(_ model: GeneralizedRCNN, _ name: String) -> [Float] { model.parameters.all.first { $0.name == "backbone." + name }!.value.data }
    let offset = "layer3.0.conv2_offset.weight", conv = "layer3.0.conv2.weight"
    // DCNv2 with its pretrained offsets: every backbone tensor comes from the checkpoint; the classifier is skipped.
    let (carried, log) = try detector("mdconv_c3-c5_mdpool", [])
    #expect(value(carried, offset) == (try file.tensor("model." + offset)).data && value(carried, offset).contains { $0 != 0 })
    #expect(value(carried, conv) == (try file.tensor("model." + conv)).data)
    #expect(log.contains("loaded") && log.contains("skipped in the file 2 (model.fc.bias, model.fc.weight)") && !log.contains("re-initialised"), "\(log)")
    // "none": the same checkpoint with the offset branches back at zero.
    let (zeroed, log2) = try detector("mdconv_c3-c5_mdpool", ["backbone.pretrained_offsets=false"])
    #expect(value(zeroed, offset).allSatisfy { $0 == 0 } && value(zeroed, conv) == value(carried, conv))
    #expect(log2.contains("re-initialised as asked 6"), "\(log2)")
    // A regular detector takes the convolutions and skips the offset branches.
    let (regular, log3) = try detector("roialign", [])
    #expect(value(regular, conv) == value(carried, conv))
    #expect(log3.contains("skipped in the file 8"), "\(log3)")
}
