// How a trained detector (or classifier) is set up for the analysis, and which nodes a figure
// analyses: the decisions dcn-vis used to make in its command code.
import DCNConfig
import DCNModels
import DCNTensor

/// The config a trained detector is analysed with. A regular network (no deformable res5) has
/// res5's 3x3 convolutions analysed as DCNv1 layers with zero offsets, and RoIAlign as deformable
/// RoI pooling with zero offsets: the same functions, so that its sampling locations and bins (the
/// regular grids) have gradients too.
public struct AnalysedConfig {
    /// The config the analysed detector is built from.
    public var config: ExperimentConfig
    /// The trained network has no deformable res5: res5 is analysed with zero offsets.
    public var regular: Bool
    /// The trained RoI head pools with RoIAlign: analysed as deformable RoI pooling with zero offsets.
    public var alignedPooling: Bool

    public init(_ trained: ExperimentConfig) {
        var config = trained
        regular = !config.backbone.deformableStages.contains(5) || config.backbone.convType == .regular
        if regular {
            config.backbone.deformableStages = [5]
            config.backbone.convType = .dconv
        }
        alignedPooling = config.roiHead.extractor == .roialign
        if alignedPooling { config.roiHead.extractor = .dpool }
        self.config = config
    }

    /// A classifier's: a regular network (regular convolutions, or no deformable stage) has res3-res5
    /// analysed as zero-offset DCNv1 layers (the regular kernel's values).
    public init(classifier trained: ExperimentConfig) {
        var config = trained
        regular = config.backbone.convType == .regular || config.backbone.deformableStages.isEmpty
        if regular {
            config.backbone.convType = .dconv
            config.backbone.deformableStages = [3, 4, 5]
        }
        alignedPooling = false
        self.config = config
    }

    /// The analysed network's parameters the trained checkpoint lacks: the zero offsets' branches.
    public var mayBeMissing: @Sendable (String) -> Bool {
        let regular = regular, alignedPooling = alignedPooling
        return { (regular && $0.contains("_offset.")) || (alignedPooling && $0.contains("pooler.offset_fc")) }
    }
}

/// One picture triple of a figure: its caption, the shorter side (nil: the config's) and the node.
public struct FigureCell {
    public var caption: String
    public var size: Int?
    public var node: AutomaticNode
}

/// The cells of one model's row for an image with automatic nodes `nodes`: Figure 5's (`sizes`
/// given) the large object's node at each shorter side; else Figure 1's, each node at `size`.
public func figureCells(_ nodes: [AutomaticNode], sizes: [Int]?, size: Int?) -> [FigureCell] {
    if let sizes {
        return sizes.map { FigureCell(caption: "\($0) px", size: $0, node: nodes.first { $0.name == "large" } ?? nodes[0]) }
    }
    return nodes.map { FigureCell(caption: $0.name, size: size, node: $0) }
}

/// The request of an automatic node on an image resized by `scale` (resized pixels per original
/// pixel): the RoI head's 2fc output on its box for `stage` "head", else the position of the
/// backbone stage nearest to its point.
public func nodeRequest(_ node: AutomaticNode, stage: String, scale s: Double) -> NodeRequest {
    stage == "head"
        ? .roi(Box(Float(node.box.x1 * s), Float(node.box.y1 * s), Float(node.box.x2 * s), Float(node.box.y2 * s)))
        : .point(stage: stage, x: node.x * s, y: node.y * s)
}
