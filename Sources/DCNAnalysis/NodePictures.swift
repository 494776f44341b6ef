// A node's pictures (drawn by DCNPictures/SupportPictures.swift) and the numbers beside them.
import DCNData
import DCNPictures
import Foundation

extension NodeSupport {
    /// Where the node is drawn: its point, and an RoI node's box.
    public var mark: NodeMark {
        if case let .roi(box) = node { return NodeMark(x: x, y: y, box: box) }
        return NodeMark(x: x, y: y)
    }
}

/// The effective receptive field over the image, as a heat map.
public func receptiveFieldPicture(_ support: NodeSupport, on image: RGBImage) -> RGBImage {
    receptiveFieldPicture(support.gradients.receptiveField, rowLength: support.gradients.width, mark: support.mark, on: image)
}

/// The effective sampling locations of the layers whose names `include` accepts, as dots.
public func samplingPicture(_ support: NodeSupport, on image: RGBImage, include: (String) -> Bool, minimumShare: Double = 0.01) -> RGBImage {
    samplingPicture(support.gradients.samples.filter { include($0.layer) }.map { WeightedPoint(x: $0.x, y: $0.y, weight: $0.weight) },
                    mark: support.mark, on: image, minimumShare: minimumShare)
}

/// The saliency region (none: the image as it is), outlined.
public func saliencyPicture(_ support: NodeSupport, on image: RGBImage) -> RGBImage {
    saliencyPicture(support.saliency?.mask, width: support.saliency?.width ?? 0, height: support.saliency?.height ?? 0, mark: support.mark, on: image)
}

/// The picture of each of `tools` (sampling, erf, saliency; in the order given) for a node on
/// `image` (the resized image the network saw), and the sidecar's entries for them:
/// `sampling_points`, `receptive_field` (row-major values) and `saliency` (with the mask as
/// row runs). `saliency` needs the node's saliency region.
public func nodePictures(_ support: NodeSupport, on image: RGBImage, tools: [String], stage: String) -> (pictures: [RGBImage], numbers: [String: Any]) {
    var numbers: [String: Any] = [:], pictures: [RGBImage] = []
    for tool in tools {
        switch tool {
        case "erf":
            pictures.append(receptiveFieldPicture(support, on: image))
            let g = support.gradients
            numbers["receptive_field"] = ["height": image.height, "width": image.width, "note": "|d ||f|| / d pixel| summed over RGB, row-major",
                                          "values": (0..<image.height).flatMap { y in (0..<image.width).map { Double(g.receptiveField[y * g.width + $0]) } }]
        case "sampling":
            pictures.append(samplingPicture(support, on: image, include: shownLayers(support.node, stage: stage)))
            numbers["sampling_points"] = support.gradients.samples.map { ["layer": $0.layer, "x": $0.x, "y": $0.y, "weight": $0.weight] }
        default:
            pictures.append(saliencyPicture(support, on: image))
            let r = support.saliency!
            numbers["saliency"] = ["error_bound": r.errorBound, "area_fraction": r.areaFraction, "error": r.error,
                                   "curve": r.curve.map { ["area_fraction": $0.areaFraction, "error": $0.error] },
                                   "mask_row_runs": runLengths(r.mask)]
        }
    }
    return (pictures, numbers)
}
