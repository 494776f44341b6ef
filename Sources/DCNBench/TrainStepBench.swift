// dcn-bench train-step: seconds per training iteration of a config's detector, split by phase
// (backbone / RPN / head / mimic, forward and backward), and peak memory.
import DCNConfig
import DCNModels
import DCNOps
import DCNTensor
import DCNTraining
import Foundation

/// Median seconds per phase over the timed steps, the median step, and the process's peak RSS.
public struct TrainStepResult: Sendable {
    public var label: String
    public var height: Int, width: Int, batch: Int, threads: Int
    public var phases: [(name: String, seconds: Double)]
    public var stepSeconds: Double
    public var peakResidentBytes: Int
}

/// Times `steps` training iterations (after one warm-up) of the detector `config` describes, on
/// random images of `height x width` with a few random objects. With `proposalsNearObjects` the
/// RPN's proposals are replaced by what a trained RPN gives: half of them jittered copies of the
/// objects (IoU mostly above 0.5), half random boxes, so the box and mask heads see their full
/// quota of positive RoIs (an untrained RPN's random proposals leave only the objects themselves).
public func runTrainStepBenchmark(config: ExperimentConfig, label: String, height: Int, width: Int, batch: Int,
                                  steps: Int, proposalsNearObjects: Bool = false) throws -> TrainStepResult {
    let threads = Threads.count
    let classes = defaultClassCount(config)
    let model = try FasterRCNN(spec: detectorSpec(config, classes: classes), seed: 1)
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
    let ws = Workspace()
    var perPhase: [String: [Double]] = [:]
    var order: [String] = []
    var totals: [Double] = []
    for step in 0...steps {
        let profiler = PhaseProfiler()
        model.parameters.zeroGrad()
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try model.trainStep(images: images, sizes: sizes, targets: targets, rng: &rng, ws, fixedProposals: proposals,
                                profiler: profiler)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if step == 0 { continue }  // warm-up: first-touch allocations
        totals.append(seconds)
        for name in profiler.order {
            if perPhase[name] == nil { order.append(name) }
            perPhase[name, default: []].append(profiler.seconds[name]!)
        }
    }
    func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
    return TrainStepResult(label: label, height: height, width: width, batch: batch, threads: threads,
                           phases: order.map { ($0, median(perPhase[$0]!)) }, stepSeconds: median(totals),
                           peakResidentBytes: readVmHWM())
}
