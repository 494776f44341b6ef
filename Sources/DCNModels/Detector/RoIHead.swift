// The Fast R-CNN head of the paper's layout: res5 ran on the whole image; here a 1x1 conv
// 2048 -> 256 + ReLU, RoI features (7x7x256) from the chosen extractor, two fc 1024 + ReLU ("2fc"),
// a (C+1)-way classifier and class-specific box regression.
import DCNOps
import DCNTensor
import Foundation

/// The RoI head's fixed choices.
public struct RoIHeadSpec: Sendable, Equatable {
    public var classes: Int
    public var inChannels = 2048
    public var reduceChannels = 256
    public var extractor: RoIExtractorKind = .roialign
    public var pooledSize = 7
    public var samplingRatio = 2
    public var gamma: Float = 0.1
    public var offsetLearningRateScale: Float = 0.01
    public var fcDim = 1024
    public var featureStride = 16
    public var batchSizePerImage = 512
    public var positiveFraction: Float = 0.25
    public var foregroundIoU: Float = 0.5
    public var boxCoder = BoxCoder(weights: (10, 10, 5, 5))
    public var smoothL1Beta: Float = 1
    public var scoreThreshold: Float = 0.05
    public var nmsThreshold: Float = 0.5
    public var detectionsPerImage = 100

    public init(classes: Int) { self.classes = classes }
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

/// One detection in the input image's pixels.
public struct Detection: Sendable, Equatable {
    public var box: Box
    public var score: Float
    /// 1...C
    public var label: Int
    /// Mask R-CNN: the mask's probabilities over the box, M x M row-major (nil without a mask branch).
    public var mask: [Float]?

    public init(box: Box, score: Float, label: Int, mask: [Float]? = nil) {
        self.box = box; self.score = score; self.label = label; self.mask = mask
    }
}

public final class RoIHead {
    public let spec: RoIHeadSpec
    let reduce: ConvLayer
    public let extractor: RoIFeatureExtractor
    let fc1: LinearLayer
    let fc2: LinearLayer
    let classifier: LinearLayer
    let boxRegressor: LinearLayer

    public init(spec: RoIHeadSpec, prefix: String = "roi_heads.", rng: inout SeededGenerator) {
        self.spec = spec
        reduce = ConvLayer(name: prefix + "reduce", spec.inChannels, spec.reduceChannels, kernel: 1, bias: true,
                           weightInit: .kaimingNormalFanOut, rng: &rng)
        extractor = RoIFeatureExtractor(kind: spec.extractor, channels: spec.reduceChannels, pooledSize: spec.pooledSize,
                                        samplingRatio: spec.samplingRatio, gamma: spec.gamma, hiddenDim: spec.fcDim,
                                        offsetLearningRateScale: spec.offsetLearningRateScale, prefix: prefix + "pooler.", rng: &rng)
        extractor.inputStride = spec.featureStride
        let flat = spec.reduceChannels * spec.pooledSize * spec.pooledSize
        // The fcs start as PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (detectron2's
        // c2_xavier_fill would use the bound sqrt(3 / fan_in)).
        fc1 = LinearLayer(name: prefix + "box_head.fc1", flat, spec.fcDim, weightInit: .uniformFanIn, rng: &rng)
        fc2 = LinearLayer(name: prefix + "box_head.fc2", spec.fcDim, spec.fcDim, weightInit: .uniformFanIn, rng: &rng)
        classifier = LinearLayer(name: prefix + "box_predictor.cls_score", spec.fcDim, spec.classes + 1,
                                 weightInit: .normal(std: 0.01), rng: &rng)
        boxRegressor = LinearLayer(name: prefix + "box_predictor.bbox_pred", spec.fcDim, 4 * (spec.classes + 1),
                                   weightInit: .normal(std: 0.001), rng: &rng)
    }

    /// Parameters by component: the head proper and the RoI pooling's offset branch.
    public var headParameters: [Parameter] { reduce.parameters + fc1.parameters + fc2.parameters + classifier.parameters + boxRegressor.parameters }
    public var poolingParameters: [Parameter] { extractor.parameters }

    var spatialScale: Float { 1 / Float(spec.featureStride) }

    /// What the head's training pass returns: the sampled RoIs with their targets, their 2fc
    /// features (f_FRCNN in the paper, [K, fcDim]) for the mimic branch, and the reduced res5 map
    /// the RoIs were pooled from (for the mask branch).
    public struct Sampled {
        public var rois: SampledRoIs
        public var features: Tensor
        public var reduced: Tensor
    }

    /// Gradients that other parts send back to the head: of the 2fc features (mimic branch) and
    /// of the reduced map (mask branch).
    public struct SampledGradient {
        public var features: Tensor?
        public var reduced: Tensor?
        public init(features: Tensor? = nil, reduced: Tensor? = nil) { self.features = features; self.reduced = reduced }
    }

    /// The head's training pass on res5: samples RoIs from the proposals and ground truth (drawing
    /// image n's from `rngs[n]`), losses `rcnn_cls` and `rcnn_box`. Backward takes the other parts'
    /// gradients of its outputs and returns dRes5.
    public func trainingPass(_ res5: Tensor, proposals: [[Box]], targets: [Instances], rngs: inout [SeededGenerator],
                             _ ws: Workspace) throws -> TrainingPass<Sampled, SampledGradient, Tensor> {
        let sampled = sample(proposals: proposals, targets: targets, rngs: &rngs)
        let reducing = try reduceMap(res5, ws)
        let embedding = try embedReduced(reducing.output, rois: sampled.rois, ws)
        let hidden2 = embedding.output
        let (logits, deltas) = (try classifier.forward(hidden2), try boxRegressor.forward(hidden2))
        var loss = try losses(logits: logits, deltas: deltas, sampled: sampled)
        let normaliser = LossNormaliser(count: sampled.labels.count)
        return TrainingPass(output: Sampled(rois: sampled, features: hidden2, reduced: reducing.output),
                            losses: ["rcnn_cls": loss.classification, "rcnn_box": loss.box], normaliser: normaliser) { gradient in
            loss.dLogits.scale(normaliser.share)
            loss.dDeltas.scale(normaliser.share)
            var dHidden2 = try self.classifier.backward(loss.dLogits, input: hidden2, wantInput: true)!
            dHidden2.add(try self.boxRegressor.backward(loss.dDeltas, input: hidden2, wantInput: true)!)
            if let dFeatures = gradient.features { dHidden2.add(dFeatures) }
            var dReduced = try embedding.backward(dHidden2)
            if let extra = gradient.reduced { dReduced.add(extra) }
            return try reducing.backward(dReduced)
        }
    }

    /// The 2fc features of `rois` [K, 5] on res5: 1x1 conv + ReLU, RoI features from the extractor,
    /// fc + ReLU twice. Backward takes dFeatures and returns dRes5. Used by the mimic branch (on
    /// the cropped patches).
    public func embed(_ res5: Tensor, rois: Tensor, _ ws: Workspace) throws -> TrainingPass<Tensor, Tensor, Tensor> {
        let reducing = try reduceMap(res5, ws)
        let embedding = try embedReduced(reducing.output, rois: rois, ws)
        return TrainingPass(output: embedding.output) { try reducing.backward(try embedding.backward($0)) }
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

    /// Candidates of each image from its proposals on res5 (test time), before NMS
    /// (`select` keeps the detections). `reduced` is `reduceMap(res5).output`.
    public func candidates(reduced: Tensor, proposals: [[Box]], imageSizes: [ImageSize], _ ws: Workspace) throws -> [[Detection]] {
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
        let classes = spec.classes
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

    /// Multiply-adds of the head for `rois` RoIs on a reduced map computed from `res5Shape`.
    public func cost(res5Shape: [Int], rois: Int, _ counter: inout CostCounter) throws {
        _ = try reduce.cost(res5Shape, &counter)
        extractor.cost(rois: rois, &counter)
        for fc in [fc1, fc2, classifier, boxRegressor] { fc.cost(rows: rois, &counter) }
    }
}
