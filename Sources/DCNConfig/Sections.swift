// The config sections. Each field's default is written once, here, with one doc comment;
// `configs/README.md`'s reference is generated from these comments (see ReadmeTests), and
// each section's `visit` lists its YAML keys (snake_case of the property names) with the
// per-field checks. Cross-field rules live in Validation.swift.

import DCNModels

// MARK: - Choices

// The model's own choice types are the config's (one definition each): ResNetDepth, ConvKind,
// RoIExtractorKind, MimicRegions (DCNModels).
extension ResNetDepth: ConfigChoice {}
extension ConvKind: ConfigChoice {}
extension Modulation: ConfigChoice {}
extension RoIExtractorKind: ConfigChoice {}
extension MimicRegions: ConfigChoice {}

/// Normalisation layers of the backbone.
public enum NormChoice: String, ConfigChoice, Codable {
    /// Per-channel affine from batch-norm statistics, never trained.
    case frozenBN = "frozen_bn"
    /// Batch norm (batch statistics in training).
    case bn
    /// Group norm with `gn_groups` groups.
    case gn
}

/// Dataset formats.
public enum DataFormat: String, ConfigChoice, Codable {
    case coco, voc, synth
    /// Classification: `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg` (torchvision's ImageFolder).
    case imagefolder
    /// ImageNet VID (ILSVRC2015 as MSRA's FGFA reads it): `root` with Data/, Annotations/ and the
    /// `train_lists` / `val_list` files; scored with MSRA's VID AP.
    case vid
    /// Semantic segmentation: the VOC 2012 devkit folder `root` (ImageSets/Segmentation/<split>.txt, SegmentationClass palette PNGs).
    case vocSeg = "voc_seg"
    /// Semantic segmentation: the same devkit folder with SBD's augmented labels (SegmentationClassAug, split trainaug).
    case sbd
    /// Semantic segmentation: the Cityscapes folder `root` (gtFine/<split>/*_gtFine_labelTrainIds.png, leftImg8bit).
    case cityscapes

    /// Whether the format holds per-pixel class labels (model.task segmentation).
    public var isSegmentation: Bool { self == .vocSeg || self == .sbd || self == .cityscapes }
}

/// What the experiment trains.
public enum TaskChoice: String, ConfigChoice, Codable {
    /// Faster R-CNN / Mask R-CNN on COCO, VOC or synthetic detection data.
    case detection
    /// The backbone with global average pooling and a linear classifier, on ImageFolder data.
    case classification
    /// DeepLab semantic segmentation (the `segmentation` section) on voc_seg, sbd or cityscapes label maps.
    case segmentation
}

/// How the learning rate falls after the warm-up.
public enum ScheduleChoice: String, ConfigChoice, Codable {
    /// Multiplied by `gamma` at each of `steps`.
    case steps
    /// Half a cosine from the base rate at iteration 0 to 0 at max_iter.
    case cosine
}

/// Which parameters the optimiser trains.
public enum TrainedParameters: String, ConfigChoice, Codable {
    /// Every parameter that is not frozen (backbone.frozen_stages).
    case all
    /// Only the deformable offset and modulation branches; every other weight keeps its value (the
    /// offsets-only test: a network made deformable learns where to sample, nothing else).
    case offsets
    /// Classification only: the norm layers' affine parameters and the classifier fc (a control of
    /// about the offsets' size for a regular network).
    case normsAndClassifier = "norms_and_classifier"
}

// MARK: - Sections

/// `model`: what the experiment is.
public struct ModelConfig: ConfigSection, Codable {
    static let key = "model"
    /// Experiment name, used in logs and for the default output folder.
    public var name: String = "faster_rcnn"
    /// detection (Faster / Mask R-CNN) or classification (backbone + global pooling + linear classifier).
    public var task: TaskChoice = .detection
    /// Object classes without background (image classes for classification); null = derived from the data (80 for COCO, 20 for VOC, data.classes if given, the class folders of ImageFolder data).
    public var classes: Int? = nil

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("name", &name, Check("not empty", message: "must not be empty") { !$0.isEmpty })
        v.field("task", &task)
        v.field("classes", &classes, .ifSet(.range(1...100_000)))
    }
}

/// `backbone`: the ResNet and its deformable stages.
public struct BackboneConfig: ConfigSection, Codable {
    static let key = "backbone"
    /// ResNet depth (18, 34, 50, 101, 152) or resnext101_32x4d.
    public var depth: ResNetDepth = .r50
    /// Output channels of the stem's 7x7 conv.
    public var stemWidth: Int = 64
    /// "planes" of res2..res5 (stage outputs are planes x 4 with bottlenecks).
    public var stagePlanes: [Int] = [64, 128, 256, 512]
    /// Blocks in res2..res5; null = the depth's standard counts.
    public var layers: [Int]? = nil
    /// Normalisation: frozen_bn (pretrained statistics, never trained), bn or gn.
    public var norm: NormChoice = .frozenBN
    /// Groups of group norm (norm gn); must divide the stem width and every stage's planes.
    public var gnGroups: Int = 32
    /// Frozen stages: 0 none, 1 the stem, 2 stem and res2, ... 5 everything.
    public var frozenStages: Int = 2
    /// Stages (2..5 = res2..res5) whose 3x3 convs are deformable, e.g. [3, 4, 5] for dconv@c3~c5.
    public var deformableStages: [Int] = []
    /// Convolution of the deformable stages: regular, dconv (DCNv1) or mdconv (DCNv2, modulated).
    public var convType: ConvKind = .regular
    /// Offset groups of the deformable convs (must divide the stage's planes).
    public var offsetGroups: Int = 1
    /// Learning-rate multiplier of the offset (and modulation) branches.
    public var offsetLrMult: Double = 0.1
    /// mdconv's modulation: sigmoid (starts at 0.5, the DCNv2 paper's) or two_sigmoid (2 sigmoid,
    /// starts at 1: a regular network's weights then give the same function with zero offsets).
    public var modulation: Modulation = .sigmoid
    /// Dilation of res5's 3x3 convs: 2 = stride 1 and dilation 2 (output stride 16), 1 = torchvision's stride 2.
    public var res5Dilation: Int = 2
    /// Pretrained weights (a .safetensors file with torchvision names); null = random initialisation.
    public var weights: String? = nil
    /// Prefix of the backbone's tensor names in the weights file (e.g. "backbone."; "model." for a dcn-train classification checkpoint).
    public var weightsPrefix: String = ""
    /// Load the deformable offset (and modulation) branches from `weights` when it has them (Table 7 "ImageNet"); false keeps them at their zero initialisation (Table 7 "none").
    public var pretrainedOffsets: Bool = true

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("depth", &depth)
        v.field("stem_width", &stemWidth, .range(1...1024))
        v.field("stage_planes", &stagePlanes, .each(.range(1...4096), count: 4))
        v.field("layers", &layers, .ifSet(.each(.range(1...200), count: 4)))
        v.field("norm", &norm)
        v.field("gn_groups", &gnGroups, .range(1...1024))
        v.field("frozen_stages", &frozenStages, .range(0...5))
        v.field("deformable_stages", &deformableStages, .each(.range(2...5)))
        v.field("conv_type", &convType)
        v.field("offset_groups", &offsetGroups, .range(1...64))
        v.field("offset_lr_mult", &offsetLrMult, .range(0...1000))
        v.field("modulation", &modulation)
        v.field("res5_dilation", &res5Dilation, .oneOf([1, 2]))
        v.field("weights", &weights, .ifSet(Check("a .safetensors file", message: "expected a .safetensors file") { $0.hasSuffix(".safetensors") }))
        v.field("weights_prefix", &weightsPrefix)
        v.field("pretrained_offsets", &pretrainedOffsets)
    }

    /// Blocks in res2..res5 after the optional override.
    public var resolvedLayers: [Int] { layers ?? depth.layers }
}

/// `rpn`: the region proposal network on res4.
public struct RPNConfig: ConfigSection, Codable {
    static let key = "rpn"
    /// Anchor sizes in input pixels (square root of the area).
    public var anchorSizes: [Double] = [32, 64, 128, 256, 512]
    /// Anchor aspect ratios (height / width).
    public var aspectRatios: [Double] = [0.5, 1, 2]
    /// Anchor stride in input pixels (the stride of res4).
    public var anchorStride: Int = 16
    /// Channels of the RPN's 3x3 conv.
    public var headChannels: Int = 512
    /// An anchor is positive at IoU >= this with a ground-truth box (or as a box's best anchor).
    public var positiveIou: Double = 0.7
    /// An anchor is negative at IoU < this with every ground-truth box.
    public var negativeIou: Double = 0.3
    /// Anchors sampled per image for the RPN losses.
    public var batchSizePerImage: Int = 256
    /// Largest fraction of positives among the sampled anchors.
    public var positiveFraction: Double = 0.5
    /// Proposals kept before NMS in training.
    public var preNmsTopkTrain: Int = 12000
    /// Proposals kept before NMS at test time.
    public var preNmsTopkTest: Int = 6000
    /// Proposals kept after NMS in training.
    public var postNmsTopkTrain: Int = 2000
    /// Proposals kept after NMS at test time.
    public var postNmsTopkTest: Int = 1000
    /// IoU threshold of the proposal NMS.
    public var nmsThreshold: Double = 0.7
    /// Beta of the smooth-L1 box loss (0 = L1).
    public var smoothL1Beta: Double = 1.0 / 9.0

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("anchor_sizes", &anchorSizes, .each(.halfOpen(0, 10_000), nonEmpty: true))
        v.field("aspect_ratios", &aspectRatios, .each(.halfOpen(0, 100), nonEmpty: true))
        v.field("anchor_stride", &anchorStride, .range(1...1024))
        v.field("head_channels", &headChannels, .range(1...8192))
        v.field("positive_iou", &positiveIou, .range(0...1))
        v.field("negative_iou", &negativeIou, .range(0...1))
        v.field("batch_size_per_image", &batchSizePerImage, .range(1...100_000))
        v.field("positive_fraction", &positiveFraction, .halfOpen(0, 1))
        v.field("pre_nms_topk_train", &preNmsTopkTrain, .range(1...1_000_000))
        v.field("pre_nms_topk_test", &preNmsTopkTest, .range(1...1_000_000))
        v.field("post_nms_topk_train", &postNmsTopkTrain, .range(1...1_000_000))
        v.field("post_nms_topk_test", &postNmsTopkTest, .range(1...1_000_000))
        v.field("nms_threshold", &nmsThreshold, .halfOpen(0, 1))
        v.field("smooth_l1_beta", &smoothL1Beta, .range(0...100))
    }
}

/// `roi_head`: RoI features, the 2fc head, sampling and inference.
public struct RoIHeadConfig: ConfigSection, Codable {
    static let key = "roi_head"
    /// RoI feature extractor: roipool, roialign, dpool (DCNv1 deformable RoI pooling) or mdpool (DCNv2, modulated).
    public var extractor: RoIExtractorKind = .roialign
    /// Output bins per side of the RoI pooling.
    public var pooledSize: Int = 7
    /// Samples per bin side of RoIAlign and (m)dpool (0 = adaptive, ceil(roi size / bins)).
    public var samplingRatio: Int = 2
    /// Channels of the 1x1 conv after res5 (2048 -> this) that the RoI pooling reads.
    public var reduceChannels: Int = 256
    /// Width of the two fc layers ("2fc") and of mdpool's offset fcs.
    public var fcDim: Int = 1024
    /// RoIs sampled per image for the head losses.
    public var batchSizePerImage: Int = 512
    /// Largest fraction of foreground among the sampled RoIs.
    public var positiveFraction: Double = 0.25
    /// A RoI is foreground at IoU >= this with a ground-truth box.
    public var fgIou: Double = 0.5
    /// Weights of the box coder (x, y, w, h).
    public var bboxRegWeights: [Double] = [10, 10, 5, 5]
    /// Offset scale of (m)dpool, in units of the RoI's width and height.
    public var dpoolGamma: Double = 0.1
    /// Learning-rate multiplier of the (m)dpool offset fcs; null = the papers' rates: 0.01 for dpool (DCNv1's offset fc), 1 for mdpool (DCNv2: its added fcs learn at the rate of the existing layers).
    public var dpoolLrMult: Double? = nil
    /// Detections with a lower score are dropped at test time.
    public var scoreThreshold: Double = 0.05
    /// IoU threshold of the per-class NMS at test time.
    public var nmsThreshold: Double = 0.5
    /// Most detections kept per image at test time.
    public var detectionsPerImage: Int = 100
    /// Beta of the smooth-L1 box loss (0 = L1).
    public var smoothL1Beta: Double = 1.0

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("extractor", &extractor)
        v.field("pooled_size", &pooledSize, .atMost(32))
        v.field("sampling_ratio", &samplingRatio, .range(0...64))
        v.field("reduce_channels", &reduceChannels, .range(1...4096))
        v.field("fc_dim", &fcDim, .range(1...16384))
        v.field("batch_size_per_image", &batchSizePerImage, .range(1...100_000))
        v.field("positive_fraction", &positiveFraction, .halfOpen(0, 1))
        v.field("fg_iou", &fgIou, .halfOpen(0, 1))
        v.field("bbox_reg_weights", &bboxRegWeights, .each(.halfOpen(0, 1000), count: 4))
        v.field("dpool_gamma", &dpoolGamma, .halfOpen(0, 10))
        v.field("dpool_lr_mult", &dpoolLrMult, .ifSet(.range(0...1000)))
        v.field("score_threshold", &scoreThreshold, .rightOpen(0, 1))
        v.field("nms_threshold", &nmsThreshold, .halfOpen(0, 1))
        v.field("detections_per_image", &detectionsPerImage, .range(1...10_000))
        v.field("smooth_l1_beta", &smoothL1Beta, .range(0...100))
    }
}

/// `mimic`: R-CNN feature mimicking (training only; the paper's Table 3).
public struct MimicConfig: ConfigSection, Codable {
    static let key = "mimic"
    /// RoIs to mimic: off, fg (IoU >= roi_head.fg_iou; the paper's default), bg or all.
    public var regions: MimicRegions = .off
    /// Most RoIs per image cropped and run through the R-CNN branch.
    public var roisPerImage: Int = 32
    /// Side of the square patch each RoI is resized to.
    public var patchSize: Int = 224
    /// Weight of the mimic loss, mean of (1 - cos(f_RCNN, f_FRCNN)).
    public var lossWeight: Double = 0.1
    /// Weight of the R-CNN branch's classification loss.
    public var clsLossWeight: Double = 0.1

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("regions", &regions)
        v.field("rois_per_image", &roisPerImage, .range(1...1024))
        v.field("patch_size", &patchSize, .range(32...1024))
        v.field("loss_weight", &lossWeight, .atLeast(0))
        v.field("cls_loss_weight", &clsLossWeight, .atLeast(0))
    }
}

/// `mask`: the mask branch of Mask R-CNN (off: Faster R-CNN).
public struct MaskConfig: ConfigSection, Codable {
    static let key = "mask"
    /// Train and evaluate instance masks (Mask R-CNN); the data needs polygon segmentations (COCO or synth).
    public var enabled: Bool = false
    /// The mask branch pools pooled_size x pooled_size RoI features (aligned RoI pooling) from roi_head's reduced map; masks are twice that.
    public var pooledSize: Int = 14
    /// Sample points per bin and axis of the mask branch's RoI pooling.
    public var samplingRatio: Int = 2
    /// Number of 3x3 convs before the upsampling.
    public var convs: Int = 4
    /// Channels of the 3x3 convs and of the 2x2 stride-2 transposed conv.
    public var convDim: Int = 256
    /// One mask for all classes instead of one per class.
    public var classAgnostic: Bool = false
    /// Weight of the mask loss (per-pixel sigmoid cross-entropy, mean over RoIs and pixels).
    public var lossWeight: Double = 1.0

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("enabled", &enabled)
        v.field("pooled_size", &pooledSize, .range(1...64))
        v.field("sampling_ratio", &samplingRatio, .range(0...16))
        v.field("convs", &convs, .range(0...16))
        v.field("conv_dim", &convDim, .range(1...4096))
        v.field("class_agnostic", &classAgnostic)
        v.field("loss_weight", &lossWeight, .atLeast(0))
    }
}

/// `segmentation`: DeepLab's head on res5 (model.task segmentation).
public struct SegmentationConfig: ConfigSection, Codable {
    static let key = "segmentation"
    /// Channels of the 1x1 conv + ReLU between res5 and the per-class 1x1 conv (DCNv1's DeepLab: 1024; 0 = none).
    public var hiddenChannels: Int = 1024
    /// Weight of the per-pixel softmax cross-entropy (the mean over the pixels that have a class).
    public var lossWeight: Double = 1.0

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("hidden_channels", &hiddenChannels, .range(0...8192))
        v.field("loss_weight", &lossWeight, .atLeast(0))
    }
}

/// The shorter sides an image may be resized to, in pixels (data.min_size, data.test_min_size,
/// test.scales, and the tools' --scales and --sizes).
public let shorterSideRange = 32...4096

/// `data`: datasets, resizing and the loader.
public struct DataConfig: ConfigSection, Codable {
    static let key = "data"
    /// Dataset format: coco (JSON annotations + image folder), voc (a VOCdevkit), synth (a folder written by `dcn-data synth`), imagefolder (classification), vid (an ILSVRC2015 root, docs/video.md), or voc_seg / sbd / cityscapes label maps (segmentation, docs/segmentation.md).
    public var format: DataFormat = .coco
    /// COCO training annotations (instances_*.json); paths are relative to the working directory.
    public var trainAnnotations: String? = nil
    /// COCO training image folder.
    public var trainImages: String? = nil
    /// COCO validation annotations.
    public var valAnnotations: String? = nil
    /// COCO validation image folder.
    public var valImages: String? = nil
    /// VOC: the VOCdevkit folder holding VOC2007/, VOC2012/.
    public var vocDevkit: String? = nil
    /// VOC training splits as YEAR/SPLIT, e.g. ["VOC2007/trainval", "VOC2012/trainval"]; segmentation: split names, e.g. [train] or [trainaug].
    public var trainSplits: [String] = ["VOC2007/trainval", "VOC2012/trainval"]
    /// VOC evaluation split as YEAR/SPLIT; segmentation: a split name, e.g. val.
    public var valSplit: String = "VOC2007/test"
    /// VOC (or VID) class names in label order; null = the 20 PASCAL VOC classes (the 30 VID WordNet ids; voc_seg / sbd: the classes after background).
    public var classes: [String]? = nil
    /// VOC: objects marked difficult are ignored in training and evaluation (not counted as misses).
    public var difficultAsIgnore: Bool = true
    /// synth: the dataset folder written by `dcn-data synth --out`; voc_seg / sbd: the devkit year folder (VOCdevkit/VOC2012); cityscapes: the folder holding gtFine/ and leftImg8bit/.
    public var root: String? = nil
    /// vid: the training lists, concatenated (FGFA's DET_train_30classes+VID_train_15frames); data.root is the ILSVRC2015 folder (Data/, Annotations/), a relative list path is below it, and a list named DET_* reads Data/DET.
    public var trainLists: [String] = ["ImageSets/DET_train_30classes.txt", "ImageSets/VID_train_15frames.txt"]
    /// vid: the evaluated list (VID_val_frames.txt, or VID_val_videos.txt whose video lines expand to every frame); relative to data.root.
    public var valList: String = "ImageSets/VID_val_frames.txt"
    /// Shorter side in training; several values = multi-scale (one picked at random per image).
    public var minSize: [Int] = [800]
    /// Longest side after resizing (training, and testing unless test.max_size is set).
    public var maxSize: Int = 1333
    /// Shorter side at test time (one pass per image; test.scales for multi-scale testing).
    public var testMinSize: Int = 800
    /// Random horizontal flip in training.
    public var flip: Bool = true
    /// Images per training step (the paper: 16, with lr 0.02).
    public var imagesPerBatch: Int = 2
    /// Threads decoding and transforming images ahead of the training step (0 = on the training thread).
    public var loaderThreads: Int = 2
    /// Skip training images without any (non-ignored) box.
    public var skipEmpty: Bool = true
    /// Accept image paths that can lead outside their dataset folder: a COCO file_name that is absolute or has a '..' component, or such a VOC image id in a split list (refused by default; symbolic links inside the folder are followed either way).
    public var allowOutsideRoot: Bool = false
    /// Classification: side of the training crop (RandomResizedCrop) and of the evaluation centre crop.
    public var cropSize: Int = 224
    /// Classification evaluation: the shorter side is resized to this before the centre crop.
    public var resizeSize: Int = 256
    /// Classification training: range of the crop's area as a fraction of the image's.
    public var cropScale: [Double] = [0.08, 1.0]
    /// Classification training: range of the crop's aspect ratio (width / height).
    public var cropRatio: [Double] = [3.0 / 4.0, 4.0 / 3.0]

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        let nonEmpty = Check<String>("not empty", message: "must not be empty") { !$0.isEmpty }
        v.field("format", &format)
        v.field("train_annotations", &trainAnnotations, .ifSet(nonEmpty))
        v.field("train_images", &trainImages, .ifSet(nonEmpty))
        v.field("val_annotations", &valAnnotations, .ifSet(nonEmpty))
        v.field("val_images", &valImages, .ifSet(nonEmpty))
        v.field("voc_devkit", &vocDevkit, .ifSet(nonEmpty))
        v.field("train_splits", &trainSplits, .each(nonEmpty))
        v.field("val_split", &valSplit, nonEmpty)
        v.field("classes", &classes, .ifSet(.each(nonEmpty, nonEmpty: true)))
        v.field("difficult_as_ignore", &difficultAsIgnore)
        v.field("root", &root, .ifSet(nonEmpty))
        v.field("train_lists", &trainLists, .each(nonEmpty))
        v.field("val_list", &valList, nonEmpty)
        v.field("min_size", &minSize, .each(.range(shorterSideRange), nonEmpty: true))
        v.field("max_size", &maxSize, .range(32...8192))
        v.field("test_min_size", &testMinSize, .range(shorterSideRange))
        v.field("flip", &flip)
        v.field("images_per_batch", &imagesPerBatch, .range(1...1024))
        v.field("loader_threads", &loaderThreads, .range(0...256))
        v.field("skip_empty", &skipEmpty)
        v.field("allow_outside_root", &allowOutsideRoot)
        v.field("crop_size", &cropSize, .range(8...4096))
        v.field("resize_size", &resizeSize, .range(8...8192))
        v.field("crop_scale", &cropScale, .each(.halfOpen(0, 1), count: 2))
        v.field("crop_ratio", &cropRatio, .each(.halfOpen(0, 100), count: 2))
    }
}


/// `test`: multi-scale and flipped testing (detection). With nothing set, evaluation runs once per
/// image at `data.test_min_size`.
public struct TestConfig: ConfigSection, Codable {
    static let key = "test"
    /// Shorter sides of multi-scale testing, e.g. [480, 576, 688, 864, 1200, 1400]; the detections
    /// of every scale are merged per class by NMS (roi_head.nms_threshold), top roi_head.detections_per_image
    /// kept. null = one scale, data.test_min_size.
    public var scales: [Int]? = nil
    /// Longest side at test time; null = data.max_size.
    public var maxSize: Int? = nil
    /// Also run every scale on the horizontally flipped image and merge its detections.
    public var flip: Bool = false

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("scales", &scales, .ifSet(.each(.range(shorterSideRange), nonEmpty: true)))
        v.field("max_size", &maxSize, .ifSet(.range(32...8192)))
        v.field("flip", &flip)
    }
}

/// One pass of the detector over the evaluation images: the shorter side, and whether the image
/// is flipped horizontally first.
public struct TestView: Sendable, Equatable, CustomStringConvertible {
    public var shortEdge: Int
    public var flip: Bool
    public init(shortEdge: Int, flip: Bool) { self.shortEdge = shortEdge; self.flip = flip }
    public var description: String { "\(shortEdge)\(flip ? " flipped" : "")" }
}

extension ExperimentConfig {
    /// The longest side at test time: test.max_size, or data.max_size.
    public var testMaxSize: Int { test.maxSize ?? data.maxSize }

    /// The views evaluation runs: each of test.scales (or data.test_min_size), then each flipped
    /// with test.flip.
    public var testViews: [TestView] {
        let scales = test.scales ?? [data.testMinSize]
        return scales.map { TestView(shortEdge: $0, flip: false) } + (test.flip ? scales.map { TestView(shortEdge: $0, flip: true) } : [])
    }

    /// Whether evaluation merges several views (or a flipped one) instead of running one pass.
    public var isMultiViewTest: Bool { test.scales != nil || test.flip }
}

/// `solver`: SGD, the learning-rate schedule and checkpoints.
public struct SolverConfig: ConfigSection, Codable {
    static let key = "solver"
    /// Learning rate after warm-up (the paper: 0.02 for 16 images per step; scale linearly with the batch).
    public var baseLr: Double = 0.02
    /// SGD momentum.
    public var momentum: Double = 0.9
    /// L2 weight decay of weights and biases.
    public var weightDecay: Double = 1e-4
    /// Weight decay of normalisation parameters.
    public var weightDecayNorm: Double = 0
    /// Weight decay of the biases of convolutions and linear layers; null = weight_decay.
    public var weightDecayBias: Double? = nil
    /// Iterations of linear warm-up.
    public var warmupIters: Int = 500
    /// Learning-rate factor at iteration 0 of the warm-up.
    public var warmupFactor: Double = 0.001
    /// Training iterations.
    public var maxIter: Int = 90000
    /// Iterations at which the learning rate is multiplied by gamma (increasing, below max_iter).
    public var steps: [Int] = [60000, 80000]
    /// Learning-rate factor at each step.
    public var gamma: Double = 0.1
    /// Clip the global gradient norm to this; null = no clipping.
    public var clipGradNorm: Double? = nil
    /// Iterations between checkpoints (one is always written at the end).
    public var checkpointPeriod: Int = 5000
    /// Iterations between evaluations on the validation split; 0 = only at the end.
    public var evalPeriod: Int = 0
    /// Seed of initialisation, sampling and data order (a run is reproducible bit for bit).
    public var seed: Int = 0
    /// After the warm-up: steps (multiplied by gamma at each of steps) or cosine (to 0 at max_iter).
    public var lrSchedule: ScheduleChoice = .steps
    /// Classification: label smoothing of the cross-entropy (0 = none, 0.1 in torchvision's recipes).
    public var labelSmoothing: Double = 0
    /// Which parameters train: all, offsets (only the deformable offset and modulation branches) or
    /// norms_and_classifier (classification: only the norms' affine parameters and the fc).
    public var trainOnly: TrainedParameters = .all

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("base_lr", &baseLr, .above(0))
        v.field("momentum", &momentum, .rightOpen(0, 1))
        v.field("weight_decay", &weightDecay, .atLeast(0))
        v.field("weight_decay_norm", &weightDecayNorm, .atLeast(0))
        v.field("weight_decay_bias", &weightDecayBias, .ifSet(.atLeast(0)))
        v.field("warmup_iters", &warmupIters, .atLeast(0))
        v.field("warmup_factor", &warmupFactor, .halfOpen(0, 1))
        v.field("max_iter", &maxIter, .range(1...1_000_000_000))
        v.field("steps", &steps, .each(.range(1...1_000_000_000)))
        v.field("gamma", &gamma, .halfOpen(0, 1))
        v.field("clip_grad_norm", &clipGradNorm, .ifSet(.above(0)))
        v.field("checkpoint_period", &checkpointPeriod, .atLeast(1))
        v.field("eval_period", &evalPeriod, .atLeast(0))
        v.field("seed", &seed, .range(0...Int(Int32.max)))
        v.field("lr_schedule", &lrSchedule)
        v.field("label_smoothing", &labelSmoothing, .rightOpen(0, 1))
        v.field("train_only", &trainOnly)
    }
}

/// `output`: where a run writes and how often it logs.
public struct OutputConfig: ConfigSection, Codable {
    static let key = "output"
    /// Output folder (checkpoints, metrics.jsonl, the resolved config); null = output/<model.name>.
    public var dir: String? = nil
    /// Iterations between log lines (and metrics.jsonl records and TensorBoard scalars).
    public var logPeriod: Int = 20
    /// Write TensorBoard event files (events.out.tfevents.*) into the output folder: every logged
    /// scalar and each evaluation's numbers and drawn images (`tensorboard --logdir <output.dir>`).
    public var tensorboard: Bool = true
    /// Detectors: at each evaluation, the first N validation images drawn with their detections
    /// next to the ground truth, into <output.dir>/detections/ and TensorBoard (0 = none).
    public var drawImages: Int = 4
    /// Detections scoring below this are not drawn (`dcn-eval model --draw` uses it too).
    public var drawScoreThreshold: Double = 0.5

    public init() {}
    mutating func visit<V: FieldVisitor>(_ v: inout V) {
        v.field("dir", &dir)
        v.field("log_period", &logPeriod, .atLeast(1))
        v.field("tensorboard", &tensorboard)
        v.field("draw_images", &drawImages, .atLeast(0))
        v.field("draw_score_threshold", &drawScoreThreshold, .range(0...1))
    }
}

// MARK: - The whole config

/// A whole experiment: every section, each with its defaults.
public struct ExperimentConfig: Equatable, Sendable, Codable {
    public var model = ModelConfig()
    public var backbone = BackboneConfig()
    public var rpn = RPNConfig()
    public var roiHead = RoIHeadConfig()
    public var mimic = MimicConfig()
    public var mask = MaskConfig()
    public var segmentation = SegmentationConfig()
    public var data = DataConfig()
    public var test = TestConfig()
    public var solver = SolverConfig()
    public var output = OutputConfig()

    public init() {}

    /// The sections in file order.
    mutating func visitSections<S: SectionVisitor>(_ s: inout S) {
        s.section(&model)
        s.section(&backbone)
        s.section(&rpn)
        s.section(&roiHead)
        s.section(&mimic)
        s.section(&mask)
        s.section(&segmentation)
        s.section(&data)
        s.section(&test)
        s.section(&solver)
        s.section(&output)
    }

    /// The output folder after defaulting (`output/<model.name>`).
    public var outputDirectory: String { output.dir ?? "output/\(model.name)" }
}
