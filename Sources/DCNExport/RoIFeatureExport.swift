// The RoI feature extractors (RoIFeatureExtractor.swift) as standard ONNX operators, for the
// RoIs of one image on a map [1, C, H, W]:
//
// - roialign: `RoiAlign` (opset 16) with coordinate_transformation_mode half_pixel, our aligned
//   RoIAlign (torchvision's aligned=True).
// - roipool: `MaxRoiPool`. onnxruntime's kernel is torchvision's roi_pool: start and end rounded
//   half away from zero, the bin size (RoI size + 1) / bins in float, floor and ceil of its
//   multiples (RoIPool.swift computes the same floats). It starts each bin's maximum at FLT_MIN
//   (the smallest positive float), not at the lowest float: on the post-ReLU map it pools (>= 0)
//   the only difference is 1.2e-38 instead of 0 in an all-zero bin.
// - dpool / mdpool: the RoIAlign above, the offset fcs (`Gemm`, `Relu`), then the deformed bins'
//   sample points computed as RoISamplingPlan computes them (in float rather than double):
//       x(r, ph, iy, pw, ix) = x1 + pw * bin_w + gamma * roi_w * offset_x[r, ph, pw] + (ix + 0.5) * bin_w / grid_w
//   (y likewise), all RoIs' points in one grid of `GridSample` (opset 16, bilinear, align_corners
//   0, padding_mode border): with border padding, GridSample clamps a point to [0, size - 1] before
//   interpolating, which is our RoIAlign rule for points in [-1, size]; points outside that band
//   are zero in ours, so the samples are multiplied by a 0/1 validity mask. Then the sum over each
//   bin's grid (`ReduceSum`) times 1 / (grid_h * grid_w), and for mdpool the sigmoid modulation.
//   The grid is normalised for align_corners 0: gx = (2x + 1) / W - 1, which GridSample maps back
//   to x. Adaptive sampling (sampling_ratio 0: a grid per RoI) is not exported for (m)dpool.
import DCNModels
import DCNTensor

extension BackboneExporter {
    /// Adds the RoI features [S, C, P, P] of `extractor` for `rois` [S, 4] (x1, y1, x2, y2 in input
    /// pixels, batch item 0) on `map` [1, C, H, W] of stride `stride`; nodes are named `prefix` + ...
    /// `parameter` returns a detector parameter by name.
    mutating func addRoIFeatures(_ extractor: RoIFeatureExtractor, map: String, rois: String, stride: Int, prefix: String,
                                 parameter: (String) throws -> Tensor) throws -> String {
        var g = graph
        defer { graph = g }
        func i64(_ v: Int) throws -> String { try g.int64Scalar(v) }
        func f32(_ v: Float) throws -> String { try g.floatScalar(v) }
        func vector(_ name: String, _ v: [Int]) throws -> String { try g.int64Constant(name, v) }
        func op(_ type: String, _ inputs: [String], _ out: String, _ attributes: [ONNXAttribute] = []) throws -> String {
            try g.node(type, inputs, output: prefix + out, attributes)
        }
        let float = Int(Onnx_TensorProto.DataType.float.rawValue), int64 = Int(Onnx_TensorProto.DataType.int64.rawValue)
        let p = extractor.pooledSize, scale = 1 / Float(stride)
        func column(_ t: String, _ c: Int, _ name: String) throws -> String {
            try op("Gather", [t, try i64(c)], name, [.int("axis", 1)])
        }
        let zero = try f32(0)
        let batchIndex = try op("Cast", [try op("Mul", [try column(rois, 0, "roi_x1"), zero], "roi_zero")], "roi_batch",
                                [.int("to", int64)])
        func roiAlign(_ name: String) throws -> String {
            try op("RoiAlign", [map, rois, batchIndex], name,
                   [.string("mode", "avg"), .int("output_height", p), .int("output_width", p),
                    .int("sampling_ratio", extractor.samplingRatio), .float("spatial_scale", scale),
                    .string("coordinate_transformation_mode", "half_pixel")])
        }
        switch extractor.kind {
        case .roialign:
            return try roiAlign("roi_features")
        case .roipool:
            // MaxRoiPool reads (batch index, x1, y1, x2, y2) rows.
            let rows = try op("Concat", [try op("Cast", [try op("Unsqueeze", [batchIndex, try vector("axes.1", [1])], "roi_batch_col")],
                                                  "roi_batch_float", [.int("to", float)]), rois], "roi_rows", [.int("axis", 1)])
            return try op("MaxRoiPool", [map, rows], "roi_features", [.ints("pooled_shape", [p, p]), .float("spatial_scale", scale)])
        case .dpool, .mdpool:
            guard extractor.samplingRatio > 0 else {
                throw ExportError("onnx export: roi_head.sampling_ratio 0 (adaptive) is not exported for \(extractor.kind.rawValue) "
                                  + "(a sampling grid per RoI); set roi_head.sampling_ratio to a fixed count, e.g. 2")
            }
            break
        }

        // The offset branch: RoIAlign features -> fcs (ReLU between) -> offsets [S, 2PP] (+ modulation logits [S, PP]).
        let bins = p * p
        let aligned = try roiAlign("aligned")
        var h = try op("Flatten", [aligned], "aligned_flat", [.int("axis", 1)])
        let layers = extractor.kind == .dpool ? ["offset_fc"] : ["offset_fc1", "offset_fc2", "offset_fc3"]
        for (i, layer) in layers.enumerated() {
            let name = extractor.deformationName + "." + layer
            let w = try g.initializer(name + ".weight", try parameter(name + ".weight"))
            let b = try g.initializer(name + ".bias", try parameter(name + ".bias"))
            h = try op("Gemm", [h, w, b], layer, [.int("transB", 1)])
            if i < layers.count - 1 { h = try op("Relu", [h], layer + "_relu") }
        }
        let axis1 = try vector("axes.1", [1])
        func slice(_ from: Int, _ to: Int, _ name: String) throws -> String {
            try op("Slice", [h, try vector("slice.from\(from)", [from]), try vector("slice.to.\(to)", [to]), axis1], name)
        }
        // [S, P, 1, P, 1]: bin (ph, pw)'s offset, broadcast over the rows (iy) and columns (ix) of its grid.
        let offsetShape = try vector("shape.bin_offsets.\(p)", [-1, p, 1, p, 1])
        let offsetX = try op("Reshape", [try slice(0, bins, "offset_x_flat"), offsetShape], "offset_x")
        let offsetY = try op("Reshape", [try slice(bins, 2 * bins, "offset_y_flat"), offsetShape], "offset_y")

        // Per RoI [S, 1, 1, 1, 1]: start (x1 * scale - 0.5), size, bin size, gamma * size.
        let roiShape = try vector("shape.roi5", [-1, 1, 1, 1, 1])
        let half = try f32(0.5), spatial = try f32(scale)
        func mapped(_ c: Int, _ name: String) throws -> String {
            let v = try op("Sub", [try op("Mul", [try column(rois, c, name + "_image"), spatial], name + "_scaled"), half], name + "_flat")
            return try op("Reshape", [v, roiShape], name)
        }
        let (x1, y1, x2, y2) = (try mapped(0, "start_x"), try mapped(1, "start_y"), try mapped(2, "end_x"), try mapped(3, "end_y"))
        let roiW = try op("Sub", [x2, x1], "roi_w"), roiH = try op("Sub", [y2, y1], "roi_h")
        let binW = try op("Div", [roiW, try f32(Float(p))], "bin_w"), binH = try op("Div", [roiH, try f32(Float(p))], "bin_h")
        let gamma = try f32(extractor.gamma)
        let gh = extractor.samplingRatio, gw = extractor.samplingRatio
        // Bin indices and the samples' fractions of a bin, as constants broadcast on [S, P, gh, P, gw].
        func constant(_ name: String, _ shape: [Int], _ values: [Float]) throws -> String {
            try g.initializer(prefix + name, shape: shape, values: values)
        }
        let columnIndex = try constant("bin_column", [1, 1, 1, p, 1], (0..<p).map(Float.init))
        let rowIndex = try constant("bin_row", [1, p, 1, 1, 1], (0..<p).map(Float.init))
        let columnFraction = try constant("sample_column", [1, 1, 1, 1, gw], (0..<gw).map { (Float($0) + 0.5) / Float(gw) })
        let rowFraction = try constant("sample_row", [1, 1, gh, 1, 1], (0..<gh).map { (Float($0) + 0.5) / Float(gh) })
        func samples(_ start: String, _ size: String, _ bin: String, _ index: String, _ offset: String, _ fraction: String, _ name: String) throws -> String {
            let binStart = try op("Add", [start, try op("Mul", [index, bin], name + "_bin_start")], name + "_regular")
            let shift = try op("Mul", [try op("Mul", [gamma, size], name + "_gamma_size"), offset], name + "_shift")
            return try op("Add", [try op("Add", [binStart, shift], name + "_deformed"), try op("Mul", [fraction, bin], name + "_in_bin")], name)
        }
        let xs = try samples(x1, roiW, binW, columnIndex, offsetX, columnFraction, "sample_x")  // [S, P, 1, P, gw]
        let ys = try samples(y1, roiH, binH, rowIndex, offsetY, rowFraction, "sample_y")  // [S, P, gh, P, 1]
        let x = try op("Add", [xs, try op("Mul", [ys, zero], "zero_y")], "sample_x_full")  // [S, P, gh, P, gw]
        let y = try op("Add", [ys, try op("Mul", [xs, zero], "zero_x")], "sample_y_full")

        // The map's size as floats.
        let mapShape = try op("Shape", [map], "map_shape")
        func size(_ axis: Int, _ name: String) throws -> String {
            try op("Cast", [try op("Gather", [mapShape, try i64(axis)], name + "_int", [.int("axis", 0)])], name, [.int("to", float)])
        }
        let mapH = try size(2, "map_h"), mapW = try size(3, "map_w")
        // Samples in [-1, size] on both axes count; the others are zero (our RoIAlign rule).
        let minusOne = try f32(-1)
        func inside(_ v: String, _ bound: String, _ name: String) throws -> String {
            try op("And", [try op("GreaterOrEqual", [v, minusOne], name + "_low"), try op("LessOrEqual", [v, bound], name + "_high")], name)
        }
        let valid = try op("Cast", [try op("And", [try inside(x, mapW, "inside_x"), try inside(y, mapH, "inside_y")], "inside")],
                           "inside_float", [.int("to", float)])
        // Normalised for align_corners 0: (2v + 1) / size - 1; (x, y) last.
        let one = try f32(1), two = try f32(2)
        func normalised(_ v: String, _ bound: String, _ name: String) throws -> String {
            let n = try op("Sub", [try op("Div", [try op("Add", [try op("Mul", [v, two], name + "_2v"), one], name + "_2v1"), bound], name + "_ratio"), one], name)
            return try op("Unsqueeze", [n, try vector("axes.-1", [-1])], name + "_last")
        }
        let grid = try op("Reshape", [try op("Concat", [try normalised(x, mapW, "grid_x"), try normalised(y, mapH, "grid_y")], "grid_6d",
                                             [.int("axis", -1)]),
                                      try vector("shape.grid.\(p * gw)", [1, -1, p * gw, 2])], "grid")
        let sampled = try op("GridSample", [map, grid], "samples",
                             [.int("align_corners", 0), .string("mode", "bilinear"), .string("padding_mode", "border")])
        // [1, C, S*P*gh, P*gw] -> zero outside -> [C, S, P, gh, P, gw] -> sum over the bin's grid -> [S, C, P, P].
        let validRows = try op("Reshape", [valid, try vector("shape.grid_mask.\(p * gw)", [1, 1, -1, p * gw])], "inside_rows")
        let masked = try op("Mul", [sampled, validRows], "samples_inside")
        let c = extractor.channels
        let grouped = try op("Reshape", [masked, try vector("shape.bin_grid.\(c).\(p).\(gh).\(gw)", [c, -1, p, gh, p, gw])], "samples_by_bin")
        let sums = try op("ReduceSum", [grouped, try vector("axes.3.5", [3, 5])], "bin_sums", [.int("keepdims", 0)])
        let means = try op("Mul", [sums, try f32(1 / Float(max(gh * gw, 1)))], "bin_means")
        var pooled = try op("Transpose", [means], "deformed", [.ints("perm", [1, 0, 2, 3])])
        if extractor.kind == .mdpool {
            let modulation = try op("Sigmoid", [try slice(2 * bins, 3 * bins, "modulation_logits")], "modulation_flat")
            let mask = try op("Reshape", [modulation, try vector("shape.bin_mask.\(p)", [-1, 1, p, p])], "modulation")
            pooled = try op("Mul", [pooled, mask], "modulated")
        }
        return pooled
    }
}
