// The one place where work is split across threads. Every parallel loop in the project goes
// through `parallelFor`, and every raw pointer shared between tasks is wrapped in
// `DisjointWrites`, whose name states the invariant that makes the sharing safe. `System` holds
// the facts of the machine and the process the tools report (cores, peak resident memory).
#if canImport(CMalloc)
import CMalloc
#endif
import Dispatch
import Synchronization
import Foundation

/// A mutable pointer handed to several tasks that each write a disjoint range of it.
/// Safe only under that contract: no two tasks touch the same element.
public struct DisjointWrites<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    @inlinable public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
    @inlinable public subscript(i: Int) -> T {
        get { pointer[i] }
        nonmutating set { pointer[i] = newValue }
    }
    @inlinable public static func + (lhs: DisjointWrites, rhs: Int) -> UnsafeMutablePointer<T> { lhs.pointer + rhs }
}

/// A read-only pointer shared by several tasks while nobody writes through it.
public struct SharedReads<T>: @unchecked Sendable {
    public let pointer: UnsafePointer<T>
    @inlinable public init(_ pointer: UnsafePointer<T>) { self.pointer = pointer }
    @inlinable public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = UnsafePointer(pointer) }
    @inlinable public subscript(i: Int) -> T { pointer[i] }
    @inlinable public static func + (lhs: SharedReads, rhs: Int) -> UnsafePointer<T> { lhs.pointer + rhs }
}

/// Thread settings for our own loops and OpenBLAS's.
///
/// `set` is process-wide (the command-line tools call it once, at start); `with` changes the
/// count for the calling task only, so tests can compare thread counts while other tests run.
/// Both cover the matrix products, which `BLAS.sgemm` splits over the same loops.
public enum Threads {
    nonisolated(unsafe) private static var configured: Int = 0
    @TaskLocal private static var scoped: Int?

    /// Threads used by `parallelFor`: the task's `with` value, else the `set` value, else the active cores.
    public static var count: Int {
        scoped ?? (configured > 0 ? configured : System.activeProcessorCount)
    }

    /// Sets our loop threads for the whole process (matrix products run on them too: OpenBLAS
    /// itself stays on one thread, see `BLAS.sgemm`). Call before starting work, never while
    /// other work runs (tests use `with`).
    public static func set(_ n: Int) {
        configured = max(1, n)
    }

    /// Runs `body` with `n` threads for our own loops in this task (and the tasks it starts).
    public static func with<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        try $scoped.withValue(max(1, n)) { try body() }
    }
}

public enum System {
    /// The thread count used when none is configured: the active cores.
    public static var defaultThreads: Int { activeProcessorCount }

    /// Peak resident set size of this process since start or the last `resetPeakResidentBytes`
    /// (VmHWM from /proc/self/status), in bytes; 0 where there is no /proc.
    public static func peakResidentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
        }
        return 0
    }

    /// The machine's memory, in bytes.
    public static var physicalMemoryBytes: Double {
        Double(sysconf(Int32(_SC_PHYS_PAGES))) * Double(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Why `bytes` of memory for `what` cannot be had, or nil when they fit in the machine's memory:
    /// a size given on the command line is checked before it is allocated (an allocation that
    /// fails traps).
    public static func memoryProblem(bytes: Double, for what: String) -> String? {
        let total = physicalMemoryBytes
        guard bytes > total else { return nil }
        return String(format: "%@ would take about %.3g GB of memory; this machine has %.1f GB", what, bytes / 1e9, total / 1e9)
    }

    /// Keeps freed memory in the process for the next allocation instead of returning it to the
    /// kernel (glibc malloc: large blocks come from the heap, not one mmap each, and the heap is
    /// never trimmed). A training or analysis step allocates the same large tensors again and
    /// again; memory fresh from the kernel costs a page fault per 4 KB page, zeroed by the kernel,
    /// which measured 30 of 48 s of system time in an R-50 800 x 1216 training step. The resident
    /// size stays at its peak instead of falling between steps. Called once at the start of the
    /// tools (dcn-train, dcn-eval, dcn-vis, dcn-bench); never by the libraries or the tests.
    public static func keepFreedMemoryForReuse() {
        #if canImport(CMalloc)
        _ = mallopt(M_MMAP_MAX, 0)
        _ = mallopt(M_TRIM_THRESHOLD, -1)  // -1: never trim (mallopt(3))
        #endif
    }

    /// Restarts the peak at the current resident size (Linux: "5" to /proc/self/clear_refs).
    /// False where that is refused: the peak then covers the whole process.
    @discardableResult
    public static func resetPeakResidentBytes() -> Bool {
        #if canImport(Glibc)
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        if fd < 0 { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
        #else
        return false
        #endif
    }

    /// The cores online when the process started (read once: glibc's sysconf reads a file in /sys
    /// on each call, and every matrix product asks, `ProductPieces`).
    public static let activeProcessorCount: Int = {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 1
        #endif
    }()
}

#if canImport(Glibc)
import Glibc
#endif

/// `body(i)` for every i in 0 ..< count on our threads (`parallelFor`), each item's value or error
/// in its place: for loaders and writers that report every bad item, not only the first.
public func parallelResults<T>(_ count: Int, grain: Int = 1, _ body: @Sendable (Int) throws -> T) -> [Result<T, Error>] {
    if count <= 0 { return [] }
    var slots = [Result<T, Error>?](repeating: nil, count: count)
    slots.withUnsafeMutableBufferPointer { buffer in
        let out = DisjointWrites(buffer.baseAddress!)
        parallelFor(count, grain: grain) { range in
            for i in range { out[i] = Result { try body(i) } }
        }
    }
    return slots.map { $0! }
}

/// Runs `body(i)` for every i in 0 ..< count on our threads: for a few large items of equal cost.
/// Each thread takes the items of its own contiguous share in order (neighbouring items share
/// their inputs in cache), then helps with the others' remaining items one at a time, so that
/// no thread idles while another has two left (`parallelFor`'s chunks of unequal counts did
/// that to res5's 3x3 products).
public func parallelForEach(_ count: Int, _ body: @Sendable (Int) -> Void) {
    if count <= 0 { return }
    let threads = min(Threads.count, count)
    if threads <= 1 {
        for i in 0..<count { body(i) }
        return
    }
    // next[t]: the next item of share t (items count * t / threads ..< count * (t + 1) / threads).
    let next = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: threads)
    for t in 0..<threads { (next + t).initialize(to: Atomic(count * t / threads)) }
    defer { next.deinitialize(count: threads); next.deallocate() }
    let shares = Counters(next: next)
    DispatchQueue.concurrentPerform(iterations: threads) { own in
        for offset in 0..<threads {
            let t = (own + offset) % threads, end = count * (t + 1) / threads
            while true {
                let i = shares.next[t].add(1, ordering: .relaxed).oldValue
                if i >= end { break }
                body(i)
            }
        }
    }
}

/// The shares' counters of `parallelForEach`, which every thread updates atomically.
private struct Counters: @unchecked Sendable {
    let next: UnsafeMutablePointer<Atomic<Int>>
}

/// Runs `body(range)` over `0..<count`, split into at most `Threads.count` contiguous chunks of
/// at least `grain` items. Chunk boundaries do not affect results as long as each item's output
/// is computed inside one call, which every caller guarantees.
@inlinable
public func parallelFor(_ count: Int, grain: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
    if count <= 0 { return }
    let threads = min(Threads.count, max(1, count / max(1, grain)))
    if threads <= 1 {
        body(0..<count)
        return
    }
    // More chunks than threads balances uneven work; each chunk is still contiguous.
    let chunks = min(count, threads * 4)
    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
        let lo = count * chunk / chunks
        let hi = count * (chunk + 1) / chunks
        if lo < hi { body(lo..<hi) }
    }
}
