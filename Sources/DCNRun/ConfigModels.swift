// The config tree composed into whole models: which parts, in which order, for how many classes,
// with pretrained backbone weights loaded. Each part's own section is mapped onto its spec in
// DCNConfig (PartSpecs.swift, detectron2's from_config); model types never read the config.
import DCNConfig
import DCNModels
import DCNTensor
import Foundation

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

/// The classifier a config (`model.task: classification`) describes, with `backbone.weights`
/// (torchvision names, classifier included) loaded when configured.
public func buildClassifier(_ config: ExperimentConfig, classes: Int) throws -> ImageClassifier {
    let classifier = try ImageClassifier(spec: classifierSpec(config, classes: classes), labelSmoothing: Float(config.solver.labelSmoothing),
                                         seed: UInt64(config.solver.seed))
    if let path = config.backbone.weights {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch {
            throw TrainingError("backbone.weights: cannot read \(path): \(error)")
        }
        var options = WeightLoadOptions(filePrefix: config.backbone.weightsPrefix, modelPrefix: "")
        options.mayBeUnused = { $0.hasSuffix("num_batches_tracked") }
        do { try loadWeights(classifier.parameters, from: file, options: options) } catch let error as WeightLoadError {
            throw TrainingError("backbone.weights: \(error)")
        }
    }
    return classifier
}

/// The model a config describes, with pretrained backbone weights loaded when configured (an
/// ImageNet checkpoint exported from torchvision, or a dcn-train classification checkpoint with
/// `weights_prefix: "model."`); `log` receives what the loading took, skipped and re-initialised.
public func buildModel(_ config: ExperimentConfig, classes: Int, log: ((String) -> Void)? = nil) throws -> GeneralizedRCNN {
    let model = try GeneralizedRCNN(spec: detectorSpec(config, classes: classes), seed: UInt64(config.solver.seed))
    try loadPretrainedBackbone(config, into: model.backbone, log: log)
    return model
}

/// The semantic segmentation model a config (`model.task: segmentation`) describes, `classes`
/// with background, with `backbone.weights` loaded as for a detector.
public func buildSegmenter(_ config: ExperimentConfig, classes: Int, log: ((String) -> Void)? = nil) throws -> SemanticSegmenter {
    let model = try SemanticSegmenter(spec: segmenterSpec(config, classes: classes), seed: UInt64(config.solver.seed))
    try loadPretrainedBackbone(config, into: model.backbone, log: log)
    return model
}

/// Loads `backbone.weights` (if configured) into a detector's or segmenter's backbone.
func loadPretrainedBackbone(_ config: ExperimentConfig, into backbone: ResNet, log: ((String) -> Void)?) throws {
    guard let path = config.backbone.weights else { return }
    let file: SafeTensorsFile
    do { file = try SafeTensorsFile(path: path) } catch {
        throw TrainingError("backbone.weights: cannot read \(path): \(error)")
    }
    var options = WeightLoadOptions(filePrefix: config.backbone.weightsPrefix, modelPrefix: "backbone.")
    // An ImageNet checkpoint carries the classifier, and maybe offset branches of stages that
    // are regular here; the model uses neither.
    let prefix = config.backbone.weightsPrefix
    options.mayBeUnused = { $0.hasSuffix("num_batches_tracked") || $0.hasPrefix(prefix + "fc.") || $0.contains("_offset.") }
    if !config.backbone.pretrainedOffsets { options.keepInitial = { $0.contains("_offset.") } }
    do {
        let report = try loadWeights(backbone.parameters, from: file, options: options)
        log?("backbone.weights \(path): \(report.summary)")
    } catch let error as WeightLoadError {
        throw TrainingError("backbone.weights: \(error)")
    }
}
