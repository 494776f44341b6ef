// Training: the optimiser, the schedule, checkpoints and exact resume, failure handling, the summary.
import DCNConfig
import DCNData
import DCNModels
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

@Test func learningRateScheduleWarmsUpAndSteps() {
    let s = LearningRateSchedule(baseLR: 0.02, warmupIterations: 100, warmupFactor: 0.001, steps: [300, 400], gamma: 0.1)
    #expect(abs(s.rate(at: 0) - 0.02 * 0.001) < 1e-9)
    #expect(abs(s.rate(at: 50) - 0.02 * (0.001 * 0.5 + 0.5)) < 1e-7)
    #expect(s.rate(at: 100) == 0.02)
    #expect(abs(s.rate(at: 300) - 0.002) < 1e-9)
    #expect(abs(s.rate(at: 450) - 0.0002) < 1e-10)
}

@Test func sgdMatchesTheHandComputedUpdate() {
    let w = Parameter(name: "conv.weight", value: try! Tensor(shape: [2], data: [1, -2]), learningRateScale: 0.5)
    let b = Parameter(name: "bn.weight", value: try! Tensor(shape: [1], data: [3]), decays: false)
    let frozen = Parameter(name: "frozen", value: try! Tensor(shape: [1], data: [7]), trainable: false)
    for p in [w, b] { p.zeroGrad() }
    w.setGrad(try! Tensor(shape: [2], data: [0.1, 0.2]))
    b.setGrad(try! Tensor(shape: [1], data: [-1]))
    let sgd = SGD(parameters: [w, b, frozen], momentum: 0.9, weightDecay: 0.01, weightDecayNorm: 0)
    #expect(sgd.parameters.count == 2)
    sgd.step(lr: 0.1)
    // v = g + wd * w; w -= lr * scale * v
    #expect(abs(w.value.data[0] - (1 - 0.05 * (0.1 + 0.01))) < 1e-6)
    #expect(abs(w.value.data[1] - (-2 - 0.05 * (0.2 - 0.02))) < 1e-6)
    #expect(abs(b.value.data[0] - (3 - 0.1 * -1)) < 1e-6)  // no decay on norm weights
    sgd.step(lr: 0.1)
    // second step: v = 0.9 v + g + wd w
    let v0 = Float(0.1 + 0.01), w1 = Float(1 - 0.05 * 0.11)
    #expect(abs(w.value.data[0] - (w1 - 0.05 * (0.9 * v0 + 0.1 + 0.01 * w1))) < 1e-6)
    #expect(frozen.value.data[0] == 7)
    // Clipping scales the gradients to the given norm.
    w.setGrad(try! Tensor(shape: [2], data: [30, 40]))
    b.setGrad(try! Tensor(shape: [1], data: [0]))
    let norm = SGD(parameters: [w, b], momentum: 0, weightDecay: 0, weightDecayNorm: 0).step(lr: 0, clipNorm: 5)
    #expect(abs(norm - 50) < 1e-9)
}

@Test func normParametersTakeTheirOwnWeightDecay() {
    // solver.weight_decay_norm: v = g + wd_norm * w for norm weights and biases, wd for the rest.
    let w = Parameter(name: "conv.weight", value: try! Tensor(shape: [1], data: [2]))
    let b = Parameter(name: "bn.weight", value: try! Tensor(shape: [1], data: [3]), decays: false)
    for p in [w, b] { p.zeroGrad() }
    SGD(parameters: [w, b], momentum: 0, weightDecay: 0.1, weightDecayNorm: 0.01).step(lr: 1)
    #expect(abs(w.value.data[0] - (2 - 0.1 * 2)) < 1e-6)
    #expect(abs(b.value.data[0] - (3 - 0.01 * 3)) < 1e-6)
    // solver.weight_decay_bias: conv and linear biases (names ending in .bias that decay); a norm's
    // bias stays with the norm's decay. The rates may change between steps.
    let conv = Parameter(name: "conv.weight", value: try! Tensor(shape: [1], data: [2]))
    let bias = Parameter(name: "conv.bias", value: try! Tensor(shape: [1], data: [4]))
    let normBias = Parameter(name: "bn.bias", value: try! Tensor(shape: [1], data: [5]), decays: false)
    for p in [conv, bias, normBias] { p.zeroGrad() }
    let sgd = SGD(parameters: [conv, bias, normBias], momentum: 0, weightDecay: 0.1, weightDecayNorm: 0.01, weightDecayBias: 0.5)
    sgd.step(lr: 1)
    #expect(abs(conv.value.data[0] - 1.8) < 1e-6 && abs(bias.value.data[0] - 2) < 1e-6 && abs(normBias.value.data[0] - 4.95) < 1e-6)
    sgd.weightDecayBias = nil  // biases then take weight_decay
    sgd.step(lr: 1)
    #expect(abs(bias.value.data[0] - 1.8) < 1e-6)
}

/// A tiny synthetic dataset (6 training and 2 validation images of 96 px) in `dir`, and the
/// overrides of configs/demo.yaml that train on it (`extra` last).
func tinyOverrides(_ dir: String, extra: [String] = []) throws -> [String] {
    if !FileManager.default.fileExists(atPath: dir + "/data/annotations/instances_train.json") {
        _ = try writeSyntheticDataset(out: dir + "/data", config: SyntheticConfig(train: 6, val: 2, size: 96, seed: 3))
    }
    return [
        "data.root=\(dir)/data", "data.min_size=[96]", "data.max_size=128", "data.test_min_size=96",
        "mimic.patch_size=32", "mimic.rois_per_image=2", "roi_head.batch_size_per_image=16", "rpn.batch_size_per_image=32",
        "solver.max_iter=20", "solver.warmup_iters=5", "solver.steps=[15]", "solver.checkpoint_period=10",
        "solver.eval_period=0", "output.dir=\(dir)/out", "output.log_period=1",
    ] + extra
}

/// configs/demo.yaml made tiny by `tinyOverrides`.
func tinyExperiment(_ dir: String, extra: [String] = []) throws -> ExperimentConfig {
    try loadConfig(path: repositoryPath("configs/demo.yaml"), overrides: tinyOverrides(dir, extra: extra))
}

@Suite(.serialized) struct TrainingRuns {
    @Test func resumingGivesTheSameWeightsAsOneRun() throws {
        let dir = temporaryDirectory("resume")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let whole = try tinyExperiment(dir, extra: ["output.dir=\(dir)/whole"])
        try train(config: whole, resume: nil, force: false)
        let split = try tinyExperiment(dir, extra: ["output.dir=\(dir)/split", "solver.max_iter=20"])
        // First 10 iterations: a run stopped at its checkpoint (same schedule, max_iter 20).
        try train(config: split, resume: nil, force: false, stopAfter: 10)
        try train(config: split, resume: "\(dir)/split/model_0000010.safetensors", force: false)
        let a = try SafeTensorsFile(path: "\(dir)/whole/model_final.safetensors")
        let b = try SafeTensorsFile(path: "\(dir)/split/model_final.safetensors")
        #expect(a.names.sorted() == b.names.sorted())
        // Bit-exact because both runs used the same BLAS core and thread count, which the checkpoint records.
        #expect(a.metadata["arithmetic"] == BLASKernel.arithmetic && b.metadata["arithmetic"] == BLASKernel.arithmetic)
        for name in a.names {
            #expect(try a.tensor(name).data.map(\.bitPattern) == b.tensor(name).data.map(\.bitPattern), "\(name) differs")
        }
        // The run left its files: resolved config, metrics, curves, latest link.
        for file in ["config.yaml", "metrics.jsonl", "training_curves.svg", "latest", "eval_final_results.json", "eval_final_metrics.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(dir)/whole/\(file)"), "\(file) missing")
        }
        // The output folder now holds a run: a new one needs --resume or --force.
        do {
            try train(config: whole, resume: nil, force: false)
            Issue.record("training into a folder with a run must be refused")
        } catch let error as TrainingError {
            #expect(error.exitCode == 2 && error.message.contains("holds another run"))
        }
    }

    @Test func aDivergingLossStopsWithTheIterationAndTerm() throws {
        let dir = temporaryDirectory("nan")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try tinyExperiment(dir, extra: ["solver.base_lr=1e12", "solver.warmup_iters=0", "solver.steps=[]"])
        do {
            try train(config: config, resume: nil, force: false)
            Issue.record("a run with lr 1e12 must stop on a non-finite loss")
        } catch let error as TrainingError {
            #expect((error.message.contains("became") || error.message.contains("diverged")) && error.message.contains("at iteration"), "\(error.message)")
            #expect(error.message.contains("no checkpoint was written yet") && !error.message.contains("latest"), "\(error.message)")
            #expect(error.divergence != nil && error.divergence!.iteration >= 1, "a typed divergence")
            #expect(!FileManager.default.fileExists(atPath: "\(dir)/out/latest"), "no checkpoint of a diverged run")
        }
        // After a checkpoint, the message names it.
        let healthy = try tinyExperiment(dir, extra: ["output.dir=\(dir)/resumed"])
        try train(config: healthy, resume: nil, force: false, stopAfter: 1)
        let diverging = try tinyExperiment(dir, extra: ["solver.base_lr=1e12", "solver.warmup_iters=0", "solver.steps=[]", "output.dir=\(dir)/resumed"])
        do {
            try train(config: diverging, resume: "\(dir)/resumed/latest", force: false)
            Issue.record("a resumed run with lr 1e12 must stop on a non-finite loss")
        } catch let error as TrainingError {
            #expect(error.message.contains("the last good checkpoint is \(dir)/resumed/"), "\(error.message)")
        }
    }

    @Test func checkpointOfAnotherArchitectureIsRejectedWithTheKeys() throws {
        let dir = temporaryDirectory("arch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try tinyExperiment(dir, extra: ["solver.max_iter=2", "solver.warmup_iters=1", "solver.steps=[]"])
        try train(config: config, resume: nil, force: false)
        let other = try tinyExperiment(dir, extra: ["roi_head.extractor=roialign", "mimic.regions=off", "output.dir=\(dir)/other"])
        let model = try buildModel(other, classes: 6)
        let before = model.parameters.all.map(\.value)
        do {
            _ = try Checkpoint.load(path: "\(dir)/out/model_final.safetensors", into: model.parameters, optimizer: nil)
            Issue.record("an mdpool checkpoint must not load into a roialign model")
        } catch let error as CheckpointError {
            #expect(error.message.contains("different architecture") && error.message.contains("offset_fc"))
        }
        #expect(model.parameters.all.map(\.value) == before)
        #expect(throws: CheckpointError.self) { _ = try Checkpoint.load(path: "\(dir)/missing.safetensors", into: model.parameters, optimizer: nil) }
    }
}

/// Issue 29, defect 9: a resume needs every momentum tensor, finite. A checkpoint missing one (it
/// used to resume at zero momentum, exit 0) or holding an inf in one (it used to diverge and call the
/// file "the last good checkpoint") is refused at start, naming the file and the tensor.
@Test func aResumeNeedsEveryOptimizerTensorFinite() throws {
    let dir = temporaryDirectory("momentum")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = try tinyExperiment(dir)
    let model = try buildModel(config, classes: 6)
    let sgd = SGD(parameters: model.parameters.all, momentum: 0.9, weightDecay: 0, weightDecayNorm: 0)
    let good = dir + "/good.safetensors"
    try Checkpoint.save(parameters: model.parameters, optimizer: sgd, state: TrainingState(iteration: 1, rngState: [1, 2, 3, 4], config: ""), to: good)
    let file = try SafeTensorsFile(path: good)
    let victim = "momentum." + sgd.parameters[3].name
    /// `good` with the victim's values edited (nil: the tensor left out).
    func damaged(_ name: String, _ edit: ([Float]) -> [Float]?) throws -> String {
        let path = dir + "/" + name
        let tensors: [(name: String, payload: SafeTensorsWriter.Payload)] = try file.names.compactMap { n in
            let t = try file.tensor(n)
            guard let values = n == victim ? edit(t.data) : t.data else { return nil }
            return (n, .f32(shape: t.shape, values: values))
        }
        try SafeTensorsWriter.write(tensors, metadata: file.metadata, to: path)
        return path
    }
    let missing = try damaged("missing.safetensors") { _ in nil }
    expectTrainingError(2, ["--resume: \(missing)", "'\(victim)' is missing", "another checkpoint"]) {
        try train(config: config, resume: missing, force: false)
    }
    let infinite = try damaged("inf.safetensors") { var v = $0; v[0] = .infinity; return v }
    expectTrainingError(2, ["--resume: \(infinite)", "'\(victim)' holds non-finite values"]) {
        try train(config: config, resume: infinite, force: false)
    }
    #expect(!folderNames(dir + "/out").contains { RunFiles.isRunFile($0) }, "a refused resume writes nothing")
    _ = try Checkpoint.load(path: good, into: model.parameters, optimizer: sgd)
}

/// Issue 29, defect 10: a resumed run's metrics.jsonl keeps every readable line and names the
/// damaged one (one byte that is not UTF-8 used to drop the whole history before the resume).
@Test func aResumeKeepsEveryReadableMetricsLineAndNamesTheDamagedOne() throws {
    let dir = temporaryDirectory("metrics")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/" + RunFiles.metrics
    let log = try MetricsLog(path: path, keepExisting: false)
    for i in 1...4 {
        try log.append(IterationRecord(iteration: i, losses: ["cls": 1], totalLoss: 1, lr: 0.1, secondsPerIteration: 1, dataWaitSeconds: 0))
    }
    try log.appendEvaluation(iteration: 4, metrics: [("AP", 0.5)])
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    bytes[bytes.firstIndex(of: UInt8(ascii: "\n"))! + 2] = 0xFF  // inside iteration 2's line
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let resumed = try MetricsLog(path: path, keepExisting: true)
    #expect(resumed.unreadableLines == ["\(path) line 2 is not UTF-8 text"])
    try resumed.truncate(after: 10)
    let kept = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
    #expect(kept.count == 4 && ["\"iteration\":1,", "\"iteration\":3,", "\"iteration\":4,", "\"eval\""].enumerated().allSatisfy { kept[$0].contains($1) },
            "\(kept)")
}

/// The paper's Table 1 parameter differences between R-50 rows (rounded to 0.1 M there).
@Test func paperRowsDifferByTheTableOneParameterCounts() throws {
    func parameters(_ row: String) throws -> Int {
        let config = try loadConfig(path: repositoryPath("configs/coco/faster_rcnn_r50_\(row).yaml"), overrides: ["backbone.weights=null"])
        let model = try GeneralizedRCNN(spec: detectorSpec(config, classes: 80))
        return try ModelSummary(model: model, height: 800, width: 1216).parametersTotal
    }
    let regular = try parameters("roipool")
    func delta(_ row: String) throws -> Double { Double(try parameters(row) - regular) / 1e6 }
    #expect(try parameters("roialign") == regular)
    #expect(abs(try delta("dconv_c5") - 0.2) <= 0.05 + 0.001)
    #expect(abs(try delta("dconv_c4-c5") - 0.4) <= 0.1 + 0.001)
    #expect(abs(try delta("dconv_c3-c5") - 0.5) <= 0.1)
    let dpool = try delta("dconv_c3-c5_dpool"), c3c5 = try delta("dconv_c3-c5")
    #expect(abs(dpool - c3c5 - 1.2) <= 0.05)
}

/// The paper's Table 1 Mask R-CNN parameter column: differences to the aligned-RoIpooling row
/// (0.1 M rounding there, 0.15 M allowed). mdconv@c3~c5 + mdpool differs from the paper by the
/// same ~0.7 M as the Faster R-CNN column (the mdpool branch's layout; docs/tables-1-3-ablation.md, "Parameters and FLOPs"), so there the mask
/// column's difference must equal the Faster R-CNN column's exactly.
@Test func maskRCNNRowsDifferByTheTableOneParameterCounts() throws {
    func parameters(_ detector: String, _ row: String) throws -> Int {
        let config = try loadConfig(path: repositoryPath("configs/coco/\(detector)_rcnn_r50_\(row).yaml"), overrides: ["backbone.weights=null"])
        return try ModelSummary(model: try GeneralizedRCNN(spec: detectorSpec(config, classes: 80)), height: 800, width: 1216).parametersTotal
    }
    let regular = try parameters("mask", "roialign")
    func delta(_ row: String) throws -> Double { Double(try parameters("mask", row) - regular) / 1e6 }
    for (row, paper) in [("dcnv1", 1.4), ("dconv_c5", 0.3), ("dconv_c4-c5", 0.5), ("dconv_c3-c5", 0.6), ("dconv_c3-c5_dpool", 1.8)] {
        let d = try delta(row)
        #expect(abs(d - paper) <= 0.15, "\(row): +\(d) M, the paper +\(paper) M")
    }
    let fasterDelta = try parameters("faster", "mdconv_c3-c5_mdpool") - parameters("faster", "roialign")
    #expect(try parameters("mask", "mdconv_c3-c5_mdpool") - regular == fasterDelta)
    // The mask head itself is the same in every row.
    #expect(try parameters("mask", "dcnv1") - parameters("faster", "dcnv1") == regular - parameters("faster", "roialign"))
}

/// Issue 29, defect 6: with mask.enabled, a non-crowd object without a polygon stopped training
/// at the batch that held it ("image 0 has objects without a mask", 0 being its batch position);
/// now loading the data refuses it before the first iteration, naming the file and the ids.
@Test func maskTrainingRefusesAnObjectWithoutPolygonAtStart() throws {
    let dir = temporaryDirectory("no-polygon")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = try tinyExperiment(dir)
    #expect(config.mask.enabled)
    // The first annotation's polygons become an RLE covering its whole image.
    let path = dir + "/data/annotations/instances_train.json"
    var file = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    var annotations = file["annotations"] as! [[String: Any]]
    let imageID = annotations[0]["image_id"] as! Int, annotationID = annotations[0]["id"] as! Int
    let image = (file["images"] as! [[String: Any]]).first { $0["id"] as! Int == imageID }!
    let (h, w) = (image["height"] as! Int, image["width"] as! Int)
    annotations[0]["segmentation"] = ["size": [h, w], "counts": [0, h * w]]
    file["annotations"] = annotations
    try JSONSerialization.data(withJSONObject: file).write(to: URL(fileURLWithPath: path))
    do {
        _ = try loadTrainingData(config)
        Issue.record("expected an error")
    } catch let e as TrainingError {
        #expect(e.exitCode == 2 && e.message.hasPrefix("\(path): image id \(imageID) (")
                && e.message.contains("annotation id \(annotationID) has no polygon segmentation"), "\(e)")
    }
    // Box-only training reads the same data.
    #expect(try !loadTrainingData(tinyExperiment(dir, extra: ["mask.enabled=false"])).train.images.isEmpty)
}
