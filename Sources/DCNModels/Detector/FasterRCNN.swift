// The paper's detector, composed of parts with one contract (TrainingPass.swift): a ResNet with
// res5 (stride 1, dilation 2) run on the whole image -> an RPN on res4 -> the box head (RoI
// extractor and 2fc) on res5, plus R-CNN feature mimicking during training, and with a mask
// branch (MaskHead.swift) Mask R-CNN. Training returns named losses and leaves their gradients in
// the parameters; inference returns detections (with masks for Mask R-CNN).
import DCNOps
import DCNTensor

public struct DetectorSpec: Sendable, Equatable {
    public var backbone: ResNetSpec
    public var rpn: RPNSpec
    public var roiHead: RoIHeadSpec
    public var mimic: MimicSpec
    /// The mask branch; nil for Faster R-CNN.
    public var mask: MaskHeadSpec?

    public init(backbone: ResNetSpec, rpn: RPNSpec = RPNSpec(), roiHead: RoIHeadSpec, mimic: MimicSpec = MimicSpec(),
                mask: MaskHeadSpec? = nil) {
        self.backbone = backbone; self.rpn = rpn; self.roiHead = roiHead; self.mimic = mimic; self.mask = mask
    }
}


public final class FasterRCNN {
    public let spec: DetectorSpec
    public let backbone: ResNet
    public let rpn: RPN
    public let roiHead: RoIHead
    public let mimic: MimicBranch?
    public let maskHead: MaskHead?
    public private(set) var parameters = ParameterList()
    /// Names of the training losses, in reporting order.
    public let lossNames: [String]

    public init(spec: DetectorSpec, seed: UInt64 = 0) throws {
        var s = spec
        s.backbone.classes = nil
        s.rpn.inChannels = s.backbone.stageChannels[2]
        s.roiHead.inChannels = s.backbone.stageChannels[3]
        s.roiHead.featureStride = s.backbone.stageStrides[3]
        try require(s.rpn.anchors.stride == s.backbone.stageStrides[2], "detector: anchor stride \(s.rpn.anchors.stride) must equal the res4 stride \(s.backbone.stageStrides[2])")
        try require(s.roiHead.classes >= 1, "detector: needs at least one class")
        if s.mask != nil {
            s.mask!.classes = s.roiHead.classes
            s.mask!.inChannels = s.roiHead.reduceChannels
            s.mask!.featureStride = s.roiHead.featureStride
        }
        self.spec = s
        backbone = try ResNet(spec: s.backbone, prefix: "backbone.", seed: seed)
        var rng = SeededGenerator(seed: seed &+ 1)
        rpn = RPN(spec: s.rpn, rng: &rng)
        roiHead = RoIHead(spec: s.roiHead, rng: &rng)
        mimic = s.mimic.regions == .off ? nil : MimicBranch(spec: s.mimic, features: s.roiHead.fcDim, classes: s.roiHead.classes, rng: &rng)
        maskHead = s.mask.map { MaskHead(spec: $0, rng: &rng) }
        var list = backbone.parameters
        list.append(contentsOf: rpn.parameters + roiHead.headParameters + roiHead.poolingParameters)
        if let mimic { list.append(contentsOf: mimic.parameters) }
        if let maskHead { list.append(contentsOf: maskHead.parameters) }
        parameters = list
        lossNames = ["rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"] + (s.mask == nil ? [] : ["mask"]) + ["mimic", "mimic_cls"]
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
            ("mimic classifier", mimic?.parameters ?? []),
        ] + (maskHead.map { [("mask head", $0.parameters)] } ?? [])
    }

    // MARK: - Training

    /// One forward and backward pass: returns the weighted named losses and adds their gradients
    /// into the parameters (call `parameters.zeroGrad()` first). `fixedProposals` replaces the RPN's
    /// proposals (for gradient checks); the step's random choices draw from one value of `rng`.
    /// `images` `[N, 3, H, W]` are normalised and padded; `sizes` are the images' sizes inside the padding.
    public func trainStep(images: Tensor, sizes: [ImageSize], targets: [Instances], rng: inout SeededGenerator, _ ws: Workspace,
                          fixedProposals: [[Box]]? = nil, profiler: PhaseProfiler? = nil) throws -> [String: Float] {
        try trainStep(images: images, sizes: sizes, targets: targets, share: StepShare(seed: rng.next()), ws,
                      fixedProposals: fixedProposals, profiler: profiler)
    }

    /// The training step on this process's `share` of a global batch. With other processes
    /// (`share.collective`), the losses' normalisers are summed over them after the forward
    /// passes, so the gradients added here, summed over the processes, are those of the
    /// one-process loss of the global batch; the returned losses are the global batch's, and
    /// each part's parameters are reported finished as soon as the backward passes are done with them.
    public func trainStep(images: Tensor, sizes: [ImageSize], targets: [Instances], share: StepShare, _ ws: Workspace,
                          fixedProposals: [[Box]]? = nil, profiler: PhaseProfiler? = nil) throws -> [String: Float] {
        let n = images.dim(0)
        try require(targets.count == n && sizes.count == n, "detector: \(n) images, \(targets.count) targets, \(sizes.count) sizes")
        for (i, t) in targets.enumerated() {
            try require(t.boxes.count == t.labels.count, "detector: image \(i) has \(t.boxes.count) boxes and \(t.labels.count) labels")
            try require(t.labels.allSatisfy { (1...spec.roiHead.classes).contains($0) }, "detector: image \(i) has a label outside 1...\(spec.roiHead.classes)")
            try require(maskHead == nil || t.hasMasks,
                        "Mask R-CNN: image \(i) of the batch has objects without a mask (polygon segmentation); the mask branch needs one per object")
        }
        var rngs = share.imageGenerators(n)
        let finished: GradientsFinished = { share.collective?.gradientsFinished($0) }
        // Forward: each part's training pass in turn.
        let backbonePass = try profiler.measure("backbone fwd") { try backbone.trainingPass(images, ws, finished: finished) }
        let res4 = backbonePass.output["res4"]!, res5 = backbonePass.output["res5"]!
        let rpnPass = try profiler.measure("rpn fwd") {
            try rpn.trainingPass(res4, targets: targets, imageSizes: sizes, fixedProposals: fixedProposals, rngs: &rngs, ws)
        }
        let headPass = try profiler.measure("head fwd") {
            try roiHead.trainingPass(res5, proposals: rpnPass.output, targets: targets, rngs: &rngs, ws)
        }
        let maskPass = try maskHead.map { head in
            try profiler.measure("mask fwd") { try head.trainingPass(headPass.output.reduced, sampled: headPass.output.rois, targets: targets, ws) }
        }
        // R-CNN feature mimicking: the same network on cropped RoIs, pulling the head's features.
        let mimicPass = try mimic.map { mimic in
            try profiler.measure("mimic fwd") {
                try mimic.trainingPass(images: images, sampled: headPass.output.rois, detectorFeatures: headPass.output.features,
                                       backbone: backbone, head: roiHead, rngs: &rngs, ws)
            }
        }
        var parts: [(losses: [String: Float], normaliser: LossNormaliser?)] = [(rpnPass.losses, rpnPass.normaliser), (headPass.losses, headPass.normaliser)]
        if let maskPass { parts.append((maskPass.losses, maskPass.normaliser)) }
        if let mimicPass { parts.append((mimicPass.losses, mimicPass.normaliser)) }
        var losses: [String: Float] = [:]
        for part in parts { losses.merge(part.losses) { $1 } }
        if let collective = share.collective { losses = try globalLosses(parts, collective) }

        // Backward in reverse, feature gradients summed by name for the backbone. Each part's
        // parameters are finished once its own backward has run (the mimic branch's patches go
        // through the head and the backbone first).
        let dHeadFeatures = try mimicPass.map { pass in try profiler.measure("mimic bwd") { try pass.backward(()) } }
        if let mimic { finished(mimic.parameters) }
        let dReduced = try maskPass.map { pass in try profiler.measure("mask bwd") { try pass.backward(()) } }
        if let maskHead { finished(maskHead.parameters) }
        let dRes5 = try profiler.measure("head bwd") {
            try headPass.backward(RoIHead.SampledGradient(features: dHeadFeatures, reduced: dReduced))
        }
        finished(roiHead.headParameters + roiHead.poolingParameters)
        let dRes4 = try profiler.measure("rpn bwd") { try rpnPass.backward(()) }
        finished(rpn.parameters)
        try profiler.measure("backbone bwd") {
            try backbonePass.backward(FeatureMaps(["res4": dRes4, "res5": dRes5]))
        }
        return losses
    }

    // MARK: - Inference

    /// Detections per image in the padded batch's pixel coordinates (divide by the resize scale
    /// to get back to the original image); with a mask branch each carries its mask over the box.
    public func detect(images: Tensor, sizes: [ImageSize], _ ws: Workspace) throws -> [[Detection]] {
        let view = try detectionCandidates(images: images, sizes: sizes, ws)
        var detections = try view.candidates.map { try roiHead.select($0) }
        try addMasks(&detections, reduced: view.reduced, ws)
        return detections
    }

    /// The RoI head's candidates of each image (scored, decoded, clipped, before NMS) and the
    /// reduced res5 map the mask branch reads (multi-scale testing merges candidates of several
    /// views, then asks each view for the masks of its kept boxes).
    public func detectionCandidates(images: Tensor, sizes: [ImageSize], _ ws: Workspace) throws -> (candidates: [[Detection]], reduced: Tensor) {
        let (features, _) = try backbone.forward(images, training: false, ws)
        let rpnOut = try rpn.forward(features["res4"]!, ws)
        let proposals = try rpn.proposals(rpnOut, imageSizes: sizes, training: false)
        let reduced = try roiHead.reduceMap(features["res5"]!, ws).output
        let candidates = try roiHead.candidates(reduced: reduced, proposals: proposals, imageSizes: sizes, ws)
        return (candidates, reduced)
    }

    /// With a mask branch, each detection's mask over its box (boxes in the pixels of the images
    /// `reduced` was computed from); without one, nothing.
    public func addMasks(_ detections: inout [[Detection]], reduced: Tensor, _ ws: Workspace) throws {
        guard let maskHead else { return }
        let masks = try maskHead.predict(reduced, detections: detections, ws)
        for n in detections.indices { for k in detections[n].indices { detections[n][k].mask = masks[n][k] } }
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
        var macs = [("backbone", backboneMACs), ("rpn", rpnCounter.multiplyAdds), ("head", headCounter.multiplyAdds)]
        if let maskHead {
            // At test time the mask branch runs on the final detections.
            var maskCounter = CostCounter()
            try maskHead.cost(rois: spec.roiHead.detectionsPerImage, &maskCounter)
            macs.append(("mask head", maskCounter.multiplyAdds))
        }
        return (params, macs)
    }
}
