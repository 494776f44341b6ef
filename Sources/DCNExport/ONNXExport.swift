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
    /// The backbone and the RPN head: res4, res5, the objectness logits and the anchor deltas
    /// (before anchor decoding, top-k and NMS: `proposals` adds those).
    case rpn
    /// The backbone, the RPN head and the proposals of each image (anchor decoding, top-k, clipping,
    /// NMS): adds `proposals` [S, 4] (x1, y1, x2, y2 in input pixels), `proposal_logits` [S] and
    /// `proposal_batch_index` [S] (int64), image by image.
    case proposals
    /// Also the box head's detections: adds `detection_boxes` [D, 4], `detection_scores` [D],
    /// `detection_labels` [D] (int64, 1...C), `detection_batch_index` [D] (int64), and with a mask head
    /// `detection_masks` [D, M, M] (probabilities over each box).
    case detector
}

/// The name of the exported graphs' input: the normalised image batch `[batch, 3, height, width]`
/// (RGB in [0, 1], minus ImageNet's mean, over its std; any height and width).
public let imageInputName = "image"

/// The RPN head's outputs in an exported model.
public let rpnLogitsName = "rpn_objectness_logits", rpnDeltasName = "rpn_anchor_deltas"

/// The proposals' outputs in an exported model (`proposalImagesName`: each proposal's image in the batch).
public let proposalsName = "proposals", proposalLogitsName = "proposal_logits", proposalImagesName = "proposal_batch_index"

/// The backbone of a detector (or classifier) as an ONNX model with the named stage maps as
/// outputs (of "res2" ... "res5"; the detector reads res4 and res5). Height and width are dynamic.
public func backboneModel(_ resnet: ResNet, outputs: [String] = ["res4", "res5"], metadata: [(String, String)] = []) throws -> Onnx_ModelProto {
    var graph = ONNXGraph()
    try graph.declareInput(imageInputName)
    var exporter = BackboneExporter(graph: graph)
    let values = try addStageOutputs(resnet, outputs, &exporter)
    return try finish(exporter.graph, name: "backbone", outputs: values, what: "the backbone (\(outputs.joined(separator: ", ")))", metadata: metadata)
}

/// `part` of a detector as an ONNX model (see `ExportPart`).
public func detectorModel(_ detector: GeneralizedRCNN, part: ExportPart, metadata: [(String, String)] = []) throws -> Onnx_ModelProto {
    switch part {
    case .backbone:
        return try backboneModel(detector.backbone, metadata: metadata)
    case .rpn, .proposals, .detector:
        var graph = ONNXGraph()
        try graph.declareInput(imageInputName)
        var exporter = BackboneExporter(graph: graph)
        var values = try addStageOutputs(detector.backbone, ["res4", "res5"], &exporter)
        let rpn = detector.rpn
        guard let input = exporter.stageTensors[rpn.inFeature] else {
            throw ExportError("onnx export: the RPN reads '\(rpn.inFeature)', which the backbone does not produce")
        }
        let hidden = try exporter.graph.node("Relu", [try exporter.conv(input, rpn.conv)], output: "rpn.hidden")
        let logits = try exporter.conv(hidden, rpn.objectness)
        let deltas = try exporter.conv(hidden, rpn.deltas)
        try exporter.graph.node("Identity", [logits], output: rpnLogitsName)
        try exporter.graph.node("Identity", [deltas], output: rpnDeltasName)
        let a = rpn.objectness.outChannels
        let cells: [ONNXDim] = [.symbolic("\(rpn.inFeature)_height"), .symbolic("\(rpn.inFeature)_width")]
        values.append(ONNXValue(name: rpnLogitsName, shape: [.symbolic("batch"), .fixed(a)] + cells))
        values.append(ONNXValue(name: rpnDeltasName, shape: [.symbolic("batch"), .fixed(4 * a)] + cells))
        if part == .proposals || part == .detector {
            let (boxes, scores, proposalImages) = try exporter.addProposals(rpn: rpn, image: imageInputName, logits: logits, deltas: deltas)
            try exporter.graph.node("Identity", [boxes], output: proposalsName)
            try exporter.graph.node("Identity", [scores], output: proposalLogitsName)
            try exporter.graph.node("Identity", [proposalImages], output: proposalImagesName)
            values.append(ONNXValue(name: proposalsName, shape: [.symbolic("proposals"), .fixed(4)]))
            values.append(ONNXValue(name: proposalLogitsName, shape: [.symbolic("proposals")]))
            values.append(ONNXValue(name: proposalImagesName, shape: [.symbolic("proposals")], int64: true))
            if part == .detector {
                guard let res5 = exporter.stageTensors[detector.boxHead.inFeature] else {
                    throw ExportError("onnx export: the box head reads '\(detector.boxHead.inFeature)', which the backbone does not produce")
                }
                let (dBoxes, dScores, dLabels, dImages, reduced) = try exporter.addDetections(detector, image: imageInputName, res5: res5,
                                                                                             proposals: boxes, proposalImages: proposalImages)
                try exporter.graph.node("Identity", [dBoxes], output: detectionBoxesName)
                try exporter.graph.node("Identity", [dScores], output: detectionScoresName)
                try exporter.graph.node("Identity", [dLabels], output: detectionLabelsName)
                try exporter.graph.node("Identity", [dImages], output: detectionImagesName)
                values.append(ONNXValue(name: detectionBoxesName, shape: [.symbolic("detections"), .fixed(4)]))
                values.append(ONNXValue(name: detectionScoresName, shape: [.symbolic("detections")]))
                values.append(ONNXValue(name: detectionLabelsName, shape: [.symbolic("detections")], int64: true))
                values.append(ONNXValue(name: detectionImagesName, shape: [.symbolic("detections")], int64: true))
                // The other branches' additions (masks); training-only branches (mimic) add nothing.
                var maps = exporter.stageTensors
                maps[BoxHead.reducedMap] = reduced
                var added: [String] = []
                for branch in detector.roiBranches.dropFirst() where branch.addition != nil {
                    guard let exportable = branch as? ONNXDetectionBranch else {
                        throw ExportError("onnx export: the \(branch.phase) branch adds \(branch.addition!) to each detection, which has no ONNX export")
                    }
                    for (tensor, value) in try exportable.addDetectionOutputs(&exporter, maps: maps, boxes: dBoxes, labels: dLabels, images: dImages) {
                        try exporter.graph.node("Identity", [tensor], output: value.name)
                        values.append(value)
                        added.append(value.name)
                    }
                }
                return try finish(exporter.graph, name: "detector", outputs: values,
                                  what: "the detector: res4, res5, the RPN head, the proposals and the box head's "
                                      + "detections (boxes [D, 4] x1, y1, x2, y2 clipped to the input's size, scores, labels 1...C, "
                                      + "the image in the batch) image by image, by descending score" + (added.isEmpty ? "" : ", and \(added.joined(separator: ", ")) "
                                      + "(the mask probabilities over each box, [D, M, M], to paste into the image)"), metadata: metadata)
            }
            return try finish(exporter.graph, name: "backbone_rpn_proposals", outputs: values,
                              what: "the backbone (res4, res5), the RPN head and the proposals: boxes [S, 4] "
                                  + "(x1, y1, x2, y2, clipped to the input's size), their logits and their image in the batch, "
                                  + "image by image, by descending objectness logit", metadata: metadata)
        }
        return try finish(exporter.graph, name: "backbone_rpn", outputs: values,
                          what: "the backbone (res4, res5) and the RPN head (objectness logits [batch, A, H, W], anchor deltas [batch, 4A, H, W], "
                              + "channel 4a + k: dx, dy, dw, dh of anchor a)", metadata: metadata)
    }
}

/// Adds the backbone and an Identity per wanted stage output (named "res4", ...); returns their values.
func addStageOutputs(_ resnet: ResNet, _ outputs: [String], _ exporter: inout BackboneExporter) throws -> [ONNXValue] {
    let maps = try exporter.add(resnet, input: imageInputName)
    var values: [ONNXValue] = []
    for name in outputs {
        guard let s = ResNet.stageNames.firstIndex(of: name), let tensor = maps[name] else {
            throw ExportError("onnx export: the backbone has no output '\(name)'; its outputs are \(ResNet.stageNames.joined(separator: ", "))")
        }
        try exporter.graph.node("Identity", [tensor], output: name)
        values.append(ONNXValue(name: name, shape: [.symbolic("batch"), .fixed(resnet.spec.stageChannels[s]),
                                                    .symbolic("\(name)_height"), .symbolic("\(name)_width")]))
    }
    return values
}

func finish(_ graph: ONNXGraph, name: String, outputs: [ONNXValue], what: String, metadata: [(String, String)]) throws -> Onnx_ModelProto {
    let input = ONNXValue(name: imageInputName, shape: [.symbolic("batch"), .fixed(3), .symbolic("height"), .symbolic("width")])
    return try graph.model(name: name, inputs: [input], outputs: outputs,
                           docString: "DCNv2 on the CPU: \(what) of a dcn-train model. "
                               + "Input: the RGB image in [0, 1] normalised with ImageNet's mean and std, [batch, 3, height, width].",
                           metadata: metadata)
}

/// The model's bytes (the protobuf wire format of a .onnx file).
public func serializedModel(_ model: Onnx_ModelProto) throws -> Data {
    try model.serializedData()
}
