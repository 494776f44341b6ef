// What the RoI branches after the box head add to each detection, as ONNX nodes. The export
// asks each branch for its `addition` (DetectionAddition), as evaluation and drawing do:
//   - no addition (the mimic branch, which only trains the features): nothing is exported, and
//     its parameters are not in the graph;
//   - an addition: the branch must conform to `ONNXDetectionBranch` here, or the export fails
//     naming it.
// The mask head (MaskHead.swift) conforms: the box head's reduced map -> RoiAlign (half_pixel,
// the mask section's pooled_size and sampling_ratio) at the detections' boxes -> 3x3 Conv + Relu
// (mask.convs times) -> ConvTranspose 2x2 stride 2 + Relu -> 1x1 Conv -> the detection's class map
// (GatherElements on the channel axis; channel 0 when class-agnostic) -> Sigmoid:
// `detection_masks` [D, M, M], the probabilities over each box that MaskHead.predict returns.
// The paste into the image stays outside the graph (docs/export.md says why).
import DCNModels
import DCNTensor

/// The detections' masks in an exported model: [D, M, M] probabilities over each box.
public let detectionMasksName = "detection_masks"

/// A RoI branch whose per-detection addition can be exported.
protocol ONNXDetectionBranch {
    /// Adds the nodes of the addition for the detections `boxes` [D, 4] (input pixels), `labels`
    /// [D] (int64, 1...C) of the images `images` [D] (int64), reading the maps `maps` (by name: the
    /// backbone's and the box head's published ones); returns the outputs to name, with their shapes.
    func addDetectionOutputs(_ exporter: inout BackboneExporter, maps: [String: String], boxes: String, labels: String, images: String) throws
        -> [(tensor: String, value: ONNXValue)]
}

extension MaskHead: ONNXDetectionBranch {
    func addDetectionOutputs(_ exporter: inout BackboneExporter, maps: [String: String], boxes: String, labels: String, images: String) throws
        -> [(tensor: String, value: ONNXValue)] {
        guard let reduced = maps[BoxHead.reducedMap] else {
            throw ExportError("onnx export: the mask head reads '\(BoxHead.reducedMap)', which the box head does not publish")
        }
        var g = exporter.graph
        defer { exporter.graph = g }
        func op(_ type: String, _ inputs: [String], _ out: String, _ attributes: [ONNXAttribute] = []) throws -> String {
            try g.node(type, inputs, output: "masks." + out, attributes)
        }
        let m = spec.maskSize
        var x = try op("RoiAlign", [reduced, boxes, images], "roi_features",
                       [.string("mode", "avg"), .int("output_height", spec.pooledSize), .int("output_width", spec.pooledSize),
                        .int("sampling_ratio", spec.samplingRatio), .float("spatial_scale", 1 / Float(input.stride)),
                        .string("coordinate_transformation_mode", "half_pixel")])
        exporter.graph = g
        for conv in convs {
            x = try exporter.graph.node("Relu", [try exporter.conv(x, conv)], output: layerName(conv.weight) + ".relu")
        }
        let deconvName = layerName(deconv.weight)
        let o = deconv.options
        let up = try exporter.graph.node(
            "ConvTranspose", [x, try exporter.graph.initializer(deconvName + ".weight", deconv.weight.value),
                              try exporter.graph.initializer(deconvName + ".bias", deconv.bias.value)],
            output: deconvName,
            [.ints("kernel_shape", [deconv.weight.shape[2], deconv.weight.shape[3]]), .ints("strides", [o.strideH, o.strideW]),
             .ints("pads", [o.padH, o.padW, o.padH, o.padW]), .ints("output_padding", [o.outputPadH, o.outputPadW]),
             .ints("dilations", [o.dilationH, o.dilationW]), .int("group", o.groups)])
        let hidden = try exporter.graph.node("Relu", [up], output: deconvName + ".relu")
        let logits = try exporter.conv(hidden, predictor)  // [D, classes or 1, M, M]
        g = exporter.graph
        // The detection's class map: GatherElements with index label - 1 on every pixel.
        let classMap: String
        if spec.classAgnostic {
            classMap = logits
        } else {
            let channel = try op("Sub", [labels, try g.int64Scalar(1)], "channel")
            let column = try op("Reshape", [channel, try g.int64Constant("shape.rows1111", [-1, 1, 1, 1])], "channel_4d")
            let index = try op("Expand", [column, try g.int64Constant("shape.mask_plane.\(m)", [1, 1, m, m])], "channel_index")
            classMap = try op("GatherElements", [logits, index], "class_logits", [.int("axis", 1)])
        }
        let probabilities = try op("Sigmoid", [classMap], "probabilities_4d")
        let masks = try op("Reshape", [probabilities, try g.int64Constant("shape.masks.\(m)", [-1, m, m])], "probabilities")
        return [(masks, ONNXValue(name: detectionMasksName, shape: [.symbolic("detections"), .fixed(m), .fixed(m)]))]
    }
}
