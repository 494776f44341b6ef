// Data parallelism inside one process: each image of a process's share trains on a replica of the
// model, on a thread of its own. Every replica computes its image's gradient into a gradient block
// of its own; the blocks are added in image order, as the processes of an MPI run sum theirs, and
// the loss normalisers are summed the same way between the forward and the backward passes. So the
// arithmetic does not depend on the thread count, and 2 images give the same bits in one process
// (2 replicas) as in 2 processes of one image each.
//
// Why: a detector's layers at small sizes (the demo's 64-channel 3x3 conv on 64x96 takes 1 ms)
// gain little from splitting each over threads, and the per-image work between layers (proposals,
// sampling, losses) runs on one thread. One image per thread keeps every core busy.
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import Foundation

/// The models a process trains its images with, one per image of its share. `models[0]` is the
/// model the optimiser updates and checkpoints save; the others borrow its weights for each step.
///
/// Sendable under one contract: during a step each replica's model and workspace are touched by
/// that replica's thread only, and the weights they share are only read.
public final class ImageReplicas: @unchecked Sendable {
    public let models: [TrainableModel]
    let workspaces: [Workspace]

    /// `models` must have the same parameters (names, which are trained), as models built from one
    /// config have.
    public init(_ models: [TrainableModel]) throws {
        guard let first = models.first else { throw TrainingError("image replicas: no model") }
        for (i, m) in models.enumerated().dropFirst() {
            let same = m.parameters.all.count == first.parameters.all.count
                && zip(m.parameters.all, first.parameters.all).allSatisfy { $0.name == $1.name && $0.trainable == $1.trainable }
            if !same { throw TrainingError("image replica \(i) does not have the parameters of the model it replicates") }
        }
        self.models = models
        workspaces = models.map { _ in Workspace(sizedForBackward: true) }
        models.dropFirst().forEach(ImageReplicas.releaseWeights)
    }

    /// `model` and `count - 1` replicas of it built by `make`, each giving up the weights it was
    /// built with at once (they are never used), so that at most one extra set exists at a time.
    public convenience init(model: TrainableModel, count: Int, make: () throws -> TrainableModel) throws {
        // Each replica past the first keeps a gradient block as large as the weights.
        let bytes = Double(max(0, count - 1)) * Double(model.parameters.weightCount) * 4
        if let problem = System.memoryProblem(bytes: bytes, for: "the gradients of \(count) image replicas (one per image of a process's share of the batch)") {
            throw TrainingError(problem + "; give each process fewer images (data.images_per_batch, or more processes)", exitCode: 2)
        }
        var models = [model]
        for _ in 1 ..< max(1, count) {
            let replica = try make()
            ImageReplicas.releaseWeights(replica)
            models.append(replica)
        }
        try self.init(models)
    }

    /// Between steps a replica holds no weights: the optimiser then updates the model's in place,
    /// without a copy.
    static func releaseWeights(_ model: TrainableModel) {
        for p in model.parameters.all { p.value = Tensor(zeros: [0]) }
    }

    /// Images per step (one per replica).
    public var count: Int { models.count }

    /// One training step: `body(i, collective, workspace)` trains replica `i` on image `i` of the
    /// process's share, all replicas at once on threads of their own (the calling thread runs
    /// replica 0), sharing `Threads.count` threads: min(replicas, threads) run at a time, each with
    /// threads / replicas threads (at least one). A replica waiting for the others in a sum gives
    /// its turn to one that has not arrived.
    ///
    /// Afterwards `models[0]`'s gradient block holds the sum of the replicas' gradients (added in
    /// replica order); `outer` (the processes of an MPI run) then sums it over the processes.
    /// Returns replica 0's losses: those of the global batch, the same on every replica. The first
    /// replica that throws stops the others at their next sum; its error is rethrown.
    public func step(outer: TrainingCollective? = nil,
                     _ body: @escaping (_ replica: Int, _ collective: TrainingCollective, _ workspace: Workspace) throws -> [String: Float]) throws -> [String: Float] {
        let primary = models[0].parameters
        for model in models.dropFirst() {
            for (mine, lent) in zip(model.parameters.all, primary.all) { mine.value = lent.value }
            model.parameters.zeroGrad()
        }
        defer { models.dropFirst().forEach(ImageReplicas.releaseWeights) }
        let threads = Threads.count
        let sum = ReplicaSum(replicas: count, running: min(count, threads), outer: outer)
        let results = ReplicaResults(count)
        let work = UncheckedBody(body: body)
        let each = max(1, threads / count)
        @Sendable func run(_ i: Int) {
            do {
                try sum.takeTurn()
                defer { sum.endTurn() }
                let losses = try Threads.with(each) { try work.body(i, ReplicaMember(group: sum, index: i), workspaces[i]) }
                results.set(i, .success(losses))
                sum.replicaDone()
            } catch {
                sum.fail(error)
                results.set(i, .failure(error))
            }
        }
        let finished = DispatchGroup()
        for i in 1..<count {
            finished.enter()
            Thread { run(i); finished.leave() }.start()
        }
        run(0)
        finished.wait()
        if let error = sum.firstError { throw error }
        try addGradients()
        return try results.value(0)
    }

    /// models[0]'s gradient block += every other replica's, element by element in replica order.
    private func addGradients() throws {
        guard let total = models[0].parameters.gradientBlock else { return }
        let blocks = models.dropFirst().compactMap { $0.parameters.gradientBlock }
        guard blocks.count == count - 1, blocks.allSatisfy({ $0.count == total.count }) else {
            throw TrainingError("image replicas: the gradient blocks differ in layout")
        }
        let out = DisjointWrites(total.buffer.baseAddress!)
        let ins = blocks.map { SharedReads($0.buffer.baseAddress!) }
        parallelFor(total.count, grain: 1 << 16) { range in
            for other in ins { for k in range { out[k] += other[k] } }
        }
    }
}

/// `body` of `ImageReplicas.step`, handed to the replicas' threads. Each calls it with its own
/// replica index only.
private struct UncheckedBody: @unchecked Sendable {
    let body: (Int, TrainingCollective, Workspace) throws -> [String: Float]
}

/// Each replica's losses or error, written by its own thread.
private final class ReplicaResults: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<[String: Float], Error>?]
    init(_ count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ result: Result<[String: Float], Error>) { lock.withLock { results[i] = result } }
    func value(_ i: Int) throws -> [String: Float] {
        guard let result = lock.withLock({ results[i] }) else { throw TrainingError("image replica \(i) returned nothing") }
        return try result.get()
    }
}

/// Another replica failed, so this one stopped at its sum.
struct ReplicaStopped: Error, CustomStringConvertible {
    var description: String { "stopped because another image replica failed" }
}

/// The sums of one step's replicas, and whose turn it is to compute. Replica 0 adds the values in
/// replica order (then sums them over the processes, on its thread, the one MPI calls come from)
/// and hands the total to every replica.
final class ReplicaSum: @unchecked Sendable {
    private let replicas: Int
    private let outer: TrainingCollective?
    private let condition = NSCondition()
    /// Replicas that may compute now.
    private var freeTurns: Int
    private var slots: [[Double]]
    private var arrived = 0
    private var round = 0
    /// Replicas whose step has returned: they join no more sums.
    private var done = 0
    private var total: [Double] = []
    private(set) var firstError: Error?

    init(replicas: Int, running: Int, outer: TrainingCollective?) {
        self.replicas = replicas; self.outer = outer; freeTurns = max(1, running)
        slots = Array(repeating: [], count: replicas)
    }

    /// Waits for a turn to compute (call with the condition's lock held).
    private func waitForTurn() throws {
        while freeTurns == 0 && firstError == nil { condition.wait() }
        if firstError != nil { throw ReplicaStopped() }
        freeTurns -= 1
    }

    func takeTurn() throws {
        condition.lock(); defer { condition.unlock() }
        try waitForTurn()
    }

    func endTurn() {
        condition.lock(); defer { condition.unlock() }
        freeTurns += 1
        condition.broadcast()
    }

    func fail(_ error: Error) {
        condition.lock(); defer { condition.unlock() }
        if firstError == nil { firstError = error }
        condition.broadcast()
    }

    /// A replica's step returned: a sum still waiting for it would wait forever.
    func replicaDone() {
        condition.lock(); defer { condition.unlock() }
        done += 1
        condition.broadcast()
    }

    /// The error of a sum that a replica whose step has returned never joined (call with the lock held).
    private func unevenSums() -> Error {
        let error = TrainingError("the image replicas asked for different numbers of sums in one step; every image's step must "
                                  + "sum its losses' normalisers the same number of times")
        if firstError == nil { firstError = error }
        condition.broadcast()
        return error
    }

    func sum(_ values: [Double], replica: Int) throws -> [Double] {
        condition.lock(); defer { condition.unlock() }
        if firstError != nil { throw ReplicaStopped() }
        slots[replica] = values
        arrived += 1
        let myRound = round
        freeTurns += 1  // waiting computes nothing: another replica may run
        condition.broadcast()
        if replica == 0 {
            while arrived < replicas && firstError == nil && done == 0 { condition.wait() }
            if firstError != nil { throw ReplicaStopped() }
            if arrived < replicas { throw unevenSums() }
            guard slots.allSatisfy({ $0.count == values.count }) else {
                let error = TrainingError("image replicas summed vectors of different lengths: \(slots.map(\.count))")
                firstError = error
                condition.broadcast()
                throw error
            }
            var sum = slots[0]
            for other in slots.dropFirst() { for k in sum.indices { sum[k] += other[k] } }
            if let outer {
                condition.unlock()
                do { sum = try outer.sum(sum) } catch {
                    condition.lock()
                    firstError = firstError ?? error
                    condition.broadcast()
                    throw error
                }
                condition.lock()
            }
            total = sum
            arrived = 0
            round += 1
            condition.broadcast()
        } else {
            while round == myRound && firstError == nil && done == 0 { condition.wait() }
            if firstError != nil { throw ReplicaStopped() }
            if round == myRound { throw unevenSums() }
        }
        let result = total
        try waitForTurn()
        return result
    }
}

/// One replica's view of the step's sums. Gradients are summed after the step, so finished
/// parameters start nothing.
final class ReplicaMember: TrainingCollective {
    let group: ReplicaSum
    let index: Int
    init(group: ReplicaSum, index: Int) { self.group = group; self.index = index }
    func sum(_ values: [Double]) throws -> [Double] { try group.sum(values, replica: index) }
    func gradientsFinished(_ parameters: [Parameter]) {}
}
