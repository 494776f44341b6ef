// `dcn-bench detect` splits onnxruntime's profile into backbone, RPN + proposals and RoI heads by
// the exported nodes' names (`exportedNodePart`): every node of an exported detector must fall in
// one of the three, in the graph's order.
import DCNBench
import DCNExport
import DCNModels
import Testing

@Suite struct DetectBenchPartsTests {
    @Test(arguments: [(ConvKind.regular, RoIExtractorKind.roialign), (.mdconv, .mdpool), (.dconv, .roipool), (.mdconv, .dpool)])
    func everyExportedNodeHasAPart(conv: ConvKind, extractor: RoIExtractorKind) throws {
        let detector = try GeneralizedRCNN(spec: tinyDetectorSpec(conv: conv, extractor: extractor))
        let nodes = try detectorModel(detector, part: .detector).graph.node
        let parts = nodes.map { exportedNodePart($0.name) }
        let unnamed = nodes.filter { exportedNodePart($0.name) == 3 }.map(\.name)
        #expect(unnamed.isEmpty, "nodes of no part: \(unnamed)")
        // The backbone, then the RPN and its proposals, then the RoI heads (the outputs' Identity
        // nodes, "res4", "res5" and the RPN's, sit where their values are ready).
        for p in 0..<3 { #expect(parts.contains(p), "no node of \(detectParts[p])") }
        let first = (0..<3).map { p in parts.firstIndex(of: p)! }, last = (0..<3).map { p in parts.lastIndex(of: p)! }
        #expect(first[0] < first[1] && first[1] < first[2])
        #expect(last[0] < first[2] && last[1] < first[2])
    }

    /// onnxruntime's renamed nodes keep the part of the node they came from.
    @Test func fusedAndReorderedNames() {
        #expect(exportedNodePart("fused detections.fc1/Gemm") == 2)
        #expect(exportedNodePart("rpn.hidden_nchwc") == 1)
        #expect(exportedNodePart("backbone.layer1.0.conv1/Conv") == 0)
        #expect(exportedNodePart("ReorderOutput_token_189") == 3)
    }
}
