// The processes of a run and their collectives, over MPI. The only file that calls MPI (through
// the CMPI shim). A process started by a launcher (mpirun/mpiexec of Open MPI or MPICH, Slurm's
// srun) joins its job's world; a process started on its own is a single rank and never touches MPI.
import CMPI
import Foundation

/// What went wrong in an MPI call.
public struct MPIError: Error, CustomStringConvertible {
    public let description: String
}

/// The ranks of the job. `ProcessGroup.world` is the one instance.
public final class ProcessGroup: @unchecked Sendable {
    /// This process's rank, 0 ..< size.
    public let rank: Int
    public let size: Int
    /// Rank among the processes of this machine, and their number (MPI-3 shared-memory split, so it
    /// works under any launcher).
    public let localRank: Int
    public let localSize: Int
    private let usesMPI: Bool

    /// The job this process belongs to, started on first use.
    public static let world = ProcessGroup.start()

    /// This process alone (what `world` is without a launcher), whatever started it.
    public static let single = ProcessGroup(rank: 0, size: 1, localRank: 0, localSize: 1, usesMPI: false)

    public var isRoot: Bool { rank == 0 }
    public var isDistributed: Bool { size > 1 }
    /// "rank 1 of 2" for messages.
    public var name: String { "rank \(rank) of \(size)" }

    private init(rank: Int, size: Int, localRank: Int, localSize: Int, usesMPI: Bool) {
        self.rank = rank; self.size = size; self.localRank = localRank; self.localSize = localSize; self.usesMPI = usesMPI
    }

    /// Environment variables a launcher sets: Open MPI's mpirun, MPICH's Hydra (and Slurm's srun
    /// with PMI-2), PMIx launchers (srun --mpi=pmix).
    static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]

    /// Whether this process was started by an MPI launcher.
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return launcherVariables.contains { env[$0] != nil }
    }

    /// Processes the launcher started on this machine, from its variables (Open MPI, MPICH's
    /// Hydra, PMIx, Slurm's srun); 1 without a launcher.
    public static var launcherLocalProcesses: Int {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE"] {
            if let n = env[key].flatMap({ Int($0) }), n >= 1 { return n }
        }
        // srun: "2(x3),1" = 2 tasks on each of the first 3 nodes, then 1.
        if env["SLURM_STEP_ID"] != nil, let s = env["SLURM_STEP_TASKS_PER_NODE"],
           let n = Int(s.prefix { $0.isNumber }), n >= 1 { return n }
        return 1
    }

    /// Threads per process when none are asked for: the machine's cores shared by the
    /// processes the launcher started on it.
    public static var defaultThreads: Int {
        Swift.max(1, ProcessInfo.processInfo.activeProcessorCount / launcherLocalProcesses)
    }

    private static func start() -> ProcessGroup {
        guard launchedByMPI else { return single }
        var provided: Int32 = 0
        // Every MPI call comes from the thread that runs the training loop.
        guard MPI_Init_thread(nil, nil, cmpi_thread_funneled(), &provided) == cmpi_success() else {
            FileHandle.standardError.write(Data("error: MPI_Init_thread failed\n".utf8))
            Foundation.exit(1)
        }
        var rank: Int32 = 0, size: Int32 = 1
        MPI_Comm_rank(cmpi_comm_world(), &rank)
        MPI_Comm_size(cmpi_comm_world(), &size)
        var node: MPI_Comm? = nil
        MPI_Comm_split_type(cmpi_comm_world(), cmpi_comm_type_shared(), rank, cmpi_info_null(), &node)
        var localRank: Int32 = 0, localSize: Int32 = 1
        if let node {
            MPI_Comm_rank(node, &localRank)
            MPI_Comm_size(node, &localSize)
            var n: MPI_Comm? = node
            MPI_Comm_free(&n)
        }
        // A normal exit finalises; an error exit goes through `fail`, which aborts the job instead
        // (finalising would wait for ranks that are still computing).
        atexit { MPI_Finalize() }
        return ProcessGroup(rank: Int(rank), size: Int(size), localRank: Int(localRank), localSize: Int(localSize), usesMPI: true)
    }

    /// Ends this process with `status`. In a multi-rank job a non-zero status aborts every rank
    /// (MPI_Abort; the launcher reports it), so no rank waits forever for one that has gone.
    public func exit(_ status: Int32) -> Never {
        FileHandle.standardOutput.synchronizeFile()
        if usesMPI && size > 1 && status != 0 {
            MPI_Abort(cmpi_comm_world(), status)
        }
        Foundation.exit(status)
    }

    private func check(_ code: Int32, _ what: String) throws {
        guard code == cmpi_success() else { throw MPIError(description: "\(what) failed on \(name) (MPI error \(code))") }
    }

    // MARK: - Blocking collectives (small messages)

    /// Element-wise sums over all ranks.
    public func sum(_ values: [Double]) throws -> [Double] {
        guard usesMPI, size > 1, !values.isEmpty else { return values }
        var out = values
        try out.withUnsafeMutableBufferPointer { buffer in
            try check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress, Int32(buffer.count), cmpi_double(), cmpi_sum(), cmpi_comm_world()),
                      "MPI_Allreduce")
        }
        return out
    }

    /// The largest of every rank's `value`.
    public func max(_ value: Double) throws -> Double {
        guard usesMPI, size > 1 else { return value }
        var v = value
        try check(MPI_Allreduce(cmpi_in_place(), &v, 1, cmpi_double(), cmpi_max(), cmpi_comm_world()), "MPI_Allreduce")
        return v
    }

    /// The smallest of every rank's `value`.
    public func min(_ value: Double) throws -> Double {
        guard usesMPI, size > 1 else { return value }
        var v = value
        try check(MPI_Allreduce(cmpi_in_place(), &v, 1, cmpi_double(), cmpi_min(), cmpi_comm_world()), "MPI_Allreduce")
        return v
    }

    /// Every rank's bytes, in rank order, on rank 0 (nil on the other ranks).
    public func gather(_ bytes: [UInt8]) throws -> [[UInt8]]? {
        guard usesMPI, size > 1 else { return [bytes] }
        var count = Int64(bytes.count)
        var counts = [Int64](repeating: 0, count: size)
        try check(MPI_Gather(&count, 1, cmpi_int64(), &counts, 1, cmpi_int64(), 0, cmpi_comm_world()), "MPI_Gather")
        guard counts.allSatisfy({ $0 <= Int64(Int32.max) }), counts.reduce(0, +) <= Int64(Int32.max) else {
            throw MPIError(description: "gathering more than 2 GB on rank 0 is not supported")
        }
        let counts32 = counts.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<Swift.max(1, size) { displacements[r] = displacements[r - 1] + counts32[r - 1] }
        var all = [UInt8](repeating: 0, count: isRoot ? Int(counts.reduce(0, +)) : 0)
        try bytes.withUnsafeBytes { send in
            try check(MPI_Gatherv(send.baseAddress, Int32(bytes.count), cmpi_byte(), &all, counts32, displacements, cmpi_byte(), 0,
                                  cmpi_comm_world()), "MPI_Gatherv")
        }
        guard isRoot else { return nil }
        return (0..<size).map { r in Array(all[Int(displacements[r]) ..< Int(displacements[r] + counts32[r])]) }
    }

    /// Rank 0's bytes on every rank.
    public func broadcast(_ bytes: [UInt8]) throws -> [UInt8] {
        guard usesMPI, size > 1 else { return bytes }
        var count = Int64(bytes.count)
        try check(MPI_Bcast(&count, 1, cmpi_int64(), 0, cmpi_comm_world()), "MPI_Bcast")
        var out = isRoot ? bytes : [UInt8](repeating: 0, count: Int(count))
        try check(MPI_Bcast(&out, Int32(count), cmpi_byte(), 0, cmpi_comm_world()), "MPI_Bcast")
        return out
    }

    public func barrier() throws {
        guard usesMPI, size > 1 else { return }
        try check(MPI_Barrier(cmpi_comm_world()), "MPI_Barrier")
    }

    // MARK: - Non-blocking sums of float buffers (the gradient buckets)

    /// A sum over all ranks running in the background, in place in the caller's buffer.
    public final class PendingSum {
        fileprivate var request: MPI_Request? = cmpi_request_null()
        public fileprivate(set) var finished = false
    }

    /// Starts summing `count` floats at `base` in place over all ranks (MPI_Iallreduce). The buffer
    /// must stay untouched until `wait` returns. A single rank has nothing to sum.
    public func startSum(_ base: UnsafeMutablePointer<Float>, count: Int) throws -> PendingSum {
        let pending = PendingSum()
        guard usesMPI, size > 1, count > 0 else { pending.finished = true; return pending }
        precondition(count <= Int(Int32.max), "a bucket holds at most 2^31 - 1 floats")
        try check(MPI_Iallreduce(cmpi_in_place(), base, Int32(count), cmpi_float(), cmpi_sum(), cmpi_comm_world(), &pending.request),
                  "MPI_Iallreduce")
        return pending
    }

    /// Lets MPI advance the pending sums (Open MPI progresses non-blocking collectives only inside
    /// MPI calls); marks the finished ones.
    public func progress(_ pending: [PendingSum]) throws {
        for p in pending where !p.finished {
            var done: Int32 = 0
            try check(MPI_Test(&p.request, &done, nil), "MPI_Test")
            if done != 0 { p.finished = true }
        }
    }

    /// Waits for every pending sum.
    public func wait(_ pending: [PendingSum]) throws {
        for p in pending where !p.finished {
            try check(MPI_Wait(&p.request, nil), "MPI_Wait")
            p.finished = true
        }
    }

    /// Sums `count` floats at `base` over all ranks and waits (the benchmark of the collective alone).
    public func sum(_ base: UnsafeMutablePointer<Float>, count: Int) throws {
        try wait([try startSum(base, count: count)])
    }
}
