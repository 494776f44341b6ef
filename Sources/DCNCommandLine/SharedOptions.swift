// The options every tool shares, each declared once with one default and one help text: the
// experiment config and its `--set` overrides, a trained checkpoint, the thread count, and the
// test views (`--scales`, `--flip`).
// The tools take them as `@OptionGroup`s.
import ArgumentParser
import DCNConfig
import DCNDistributed
import DCNTensor

/// `--threads`: our threads (loops and matrix products) for the whole process.
public struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads for our loops and OpenBLAS (default: all cores, shared by the processes mpirun starts on the machine).")
    public var threads: Int = ProcessGroup.defaultThreads

    public init() {}

    public func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    /// Sets them for the whole process (a command runs once, at its start).
    public func apply() { Threads.set(threads) }
}

/// `--set key=value`: overrides of config values, applied to every config the command reads.
public struct OverrideOptions: ParsableArguments {
    @Option(name: .customLong("set"), help: "Override a config value, e.g. --set solver.base_lr=0.01 (repeatable; applies to every config the command reads).")
    public var overrides: [String] = []

    public init() {}
}

/// `--config` and its `--set` overrides.
public struct ConfigOptions: ParsableArguments {
    @Option(help: "The experiment config (YAML).")
    public var config: String

    @OptionGroup public var overrideOptions: OverrideOptions

    public init() {}

    /// The `--set key=value` overrides, in order.
    public var overrides: [String] { overrideOptions.overrides }
}

/// `--checkpoint`: a model trained by dcn-train.
public struct CheckpointOptions: ParsableArguments {
    @Option(help: "A dcn-train checkpoint (.safetensors, or an output folder's `latest`).")
    public var checkpoint: String

    public init() {}
}

/// `--scales` and `--flip`: multi-scale and flipped testing, the config's test section
/// (`test.scales`, `test.flip`), set over the config and any `--set`.
public struct TestViewOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Multi-scale testing: shorter sides, comma-separated (sets test.scales), e.g. 480,576,688,864,1200,1400.",
                               valueName: "sides"))
    public var scales: String?

    @Flag(help: "Also test every scale on the horizontally flipped images (sets test.flip).")
    public var flip = false

    public init() {}

    public func validate() throws {
        guard let scales else { return }
        let values = scales.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
        guard !values.isEmpty, values.allSatisfy({ shorterSideRange.contains($0 ?? 0) }) else {
            throw ValidationError("--scales takes shorter sides of \(shorterSideRange.lowerBound) to \(shorterSideRange.upperBound) pixels separated by commas, "
                                  + "e.g. 400,800,1200; got '\(scales)'")
        }
    }

    /// The config overrides they stand for, to apply after the `--set`s.
    public var overrides: [String] { (scales.map { ["test.scales=[\($0)]"] } ?? []) + (flip ? ["test.flip=true"] : []) }
}
