import Foundation
import Testing
import DCNConfig

@Suite struct DefaultsTests {
    @Test func defaultsMatchThePaper() {
        let c = ExperimentConfig()
        #expect(c.backbone.depth == .r50)
        #expect(c.backbone.resolvedLayers == [3, 4, 6, 3])
        #expect(c.backbone.frozenStages == 2)
        #expect(c.backbone.res5Dilation == 2)
        #expect(c.backbone.offsetLrMult == 0.1)
        #expect(c.backbone.norm == .frozenBN)
        #expect(c.rpn.anchorSizes == [32, 64, 128, 256, 512])
        #expect(c.rpn.aspectRatios == [0.5, 1, 2])
        #expect(c.rpn.preNmsTopkTrain == 12000 && c.rpn.preNmsTopkTest == 6000)
        #expect(c.rpn.postNmsTopkTrain == 2000 && c.rpn.postNmsTopkTest == 1000)
        #expect(c.rpn.smoothL1Beta == 1.0 / 9.0)
        #expect(c.roiHead.batchSizePerImage == 512 && c.roiHead.positiveFraction == 0.25)
        #expect(c.roiHead.bboxRegWeights == [10, 10, 5, 5])
        #expect(c.roiHead.dpoolGamma == 0.1 && c.roiHead.dpoolLrMult == nil)
        #expect(c.mimic.regions == .off && c.mimic.roisPerImage == 32 && c.mimic.patchSize == 224)
        #expect(c.mimic.lossWeight == 0.1 && c.mimic.clsLossWeight == 0.1)
        #expect(c.data.minSize == [800] && c.data.maxSize == 1333 && c.data.flip && c.data.skipEmpty)
        #expect(c.solver.baseLr == 0.02 && c.solver.momentum == 0.9 && c.solver.weightDecay == 1e-4)
        #expect(c.solver.warmupIters == 500 && c.solver.warmupFactor == 0.001 && c.solver.gamma == 0.1)
        #expect(c.outputDirectory == "output/faster_rcnn")
    }

    @Test func aMinimalFileGetsEveryDefault() throws {
        var expected = ExperimentConfig()
        expected.data.format = .synth
        expected.data.root = "data/synth"
        #expect(try loadConfig(path: fixture("minimal.yaml")) == expected)
    }

    @Test func anEmptySectionMeansDefaults() throws {
        let c = try loadConfig(yaml: "rpn:\nmimic: ~\ndata: {format: synth, root: d}\n")
        #expect(c.rpn == RPNConfig())
        #expect(c.mimic == MimicConfig())
    }
}

@Suite struct InheritanceTests {
    @Test func baseChainsMergeKeyByKeyAndReplaceLists() throws {
        let c = try loadConfig(path: fixture("child.yaml"))
        #expect(c.model.name == "parent")                 // parent over grandparent
        #expect(c.backbone.depth == .r101)                // grandparent only
        #expect(c.backbone.convType == .mdconv)           // parent over grandparent
        #expect(c.backbone.deformableStages == [5])       // child's list replaces [3, 4, 5]
        #expect(c.rpn.anchorSizes == [32])                // parent's list replaces [8, 16]
        #expect(c.rpn.nmsThreshold == 0.6)                // grandparent, sibling key kept
        #expect(c.solver.baseLr == 0.01)                  // child only
        #expect(c.rpn.headChannels == 512)                // nobody: default
        #expect(c.data.root == "data/synth")
    }

    @Test func cyclesAreDetected() {
        #expect(loadErrors("cycle_a.yaml") == [
            "cycle_b.yaml: base (line 3, column 7): inheritance cycle: cycle_a.yaml -> cycle_b.yaml -> cycle_a.yaml",
        ])
        #expect(loadErrors("self_cycle.yaml") == [
            "self_cycle.yaml: base (line 1, column 7): inheritance cycle: self_cycle.yaml -> self_cycle.yaml",
        ])
    }

    @Test func aMissingBaseIsReportedAtTheBaseKey() {
        #expect(loadErrors("missing_base.yaml") == [
            "missing_base.yaml: base (line 4, column 7): no such file 'does_not_exist.yaml'",
        ])
    }

    @Test func errorsNameTheFileThatHoldsTheValue() {
        #expect(loadErrors("child_of_error.yaml") == [
            "base_error.yaml: rpn.nms_threshold (line 3, column 18): expected a number, got 'high'",
            "child_of_error.yaml: solver.gamma (line 3, column 10): must be in (0.0, 1.0]",
        ])
    }

    @Test func aMissingFile() {
        #expect(loadErrors("nope.yaml") == ["nope.yaml: no such file 'nope.yaml'"])
    }
}

@Suite struct OverrideTests {
    @Test func overridesAreTyped() throws {
        let c = try loadConfig(path: fixture("minimal.yaml"), overrides: [
            "solver.base_lr=0.01", "backbone.deformable_stages=[3, 4]", "backbone.conv_type=mdconv",
            "roi_head.extractor=mdpool", "data.min_size=[640, 800]", "data.flip=false",
            "output.dir=runs/x", "solver.clip_grad_norm=10", "backbone.depth=resnext101_32x4d",
        ])
        #expect(c.solver.baseLr == 0.01)
        #expect(c.backbone.deformableStages == [3, 4])
        #expect(c.backbone.convType == .mdconv)
        #expect(c.roiHead.extractor == .mdpool)
        #expect(c.data.minSize == [640, 800])
        #expect(c.data.flip == false)
        #expect(c.output.dir == "runs/x")
        #expect(c.solver.clipGradNorm == 10)
        #expect(c.backbone.depth == .resnext101_32x4d)
    }

    @Test func overridesWinOverFilesAndCanResetToNull() throws {
        let c = try loadConfig(path: fixture("child.yaml"), overrides: ["rpn.anchor_sizes=[64, 128]", "model.classes=3", "model.classes=null"])
        #expect(c.rpn.anchorSizes == [64, 128])
        #expect(c.model.classes == nil)
        #expect(c.rpn.nmsThreshold == 0.6)
    }

    @Test(arguments: [
        ("solver.base_lr=abc", "solver.base_lr (--set solver.base_lr=abc): expected a number, got 'abc'"),
        ("solver.baselr=1", "solver.baselr (--set solver.baselr=1): unknown key 'baselr' in solver; did you mean 'base_lr'?"),
        ("solvr.max_iter=1", "solvr.max_iter (--set solvr.max_iter=1): unknown section 'solvr'; did you mean 'solver'?"),
        ("solver=1", "solver (--set solver=1): expected section.key, e.g. solver.base_lr"),
        ("solver.base_lr.x=2", "solver.base_lr.x (--set solver.base_lr.x=2): 'base_lr' in solver has no sub-keys"),
        ("solver.base_lr", "(--set solver.base_lr): expected key.path=value"),
        ("backbone.deformable_stages=[3, 9]", "backbone.deformable_stages[1] (--set backbone.deformable_stages=[3, 9]): must be in 2..5"),
        ("backbone.conv_type=mdcnv", "backbone.conv_type (--set backbone.conv_type=mdcnv): expected one of regular, dconv, mdconv, got 'mdcnv'; did you mean 'mdconv'?"),
        ("solver.steps=[10", "solver.steps (--set solver.steps=[10): invalid YAML value '[10'"),
        ("data.root=null", "data.root (--set data.root=null): data.format synth needs data.root"),
        ("backbone.frozen_stages=6", "backbone.frozen_stages (--set backbone.frozen_stages=6): must be in 0..5"),
        ("data.flip=1", "data.flip (--set data.flip=1): expected true or false, got '1'"),
        ("solver.max_iter=2.5", "solver.max_iter (--set solver.max_iter=2.5): expected an integer, got '2.5'"),
    ])
    func badOverridesAreErrors(argument: String, expected: String) {
        #expect(loadErrors("minimal.yaml", overrides: [argument]) == [expected])
    }

    @Test func overrideErrorsComeAfterFileErrors() {
        #expect(loadErrors("base_error.yaml", overrides: ["mimic.regions=fgg"]) == [
            "base_error.yaml: rpn.nms_threshold (line 3, column 18): expected a number, got 'high'",
            "mimic.regions (--set mimic.regions=fgg): expected one of off, fg, bg, all, got 'fgg'; did you mean 'fg'?",
        ])
    }
}

@Suite struct ErrorTests {
    @Test func everyErrorIsCollected() {
        #expect(loadErrors("all_errors.yaml") == [
            "all_errors.yaml: backbone.dept (line 4, column 3): unknown key 'dept' in backbone; did you mean 'depth'?",
            "all_errors.yaml: backbone.frozen_stages (line 5, column 18): must be in 0..5",
            "all_errors.yaml: backbone.deformable_stages[1] (line 6, column 26): must be in 2..5",
            "all_errors.yaml: backbone.norm (line 8, column 9): expected one of frozen_bn, bn, gn, got 'groupnorm'",
            "all_errors.yaml: rpn.positive_fraction (line 10, column 22): must be in (0.0, 1.0]",
            "all_errors.yaml: rpn.anchor_stride (line 11, column 18): expected an integer, got 'sixteen'",
            "all_errors.yaml: roi_head.pooled_size (line 14, column 16): mdpool needs pooled_size >= 1 (its offset fc predicts 2 x pooled_size^2 offsets), got 0",
            "all_errors.yaml: solver.steps[1] (line 20, column 16): steps must increase: 600 follows 800",
            "all_errors.yaml: solver.steps[2] (line 20, column 21): step 1200 is not below max_iter 1000",
            "all_errors.yaml: outptu (line 21, column 1): unknown section 'outptu'; did you mean 'output'?",
        ])
    }

    @Test func yamlProblems() {
        #expect(loadErrors("syntax_error.yaml") == [
            "syntax_error.yaml: (line 3, column 9): invalid YAML: while parsing a flow sequence, did not find expected ',' or ']'",
        ])
        #expect(loadErrors("duplicate_key.yaml") == ["duplicate_key.yaml: (line 2, column 3): duplicate key 'name' in a mapping"])
        #expect(loadErrors("not_a_mapping.yaml") == [
            "not_a_mapping.yaml: (line 1, column 1): expected a mapping of sections (model, backbone, ...), got a list",
        ])
    }

    /// One error of each kind, at its exact position (`t.yaml`, line 4 = the last line).
    @Test(arguments: [
        // unknown keys, with and without a suggestion
        ("backbone:\n  depth: 50\n  stem_width: 32\n  foo: 1", "backbone.foo (line 4, column 3): unknown key 'foo' in backbone"),
        ("backbone:\n  depth: 50\n  stem_width: 32\n  offset_lr: 1", "backbone.offset_lr (line 4, column 3): unknown key 'offset_lr' in backbone; did you mean 'offset_lr_mult'?"),
        ("rpn:\n  nms_threshold: 0.7\n  anchor_stride: 16\n  batch_size: 64", "rpn.batch_size (line 4, column 3): unknown key 'batch_size' in rpn; did you mean 'batch_size_per_image'?"),
        ("model:\n  name: x\nrpn: {}\nbackbne: {}", "backbne (line 4, column 1): unknown section 'backbne'; did you mean 'backbone'?"),
        // wrong types
        ("model:\n  name: x\nbackbone:\n  depth: 51", "backbone.depth (line 4, column 10): expected one of 18, 34, 50, 101, 152, resnext101_32x4d, got '51'; did you mean '50'?"),
        ("model:\n  name: x\nbackbone:\n  stage_planes: 64", "backbone.stage_planes (line 4, column 17): expected a list of int, got '64'"),
        ("model:\n  name: x\nbackbone:\n  stem_width: \"64\"", "backbone.stem_width (line 4, column 15): expected an integer, got \"64\""),
        ("model:\n  name: x\nsolver:\n  base_lr: [0.1]", "solver.base_lr (line 4, column 12): expected a number, got a list"),
        ("model:\n  name: x\nsolver:\n  steps: [1, x]", "solver.steps[1] (line 4, column 14): expected an integer, got 'x'"),
        ("model:\n  name: x\ndata:\n  flip: yes", "data.flip (line 4, column 9): expected true or false, got 'yes'"),
        ("model:\n  name: x\ndata:\n  val_split: ~", "data.val_split (line 4, column 14): expected a string, got null"),
        ("model:\n  name: x\nsolver:\n  seed: {a: 1}", "solver.seed (line 4, column 9): expected an integer, got a mapping"),
        ("model:\n  name: x\nrpn: 3\nmimic: {}", "rpn (line 3, column 6): expected a mapping of rpn fields, got '3'"),
        // values out of range
        ("model:\n  name: x\nbackbone:\n  deformable_stages: [1]", "backbone.deformable_stages[0] (line 4, column 23): must be in 2..5"),
        ("model:\n  name: x\nbackbone:\n  frozen_stages: -1", "backbone.frozen_stages (line 4, column 18): must be in 0..5"),
        ("model:\n  name: x\nbackbone:\n  res5_dilation: 3", "backbone.res5_dilation (line 4, column 18): must be 1 or 2"),
        ("model:\n  name: x\nbackbone:\n  stage_planes: [1, 2]", "backbone.stage_planes (line 4, column 17): expected 4 values, got 2"),
        ("model:\n  name: x\nbackbone:\n  weights: r50.pth", "backbone.weights (line 4, column 12): expected a .safetensors file"),
        ("model:\n  name: x\nrpn:\n  positive_fraction: 0", "rpn.positive_fraction (line 4, column 22): must be in (0.0, 1.0]"),
        ("model:\n  name: x\nroi_head:\n  positive_fraction: 1.01", "roi_head.positive_fraction (line 4, column 22): must be in (0.0, 1.0]"),
        ("model:\n  name: x\nmimic:\n  patch_size: 16", "mimic.patch_size (line 4, column 15): must be in 32..1024"),
        ("model:\n  name: x\ndata:\n  train_splits: [VOC2007]", "data.train_splits[0] (line 4, column 18): expected YEAR/SPLIT, e.g. VOC2007/trainval"),
        ("model:\n  name: x\nsolver:\n  clip_grad_norm: 0", "solver.clip_grad_norm (line 4, column 19): must be greater than 0.0"),
        // impossible combinations
        ("model:\n  name: x\nbackbone:\n  deformable_stages: [3, 4, 5]", "backbone.deformable_stages (line 4, column 22): deformable_stages [3, 4, 5] with conv_type regular: set conv_type to dconv or mdconv, or deformable_stages to []"),
        ("model:\n  name: x\nbackbone:\n  conv_type: dconv", "backbone.conv_type (line 4, column 14): conv_type dconv needs deformable_stages, e.g. [3, 4, 5]"),
        ("backbone:\n  conv_type: dconv\n  frozen_stages: 3\n  deformable_stages: [3, 4]", "backbone.deformable_stages[0] (line 4, column 23): stage 3 is deformable but frozen (frozen_stages 3); its offsets would never train"),
        ("backbone:\n  conv_type: dconv\n  frozen_stages: 0\n  deformable_stages: [4, 4]", "backbone.deformable_stages[1] (line 4, column 26): stage 4 is listed twice"),
        ("backbone:\n  norm: gn\n  stem_width: 16\n  gn_groups: 32", "backbone.gn_groups (line 4, column 14): gn_groups 32 must divide stem_width 16 and every stage_planes value [64, 128, 256, 512]"),
        ("backbone:\n  conv_type: mdconv\n  deformable_stages: [5]\n  offset_groups: 3", "backbone.offset_groups (line 4, column 18): offset_groups 3 must divide the 512 input channels of res5's 3x3 convs"),
        ("model:\n  name: x\nroi_head:\n  extractor: mdpool\n  pooled_size: 0", "roi_head.pooled_size (line 5, column 16): mdpool needs pooled_size >= 1 (its offset fc predicts 2 x pooled_size^2 offsets), got 0"),
        ("model:\n  name: x\nrpn:\n  negative_iou: 0.8", "rpn.negative_iou (line 4, column 17): negative_iou 0.8 is above positive_iou 0.7"),
        ("model:\n  name: x\nrpn:\n  post_nms_topk_test: 7000", "rpn.post_nms_topk_test (line 4, column 23): post_nms_topk_test 7000 exceeds pre_nms_topk_test 6000"),
        ("model:\n  name: x\nsolver:\n  steps: [5000, 4000]", "solver.steps[1] (line 4, column 17): steps must increase: 4000 follows 5000"),
        ("model:\n  name: x\nsolver:\n  steps: [90000]", "solver.steps[0] (line 4, column 11): step 90000 is not below max_iter 90000"),
        ("model:\n  name: x\nsolver:\n  warmup_iters: 95000", "solver.warmup_iters (line 4, column 17): warmup_iters 95000 exceeds max_iter 90000"),
        ("data:\n  test_min_size: 600\n  min_size: [800, 600]\n  max_size: 600", "data.max_size (line 4, column 13): max_size 600 is below the largest min_size 800"),
        ("model:\n  name: x\ndata:\n  classes: [cat, dog]", "data.classes (line 4, column 12): only VOC, VID and VOC segmentation data read class names from the config (data.format is synth)"),
        ("model:\n  classes: 3\ndata:\n  format: voc\n  voc_devkit: d\n  classes: [cat, dog]", "model.classes (line 2, column 12): model.classes 3 disagrees with the 2 names in data.classes"),
    ])
    func oneErrorOfEachKind(yaml: String, expected: String) {
        // Data defaults to coco, which needs paths: use synth unless the case sets data.format itself.
        let overrides = yaml.contains("format:") ? [] : ["data.format=synth", "data.root=data/synth"]
        do {
            _ = try loadConfig(yaml: yaml, name: "t.yaml", overrides: overrides)
            Issue.record("loaded without error")
        } catch let errors as ConfigErrors {
            #expect(errors.errors.map(\.description) == ["t.yaml: " + expected])
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func combinationErrorsOnDefaultsSayDefault() {
        #expect(throws: ConfigErrors([
            ConfigError(path: "data.train_annotations", origin: .builtIn, message: "data.format coco needs data.train_annotations"),
            ConfigError(path: "data.train_images", origin: .builtIn, message: "data.format coco needs data.train_images"),
            ConfigError(path: "data.val_annotations", origin: .builtIn, message: "data.format coco needs data.val_annotations"),
            ConfigError(path: "data.val_images", origin: .builtIn, message: "data.format coco needs data.val_images"),
        ])) { try loadConfig(yaml: "") }
        let description = ConfigErrors([ConfigError(path: "data.root", origin: .builtIn, message: "m")]).description
        #expect(description == "data.root (default): m")
    }

    @Test func didYouMean() {
        #expect(closestMatch("anchor_size", among: ["anchor_sizes", "anchor_stride"]) == "anchor_sizes")
        #expect(closestMatch("zzz", among: ["anchor_sizes"]) == nil)
        #expect(editDistance("kitten", "sitting") == 3)
    }
}
