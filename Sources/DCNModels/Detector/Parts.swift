// The contract of a detector's heads (detectron2's ROIHeads and its branches): a RoI branch
// (box, keypoints, ...) reads named maps of the sampled RoIs, a dense head (semantic
// segmentation) reads named backbone maps of the whole image. Each declares its parameters, its
// losses, its training pass, what it adds to a detection and its cost; the detector composes
// them and sums their feature gradients by name. Adding a head is its own file, its config
// section mapped onto its spec (DCNConfig/PartSpecs.swift) and one line in the model composition
// (`docs/architecture.md`, "Adding a head").
import DCNOps
import DCNTensor

/// Channels and stride (input pixels per pixel) of a named feature map (detectron2's ShapeSpec).
public struct ShapeSpec: Sendable, Equatable {
    public var channels: Int
    public var stride: Int
    public init(channels: Int, stride: Int) { self.channels = channels; self.stride = stride }
}

/// The losses of one part, drawn in one panel of the training curves.
public struct LossGroup: Sendable, Equatable {
    /// The panel's title ("RPN losses").
    public var title: String
    /// The loss names, in reporting order.
    public var names: [String]
    public init(title: String, names: [String]) { self.title = title; self.names = names }
}

extension FeatureMaps {
    /// Adds `other`'s maps into these, summing the maps of the same name.
    public mutating func accumulate(_ other: FeatureMaps) {
        for (name, gradient) in other.maps {
            if maps[name] == nil { maps[name] = gradient } else { maps[name]!.add(gradient) }
        }
    }

    /// Removes and returns the maps named in `names`.
    public mutating func take(_ names: some Sequence<String>) -> FeatureMaps {
        var taken = FeatureMaps()
        for name in names { taken[name] = maps.removeValue(forKey: name) }
        return taken
    }
}

// MARK: - Every head

/// What every head of a detector declares.
public protocol DetectorHead: AnyObject {
    /// The name of its phases in `dcn-bench train-step` ("head", ...).
    var phase: String { get }
    /// Its parameters, grouped as `--summary` reports them, in the order the model lists them.
    var parameterGroups: [(name: String, parameters: [Parameter])] { get }
    /// Its losses (empty names: none).
    var losses: LossGroup { get }
    /// What it adds to each detection (nil: nothing, e.g. training-only branches).
    var addition: DetectionAddition? { get }
    /// Refuses training targets it cannot learn from (before any forward pass).
    func validate(_ targets: [Instances]) throws
}

extension DetectorHead {
    public var parameters: [Parameter] { parameterGroups.flatMap(\.parameters) }
    public var addition: DetectionAddition? { nil }
    public func validate(_ targets: [Instances]) throws {}
}

// MARK: - RoI branches

/// What a RoI branch reads in training.
public struct RoIBranchInput {
    /// The normalised, padded batch `[N, 3, H, W]`.
    public var images: Tensor
    public var targets: [Instances]
    /// The RoIs sampled for this step, with their targets.
    public var sampled: SampledRoIs
    /// The backbone's maps and the maps earlier branches published, by name.
    public var features: FeatureMaps
}

/// A per-RoI branch of the RoI heads (detectron2's box / mask / keypoint heads).
public protocol RoIBranch: DetectorHead {
    /// The training pass: its output is the maps it publishes for later branches (by name), its
    /// backward takes their gradients (absent names: no later branch used them) and returns the
    /// gradients of the maps it read, by name. Image n's random choices draw from `rngs[n]`.
    func trainingPass(_ input: RoIBranchInput, rngs: inout [SeededGenerator], _ ws: Workspace) throws
        -> TrainingPass<FeatureMaps, FeatureMaps, FeatureMaps>
    /// Inference: adds its `addition` to the kept detections of each image (boxes in the pixels of
    /// the images `features` were computed from).
    func annotate(_ detections: inout [[Detection]], features: FeatureMaps, _ ws: Workspace) throws
    /// Named multiply-adds at test time (`--summary`): `shapes` of the named maps, `proposals` RoIs
    /// per image into the box head, `detections` kept per image.
    func cost(shapes: [String: [Int]], proposals: Int, detections: Int) throws -> [(String, Int)]
}

extension RoIBranch {
    public func annotate(_ detections: inout [[Detection]], features: FeatureMaps, _ ws: Workspace) throws {}
    public func cost(shapes: [String: [Int]], proposals: Int, detections: Int) throws -> [(String, Int)] { [] }
}

/// What a branch is built from: the detector's backbone and box head (a branch may run them, as
/// a branch that reruns them on patches does), the class count and the shapes of the maps it may read.
public struct RoIBranchContext {
    public let backbone: ResNet
    public let box: BoxHead
    public let classes: Int
    /// The backbone's outputs and the maps the box head publishes.
    public let shapes: [String: ShapeSpec]
}

/// A branch's settings: builds the branch. The config mapping lists the enabled branches' specs in
/// the order their parameters are listed (`DetectorSpec.branches`).
public protocol RoIBranchSpec: Sendable {
    func build(_ context: RoIBranchContext, rng: inout SeededGenerator) throws -> RoIBranch
    func isEqual(to other: RoIBranchSpec) -> Bool
}

extension RoIBranchSpec where Self: Equatable {
    public func isEqual(to other: RoIBranchSpec) -> Bool { (other as? Self) == self }
}

// MARK: - Dense heads

/// What a dense head reads in training.
public struct DenseHeadInput {
    /// The backbone's maps, by name.
    public var features: FeatureMaps
    /// The padded batch's height and width in pixels (the size of its per-pixel outputs).
    public var height: Int, width: Int
    public var targets: [Instances]
    /// Per-pixel classes of the padded batch, N x height x width row-major, `voidLabel` where no
    /// class counts (VOC's boundaries, the padding); nil when the data has none.
    public var pixelLabels: [UInt8]?

    public init(features: FeatureMaps, height: Int, width: Int, targets: [Instances], pixelLabels: [UInt8]?) {
        self.features = features; self.height = height; self.width = width; self.targets = targets; self.pixelLabels = pixelLabels
    }
}

/// A head on whole-image backbone maps (semantic segmentation: DeepLab's 1x1 convs on res5,
/// bilinear upsampling, per-pixel softmax). Training: its losses and the gradients of the backbone
/// maps it read, by name, which the model sums with the other parts'. Inference: per-class scores
/// of every pixel.
public protocol DenseHead: DetectorHead {
    /// The backbone maps it reads.
    var inputFeatures: [String] { get }
    func trainingPass(_ input: DenseHeadInput, _ ws: Workspace) throws -> TrainingPass<Void, Void, FeatureMaps>
    /// Scores [N, K, height, width] of every pixel of a `height` x `width` output whose pixel (y, x)
    /// lies at input pixel ((y + 0.5) * scale.y - 0.5, ...) (scale nil: the padded input itself).
    func scores(_ features: FeatureMaps, height: Int, width: Int, inputScale: (y: Double, x: Double)?, _ ws: Workspace) throws -> Tensor
    /// Named multiply-adds at test time for the backbone map `shapes`.
    func cost(shapes: [String: [Int]]) throws -> [(String, Int)]
}

/// A dense head's settings: builds the head from the backbone's output shapes and the class count.
public protocol DenseHeadSpec: Sendable {
    func build(shapes: [String: ShapeSpec], classes: Int, rng: inout SeededGenerator) throws -> DenseHead
    func isEqual(to other: DenseHeadSpec) -> Bool
}

extension DenseHeadSpec where Self: Equatable {
    public func isEqual(to other: DenseHeadSpec) -> Bool { (other as? Self) == self }
}
