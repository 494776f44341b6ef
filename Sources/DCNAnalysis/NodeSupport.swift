// The three analyses of one node on one image: the image as the network sees it, the node, its
// gradients and its saliency region (NodePictures.swift draws them).
import DCNData
import DCNModels
import DCNTensor
import Foundation

/// An image as the network sees it: resized (shorter side `size`, longer at most `maxSize`),
/// normalised, padded to a multiple of 32.
public struct AnalysisImage {
    /// The resized image (no padding).
    public var image: RGBImage
    public var input: Tensor
    /// Resized pixels per original pixel.
    public var scale: Double

    public init(_ original: RGBImage, size: Int, maxSize: Int, normalization: PixelNormalization = .imageNet) throws {
        let resize = try ResizeShortestEdge(shortEdgeLengths: [size], maxSize: maxSize)
        let transform = resize.testTransform(for: ImageSize(height: original.height, width: original.width))
        image = transform.output == transform.input ? original : transform.apply(image: original)
        scale = Double(image.width) / Double(original.width)
        input = try padAndStack([normalization.tensor(from: image)], sizeDivisibility: 32).0
    }

    /// An image the network takes as it is (a classifier's centre crop): scale 1, no resizing.
    public init(prepared image: RGBImage, normalization: PixelNormalization = .imageNet) throws {
        self.image = image
        scale = 1
        input = try padAndStack([normalization.tensor(from: image)], sizeDivisibility: 1).0
    }

    /// The input with the pixels where `keep` is false set to the mean pixel (0 after normalisation).
    public func masked(_ keep: [Bool]) -> Tensor {
        var x = input
        let h = input.dim(2), w = input.dim(3), plane = h * w
        for y in 0..<image.height {
            for x0 in 0..<image.width where !keep[y * image.width + x0] {
                for c in 0..<3 { x.data[c * plane + y * w + x0] = 0 }
            }
        }
        return x
    }
}

/// The three analyses of one node.
public struct NodeSupport {
    public var node: SupportNode
    /// The node's point in the resized image's pixels.
    public var x: Double, y: Double
    public var gradients: NodeGradients
    public var saliency: SaliencyRegion?
}

/// Which node to analyse, in the resized image's pixels.
public enum NodeRequest {
    /// The position of `stage` nearest to (x, y).
    case point(stage: String, x: Double, y: Double)
    /// The RoI head's 2fc output for this box.
    case roi(Box)
}

extension BackboneSupport {
    /// The node `request` names, its gradients and, when `errorBound` is set, its saliency region
    /// over the image (cells of `patch` pixels).
    public func analyse(_ image: AnalysisImage, _ request: NodeRequest, errorBound: Double?, patch: Int = 8) throws -> NodeSupport {
        let node: SupportNode, x: Double, y: Double
        switch request {
        case let .point(stage, px, py):
            let size = try featureSize(image.input, stage: stage)
            let p = Self.position(x: px, y: py, height: image.input.dim(2), width: image.input.dim(3), featureHeight: size.height, featureWidth: size.width)
            node = .unit(stage: stage, row: p.row, column: p.column)
            (x, y) = (px, py)
        case let .roi(box):
            node = .roi(box)
            (x, y) = (Double(box.x1 + box.x2) / 2, Double(box.y1 + box.y2) / 2)
        }
        let gradients = try self.gradients(image.input, node: node)
        var saliency: SaliencyRegion? = nil
        if let errorBound {
            // The searched area is the image (not the padding); importance is the ERF there.
            let h = image.image.height, w = image.image.width
            var importance = [Float](repeating: 0, count: h * w)
            for yy in 0..<h { for xx in 0..<w { importance[yy * w + xx] = gradients.receptiveField[yy * gradients.width + xx] } }
            saliency = try errorBoundedSaliency(height: h, width: w, patch: patch, importance: importance, errorBound: errorBound,
                                                fullResponse: gradients.response) { keep in
                try response(image.masked(keep), node: node)
            }
        }
        return NodeSupport(node: node, x: x, y: y, gradients: gradients, saliency: saliency)
    }
}
