// The mask branch of Mask R-CNN on the paper's single-scale detector: on the box head's reduced
// 256-channel res5 map, aligned RoI pooling at 14x14 -> 4 x (3x3 conv + ReLU) -> 2x2 stride-2
// transposed conv + ReLU -> 1x1 conv to one 28x28 logit map per class (or one, class-agnostic).
// Trained on the positive RoIs only with per-pixel sigmoid cross-entropy on the ground-truth
// class's map (detectron2's mask_rcnn_loss: the mean over RoIs and pixels); targets are each RoI's
// matched instance polygons rasterised inside the RoI box (detectron2's convention, see
// `maskTargets`).
import DCNAnnotations
import DCNOps
import DCNTensor

/// The mask branch's settings. They have no defaults here: the `mask` section's are the only ones
/// (`MaskHeadSpec(_: MaskConfig)` in DCNConfig maps it).
public struct MaskHeadSpec: RoIBranchSpec, Equatable {
    /// RoI features are pooledSize x pooledSize (aligned RoI pooling); the masks twice that.
    public var pooledSize: Int
    /// Sample points per bin and axis of the RoI pooling.
    public var samplingRatio: Int
    /// The 3x3 convs and their width.
    public var convs: Int
    public var convDim: Int
    /// One mask for all classes instead of one per class.
    public var classAgnostic: Bool
    /// Weight of the mask loss in the total.
    public var lossWeight: Float

    public init(pooledSize: Int, samplingRatio: Int, convs: Int, convDim: Int, classAgnostic: Bool, lossWeight: Float) {
        self.pooledSize = pooledSize; self.samplingRatio = samplingRatio; self.convs = convs; self.convDim = convDim
        self.classAgnostic = classAgnostic; self.lossWeight = lossWeight
    }

    /// Side of the predicted masks.
    public var maskSize: Int { 2 * pooledSize }

    /// Pools from the box head's reduced map.
    public func build(_ context: RoIBranchContext, rng: inout SeededGenerator) throws -> RoIBranch {
        MaskHead(spec: self, input: context.shapes[BoxHead.reducedMap]!, classes: context.classes, rng: &rng)
    }
}

public final class MaskHead: RoIBranch {
    public let spec: MaskHeadSpec
    public let classes: Int
    /// Channels and stride of the map the masks are pooled from.
    public let input: ShapeSpec
    public let convs: [ConvLayer]
    public let deconv: ConvTransposeLayer
    public let predictor: ConvLayer

    public init(spec: MaskHeadSpec, input: ShapeSpec, classes: Int, prefix: String = "roi_heads.mask_head.", rng: inout SeededGenerator) {
        self.spec = spec
        self.classes = classes
        self.input = input
        // He (fan-out) initialisation of the convs and the transposed conv, 0.001-std predictor
        // (detectron2's MaskRCNNConvUpsampleHead).
        var convs: [ConvLayer] = [], channels = input.channels
        for i in stride(from: 1, through: spec.convs, by: 1) {
            convs.append(ConvLayer(name: prefix + "mask_fcn\(i)", channels, spec.convDim, kernel: 3, padding: 1, bias: true,
                                   weightInit: .kaimingNormalFanOut, rng: &rng))
            channels = spec.convDim
        }
        self.convs = convs
        deconv = ConvTransposeLayer(name: prefix + "deconv", channels, spec.convDim, kernel: 2, stride: 2, rng: &rng)
        predictor = ConvLayer(name: prefix + "predictor", spec.convDim, spec.classAgnostic ? 1 : classes, kernel: 1,
                              bias: true, weightInit: .normal(std: 0.001), rng: &rng)
    }

    public var phase: String { "mask" }
    public var parameterGroups: [(name: String, parameters: [Parameter])] {
        [("mask head", convs.flatMap(\.parameters) + deconv.parameters + predictor.parameters)]
    }
    public var losses: LossGroup { LossGroup(title: "mask loss", names: ["mask"]) }
    public var addition: DetectionAddition? { .mask(size: spec.maskSize) }

    public func validate(_ targets: [Instances]) throws {
        for (i, t) in targets.enumerated() {
            try require(t.hasMasks, "Mask R-CNN: image \(i) of the batch has objects without a mask (polygon segmentation); the mask branch needs one per object")
        }
    }

    var poolOptions: RoIAlignOptions {
        RoIAlignOptions(outputHeight: spec.pooledSize, outputWidth: spec.pooledSize, spatialScale: 1 / Double(input.stride),
                        samplingRatio: spec.samplingRatio, aligned: true)
    }

    /// Mask logits `[K, classes or 1, M, M]` of `rois` `[K, 5]` on the reduced map; backward takes
    /// dLogits and returns the gradient of the reduced map.
    func logits(_ reduced: Tensor, rois: Tensor, _ ws: Workspace) throws -> TrainingPass<Tensor, Tensor, Tensor> {
        let pooled = try roiAlignForward(input: reduced, rois: rois, options: poolOptions)
        var inputs: [Tensor] = [], x = pooled
        for conv in convs {
            inputs.append(x)
            x = try conv.forward(x, ws)
            reluForwardInPlace(&x)
        }
        let deconvInput = x
        var up = try deconv.forward(x, ws)
        reluForwardInPlace(&up)
        let out = try predictor.forward(up, ws)
        return TrainingPass(output: out) { dOut in
            let dUp = try self.predictor.backward(dOut, input: up, wantInput: true, ws)!
            var d = Tensor(zeros: up.shape)
            try reluBackward(dInput: &d, dOutput: dUp, output: up)
            var dx = try self.deconv.backward(d, input: deconvInput, wantInput: true, ws)!
            var output = deconvInput
            for (conv, input) in zip(self.convs, inputs).reversed() {
                d = Tensor(zeros: output.shape)
                try reluBackward(dInput: &d, dOutput: dx, output: output)
                dx = try conv.backward(d, input: input, wantInput: true, ws)!
                output = input
            }
            var dReduced = Tensor(zeros: reduced.shape)
            try roiAlignBackward(dInput: &dReduced, dOutput: dx, rois: rois, options: self.poolOptions)
            return dReduced
        }
    }

    /// The mask branch's training pass on the positive sampled RoIs, on the box head's reduced map:
    /// loss `mask`; publishes nothing; backward returns the reduced map's gradient (zeros when no
    /// RoI is positive).
    public func trainingPass(_ input: RoIBranchInput, rngs: inout [SeededGenerator], _ ws: Workspace) throws
        -> TrainingPass<FeatureMaps, FeatureMaps, FeatureMaps> {
        let reduced = input.features[BoxHead.reducedMap]!, sampled = input.sampled, targets = input.targets
        let pass = try trainingPass(reduced, sampled: sampled, targets: targets, ws)
        return TrainingPass(output: FeatureMaps(), losses: pass.losses, normaliser: pass.normaliser) { _ in
            FeatureMaps([BoxHead.reducedMap: try pass.backward(())])
        }
    }

    func trainingPass(_ reduced: Tensor, sampled: SampledRoIs, targets: [Instances],
                      _ ws: Workspace) throws -> TrainingPass<Void, Void, Tensor> {
        let positive = sampled.labels.indices.filter { sampled.labels[$0] > 0 }
        if positive.isEmpty {
            return TrainingPass(output: (), losses: ["mask": 0], normaliser: LossNormaliser(count: 0)) { Tensor(zeros: reduced.shape) }
        }
        var rois: [Float] = []
        for r in positive { rois += (0..<5).map { sampled.rois.data[r * 5 + $0] } }
        let roiTensor = try Tensor(shape: [positive.count, 5], data: rois)
        let pass = try logits(reduced, rois: roiTensor, ws)
        let m = spec.maskSize, plane = m * m
        // The ground-truth class's map of each RoI against its target.
        var selected = Tensor(zeros: [positive.count, plane]), wanted = Tensor(zeros: [positive.count, plane])
        let channels = pass.output.dim(1)
        var channelOf: [Int] = []
        for (k, r) in positive.enumerated() {
            let channel = spec.classAgnostic ? 0 : sampled.labels[r] - 1
            channelOf.append(channel)
            let base = (k * channels + channel) * plane
            for i in 0..<plane { selected.data[k * plane + i] = pass.output.data[base + i] }
            let instance = targets[sampled.image[r]]
            let target = try maskTarget(polygons: instance.polygons[sampled.matched[r]], box: sampled.boxes[r], size: m)
            for i in 0..<plane { wanted.data[k * plane + i] = target[i] }
        }
        let loss = try sigmoidBinaryCrossEntropyLoss(logits: selected, targets: wanted) * spec.lossWeight
        // The loss is a mean over the positive RoIs (and their pixels).
        let normaliser = LossNormaliser(count: positive.count)
        return TrainingPass(output: (), losses: ["mask": loss], normaliser: normaliser) {
            var dSelected = Tensor(zeros: selected.shape)
            try sigmoidBinaryCrossEntropyBackward(dLogits: &dSelected, logits: selected, targets: wanted,
                                                  gradOutput: self.spec.lossWeight * normaliser.share)
            var dLogits = Tensor(zeros: pass.output.shape)
            for (k, channel) in channelOf.enumerated() {
                let base = (k * channels + channel) * plane
                for i in 0..<plane { dLogits.data[base + i] = dSelected.data[k * plane + i] }
            }
            return try pass.backward(dLogits)
        }
    }

    /// Each detection's mask over its box, from the box head's reduced map.
    public func annotate(_ detections: inout [[Detection]], features: FeatureMaps, _ ws: Workspace) throws {
        let masks = try predict(features[BoxHead.reducedMap]!, detections: detections, ws)
        for n in detections.indices { for k in detections[n].indices { detections[n][k].mask = masks[n][k] } }
    }

    /// Mask probabilities (sigmoid of the predicted class's map, `maskSize` x `maskSize`, row-major)
    /// of each detection, per image, in the order of `detections`.
    public func predict(_ reduced: Tensor, detections: [[Detection]], _ ws: Workspace) throws -> [[[Float]]] {
        var rois: [Float] = [], labels: [Int] = []
        for (n, ds) in detections.enumerated() {
            rois += ds.map(\.box).rois(batchIndex: n)
            labels += ds.map(\.label)
        }
        if labels.isEmpty { return detections.map { _ in [] } }
        let out = try logits(reduced, rois: try Tensor(shape: [labels.count, 5], data: rois), ws).output
        let m = spec.maskSize, plane = m * m, channels = out.dim(1)
        var result: [[[Float]]] = [], k = 0
        for ds in detections {
            var masks: [[Float]] = []
            for _ in ds {
                let base = (k * channels + (spec.classAgnostic ? 0 : labels[k] - 1)) * plane
                masks.append((0..<plane).map { sigmoid(out.data[base + $0]) })
                k += 1
            }
            result.append(masks)
        }
        return result
    }

    /// Multiply-adds at test time: the mask branch runs on the final detections.
    public func cost(shapes: [String: [Int]], proposals: Int, detections: Int) throws -> [(String, Int)] {
        var counter = CostCounter()
        var shape = [detections, input.channels, spec.pooledSize, spec.pooledSize]
        for conv in convs { shape = try conv.cost(shape, &counter) }
        shape = try deconv.cost(shape, &counter)
        _ = try predictor.cost(shape, &counter)
        return [("mask head", counter.multiplyAdds)]
    }
}

/// The training target of one RoI: its instance's polygons rasterised inside `box` at
/// `size` x `size` (0/1, row-major; detectron2's rasterize_polygons_within_box).
func maskTarget(polygons: [[Float]], box: Box, size: Int) throws -> [Float] {
    try polygonMaskTarget(polygons: polygons.map { $0.map(Double.init) }, box: MaskBox(x0: box.x1, y0: box.y1, x1: box.x2, y1: box.y2),
                          maskSize: size)
}
