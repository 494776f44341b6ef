// R-CNN feature mimicking (the paper's section 3.3, Table 3): chosen sampled RoIs are cropped
// from the input image, resized to a patch and run through the same backbone and 2fc head; a
// cosine loss pulls the detector's 2fc features of those RoIs towards the patch features, and a
// classifier on the patch features is trained with cross-entropy. Training only.
import DCNOps
import DCNTensor

/// Which sampled RoIs the R-CNN feature mimicking uses (the paper's Table 3).
public enum MimicRegions: String, Sendable, Codable, CaseIterable {
    case off
    /// Foreground RoIs (IoU >= 0.5): the paper's default.
    case fg
    case bg
    case all
}

/// The mimic branch's settings. They have no defaults here: the `mimic` section's are the only ones
/// (`MimicSpec(_: MimicConfig)` in DCNConfig maps it).
public struct MimicSpec: RoIBranchSpec, Equatable {
    public var regions: MimicRegions
    /// Most RoIs per image cropped, and the side of their square patches.
    public var roisPerImage: Int
    public var patchSize: Int
    /// Weights of the mimic loss and of the patch classifier's loss.
    public var lossWeight: Float
    public var classificationLossWeight: Float

    public init(regions: MimicRegions, roisPerImage: Int, patchSize: Int, lossWeight: Float, classificationLossWeight: Float) {
        self.regions = regions; self.roisPerImage = roisPerImage; self.patchSize = patchSize
        self.lossWeight = lossWeight; self.classificationLossWeight = classificationLossWeight
    }

    /// Runs the detector's own backbone and box head on the patches.
    public func build(_ context: RoIBranchContext, rng: inout SeededGenerator) throws -> RoIBranch {
        MimicBranch(spec: self, backbone: context.backbone, head: context.box, classes: context.classes, rng: &rng)
    }
}

public final class MimicBranch: RoIBranch {
    public let spec: MimicSpec
    let classifier: LinearLayer
    let backbone: ResNet
    let head: BoxHead

    init(spec: MimicSpec, backbone: ResNet, head: BoxHead, classes: Int, rng: inout SeededGenerator) {
        self.spec = spec
        self.backbone = backbone
        self.head = head
        classifier = LinearLayer(name: "roi_heads.mimic_cls_score", head.spec.fcDim, classes + 1, weightInit: .normal(std: 0.01), rng: &rng)
    }

    public var phase: String { "mimic" }
    public var parameterGroups: [(name: String, parameters: [Parameter])] { [("mimic classifier", classifier.parameters)] }
    public var losses: LossGroup { LossGroup(title: "mimic losses", names: ["mimic", "mimic_cls"]) }

    /// The training pass: losses `mimic` (weighted mean of 1 - cos(f_RCNN, f_FRCNN)) and `mimic_cls`,
    /// on the box head's 2fc features of the sampled RoIs ([K, fcDim]); publishes nothing. Backward
    /// runs the patch path back through the shared head and backbone and returns the gradient of
    /// the box head's features.
    public func trainingPass(_ input: RoIBranchInput, rngs: inout [SeededGenerator], _ ws: Workspace) throws
        -> TrainingPass<FeatureMaps, FeatureMaps, FeatureMaps> {
        let images = input.images, sampled = input.sampled
        let detectorFeatures = input.features[BoxHead.roiFeatures]!
        let chosen = choose(sampled, images: images.dim(0), rngs: &rngs)
        guard !chosen.isEmpty else {
            return TrainingPass(output: FeatureMaps(), losses: ["mimic": 0, "mimic_cls": 0], normaliser: LossNormaliser(count: 0)) { _ in
                FeatureMaps([BoxHead.roiFeatures: Tensor(zeros: detectorFeatures.shape)])
            }
        }
        let m = chosen.count, p = spec.patchSize, dim = detectorFeatures.dim(1)

        // Crop and resize each RoI from the input image (RoIAlign at scale 1, adaptive sampling),
        // then f_RCNN: the backbone and the 2fc head on the whole patch.
        var rois: [Float] = []
        for r in chosen { rois += [Float(sampled.image[r]), sampled.boxes[r].x1, sampled.boxes[r].y1, sampled.boxes[r].x2, sampled.boxes[r].y2] }
        let patches = try roiAlignForward(input: images, rois: try Tensor(shape: [m, 5], data: rois),
                                          options: RoIAlignOptions(outputHeight: p, outputWidth: p, spatialScale: 1, samplingRatio: 0, aligned: true))
        let backbonePass = try backbone.trainingPass(patches, ws)
        var wholePatch: [Float] = []
        for i in 0..<m { wholePatch += [Float(i), 0, 0, Float(p), Float(p)] }
        let embedding = try head.embed(backbonePass.output, rois: try Tensor(shape: [m, 5], data: wholePatch), ws)
        let patchFeatures = embedding.output

        // f_FRCNN of the chosen RoIs.
        var detectorRows = Tensor(zeros: [m, dim])
        for (i, r) in chosen.enumerated() { for j in 0..<dim { detectorRows.data[i * dim + j] = detectorFeatures.data[r * dim + j] } }
        let labels = chosen.map { sampled.labels[$0] }
        let logits = try classifier.forward(patchFeatures)
        let classification = try softmaxCrossEntropyLoss(logits: logits, labels: labels)
        let cosine = try cosineMimicLoss(a: patchFeatures, b: detectorRows)
        let losses = ["mimic": spec.lossWeight * cosine, "mimic_cls": spec.classificationLossWeight * classification]
        // Both losses are means over the chosen RoIs.
        let normaliser = LossNormaliser(count: m)

        return TrainingPass(output: FeatureMaps(), losses: losses, normaliser: normaliser) { _ in
            var dLogits = Tensor(zeros: logits.shape)
            try softmaxCrossEntropyBackward(dLogits: &dLogits, logits: logits, labels: labels,
                                            gradOutput: self.spec.classificationLossWeight * normaliser.share)
            var dPatch = try self.classifier.backward(dLogits, input: patchFeatures, wantInput: true)!
            var dRows = Tensor(zeros: detectorRows.shape)
            try cosineMimicBackward(dA: &dPatch, dB: &dRows, a: patchFeatures, b: detectorRows, gradOutput: self.spec.lossWeight * normaliser.share)
            var dDetector = Tensor(zeros: detectorFeatures.shape)
            for (i, r) in chosen.enumerated() { for j in 0..<dim { dDetector.data[r * dim + j] += dRows.data[i * dim + j] } }
            try backbonePass.backward(try embedding.backward(dPatch))
            return FeatureMaps([BoxHead.roiFeatures: dDetector])
        }
    }

    /// Up to `roisPerImage` sampled RoIs of each image in the chosen regions, image n's drawn from `rngs[n]`.
    func choose(_ sampled: SampledRoIs, images: Int, rngs: inout [SeededGenerator]) -> [Int] {
        var chosen: [Int] = []
        for image in 0..<images {
            var candidates = sampled.labels.indices.filter { r in
                guard sampled.image[r] == image else { return false }
                switch spec.regions {
                case .fg: return sampled.labels[r] > 0
                case .bg: return sampled.labels[r] == 0
                case .all: return true
                case .off: return false
                }
            }
            partialShuffle(&candidates, count: spec.roisPerImage, rng: &rngs[image])
            chosen += candidates.prefix(spec.roisPerImage)
        }
        return chosen
    }
}
