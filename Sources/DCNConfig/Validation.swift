// Cross-field rules: combinations that each field's own check cannot see. An error points at
// the first of the named keys that some file (or --set) actually wrote, so the message lands
// on the line the user has to change.

struct Validator {
    let origins: [String: ConfigOrigin]
    /// Keys whose value was rejected already (the rules involving them are skipped).
    let rejected: Set<String>
    var errors: [ConfigError] = []

    init(origins: [String: ConfigOrigin], rejected: [ConfigError] = []) {
        self.origins = origins
        self.rejected = Set(rejected.map { Validator.fieldKey($0.path) })
    }

    /// "solver.steps[2]" -> "solver.steps".
    static func fieldKey(_ path: String) -> String {
        path.firstIndex(of: "[").map { String(path[..<$0]) } ?? path
    }

    /// Reports `message` at the first of `paths` that has an origin (else the first, as a default).
    mutating func fail(_ paths: [String], _ message: String) {
        if paths.contains(where: { rejected.contains(Validator.fieldKey($0)) }) { return }
        let path = paths.first(where: { origins[$0] != nil }) ?? paths[0]
        errors.append(ConfigError(path: path, origin: origins[path] ?? .builtIn, message: message))
    }

    mutating func validate(_ c: ExperimentConfig) {
        validateBackbone(c.backbone)
        validateRPN(c.rpn)
        validateRoIHead(c.roiHead)
        validateData(c)
        validateTest(c)
        validateSolver(c.solver)
        validateTask(c)
        if c.mask.enabled && [.voc, .vid].contains(c.data.format) {
            fail(["mask.enabled", "data.format"], "the mask branch needs instance segmentations, which \(c.data.format == .voc ? "VOC" : "ImageNet VID") detection data does not have: use coco or synth data, or set mask.enabled to false")
        }
    }

    /// Classification trains on ImageFolder data with the backbone alone; detection never does.
    mutating func validateTask(_ c: ExperimentConfig) {
        switch c.model.task {
        case .classification:
            if c.data.format != .imagefolder {
                fail(["data.format", "model.task"], "model.task classification reads ImageFolder data: set data.format to imagefolder (got \(c.data.format.rawValue))")
            }
            if c.mask.enabled { fail(["mask.enabled", "model.task"], "a classifier has no mask branch: set mask.enabled to false") }
            if c.mimic.regions != .off { fail(["mimic.regions", "model.task"], "a classifier has no RoIs to mimic: set mimic.regions to off") }
        case .detection:
            if c.data.format == .imagefolder {
                fail(["data.format", "model.task"], "ImageFolder data has class labels, not boxes: use it with model.task classification")
            }
            if c.data.format.isSegmentation {
                fail(["data.format", "model.task"], "data.format \(c.data.format.rawValue) has label maps, not boxes: use it with model.task segmentation")
            }
        case .segmentation:
            if !c.data.format.isSegmentation {
                fail(["data.format", "model.task"], "model.task segmentation reads label maps: set data.format to voc_seg, sbd or cityscapes (got \(c.data.format.rawValue))")
            }
            if c.mask.enabled { fail(["mask.enabled", "model.task"], "semantic segmentation has no mask branch: set mask.enabled to false") }
            if c.mimic.regions != .off { fail(["mimic.regions", "model.task"], "semantic segmentation has no RoIs to mimic: set mimic.regions to off") }
        }
        let d = c.data
        if d.cropScale[0] > d.cropScale[1] { fail(["data.crop_scale"], "the range \(d.cropScale.yaml) must be [low, high] with low <= high") }
        if d.cropRatio[0] > d.cropRatio[1] { fail(["data.crop_ratio"], "the range \(d.cropRatio.yaml) must be [low, high] with low <= high") }
        if c.model.task == .classification && d.resizeSize < d.cropSize {
            fail(["data.resize_size", "data.crop_size"], "resize_size \(d.resizeSize) is below crop_size \(d.cropSize): the centre crop would not fit")
        }
    }

    mutating func validateBackbone(_ b: BackboneConfig) {
        let key = "backbone.deformable_stages"
        for (i, stage) in b.deformableStages.enumerated() {
            if b.deformableStages[..<i].contains(stage) {
                fail(["\(key)[\(i)]"], "stage \(stage) is listed twice")
            } else if stage <= b.frozenStages {
                fail(["\(key)[\(i)]", "backbone.frozen_stages"],
                     "stage \(stage) is deformable but frozen (frozen_stages \(b.frozenStages)); its offsets would never train")
            }
        }
        if b.convType == .regular && !b.deformableStages.isEmpty {
            fail([key, "backbone.conv_type"],
                 "deformable_stages \(b.deformableStages.yaml) with conv_type regular: set conv_type to dconv or mdconv, or deformable_stages to []")
        }
        if b.convType != .regular && b.deformableStages.isEmpty {
            fail(["backbone.conv_type", key], "conv_type \(b.convType.rawValue) needs deformable_stages, e.g. [3, 4, 5]")
        }
        if b.norm == .gn {
            let widths = [b.stemWidth] + b.stagePlanes
            if widths.contains(where: { $0 % b.gnGroups != 0 }) {
                fail(["backbone.gn_groups", "backbone.norm"],
                     "gn_groups \(b.gnGroups) must divide stem_width \(b.stemWidth) and every stage_planes value \(b.stagePlanes.yaml)")
            }
        }
        if b.convType != .regular && b.offsetGroups > 1 {
            // The deformable 3x3 conv reads `planes` channels (ResNeXt 32x4d: planes * 2).
            let widthFactor = b.depth == .resnext101_32x4d ? 2 : 1
            for stage in b.deformableStages where (2...5).contains(stage) {
                let channels = b.stagePlanes[stage - 2] * widthFactor
                if channels % b.offsetGroups != 0 {
                    fail(["backbone.offset_groups"], "offset_groups \(b.offsetGroups) must divide the \(channels) input channels of res\(stage)'s 3x3 convs")
                    break
                }
            }
        }
    }

    mutating func validateRPN(_ r: RPNConfig) {
        if r.negativeIou > r.positiveIou {
            fail(["rpn.negative_iou", "rpn.positive_iou"], "negative_iou \(r.negativeIou.yaml) is above positive_iou \(r.positiveIou.yaml)")
        }
        if r.postNmsTopkTrain > r.preNmsTopkTrain {
            fail(["rpn.post_nms_topk_train", "rpn.pre_nms_topk_train"],
                 "post_nms_topk_train \(r.postNmsTopkTrain) exceeds pre_nms_topk_train \(r.preNmsTopkTrain)")
        }
        if r.postNmsTopkTest > r.preNmsTopkTest {
            fail(["rpn.post_nms_topk_test", "rpn.pre_nms_topk_test"],
                 "post_nms_topk_test \(r.postNmsTopkTest) exceeds pre_nms_topk_test \(r.preNmsTopkTest)")
        }
    }

    mutating func validateRoIHead(_ h: RoIHeadConfig) {
        if h.pooledSize < 1 {
            switch h.extractor {
            case .dpool, .mdpool:
                fail(["roi_head.pooled_size", "roi_head.extractor"],
                     "\(h.extractor.rawValue) needs pooled_size >= 1 (its offset fc predicts 2 x pooled_size^2 offsets), got \(h.pooledSize)")
            case .roipool, .roialign:
                fail(["roi_head.pooled_size"], "must be at least 1")
            }
        }
    }

    mutating func validateData(_ c: ExperimentConfig) {
        let d = c.data
        func require(_ value: String?, _ key: String) {
            if value == nil {
                fail(["data.\(key)", "data.format", "data"], "data.format \(d.format.rawValue) needs data.\(key)")
            }
        }
        switch d.format {
        case .coco:
            require(d.trainAnnotations, "train_annotations")
            require(d.trainImages, "train_images")
            require(d.valAnnotations, "val_annotations")
            require(d.valImages, "val_images")
        case .voc:
            require(d.vocDevkit, "voc_devkit")
            if d.trainSplits.isEmpty { fail(["data.train_splits"], "data.format voc needs at least one training split") }
        case .synth, .imagefolder:
            require(d.root, "root")
        case .vocSeg, .sbd, .cityscapes:
            require(d.root, "root")
            // Split names, not the detection defaults' "VOC2007/trainval" pairs.
            let lists = d.format == .cityscapes ? "gtFine/<split>" : "ImageSets/Segmentation/<split>.txt"
            for (i, split) in d.trainSplits.enumerated() where split.contains("/") || split.isEmpty {
                fail(["data.train_splits[\(i)]", "data.train_splits"], "data.format \(d.format.rawValue) reads root/\(lists): name the split, e.g. [train] (got '\(split)')")
            }
            if d.trainSplits.isEmpty { fail(["data.train_splits"], "data.format \(d.format.rawValue) needs at least one training split, e.g. [train]") }
            if d.valSplit.contains("/") || d.valSplit.isEmpty {
                fail(["data.val_split"], "data.format \(d.format.rawValue) reads root/\(lists): name the split, e.g. val (got '\(d.valSplit)')")
            }
        case .vid:
            validateVIDData(d)
        }
        if !d.format.isSegmentation {
            // VOC detection's splits (checked whatever the format, as every key is).
            func isYearSplit(_ s: String) -> Bool {
                let parts = s.split(separator: "/", omittingEmptySubsequences: false)
                return parts.count == 2 && parts.allSatisfy { !$0.isEmpty }
            }
            for (i, split) in d.trainSplits.enumerated() where !isYearSplit(split) {
                fail(["data.train_splits[\(i)]", "data.train_splits"], "expected YEAR/SPLIT, e.g. VOC2007/trainval")
            }
            if !isYearSplit(d.valSplit) { fail(["data.val_split"], "expected YEAR/SPLIT, e.g. VOC2007/trainval") }
        }
        if let classes = d.classes {
            if ![.voc, .vid, .vocSeg, .sbd].contains(d.format) {
                fail(["data.classes"], "only VOC, VID and VOC segmentation data read class names from the config (data.format is \(d.format.rawValue))")
            }
            for (i, name) in classes.enumerated() where classes[..<i].contains(name) {
                fail(["data.classes[\(i)]"], "class '\(name)' is listed twice")
            }
            if let count = c.model.classes, count != classes.count + (d.format.isSegmentation ? 1 : 0) {
                fail(["model.classes", "data.classes"], "model.classes \(count) disagrees with the \(classes.count) names in data.classes")
            }
        }
        if let largest = d.minSize.max(), d.maxSize < largest {
            fail(["data.max_size", "data.min_size"], "max_size \(d.maxSize) is below the largest min_size \(largest)")
        }
        if c.test.maxSize == nil && d.testMinSize > d.maxSize {
            fail(["data.test_min_size", "data.max_size"], "test_min_size \(d.testMinSize) is above max_size \(d.maxSize)")
        }
    }

    /// ImageNet VID: an ILSVRC2015 root, at least one training list, and a val list of VID frames
    /// (the VID evaluation reads Annotations/VID; a list named DET_* reads Data/DET).
    mutating func validateVIDData(_ d: DataConfig) {
        if d.root == nil {
            fail(["data.root", "data.format", "data"], "data.format vid needs data.root, the ILSVRC2015 folder (Data/, Annotations/)")
        }
        if d.trainLists.isEmpty {
            fail(["data.train_lists"], "data.format vid needs at least one training list, e.g. [ImageSets/DET_train_30classes.txt, ImageSets/VID_train_15frames.txt]")
        }
        let valName = d.valList.split(separator: "/").last.map(String.init) ?? d.valList
        if valName.split(separator: "_").first == "DET" {
            fail(["data.val_list"], "'\(d.valList)' names DET images (its name starts with DET_), but the VID evaluation scores VID frames: give a VID list such as ImageSets/VID_val_frames.txt or ImageSets/VID_val_videos.txt")
        }
    }

    /// Multi-scale testing: every scale fits under the test's longest side; detection only.
    mutating func validateTest(_ c: ExperimentConfig) {
        let t = c.test, maxSize = t.maxSize ?? c.data.maxSize
        let maxKey = t.maxSize == nil ? "data.max_size" : "test.max_size"
        for (i, scale) in (t.scales ?? []).enumerated() {
            if scale > maxSize { fail(["test.scales[\(i)]", maxKey], "scale \(scale) is above \(maxKey) \(maxSize): set test.max_size to at least \(scale)") }
            if t.scales![..<i].contains(scale) { fail(["test.scales[\(i)]"], "scale \(scale) is listed twice") }
        }
        if t.scales == nil, c.data.testMinSize > maxSize, t.maxSize != nil {
            fail(["data.test_min_size", "test.max_size"], "test_min_size \(c.data.testMinSize) is above test.max_size \(maxSize)")
        }
        if c.model.task == .classification && (t.scales != nil || t.maxSize != nil || t.flip) {
            fail(["test", "model.task"], "the test section (multi-scale and flipped testing) is for detection; a classifier is evaluated on the centre crop")
        }
        if c.model.task == .segmentation && (t.scales != nil || t.maxSize != nil || t.flip) {
            fail(["test", "model.task"], "the test section (multi-scale and flipped testing) is for detection; segmentation is evaluated at data.test_min_size")
        }
    }

    mutating func validateSolver(_ s: SolverConfig) {
        for (i, step) in s.steps.enumerated() {
            if i > 0 && step <= s.steps[i - 1] {
                fail(["solver.steps[\(i)]", "solver.steps"], "steps must increase: \(step) follows \(s.steps[i - 1])")
            } else if step >= s.maxIter {
                fail(["solver.steps[\(i)]", "solver.steps", "solver.max_iter"], "step \(step) is not below max_iter \(s.maxIter)")
            }
        }
        if s.warmupIters > s.maxIter {
            fail(["solver.warmup_iters", "solver.max_iter"], "warmup_iters \(s.warmupIters) exceeds max_iter \(s.maxIter)")
        }
    }
}
