// A run's failure: its message and exit status (every tool reports these the same way), where a
// training run diverged, and why a path cannot be read as a file.
import Foundation

/// A failure that ends training with a message and an exit status.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public let exitCode: Int32
    /// Set when the run stopped because the loss or the weights became non-finite.
    public let divergence: Divergence?
    /// Every process of a data-parallel run ends with this error at the same point (a stop request
    /// they agreed on): they exit normally, rank 0 reports it. Any other error of one process
    /// aborts the job.
    public let everyProcess: Bool
    public init(_ message: String, exitCode: Int32 = 1, divergence: Divergence? = nil, everyProcess: Bool = false) {
        self.message = message; self.exitCode = exitCode; self.divergence = divergence; self.everyProcess = everyProcess
    }
    public var description: String { message }
}

/// Where a run diverged: the iteration and the last finite losses.
public struct Divergence: Sendable, Equatable {
    public let iteration: Int
    public let losses: [String: Float]

    public init(iteration: Int, losses: [String: Float]) { self.iteration = iteration; self.losses = losses }
}

/// What keeps a path from being read as a file.
public enum FileProblem: String, CustomStringConvertible {
    case missing = "does not exist"
    case folder = "is a folder"
    public var description: String { rawValue }
}

/// Why `path` cannot be read as a file, nil when it can be (a symlink to a file counts).
public func fileProblem(_ path: String) -> FileProblem? {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return .missing }
    return isFolder.boolValue ? .folder : nil
}
