// The RPN's proposals as ONNX nodes, for one image: what RPN.proposals computes in inference
// (detectron2's find_top_rpn_proposals), after the head's logits and deltas:
//   anchors of every cell (Range, shifted cell anchors; ordered (row, column, size, ratio) as
//   AnchorGenerator.anchors) -> TopK of the objectness logits (pre_nms_topk_test; ties by lower
//   index, as our stable sort) -> the deltas decoded on their anchors (BoxCoder.decode, dw and dh
//   clamped at log(1000/16)) -> clipped to the image -> boxes of zero width or height dropped ->
//   NonMaxSuppression (IoU above rpn.nms_threshold suppresses, post_nms_topk_test kept, by
//   descending score).
// The image is the graph's input tensor: its height and width are the clipping bounds (the
// detector pads a batch to a multiple of 32 and clips to each image's own size; give the
// unpadded image to get the detector's proposals).
import DCNModels
import DCNTensor

extension BackboneExporter {
    /// Adds the proposals of batch item 0 from the head's `logits` [1, A, h, w] and `deltas`
    /// [1, 4A, h, w]; returns (boxes [S, 4], their logits [S]).
    mutating func addProposals(rpn: RPN, image: String, logits: String, deltas: String) throws -> (boxes: String, scores: String) {
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

        // Scores in anchor order: index (row * w + column) * A + a.
        let scores = try op("Reshape", [try op("Transpose", [logits], "logits_hwa", [.ints("perm", [0, 2, 3, 1])]), try vector("shape.flat", [-1])], "all_scores")
        // Deltas [hwA, 4]: channel 4a + k of cell p -> row p * A + a, column k.
        let d5 = try op("Reshape", [deltas, try vector("shape.rpn_deltas.\(a)", [1, a, 4, -1])], "deltas_a4p")
        let dT = try op("Transpose", [d5], "deltas_pa4", [.ints("perm", [0, 3, 1, 2])])
        let allDeltas = try op("Reshape", [dT, try vector("shape.rows4", [-1, 4])], "all_deltas")

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

        // Top-k by objectness (k = min(pre_nms_topk_test, anchors)).
        let k = try op("Min", [try op("Shape", [scores], "anchor_count"), try vector("pre_nms_topk", [spec.preNMSTopKTest])], "k")
        let top = try g.node("TopK", [scores, k], outputs: ["proposals.top_scores", "proposals.top_index"],
                             [.int("axis", 0), .int("largest", 1), .int("sorted", 1)])
        let topAnchors = try op("Gather", [anchors, top[1]], "top_anchors", [.int("axis", 0)])
        let topDeltas = try op("Gather", [allDeltas, top[1]], "top_deltas", [.int("axis", 0)])
        func column(_ t: String, _ c: Int, _ name: String) throws -> String {
            try op("Gather", [t, try i64(c)], name, [.int("axis", 1)])
        }

        // BoxCoder.decode, then clipped to the image.
        let (ax1, ay1, ax2, ay2) = (try column(topAnchors, 0, "ax1"), try column(topAnchors, 1, "ay1"),
                                    try column(topAnchors, 2, "ax2"), try column(topAnchors, 3, "ay2"))
        let raw = try ["dx", "dy", "dw", "dh"].enumerated().map { c, name in try column(topDeltas, c, name + "_raw") }
        let (x1, y1, x2, y2) = try decodeAndClip(box: (ax1, ay1, ax2, ay2), deltas: raw, weights: spec.boxCoder.weights, image: image,
                                                 zero: zero, op: op, f32: f32, i64: i64)
        let column1 = try vector("axes.1", [1])
        let boxes = try op("Concat", [try op("Unsqueeze", [x1, column1], "x1_col"), try op("Unsqueeze", [y1, column1], "y1_col"),
                                      try op("Unsqueeze", [x2, column1], "x2_col"), try op("Unsqueeze", [y2, column1], "y2_col")],
                           "decoded", [.int("axis", 1)])

        // Boxes of positive width and height.
        let valid = try op("And", [try op("Greater", [try op("Sub", [x2, x1], "width"), zero], "has_width"),
                                   try op("Greater", [try op("Sub", [y2, y1], "height"), zero], "has_height")], "valid")
        let keep = try op("Reshape", [try op("NonZero", [valid], "valid_index_2d"), try vector("shape.flat", [-1])], "valid_index")
        let kept = try op("Gather", [boxes, keep], "valid_boxes", [.int("axis", 0)])
        let keptScores = try op("Gather", [top[0], keep], "valid_scores", [.int("axis", 0)])

        // NMS as ours: IoU > t with t the largest float not above the threshold.
        var threshold = Float(spec.nmsThreshold)
        if Double(threshold) > Double(spec.nmsThreshold) { threshold = threshold.nextDown }
        let nmsBoxes = try op("Unsqueeze", [kept, try vector("axes.0", [0])], "nms_boxes")
        let nmsScores = try op("Reshape", [keptScores, try vector("shape.nms_scores", [1, 1, -1])], "nms_scores")
        let selected = try op("NonMaxSuppression", [nmsBoxes, nmsScores, try vector("post_nms_topk", [spec.postNMSTopKTest]),
                                                    try g.initializer("proposals.nms_threshold", shape: [1], values: [threshold])],
                              "selected", [.int("center_point_box", 0)])
        let index = try column(selected, 2, "selected_index")
        let out = try op("Gather", [kept, index], "boxes", [.int("axis", 0)])
        let outScores = try op("Gather", [keptScores, index], "scores", [.int("axis", 0)])
        return (out, outScores)
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
