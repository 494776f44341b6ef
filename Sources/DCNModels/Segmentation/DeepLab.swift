// DeepLab as DCNv1 (section 4.1) runs it and DCNv2's Table 7 follows: a ResNet whose res5 keeps
// stride 16 (dilation 2), then on res5 a 1x1 conv to 1024 channels + ReLU ("fc6") and a 1x1 conv
// to one score map per class ("score"), upsampled bilinearly to the input and trained with
// per-pixel softmax cross-entropy over the pixels that have a class (label 255 ignored), the sum
// divided by their count (MSRA's Deformable-ConvNets deeplab symbols, resnet_v1_101_deeplab.py).
// MSRA upsamples with a fixed bilinear deconvolution (kernel 32, stride 16, cropped by 8): the
// same weights as the half-pixel bilinear map here, except within 8 pixels of the border, where
// the deconvolution reads zeros past the edge and this map repeats the edge.
import DCNOps
import DCNTensor

/// The DeepLab head's settings. They have no defaults here: the `segmentation` section's are the only
/// ones (`DeepLabHeadSpec(_: SegmentationConfig)` in DCNConfig maps it).
public struct DeepLabHeadSpec: DenseHeadSpec, Equatable {
    /// Channels of the 1x1 conv + ReLU before the classifier (DCNv1: 1024; 0 = none, the classifier on res5).
    public var hiddenChannels: Int
    /// The backbone map it reads (fixed: res5, DeepLab's).
    public var inFeature = "res5"
    /// Weight of the loss in the total.
    public var lossWeight: Float

    public init(hiddenChannels: Int, lossWeight: Float) { self.hiddenChannels = hiddenChannels; self.lossWeight = lossWeight }

    public func build(shapes: [String: ShapeSpec], classes: Int, rng: inout SeededGenerator) throws -> DenseHead {
        guard let input = shapes[inFeature] else { throw ShapeError("deeplab: the backbone has no map named \(inFeature)") }
        return DeepLabHead(spec: self, input: input, classes: classes, rng: &rng)
    }
}

public final class DeepLabHead: DenseHead {
    public let spec: DeepLabHeadSpec
    /// Score maps: every class, background included.
    public let classes: Int
    public let input: ShapeSpec
    let hidden: ConvLayer?
    let score: ConvLayer

    /// N(0, 0.01) weights and zero biases, as MSRA's `init_weights`.
    public init(spec: DeepLabHeadSpec, input: ShapeSpec, classes: Int, prefix: String = "seg_head.", rng: inout SeededGenerator) {
        self.spec = spec; self.input = input; self.classes = classes
        hidden = spec.hiddenChannels > 0
            ? ConvLayer(name: prefix + "fc6", input.channels, spec.hiddenChannels, kernel: 1, bias: true, weightInit: .normal(std: 0.01), rng: &rng)
            : nil
        score = ConvLayer(name: prefix + "score", hidden?.outChannels ?? input.channels, classes, kernel: 1, bias: true,
                          weightInit: .normal(std: 0.01), rng: &rng)
    }

    public var phase: String { "segmentation head" }
    public var inputFeatures: [String] { [spec.inFeature] }
    public var parameterGroups: [(name: String, parameters: [Parameter])] {
        [("segmentation head", (hidden?.parameters ?? []) + score.parameters)]
    }
    public var losses: LossGroup { LossGroup(title: "segmentation loss", names: ["seg"]) }

    /// The score maps at the feature map's resolution, and the hidden layer's output (for backward).
    func featureScores(_ x: Tensor, _ ws: Workspace) throws -> (scores: Tensor, hidden: Tensor?) {
        guard let hidden else { return (try score.forward(x, ws), nil) }
        var h = try hidden.forward(x, ws)
        reluForwardInPlace(&h)
        return (try score.forward(h, ws), h)
    }

    public func trainingPass(_ input: DenseHeadInput, _ ws: Workspace) throws -> TrainingPass<Void, Void, FeatureMaps> {
        guard let x = input.features[spec.inFeature] else { throw ShapeError("deeplab: no \(spec.inFeature) map in the features") }
        guard let labels = input.pixelLabels else {
            throw ShapeError("deeplab: the batch has no per-pixel labels; semantic segmentation trains on label maps")
        }
        let (coarse, h) = try featureScores(x, ws)
        let logits = try bilinearResizeForward(input: coarse, height: input.height, width: input.width)
        let (sum, count) = try pixelSoftmaxCrossEntropySum(logits: logits, labels: labels)
        let normaliser = LossNormaliser(count: count)
        let loss = count > 0 ? Float(sum / Double(count)) : 0
        return TrainingPass(output: (), losses: ["seg": spec.lossWeight * loss], normaliser: normaliser) { _ in
            var dLogits = Tensor(zeros: logits.shape)
            // d(sum / count) for this process's count, scaled to its share of the global count.
            if count > 0 {
                try pixelSoftmaxCrossEntropyBackward(dLogits: &dLogits, logits: logits, labels: labels,
                                                     gradOutput: self.spec.lossWeight * normaliser.share / Float(count))
            }
            var dCoarse = Tensor(zeros: coarse.shape)
            try bilinearResizeBackward(dInput: &dCoarse, dOutput: dLogits)
            guard let hidden = self.hidden, let h else {
                return FeatureMaps([self.spec.inFeature: try self.score.backward(dCoarse, input: x, wantInput: true, ws)!])
            }
            let dH = try reluGradient(dOutput: try self.score.backward(dCoarse, input: h, wantInput: true, ws)!, output: h)
            return FeatureMaps([self.spec.inFeature: try hidden.backward(dH, input: x, wantInput: true, ws)!])
        }
    }

    public func scores(_ features: FeatureMaps, height: Int, width: Int, inputScale: (y: Double, x: Double)?, _ ws: Workspace) throws -> Tensor {
        guard let x = features[spec.inFeature] else { throw ShapeError("deeplab: no \(spec.inFeature) map in the features") }
        let coarse = try featureScores(x, ws).scores
        // Input pixels per output pixel, over the input pixels per feature pixel.
        let scale = inputScale.map { ResizeScale(y: $0.y / Double(input.stride), x: $0.x / Double(input.stride)) } ?? ResizeScale()
        return try bilinearResizeForward(input: coarse, height: height, width: width, scale: scale)
    }

    public func cost(shapes: [String: [Int]]) throws -> [(String, Int)] {
        guard let shape = shapes[spec.inFeature] else { return [] }
        var counter = CostCounter()
        var s = shape
        if let hidden { s = try hidden.cost(s, &counter) }
        _ = try score.cost(s, &counter)
        return [("segmentation head", counter.multiplyAdds)]
    }
}

// MARK: - The model

/// A semantic segmentation model: the backbone, then one dense head.
public struct SegmenterSpec: Sendable {
    public var backbone: ResNetSpec
    public var head: DenseHeadSpec
    /// Classes with background (VOC: 21), one score map each.
    public var classes: Int
    public init(backbone: ResNetSpec, head: DenseHeadSpec, classes: Int) { self.backbone = backbone; self.head = head; self.classes = classes }
}

public final class SemanticSegmenter {
    public let backbone: ResNet
    public let head: DenseHead
    public let classes: Int
    public private(set) var parameters = ParameterList()

    public init(spec: SegmenterSpec, seed: UInt64 = 0) throws {
        try require(spec.classes >= 2, "segmenter: needs at least 2 classes (background and one), got \(spec.classes)")
        var backboneSpec = spec.backbone
        backboneSpec.classes = nil
        backbone = try ResNet(spec: backboneSpec, prefix: "backbone.", seed: seed)
        var rng = SeededGenerator(seed: seed &+ 1)
        head = try spec.head.build(shapes: backboneSpec.outputShapes, classes: spec.classes, rng: &rng)
        classes = spec.classes
        parameters = backbone.parameters
        parameters.append(contentsOf: head.parameters)
    }

    public var lossGroups: [LossGroup] { [head.losses] }

    /// One forward and backward pass on this process's share of a global batch: `images`
    /// [N, 3, H, W] normalised and padded, `pixelLabels` N x H x W (255: no class). Returns the
    /// global batch's loss and adds its gradients into the parameters.
    public func trainStep(images: Tensor, pixelLabels: [UInt8], share: StepShare, _ ws: Workspace) throws -> [String: Float] {
        try require(pixelLabels.count == images.dim(0) * images.dim(2) * images.dim(3),
                    "segmenter: \(pixelLabels.count) pixel labels for a batch \(images.shape)")
        let finished: GradientsFinished = { share.collective?.gradientsFinished($0) }
        let backbonePass = try backbone.trainingPass(images, ws, finished: finished)
        let input = DenseHeadInput(features: backbonePass.output, height: images.dim(2), width: images.dim(3), targets: [],
                                   pixelLabels: pixelLabels)
        let pass = try head.trainingPass(input, ws)
        var losses = pass.losses
        if let collective = share.collective { losses = try globalLosses([(pass.losses, pass.normaliser)], collective) }
        let gradients = try pass.backward(())
        finished(head.parameters)
        try backbonePass.backward(gradients)
        return losses
    }

    /// Class scores [N, K, height, width] of `images` (batch norm in inference mode); `inputScale`:
    /// input pixels per output pixel (nil: the output is the padded input's grid).
    public func scores(_ images: Tensor, height: Int, width: Int, inputScale: (y: Double, x: Double)? = nil, _ ws: Workspace) throws -> Tensor {
        let (features, _) = try backbone.forward(images, training: false, ws)
        return try head.scores(features, height: height, width: width, inputScale: inputScale, ws)
    }

    /// Parameters per part and multiply-adds of one image `height` x `width`.
    public func summary(height: Int, width: Int) throws -> (parameters: [(String, Int)], multiplyAdds: [(String, Int)]) {
        let offsets = Set(backbone.offsetParameters.map(\.name))
        func count(_ ps: [Parameter]) -> Int { ps.filter { !$0.isBuffer }.reduce(0) { $0 + $1.count } }
        let all = backbone.parameters.all
        let parameters = [("backbone", count(all.filter { !offsets.contains($0.name) })), ("offset branches", count(all.filter { offsets.contains($0.name) }))]
            + head.parameterGroups.map { ($0.name, count($0.parameters)) }
        let cost = try backbone.cost(inputShape: [1, 3, height, width])
        return (parameters, [("backbone", cost.multiplyAdds)] + (try head.cost(shapes: cost.shapes)))
    }
}
