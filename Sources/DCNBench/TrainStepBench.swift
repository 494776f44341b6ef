// dcn-bench train-step: seconds per training iteration of a config's detector, split by phase
// (backbone / RPN / head / mimic, forward and backward), and peak memory.
import DCNConfig
import DCNDistributed
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import DCNTraining
import Foundation

/// Median seconds per phase over the timed steps, the median step, and the process's peak RSS.
public struct TrainStepResult: Sendable {
    public var label: String
    public var height: Int, width: Int, batch: Int, threads: Int
    public var phases: [(name: String, seconds: Double)]
    /// Median seconds per backbone layer kind, stage and pass ("res4 conv 3x3 fwd"), in first-run order.
    public var layers: [(name: String, seconds: Double)]
    /// Multiply-adds of the backbone's forward and backward (`ResNet.trainingMultiplyAdds`).
    public var backboneMultiplyAdds: (forward: Int, backward: Int)
    public var stepSeconds: Double
    public var peakResidentBytes: Int
    /// Replicas of the model per process (one per image, `ImageReplicas`); with more than one the
    /// phases and layers are replica 0's, timed while the others run beside it.
    public var replicas = 1
    /// Data-parallel runs: processes, the median seconds per step spent waiting on communication
    /// that the backward pass did not hide, and the gradient block's size in floats.
    public var processes = 1
    public var communicationWaitSeconds = 0.0
    /// Its parts (medians each): waiting for the gradient sums, and in the loss counts' sum
    /// (where the processes wait for the slowest forward pass).
    public var gradientWaitSeconds = 0.0
    public var lossSumWaitSeconds = 0.0
    public var gradientFloats = 0
    /// With `deformationStatistics`: median seconds per step of the deformation statistics
    /// (`DeformationRecorder`, summed over the replicas' threads); nil without.
    public var deformationSeconds: Double? = nil
}

/// Times `steps` training iterations (after one warm-up) of the detector `config` describes, on
/// random images of `height x width` with a few random objects. With `proposalsNearObjects` the
/// RPN's proposals are replaced by what a trained RPN gives: half of them jittered copies of the
/// objects (IoU mostly above 0.5), half random boxes, so the box and mask heads see their full
/// quota of positive RoIs (an untrained RPN's random proposals leave only the objects themselves).
///
/// Under mpirun (`group` of N processes) `batch` is the global batch: every process makes the same
/// images and trains on its share, the gradients are summed as in `dcn-train`, and the step time
/// is that of one global batch. `gradientOut`: rank 0 writes the warm-up step's summed gradient
/// there (safetensors, one tensor per trainable parameter) for comparisons across process counts.
public func runTrainStepBenchmark(config: ExperimentConfig, label: String, height: Int, width: Int, batch: Int,
                                  steps: Int, proposalsNearObjects: Bool = false, group: ProcessGroup = .single,
                                  gradientOut: String? = nil, deformationStatistics: Bool = false) throws -> TrainStepResult {
    try require(batch % group.size == 0, "train-step: a global batch of \(batch) images cannot be split over \(group.size) processes")
    let threads = Threads.count
    let classes = defaultClassCount(config)
    let model = try GeneralizedRCNN(spec: detectorSpec(config, classes: classes), seed: 1)
    var rng = SeededGenerator(seed: 2)
    let images = Tensor.normal([batch, 3, height, width], using: &rng)
    let sizes = Array(repeating: ImageSize(height: height, width: width), count: batch)
    let targets: [Instances] = (0..<batch).map { _ in
        let boxes = (0..<4).map { _ -> Box in
            let w = rng.uniform(40, Float(width) / 2), h = rng.uniform(40, Float(height) / 2)
            let x = rng.uniform(0, Float(width) - w), y = rng.uniform(0, Float(height) - h)
            return Box(x, y, x + w, y + h)
        }
        // Each object's mask is the diamond inscribed in its box (for Mask R-CNN configs).
        return Instances(boxes: boxes, labels: boxes.map { _ in 1 + Int(rng.next() % UInt64(classes)) },
                         polygons: boxes.map { b in
                             let cx = (b.x1 + b.x2) / 2, cy = (b.y1 + b.y2) / 2
                             return [[cx, b.y1, b.x2, cy, cx, b.y2, b.x1, cy]]
                         })
    }
    let proposals: [[Box]]? = proposalsNearObjects ? targets.map { t in
        (0..<config.rpn.postNmsTopkTrain).map { i -> Box in
            let w = rng.uniform(16, Float(width) / 2), h = rng.uniform(16, Float(height) / 2)
            guard i % 2 == 0 else {
                let x = rng.uniform(0, Float(width) - w), y = rng.uniform(0, Float(height) - h)
                return Box(x, y, x + w, y + h)
            }
            let b = t.boxes[(i / 2) % t.boxes.count]
            func jitter(_ v: Float, _ size: Float) -> Float { v + rng.uniform(-0.08, 0.08) * size }
            return Box(max(0, jitter(b.x1, b.width)), max(0, jitter(b.y1, b.height)),
                       min(Float(width), jitter(b.x2, b.width)), min(Float(height), jitter(b.y2, b.height)))
        }
    } : nil
    // This process's share of the global batch.
    let per = batch / group.size, first = group.rank * per
    let plane = 3 * height * width
    let shareImages = try Tensor(shape: [per, 3, height, width], data: Array(images.data[first * plane ..< (first + per) * plane]))
    let buckets = group.isDistributed ? GradientBuckets(group: group, parameters: model.parameters) : nil
    // As dcn-train: one replica of the model per image of the share.
    let replicas = try imageReplicas(config, model: model, classes: classes, images: per)
    let ws = Workspace(sizedForBackward: true)
    var phases = PerStepSeconds(), layerSeconds = PerStepSeconds()
    var totals: [Double] = [], waits: [Double] = [], deformationSeconds: [Double] = [], gradientWaits: [Double] = [], sumWaits: [Double] = []
    for step in 0...steps {
        let profiler = PhaseProfiler(), layers = LayerProfiler()
        model.parameters.zeroGrad()
        try buckets?.beginStep()
        let start = DispatchTime.now().uptimeNanoseconds
        // As dcn-train records a logged step (every step here, to time it).
        var recorder = deformationStatistics && !model.deformationSources.isEmpty
            ? DeformationRecorder(models: replicas?.models ?? [model]) : nil
        let seed = rng.next()
        // Images `range` of this process's share on `model`.
        func train(_ model: GeneralizedRCNN, _ range: Range<Int>, _ collective: TrainingCollective?, _ ws: Workspace,
                   _ profiler: PhaseProfiler?) throws -> [String: Float] {
            let images = try Tensor(shape: [range.count, 3, height, width],
                                    data: Array(shareImages.data[range.lowerBound * plane ..< range.upperBound * plane]))
            let global = first + range.lowerBound ..< first + range.upperBound
            return try model.trainStep(images: images, sizes: Array(sizes[global]), targets: Array(targets[global]),
                                       share: StepShare(seed: seed, firstImage: global.lowerBound, collective: collective), ws,
                                       fixedProposals: proposals.map { Array($0[global]) }, profiler: profiler)
        }
        _ = try layers.collect {
            if let replicas {
                // Replica 0 runs on this thread, so the profilers time its image.
                try replicas.step(outer: buckets) { i, collective, ws in
                    try train(replicas.models[i] as! GeneralizedRCNN, i ..< i + 1, collective, ws, i == 0 ? profiler : nil)
                }
            } else {
                try train(model, 0 ..< per, buckets, ws, profiler)
            }
        }
        try buckets?.finish()
        _ = recorder?.finish()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if step == 0 {
            if let gradientOut, group.isRoot { try writeGradients(model.parameters, to: gradientOut) }
            continue  // warm-up: first-touch allocations
        }
        totals.append(seconds)
        if let recorder { deformationSeconds.append(recorder.seconds) }
        waits.append(buckets?.lastWaitSeconds ?? 0)
        gradientWaits.append(buckets?.lastGradientWaitSeconds ?? 0)
        sumWaits.append(buckets?.lastSumWaitSeconds ?? 0)
        phases.add(profiler)
        layerSeconds.add(layers.layers)
    }
    return TrainStepResult(label: label, height: height, width: width, batch: batch, threads: threads,
                           phases: phases.medians, layers: layerSeconds.medians,
                           backboneMultiplyAdds: try model.backbone.trainingMultiplyAdds(inputShape: [per, 3, height, width]),
                           stepSeconds: median(totals),
                           peakResidentBytes: System.peakResidentBytes(), replicas: replicas?.count ?? 1, processes: group.size, communicationWaitSeconds: median(waits),
                           gradientWaitSeconds: median(gradientWaits), lossSumWaitSeconds: median(sumWaits),
                           gradientFloats: model.parameters.gradientBlock?.count ?? 0,
                           deformationSeconds: deformationSeconds.isEmpty ? nil : median(deformationSeconds))
}

/// The middle value (the upper one of an even count).
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

/// Each named phase's seconds over the timed steps, in first-seen order.
struct PerStepSeconds {
    private var seconds: [String: [Double]] = [:]
    private var order: [String] = []

    mutating func add(_ profiler: PhaseProfiler) {
        for name in profiler.order {
            if seconds[name] == nil { order.append(name) }
            seconds[name, default: []].append(profiler.seconds[name]!)
        }
    }

    /// The median seconds per phase.
    var medians: [(name: String, seconds: Double)] { order.map { ($0, median(seconds[$0]!)) } }
}

/// Every trainable parameter's gradient, by name, as a safetensors file.
func writeGradients(_ parameters: ParameterList, to path: String) throws {
    var tensors: [String: Tensor] = [:]
    for p in parameters.trainable { if let g = p.gradient { tensors[p.name] = g.tensor } }
    try SafeTensorsWriter.write(tensors, metadata: ["what": "summed gradient of one training step"], to: path)
}

/// Seconds to sum `floats` floats over the processes of `group` (median of `repeats` after a
/// warm-up), the collective alone.
public func runAllreduceBenchmark(group: ProcessGroup, floats: Int, repeats: Int) throws -> Double {
    let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, floats))
    defer { buffer.deallocate() }
    buffer.initialize(repeating: Float(group.rank + 1))
    var times: [Double] = []
    for r in 0...repeats {
        try group.barrier()
        let start = DispatchTime.now().uptimeNanoseconds
        try group.sum(buffer.baseAddress!, count: floats)
        if r > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
    }
    // The slowest process decides.
    let sorted = times.sorted()
    return try group.max(sorted[sorted.count / 2])
}
