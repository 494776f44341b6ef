// Every documented key of the model sections does something: changing it changes the detector
// spec the config maps to. (The data, solver and output keys are read by the loader, the
// optimiser and the trainer; solver.weight_decay_norm has its own test.)
import DCNConfig
import DCNModels
import DCNTraining
import Testing

/// A different valid value for each key of the model sections (with any companion override a
/// cross-field rule needs). Keys without an entry make the test fail, so a new key needs one.
let alternativeValues: [String: [String]] = [
    "mask.enabled": ["mask.enabled=true"],
    "mask.pooled_size": ["mask.enabled=true", "mask.pooled_size=7"],
    "mask.sampling_ratio": ["mask.enabled=true", "mask.sampling_ratio=0"],
    "mask.convs": ["mask.enabled=true", "mask.convs=2"],
    "mask.conv_dim": ["mask.enabled=true", "mask.conv_dim=128"],
    "mask.class_agnostic": ["mask.enabled=true", "mask.class_agnostic=true"],
    "mask.loss_weight": ["mask.enabled=true", "mask.loss_weight=2"],
    "backbone.depth": ["backbone.depth=101"],
    "backbone.stem_width": ["backbone.stem_width=32"],
    "backbone.stage_planes": ["backbone.stage_planes=[32, 64, 128, 256]"],
    "backbone.layers": ["backbone.layers=[1, 1, 1, 1]"],
    "backbone.norm": ["backbone.norm=gn"],
    "backbone.gn_groups": ["backbone.norm=gn", "backbone.gn_groups=16"],
    "backbone.frozen_stages": ["backbone.frozen_stages=1"],
    "backbone.deformable_stages": ["backbone.conv_type=dconv", "backbone.deformable_stages=[5]"],
    "backbone.conv_type": ["backbone.conv_type=mdconv", "backbone.deformable_stages=[3, 4, 5]"],
    "backbone.offset_groups": ["backbone.conv_type=dconv", "backbone.deformable_stages=[5]", "backbone.offset_groups=2"],
    "backbone.offset_lr_mult": ["backbone.offset_lr_mult=0.5"],
    "backbone.modulation": ["backbone.modulation=two_sigmoid"],
    "backbone.res5_dilation": ["backbone.res5_dilation=1", "rpn.anchor_stride=16"],
    "rpn.anchor_sizes": ["rpn.anchor_sizes=[64, 128]"],
    "rpn.aspect_ratios": ["rpn.aspect_ratios=[1]"],
    "rpn.anchor_stride": ["rpn.anchor_stride=8", "backbone.res5_dilation=1"],
    "rpn.head_channels": ["rpn.head_channels=256"],
    "rpn.positive_iou": ["rpn.positive_iou=0.8"],
    "rpn.negative_iou": ["rpn.negative_iou=0.2"],
    "rpn.batch_size_per_image": ["rpn.batch_size_per_image=128"],
    "rpn.positive_fraction": ["rpn.positive_fraction=0.25"],
    "rpn.pre_nms_topk_train": ["rpn.pre_nms_topk_train=6000"],
    "rpn.pre_nms_topk_test": ["rpn.pre_nms_topk_test=3000"],
    "rpn.post_nms_topk_train": ["rpn.post_nms_topk_train=1000"],
    "rpn.post_nms_topk_test": ["rpn.post_nms_topk_test=500"],
    "rpn.nms_threshold": ["rpn.nms_threshold=0.6"],
    "rpn.smooth_l1_beta": ["rpn.smooth_l1_beta=0.5"],
    "roi_head.extractor": ["roi_head.extractor=mdpool"],
    "roi_head.pooled_size": ["roi_head.pooled_size=14"],
    "roi_head.sampling_ratio": ["roi_head.sampling_ratio=0"],
    "roi_head.reduce_channels": ["roi_head.reduce_channels=128"],
    "roi_head.fc_dim": ["roi_head.fc_dim=512"],
    "roi_head.batch_size_per_image": ["roi_head.batch_size_per_image=256"],
    "roi_head.positive_fraction": ["roi_head.positive_fraction=0.5"],
    "roi_head.fg_iou": ["roi_head.fg_iou=0.6"],
    "roi_head.bbox_reg_weights": ["roi_head.bbox_reg_weights=[1, 1, 1, 1]"],
    "roi_head.dpool_gamma": ["roi_head.dpool_gamma=0.2"],
    "roi_head.dpool_lr_mult": ["roi_head.dpool_lr_mult=0.1"],
    "roi_head.score_threshold": ["roi_head.score_threshold=0.1"],
    "roi_head.nms_threshold": ["roi_head.nms_threshold=0.4"],
    "roi_head.detections_per_image": ["roi_head.detections_per_image=50"],
    "roi_head.smooth_l1_beta": ["roi_head.smooth_l1_beta=0.5"],
    "mimic.regions": ["mimic.regions=fg"],
    "mimic.rois_per_image": ["mimic.regions=fg", "mimic.rois_per_image=16"],
    "mimic.patch_size": ["mimic.regions=fg", "mimic.patch_size=112"],
    "mimic.loss_weight": ["mimic.regions=fg", "mimic.loss_weight=0.2"],
    "mimic.cls_loss_weight": ["mimic.regions=fg", "mimic.cls_loss_weight=0.2"],
]

/// The value a key is compared against where dropping it would break a cross-field rule.
let referenceValues: [String: String] = [
    "backbone.deformable_stages": "backbone.deformable_stages=[3, 4, 5]",
    "backbone.conv_type": "backbone.conv_type=dconv",
]

/// Keys of the model sections that are not part of the spec, with what reads them instead.
let notInTheSpec: [String: String] = [
    "backbone.weights": "buildModel loads them (Train.swift)",
    "backbone.weights_prefix": "buildModel loads the weights with it (Train.swift)",
    "backbone.pretrained_offsets": "buildModel loads the weights with it (Train.swift; detectorsStartFromAClassificationCheckpoint tests it)",
]

@Test func everyModelKeyChangesTheDetectorSpec() throws {
    let base = "model:\n  name: keys\ndata:\n  format: synth\n  root: unused\n"
    func spec(_ overrides: [String]) throws -> DetectorSpec {
        detectorSpec(try loadConfig(yaml: base, overrides: overrides), classes: 3)
    }
    // The companions (e.g. mimic.regions=fg) are in the reference too, so each key is tested by itself.
    for (section, keys) in ExperimentConfig.schemaKeys where ["backbone", "rpn", "roi_head", "mimic", "mask"].contains(section) {
        for key in keys.map({ "\(section).\($0)" }) where notInTheSpec[key] == nil {
            guard let overrides = alternativeValues[key] else {
                Issue.record("\(key) has no alternative value in this test: add one, so the test shows it changes the spec")
                continue
            }
            let reference = overrides.filter { !$0.hasPrefix(key + "=") } + (referenceValues[key].map { [$0] } ?? [])
            #expect(try spec(overrides) != spec(reference), "\(key): changing it does not change the detector spec")
        }
    }
}

/// The model specs keep defaults of their own (tests and library users build them directly); the
/// config's defaults are the ones a run uses. This pins the two together: a config with nothing set
/// maps to the specs' defaults, except the settings listed here on purpose.
@Test func theConfigDefaultsAreTheSpecDefaults() throws {
    let config = try loadConfig(yaml: "data:\n  format: synth\n  root: unused\n", overrides: [])
    let mapped = detectorSpec(config, classes: 80)
    var expected = DetectorSpec(backbone: ResNetSpec(depth: .r50), rpn: RPNSpec(), roiHead: RoIHeadSpec(), classes: 80)
    // The paper's detectors use res5 at stride 16 with dilation 2; ResNetSpec's default is
    // torchvision's classification network (stride 32).
    expected.backbone.res5Dilation = 2
    #expect(mapped.rpn == expected.rpn, "rpn: the config's defaults differ from RPNSpec's")
    #expect(mapped.roiHead == expected.roiHead, "roi_head: the config's defaults differ from RoIHeadSpec's")
    let mimicking = detectorSpec(try loadConfig(yaml: "data:\n  format: synth\n  root: unused\nmimic:\n  regions: fg\n", overrides: []),
                                 classes: 80)
    var fg = MimicSpec()
    fg.regions = .fg
    #expect(mimicking.branch(MimicSpec.self) == fg, "mimic: the config's defaults differ from MimicSpec's")
    #expect(mapped.backbone == expected.backbone, "backbone: the config's defaults differ from ResNetSpec's")
    #expect(mapped.branches.isEmpty)
    let masked = detectorSpec(try loadConfig(yaml: "data:\n  format: synth\n  root: unused\nmask:\n  enabled: true\n", overrides: []),
                              classes: 80)
    #expect(masked.branch(MaskHeadSpec.self) == MaskHeadSpec(), "mask: the config's defaults differ from MaskHeadSpec's")
}

/// Issue 30: the deformable RoI pooling's offset fcs learn at the papers' rates unless
/// roi_head.dpool_lr_mult says otherwise: 0.01 for dpool (DCNv1), 1 for mdpool (DCNv2, whose added
/// fcs learn at the rate of the existing layers; at 0.01 x 0.01 make demo's mdpool offsets stayed
/// under 0.002 feature pixels in 2,600 iterations).
@Test func theRoIPoolingOffsetsLearnAtThePapersRates() throws {
    let base = "model:\n  name: keys\ndata:\n  format: synth\n  root: unused\n"
    func rate(_ overrides: [String]) throws -> Float {
        detectorSpec(try loadConfig(yaml: base, overrides: overrides), classes: 3).roiHead.offsetLearningRateScale
    }
    #expect(try rate(["roi_head.extractor=dpool"]) == 0.01)
    #expect(try rate(["roi_head.extractor=mdpool"]) == 1)
    #expect(try rate(["roi_head.extractor=mdpool", "roi_head.dpool_lr_mult=0.01"]) == 0.01)
}
