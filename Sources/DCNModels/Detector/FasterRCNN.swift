// The paper's detector: a ResNet with res5 (stride 1, dilation 2) run on the whole image, an RPN on
// res4, the RoI head on res5, and R-CNN feature mimicking during training. Training returns named
// losses and leaves their gradients in the parameters; inference returns detections.
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

public struct MimicSpec: Sendable, Equatable {
    public var regions: MimicRegions = .off
    public var roisPerImage = 32
    public var patchSize = 224
    public var lossWeight: Float = 0.1
    public var classificationLossWeight: Float = 0.1
    public init() {}
}

public struct DetectorSpec: Sendable, Equatable {
    public var backbone: ResNetSpec
    public var rpn: RPNSpec
    public var roiHead: RoIHeadSpec
    public var mimic: MimicSpec

    public init(backbone: ResNetSpec, rpn: RPNSpec = RPNSpec(), roiHead: RoIHeadSpec, mimic: MimicSpec = MimicSpec()) {
        self.backbone = backbone; self.rpn = rpn; self.roiHead = roiHead; self.mimic = mimic
    }
}

/// Names of the training losses, in reporting order.
public let lossNames = ["rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box", "mimic", "mimic_cls"]

public final class FasterRCNN {
    public let spec: DetectorSpec
    public let backbone: ResNet
    public let rpn: RPN
    public let roiHead: RoIHead
    let mimicClassifier: LinearLayer?
    public private(set) var parameters = ParameterList()

    public init(spec: DetectorSpec, seed: UInt64 = 0) throws {
        var s = spec
        s.backbone.classes = nil
        s.rpn.inChannels = s.backbone.stageChannels[2]
        s.roiHead.inChannels = s.backbone.stageChannels[3]
        s.roiHead.featureStride = s.backbone.stageStrides[3]
        try require(s.rpn.anchors.stride == s.backbone.stageStrides[2], "detector: anchor stride \(s.rpn.anchors.stride) must equal the res4 stride \(s.backbone.stageStrides[2])")
        try require(s.roiHead.classes >= 1, "detector: needs at least one class")
        self.spec = s
        backbone = try ResNet(spec: s.backbone, prefix: "backbone.", seed: seed)
        var rng = SeededGenerator(seed: seed &+ 1)
        rpn = RPN(spec: s.rpn, rng: &rng)
        roiHead = RoIHead(spec: s.roiHead, rng: &rng)
        mimicClassifier = s.mimic.regions == .off ? nil :
            LinearLayer(name: "roi_heads.mimic_cls_score", s.roiHead.fcDim, s.roiHead.classes + 1, weightInit: .normal(std: 0.01), rng: &rng)
        var list = backbone.parameters
        list.append(contentsOf: rpn.parameters + roiHead.headParameters + roiHead.poolingParameters)
        if let mimicClassifier { list.append(contentsOf: mimicClassifier.parameters) }
        parameters = list
    }

    /// Parameters grouped as the summary reports them.
    public var parameterGroups: [(name: String, parameters: [Parameter])] {
        let offsets = backbone.offsetParameters
        let offsetNames = Set(offsets.map(\.name))
        return [
            ("backbone", backbone.parameters.all.filter { !offsetNames.contains($0.name) }),
            ("offset branches", offsets),
            ("rpn", rpn.parameters),
            ("head", roiHead.headParameters),
            ("roi pooling branch", roiHead.poolingParameters),
            ("mimic classifier", mimicClassifier?.parameters ?? []),
        ]
    }

    // MARK: - Training

    /// One forward and backward pass: returns the weighted named losses and adds their gradients
    /// into the parameters (call `parameters.zeroGrad()` first). `fixedProposals` replaces the RPN's
    /// proposals (for gradient checks); the sampling draws from `rng`.
    /// `images` `[N, 3, H, W]` are normalised and padded; `sizes` are the images' sizes inside the padding.
    public func trainStep(images: Tensor, sizes: [ImageSize], targets: [ImageTargets], rng: inout SeededGenerator, _ ws: Workspace,
                          fixedProposals: [[Box]]? = nil, profiler: PhaseProfiler? = nil) throws -> [String: Float] {
        let n = images.dim(0)
        try require(targets.count == n && sizes.count == n, "detector: \(n) images, \(targets.count) targets, \(sizes.count) sizes")
        for (i, t) in targets.enumerated() {
            try require(t.boxes.count == t.labels.count, "detector: image \(i) has \(t.boxes.count) boxes and \(t.labels.count) labels")
            try require(t.labels.allSatisfy { (1...spec.roiHead.classes).contains($0) }, "detector: image \(i) has a label outside 1...\(spec.roiHead.classes)")
        }
        var losses: [String: Float] = [:]
        let (features, backboneCache) = try profiler.measure("backbone fwd") { try backbone.forward(images, training: true, ws) }
        let res4 = features["res4"]!, res5 = features["res5"]!

        // RPN.
        let (rpnOut, rpnLoss, proposals) = try profiler.measure("rpn fwd") {
            let out = try rpn.forward(res4, ws)
            let loss = try rpn.losses(out, targets: targets, rng: &rng)
            return (out, loss, try fixedProposals ?? rpn.proposals(out, imageSizes: sizes, training: true))
        }
        losses["rpn_cls"] = rpnLoss.objectness
        losses["rpn_box"] = rpnLoss.box

        // Fast R-CNN head on the sampled RoIs.
        let (reduced, head, headLoss) = try profiler.measure("head fwd") {
            let sampled = roiHead.sample(proposals: proposals, targets: targets, rng: &rng)
            let reduced = try roiHead.reduceFeatures(res5, ws)
            let head = try roiHead.features(reduced: reduced, rois: sampled.rois)
            let (logits, deltas) = try roiHead.predict(head)
            return (reduced, (head, sampled), try roiHead.losses(logits: logits, deltas: deltas, sampled: sampled))
        }
        losses["rcnn_cls"] = headLoss.classification
        losses["rcnn_box"] = headLoss.box
        var dHidden = try profiler.measure("head bwd") {
            try roiHead.predictBackward(dLogits: headLoss.dLogits, dDeltas: headLoss.dDeltas, head.0)
        }

        // R-CNN feature mimicking: the same network on cropped RoIs.
        if mimicClassifier != nil {
            let m = try profiler.measure("mimic fwd+bwd") {
                try mimic(images: images, sampled: head.1, detectorFeatures: head.0.hidden2, rng: &rng, ws)
            }
            losses["mimic"] = m.loss
            losses["mimic_cls"] = m.classificationLoss
            dHidden.add(m.dDetectorFeatures)
        }

        let dRes5 = try profiler.measure("head bwd") {
            var dReduced = Tensor(zeros: reduced.shape)
            try roiHead.featuresBackward(dHidden, head.0, dReduced: &dReduced)
            return try roiHead.reduceBackward(dReduced, reduced: reduced, res5: res5, ws)
        }
        let dRes4 = try profiler.measure("rpn bwd") {
            try rpn.backward(dLogits: rpnLoss.dLogits, dDeltas: rpnLoss.dDeltas, output: rpnOut, wantInput: true, ws)!
        }
        try profiler.measure("backbone bwd") {
            try backbone.backward(FeatureMaps(["res4": dRes4, "res5": dRes5]), cache: backboneCache!, ws)
        }
        return losses
    }

    /// The mimic branch's losses; adds the gradients of its own path (patch backbone pass, shared
    /// head, classifier) and returns the gradient for the detector's 2fc features.
    func mimic(images: Tensor, sampled: SampledRoIs, detectorFeatures: Tensor, rng: inout SeededGenerator, _ ws: Workspace)
        throws -> (loss: Float, classificationLoss: Float, dDetectorFeatures: Tensor) {
        let ms = spec.mimic
        var chosen: [Int] = []
        for image in 0..<images.dim(0) {
            var candidates = sampled.labels.indices.filter { r in
                guard sampled.image[r] == image else { return false }
                switch ms.regions {
                case .fg: return sampled.labels[r] > 0
                case .bg: return sampled.labels[r] == 0
                case .all: return true
                case .off: return false
                }
            }
            partialShuffle(&candidates, count: ms.roisPerImage, rng: &rng)
            chosen += candidates.prefix(ms.roisPerImage)
        }
        var dDetector = Tensor(zeros: detectorFeatures.shape)
        guard !chosen.isEmpty, let classifier = mimicClassifier else { return (0, 0, dDetector) }
        let m = chosen.count, p = ms.patchSize, dim = detectorFeatures.dim(1)

        // Crop and resize each RoI from the input image (RoIAlign at scale 1, adaptive sampling).
        var rois: [Float] = []
        for r in chosen { rois += [Float(sampled.image[r]), sampled.boxes[r].x1, sampled.boxes[r].y1, sampled.boxes[r].x2, sampled.boxes[r].y2] }
        let patches = try roiAlignForward(input: images, rois: try Tensor(shape: [m, 5], data: rois),
                                          options: RoIAlignOptions(outputHeight: p, outputWidth: p, spatialScale: 1, samplingRatio: 0, aligned: true))
        let (features, cache) = try backbone.forward(patches, training: true, ws)
        let res5 = features["res5"]!
        let reduced = try roiHead.reduceFeatures(res5, ws)
        var wholePatch: [Float] = []
        for i in 0..<m { wholePatch += [Float(i), 0, 0, Float(p), Float(p)] }
        let head = try roiHead.features(reduced: reduced, rois: try Tensor(shape: [m, 5], data: wholePatch))

        // f_FRCNN of the chosen RoIs.
        var detectorRows = Tensor(zeros: [m, dim])
        for (i, r) in chosen.enumerated() { for j in 0..<dim { detectorRows.data[i * dim + j] = detectorFeatures.data[r * dim + j] } }
        let labels = chosen.map { sampled.labels[$0] }
        let logits = try classifier.forward(head.hidden2)
        let classification = try softmaxCrossEntropyLoss(logits: logits, labels: labels)
        let cosine = try cosineMimicLoss(a: head.hidden2, b: detectorRows)

        var dLogits = Tensor(zeros: logits.shape)
        try softmaxCrossEntropyBackward(dLogits: &dLogits, logits: logits, labels: labels, gradOutput: ms.classificationLossWeight)
        var dPatch = try classifier.backward(dLogits, input: head.hidden2, wantInput: true)!
        var dRows = Tensor(zeros: detectorRows.shape)
        try cosineMimicBackward(dA: &dPatch, dB: &dRows, a: head.hidden2, b: detectorRows, gradOutput: ms.lossWeight)
        for (i, r) in chosen.enumerated() { for j in 0..<dim { dDetector.data[r * dim + j] += dRows.data[i * dim + j] } }

        var dReduced = Tensor(zeros: reduced.shape)
        try roiHead.featuresBackward(dPatch, head, dReduced: &dReduced)
        let dRes5 = try roiHead.reduceBackward(dReduced, reduced: reduced, res5: res5, ws)
        try backbone.backward(FeatureMaps(["res5": dRes5]), cache: cache!, ws)
        return (ms.lossWeight * cosine, ms.classificationLossWeight * classification, dDetector)
    }

    // MARK: - Inference

    /// Detections per image in the padded batch's pixel coordinates (divide by the resize scale
    /// to get back to the original image).
    public func detect(images: Tensor, sizes: [ImageSize], _ ws: Workspace) throws -> [[Detection]] {
        let (features, _) = try backbone.forward(images, training: false, ws)
        let rpnOut = try rpn.forward(features["res4"]!, ws)
        let proposals = try rpn.proposals(rpnOut, imageSizes: sizes, training: false)
        var rois: [Float] = []
        for (n, boxes) in proposals.enumerated() { rois += boxes.rois(batchIndex: n) }
        let count = rois.count / 5
        if count == 0 { return proposals.map { _ in [] } }
        let res5 = features["res5"]!
        let reduced = try roiHead.reduceFeatures(res5, ws)
        let head = try roiHead.features(reduced: reduced, rois: try Tensor(shape: [count, 5], data: rois))
        let (logits, deltas) = try roiHead.predict(head)
        return try roiHead.detections(logits: logits, deltas: deltas, proposals: proposals, imageSizes: sizes)
    }

    // MARK: - Summary

    /// Parameters per component and multiply-adds at test time for one `height x width` image
    /// (RoI head at the RPN's test-time proposal count).
    public func summary(height: Int, width: Int) throws -> (parameters: [(String, Int)], multiplyAdds: [(String, Int)]) {
        let params = parameterGroups.map { ($0.name, $0.parameters.filter { !$0.isBuffer }.reduce(0) { $0 + $1.count }) }
        let (shapes, backboneMACs) = try backbone.cost(inputShape: [1, 3, height, width])
        var rpnCounter = CostCounter()
        try rpn.cost(shapes["res4"]!, &rpnCounter)
        var headCounter = CostCounter()
        try roiHead.cost(res5Shape: shapes["res5"]!, rois: spec.rpn.postNMSTopKTest, &headCounter)
        return (params, [("backbone", backboneMACs), ("rpn", rpnCounter.multiplyAdds), ("head", headCounter.multiplyAdds)])
    }
}
