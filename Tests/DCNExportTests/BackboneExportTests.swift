// The exported backbone graph's structure: one node per layer of the ResNet, unique names,
// DeformConv with a mask only for mdconv, inputs defined before use, dynamic sizes. The numbers
// themselves are compared with onnxruntime by scripts/check_onnx.py (`make test`).
import DCNConfig
import DCNExport
import DCNModels
import Foundation
import SwiftProtobuf
import Testing

/// A small ResNet-18-like backbone: stem 8, stages of 8 / 8 / 16 / 16 channels, one block each.
func tinySpec(conv: ConvKind, norm: NormKind) -> ResNetSpec {
    var backbone = BackboneConfig()
    backbone.depth = .r18  // basic blocks
    var spec = ResNetSpec(backbone)
    spec.layers = [1, 1, 1, 1]
    spec.stemWidth = 8
    spec.stagePlanes = [8, 8, 16, 16]
    spec.stageConv = [.regular, conv, conv, conv]
    spec.norm = norm
    spec.res5Dilation = 2
    return spec
}

/// The tiny backbone with frozen BN, the config sections' RPN and box head at small widths, 2 classes.
func tinyDetectorSpec(conv: ConvKind, extractor: RoIExtractorKind) -> DetectorSpec {
    var rpn = RPNSpec(RPNConfig())
    rpn.headChannels = 8
    var head = RoIHeadSpec(RoIHeadConfig())
    head.extractor = extractor
    head.reduceChannels = 8
    head.fcDim = 16
    return DetectorSpec(backbone: tinySpec(conv: conv, norm: .frozenBatchNorm), rpn: rpn, roiHead: head, classes: 2)
}

func opCounts(_ model: Onnx_ModelProto) -> [String: Int] {
    model.graph.node.reduce(into: [:]) { $0[$1.opType, default: 0] += 1 }
}

@Suite struct BackboneExportTests {
    @Test(arguments: [ConvKind.regular, .dconv, .mdconv])
    func nodesPerLayer(conv: ConvKind) throws {
        let resnet = try ResNet(spec: tinySpec(conv: conv, norm: .frozenBatchNorm), prefix: "backbone.")
        let model = try backboneModel(resnet)
        let ops = opCounts(model)
        // Stem + 2 convs per basic block + the projection shortcuts of res3 and res4 (res2 and the
        // dilated res5 keep their channels and size).
        let deformable = conv == .regular ? 0 : 6  // both 3x3 convs of res3..res5
        #expect(ops["DeformConv", default: 0] == deformable)
        // Every other conv, plus one offset conv per deformable layer and one mask conv per mdconv.
        #expect(ops["Conv", default: 0] == 1 + 8 - deformable + 2 + deformable + (conv == .mdconv ? deformable : 0))
        #expect(ops["Sigmoid", default: 0] == (conv == .mdconv ? deformable : 0))
        #expect(ops["Add"] == 4)
        #expect(ops["Relu"] == 1 + 4 * 2)
        #expect(ops["MaxPool"] == 1)
        #expect(ops["BatchNormalization"] == nil)  // folded into the convs
        for node in model.graph.node where node.opType == "DeformConv" {
            #expect(node.input.count == (conv == .mdconv ? 5 : 4))
        }
        #expect(model.opsetImport.map(\.version) == [19])
    }

    @Test func namesAreUniqueAndDefinedBeforeUse() throws {
        let resnet = try ResNet(spec: tinySpec(conv: .mdconv, norm: .groupNorm(groups: 2)), prefix: "backbone.")
        let model = try backboneModel(resnet, outputs: ["res2", "res3", "res4", "res5"])
        let initializers = model.graph.initializer.map(\.name)
        #expect(Set(initializers).count == initializers.count)
        var defined = Set(initializers + model.graph.input.map(\.name))
        for node in model.graph.node {
            for input in node.input where !input.isEmpty { #expect(defined.contains(input), "\(node.name) reads \(input)") }
            for output in node.output { #expect(defined.insert(output).inserted, "\(output) written twice") }
        }
        #expect(Set(model.graph.node.map(\.name)).count == model.graph.node.count)
        #expect(model.graph.output.map(\.name) == ["res2", "res3", "res4", "res5"])
        // Group norm: InstanceNormalization per norm layer (stem + 2 per block + the 2 shortcuts).
        #expect(opCounts(model)["InstanceNormalization"] == 1 + 8 + 2)
    }

    @Test func dynamicSizesAndRoundTrip() throws {
        let resnet = try ResNet(spec: tinySpec(conv: .dconv, norm: .frozenBatchNorm), prefix: "backbone.")
        let model = try backboneModel(resnet)
        let input = model.graph.input[0].type.tensorType.shape.dim
        #expect(input.map(\.dimParam) == ["batch", "", "height", "width"])
        #expect(input[1].dimValue == 3)
        #expect(model.graph.output[1].type.tensorType.shape.dim[1].dimValue == 16)
        let data = try serializedModel(model)
        let back = try Onnx_ModelProto(serializedBytes: data)
        #expect(back == model)
        // The weights are the model's, folded: a conv's initializer has its parameter's shape.
        let stem = try #require(back.graph.initializer.first { $0.name == "backbone.conv1.weight" })
        #expect(stem.dims == [8, 3, 7, 7])
        #expect(stem.rawData.count == 8 * 3 * 7 * 7 * 4)
    }

    @Test func rpnPartAddsTheHead() throws {
        let detector = try GeneralizedRCNN(spec: tinyDetectorSpec(conv: .mdconv, extractor: .roialign))
        let backbone = try detectorModel(detector, part: .backbone)
        let rpn = try detectorModel(detector, part: .rpn)
        #expect(rpn.graph.output.map(\.name) == ["res4", "res5", rpnLogitsName, rpnDeltasName])
        #expect(opCounts(rpn)["Conv", default: 0] == opCounts(backbone)["Conv", default: 0] + 3)
        #expect(opCounts(rpn)["Relu", default: 0] == opCounts(backbone)["Relu", default: 0] + 1)
        let anchors = detector.spec.rpn.anchors.anchorsPerCell
        #expect(rpn.graph.output[2].type.tensorType.shape.dim[1].dimValue == Int64(anchors))
        #expect(rpn.graph.output[3].type.tensorType.shape.dim[1].dimValue == Int64(4 * anchors))

        let proposals = try detectorModel(detector, part: .proposals)
        #expect(proposals.graph.output.map(\.name) == ["res4", "res5", rpnLogitsName, rpnDeltasName, proposalsName, proposalLogitsName])
        let ops = opCounts(proposals)
        #expect(ops["TopK"] == 1 && ops["NonMaxSuppression"] == 1 && ops["Exp"] == 2)
        var defined = Set(proposals.graph.initializer.map(\.name) + proposals.graph.input.map(\.name))
        for node in proposals.graph.node {
            for input in node.input where !input.isEmpty { #expect(defined.contains(input), "\(node.name) reads \(input)") }
            for output in node.output { #expect(defined.insert(output).inserted, "\(output) written twice") }
        }
        // The cell anchors are the generator's, (x1, y1, x2, y2) per anchor.
        let cell = try #require(proposals.graph.initializer.first { $0.name == "proposals.cell_anchors" })
        #expect(cell.dims == [1, Int64(anchors), 4])

        // The whole detector (roialign): the box head after the proposals; labels are int64.
        let whole = try detectorModel(detector, part: .detector)
        #expect(whole.graph.output.suffix(3).map(\.name) == [detectionBoxesName, detectionScoresName, detectionLabelsName])
        #expect(whole.graph.output.last?.type.tensorType.elemType == Int32(Onnx_TensorProto.DataType.int64.rawValue))
        let roiAlign = try #require(whole.graph.node.first { $0.opType == "RoiAlign" })
        let mode = try #require(roiAlign.attribute.first { $0.name == "coordinate_transformation_mode" })
        #expect(String(decoding: mode.s, as: UTF8.self) == "half_pixel")  // our aligned RoIAlign
        #expect(opCounts(whole)["NonMaxSuppression"] == 2 && opCounts(whole)["Gemm"] == 4)
    }

    /// Every RoI extractor is exported from standard operators: roipool as MaxRoiPool, (m)dpool as
    /// RoiAlign, the offset fcs and one GridSample (border padding, align_corners 0).
    @Test(arguments: RoIExtractorKind.allCases)
    func roiExtractorsAreExported(_ kind: RoIExtractorKind) throws {
        let detector = try GeneralizedRCNN(spec: tinyDetectorSpec(conv: .regular, extractor: kind))
        let model = try detectorModel(detector, part: .detector)
        let ops = opCounts(model)
        let head = detector.boxHead.extractor
        switch kind {
        case .roipool:
            #expect(ops["MaxRoiPool"] == 1 && ops["RoiAlign"] == nil && ops["GridSample"] == nil)
        case .roialign:
            #expect(ops["RoiAlign"] == 1 && ops["GridSample"] == nil)
        case .dpool, .mdpool:
            #expect(ops["RoiAlign"] == 1 && ops["GridSample"] == 1)
            #expect(ops["Gemm"] == 4 + (kind == .dpool ? 1 : 3))
            #expect(ops["Sigmoid", default: 0] == (kind == .mdpool ? 1 : 0))
            let sample = try #require(model.graph.node.first { $0.opType == "GridSample" })
            let padding = try #require(sample.attribute.first { $0.name == "padding_mode" })
            #expect(String(decoding: padding.s, as: UTF8.self) == "border")
            #expect(sample.attribute.first { $0.name == "align_corners" }?.i == 0)
            // The bins' sample grid: [1, P, gh, 1, 1] row fractions (iy + 0.5) / gh.
            let rows = try #require(model.graph.initializer.first { $0.name == "detections.sample_row" })
            #expect(rows.dims == [1, 1, Int64(head.samplingRatio), 1, 1])
        }
    }

    @Test func adaptiveDeformablePoolingIsRefused() throws {
        var spec = tinyDetectorSpec(conv: .regular, extractor: .mdpool)
        spec.roiHead.samplingRatio = 0
        let detector = try GeneralizedRCNN(spec: spec)
        #expect(throws: ExportError.self) { try detectorModel(detector, part: .detector) }
        _ = try detectorModel(detector, part: .proposals)
    }

    @Test func unknownOutputIsAnError() throws {
        let resnet = try ResNet(spec: tinySpec(conv: .regular, norm: .frozenBatchNorm), prefix: "backbone.")
        #expect(throws: ExportError.self) { try backboneModel(resnet, outputs: ["res6"]) }
    }
}
