// The deformation statistics of a logged training step: each deformable layer's tally over the
// images this process trained (every replica's), and the relative size of its offset branch's
// update. See DCNModels/Deformation.swift for the definitions.
import DCNModels
import Foundation

/// One deformable layer's (or the deformable RoI pooling's) statistics at a logged step.
public struct LayerDeformation: Sendable, Equatable {
    /// The main convolution's name, e.g. `layer3.0.conv2`.
    public var layer: String
    /// `res3` ... `res5`, or the pooling's name.
    public var stage: String
    public var statistics: [String: Double]
}

extension TrainableModel {
    /// The parts that move their sampling points: the backbone's deformable convolutions and a
    /// detector's deformable RoI pooling (none in a regular network).
    public var deformationSources: [DeformationSource] {
        switch self {
        case let classifier as ImageClassifier: return classifier.network.deformableLayers
        case let detector as GeneralizedRCNN:
            let pooling = detector.boxHead.extractor
            return detector.backbone.deformableLayers + ([.dpool, .mdpool].contains(pooling.kind) ? [pooling] : [])
        default: return []
        }
    }
}

/// Records the deformation of one training step: `start` before the forward passes, `finish`
/// after the update.
public struct DeformationRecorder {
    let models: [TrainableModel]
    /// Seconds the last `finish` and its tallies took (summed over the threads that tallied).
    public private(set) var seconds = 0.0
    private var offsetWeights: [[Float]] = []

    /// Starts a tally in every deformation source of `models` (the trained model first, then its
    /// replicas) and keeps the offset branches' weights before the update.
    public init(models: [TrainableModel]) {
        self.models = models
        for model in models { for source in model.deformationSources { source.tally = DeformationTally() } }
        offsetWeights = models[0].deformationSources.map { $0.offsetBranchParameters.flatMap(\.value.data) }
    }

    /// Each layer's statistics over every replica's images, with `update_ratio`: |w_after - w_before|
    /// / |w_after| over the offset branch's weights and bias (L2 norms). Ends the tallies.
    public mutating func finish() -> [LayerDeformation] {
        let start = DispatchTime.now().uptimeNanoseconds
        let layers = models.map(\.deformationSources)
        var tallied = 0.0
        var out: [LayerDeformation] = []
        for (j, layer) in layers[0].enumerated() {
            var tally = DeformationTally()
            for replica in layers {
                if let t = replica[j].tally { tally.merge(t); tallied += t.seconds }
                replica[j].tally = nil
            }
            var statistics = Dictionary(tally.summary(inputStride: layer.inputStride).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            let after = layer.offsetBranchParameters.flatMap(\.value.data)
            var change = 0.0, size = 0.0
            for (a, b) in zip(after, offsetWeights[j]) {
                change += Double(a - b) * Double(a - b)
                size += Double(a) * Double(a)
            }
            statistics["update_ratio"] = size > 0 ? (change / size).squareRoot() : 0
            out.append(LayerDeformation(layer: layer.deformationName, stage: stageLabel(ofLayerNamed: layer.deformationName), statistics: statistics))
        }
        seconds = tallied + Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return out
    }
}
