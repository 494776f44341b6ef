// dcn-bench dump-training, the PyTorch twin's input (scripts/pytorch_twin.py, issue 30): it must
// replay dcn-train's steps, not an imitation of them.
import DCNBench
import DCNConfig
import DCNModels
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

/// Four steps of a DCNv2 classifier dumped by `dumpTraining` end on weights bit-equal to those of
/// dcn-train's checkpoint after the same four steps (same batches, learning rates, momentum, weight
/// decay and offset lr multiplier), and the dump holds what the twin reads.
@Test func trainingDumpReplaysTheStepsOfDcnTrain() throws {
    let dir = temporaryDirectory("dump-training")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = try loadConfig(path: repositoryPath("configs/synth_cls/dcnv2.yaml"), overrides: fixtureImageFolderOverrides + [
        "solver.max_iter=30", "solver.warmup_iters=3", "output.dir=\(dir)/out",
    ])
    try Threads.with(1) { try train(config: config, resume: nil, force: false, stopAfter: 4) }
    try Threads.with(1) { try dumpTraining(config: config, steps: 4, folder: "\(dir)/dump", gradientSteps: [1, 3], log: { _ in }) }

    let trained = try buildClassifier(config, classes: 3)
    _ = try Checkpoint.load(path: "\(dir)/out/\(RunFiles.checkpoint(iteration: 4))", into: trained.parameters, optimizer: nil)
    let dumped = try SafeTensorsFile(path: "\(dir)/dump/\(TrainingDumpFiles.finalWeights(4))")
    for p in trained.parameters.all {
        #expect(try dumped.tensor(p.name).data == p.value.data, "\(p.name) differs from dcn-train's after 4 steps")
    }
    #expect(trained.parameters.all.contains { $0.name.contains("_offset.") && $0.value.data.contains { $0 != 0 } }, "the offsets moved")
    // What the twin reads: the batches, the gradients of the listed steps and the weights before them, one line per step.
    for step in 1...4 { #expect(FileManager.default.fileExists(atPath: "\(dir)/dump/\(TrainingDumpFiles.batch(step))")) }
    for file in [TrainingDumpFiles.initialWeights, TrainingDumpFiles.gradients(1), TrainingDumpFiles.gradients(3),
                 TrainingDumpFiles.finalWeights(2), TrainingDumpFiles.parameters, TrainingDumpFiles.recipe] {
        #expect(FileManager.default.fileExists(atPath: "\(dir)/dump/\(file)"), "\(file)")
    }
    let lines = try String(contentsOfFile: "\(dir)/dump/\(TrainingDumpFiles.steps)", encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 4)
    let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
    let offsets = first?["offsets"] as? [String: [String: Double]]
    #expect(offsets?.keys.sorted() == ["layer2.0.conv2", "layer3.0.conv2", "layer4.0.conv2"] && offsets?["layer2.0.conv2"]?["mask_mean"] == 0.5)
}
