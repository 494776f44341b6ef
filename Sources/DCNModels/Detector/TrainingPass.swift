// The one contract of a trainable part: backbone, RPN, box head, mimic branch (and later a mask
// or a classification head).

/// A part's training forward pass: its output, its weighted named losses, and its backward pass.
/// `backward` takes the gradient that later parts sent back for the output (`Void` when nothing
/// consumes it, optional when something may), adds the part's parameter gradients, and returns
/// the gradient of the part's input. A model is a composition: it runs each part's training pass
/// in turn, sums the losses, then runs the backward passes in reverse order, summing the feature
/// gradients by name.
public struct TrainingPass<Output, OutputGradient, InputGradient> {
    public var output: Output
    public var losses: [String: Float]
    public var backward: (OutputGradient) throws -> InputGradient

    public init(output: Output, losses: [String: Float] = [:], backward: @escaping (OutputGradient) throws -> InputGradient) {
        self.output = output
        self.losses = losses
        self.backward = backward
    }
}
