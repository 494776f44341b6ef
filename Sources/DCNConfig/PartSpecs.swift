// Each model section mapped onto its part's spec (detectron2's `from_config`): the only place a
// section becomes model parameters. The specs have no defaults of their own, so a part's defaults
// are its section's (`RPNSpec(RPNConfig())` is the RPN a config with nothing set builds), and
// every setting must be given here: a spec field without its key does not compile. What the
// sections do not hold (classes, input channels and strides) is derived where the parts are
// composed (`detectorSpec` in DCNRun, `GeneralizedRCNN.init`).
import DCNModels

extension ResNetSpec {
    /// The `backbone` section (`classes` stays nil: a detector's backbone; the classifier sets it).
    public init(_ c: BackboneConfig) {
        let norm: NormKind
        switch c.norm {
        case .frozenBN: norm = .frozenBatchNorm
        case .bn: norm = .batchNorm
        case .gn: norm = .groupNorm(groups: c.gnGroups)
        }
        self.init(depth: c.depth, layers: c.resolvedLayers, stemWidth: c.stemWidth, stagePlanes: c.stagePlanes,
                  stageConv: (2...5).map { c.deformableStages.contains($0) ? c.convType : .regular }, offsetGroups: c.offsetGroups,
                  offsetLearningRateScale: Float(c.offsetLrMult), modulation: c.modulation, res5Dilation: c.res5Dilation, norm: norm,
                  frozenStages: c.frozenStages)
    }
}

extension RPNSpec {
    /// The `rpn` section.
    public init(_ r: RPNConfig) {
        self.init(anchors: AnchorGenerator(sizes: r.anchorSizes.map { Float($0) }, aspectRatios: r.aspectRatios.map { Float($0) },
                                           stride: r.anchorStride),
                  headChannels: r.headChannels, positiveIoU: Float(r.positiveIou), negativeIoU: Float(r.negativeIou),
                  batchSizePerImage: r.batchSizePerImage, positiveFraction: Float(r.positiveFraction),
                  preNMSTopKTrain: r.preNmsTopkTrain, preNMSTopKTest: r.preNmsTopkTest,
                  postNMSTopKTrain: r.postNmsTopkTrain, postNMSTopKTest: r.postNmsTopkTest,
                  nmsThreshold: Float(r.nmsThreshold), smoothL1Beta: Float(r.smoothL1Beta))
    }
}

extension RoIHeadSpec {
    /// The `roi_head` section; the (m)dpool offset fcs learn at dpool_lr_mult, or at the papers' rate for
    /// the extractor (0.01 for dpool, DCNv1's offset fc; 1 for mdpool, DCNv2's added fcs).
    public init(_ h: RoIHeadConfig) {
        let w = h.bboxRegWeights.map { Float($0) }
        self.init(reduceChannels: h.reduceChannels, extractor: h.extractor, pooledSize: h.pooledSize, samplingRatio: h.samplingRatio,
                  gamma: Float(h.dpoolGamma), offsetLearningRateScale: Float(h.dpoolLrMult ?? (h.extractor == .mdpool ? 1 : 0.01)), fcDim: h.fcDim,
                  batchSizePerImage: h.batchSizePerImage, positiveFraction: Float(h.positiveFraction), foregroundIoU: Float(h.fgIou),
                  boxCoder: BoxCoder(weights: (w[0], w[1], w[2], w[3])), smoothL1Beta: Float(h.smoothL1Beta),
                  scoreThreshold: Float(h.scoreThreshold), nmsThreshold: Float(h.nmsThreshold), detectionsPerImage: h.detectionsPerImage)
    }
}

extension MimicSpec {
    /// The `mimic` section.
    public init(_ m: MimicConfig) {
        self.init(regions: m.regions, roisPerImage: m.roisPerImage, patchSize: m.patchSize, lossWeight: Float(m.lossWeight),
                  classificationLossWeight: Float(m.clsLossWeight))
    }
}

extension MaskHeadSpec {
    /// The `mask` section (`enabled` says whether the detector has the branch: `detectorSpec`).
    public init(_ k: MaskConfig) {
        self.init(pooledSize: k.pooledSize, samplingRatio: k.samplingRatio, convs: k.convs, convDim: k.convDim,
                  classAgnostic: k.classAgnostic, lossWeight: Float(k.lossWeight))
    }
}

extension DeepLabHeadSpec {
    /// The `segmentation` section.
    public init(_ s: SegmentationConfig) {
        self.init(hiddenChannels: s.hiddenChannels, lossWeight: Float(s.lossWeight))
    }
}
