// A dense float32 tensor: a shape and a flat row-major (NCHW for images) array.

/// A shape or parameter mistake found before any arithmetic: what was expected and what came.
public struct ShapeError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Shapes or parameters that do not fit.
        case shape
        /// NaN or infinite values where an op needs finite ones (in training: the weights diverged).
        case nonFinite
    }
    public let message: String
    public let kind: Kind
    public init(_ message: String, kind: Kind = .shape) { self.message = message; self.kind = kind }
    public var description: String { message }
}

/// Throws `ShapeError(message())` unless `condition` holds.
@inlinable
public func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw ShapeError(message()) }
}

/// Throws `ShapeError(message(), kind: .nonFinite)` unless `condition` holds.
@inlinable
public func requireFinite(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw ShapeError(message(), kind: .nonFinite) }
}

/// A dense, row-major float32 tensor. Value semantics (copy on write through `Array`).
public struct Tensor: Sendable, Equatable, CustomStringConvertible {
    /// Sizes of each dimension, outermost first (NCHW for feature maps).
    public private(set) var shape: [Int]
    /// The elements in row-major order; `data.count == shape.product`.
    public var data: [Float]

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    /// A tensor filled with `value`.
    public init(repeating value: Float, shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: value, count: shape.reduce(1, *))
    }

    /// A tensor whose every element `body` writes, with no zero-fill first: for an op's output
    /// that it overwrites whole. `body` must write all `shape.product` elements.
    public init(shape: [Int], everyElementWrittenBy body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        self.shape = shape
        let count = shape.reduce(1, *)
        self.data = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            body(buffer)
            initialized = count
        }
    }

    /// Wraps `data` with `shape`; throws if the element counts differ.
    public init(shape: [Int], data: [Float]) throws {
        try require(shape.allSatisfy { $0 >= 0 }, "negative size in shape \(shape)")
        try require(shape.reduce(1, *) == data.count,
                    "shape \(shape) holds \(shape.reduce(1, *)) elements, data has \(data.count)")
        self.shape = shape
        self.data = data
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }
    public var description: String { "Tensor\(shape)" }

    /// Size of dimension `i`; negative `i` counts from the end.
    @inlinable public func dim(_ i: Int) -> Int { shape[i < 0 ? shape.count + i : i] }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor(shape: newShape, data: data)
    }

    /// Sets every element to zero, keeping the shape.
    public mutating func zero() {
        data.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// `self += other`, elementwise over identical shapes.
    public mutating func add(_ other: Tensor) {
        precondition(other.shape == shape, "add: shape \(other.shape) != \(shape)")
        data.withUnsafeMutableBufferPointer { d in
            other.data.withUnsafeBufferPointer { o in
                let sum = DisjointWrites(d.baseAddress!), addend = SharedReads(o.baseAddress!)
                parallelFor(d.count, grain: 1 << 15) { r in for i in r { sum[i] += addend[i] } }
            }
        }
    }

    /// `self *= factor` elementwise; nothing to do for 1.
    public mutating func scale(_ factor: Float) {
        guard factor != 1 else { return }
        data.withUnsafeMutableBufferPointer { d in for i in 0..<d.count { d[i] *= factor } }
    }

    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try data.withUnsafeBufferPointer(body)
    }

    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (inout UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        try data.withUnsafeMutableBufferPointer(body)
    }
}

/// Runs `body` with a pointer to the elements of `tensor`, or with nil when there is no tensor
/// (an optional gradient that was not asked for).
public func withOptionalMutablePointer<R>(
    _ tensor: inout Tensor?, _ body: (UnsafeMutablePointer<Float>?) throws -> R
) rethrows -> R {
    if tensor == nil { return try body(nil) }
    return try tensor!.withUnsafeMutableBufferPointer { try body($0.baseAddress) }
}

extension Array where Element == Int {
    /// Product of the sizes (1 for an empty shape).
    public var product: Int { reduce(1, *) }
}
