// The paper's detector as detectron2 composes one (GeneralizedRCNN + StandardROIHeads): a ResNet
// with res5 (stride 1, dilation 2) run on the whole image -> a proposal generator (the RPN on res4)
// -> the RoI heads, a list of branches behind one contract (Parts.swift): the box head on res5
// first, then the branches the spec lists (each in its own file, listed by the config mapping),
// and dense heads on named backbone maps. Training returns named losses and leaves
// their gradients in the parameters; inference returns detections with what the branches add.
import DCNOps
import DCNTensor

public struct DetectorSpec: Sendable, Equatable {
    public var backbone: ResNetSpec
    public var rpn: RPNSpec
    /// The box head's settings (the `roi_head` section).
    public var roiHead: RoIHeadSpec
    /// The other RoI branches, in the order their parameters are listed.
    public var branches: [RoIBranchSpec]
    public var denseHeads: [DenseHeadSpec]
    /// Object classes without background.
    public var classes: Int

    public init(backbone: ResNetSpec, rpn: RPNSpec, roiHead: RoIHeadSpec, branches: [RoIBranchSpec] = [],
                denseHeads: [DenseHeadSpec] = [], classes: Int) {
        self.backbone = backbone; self.rpn = rpn; self.roiHead = roiHead; self.branches = branches; self.denseHeads = denseHeads
        self.classes = classes
    }

    public static func == (a: DetectorSpec, b: DetectorSpec) -> Bool {
        a.backbone == b.backbone && a.rpn == b.rpn && a.roiHead == b.roiHead && a.classes == b.classes
            && a.branches.count == b.branches.count && zip(a.branches, b.branches).allSatisfy { $0.isEqual(to: $1) }
            && a.denseHeads.count == b.denseHeads.count && zip(a.denseHeads, b.denseHeads).allSatisfy { $0.isEqual(to: $1) }
    }

    /// The branch spec of type `T`, if the detector has that branch.
    public func branch<T: RoIBranchSpec>(_ type: T.Type) -> T? { branches.lazy.compactMap { $0 as? T }.first }
}

public final class GeneralizedRCNN {
    public let spec: DetectorSpec
    public let backbone: ResNet
    public let rpn: RPN
    /// The box head, first of `roiBranches`: it samples the training RoIs and makes the detections.
    public let boxHead: BoxHead
    /// The RoI heads' branches: the box head, then the spec's branches.
    public let roiBranches: [RoIBranch]
    public let denseHeads: [DenseHead]
    public private(set) var parameters = ParameterList()

    public init(spec: DetectorSpec, seed: UInt64 = 0) throws {
        self.spec = spec
        var backboneSpec = spec.backbone
        backboneSpec.classes = nil
        backbone = try ResNet(spec: backboneSpec, prefix: "backbone.", seed: seed)
        // Derived once: every part's input channels and stride are those of the named map it reads.
        let shapes = backboneSpec.outputShapes
        var rng = SeededGenerator(seed: seed &+ 1)
        rpn = try RPN(spec: spec.rpn, inFeature: "res4", input: shapes["res4"]!, rng: &rng)
        try require(spec.classes >= 1, "detector: needs at least one class")
        boxHead = BoxHead(spec: spec.roiHead, inFeature: "res5", input: shapes["res5"]!, classes: spec.classes, rng: &rng)
        let context = RoIBranchContext(backbone: backbone, box: boxHead, classes: spec.classes,
                                       shapes: shapes.merging(boxHead.publishedShapes) { $1 })
        roiBranches = [boxHead] + (try spec.branches.map { try $0.build(context, rng: &rng) })
        denseHeads = try spec.denseHeads.map { try $0.build(shapes: shapes, classes: spec.classes, rng: &rng) }
        parameters = backbone.parameters
        parameters.append(contentsOf: rpn.parameters + heads.flatMap(\.parameters))
    }

    /// The RoI branches, then the dense heads.
    var heads: [DetectorHead] { roiBranches + denseHeads }

    /// The losses of every part, in reporting order, grouped by part.
    public var lossGroups: [LossGroup] { [rpn.losses] + heads.map(\.losses).filter { !$0.names.isEmpty } }

    /// Names of the training losses, in reporting order.
    public var lossNames: [String] { lossGroups.flatMap(\.names) }

    /// What the branches add to each detection.
    public var detectionAdditions: [DetectionAddition] { roiBranches.compactMap(\.addition) }

    /// Parameters grouped as the summary reports them.
    public var parameterGroups: [(name: String, parameters: [Parameter])] {
        let offsets = backbone.offsetParameters
        let offsetNames = Set(offsets.map(\.name))
        return [
            ("backbone", backbone.parameters.all.filter { !offsetNames.contains($0.name) }),
            ("offset branches", offsets),
            ("rpn", rpn.parameters),
        ] + heads.flatMap(\.parameterGroups)
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
            try require(t.labels.allSatisfy { (1...spec.classes).contains($0) }, "detector: image \(i) has a label outside 1...\(spec.classes)")
        }
        for head in heads { try head.validate(targets) }
        var rngs = share.imageGenerators(n)
        let finished: GradientsFinished = { share.collective?.gradientsFinished($0) }
        // Forward: each part's training pass in turn; the branches also read the maps earlier ones publish.
        let backbonePass = try profiler.measure("backbone fwd") { try backbone.trainingPass(images, ws, finished: finished) }
        var features = backbonePass.output
        let rpnPass = try profiler.measure("rpn fwd") {
            try rpn.trainingPass(features, targets: targets, imageSizes: sizes, fixedProposals: fixedProposals, rngs: &rngs, ws)
        }
        let sampled = profiler.measure("roi sampling") { boxHead.sample(proposals: rpnPass.output, targets: targets, rngs: &rngs) }
        var branchPasses: [TrainingPass<FeatureMaps, FeatureMaps, FeatureMaps>] = []
        for branch in roiBranches {
            let input = RoIBranchInput(images: images, targets: targets, sampled: sampled, features: features)
            let pass = try profiler.measure("\(branch.phase) fwd") { try branch.trainingPass(input, rngs: &rngs, ws) }
            features.accumulate(pass.output)
            branchPasses.append(pass)
        }
        let densePasses = try denseHeads.map { head in
            try profiler.measure("\(head.phase) fwd") { try head.trainingPass(DenseHeadInput(features: features, height: images.dim(2), width: images.dim(3), targets: targets,
                                                 pixelLabels: nil), ws) }
        }
        let parts = [(rpnPass.losses, rpnPass.normaliser)] + branchPasses.map { ($0.losses, $0.normaliser) }
            + densePasses.map { ($0.losses, $0.normaliser) }
        var losses: [String: Float] = [:]
        for part in parts { losses.merge(part.0) { $1 } }
        if let collective = share.collective { losses = try globalLosses(parts, collective) }

        // Backward in reverse, feature gradients summed by name. Each part's parameters are finished
        // once its own backward has run (a branch may run the box head and the backbone again, on
        // patches, so those finish later).
        var gradients = FeatureMaps()
        for (head, pass) in zip(denseHeads, densePasses).reversed() {
            gradients.accumulate(try profiler.measure("\(head.phase) bwd") { try pass.backward(()) })
            finished(head.parameters)
        }
        for (branch, pass) in zip(roiBranches, branchPasses).reversed() {
            let published = gradients.take(pass.output.maps.keys)
            gradients.accumulate(try profiler.measure("\(branch.phase) bwd") { try pass.backward(published) })
            finished(branch.parameters)
        }
        gradients.accumulate(try profiler.measure("rpn bwd") { try rpnPass.backward(()) })
        finished(rpn.parameters)
        try profiler.measure("backbone bwd") { try backbonePass.backward(gradients) }
        return losses
    }

    // MARK: - Inference

    /// Detections per image in the padded batch's pixel coordinates (divide by the resize scale
    /// to get back to the original image), with what every branch adds.
    public func detect(images: Tensor, sizes: [ImageSize], _ ws: Workspace) throws -> [[Detection]] {
        let view = try detectionCandidates(images: images, sizes: sizes, ws)
        var detections = try view.candidates.map { try boxHead.select($0) }
        try annotate(&detections, features: view.features, ws)
        return detections
    }

    /// The box head's candidates of each image (scored, decoded, clipped, before NMS) and the maps
    /// the branches read (multi-scale testing merges candidates of several views, then asks each
    /// view to annotate its kept boxes).
    public func detectionCandidates(images: Tensor, sizes: [ImageSize], _ ws: Workspace) throws -> (candidates: [[Detection]], features: FeatureMaps) {
        var (features, _) = try backbone.forward(images, training: false, ws)
        let rpnOut = try rpn.forward(features[rpn.inFeature]!, ws)
        let proposals = try rpn.proposals(rpnOut, imageSizes: sizes, training: false)
        let box = try boxHead.candidates(features, proposals: proposals, imageSizes: sizes, ws)
        features.accumulate(box.published)
        return (box.candidates, features)
    }

    /// Every branch's additions to each detection (boxes in the pixels of the images `features`
    /// were computed from).
    public func annotate(_ detections: inout [[Detection]], features: FeatureMaps, _ ws: Workspace) throws {
        for branch in roiBranches { try branch.annotate(&detections, features: features, ws) }
    }

    // MARK: - Summary

    /// Parameters per component and multiply-adds at test time for one `height x width` image
    /// (the box head at the RPN's test-time proposal count, the other branches at the kept detections).
    public func summary(height: Int, width: Int) throws -> (parameters: [(String, Int)], multiplyAdds: [(String, Int)]) {
        let params = parameterGroups.map { ($0.name, $0.parameters.filter { !$0.isBuffer }.reduce(0) { $0 + $1.count }) }
        let (shapes, backboneMACs) = try backbone.cost(inputShape: [1, 3, height, width])
        var rpnCounter = CostCounter()
        try rpn.cost(shapes[rpn.inFeature]!, &rpnCounter)
        var macs = [("backbone", backboneMACs), ("rpn", rpnCounter.multiplyAdds)]
        for branch in roiBranches {
            macs += try branch.cost(shapes: shapes, proposals: spec.rpn.postNMSTopKTest, detections: spec.roiHead.detectionsPerImage)
        }
        for head in denseHeads { macs += try head.cost(shapes: shapes) }
        return (params, macs)
    }
}
