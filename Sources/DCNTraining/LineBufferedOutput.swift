// Standard output flushed at each line, for the command-line tools. C's stdout is block-buffered
// when it is a file or a pipe, so a run killed there would lose its last log lines. (Only Glibc is
// imported here: its `stdout` is a C global, accepted under @preconcurrency alone.)
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

/// Makes standard output line-buffered (process-wide: call it at the start of a tool).
public func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}
