// One replica of the model per image (`ImageReplicas`): the same gradient as the whole batch on
// one model, the same bits on any thread count, and a failing replica stops the others.
import DCNConfig
import DCNData
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

/// A model with one parameter whose "training step" is `step` (the tests' stand-in for a detector).
final class StandInModel: TrainableModel {
    var parameters = ParameterList()
    let lossGroups = [LossGroup(title: "losses", names: ["x"])]
    init() { parameters.append(Parameter(name: "w", value: Tensor(repeating: 1, shape: [3]))) }
    func trainStep(_ batch: TrainingBatch, share: StepShare, _ ws: Workspace) throws -> [String: Float] { [:] }
}

struct ImageFailure: Error, Equatable { let replica: Int }

@Suite struct ImageReplicaTests {
    /// The demo detector (mdconv, mdpool, mimicking, mask branch) on 2 images of 96x128, with
    /// proposals near the objects so that every head has positive RoIs.
    func demoDetector() throws -> (config: ExperimentConfig, models: [GeneralizedRCNN], images: Tensor, targets: [Instances], proposals: [[Box]]) {
        let config = try loadConfig(path: repositoryPath("configs/demo.yaml"), overrides: ["mimic.patch_size=32", "mimic.rois_per_image=2"])
        let spec = detectorSpec(config, classes: 3)
        let models = try (0..<2).map { _ in try GeneralizedRCNN(spec: spec, seed: 5) }
        var rng = SeededGenerator(seed: 11)
        let images = Tensor.normal([2, 3, 96, 128], using: &rng)
        let targets = (0..<2).map { i in
            let boxes = [Box(10, 12, 60, 70), Box(40 + Float(i) * 10, 20, 120, 90)]
            return Instances(boxes: boxes, labels: [1, 2 + i], polygons: boxes.map { b in [[b.x1, b.y1, b.x2, b.y1, b.x2, b.y2, b.x1, b.y2]] })
        }
        let proposals = targets.map { t in (0..<40).map { k -> Box in
            let b = t.boxes[k % 2], d = Float(k % 5) * 2
            return Box(max(0, b.x1 - d), max(0, b.y1 + d), min(128, b.x2 + d), min(96, b.y2 - d))
        } }
        return (config, models, images, targets, proposals)
    }

    /// Image `i` of `images` as a batch of one.
    func image(_ images: Tensor, _ i: Int) throws -> Tensor {
        let plane = images.count / images.dim(0)
        return try Tensor(shape: [1] + images.shape.dropFirst(), data: Array(images.data[i * plane ..< (i + 1) * plane]))
    }

    @Test func replicasComputeTheWholeBatchGradientWithTheSameBitsOnAnyThreadCount() throws {
        let d = try demoDetector()
        let size = ImageSize(height: 96, width: 128)
        // The whole batch on one model.
        let whole = d.models[0]
        whole.parameters.zeroGrad()
        let wholeLosses = try whole.trainStep(images: d.images, sizes: [size, size], targets: d.targets, share: StepShare(seed: 9), Workspace(),
                                              fixedProposals: d.proposals)
        let wholeGradient = Array(whole.parameters.gradientBlock!.buffer)
        // One replica per image, on 1 and on 2 threads.
        var gradients: [[Float]] = []
        for threads in [1, 2] {
            let replicas = try ImageReplicas(d.models)
            d.models[0].parameters.zeroGrad()
            let losses = try Threads.with(threads) {
                try replicas.step { i, collective, ws in
                    try d.models[i].trainStep(images: image(d.images, i), sizes: [size], targets: [d.targets[i]],
                                              share: StepShare(seed: 9, firstImage: i, collective: collective), ws, fixedProposals: [d.proposals[i]])
                }
            }
            for (name, value) in wholeLosses {
                #expect(abs(value - (losses[name] ?? .nan)) <= 1e-5 * max(1, abs(value)), "\(name): \(value) whole, \(losses[name] ?? .nan) replicas")
            }
            gradients.append(Array(d.models[0].parameters.gradientBlock!.buffer))
            // The other replica holds no weights between steps.
            #expect(d.models[1].parameters.all.allSatisfy { $0.count == 0 })
        }
        #expect(gradients[0] == gradients[1], "the replicas' gradient differs between 1 and 2 threads")
        var num = 0.0, den = 0.0
        for (a, b) in zip(wholeGradient, gradients[0]) { num += Double(a - b) * Double(a - b); den += Double(a) * Double(a) }
        let difference = (num / den).squareRoot()
        #expect(den > 0 && difference < 1e-6, "relative L2 difference from the whole batch's gradient: \(difference)")
    }

    @Test func replicasSumTheirValuesAndGradientsInOrder() throws {
        let models = [StandInModel(), StandInModel(), StandInModel()]
        let replicas = try ImageReplicas(models)
        for threads in [1, 2, 4] {
            models[0].parameters.zeroGrad()
            let losses = try Threads.with(threads) {
                try replicas.step { i, collective, _ in
                    // Each replica adds i + 1 to every gradient element of the weight it borrowed.
                    let p = models[i].parameters.all[0]
                    #expect(p.value.data == [1, 1, 1])
                    p.gradient!.buffer.update(repeating: Float(i + 1))
                    let first = try collective.sum([Double(i), 1])
                    let second = try collective.sum([Double(10 * i)])
                    return ["x": Float(first[0] + first[1] + second[0])]
                }
            }
            #expect(losses == ["x": 36], "\(threads) threads: \(losses)")  // (0 + 1 + 2) + 3 + (0 + 10 + 20)
            #expect(models[0].parameters.all[0].grad.data == [6, 6, 6], "\(threads) threads")
        }
    }

    @Test func aFailingReplicaStopsTheOthersWithItsError() throws {
        let models = [StandInModel(), StandInModel()]
        let replicas = try ImageReplicas(models)
        for threads in [1, 2] {
            for failing in [0, 1] {
                models[0].parameters.zeroGrad()
                #expect(throws: ImageFailure(replica: failing), "\(threads) threads, replica \(failing) failing") {
                    try Threads.with(threads) {
                        try replicas.step { i, collective, _ in
                            if i == failing { throw ImageFailure(replica: i) }
                            _ = try collective.sum([1])  // waits for the one that failed: must not hang
                            return [:]
                        }
                    }
                }
            }
        }
    }

    /// A model whose steps ask for different numbers of sums on different images gets an error, not a hang.
    @Test func unevenSumsAreAnErrorNotAHang() throws {
        let models = [StandInModel(), StandInModel()]
        let replicas = try ImageReplicas(models)
        for threads in [1, 2] {
            for extra in [0, 1] {
                models[0].parameters.zeroGrad()
                do {
                    _ = try Threads.with(threads) {
                        try replicas.step { i, collective, _ in
                            _ = try collective.sum([1])
                            if i == extra { _ = try collective.sum([2]) }
                            return [:]
                        }
                    }
                    Issue.record("\(threads) threads, replica \(extra) summing twice: no error")
                } catch let error as TrainingError {
                    #expect(error.message.contains("different numbers of sums"), "\(error)")
                }
            }
        }
    }

    @Test func replicasNeedTheSameParameters() throws {
        let other = StandInModel()
        other.parameters.append(Parameter(name: "v", value: Tensor(zeros: [2])))
        #expect(throws: TrainingError.self) { try ImageReplicas([StandInModel(), other]) }
    }
}
