// Every documented key of the model sections does something: changing it changes the detector
// spec the config maps to. (The data, solver and output keys are read by the loader, the
// optimiser and the trainer; solver.weight_decay_norm has its own test.) And every model
// setting's default is written once, in its section: the part specs declare none.
import DCNConfig
import DCNModels
import DCNRun
import DCNTraining
import TestSupport
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
    "segmentation.hidden_channels": ["segmentation.hidden_channels=256"],
    "segmentation.loss_weight": ["segmentation.loss_weight=2"],
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

// MARK: - Each model setting's default is written once

/// The part specs, each with the file that declares it and the spec a section with nothing set maps to.
let partSpecs: [(name: String, file: String, fromDefaults: any Sendable)] = [
    ("ResNetSpec", "Sources/DCNModels/ResNet.swift", ResNetSpec(BackboneConfig())),
    ("RPNSpec", "Sources/DCNModels/Detector/RPN.swift", RPNSpec(RPNConfig())),
    ("RoIHeadSpec", "Sources/DCNModels/Detector/BoxHead.swift", RoIHeadSpec(RoIHeadConfig())),
    ("MimicSpec", "Sources/DCNModels/Detector/Mimic.swift", MimicSpec(MimicConfig())),
    ("MaskHeadSpec", "Sources/DCNModels/Detector/MaskHead.swift", MaskHeadSpec(MaskConfig())),
    ("DeepLabHeadSpec", "Sources/DCNModels/Segmentation/DeepLab.swift", DeepLabHeadSpec(SegmentationConfig())),
]

/// Part spec fields that no config key sets, with the one place their value is written.
let notASetting: [String: String] = [
    "ResNetSpec.block": "the depth's (ResNetDepth.block)",
    "ResNetSpec.groups": "the depth's (ResNetDepth.groups)",
    "ResNetSpec.widthPerGroup": "the depth's (ResNetDepth.groups)",
    "ResNetSpec.classes": "the classifier's class count, derived from the data (classifierSpec)",
    "RPNSpec.boxCoder": "fixed where RPNSpec declares it (unit weights, detectron2's RPN)",
    "DeepLabHeadSpec.inFeature": "fixed where DeepLabHeadSpec declares it (res5)",
]

/// Every leaf value of a spec by its path, with the part spec field it belongs to
/// ("RPNSpec.anchors") and the path of that part spec with its type ("rpn: RPNSpec"), found by Mirror.
func specLeaves(_ value: Any, path: String = "", field: String? = nil, part: String? = nil,
                into leaves: inout [String: (field: String?, part: String?, value: String)]) {
    let mirror = Mirror(reflecting: value)
    let typeName = String(describing: type(of: value))
    let isPart = partSpecs.contains { $0.name == typeName }
    guard !mirror.children.isEmpty else {
        leaves[path] = (field, part, String(describing: value))
        return
    }
    for (i, child) in mirror.children.enumerated() {
        let label = child.label ?? "\(i)"
        specLeaves(child.value, path: path + "." + label, field: isPart ? "\(typeName).\(label)" : field,
                   part: isPart ? "\(path): \(typeName)" : part, into: &leaves)
    }
}

/// The stored properties of struct `name` declared with a value of their own (`var x = 1`,
/// `var x: Int = 1`) in the source file `file`.
func propertiesDeclaredWithAValue(_ name: String, in file: String) throws -> Set<String> {
    let text = try String(contentsOfFile: repositoryPath(file), encoding: .utf8)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    guard let start = lines.firstIndex(where: { $0.contains("struct \(name):") || $0.contains("struct \(name) ") }) else {
        Issue.record("\(file) declares no struct \(name)")
        return []
    }
    var depth = 0, declared = Set<String>()
    for line in lines[start...] {
        let code = line.components(separatedBy: "//")[0]
        if depth == 1, !code.contains("static "),
           let match = code.firstMatch(of: #/\b(?:var|let)\s+(\w+)\s*(?::[^={]*)?=/#) {
            declared.insert(String(match.1))
        }
        depth += code.filter { $0 == "{" }.count - code.filter { $0 == "}" }.count
        if depth == 0 && code.contains("}") { break }
    }
    return declared
}

/// Issue 31: no default of a model setting is written in two places. Walks the config schema
/// (each model key, changed to its alternative value) and the part specs (Mirror): every spec
/// field a key reaches is a setting, whose only default is its section's, so its declaration in
/// the spec must not have a value of its own; every other spec field is listed in `notASetting`.
@Test func everyModelSettingHasOneDefault() throws {
    let base = "model:\n  name: keys\ndata:\n  format: synth\n  root: unused\n"
    // The segmentation section maps onto the segmenter, the others onto the detector.
    func leaves(_ section: String, _ overrides: [String]) throws -> [String: (field: String?, part: String?, value: String)] {
        let config = try loadConfig(yaml: base, overrides: overrides)
        var leaves: [String: (field: String?, part: String?, value: String)] = [:]
        if section == "segmentation" {
            specLeaves(segmenterSpec(config, classes: 3), into: &leaves)
        } else {
            specLeaves(detectorSpec(config, classes: 3), into: &leaves)
        }
        return leaves
    }
    // A key reaches a field when changing it changes a value of a part present both times (the
    // keys that add a branch, mask.enabled and mimic.regions: off, reach no field by that change).
    let references = referenceValues.merging(["mimic.regions": "mimic.regions=bg"]) { $1 }
    var reachedBy: [String: [String]] = [:]
    for (section, keys) in ExperimentConfig.schemaKeys where ["backbone", "rpn", "roi_head", "mimic", "mask", "segmentation"].contains(section) {
        for key in keys.map({ "\(section).\($0)" }) where notInTheSpec[key] == nil {
            guard let overrides = alternativeValues[key] else {
                Issue.record("\(key) has no alternative value in this test: add one to alternativeValues")
                continue
            }
            let reference = overrides.filter { !$0.hasPrefix(key + "=") } + (references[key].map { [$0] } ?? [])
            let changed = try leaves(section, overrides), unchanged = try leaves(section, reference)
            let parts = Set(unchanged.values.compactMap(\.part)).intersection(changed.values.compactMap(\.part))
            for path in Set(changed.keys).union(unchanged.keys) where changed[path]?.value != unchanged[path]?.value {
                guard let leaf = changed[path] ?? unchanged[path], let field = leaf.field, let part = leaf.part, parts.contains(part) else { continue }
                reachedBy[field, default: []].append(key)
            }
        }
    }
    for spec in partSpecs {
        let fields = Mirror(reflecting: spec.fromDefaults).children.compactMap(\.label)
        let withAValue = try propertiesDeclaredWithAValue(spec.name, in: spec.file)
        for label in fields {
            let field = "\(spec.name).\(label)"
            if let keys = reachedBy[field] {
                #expect(!withAValue.contains(label),
                        "\(field) is set by \(Set(keys).sorted()) and has a default of its own in \(spec.file): the section's default must be the only one (declare it without a value)")
            } else {
                #expect(notASetting[field] != nil,
                        "\(field): no config key sets it; give it a key in its section (mapped in DCNConfig/PartSpecs.swift) or list it in notASetting with where its value is written")
            }
        }
        for listed in notASetting.keys where listed.hasPrefix(spec.name + ".") {
            #expect(fields.contains(String(listed.dropFirst(spec.name.count + 1))), "notASetting lists \(listed), which \(spec.name) does not have")
        }
    }
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
