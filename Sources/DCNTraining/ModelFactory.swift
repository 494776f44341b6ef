// The config tree composed into whole models: which parts, in which order, for how many classes.
// Each part's own section is mapped onto its spec in DCNConfig (PartSpecs.swift, detectron2's
// from_config); model types never read the config.
import DCNConfig
import DCNModels
import DCNRun
import DCNTensor

/// The classifier's network: the backbone section with global pooling and a `classes`-way fc.
public func classifierSpec(_ config: ExperimentConfig, classes: Int) -> ResNetSpec {
    var spec = ResNetSpec(config.backbone)
    spec.classes = classes
    return spec
}

/// Maps the whole config onto the detector's spec for `classes` object classes.
public func detectorSpec(_ config: ExperimentConfig, classes: Int) -> DetectorSpec {
    // The RoI branches besides the box head, one line each, in the order of their parameters.
    var branches: [RoIBranchSpec] = []
    if config.mimic.regions != .off { branches.append(MimicSpec(config.mimic)) }
    if config.mask.enabled { branches.append(MaskHeadSpec(config.mask)) }
    return DetectorSpec(backbone: ResNetSpec(config.backbone), rpn: RPNSpec(config.rpn), roiHead: RoIHeadSpec(config.roiHead),
                        branches: branches, classes: classes)
}

/// Maps the config onto the semantic segmentation model for `classes` classes (background included).
public func segmenterSpec(_ config: ExperimentConfig, classes: Int) -> SegmenterSpec {
    SegmenterSpec(backbone: ResNetSpec(config.backbone), head: DeepLabHeadSpec(config.segmentation), classes: classes)
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
