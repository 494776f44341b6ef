// The box head, the first RoI branch (the Fast R-CNN head of the paper's layout): res5 ran on the
// whole image; here a 1x1 conv 2048 -> 256 + ReLU, RoI features (7x7x256) from the chosen
// extractor, two fc 1024 + ReLU ("2fc"), a (C+1)-way classifier and class-specific box regression.
// It also samples the training RoIs every branch reads, and makes the detections other branches
// annotate.
import DCNOps
import DCNTensor
import Foundation

/// The box head's settings. They have no defaults here: the `roi_head` section's are the only ones
/// (`RoIHeadSpec(_: RoIHeadConfig)` in DCNConfig maps it).
public struct RoIHeadSpec: Sendable, Equatable {
    /// Channels of the 1x1 conv after res5 that the RoI pooling reads.
    public var reduceChannels: Int
    public var extractor: RoIExtractorKind
    /// Output bins per side, samples per bin side (0 = adaptive).
    public var pooledSize: Int
    public var samplingRatio: Int
    /// Offset scale of (m)dpool and the learning-rate multiplier of its offset fcs.
    public var gamma: Float
    public var offsetLearningRateScale: Float
    /// Width of the two fc layers.
    public var fcDim: Int
    /// RoIs sampled per image, at most this fraction foreground (IoU >= foregroundIoU).
    public var batchSizePerImage: Int
    public var positiveFraction: Float
    public var foregroundIoU: Float
    public var boxCoder: BoxCoder
    /// Beta of the smooth-L1 box loss (0 = L1).
    public var smoothL1Beta: Float
    /// Inference: score threshold, per-class NMS IoU, detections kept per image.
    public var scoreThreshold: Float
    public var nmsThreshold: Float
    public var detectionsPerImage: Int

    public init(reduceChannels: Int, extractor: RoIExtractorKind, pooledSize: Int, samplingRatio: Int, gamma: Float,
                offsetLearningRateScale: Float, fcDim: Int, batchSizePerImage: Int, positiveFraction: Float, foregroundIoU: Float,
                boxCoder: BoxCoder, smoothL1Beta: Float, scoreThreshold: Float, nmsThreshold: Float, detectionsPerImage: Int) {
        self.reduceChannels = reduceChannels; self.extractor = extractor; self.pooledSize = pooledSize; self.samplingRatio = samplingRatio
        self.gamma = gamma; self.offsetLearningRateScale = offsetLearningRateScale; self.fcDim = fcDim
        self.batchSizePerImage = batchSizePerImage; self.positiveFraction = positiveFraction; self.foregroundIoU = foregroundIoU
        self.boxCoder = boxCoder; self.smoothL1Beta = smoothL1Beta
        self.scoreThreshold = scoreThreshold; self.nmsThreshold = nmsThreshold; self.detectionsPerImage = detectionsPerImage
    }
}

/// RoIs sampled for training, with their targets.
public struct SampledRoIs: Sendable {
    /// [K, 5] (image, x1, y1, x2, y2)
    public var rois: Tensor
    public var boxes: [Box]
    /// 0 = background, 1...C
    public var labels: [Int]
    /// Regression targets of foreground RoIs (zeros for background).
    public var targets: [(Float, Float, Float, Float)]
    /// Image index of each RoI.
    public var image: [Int]
    /// Index of the matched ground-truth instance in its image's `Instances` (-1 for background).
    public var matched: [Int]
}

public final class BoxHead: RoIBranch {
    public let spec: RoIHeadSpec
    /// Object classes without background.
    public let classes: Int
    /// Input pixels per pixel of the map it pools from.
    public let featureStride: Int
    /// The backbone map it reads.
    public let inFeature: String
    /// The maps it publishes for later branches: the reduced map the RoIs are pooled from
    /// ([N, reduceChannels, H, W]) and the sampled RoIs' 2fc features (f_FRCNN in the paper, [K, fcDim]).
    public static let reducedMap = "box_reduced", roiFeatures = "box_features"
    let reduce: ConvLayer
    public let extractor: RoIFeatureExtractor
    let fc1: LinearLayer
    let fc2: LinearLayer
    let classifier: LinearLayer
    let boxRegressor: LinearLayer

    /// `input` is the shape of the backbone map `inFeature`.
    public init(spec: RoIHeadSpec, inFeature: String, input: ShapeSpec, classes: Int, prefix: String = "roi_heads.", rng: inout SeededGenerator) {
        self.spec = spec
        self.classes = classes
        self.inFeature = inFeature
        featureStride = input.stride
        reduce = ConvLayer(name: prefix + "reduce", input.channels, spec.reduceChannels, kernel: 1, bias: true,
                           weightInit: .kaimingNormalFanOut, rng: &rng)
        extractor = RoIFeatureExtractor(kind: spec.extractor, channels: spec.reduceChannels, pooledSize: spec.pooledSize,
                                        samplingRatio: spec.samplingRatio, gamma: spec.gamma, hiddenDim: spec.fcDim,
                                        offsetLearningRateScale: spec.offsetLearningRateScale, prefix: prefix + "pooler.", rng: &rng)
        extractor.inputStride = input.stride
        let flat = spec.reduceChannels * spec.pooledSize * spec.pooledSize
        // The fcs start as PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (detectron2's
        // c2_xavier_fill would use the bound sqrt(3 / fan_in)).
        fc1 = LinearLayer(name: prefix + "box_head.fc1", flat, spec.fcDim, weightInit: .uniformFanIn, rng: &rng)
        fc2 = LinearLayer(name: prefix + "box_head.fc2", spec.fcDim, spec.fcDim, weightInit: .uniformFanIn, rng: &rng)
        classifier = LinearLayer(name: prefix + "box_predictor.cls_score", spec.fcDim, classes + 1,
                                 weightInit: .normal(std: 0.01), rng: &rng)
        boxRegressor = LinearLayer(name: prefix + "box_predictor.bbox_pred", spec.fcDim, 4 * (classes + 1),
                                   weightInit: .normal(std: 0.001), rng: &rng)
    }

    /// Shapes of the maps it publishes for the branches' inference and construction.
    public var publishedShapes: [String: ShapeSpec] {
        [Self.reducedMap: ShapeSpec(channels: spec.reduceChannels, stride: featureStride)]
    }

    public var phase: String { "head" }
    /// The head proper and the RoI pooling's offset branch.
    public var parameterGroups: [(name: String, parameters: [Parameter])] {
        [("head", reduce.parameters + fc1.parameters + fc2.parameters + classifier.parameters + boxRegressor.parameters),
         ("roi pooling branch", extractor.parameters)]
    }
    public var losses: LossGroup { LossGroup(title: "R-CNN head losses", names: ["rcnn_cls", "rcnn_box"]) }

    var spatialScale: Float { 1 / Float(featureStride) }

    /// The head's training pass on its backbone map and the sampled RoIs: losses `rcnn_cls` and
    /// `rcnn_box`; publishes the reduced map and the RoIs' 2fc features. Backward takes the later
    /// branches' gradients of those and returns the backbone map's.
    public func trainingPass(_ input: RoIBranchInput, rngs: inout [SeededGenerator], _ ws: Workspace) throws
        -> TrainingPass<FeatureMaps, FeatureMaps, FeatureMaps> {
        let sampled = input.sampled
        let reducing = try reduceMap(input.features[inFeature]!, ws)
        let embedding = try embedReduced(reducing.output, rois: sampled.rois, ws)
        let hidden2 = embedding.output
        let (logits, deltas) = (try classifier.forward(hidden2), try boxRegressor.forward(hidden2))
        var loss = try losses(logits: logits, deltas: deltas, sampled: sampled)
        let normaliser = LossNormaliser(count: sampled.labels.count)
        let published = FeatureMaps([Self.reducedMap: reducing.output, Self.roiFeatures: hidden2])
        return TrainingPass(output: published, losses: ["rcnn_cls": loss.classification, "rcnn_box": loss.box],
                            normaliser: normaliser) { gradient in
            loss.dLogits.scale(normaliser.share)
            loss.dDeltas.scale(normaliser.share)
            var dHidden2 = try self.classifier.backward(loss.dLogits, input: hidden2, wantInput: true)!
            dHidden2.add(try self.boxRegressor.backward(loss.dDeltas, input: hidden2, wantInput: true)!)
            if let dFeatures = gradient[Self.roiFeatures] { dHidden2.add(dFeatures) }
            var dReduced = try embedding.backward(dHidden2)
            if let extra = gradient[Self.reducedMap] { dReduced.add(extra) }
            return FeatureMaps([self.inFeature: try reducing.backward(dReduced)])
        }
    }

    /// The 2fc features of `rois` [K, 5] on the backbone maps `features`: 1x1 conv + ReLU, RoI
    /// features from the extractor, fc + ReLU twice. Backward takes dFeatures and returns the
    /// backbone map's gradient, by name. Used by the mimic branch (on the cropped patches).
    public func embed(_ features: FeatureMaps, rois: Tensor, _ ws: Workspace) throws -> TrainingPass<Tensor, Tensor, FeatureMaps> {
        let reducing = try reduceMap(features[inFeature]!, ws)
        let embedding = try embedReduced(reducing.output, rois: rois, ws)
        return TrainingPass(output: embedding.output) { FeatureMaps([self.inFeature: try reducing.backward(try embedding.backward($0))]) }
    }

    /// The reduced map: 1x1 conv to `reduceChannels` + ReLU on res5. Backward takes its gradient
    /// and returns dRes5.
    public func reduceMap(_ res5: Tensor, _ ws: Workspace) throws -> TrainingPass<Tensor, Tensor, Tensor> {
        var reduced = try reduce.forward(res5, ws)
        reluForwardInPlace(&reduced)
        return TrainingPass(output: reduced) { dReduced in
            var dPre = Tensor(zeros: dReduced.shape)
            try reluBackward(dInput: &dPre, dOutput: dReduced, output: reduced)
            return try self.reduce.backward(dPre, input: res5, wantInput: true, ws)!
        }
    }

    /// The 2fc features of `rois` on the reduced map: RoI features from the extractor, fc + ReLU
    /// twice. Backward takes dFeatures and returns the gradient of the reduced map.
    public func embedReduced(_ reduced: Tensor, rois: Tensor, _ ws: Workspace) throws -> TrainingPass<Tensor, Tensor, Tensor> {
        let (pooled, cache) = try extractor.forward(reduced, rois: rois, spatialScale: spatialScale)
        let flat = try pooled.reshaped([rois.dim(0), pooled.count / max(1, rois.dim(0))])
        var hidden1 = try fc1.forward(flat)
        reluForwardInPlace(&hidden1)
        var hidden2 = try fc2.forward(hidden1)
        reluForwardInPlace(&hidden2)
        return TrainingPass(output: hidden2) { dHidden2 in
            var d = Tensor(zeros: dHidden2.shape)
            try reluBackward(dInput: &d, dOutput: dHidden2, output: hidden2)
            let dHidden1 = try self.fc2.backward(d, input: hidden1, wantInput: true)!
            d = Tensor(zeros: dHidden1.shape)
            try reluBackward(dInput: &d, dOutput: dHidden1, output: hidden1)
            let dFlat = try self.fc1.backward(d, input: flat, wantInput: true)!
            var dReduced = Tensor(zeros: reduced.shape)
            try self.extractor.backward(try dFlat.reshaped(pooled.shape), features: reduced, cache: cache,
                                        spatialScale: self.spatialScale, dFeatures: &dReduced)
            return dReduced
        }
    }

    /// Candidates of each image from its proposals on the backbone maps (test time), before NMS
    /// (`select` keeps the detections), and the maps it publishes for the other branches.
    public func candidates(_ features: FeatureMaps, proposals: [[Box]], imageSizes: [ImageSize], _ ws: Workspace) throws
        -> (candidates: [[Detection]], published: FeatureMaps) {
        let reduced = try reduceMap(features[inFeature]!, ws).output
        let published = FeatureMaps([Self.reducedMap: reduced])
        return (try candidates(reduced: reduced, proposals: proposals, imageSizes: imageSizes, ws), published)
    }

    func candidates(reduced: Tensor, proposals: [[Box]], imageSizes: [ImageSize], _ ws: Workspace) throws -> [[Detection]] {
        var rois: [Float] = []
        for (n, boxes) in proposals.enumerated() { rois += boxes.rois(batchIndex: n) }
        let count = rois.count / 5
        if count == 0 { return proposals.map { _ in [] } }
        let hidden2 = try embedReduced(reduced, rois: try Tensor(shape: [count, 5], data: rois), ws).output
        return try candidates(logits: try classifier.forward(hidden2), deltas: try boxRegressor.forward(hidden2),
                              proposals: proposals, imageSizes: imageSizes)
    }

    // MARK: - Training targets and losses

    /// Proposals plus ground truth, matched (foreground at IoU >= 0.5) and sampled per image.
    public func sample(proposals: [[Box]], targets: [Instances], rngs: inout [SeededGenerator]) -> SampledRoIs {
        var out = SampledRoIs(rois: Tensor(zeros: [0, 5]), boxes: [], labels: [], targets: [], image: [], matched: [])
        var flat: [Float] = []
        for (n, t) in targets.enumerated() {
            let candidates = proposals[n] + t.boxes
            let m = matchBoxes(candidates, groundTruth: t.boxes, ignoreRegions: t.ignore, foreground: spec.foregroundIoU,
                               background: spec.foregroundIoU, lowQualityMatches: false)
            let (fg, bg) = sampleLabels(m.labels, batchSize: spec.batchSizePerImage, positiveFraction: spec.positiveFraction, rng: &rngs[n])
            for i in fg + bg {
                let b = candidates[i]
                let isFG = m.labels[i] == .foreground
                out.boxes.append(b)
                out.labels.append(isFG ? t.labels[m.groundTruth[i]] : 0)
                out.targets.append(isFG ? spec.boxCoder.encode(t.boxes[m.groundTruth[i]], reference: b) : (0, 0, 0, 0))
                out.image.append(n)
                out.matched.append(isFG ? m.groundTruth[i] : -1)
                flat += [Float(n), b.x1, b.y1, b.x2, b.y2]
            }
        }
        out.rois = try! Tensor(shape: [out.boxes.count, 5], data: flat)
        return out
    }

    /// Cross-entropy over the sampled RoIs (mean) and smooth L1 of the foreground RoIs' own class
    /// deltas, summed and divided by the number of sampled RoIs (detectron2's normalisation).
    public func losses(logits: Tensor, deltas: Tensor, sampled: SampledRoIs) throws
        -> (classification: Float, box: Float, dLogits: Tensor, dDeltas: Tensor) {
        let k = sampled.labels.count
        let cls = try softmaxCrossEntropyLoss(logits: logits, labels: sampled.labels)
        var dLogits = Tensor(zeros: logits.shape)
        try softmaxCrossEntropyBackward(dLogits: &dLogits, logits: logits, labels: sampled.labels)
        var predicted: [Float] = [], wanted: [Float] = [], index: [Int] = []
        let width = deltas.dim(1)
        for r in 0..<k where sampled.labels[r] > 0 {
            let t = sampled.targets[r], base = r * width + 4 * sampled.labels[r]
            for (j, v) in [t.0, t.1, t.2, t.3].enumerated() {
                index.append(base + j); predicted.append(deltas.data[base + j]); wanted.append(v)
            }
        }
        let p = try Tensor(shape: [predicted.count], data: predicted), w = try Tensor(shape: [wanted.count], data: wanted)
        let normaliser = Float(max(1, k))
        let box = try smoothL1Loss(input: p, target: w, beta: spec.smoothL1Beta) / normaliser
        var dp = Tensor(zeros: p.shape)
        try smoothL1Backward(dInput: &dp, input: p, target: w, beta: spec.smoothL1Beta, gradOutput: 1 / normaliser)
        var dDeltas = Tensor(zeros: deltas.shape)
        for (j, i) in index.enumerated() { dDeltas.data[i] += dp.data[j] }
        return (cls, box, dLogits, dDeltas)
    }

    // MARK: - Inference

    /// Every (RoI, class) pair of each image scoring above the threshold, decoded and clipped to the
    /// image, in RoI-then-class order, before NMS (what multi-scale testing merges across views).
    public func candidates(logits: Tensor, deltas: Tensor, proposals: [[Box]], imageSizes: [ImageSize]) throws -> [[Detection]] {
        let classes = self.classes
        var result: [[Detection]] = []
        var offset = 0
        for (n, boxes) in proposals.enumerated() {
            let size = imageSizes[n]
            var candidates: [Detection] = []
            for (r, roi) in boxes.enumerated() {
                let row = offset + r
                // Softmax in Double for the scores.
                var m = -Double.infinity
                for c in 0...classes { m = max(m, Double(logits.data[row * (classes + 1) + c])) }
                var s = 0.0
                for c in 0...classes { s += exp(Double(logits.data[row * (classes + 1) + c]) - m) }
                for c in 1...classes {
                    let score = Float(exp(Double(logits.data[row * (classes + 1) + c]) - m) / s)
                    guard score > spec.scoreThreshold else { continue }
                    let base = row * 4 * (classes + 1) + 4 * c
                    let b = spec.boxCoder.decode((deltas.data[base], deltas.data[base + 1], deltas.data[base + 2], deltas.data[base + 3]),
                                                 reference: roi).clipped(width: Float(size.width), height: Float(size.height))
                    guard b.width > 0, b.height > 0 else { continue }
                    candidates.append(Detection(box: b, score: score, label: c))
                }
            }
            offset += boxes.count
            result.append(candidates)
        }
        return result
    }

    /// Per-class NMS over one image's candidates and the top `detectionsPerImage` by score;
    /// returns the kept candidates' indices, by descending score.
    public func selection(_ candidates: [Detection]) throws -> [Int] {
        if candidates.isEmpty { return [] }
        let keep = try batchedNMS(boxes: candidates.map(\.box).tensor, scores: try Tensor(shape: [candidates.count], data: candidates.map(\.score)),
                                  categories: candidates.map(\.label), iouThreshold: Double(spec.nmsThreshold))
        return Array(keep.prefix(spec.detectionsPerImage))
    }

    /// The kept candidates of `selection`.
    public func select(_ candidates: [Detection]) throws -> [Detection] {
        try selection(candidates).map { candidates[$0] }
    }

    /// Multiply-adds of the head at the proposal count.
    public func cost(shapes: [String: [Int]], proposals: Int, detections: Int) throws -> [(String, Int)] {
        var counter = CostCounter()
        _ = try reduce.cost(shapes[inFeature]!, &counter)
        extractor.cost(rois: proposals, &counter)
        for fc in [fc1, fc2, classifier, boxRegressor] { fc.cost(rows: proposals, &counter) }
        return [("head", counter.multiplyAdds)]
    }
}
