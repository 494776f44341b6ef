// Whole exported models: the graph of a part, its inputs and outputs with symbolic sizes, and
// the model file's bytes.
import DCNModels
import DCNTensor
import Foundation
import SwiftProtobuf

/// What `dcn-export onnx --part` exports.
public enum ExportPart: String, CaseIterable, Sendable {
    /// The backbone alone: the normalised image in, the res4 and res5 maps out.
    case backbone
}

/// The name of the exported graphs' input: the normalised image batch `[batch, 3, height, width]`
/// (RGB in [0, 1], minus ImageNet's mean, over its std; any height and width).
public let imageInputName = "image"

/// The backbone of a detector (or classifier) as an ONNX model with the named stage maps as
/// outputs (of "res2" ... "res5"; the detector reads res4 and res5). Height and width are dynamic.
public func backboneModel(_ resnet: ResNet, outputs: [String] = ["res4", "res5"], metadata: [(String, String)] = []) throws -> Onnx_ModelProto {
    var exporter = BackboneExporter()
    var graph = exporter.graph
    try graph.declareInput(imageInputName)
    exporter = BackboneExporter(graph: graph)
    let maps = try exporter.add(resnet, input: imageInputName)
    graph = exporter.graph
    var values: [ONNXValue] = []
    for name in outputs {
        guard let s = ResNet.stageNames.firstIndex(of: name), let tensor = maps[name] else {
            throw ExportError("onnx export: the backbone has no output '\(name)'; its outputs are \(ResNet.stageNames.joined(separator: ", "))")
        }
        try graph.node("Identity", [tensor], output: name)
        values.append(ONNXValue(name: name, shape: [.symbolic("batch"), .fixed(resnet.spec.stageChannels[s]),
                                                    .symbolic("\(name)_height"), .symbolic("\(name)_width")]))
    }
    let input = ONNXValue(name: imageInputName, shape: [.symbolic("batch"), .fixed(3), .symbolic("height"), .symbolic("width")])
    return try graph.model(name: "backbone", inputs: [input], outputs: values,
                           docString: "DCNv2 on the CPU: the backbone (\(outputs.joined(separator: ", "))) of a dcn-train model. "
                               + "Input: the RGB image in [0, 1] normalised with ImageNet's mean and std, [batch, 3, height, width].",
                           metadata: metadata)
}

/// The model's bytes (the protobuf wire format of a .onnx file).
public func serializedModel(_ model: Onnx_ModelProto) throws -> Data {
    try model.serializedData()
}
