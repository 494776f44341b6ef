// Data-parallel gradients: every process computes the gradient of its share of the global batch
// into the model's one gradient block; the block is summed over the processes in buckets, each
// started (a non-blocking MPI sum) as soon as the backward pass has finished every parameter in
// it, so the communication runs while the rest of the backward pass computes.
import DCNModels
import DCNTensor
import Foundation

/// The buckets of one model's gradient block and the sums in flight. One per training run.
public final class GradientBuckets: TrainingCollective {
    public let group: ProcessGroup
    let parameters: ParameterList
    /// Floats per bucket at most (a parameter larger than that is a bucket of its own).
    public let bucketFloats: Int

    /// A contiguous range of the gradient block and the parameters whose slots fill it.
    struct Bucket {
        var start: Int
        var count: Int
        var members: Int
        var remaining = 0
        var pending: ProcessGroup.PendingSum?
    }

    private var layoutBlock: GradientBlock?
    private var buckets: [Bucket] = []
    private var bucketOf: [ObjectIdentifier: Int] = [:]
    private var finishedThisStep: Set<ObjectIdentifier> = []
    private var sumWait = 0.0

    /// Seconds of the last step spent blocked on communication: the loss counts' sum and the
    /// buckets still in flight when the backward pass ended (the part not overlapped).
    public var lastWaitSeconds: Double { lastSumWaitSeconds + lastGradientWaitSeconds }
    /// The part spent in the loss counts' sum between the forward and the backward passes: mostly
    /// waiting for the process whose forward pass took longest (its images had more to do).
    public private(set) var lastSumWaitSeconds = 0.0
    /// The part spent waiting for the gradient sums that the backward pass did not hide.
    public private(set) var lastGradientWaitSeconds = 0.0
    /// Buckets the last step started before its backward pass ended.
    public private(set) var lastOverlappedBuckets = 0
    public var bucketCount: Int { buckets.count }

    public init(group: ProcessGroup, parameters: ParameterList, bucketFloats: Int = 4 << 20) {
        self.group = group; self.parameters = parameters; self.bucketFloats = max(1, bucketFloats)
    }

    /// Call after `parameters.zeroGrad()`, before the step's backward passes: lays the buckets
    /// out again if the block changed, and marks every bucket not started.
    public func beginStep() throws {
        guard let block = parameters.gradientBlock else { throw MPIError(description: "the gradient block is laid out by zeroGrad() first") }
        if block !== layoutBlock { layOut(block) }
        for i in buckets.indices { buckets[i].remaining = buckets[i].members; buckets[i].pending = nil }
        finishedThisStep = []
        sumWait = 0
    }

    /// Buckets from the end of the block (the backward pass finishes the heads first, the stem
    /// last), cut at parameter boundaries.
    private func layOut(_ block: GradientBlock) {
        let trainable = parameters.trainable
        var offsets: [Int] = [], offset = 0
        for p in trainable { offsets.append(offset); offset += p.count }
        buckets = []; bucketOf = [:]
        var end = offset, members: [Parameter] = []
        for (i, p) in trainable.enumerated().reversed() {
            members.append(p)
            let start = offsets[i]
            if end - start >= bucketFloats || i == 0 {
                for m in members { bucketOf[ObjectIdentifier(m)] = buckets.count }
                buckets.append(Bucket(start: start, count: end - start, members: members.count))
                end = start; members = []
            }
        }
        layoutBlock = block
    }

    public func sum(_ values: [Double]) throws -> [Double] {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { sumWait += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        return try group.sum(values)
    }

    public func gradientsFinished(_ finished: [Parameter]) {
        guard let block = layoutBlock else { return }
        for p in finished {
            let id = ObjectIdentifier(p)
            guard let b = bucketOf[id], finishedThisStep.insert(id).inserted else { continue }
            buckets[b].remaining -= 1
            if buckets[b].remaining == 0 { start(b, block) }
        }
        // Open MPI moves non-blocking collectives forward only inside MPI calls.
        try? group.progress(buckets.compactMap(\.pending))
    }

    private func start(_ b: Int, _ block: GradientBlock) {
        guard buckets[b].pending == nil else { return }
        do {
            buckets[b].pending = try group.startSum(block.buffer.baseAddress! + buckets[b].start, count: buckets[b].count)
        } catch {
            // MPI's default error handler aborts the job before this; keep the message if it returns.
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            group.exit(1)
        }
    }

    /// Starts the buckets nobody finished (in a fixed order, the same on every process) and waits
    /// for every sum: afterwards the block holds the global batch's gradient on every process.
    public func finish() throws {
        guard let block = layoutBlock else { return }
        lastOverlappedBuckets = buckets.filter { $0.pending != nil }.count
        let t0 = DispatchTime.now().uptimeNanoseconds
        for b in buckets.indices where buckets[b].pending == nil { start(b, block) }
        try group.wait(buckets.compactMap(\.pending))
        lastGradientWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        lastSumWaitSeconds = sumWait
    }
}
