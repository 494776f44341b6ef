// Stopping a run on request: SIGINT (Ctrl-C), SIGTERM (what Slurm and Kubernetes send) and SIGHUP
// (the terminal or the ssh session closed) set a flag; the training loop checks it between
// iterations, writes a checkpoint and ends with status 128 + the signal number (130, 143, 129); an
// evaluation checks it between batches and stops.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A request to stop a run: 0 while none came, else the signal that asked for it. `dcn-train`
/// passes `.signals` after `StopRequest.installSignalHandlers()`; tests make their own and call
/// `request(_:)` (no signal, nothing process-wide).
public final class StopRequest: @unchecked Sendable {
    /// Written by a signal handler (or `request`), read by the loop: a sig_atomic_t that never moves.
    fileprivate let flag: UnsafeMutablePointer<sig_atomic_t>

    public init() {
        flag = .allocate(capacity: 1)
        flag.initialize(to: 0)
    }

    deinit { flag.deallocate() }

    /// The request SIGINT, SIGTERM and SIGHUP set once `installSignalHandlers()` ran; it lives as long as the process.
    public static let signals = StopRequest()

    /// The signals that ask a run to stop.
    static let stopSignals = [SIGINT, SIGTERM, SIGHUP]

    /// Makes SIGINT, SIGTERM and SIGHUP set `signals` (process-wide: for the command-line tool; call
    /// it on the main thread). A second one while a stop is under way ends the process at once, as
    /// the signal's default does. They are unblocked on the calling thread: a process started from a
    /// thread that blocks them (a Dispatch worker's mask, for one, is inherited) would never see them.
    public static func installSignalHandlers() {
        signalFlag = signals.flag
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        for s in stopSignals { sigaddset(&unblocked, s) }
        pthread_sigmask(SIG_UNBLOCK, &unblocked, nil)
        for s in stopSignals {
            Glibc.signal(s) { received in
                guard let flag = signalFlag else { return }
                if flag.pointee != 0 {
                    Glibc.signal(received, SIG_DFL)
                    raise(received)
                }
                flag.pointee = received
            }
        }
    }

    /// Asks the run to stop as `signal` would.
    public func request(_ signal: Int32) { flag.pointee = signal }

    /// The signal that asked to stop, 0 while none did.
    public var signal: Int32 { flag.pointee }

    /// The signal's name, for messages.
    public var signalName: String {
        switch signal {
        case SIGINT: return "SIGINT (Ctrl-C)"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP (the terminal or session closed)"
        default: return "signal \(signal)"
        }
    }

    /// The exit status of a run stopped by the request: 128 + the signal number.
    public var exitCode: Int32 { 128 + signal }

    /// Throws `Stopped` when a stop was requested (between evaluation batches).
    public func check() throws { if signal != 0 { throw Stopped(signal: signal) } }
}

/// An evaluation stopped by a `StopRequest`.
public struct Stopped: Error, CustomStringConvertible {
    public let signal: Int32
    public var description: String { "stopped by signal \(signal)" }
    public init(signal: Int32) { self.signal = signal }
}

/// The flag the signal handlers set (a plain global: a handler can capture nothing).
nonisolated(unsafe) private var signalFlag: UnsafeMutablePointer<sig_atomic_t>? = nil
