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
    var rpn = RPNSpec()
    let r = config.rpn
    rpn.anchors = AnchorGenerator(sizes: r.anchorSizes.map { Float($0) }, aspectRatios: r.aspectRatios.map { Float($0) },
                                  stride: r.anchorStride)
    rpn.headChannels = r.headChannels
    rpn.positiveIoU = Float(r.positiveIou)
    rpn.negativeIoU = Float(r.negativeIou)
    rpn.batchSizePerImage = r.batchSizePerImage
    rpn.positiveFraction = Float(r.positiveFraction)
    rpn.preNMSTopKTrain = r.preNmsTopkTrain
    rpn.preNMSTopKTest = r.preNmsTopkTest
    rpn.postNMSTopKTrain = r.postNmsTopkTrain
    rpn.postNMSTopKTest = r.postNmsTopkTest
    rpn.nmsThreshold = Float(r.nmsThreshold)
    rpn.smoothL1Beta = Float(r.smoothL1Beta)

    let h = config.roiHead
    var head = RoIHeadSpec()
    head.extractor = h.extractor
    head.pooledSize = h.pooledSize
    head.samplingRatio = h.samplingRatio
    head.reduceChannels = h.reduceChannels
    head.fcDim = h.fcDim
    head.batchSizePerImage = h.batchSizePerImage
    head.positiveFraction = Float(h.positiveFraction)
    head.foregroundIoU = Float(h.fgIou)
    let w = h.bboxRegWeights.map { Float($0) }
    head.boxCoder = BoxCoder(weights: (w[0], w[1], w[2], w[3]))
    head.gamma = Float(h.dpoolGamma)
    head.offsetLearningRateScale = Float(h.dpoolLrMult ?? (h.extractor == .mdpool ? 1 : 0.01))
    head.scoreThreshold = Float(h.scoreThreshold)
    head.nmsThreshold = Float(h.nmsThreshold)
    head.detectionsPerImage = h.detectionsPerImage
    head.smoothL1Beta = Float(h.smoothL1Beta)

    var mimic = MimicSpec()
    let m = config.mimic
    mimic.regions = m.regions
    mimic.roisPerImage = m.roisPerImage
    mimic.patchSize = m.patchSize
    mimic.lossWeight = Float(m.lossWeight)
    mimic.classificationLossWeight = Float(m.clsLossWeight)

    // The RoI branches besides the box head, one line each, in the order of their parameters.
    var branches: [RoIBranchSpec] = []
    if mimic.regions != .off { branches.append(mimic) }
    let k = config.mask
    if k.enabled {
        var spec = MaskHeadSpec()
        spec.pooledSize = k.pooledSize
        spec.samplingRatio = k.samplingRatio
        spec.convs = k.convs
        spec.convDim = k.convDim
        spec.classAgnostic = k.classAgnostic
        spec.lossWeight = Float(k.lossWeight)
        branches.append(spec)
    }
    return DetectorSpec(backbone: backboneSpec(config.backbone), rpn: rpn, roiHead: head, branches: branches, classes: classes)
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
