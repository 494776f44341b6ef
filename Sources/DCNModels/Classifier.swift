// The ImageNet-style classifier of Table 6: a ResNet / ResNeXt (regular, DCNv1 or DCNv2 stages)
// with global average pooling and a linear layer, trained with (label-smoothed) softmax
// cross-entropy. Its backbone weights seed a detector (Table 7's pretraining).
import DCNOps
import DCNTensor

public final class ImageClassifier {
    /// The network, its `classes` set (global pooling + fc `fc.weight`, `fc.bias`, torchvision's names).
    public let network: ResNet
    public let labelSmoothing: Float
    public var parameters: ParameterList { network.parameters }
    public let lossGroups = [LossGroup(title: "losses", names: ["cls"])]
    public var classes: Int { network.spec.classes ?? 0 }

    /// `spec.classes` must be set. Parameter names are torchvision's (`conv1.weight`, `layer1.0.conv1.weight`, `fc.weight`).
    public init(spec: ResNetSpec, labelSmoothing: Float = 0, seed: UInt64 = 0) throws {
        try require((spec.classes ?? 0) >= 1, "classifier: the network needs a class count")
        network = try ResNet(spec: spec, prefix: "", seed: seed)
        self.labelSmoothing = labelSmoothing
    }

    /// One forward and backward pass on `images` [N, 3, H, W] with class indices `labels`
    /// (0-based): loss `cls`, the mean over the global batch (see `StepShare`).
    public func trainStep(images: Tensor, labels: [Int], share: StepShare, _ ws: Workspace) throws -> [String: Float] {
        try require(labels.count == images.dim(0), "classifier: \(labels.count) labels for \(images.dim(0)) images")
        let finished: GradientsFinished = { share.collective?.gradientsFinished($0) }
        let pass = try network.trainingPass(images, ws, finished: finished)
        let logits = pass.output["logits"]!
        let options = CrossEntropyOptions(labelSmoothing: labelSmoothing)
        let loss = try softmaxCrossEntropyLoss(logits: logits, labels: labels, options: options)
        let normaliser = LossNormaliser(count: labels.count)
        var losses = ["cls": loss]
        if let collective = share.collective { losses = try globalLosses([(losses, normaliser)], collective) }
        var dLogits = Tensor(zeros: logits.shape)
        try softmaxCrossEntropyBackward(dLogits: &dLogits, logits: logits, labels: labels, options: options, gradOutput: normaliser.share)
        try pass.backward(FeatureMaps(["logits": dLogits]))
        return losses
    }

    /// Class scores (logits) of `images`, batch norm in inference mode.
    public func logits(_ images: Tensor, _ ws: Workspace) throws -> Tensor {
        let (features, _) = try network.forward(images, training: false, ws)
        return features["logits"]!
    }

    /// Parameters per component (backbone, offset branches, classifier) and multiply-adds of one
    /// image at `size` x `size` (the backbone's include its offset branches and sampling).
    public func summary(size: Int) throws -> (parameters: [(String, Int)], multiplyAdds: [(String, Int)]) {
        let offsets = Set(network.offsetParameters.map(\.name))
        func count(_ ps: [Parameter]) -> Int { ps.filter { !$0.isBuffer }.reduce(0) { $0 + $1.count } }
        let all = network.parameters.all
        let parameters = [
            ("backbone", count(all.filter { !offsets.contains($0.name) && !$0.name.hasPrefix("fc.") })),
            ("offset branches", count(all.filter { offsets.contains($0.name) })),
            ("classifier", count(all.filter { $0.name.hasPrefix("fc.") })),
        ]
        let cost = try network.cost(inputShape: [1, 3, size, size])
        let classifier = parameters[2].1 - classes  // one multiply-add per weight; the biases add
        return (parameters, [("backbone", cost.multiplyAdds - classifier), ("classifier", classifier)])
    }
}
