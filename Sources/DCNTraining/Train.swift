// The training entry point (filled in with the data loader).
import DCNConfig
import DCNModels

/// A failure that ends training with a message and an exit status.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public let exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) { self.message = message; self.exitCode = exitCode }
    public var description: String { message }
}

/// Object classes when the data is not loaded: the config's, else the format's usual count.
public func defaultClassCount(_ c: ExperimentConfig) -> Int {
    if let n = c.model.classes { return n }
    switch c.data.format {
    case .coco: return 80
    case .voc: return c.data.classes?.count ?? 20
    case .synth: return 5
    }
}

/// The input size the summary reports: the test shorter side and a 4:3 longer side within max_size.
public func summaryInputSize(_ c: ExperimentConfig) -> (height: Int, width: Int) {
    let short = c.data.testMinSize
    return (short, min(c.data.maxSize, (short * 4 + 2) / 3))
}

public func train(config: ExperimentConfig, configPath: String, resume: String?, force: Bool) throws {
    throw TrainingError("training needs the data loader (issue 4); use --summary for now")
}
