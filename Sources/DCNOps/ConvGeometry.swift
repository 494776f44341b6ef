// Shapes shared by the regular and the deformable convolution.
import DCNTensor

/// Stride, padding, dilation and groups of a 2-D convolution (PyTorch's conv2d parameters).
public struct ConvOptions: Sendable, Equatable {
    public var strideH: Int, strideW: Int
    public var padH: Int, padW: Int
    public var dilationH: Int, dilationW: Int
    /// Weight groups: input and output channels split into `groups` independent convolutions.
    public var groups: Int

    public init(strideH: Int, strideW: Int, padH: Int, padW: Int, dilationH: Int, dilationW: Int, groups: Int = 1) {
        self.strideH = strideH; self.strideW = strideW
        self.padH = padH; self.padW = padW
        self.dilationH = dilationH; self.dilationW = dilationW
        self.groups = groups
    }

    /// Square stride, padding and dilation.
    public init(stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1) {
        self.init(strideH: stride, strideW: stride, padH: padding, padW: padding,
                  dilationH: dilation, dilationW: dilation, groups: groups)
    }
}

/// Every size of one convolution, derived from the input and weight shapes and checked once.
public struct ConvGeometry: Sendable, Equatable {
    public let batch: Int, inChannels: Int, height: Int, width: Int
    public let outChannels: Int, kernelH: Int, kernelW: Int
    public let outHeight: Int, outWidth: Int
    public let options: ConvOptions

    public var groups: Int { options.groups }
    /// Kernel taps per channel (kh * kw).
    public var taps: Int { kernelH * kernelW }
    public var inPerGroup: Int { inChannels / groups }
    public var outPerGroup: Int { outChannels / groups }
    /// Rows of the columns matrix per weight group: (C / groups) * kh * kw.
    public var columnRowsPerGroup: Int { inPerGroup * taps }
    public var outPixels: Int { outHeight * outWidth }
    public var inPixels: Int { height * width }
    public var inputShape: [Int] { [batch, inChannels, height, width] }
    public var outputShape: [Int] { [batch, outChannels, outHeight, outWidth] }
    public var weightShape: [Int] { [outChannels, inPerGroup, kernelH, kernelW] }

    /// True when the columns matrix is the input itself (1x1 kernel, stride 1, no padding, and so
    /// output size = input size; a transposed convolution's output padding can break the last).
    public var isPointwise: Bool {
        kernelH == 1 && kernelW == 1 && options.strideH == 1 && options.strideW == 1
            && options.padH == 0 && options.padW == 0 && outHeight == height && outWidth == width
    }

    /// The window over one input image, for `OwnProduct`'s packing of its im2col columns.
    public var window: OwnProduct.ImageWindow {
        let o = options
        return OwnProduct.ImageWindow(channels: inChannels, height: height, width: width, kernelH: kernelH, kernelW: kernelW,
                                      strideH: o.strideH, strideW: o.strideW, padH: o.padH, padW: o.padW,
                                      dilationH: o.dilationH, dilationW: o.dilationW, outHeight: outHeight, outWidth: outWidth)
    }

    /// Multiply-adds of the forward pass (the paper's FLOP count).
    public var multiplyAdds: Int { batch * outChannels * outPixels * columnRowsPerGroup }

    /// - Parameters: input `[N, C, H, W]`, weight `[Cout, C / groups, kh, kw]`.
    public init(input: [Int], weight: [Int], options: ConvOptions, op: String = "conv2d") throws {
        try require(input.count == 4, "\(op): input must be [N, C, H, W], got \(input)")
        try require(weight.count == 4, "\(op): weight must be [Cout, C/groups, kh, kw], got \(weight)")
        let o = options
        try o.requireValid(op)
        try require(input.allSatisfy { $0 >= 0 } && weight.allSatisfy { $0 >= 1 }, "\(op): sizes must be positive: input \(input), weight \(weight)")
        try require(input[1] % o.groups == 0, "\(op): groups \(o.groups) does not divide the \(input[1]) input channels")
        try require(weight[0] % o.groups == 0, "\(op): groups \(o.groups) does not divide the \(weight[0]) output channels")
        try require(weight[1] * o.groups == input[1],
                    "\(op): weight \(weight) expects \(weight[1] * o.groups) input channels with groups \(o.groups), input has \(input[1])")
        batch = input[0]; inChannels = input[1]; height = input[2]; width = input[3]
        outChannels = weight[0]; kernelH = weight[2]; kernelW = weight[3]
        self.options = o
        let spanH = o.dilationH * (kernelH - 1) + 1
        let spanW = o.dilationW * (kernelW - 1) + 1
        try require(height + 2 * o.padH >= spanH && width + 2 * o.padW >= spanW,
                    "\(op): the \(kernelH)x\(kernelW) kernel (dilation \(o.dilationH),\(o.dilationW)) does not fit the padded \(height)x\(width) input")
        outHeight = (height + 2 * o.padH - spanH) / o.strideH + 1
        outWidth = (width + 2 * o.padW - spanW) / o.strideW + 1
    }

    /// Sizes given directly, already checked by the caller: the regular convolution behind a
    /// transposed one, whose output size is the transposed input's (which may be smaller than the
    /// formula above gives when output padding is at least the stride).
    init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, kernelH: Int, kernelW: Int,
         outHeight: Int, outWidth: Int, options: ConvOptions) {
        self.batch = batch; self.inChannels = inChannels; self.height = height; self.width = width
        self.outChannels = outChannels; self.kernelH = kernelH; self.kernelW = kernelW
        self.outHeight = outHeight; self.outWidth = outWidth; self.options = options
    }
}

/// Scratch memory that layers reuse between calls instead of allocating per call.
/// Not thread-safe: one workspace per model (or per thread of work).
public final class Workspace: @unchecked Sendable {
    /// The independent buffers one layer may need at the same time.
    public enum Slot: Int, CaseIterable, Sendable {
        case columns, columnGradient, samplingTable
        case inputTransposed, inputGradientTransposed, weightPermuted, weightGradientPermuted
    }

    private var storage: [UnsafeMutableRawPointer?] = Array(repeating: nil, count: Slot.allCases.count)
    private var capacity: [Int] = Array(repeating: 0, count: Slot.allCases.count)
    /// Upper bound on floats in one columns buffer; convolutions process as many images per
    /// chunk as fit (at least one).
    public var columnBudget: Int

    /// A training step's workspace: a forward convolution that needs no im2col matrix (ours) still
    /// sizes the columns buffer for its backward's, so the backward never grows it (growing it
    /// after other tensors left holes in the heap: R-50's training step peaked 38 MB higher); and
    /// 3x3 convolutions keep the direct product (Winograd's runs only in other workspaces:
    /// inference).
    public let sizedForBackward: Bool

    public init(columnBudget: Int = 1 << 25, sizedForBackward: Bool = false) {
        self.columnBudget = columnBudget
        self.sizedForBackward = sizedForBackward
    }
    deinit { storage.forEach { $0?.deallocate() } }

    /// A buffer of at least `bytes` bytes for `slot`, valid until the next request for the same
    /// slot. Contents are undefined.
    public func raw(_ slot: Slot, bytes: Int) -> UnsafeMutableRawPointer {
        let i = slot.rawValue
        if bytes > capacity[i] || storage[i] == nil {
            storage[i]?.deallocate()
            capacity[i] = max(bytes, 64)
            storage[i] = .allocate(byteCount: capacity[i], alignment: 64)
        }
        return storage[i]!
    }

    /// `count` floats for `slot` (see `raw`).
    public func floats(_ slot: Slot, _ count: Int) -> UnsafeMutablePointer<Float> {
        raw(slot, bytes: count * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: count)
    }

    /// Bytes currently held.
    public var bytes: Int { capacity.reduce(0, +) }
}

/// How many images one columns buffer of `rowsTotal x (images * pixels)` floats may hold.
func imagesPerChunk(batch: Int, columnRows: Int, pixels: Int, budget: Int) -> Int {
    let perImage = max(1, columnRows * pixels)
    return max(1, min(batch, budget / perImage))
}

extension ConvOptions {
    /// Throws unless groups, stride and dilation are at least 1 and the padding is not negative
    /// (the checks every convolution's geometry starts with).
    func requireValid(_ op: String) throws {
        try require(groups >= 1, "\(op): groups must be >= 1, got \(groups)")
        try require(strideH >= 1 && strideW >= 1, "\(op): stride must be >= 1, got (\(strideH), \(strideW))")
        try require(dilationH >= 1 && dilationW >= 1, "\(op): dilation must be >= 1, got (\(dilationH), \(dilationW))")
        try require(padH >= 0 && padW >= 0, "\(op): padding must be >= 0, got (\(padH), \(padW))")
    }
}
