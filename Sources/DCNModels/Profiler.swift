// Wall-clock time per named phase, for `dcn-bench train-step`.
import Dispatch

/// Accumulates seconds per phase; pass one to a training step to see where its time goes.
public final class PhaseProfiler {
    public private(set) var seconds: [String: Double] = [:]
    public private(set) var order: [String] = []

    public init() {}

    /// Runs `body`, adding its duration to `phase`.
    @discardableResult
    public func measure<R>(_ phase: String, _ body: () throws -> R) rethrows -> R {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            if seconds[phase] == nil { order.append(phase) }
            seconds[phase, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        return try body()
    }

    public func reset() { seconds = [:]; order = [] }
}

extension Optional where Wrapped == PhaseProfiler {
    /// Times `body` when a profiler is present.
    @discardableResult
    func measure<R>(_ phase: String, _ body: () throws -> R) rethrows -> R {
        if let p = self { return try p.measure(phase, body) }
        return try body()
    }
}

/// Wall-clock seconds per backbone layer kind and stage ("res4 conv 3x3 fwd"), for
/// `dcn-bench train-step --layers`. The backbone reports to the profiler of the current task, so
/// nothing is passed through the model and nothing is timed when no profiler is set.
public final class LayerProfiler: @unchecked Sendable {
    @TaskLocal public static var current: LayerProfiler?

    /// The seconds, by layer key.
    public let layers = PhaseProfiler()

    public init() {}

    /// Runs `body` under this profiler (the layers that run inside report to it).
    public func collect<R>(_ body: () throws -> R) rethrows -> R {
        try Self.$current.withValue(self) { try body() }
    }

    /// Times `body` under `key` when the current task has a profiler.
    @inline(__always)
    static func measure<R>(_ key: @autoclosure () -> String, _ body: () throws -> R) rethrows -> R {
        guard let profiler = current else { return try body() }
        return try profiler.layers.measure(key(), body)
    }
}
