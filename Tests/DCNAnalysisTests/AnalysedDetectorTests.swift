// How dcn-vis sets a trained detector up for the analysis, and the cells a figure analyses.
import DCNAnalysis
import DCNConfig
import DCNData
import DCNModels
import DCNTensor
import Foundation
import TestSupport
import Testing

@Suite struct AnalysedDetector {
    /// A regular network is analysed with res5 as zero-offset DCNv1 and RoIAlign as zero-offset
    /// deformable pooling; the checkpoint may lack exactly those offset branches.
    @Test func aRegularNetworkIsAnalysedWithZeroOffsets() {
        var trained = ExperimentConfig()
        trained.backbone.deformableStages = []
        trained.roiHead.extractor = .roialign
        let analysed = AnalysedConfig(trained)
        #expect(analysed.regular && analysed.alignedPooling)
        #expect(analysed.config.backbone.deformableStages == [5] && analysed.config.backbone.convType == .dconv)
        #expect(analysed.config.roiHead.extractor == .dpool)
        #expect(analysed.mayBeMissing("backbone.layer4.0.conv2_offset.weight"))
        #expect(analysed.mayBeMissing("roi_heads.pooler.offset_fc1.weight"))
        #expect(!analysed.mayBeMissing("backbone.layer4.0.conv2.weight"))
    }

    /// A deformable network with deformable pooling is analysed as trained: every parameter must load.
    @Test func aDeformableNetworkIsAnalysedAsTrained() {
        var trained = ExperimentConfig()
        trained.backbone.deformableStages = [3, 4, 5]
        trained.backbone.convType = .mdconv
        trained.roiHead.extractor = .mdpool
        let analysed = AnalysedConfig(trained)
        #expect(!analysed.regular && !analysed.alignedPooling)
        #expect(analysed.config == trained)
        #expect(!analysed.mayBeMissing("backbone.layer4.0.conv2_offset.weight") && !analysed.mayBeMissing("roi_heads.pooler.offset_fc1.weight"))
    }

    /// A regular classifier is analysed with res3-res5 as zero-offset DCNv1; a deformable one as trained.
    @Test func aRegularClassifierIsAnalysedWithZeroOffsetsInRes3ToRes5() {
        var trained = ExperimentConfig()
        trained.model.task = .classification
        let analysed = AnalysedConfig(classifier: trained)
        #expect(analysed.regular && !analysed.alignedPooling)
        #expect(analysed.config.backbone.deformableStages == [3, 4, 5] && analysed.config.backbone.convType == .dconv)
        #expect(analysed.mayBeMissing("layer3.0.conv2_offset.weight") && !analysed.mayBeMissing("layer3.0.conv2.weight"))
        trained.backbone.deformableStages = [4, 5]
        trained.backbone.convType = .mdconv
        let deformable = AnalysedConfig(classifier: trained)
        #expect(!deformable.regular && deformable.config == trained && !deformable.mayBeMissing("layer4.0.conv2_offset.weight"))
    }

    /// The training split's shape sizes come from the set's geometry.json; without one the error names the file.
    @Test func theTrainingShapeSizesAreTheSetsGeometry() throws {
        let root = try temporaryFolder("shape-sizes")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(throws: ClassifierSetError.self) { try trainingShapeSizes(root: root) }
        do { _ = try trainingShapeSizes(root: root) } catch { #expect("\(error)".hasPrefix(root + "/geometry.json: expected the training split's shape sizes")) }
        let geometry = ["train": ShapeGeometry.training(size: 0.3...0.4), "val": ShapeGeometry.shifted]
        try JSONEncoder().encode(geometry).write(to: URL(fileURLWithPath: root + "/geometry.json"))
        #expect(try trainingShapeSizes(root: root) == 0.3...0.4)
    }

    /// Figure 1: each automatic node at the given size; Figure 5: the large object's node at each size.
    @Test func figureCellsFollowTheLayout() {
        let nodes = ["small", "large", "background"].enumerated().map { k, name in
            AutomaticNode(name: name, x: Double(10 * k), y: 5, box: (0, 0, Double(20 * (k + 1)), 30))
        }
        let figure1 = figureCells(nodes, sizes: nil, size: 400)
        #expect(figure1.map(\.caption) == ["small", "large", "background"] && figure1.allSatisfy { $0.size == 400 })
        let figure5 = figureCells(nodes, sizes: [200, 800], size: 400)
        #expect(figure5.map(\.caption) == ["200 px", "800 px"] && figure5.map(\.size) == [200, 800])
        #expect(figure5.allSatisfy { $0.node.name == "large" })
        // The request scales the node into the resized image.
        guard case let .point(stage, x, y) = nodeRequest(nodes[1], stage: "res4", scale: 2) else { Issue.record("not a point"); return }
        #expect(stage == "res4" && x == 20 && y == 10)
        guard case let .roi(box) = nodeRequest(nodes[1], stage: "head", scale: 0.5) else { Issue.record("not a RoI"); return }
        #expect(box == Box(0, 0, 20, 15))
    }
}
