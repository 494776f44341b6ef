// The region proposal network on res4 (detectron2's StandardRPNHead and RPN): a 3x3 conv + ReLU,
// 1x1 objectness logits (A per cell) and 1x1 box deltas (4A per cell); anchor targets from the IoU
// matcher and the balanced sampler; proposals by top-k, NMS and top-k per image.
import DCNOps
import DCNTensor

/// The RPN's settings. They have no defaults here: the `rpn` section's are the only ones
/// (`RPNSpec(_: RPNConfig)` in DCNConfig maps it).
public struct RPNSpec: Sendable, Equatable {
    /// Anchor sizes, aspect ratios and stride (input pixels).
    public var anchors: AnchorGenerator
    /// Channels of the 3x3 conv.
    public var headChannels: Int
    /// Anchor labels: positive at IoU >= positiveIoU (or a box's best), negative below negativeIoU.
    public var positiveIoU: Float
    public var negativeIoU: Float
    /// Anchors sampled per image, at most this fraction positive.
    public var batchSizePerImage: Int
    public var positiveFraction: Float
    /// Proposals kept before and after NMS, in training and at test time.
    public var preNMSTopKTrain: Int
    public var preNMSTopKTest: Int
    public var postNMSTopKTrain: Int
    public var postNMSTopKTest: Int
    public var nmsThreshold: Float
    /// Beta of the smooth-L1 box loss (0 = L1).
    public var smoothL1Beta: Float
    /// The anchor deltas' coder (fixed: unit weights, detectron2's RPN).
    public var boxCoder = BoxCoder(weights: (1, 1, 1, 1))

    public init(anchors: AnchorGenerator, headChannels: Int, positiveIoU: Float, negativeIoU: Float, batchSizePerImage: Int,
                positiveFraction: Float, preNMSTopKTrain: Int, preNMSTopKTest: Int, postNMSTopKTrain: Int, postNMSTopKTest: Int,
                nmsThreshold: Float, smoothL1Beta: Float) {
        self.anchors = anchors; self.headChannels = headChannels; self.positiveIoU = positiveIoU; self.negativeIoU = negativeIoU
        self.batchSizePerImage = batchSizePerImage; self.positiveFraction = positiveFraction
        self.preNMSTopKTrain = preNMSTopKTrain; self.preNMSTopKTest = preNMSTopKTest
        self.postNMSTopKTrain = postNMSTopKTrain; self.postNMSTopKTest = postNMSTopKTest
        self.nmsThreshold = nmsThreshold; self.smoothL1Beta = smoothL1Beta
    }
}

/// Ground truth of one image for training: boxes with labels 1...C, and regions to ignore
/// (crowd or difficult objects).


public final class RPN {
    public let spec: RPNSpec
    /// The backbone map it reads.
    public let inFeature: String
    /// The head: 3x3 conv + ReLU, then the 1x1 objectness logits and box deltas (read by the ONNX export).
    public let conv: ConvLayer
    public let objectness: ConvLayer
    public let deltas: ConvLayer

    public struct Output {
        /// [N, A, H, W]
        public var logits: Tensor
        /// [N, 4A, H, W], channel 4a + k
        public var deltas: Tensor
        public var anchors: [Box]
        var input: Tensor
        var hidden: Tensor
    }

    /// `input` is the shape of the backbone map `inFeature`, whose stride the anchors' must be.
    public init(spec: RPNSpec, inFeature: String, input: ShapeSpec, prefix: String = "proposal_generator.rpn_head.",
                rng: inout SeededGenerator) throws {
        try require(spec.anchors.stride == input.stride,
                    "detector: anchor stride \(spec.anchors.stride) must equal the \(inFeature) stride \(input.stride)")
        self.spec = spec
        self.inFeature = inFeature
        let a = spec.anchors.anchorsPerCell
        conv = ConvLayer(name: prefix + "conv", input.channels, spec.headChannels, kernel: 3, padding: 1, bias: true,
                         weightInit: .normal(std: 0.01), rng: &rng)
        objectness = ConvLayer(name: prefix + "objectness_logits", spec.headChannels, a, kernel: 1, bias: true,
                               weightInit: .normal(std: 0.01), rng: &rng)
        deltas = ConvLayer(name: prefix + "anchor_deltas", spec.headChannels, 4 * a, kernel: 1, bias: true,
                           weightInit: .normal(std: 0.01), rng: &rng)
    }

    public var parameters: [Parameter] { conv.parameters + objectness.parameters + deltas.parameters }
    public var losses: LossGroup { LossGroup(title: "RPN losses", names: ["rpn_cls", "rpn_box"]) }

    public func forward(_ features: Tensor, _ ws: Workspace) throws -> Output {
        var hidden = try conv.forward(features, ws)
        reluForwardInPlace(&hidden)
        let logits = try objectness.forward(hidden, ws)
        let d = try deltas.forward(hidden, ws)
        let anchors = spec.anchors.anchors(height: features.dim(2), width: features.dim(3))
        return Output(logits: logits, deltas: d, anchors: anchors, input: features, hidden: hidden)
    }

    /// The training pass on its backbone map: proposals (or `fixedProposals`, for gradient checks)
    /// and the losses `rpn_cls`, `rpn_box` (image n's anchor sampling draws from `rngs[n]`);
    /// backward returns the map's gradient, by name.
    public func trainingPass(_ features: FeatureMaps, targets: [Instances], imageSizes: [ImageSize], fixedProposals: [[Box]]? = nil,
                             rngs: inout [SeededGenerator], _ ws: Workspace) throws -> TrainingPass<[[Box]], Void, FeatureMaps> {
        let out = try forward(features[inFeature]!, ws)
        var loss = try losses(out, targets: targets, rngs: &rngs)
        let proposals = try fixedProposals ?? self.proposals(out, imageSizes: imageSizes, training: true)
        let normaliser = LossNormaliser(count: spec.batchSizePerImage * targets.count)
        return TrainingPass(output: proposals, losses: ["rpn_cls": loss.objectness, "rpn_box": loss.box], normaliser: normaliser) {
            loss.dLogits.scale(normaliser.share)
            loss.dDeltas.scale(normaliser.share)
            return FeatureMaps([self.inFeature: try self.backward(dLogits: loss.dLogits, dDeltas: loss.dDeltas, output: out, wantInput: true, ws)!])
        }
    }

    /// dFeatures from the gradients of the logits and deltas; adds the head's parameter gradients.
    public func backward(dLogits: Tensor, dDeltas: Tensor, output: Output, wantInput: Bool, _ ws: Workspace) throws -> Tensor? {
        var dHidden = try objectness.backward(dLogits, input: output.hidden, wantInput: true, ws)!
        dHidden.add(try deltas.backward(dDeltas, input: output.hidden, wantInput: true, ws)!)
        var dPre = Tensor(zeros: dHidden.shape)
        try reluBackward(dInput: &dPre, dOutput: dHidden, output: output.hidden)
        return try conv.backward(dPre, input: output.input, wantInput: wantInput, ws)
    }

    public func cost(_ input: [Int], _ counter: inout CostCounter) throws {
        let hidden = try conv.cost(input, &counter)
        _ = try objectness.cost(hidden, &counter)
        _ = try deltas.cost(hidden, &counter)
    }

    /// Index of anchor `a` at cell (i, j) in the logits tensor of image n, and of delta k.
    @inline(__always) func logitIndex(_ n: Int, _ anchor: Int, _ A: Int, _ H: Int, _ W: Int) -> Int {
        let cell = anchor / A, a = anchor % A
        return ((n * A + a) * H) * W + cell
    }

    /// Objectness and box losses (detectron2's normalisation: sums over the sampled anchors divided
    /// by batchSizePerImage * images) and their gradients with respect to the logits and deltas.
    public func losses(_ out: Output, targets: [Instances], rngs: inout [SeededGenerator])
        throws -> (objectness: Float, box: Float, dLogits: Tensor, dDeltas: Tensor) {
        let N = out.logits.dim(0), A = out.logits.dim(1), H = out.logits.dim(2), W = out.logits.dim(3)
        try require(targets.count == N && rngs.count == N, "rpn: \(targets.count) targets and \(rngs.count) generators for \(N) images")
        var labelTensor = Tensor(repeating: -1, shape: out.logits.shape)
        var predicted: [Float] = [], wanted: [Float] = []
        var deltaIndices: [Int] = []
        for n in 0..<N {
            let t = targets[n]
            let m = matchBoxes(out.anchors, groundTruth: t.boxes, ignoreRegions: t.ignore, foreground: spec.positiveIoU,
                               background: spec.negativeIoU, lowQualityMatches: true)
            let (fg, bg) = sampleLabels(m.labels, batchSize: spec.batchSizePerImage, positiveFraction: spec.positiveFraction, rng: &rngs[n])
            for i in bg { labelTensor.data[logitIndex(n, i, A, H, W)] = 0 }
            for i in fg {
                let li = logitIndex(n, i, A, H, W)
                labelTensor.data[li] = 1
                let target = spec.boxCoder.encode(t.boxes[m.groundTruth[i]], reference: out.anchors[i])
                let cell = i / A, a = i % A
                for (k, v) in [target.0, target.1, target.2, target.3].enumerated() {
                    let di = ((n * 4 * A + 4 * a + k) * H) * W + cell
                    deltaIndices.append(di)
                    predicted.append(out.deltas.data[di])
                    wanted.append(v)
                }
            }
        }
        let normaliser = Float(spec.batchSizePerImage * N)
        let bceOptions = BinaryCrossEntropyOptions(reduction: .sum, ignoreTarget: -1)
        let objectnessLoss = try sigmoidBinaryCrossEntropyLoss(logits: out.logits, targets: labelTensor, options: bceOptions) / normaliser
        var dLogits = Tensor(zeros: out.logits.shape)
        try sigmoidBinaryCrossEntropyBackward(dLogits: &dLogits, logits: out.logits, targets: labelTensor, options: bceOptions,
                                              gradOutput: 1 / normaliser)
        let p = try Tensor(shape: [predicted.count], data: predicted), w = try Tensor(shape: [wanted.count], data: wanted)
        let boxLoss = try smoothL1Loss(input: p, target: w, beta: spec.smoothL1Beta) / normaliser
        var dp = Tensor(zeros: p.shape)
        try smoothL1Backward(dInput: &dp, input: p, target: w, beta: spec.smoothL1Beta, gradOutput: 1 / normaliser)
        var dDeltas = Tensor(zeros: out.deltas.shape)
        for (k, di) in deltaIndices.enumerated() { dDeltas.data[di] += dp.data[k] }
        return (objectnessLoss, boxLoss, dLogits, dDeltas)
    }

    /// Proposals per image: the top-k anchors by objectness, decoded and clipped to the image,
    /// empty boxes removed, NMS, then the top-k survivors (detectron2's find_top_rpn_proposals).
    public func proposals(_ out: Output, imageSizes: [ImageSize], training: Bool) throws -> [[Box]] {
        let N = out.logits.dim(0), A = out.logits.dim(1), H = out.logits.dim(2), W = out.logits.dim(3)
        let preK = training ? spec.preNMSTopKTrain : spec.preNMSTopKTest
        let postK = training ? spec.postNMSTopKTrain : spec.postNMSTopKTest
        var result: [[Box]] = []
        for n in 0..<N {
            let count = out.anchors.count
            var scores = [Float](repeating: 0, count: count)
            for i in 0..<count { scores[i] = out.logits.data[logitIndex(n, i, A, H, W)] }
            // Descending score, ties by anchor index (a stable order).
            let order = (0..<count).sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }.prefix(preK)
            let size = imageSizes[n]
            var boxes: [Box] = [], kept: [Float] = []
            for i in order {
                let cell = i / A, a = i % A
                func delta(_ k: Int) -> Float { out.deltas.data[((n * 4 * A + 4 * a + k) * H) * W + cell] }
                let b = spec.boxCoder.decode((delta(0), delta(1), delta(2), delta(3)), reference: out.anchors[i])
                    .clipped(width: Float(size.width), height: Float(size.height))
                guard b.width > 0, b.height > 0, b.x1.isFinite, b.y1.isFinite, b.x2.isFinite, b.y2.isFinite, scores[i].isFinite else { continue }
                boxes.append(b)
                kept.append(scores[i])
            }
            if boxes.isEmpty { result.append([]); continue }
            let keep = try nms(boxes: boxes.tensor, scores: try Tensor(shape: [kept.count], data: kept),
                               iouThreshold: Double(spec.nmsThreshold), maxKept: postK)
            result.append(keep.map { boxes[$0] })
        }
        return result
    }
}
