// The RPN's proposals as ONNX nodes, for every image of the batch: what RPN.proposals computes in inference
// (detectron2's find_top_rpn_proposals), after the head's logits and deltas:
//   anchors of every cell (Range, shifted cell anchors; ordered (row, column, size, ratio) as
//   AnchorGenerator.anchors) -> TopK of the objectness logits (pre_nms_topk_test; ties by lower
//   index, as our stable sort) -> the deltas decoded on their anchors (BoxCoder.decode, dw and dh
//   clamped at log(1000/16)) -> clipped to the image -> boxes of zero width or height dropped ->
//   NonMaxSuppression (IoU above rpn.nms_threshold suppresses, post_nms_topk_test kept, by
//   descending score), all per image: TopK on the anchor axis, GatherND with batch_dims 1, boxes
//   without width or height given a score of -inf (below the NMS's score threshold, -FLT_MAX), one
//   NonMaxSuppression over the batch axis.
// The image is the graph's input tensor: its height and width are the clipping bounds of every
// image (the detector pads a batch to a multiple of 32 and clips to each image's own size; give
// unpadded images of one size to get the detector's proposals).
import DCNModels
import DCNTensor

extension BackboneExporter {
    /// Adds the proposals of every image of the batch from the head's `logits` [N, A, h, w] and
    /// `deltas` [N, 4A, h, w]; returns (boxes [S, 4], their logits [S], their image's index in the
    /// batch [S] (int64)), image by image, each image's by descending logit.
    mutating func addProposals(rpn: RPN, image: String, logits: String, deltas: String) throws
        -> (boxes: String, scores: String, batchIndex: String) {
        let spec = rpn.spec
        let a = spec.anchors.anchorsPerCell
        var g = graph
        defer { graph = g }
        func i64(_ v: Int) throws -> String { try g.int64Scalar(v) }
        func f32(_ v: Float) throws -> String { try g.floatScalar(v) }
        func vector(_ name: String, _ v: [Int]) throws -> String { try g.int64Constant(name, v) }
        func op(_ type: String, _ inputs: [String], _ out: String, _ attributes: [ONNXAttribute] = []) throws -> String {
            try g.node(type, inputs, output: "proposals." + out, attributes)
        }

        // Scores in anchor order per image [N, hwA]: index (row * w + column) * A + a.
        let scores = try op("Reshape", [try op("Transpose", [logits], "logits_hwa", [.ints("perm", [0, 2, 3, 1])]),
                                        try vector("shape.keep0.flat", [0, -1])], "all_scores")
        // Deltas [N, hwA, 4]: channel 4a + k of cell p -> row p * A + a, column k.
        let d5 = try op("Reshape", [deltas, try vector("shape.rpn_deltas.\(a)", [0, a, 4, -1])], "deltas_a4p")
        let dT = try op("Transpose", [d5], "deltas_pa4", [.ints("perm", [0, 3, 1, 2])])
        let allDeltas = try op("Reshape", [dT, try vector("shape.keep0.rows4", [0, -1, 4])], "all_deltas")

        // Anchors: the cell anchors shifted by (column * stride, row * stride).
        let cellShape = try op("Shape", [logits], "cells_shape")
        let h = try op("Gather", [cellShape, try i64(2)], "cells_h", [.int("axis", 0)])
        let w = try op("Gather", [cellShape, try i64(3)], "cells_w", [.int("axis", 0)])
        let stride = try f32(Float(spec.anchors.stride))
        func shifts(_ count: String, _ axis: Int, _ name: String) throws -> String {
            let r = try op("Range", [try i64(0), count, try i64(1)], name + "_index")
            let f = try op("Cast", [r], name + "_float", [.int("to", Int(Onnx_TensorProto.DataType.float.rawValue))])
            let s = try op("Mul", [f, stride], name)
            return try op("Unsqueeze", [s, try vector("axes.\(axis)", [axis])], name + "_2d")
        }
        let sy = try shifts(h, 1, "shift_y")  // [h, 1]
        let sx = try shifts(w, 0, "shift_x")  // [1, w]
        let zero = try f32(0)
        let zeros = try op("Add", [try op("Mul", [sy, zero], "zero_y"), try op("Mul", [sx, zero], "zero_x")], "zeros_hw")
        let gridX = try op("Unsqueeze", [try op("Add", [sx, zeros], "grid_x"), try vector("axes.2", [2])], "grid_x_3d")
        let gridY = try op("Unsqueeze", [try op("Add", [sy, zeros], "grid_y"), try vector("axes.2", [2])], "grid_y_3d")
        let shift4 = try op("Concat", [gridX, gridY, gridX, gridY], "shifts_hw4", [.int("axis", 2)])
        let shiftRows = try op("Reshape", [shift4, try vector("shape.rows14", [-1, 1, 4])], "shifts")
        let cell = spec.anchors.cellAnchors
        let cellTensor = try g.initializer("proposals.cell_anchors", shape: [1, a, 4], values: cell.flatMap { [$0.x1, $0.y1, $0.x2, $0.y2] })
        let anchors = try op("Reshape", [try op("Add", [shiftRows, cellTensor], "anchors_pa4"), try vector("shape.rows4", [-1, 4])], "all_anchors")

        // Top-k by objectness per image (k = min(pre_nms_topk_test, anchors)).
        let anchorCount = try op("Slice", [try op("Shape", [scores], "scores_shape"), try vector("slice.from1", [1]),
                                           try vector("slice.to.2", [2])], "anchor_count")
        let k = try op("Min", [anchorCount, try vector("pre_nms_topk", [spec.preNMSTopKTest])], "k")
        let top = try g.node("TopK", [scores, k], outputs: ["proposals.top_scores", "proposals.top_index"],
                             [.int("axis", 1), .int("largest", 1), .int("sorted", 1)])
        let topAnchors = try op("Gather", [anchors, top[1]], "top_anchors", [.int("axis", 0)])  // [N, k, 4]
        let topDeltas = try op("GatherND", [allDeltas, try op("Unsqueeze", [top[1], try vector("axes.-1", [-1])], "top_index_nd")],
                               "top_deltas", [.int("batch_dims", 1)])  // [N, k, 4]
        func column(_ t: String, _ c: Int, _ name: String) throws -> String {
            try op("Gather", [t, try i64(c)], name, [.int("axis", 2)])
        }

        // BoxCoder.decode, then clipped to the image ([N, k] each).
        let (ax1, ay1, ax2, ay2) = (try column(topAnchors, 0, "ax1"), try column(topAnchors, 1, "ay1"),
                                    try column(topAnchors, 2, "ax2"), try column(topAnchors, 3, "ay2"))
        let raw = try ["dx", "dy", "dw", "dh"].enumerated().map { c, name in try column(topDeltas, c, name + "_raw") }
        let (x1, y1, x2, y2) = try decodeAndClip(box: (ax1, ay1, ax2, ay2), deltas: raw, weights: spec.boxCoder.weights, image: image,
                                                 zero: zero, op: op, f32: f32, i64: i64)
        let last = try vector("axes.-1", [-1])
        let boxes = try op("Concat", [try op("Unsqueeze", [x1, last], "x1_col"), try op("Unsqueeze", [y1, last], "y1_col"),
                                      try op("Unsqueeze", [x2, last], "x2_col"), try op("Unsqueeze", [y2, last], "y2_col")],
                           "decoded", [.int("axis", -1)])  // [N, k, 4]

        // Boxes without width or height leave the NMS: their score becomes -inf, below its threshold.
        let valid = try op("And", [try op("Greater", [try op("Sub", [x2, x1], "width"), zero], "has_width"),
                                   try op("Greater", [try op("Sub", [y2, y1], "height"), zero], "has_height")], "valid")
        let nmsScores = try op("Unsqueeze", [try op("Where", [valid, top[0], try f32(-.infinity)], "valid_scores"), try vector("axes.1", [1])],
                               "nms_scores")  // [N, 1, k]

        // NMS per image as ours: IoU > t with t the largest float not above the threshold.
        var threshold = Float(spec.nmsThreshold)
        if Double(threshold) > Double(spec.nmsThreshold) { threshold = threshold.nextDown }
        let selected = try op("NonMaxSuppression", [boxes, nmsScores, try vector("post_nms_topk", [spec.postNMSTopKTest]),
                                                    try g.initializer("proposals.nms_threshold", shape: [1], values: [threshold]),
                                                    try g.initializer("proposals.score_floor", shape: [1], values: [-Float.greatestFiniteMagnitude])],
                              "selected", [.int("center_point_box", 0)])
        // selected [S, 3] = (image, class 0, index), image by image, by descending score.
        let pick = try op("Gather", [selected, try vector("columns.0.2", [0, 2])], "selected_image_index", [.int("axis", 1)])
        let out = try op("GatherND", [boxes, pick], "boxes")
        let outScores = try op("GatherND", [top[0], pick], "scores")
        let batchIndex = try op("Gather", [selected, try i64(0)], "batch_index", [.int("axis", 1)])
        return (out, outScores, batchIndex)
    }
}

/// `BoxCoder.decode` of the delta columns `deltas` (dx, dy, dw, dh, divided by `weights`; dw and dh
/// clamped at `BoxCoder.scaleClamp`) on the boxes `box`, then each coordinate clipped to
/// [0, the image's width or height], as ONNX nodes named by `op`: the proposals' and the
/// detections' decoding (the columns broadcast, so boxes [S, 1] decode deltas [S, C]).
func decodeAndClip(box: (x1: String, y1: String, x2: String, y2: String), deltas: [String], weights: (Float, Float, Float, Float),
                   image: String, zero: String,
                   op: (String, [String], String, [ONNXAttribute]) throws -> String,
                   f32: (Float) throws -> String, i64: (Int) throws -> String) throws -> (x1: String, y1: String, x2: String, y2: String) {
    let pw = try op("Sub", [box.x2, box.x1], "pw", []), ph = try op("Sub", [box.y2, box.y1], "ph", [])
    let half = try f32(0.5)
    let px = try op("Add", [box.x1, try op("Mul", [half, pw], "half_pw", [])], "px", [])
    let py = try op("Add", [box.y1, try op("Mul", [half, ph], "half_ph", [])], "py", [])
    let w = [weights.0, weights.1, weights.2, weights.3]
    var d: [String] = []
    for (c, name) in ["dx", "dy", "dw", "dh"].enumerated() {
        d.append(try op("Div", [deltas[c], try f32(w[c])], name + "_unclamped", []))
    }
    let clamp = try f32(BoxCoder.scaleClamp)
    let dw = try op("Min", [d[2], clamp], "dw", []), dh = try op("Min", [d[3], clamp], "dh", [])
    let cx = try op("Add", [try op("Mul", [d[0], pw], "dx_pw", []), px], "cx", [])
    let cy = try op("Add", [try op("Mul", [d[1], ph], "dy_ph", []), py], "cy", [])
    let bw = try op("Mul", [try op("Exp", [dw], "exp_dw", []), pw], "bw", [])
    let bh = try op("Mul", [try op("Exp", [dh], "exp_dh", []), ph], "bh", [])
    let halfW = try op("Mul", [half, bw], "half_bw", []), halfH = try op("Mul", [half, bh], "half_bh", [])

    // Clipped to the image: min(max(v, 0), size).
    let imageShape = try op("Shape", [image], "image_shape", [])
    func size(_ axis: Int, _ name: String) throws -> String {
        try op("Cast", [try op("Gather", [imageShape, try i64(axis)], name + "_int", [.int("axis", 0)])], name,
               [.int("to", Int(Onnx_TensorProto.DataType.float.rawValue))])
    }
    let imageH = try size(2, "image_h"), imageW = try size(3, "image_w")
    func clip(_ v: String, _ bound: String, _ name: String) throws -> String {
        try op("Min", [try op("Max", [v, zero], name + "_low", []), bound], name, [])
    }
    return (try clip(try op("Sub", [cx, halfW], "x1_raw", []), imageW, "x1"), try clip(try op("Sub", [cy, halfH], "y1_raw", []), imageH, "y1"),
            try clip(try op("Add", [cx, halfW], "x2_raw", []), imageW, "x2"), try clip(try op("Add", [cy, halfH], "y2_raw", []), imageH, "y2"))
}
