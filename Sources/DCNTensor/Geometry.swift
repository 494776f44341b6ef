// Image-space geometry shared by the data pipeline and the models: boxes and image sizes.

/// An axis-aligned box (x1, y1, x2, y2) in image pixels, without detectron2's legacy +1.
public struct Box: Sendable, Equatable, Hashable, Codable {
    public var x1: Float, y1: Float, x2: Float, y2: Float

    public init(_ x1: Float, _ y1: Float, _ x2: Float, _ y2: Float) {
        self.x1 = x1; self.y1 = y1; self.x2 = x2; self.y2 = y2
    }

    /// From [x1, y1, x2, y2].
    public init(_ array: [Float]) throws {
        guard array.count == 4 else { throw ShapeError("Box: expected 4 numbers [x1, y1, x2, y2], got \(array.count)") }
        self.init(array[0], array[1], array[2], array[3])
    }

    /// From a COCO [x, y, width, height] box.
    public init(xywh: [Float]) throws {
        guard xywh.count == 4 else { throw ShapeError("Box: expected 4 numbers [x, y, w, h], got \(xywh.count)") }
        self.init(xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1] + xywh[3])
    }

    public var array: [Float] { [x1, y1, x2, y2] }
    public var width: Float { x2 - x1 }
    public var height: Float { y2 - y1 }
    public var area: Float { max(0, width) * max(0, height) }

    /// The box clipped to [0, width] x [0, height].
    public func clipped(width: Float, height: Float) -> Box {
        Box(min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width), min(max(y2, 0), height))
    }

    public func clipped(width: Int, height: Int) -> Box { clipped(width: Float(width), height: Float(height)) }

    /// Area of the overlap with `b` (0 when they do not overlap).
    public func intersection(_ b: Box) -> Float {
        let w = min(x2, b.x2) - max(x1, b.x1), h = min(y2, b.y2) - max(y1, b.y1)
        return w > 0 && h > 0 ? w * h : 0
    }

    /// Intersection over union (0 for empty boxes).
    public func iou(_ b: Box) -> Float {
        let inter = intersection(b)
        let union = area + b.area - inter
        return union > 0 ? inter / union : 0
    }
}

/// Height and width of an image, in pixels.
public struct ImageSize: Sendable, Equatable, Hashable, Codable {
    public var height: Int
    public var width: Int
    public init(height: Int, width: Int) { self.height = height; self.width = width }
}

/// The annotated objects of one image, from the loader to the losses: boxes with their labels
/// 1...C, their masks as polygons, and ignore regions (crowd, difficult) that count neither as
/// objects nor as background.
public struct Instances: Sendable, Equatable {
    public var boxes: [Box]
    public var labels: [Int]
    public var ignore: [Box]
    /// `polygons[i]`: the parts of object i's mask, each a flat [x0, y0, x1, y1, ...] list in the
    /// image's pixels (the same coordinates as `boxes`); empty when the data has no masks.
    public var polygons: [[[Float]]]
    public init(boxes: [Box], labels: [Int], ignore: [Box] = [], polygons: [[[Float]]] = []) {
        self.boxes = boxes; self.labels = labels; self.ignore = ignore; self.polygons = polygons
    }

    /// True when every object has a mask (at least one polygon part).
    public var hasMasks: Bool { polygons.count == boxes.count && polygons.allSatisfy { !$0.isEmpty } }
}
