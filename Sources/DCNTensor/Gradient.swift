// Parameter gradients: one contiguous block per model, each parameter's gradient a slot (view) in it.
//
// The convention for every op's backward pass: parameter gradients are `GradientSlot?` (nil = that
// parameter is frozen, nothing is computed for it) and the op only adds into them; input gradients
// are `inout Tensor?` (nil = not wanted). A model's slots all live in one `GradientBlock`, so the
// optimiser and a reduction across processes see a single buffer.

/// Where a backward pass adds one parameter's gradient: `shape.product` floats at `base`, inside a
/// `GradientBlock` that the owner keeps alive while the slot is used.
public struct GradientSlot: @unchecked Sendable {
    public let shape: [Int]
    public let base: UnsafeMutablePointer<Float>
    public let count: Int

    init(shape: [Int], base: UnsafeMutablePointer<Float>) {
        self.shape = shape
        self.base = base
        self.count = shape.product
    }

    /// The slot's elements as an independent tensor (a copy).
    public var tensor: Tensor {
        try! Tensor(shape: shape, data: Array(UnsafeBufferPointer(start: base, count: count)))
    }

    /// The slot as a buffer, for loops and BLAS calls that add into it.
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }

    /// Replaces the elements (gradient clipping tests, optimiser tests).
    public func assign(_ t: Tensor) {
        precondition(t.shape == shape, "gradient of shape \(shape) assigned a tensor of shape \(t.shape)")
        t.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: count) }
    }
}

/// One zero-initialised float buffer holding the gradients of several tensors back to back, in the
/// order of `shapes`. A model allocates one for all its trainable parameters; a test or tool that
/// wants a single gradient uses `GradientBlock(zeros: shape)`.
public final class GradientBlock: @unchecked Sendable {
    public let buffer: UnsafeMutableBufferPointer<Float>
    public let slots: [GradientSlot]

    public init(shapes: [[Int]]) {
        let total = shapes.reduce(0) { $0 + $1.product }
        buffer = .allocate(capacity: max(1, total))
        buffer.initialize(repeating: 0)
        var slots: [GradientSlot] = [], offset = 0
        for shape in shapes {
            slots.append(GradientSlot(shape: shape, base: buffer.baseAddress! + offset))
            offset += shape.product
        }
        self.slots = slots
        count = total
    }

    /// A block with a single slot of `shape`.
    public convenience init(zeros shape: [Int]) { self.init(shapes: [shape]) }

    /// The number of floats the slots cover.
    public let count: Int

    /// The first (for a single-tensor block, the only) slot.
    public var slot: GradientSlot { slots[0] }

    /// The first slot's elements as a tensor (a copy).
    public var tensor: Tensor { slot.tensor }

    /// Sets every gradient to zero.
    public func zero() { buffer.update(repeating: 0) }

    deinit { buffer.deallocate() }
}
