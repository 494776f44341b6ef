// Fixture check of a whole ResNet or ResNeXt against torchvision: stage outputs c2..c5 and the logits.
import DCNModels
import DCNOps
import DCNTensor
import Foundation

extension Fixture {
    /// A comma-separated list of integers from the metadata.
    func ints(_ key: String) throws -> [Int] {
        guard let text = file.metadata[key] else { throw SafeTensorsError("\(file.path): metadata has no '\(key)'") }
        let values = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty else { throw SafeTensorsError("\(file.path): metadata '\(key)' = '\(text)' is not a list of integers") }
        return values
    }
}

func verifyResNet(_ f: Fixture) throws -> [Comparison] {
    // torchvision's network: regular 3x3 convs, res5 at stride 32, frozen batch norm, the fixture's
    // widths and block counts; ResNeXt: its groups and width per group (ResNet: 1 and 64).
    let block = f.file.metadata["block"] ?? "bottleneck"
    var spec = ResNetSpec(depth: block.hasPrefix("basic") ? .r18 : .r50, layers: try f.ints("layers"),
                          stemWidth: try f.int("stem_width", default: 64), stagePlanes: try f.ints("stage_planes"),
                          stageConv: [.regular, .regular, .regular, .regular], offsetGroups: 1, offsetLearningRateScale: 1,
                          modulation: .sigmoid, res5Dilation: 1, norm: .frozenBatchNorm, frozenStages: 0,
                          classes: try f.int("num_classes"))
    spec.groups = try f.int("groups", default: 1)
    spec.widthPerGroup = try f.int("width_per_group", default: 64)
    let model = try ResNet(spec: spec)
    try loadWeights(model.parameters, from: f.file, options: WeightLoadOptions(filePrefix: "weights."))
    let (features, _) = try model.forward(try f.tensor("input"), training: false, Workspace())
    return try zip(["res2", "res3", "res4", "res5"], ["expected_c2", "expected_c3", "expected_c4", "expected_c5"]).map {
        try f.compare($1, features[$0]!)
    } + [try f.compare("expected_logits", features["logits"]!)]
}
