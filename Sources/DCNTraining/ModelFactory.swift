// The one place where the config tree becomes model parameters (detectron2's from_config):
// model types never read the config.
import DCNConfig
import DCNModels
import DCNTensor

/// Maps the backbone section onto a ResNet spec.
public func backboneSpec(_ c: BackboneConfig) -> ResNetSpec {
    var spec = ResNetSpec(depth: c.depth)
    spec.layers = c.resolvedLayers
    spec.stemWidth = c.stemWidth
    spec.stagePlanes = c.stagePlanes
    spec.stageConv = (2...5).map { c.deformableStages.contains($0) ? c.convType : .regular }
    spec.offsetGroups = c.offsetGroups
    spec.offsetLearningRateScale = Float(c.offsetLrMult)
    spec.modulation = c.modulation
    spec.res5Dilation = c.res5Dilation
    switch c.norm {
    case .frozenBN: spec.norm = .frozenBatchNorm
    case .bn: spec.norm = .batchNorm
    case .gn: spec.norm = .groupNorm(groups: c.gnGroups)
    }
    spec.frozenStages = c.frozenStages
    return spec
}

/// The classifier's network: the backbone section with global pooling and a `classes`-way fc.
public func classifierSpec(_ config: ExperimentConfig, classes: Int) -> ResNetSpec {
    var spec = backboneSpec(config.backbone)
    spec.classes = classes
    return spec
}

/// Maps the whole config onto the detector's spec for `classes` object classes.
public func detectorSpec(_ config: ExperimentConfig, classes: Int) -> DetectorSpec {
    // The RoI branches besides the box head, one line each, in the order of their parameters.
    var branches: [RoIBranchSpec] = []
    if config.mimic.regions != .off { branches.append(MimicSpec(config.mimic)) }
    if config.mask.enabled { branches.append(MaskHeadSpec(config.mask)) }
    return DetectorSpec(backbone: backboneSpec(config.backbone), rpn: RPNSpec(config.rpn), roiHead: RoIHeadSpec(config.roiHead),
                        branches: branches, classes: classes)
}

/// Maps the config onto the semantic segmentation model for `classes` classes (background included).
public func segmenterSpec(_ config: ExperimentConfig, classes: Int) -> SegmenterSpec {
    var head = DeepLabHeadSpec()
    head.hiddenChannels = config.segmentation.hiddenChannels
    head.lossWeight = Float(config.segmentation.lossWeight)
    return SegmenterSpec(backbone: backboneSpec(config.backbone), head: head, classes: classes)
}

// Each part's section mapped onto its spec (detectron2's from_config).

extension RPNSpec {
    public init(_ r: RPNConfig) {
        self.init()
        anchors = AnchorGenerator(sizes: r.anchorSizes.map { Float($0) }, aspectRatios: r.aspectRatios.map { Float($0) },
                                  stride: r.anchorStride)
        headChannels = r.headChannels
        positiveIoU = Float(r.positiveIou)
        negativeIoU = Float(r.negativeIou)
        batchSizePerImage = r.batchSizePerImage
        positiveFraction = Float(r.positiveFraction)
        preNMSTopKTrain = r.preNmsTopkTrain
        preNMSTopKTest = r.preNmsTopkTest
        postNMSTopKTrain = r.postNmsTopkTrain
        postNMSTopKTest = r.postNmsTopkTest
        nmsThreshold = Float(r.nmsThreshold)
        smoothL1Beta = Float(r.smoothL1Beta)
    }
}

extension RoIHeadSpec {
    public init(_ h: RoIHeadConfig) {
        self.init()
        extractor = h.extractor
        pooledSize = h.pooledSize
        samplingRatio = h.samplingRatio
        reduceChannels = h.reduceChannels
        fcDim = h.fcDim
        batchSizePerImage = h.batchSizePerImage
        positiveFraction = Float(h.positiveFraction)
        foregroundIoU = Float(h.fgIou)
        let w = h.bboxRegWeights.map { Float($0) }
        boxCoder = BoxCoder(weights: (w[0], w[1], w[2], w[3]))
        gamma = Float(h.dpoolGamma)
        offsetLearningRateScale = Float(h.dpoolLrMult ?? (h.extractor == .mdpool ? 1 : 0.01))
        scoreThreshold = Float(h.scoreThreshold)
        nmsThreshold = Float(h.nmsThreshold)
        detectionsPerImage = h.detectionsPerImage
        smoothL1Beta = Float(h.smoothL1Beta)
    }
}

extension MimicSpec {
    public init(_ m: MimicConfig) {
        self.init()
        regions = m.regions
        roisPerImage = m.roisPerImage
        patchSize = m.patchSize
        lossWeight = Float(m.lossWeight)
        classificationLossWeight = Float(m.clsLossWeight)
    }
}

extension MaskHeadSpec {
    public init(_ k: MaskConfig) {
        self.init()
        pooledSize = k.pooledSize
        samplingRatio = k.samplingRatio
        convs = k.convs
        convDim = k.convDim
        classAgnostic = k.classAgnostic
        lossWeight = Float(k.lossWeight)
    }
}

/// Freezes every parameter that `solver.train_only` leaves out (they keep their values and get no
/// gradient); an error when the choice selects nothing trainable in this model.
public func restrictTraining(_ parameters: ParameterList, to choice: TrainedParameters, task: TaskChoice) throws {
    let trains: (Parameter) -> Bool
    switch choice {
    case .all: return
    case .offsets:
        // Deformable convolutions' `<conv>_offset.*` and the deformable RoI pooling's `offset_fc*`.
        trains = { $0.name.contains("_offset.") || $0.name.contains("pooler.offset_fc") }
    case .normsAndClassifier:
        guard task == .classification else {
            throw TrainingError("solver.train_only: norms_and_classifier is for classification (model.task: classification)", exitCode: 2)
        }
        // Norm weights and biases are the parameters without weight decay of their own.
        trains = { !$0.decays || $0.name == "fc.weight" || $0.name == "fc.bias" }
    }
    var kept = 0
    for p in parameters.all where p.trainable {
        if trains(p) { kept += 1 } else { p.trainable = false }
    }
    if kept == 0 {
        throw TrainingError("solver.train_only: \(choice.rawValue) selects no trainable parameter of this model"
                            + (choice == .offsets ? " (it has no deformable layer: set backbone.deformable_stages and conv_type)" : ""), exitCode: 2)
    }
}
