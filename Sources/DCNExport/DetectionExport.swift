// The box head and its detections as ONNX nodes, for one image, from the proposals: what
// BoxHead.candidates and BoxHead.select compute in inference.
//   res5 -> 1x1 conv + ReLU (the reduced map) -> the RoI features of the head's extractor
//   (roialign, roipool, dpool or mdpool: RoIFeatureExport.swift) -> Flatten -> fc + ReLU,
//   fc + ReLU -> class logits and class-specific deltas ->
//   Softmax -> for every (RoI, class >= 1) pair in RoI-then-class order: the deltas decoded on the
//   RoI (weights 10, 10, 5, 5), clipped to the image, kept when the score is above
//   roi_head.score_threshold and the box has width and height -> per-class NMS as ours (each
//   class's boxes shifted by class * (largest coordinate + 1), torchvision's batched_nms trick, then
//   one NonMaxSuppression keeping roi_head.detections_per_image by descending score).
import DCNModels
import DCNTensor

/// The detections' outputs in an exported model.
public let detectionBoxesName = "detection_boxes", detectionScoresName = "detection_scores", detectionLabelsName = "detection_labels"

extension BackboneExporter {
    /// Adds the detections of batch item 0 from `res5` and the `proposals` [S, 4]; returns
    /// (boxes [D, 4], scores [D], labels [D] int64, 1...C).
    mutating func addDetections(_ detector: GeneralizedRCNN, image: String, res5: String, proposals: String) throws
        -> (boxes: String, scores: String, labels: String) {
        let head = detector.boxHead
        let spec = head.spec
        let classes = head.classes
        func parameter(_ name: String) throws -> Tensor {
            guard let p = detector.parameters[name] else { throw ExportError("onnx export: the detector has no parameter '\(name)'") }
            return p.value
        }
        // The reduced map and the RoI features of the head's extractor (RoIFeatureExport.swift).
        let reduceWeight = try graph.initializer("roi_heads.reduce.weight", try parameter("roi_heads.reduce.weight"))
        let reduceBias = try graph.initializer("roi_heads.reduce.bias", try parameter("roi_heads.reduce.bias"))
        let reduced = try graph.node("Relu", [try graph.node("Conv", [res5, reduceWeight, reduceBias], output: "detections.reduce",
                                                              [.ints("kernel_shape", [1, 1])])], output: "detections.reduced")
        let pooled = try addRoIFeatures(head.extractor, map: reduced, rois: proposals, stride: head.featureStride, prefix: "detections.",
                                        parameter: parameter)
        var g = graph
        defer { graph = g }
        func i64(_ v: Int) throws -> String { try g.int64Scalar(v) }
        func f32(_ v: Float) throws -> String { try g.floatScalar(v) }
        func vector(_ name: String, _ v: [Int]) throws -> String { try g.int64Constant(name, v) }
        func op(_ type: String, _ inputs: [String], _ out: String, _ attributes: [ONNXAttribute] = []) throws -> String {
            try g.node(type, inputs, output: "detections." + out, attributes)
        }
        func weights(_ layer: String) throws -> (String, String) {
            (try g.initializer(layer + ".weight", try parameter(layer + ".weight")), try g.initializer(layer + ".bias", try parameter(layer + ".bias")))
        }
        func linear(_ x: String, _ layer: String, _ out: String) throws -> String {
            let (w, b) = try weights(layer)
            return try op("Gemm", [x, w, b], out, [.int("transB", 1)])
        }
        func column(_ t: String, _ c: Int, axis: Int, _ name: String) throws -> String {
            try op("Gather", [t, try i64(c)], name, [.int("axis", axis)])
        }
        let zero = try f32(0)
        let float = Int(Onnx_TensorProto.DataType.float.rawValue), int64 = Int(Onnx_TensorProto.DataType.int64.rawValue)
        let flat = try op("Flatten", [pooled], "roi_flat", [.int("axis", 1)])
        let hidden1 = try op("Relu", [try linear(flat, "roi_heads.box_head.fc1", "fc1")], "fc1_relu")
        let hidden2 = try op("Relu", [try linear(hidden1, "roi_heads.box_head.fc2", "fc2")], "fc2_relu")
        let logits = try linear(hidden2, "roi_heads.box_predictor.cls_score", "class_logits")
        let deltas = try linear(hidden2, "roi_heads.box_predictor.bbox_pred", "box_deltas")

        // Scores and deltas of the object classes: [S, C] and [S, C, 4].
        let probabilities = try op("Softmax", [logits], "probabilities", [.int("axis", 1)])
        let scores = try op("Slice", [probabilities, try vector("slice.from1", [1]), try vector("slice.to.\(classes + 1)", [classes + 1]),
                                      try vector("axes.1", [1])], "class_scores")
        let deltas3 = try op("Reshape", [deltas, try vector("shape.class_deltas.\(classes + 1)", [-1, classes + 1, 4])], "deltas_c4")
        let classDeltas = try op("Slice", [deltas3, try vector("slice.from1", [1]), try vector("slice.to.\(classes + 1)", [classes + 1]),
                                           try vector("axes.1", [1])], "class_deltas")

        // BoxCoder.decode on the proposals ([S, 1] columns broadcast over the classes).
        let axis1 = try vector("axes.1", [1])
        func proposalColumn(_ c: Int, _ name: String) throws -> String {
            try op("Unsqueeze", [try column(proposals, c, axis: 1, name + "_flat"), axis1], name)
        }
        let (ax1, ay1, ax2, ay2) = (try proposalColumn(0, "px1"), try proposalColumn(1, "py1"), try proposalColumn(2, "px2"), try proposalColumn(3, "py2"))
        let raw = try ["dx", "dy", "dw", "dh"].enumerated().map { c, name in try column(classDeltas, c, axis: 2, name + "_raw") }
        let (x1, y1, x2, y2) = try decodeAndClip(box: (ax1, ay1, ax2, ay2), deltas: raw, weights: spec.boxCoder.weights, image: image,
                                                 zero: zero, op: op, f32: f32, i64: i64)

        // Candidates in RoI-then-class order: [S * C] after flattening.
        let flatShape = try vector("shape.flat", [-1])
        func flatColumn(_ v: String, _ name: String) throws -> String {
            try op("Unsqueeze", [try op("Reshape", [v, flatShape], name + "_flat"), axis1], name + "_col")
        }
        let allBoxes = try op("Concat", [try flatColumn(x1, "x1"), try flatColumn(y1, "y1"), try flatColumn(x2, "x2"), try flatColumn(y2, "y2")],
                              "candidate_boxes", [.int("axis", 1)])
        let allScores = try op("Reshape", [scores, flatShape], "candidate_scores")
        // Labels 1...C per RoI: Range(1, C+1) broadcast to [S, C].
        let classRange = try op("Range", [try i64(1), try i64(classes + 1), try i64(1)], "class_range")
        let labelGrid = try op("Add", [try op("Mul", [try op("Cast", [scores], "scores_as_int", [.int("to", int64)]), try i64(0)], "zero_grid"),
                                       classRange], "label_grid")
        let allLabels = try op("Reshape", [labelGrid, flatShape], "candidate_labels")
        let threshold = try f32(spec.scoreThreshold)
        let valid = try op("And", [try op("Greater", [allScores, threshold], "above_threshold"),
                                   try op("And", [try op("Greater", [try op("Reshape", [try op("Sub", [x2, x1], "width"), flatShape], "width_flat"), zero], "has_width"),
                                                  try op("Greater", [try op("Reshape", [try op("Sub", [y2, y1], "height"), flatShape], "height_flat"), zero], "has_height")],
                                      "has_area")], "valid")
        let keep = try op("Reshape", [try op("NonZero", [valid], "valid_index_2d"), flatShape], "valid_index")
        let candBoxes = try op("Gather", [allBoxes, keep], "boxes_kept", [.int("axis", 0)])
        let candScores = try op("Gather", [allScores, keep], "scores_kept", [.int("axis", 0)])
        let candLabels = try op("Gather", [allLabels, keep], "labels_kept", [.int("axis", 0)])

        // batchedNMS: shift each class by label * (largest coordinate + 1), then NMS.
        let span = try op("Add", [try op("ReduceMax", [candBoxes], "largest", [.int("keepdims", 0)]), try f32(1)], "span")
        let shift = try op("Mul", [try op("Cast", [candLabels], "labels_float", [.int("to", float)]), span], "shift")
        let shifted = try op("Add", [candBoxes, try op("Unsqueeze", [shift, axis1], "shift_col")], "shifted")
        var iou = Float(spec.nmsThreshold)
        if Double(iou) > Double(spec.nmsThreshold) { iou = iou.nextDown }
        let selected = try op("NonMaxSuppression", [try op("Unsqueeze", [shifted, try vector("axes.0", [0])], "nms_boxes"),
                                                    try op("Reshape", [candScores, try vector("shape.nms_scores", [1, 1, -1])], "nms_scores"),
                                                    try vector("detections_per_image", [spec.detectionsPerImage]),
                                                    try g.initializer("detections.nms_threshold", shape: [1], values: [iou])],
                              "selected", [.int("center_point_box", 0)])
        let index = try column(selected, 2, axis: 1, "selected_index")
        return (try op("Gather", [candBoxes, index], "boxes", [.int("axis", 0)]),
                try op("Gather", [candScores, index], "scores", [.int("axis", 0)]),
                try op("Gather", [candLabels, index], "labels", [.int("axis", 0)]))
    }
}
