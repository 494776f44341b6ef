// RoI feature extraction, one switch for the paper's four rows: RoIPool ("regular"), aligned
// RoIAlign, deformable RoI pooling (DCNv1: one fc to normalised offsets) and modulated deformable
// RoI pooling (DCNv2: fc-fc-fc to offsets and sigmoid modulation). The offset branches read the
// RoIAlign features of the same RoI and start at zero, so dpool starts as RoIAlign and mdpool as
// half of it (sigmoid(0) = 0.5).
import DCNOps
import DCNTensor

/// The RoI feature extractor of the head.
public enum RoIExtractorKind: String, Sendable, Codable, CaseIterable {
    case roipool, roialign, dpool, mdpool
}

/// Deformable RoI pooling's bin offsets and the gradients of the backward's output with respect
/// to them (the spatial-support analysis): bin (ph, pw) of RoI r starts at
/// (x1 + pw * bin_w + gamma * roi_w * offset[r, 0, ph, pw], y1 + ph * bin_h + gamma * roi_h * offset[r, 1, ph, pw]).
public struct BinGradients {
    /// [K, 5]: batch index, x1, y1, x2, y2 in image pixels.
    public let rois: Tensor
    public let pooledSize: Int
    public let gamma: Float
    public let offset: Tensor
    public let dOffset: Tensor
}

public final class RoIFeatureExtractor: DeformationSource {
    public let kind: RoIExtractorKind
    /// The parameters' prefix without its dot (`roi_heads.pooler`).
    public let deformationName: String
    /// Image pixels per pixel of the pooled feature map (set by the head that holds it).
    public var inputStride = 16
    /// While set (dpool, mdpool), each forward pass adds its bins' offsets here; nil otherwise.
    public var tally: DeformationTally?
    /// Sees each backward's bin-offset gradients (dpool / mdpool; `dcn-vis`); nil in training.
    public var binObserver: ((BinGradients) -> Void)?
    public let pooledSize: Int
    public let samplingRatio: Int
    public let gamma: Float
    public let channels: Int
    /// dpool: one fc to 2 * S * S offsets; mdpool: three fcs to 3 * S * S (offsets + modulation).
    let offsetFCs: [LinearLayer]

    public struct Cache {
        var rois: Tensor
        var argmax: [Int32] = []
        var aligned: Tensor? = nil
        /// Inputs of each offset fc (the flattened RoIAlign features, then ReLU outputs).
        var fcInputs: [Tensor] = []
        var offset: Tensor? = nil
        var mask: Tensor? = nil
    }

    /// `offsetLearningRateScale` applies to the offset branch (0.01 in the paper's dpool).
    public init(kind: RoIExtractorKind, channels: Int, pooledSize: Int = 7, samplingRatio: Int = 2, gamma: Float = 0.1,
                hiddenDim: Int = 1024, offsetLearningRateScale: Float = 0.01, prefix: String = "roi_heads.pooler.",
                rng: inout SeededGenerator) {
        self.kind = kind
        deformationName = prefix.hasSuffix(".") ? String(prefix.dropLast()) : prefix
        self.pooledSize = pooledSize
        self.samplingRatio = samplingRatio
        self.gamma = gamma
        self.channels = channels
        let input = channels * pooledSize * pooledSize, bins = pooledSize * pooledSize
        let lr = offsetLearningRateScale
        switch kind {
        case .roipool, .roialign:
            offsetFCs = []
        case .dpool:
            offsetFCs = [LinearLayer(name: prefix + "offset_fc", input, 2 * bins, weightInit: .zeros, learningRateScale: lr, rng: &rng)]
        case .mdpool:
            offsetFCs = [
                LinearLayer(name: prefix + "offset_fc1", input, hiddenDim, weightInit: .normal(std: 0.01), learningRateScale: lr, rng: &rng),
                LinearLayer(name: prefix + "offset_fc2", hiddenDim, hiddenDim, weightInit: .normal(std: 0.01), learningRateScale: lr, rng: &rng),
                LinearLayer(name: prefix + "offset_fc3", hiddenDim, 3 * bins, weightInit: .zeros, learningRateScale: lr, rng: &rng),
            ]
        }
    }

    public var parameters: [Parameter] { offsetFCs.flatMap(\.parameters) }
    public var offsetBranchParameters: [Parameter] { parameters }

    var alignOptions: (Float) -> RoIAlignOptions {
        { RoIAlignOptions(outputHeight: self.pooledSize, outputWidth: self.pooledSize, spatialScale: Double($0),
                          samplingRatio: self.samplingRatio, aligned: true) }
    }

    func deformOptions(_ scale: Float) -> DeformRoIPoolOptions {
        DeformRoIPoolOptions(outputHeight: pooledSize, outputWidth: pooledSize, spatialScale: Double(scale),
                             samplingRatio: samplingRatio, gamma: Double(gamma))
    }

    /// Pooled features `[K, C, S, S]` of `rois` `[K, 5]` (image pixels) on `features` of stride 1/scale.
    public func forward(_ features: Tensor, rois: Tensor, spatialScale scale: Float) throws -> (Tensor, Cache) {
        var cache = Cache(rois: rois)
        switch kind {
        case .roipool:
            let r = try roiPoolForward(input: features, rois: rois,
                                       options: RoIPoolOptions(outputHeight: pooledSize, outputWidth: pooledSize, spatialScale: Double(scale)))
            cache.argmax = r.argmax
            return (r.output, cache)
        case .roialign:
            return (try roiAlignForward(input: features, rois: rois, options: alignOptions(scale)), cache)
        case .dpool, .mdpool:
            let aligned = try roiAlignForward(input: features, rois: rois, options: alignOptions(scale))
            let k = rois.dim(0), bins = pooledSize * pooledSize
            var h = try aligned.reshaped([k, channels * bins])
            for (i, fc) in offsetFCs.enumerated() {
                cache.fcInputs.append(h)
                h = try fc.forward(h)
                if i < offsetFCs.count - 1 { reluForwardInPlace(&h) }
            }
            // Offsets [K, 2, S, S] (channel 0 = x, 1 = y) from the first 2*S*S outputs; the rest is the
            // modulation, one sigmoid scalar per bin.
            var offset = Tensor(zeros: [k, 2, pooledSize, pooledSize])
            var mask: Tensor? = kind == .mdpool ? Tensor(zeros: [k, 1, pooledSize, pooledSize]) : nil
            let width = h.dim(1)
            for r in 0..<k {
                for j in 0..<2 * bins { offset.data[r * 2 * bins + j] = h.data[r * width + j] }
                if mask != nil { for j in 0..<bins { mask!.data[r * bins + j] = sigmoid(h.data[r * width + 2 * bins + j]) } }
            }
            cache.aligned = aligned
            cache.offset = offset
            cache.mask = mask
            tally?.addPooling(offset: offset, mask: mask, rois: rois, gamma: gamma, spatialScale: scale)
            let pooled = try deformRoIPoolForward(input: features, rois: rois, offset: offset, mask: mask, options: deformOptions(scale))
            return (pooled, cache)
        }
    }

    /// Adds dL/dfeatures into `dFeatures` and the offset branch's parameter gradients.
    public func backward(_ dPooled: Tensor, features: Tensor, cache: Cache, spatialScale scale: Float, dFeatures: inout Tensor) throws {
        switch kind {
        case .roipool:
            try roiPoolBackward(dInput: &dFeatures, dOutput: dPooled, argmax: cache.argmax, rois: cache.rois,
                                options: RoIPoolOptions(outputHeight: pooledSize, outputWidth: pooledSize, spatialScale: Double(scale)))
        case .roialign:
            try roiAlignBackward(dInput: &dFeatures, dOutput: dPooled, rois: cache.rois, options: alignOptions(scale))
        case .dpool, .mdpool:
            guard let offset = cache.offset, let aligned = cache.aligned else { throw ShapeError("deformable RoI pooling backward without its forward cache") }
            let k = cache.rois.dim(0), bins = pooledSize * pooledSize
            var dOffset = Tensor(zeros: offset.shape)
            var dRaw: Tensor
            if let mask = cache.mask {
                var dMask = Tensor(zeros: mask.shape)
                try modulatedDeformRoIPoolBackward(dInput: &dFeatures, dOffset: &dOffset, dMask: &dMask, dOutput: dPooled, input: features,
                                                   rois: cache.rois, offset: offset, mask: mask, options: deformOptions(scale))
                dRaw = Tensor(zeros: [k, 3 * bins])
                for r in 0..<k {
                    for j in 0..<bins {
                        let s = mask.data[r * bins + j]
                        dRaw.data[r * 3 * bins + 2 * bins + j] = dMask.data[r * bins + j] * s * (1 - s)
                    }
                }
            } else {
                try deformRoIPoolBackward(dInput: &dFeatures, dOffset: &dOffset, dOutput: dPooled, input: features,
                                          rois: cache.rois, offset: offset, options: deformOptions(scale))
                dRaw = Tensor(zeros: [k, 2 * bins])
            }
            binObserver?(BinGradients(rois: cache.rois, pooledSize: pooledSize, gamma: gamma, offset: offset, dOffset: dOffset))
            let width = dRaw.dim(1)
            for r in 0..<k { for j in 0..<2 * bins { dRaw.data[r * width + j] = dOffset.data[r * 2 * bins + j] } }
            // Back through the fc tower to the RoIAlign features, then to the feature map.
            var d = dRaw
            for i in stride(from: offsetFCs.count - 1, through: 0, by: -1) {
                if i < offsetFCs.count - 1 {
                    var r = Tensor(zeros: d.shape)
                    try reluBackward(dInput: &r, dOutput: d, output: cache.fcInputs[i + 1])
                    d = r
                }
                d = try offsetFCs[i].backward(d, input: cache.fcInputs[i], wantInput: true)!
            }
            try roiAlignBackward(dInput: &dFeatures, dOutput: try d.reshaped(aligned.shape), rois: cache.rois, options: alignOptions(scale))
        }
    }

    /// Multiply-adds of the offset branch for `rois` RoIs (pooling itself is not counted).
    public func cost(rois: Int, _ counter: inout CostCounter) {
        for fc in offsetFCs { fc.cost(rows: rois, &counter) }
    }
}
