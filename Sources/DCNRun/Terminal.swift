// Whether a tool's progress goes to a person's terminal (a live line) or to a log (plain lines).
import DCNDistributed
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Whether the progress reaches a person's terminal. An MPI launcher (Open MPI's mpirun) gives the
/// processes it starts a pseudo-terminal of its own whatever its own output is, so there the
/// launcher's output decides: the parent process's standard output must be a terminal device.
/// Elsewhere (a remote daemon, srun), plain lines. `descriptor`: the output (standard output, or
/// standard error for dcn-detect's progress line).
public func progressReachesTerminal(_ descriptor: Int32 = STDOUT_FILENO) -> Bool {
    guard isatty(descriptor) != 0 else { return false }
    guard ProcessGroup.launchedByMPI else { return true }
    guard let launcherOutput = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(getppid())/fd/\(descriptor)") else { return false }
    return launcherOutput.hasPrefix("/dev/pts/") || launcherOutput.hasPrefix("/dev/tty")
}
