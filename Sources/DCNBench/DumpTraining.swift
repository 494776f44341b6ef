// dcn-bench dump-training: what the PyTorch training twin (scripts/pytorch_twin.py) needs to replay
// the first steps of a classification run: the step-0 weights, every step's batch as the network
// sees it, the gradients of chosen steps, and per step the loss, the learning rate, every
// gradient's norm and the deformable layers' offset statistics. The steps are dcn-train's own: the
// same classifier, loader, optimiser and schedule (`trainingRecipe`), run by the same `Trainer`.
import DCNConfig
import DCNData
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import DCNTraining
import Foundation

/// File names inside a dump folder (read by scripts/pytorch_twin.py).
public enum TrainingDumpFiles {
    /// Every parameter and buffer before the first step, under our (torchvision's) names.
    public static let initialWeights = "weights_step0.safetensors"
    /// Per parameter: shape, trainable, learning-rate multiplier, weight decay the optimiser applies.
    public static let parameters = "parameters.json"
    /// The solver settings and the network's structure (norm, deformable stages, ...).
    public static let recipe = "recipe.json"
    /// One JSON line per step: loss, lr, gradient norms, offset statistics.
    public static let steps = "steps.jsonl"
    /// `batches/step_0001.safetensors`: `images` [N, 3, H, W] float32 and `labels` [N] int64.
    public static func batch(_ step: Int) -> String { String(format: "batches/step_%04d.safetensors", step) }
    /// Every trainable parameter's gradient of step `step` (before its update), under the parameter's name.
    public static func gradients(_ step: Int) -> String { String(format: "gradients_step%04d.safetensors", step) }
    /// Every parameter and buffer after step `step`: after the last step, and before each step
    /// whose gradients are written (`gradients(step + 1)`).
    public static func finalWeights(_ step: Int) -> String { String(format: "weights_step%04d.safetensors", step) }
}

/// Runs `steps` iterations of the classification run `config` describes, as dcn-train runs them,
/// and writes the dump into `folder` (created; files there are replaced). `gradientSteps`: the
/// steps (1-based) whose gradients are written in full; `writeBatches` false leaves the batches out
/// (long runs watched through steps.jsonl alone).
public func dumpTraining(config: ExperimentConfig, steps: Int, folder: String, gradientSteps: Set<Int>, writeBatches: Bool = true,
                         log: @escaping (String) -> Void = { print($0) }) throws {
    try require(config.model.task == .classification, "dump-training: model.task must be classification (the twin is the classifier's)")
    try require(steps >= 1 && steps <= config.solver.maxIter, "dump-training: --steps must be in 1...solver.max_iter (\(config.solver.maxIter))")
    try FileManager.default.createDirectory(atPath: folder + "/batches", withIntermediateDirectories: true)
    let data = try loadTrainingData(config)
    let classes = data.train.classNames.count
    let classifier = try buildClassifier(config, classes: classes)
    let recording = RecordingClassifier(classifier)
    try restrictTraining(classifier.parameters, to: config.solver.trainOnly, task: config.model.task)
    let recipe = trainingRecipe(config, parameters: classifier.parameters)
    let loader = try makeClassificationLoader(config, dataset: data.train, startIteration: 0, share: nil)
    let s = config.solver

    try writeWeights(classifier.parameters, to: folder + "/" + TrainingDumpFiles.initialWeights)
    let parameterRows: [[String: Any]] = classifier.parameters.all.map { p in
        let decay = !p.decays ? s.weightDecayNorm : p.name.hasSuffix(".bias") ? s.weightDecayBias ?? s.weightDecay : s.weightDecay
        return ["name": p.name, "shape": p.shape, "trainable": p.trainable, "buffer": p.isBuffer,
                "lr_mult": Double(p.learningRateScale), "weight_decay": p.trainable ? decay : 0]
    }
    try writeJSON(parameterRows, to: folder + "/" + TrainingDumpFiles.parameters)
    let b = config.backbone
    let norm: String
    switch b.norm {
    case .frozenBN: norm = "frozen_bn"
    case .bn: norm = "bn"
    case .gn: norm = "gn"
    }
    let recipeJSON: [String: Any] = [
        "config": config.model.name, "classes": classes, "steps": steps,
        "base_lr": s.baseLr, "momentum": s.momentum, "weight_decay": s.weightDecay, "weight_decay_norm": s.weightDecayNorm,
        "weight_decay_bias": s.weightDecayBias ?? NSNull(), "warmup_iters": s.warmupIters, "warmup_factor": s.warmupFactor,
        "lr_schedule": s.lrSchedule == .cosine ? "cosine" : "steps", "lr_steps": s.steps, "gamma": s.gamma, "max_iter": s.maxIter,
        "label_smoothing": s.labelSmoothing, "clip_grad_norm": s.clipGradNorm ?? NSNull(),
        "norm": norm, "gn_groups": b.gnGroups, "stem_width": b.stemWidth, "stage_planes": b.stagePlanes, "layers": b.resolvedLayers,
        "deformable_stages": b.deformableStages, "conv_type": b.convType.rawValue, "offset_groups": b.offsetGroups,
        "offset_lr_mult": b.offsetLrMult, "res5_dilation": b.res5Dilation, "frozen_stages": b.frozenStages,
        "images_per_batch": config.data.imagesPerBatch, "crop_size": config.data.cropSize,
    ]
    try writeJSON(recipeJSON, to: folder + "/" + TrainingDumpFiles.recipe)

    // The offsets each deformable layer used this step (seen in its backward, as the forward made them).
    var offsetStats: [String: [String: Double]] = [:]
    for layer in classifier.network.deformableLayers {
        layer.samplingObserver = { g in
            var row = ["mean_abs_offset": meanAbs(g.offset.data)]
            if let mask = g.mask { row["mask_mean"] = mask.data.reduce(0.0) { $0 + Double($1) } / Double(max(1, mask.count)) }
            offsetStats[g.layer] = row
        }
    }
    let trainer = Trainer(model: recording, optimizer: recipe.optimizer, maxIterations: s.maxIter, clipNorm: s.clipGradNorm.map { Float($0) },
                          loader: loader, imagesPerBatch: config.data.imagesPerBatch, rng: recipe.rng)
    let stepsPath = folder + "/" + TrainingDumpFiles.steps
    FileManager.default.createFile(atPath: stepsPath, contents: nil)
    let stepsFile = try FileHandle(forWritingTo: URL(fileURLWithPath: stepsPath))
    defer { try? stepsFile.close() }
    let hook = DumpHook { step, trainer in
        guard let batch = recording.lastBatch else { throw ShapeError("dump-training: no batch was recorded") }
        if writeBatches {
            try SafeTensorsWriter.write([("images", .f32(shape: batch.images.shape, values: batch.images.data)),
                                         ("labels", .i64(shape: [batch.labels.count], values: batch.labels.map(Int64.init)))],
                                        to: folder + "/" + TrainingDumpFiles.batch(step.iteration))
        }
        // The gradients are still those of this step: the trainer zeroes them before the next one.
        let trainable = classifier.parameters.trainable
        if gradientSteps.contains(step.iteration) {
            try SafeTensorsWriter.write(trainable.map { ($0.name, .f32(shape: $0.shape, values: $0.grad.data)) },
                                        to: folder + "/" + TrainingDumpFiles.gradients(step.iteration))
        }
        // The weights step `iteration + 1` starts from, when its gradients are to be written: the
        // twin recomputes that step's gradients from them (a check at any point of the run).
        if gradientSteps.contains(step.iteration + 1) {
            try writeWeights(classifier.parameters, to: folder + "/" + TrainingDumpFiles.finalWeights(step.iteration))
        }
        var norms: [String: Double] = [:]
        for p in trainable { norms[p.name] = p.grad.data.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
        let row: [String: Any] = ["step": step.iteration, "loss": Double(step.losses["cls"] ?? .nan), "lr": Double(step.learningRate),
                                  "grad_norms": norms, "offsets": offsetStats]
        stepsFile.write(try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]))
        stepsFile.write(Data("\n".utf8))
        if step.iteration % 50 == 0 || step.iteration == 1 { log("step \(step.iteration): loss \(step.losses["cls"] ?? .nan) lr \(step.learningRate)") }
    } atStop: { iteration in
        try writeWeights(classifier.parameters, to: folder + "/" + TrainingDumpFiles.finalWeights(iteration))
    }
    // dcn-train's schedule, stop and divergence check, then the dump.
    trainer.hooks = [StopHook(stop: StopRequest(), stopAfter: steps, folder: folder), LearningRateHook(schedule: recipe.schedule),
                     DivergenceHook(checkpoints: CheckpointHistory()), hook]
    try trainer.run(from: 0)
}

/// Passes each step to the classifier and keeps the batch it trained on.
final class RecordingClassifier: TrainableModel {
    let classifier: ImageClassifier
    var lastBatch: (images: Tensor, labels: [Int])?
    init(_ classifier: ImageClassifier) { self.classifier = classifier }
    var parameters: ParameterList { classifier.parameters }
    var lossGroups: [LossGroup] { classifier.lossGroups }
    func trainStep(_ batch: TrainingBatch, share: StepShare, _ ws: Workspace) throws -> [String: Float] {
        lastBatch = (batch.images, batch.classLabels)
        return try classifier.trainStep(batch, share: share, ws)
    }
}

/// Runs closures after each step and at the stop.
final class DumpHook: TrainerHook {
    let after: (StepRecord, Trainer) throws -> Void
    let stop: (Int) throws -> Void
    init(after: @escaping (StepRecord, Trainer) throws -> Void, atStop: @escaping (Int) throws -> Void) {
        self.after = after; self.stop = atStop
    }
    func afterStep(_ step: StepRecord, _ trainer: Trainer) throws { try after(step, trainer) }
    func atStop(iteration: Int, _ trainer: Trainer) throws { try stop(iteration) }
}

func meanAbs(_ v: [Float]) -> Double { v.reduce(0.0) { $0 + Double(abs($1)) } / Double(max(1, v.count)) }

func writeWeights(_ parameters: ParameterList, to path: String) throws {
    try SafeTensorsWriter.write(parameters.all.map { ($0.name, .f32(shape: $0.shape, values: $0.value.data)) }, to: path)
}

func writeJSON(_ value: Any, to path: String) throws {
    try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
}
