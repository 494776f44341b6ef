// What the detector returns per object: the box head's box, score and label, and what other RoI
// branches add (`DetectionAddition`). Evaluation, merging, drawing and export read the additions
// a model declares, never a particular head.
import DCNAnnotations
import DCNTensor

/// Something a RoI branch adds to each detection.
public enum DetectionAddition: Sendable, Equatable {
    /// A `size` x `size` grid of mask probabilities over the box (`Detection.mask`).
    case mask(size: Int)
}

/// One detection in the input image's pixels.
public struct Detection: Sendable, Equatable {
    public var box: Box
    public var score: Float
    /// 1...C
    public var label: Int
    /// `.mask`: the mask's probabilities over the box, M x M row-major (nil without a mask branch).
    public var mask: [Float]?

    public init(box: Box, score: Float, label: Int, mask: [Float]? = nil) {
        self.box = box; self.score = score; self.label = label; self.mask = mask
    }

    /// Takes every branch's additions from `other` (the same object predicted on another view),
    /// keeping this detection's box, score and label.
    public mutating func takeAdditions(from other: Detection) {
        mask = other.mask
    }
}

/// A detection in the original image: box, score and label, and for Mask R-CNN its mask pasted
/// into the image (COCO run lengths).
public struct ImageDetection: Sendable {
    public var detection: Detection
    public var mask: RLE?

    public init(detection: Detection, mask: RLE? = nil) { self.detection = detection; self.mask = mask }
}
