// Standard output and error for the command-line tools. C's stdout is block-buffered when it is a
// file or a pipe, so a run killed there would lose its last log lines: it is flushed at each line.
// A reader that goes away (`dcn-train ... | head -2`) must not end a run: SIGPIPE is ignored, and a
// write that fails (EPIPE) is dropped. (Only Glibc is imported here: its `stdout` and `stderr` are
// C globals, accepted under @preconcurrency alone.)
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Makes standard output line-buffered (process-wide: call it at the start of a tool).
public func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}

/// Ignores SIGPIPE (process-wide: call it at the start of a tool), so that a closed pipe on
/// standard output or error makes the write fail with EPIPE, which `print` and
/// `printToStandardError` drop, instead of killing the process.
public func ignoreBrokenPipes() {
    signal(SIGPIPE, SIG_IGN)
}

/// Writes `text` and a newline to standard error; a failed write is dropped (never a trap, unlike
/// `FileHandle.write`).
public func printToStandardError(_ text: String) {
    fputs(text + "\n", stderr)
}
