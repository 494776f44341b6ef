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
