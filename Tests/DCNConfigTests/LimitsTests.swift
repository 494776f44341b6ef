// Configs that would exhaust memory: nested YAML aliases ("billion laughs") and sizes far
// beyond any model; and a fuzz of config text (every outcome is a config or located errors).
import Foundation
import Testing
import DCNConfig

/// The error lines of loading `yaml` as `name`, or nil if it loaded.
private func errors(_ yaml: String, name: String = "test.yaml", overrides: [String] = []) -> [String]? {
    do {
        _ = try loadConfig(yaml: yaml, name: name, directory: repositoryURL.appendingPathComponent("configs").path, overrides: overrides)
        return nil
    } catch let e as ConfigErrors {
        return e.errors.map(\.description)
    } catch {
        return ["unexpected error type: \(error)"]
    }
}

@Test func nestedAliasesStopEarly() {
    // Ten levels of ten aliases each: 10^10 values if expanded.
    var lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in 1..<10 { lines.append("a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]") }
    lines.append("model:\n  name: *a9")
    let start = ContinuousClock.now
    let found = errors(lines.joined(separator: "\n")) ?? []
    #expect(ContinuousClock.now - start < .seconds(5))
    #expect(found.contains { $0.hasPrefix("test.yaml: ") && $0.contains("expands to more than 100000 values") }, "\(found)")
}

@Test("Sizes far beyond any model are errors at their key", arguments: [
    ("roi_head:\n  pooled_size: 300", "test.yaml: roi_head.pooled_size (line 2, column 16): must be at most 32"),
    ("rpn:\n  anchor_sizes: [32, 1e40]", "test.yaml: rpn.anchor_sizes[1] (line 2, column 22): must be in (0.0, 10000.0]"),
    ("data:\n  max_size: 1000000", "test.yaml: data.max_size (line 2, column 13): must be in 32..8192"),
    ("data:\n  images_per_batch: 100000", "test.yaml: data.images_per_batch (line 2, column 21): must be in 1..1024"),
    ("roi_head:\n  fc_dim: 10000000", "test.yaml: roi_head.fc_dim (line 2, column 11): must be in 1..16384"),
    ("backbone:\n  stage_planes: [64, 128, 256, 100000]", "test.yaml: backbone.stage_planes[3] (line 2, column 32): must be in 1..4096"),
])
func hugeSizesAreRejected(yaml: String, expected: String) {
    let found = errors("model:\n  name: x\n" + yaml) ?? []
    // The field's own line is 2 lines further down than in the snippet (model: name: x first).
    let shifted = expected.replacingOccurrences(of: "(line 2,", with: "(line 4,")
    #expect(found.contains(shifted), "\(found)")
}

@Test func fuzzedConfigsLoadOrNameTheirFile() throws {
    // Mutations of the demo config's chain flattened into one document: characters replaced,
    // lines cut, duplicated or indented, numbers made huge. Every outcome is a config or a list
    // of errors that each name the file (or, for a rule broken by a default value, say so);
    // nothing traps or hangs.
    let text = """
    model:
      name: fuzz
    backbone:
      depth: "50"
      deformable_stages: [3, 4, 5]
      conv_type: mdconv
    rpn:
      anchor_sizes: [32, 64, 128]
      pre_nms_topk_train: 1000
    roi_head:
      extractor: mdpool
      pooled_size: 7
      bbox_reg_weights: [10, 10, 5, 5]
    mimic:
      regions: fg
    data:
      format: synth
      root: data/synth
      min_size: [256, 288]
    solver:
      base_lr: 0.01
      steps: [100, 200]
      max_iter: 300
    """
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let tokens = ["&a", "*a", "[", "]", "{", "}", ":", "- ", "\"", "'", "9999999999999999999999", "-1", "1e400", "nan", "~", "\t", "base: x.yaml", "!!binary", "? "]
    var rng = LCG(state: 5)
    let start = ContinuousClock.now
    for round in 0..<400 {
        var mutated = lines
        for _ in 0...Int(rng.next() % 3) {
            let i = Int(rng.next() % UInt64(mutated.count))
            switch rng.next() % 5 {
            case 0:
                var line = Array(mutated[i])
                if !line.isEmpty { line.insert(contentsOf: tokens[Int(rng.next() % UInt64(tokens.count))], at: Int(rng.next() % UInt64(line.count))) }
                mutated[i] = String(line)
            case 1: mutated.remove(at: i); if mutated.isEmpty { mutated = [""] }
            case 2: mutated.insert(mutated[i], at: i)
            case 3: mutated[i] = "  " + mutated[i]
            default: mutated[i] = String(mutated[i].prefix(Int(rng.next() % UInt64(mutated[i].count + 1))))
            }
        }
        let name = "fuzz\(round).yaml"
        if let found = errors(mutated.joined(separator: "\n"), name: name) {
            #expect(!found.isEmpty && found.allSatisfy { $0.hasPrefix(name + ": ") || $0.contains("(default)") || $0.contains("x.yaml") }, "round \(round): \(found)")
        }
        if round == 0 { lines = mutated }  // one mutation kept, so later rounds stack on it
    }
    #expect(ContinuousClock.now - start < .seconds(30))
}

/// A seeded linear congruential generator (Knuth's MMIX constants), so the fuzz is the same on every run.
private struct LCG {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 11
    }
}

@Test func aBaseThatIsAFolderIsNamed() {
    let found = errors("base: synth\nmodel:\n  name: x") ?? []
    #expect(found.contains { $0.contains("synth' is a folder; expected a YAML config file") }, "\(found)")
}

@Test("Multi-scale testing settings that cannot run are errors at their key", arguments: [
    ("test:\n  scales: [800, 1400]", "test.scales[1]", "scale 1400 is above data.max_size 1333: set test.max_size to at least 1400"),
    ("test:\n  scales: [800, 1400]\n  max_size: 1300", "test.scales[1]", "scale 1400 is above test.max_size 1300"),
    ("test:\n  scales: [600, 800, 600]", "test.scales[2]", "scale 600 is listed twice"),
    ("test:\n  scales: []", "test.scales", "must not be empty"),
    ("test:\n  max_size: 700", "test.max_size", "test_min_size 800 is above test.max_size 700"),
    ("model:\n  task: classification\ndata:\n  format: imagefolder\n  root: x\ntest:\n  flip: true", "test",
     "the test section (multi-scale and flipped testing) is for detection"),
])
func impossibleTestSettingsAreRejected(yaml: String, key: String, message: String) {
    let text = yaml.hasPrefix("model:") ? yaml.replacingOccurrences(of: "model:\n", with: "model:\n  name: x\n")
                                        : "model:\n  name: x\ndata:\n  format: synth\n  root: x\n" + yaml
    let found = errors(text) ?? []
    #expect(found.contains { $0.contains("test.yaml: \(key) ") && $0.contains(message) }, "\(found)")
}

@Test func multiScaleSettingsGiveTheViews() throws {
    let c = try loadConfig(yaml: "model:\n  name: x\ndata:\n  format: synth\n  root: x\ntest:\n  scales: [600, 1400]\n  max_size: 2400\n  flip: true",
                           name: "test.yaml", directory: repositoryURL.appendingPathComponent("configs").path)
    #expect(c.isMultiViewTest && c.testMaxSize == 2400)
    #expect(c.testViews.map(\.description) == ["600", "1400", "600 flipped", "1400 flipped"])
    let plain = ExperimentConfig()
    #expect(!plain.isMultiViewTest && plain.testMaxSize == 1333 && plain.testViews == [TestView(shortEdge: 800, flip: false)])
}

@Test("Segmentation settings that cannot run are errors at their key", arguments: [
    ("model:\n  task: segmentation\ndata:\n  format: synth\n  root: x", "data.format", "model.task segmentation reads label maps: set data.format to voc_seg, sbd or cityscapes"),
    ("data:\n  format: voc_seg\n  root: x\n  train_splits: [train]\n  val_split: val", "data.format", "has label maps, not boxes: use it with model.task segmentation"),
    ("model:\n  task: segmentation\ndata:\n  format: voc_seg\n  root: x", "data.train_splits[0]", "reads root/ImageSets/Segmentation/<split>.txt: name the split, e.g. [train] (got 'VOC2007/trainval')"),
    ("model:\n  task: segmentation\ndata:\n  format: cityscapes\n  root: x\n  train_splits: [train]\n  val_split: a/b", "data.val_split", "reads root/gtFine/<split>: name the split"),
    ("model:\n  task: segmentation\ndata:\n  format: sbd\n  train_splits: [trainaug]\n  val_split: val", "data.format", "data.format sbd needs data.root"),
    ("model:\n  task: segmentation\nmask:\n  enabled: true\ndata:\n  format: voc_seg\n  root: x\n  train_splits: [train]\n  val_split: val", "mask.enabled", "semantic segmentation has no mask branch"),
    ("model:\n  task: segmentation\n  classes: 3\ndata:\n  format: voc_seg\n  root: x\n  classes: [a, b, c]\n  train_splits: [train]\n  val_split: val", "model.classes", "disagrees"),
    ("model:\n  task: segmentation\ndata:\n  format: voc_seg\n  root: x\n  train_splits: [train]\n  val_split: val\ntest:\n  flip: true", "test", "segmentation is evaluated at data.test_min_size"),
    ("model:\n  task: segmentation\nsegmentation:\n  hidden_channels: -1\ndata:\n  format: voc_seg\n  root: x\n  train_splits: [train]\n  val_split: val", "segmentation.hidden_channels", "must be in 0..8192"),
])
func impossibleSegmentationSettingsAreRejected(yaml: String, key: String, message: String) {
    let found = errors(yaml.hasPrefix("model:\n") ? yaml.replacingOccurrences(of: "model:\n", with: "model:\n  name: x\n") : "model:\n  name: x\n" + yaml) ?? []
    // At the key's line, or "(default)" for a key the file does not set.
    #expect(found.contains { ($0.contains("test.yaml: \(key) ") || $0.hasPrefix("\(key) (default)")) && $0.contains(message) }, "\(found)")
}

@Test func theSegmentationConfigsLoad() throws {
    for name in ["synth_seg/regular", "synth_seg/dcnv2", "synth_seg/dcnv2_pretrained_offsets", "synth_seg/demo", "voc_seg/deeplab_r101_regular", "voc_seg/deeplab_r101_dcnv2",
                 "voc_seg/deeplab_r101_dcnv2_pretrained_offsets", "cityscapes/deeplab_r101_dcnv2"] {
        let c = try loadConfig(path: repositoryURL.appendingPathComponent("configs/\(name).yaml").path)
        #expect(c.model.task == .segmentation && c.data.format.isSegmentation, "\(name)")
    }
}
