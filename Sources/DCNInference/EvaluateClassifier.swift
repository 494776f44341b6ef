// Top-1 / top-5 accuracy of a classifier on the config's validation split (torchvision's
// evaluation transform), in one process or sharded over the processes of an MPI job.
import DCNConfig
import DCNData
import DCNDistributed
import DCNEval
import DCNOps
import DCNModels
import DCNRun
import DCNTensor
import Foundation

/// Counts of correct predictions.
struct AccuracyCounts {
    var top1 = 0, top5 = 0, images = 0

    /// Adds the predictions of `logits` [N, C] for `labels`. A class is in the top k when fewer
    /// than k classes score higher (ties count in its favour).
    mutating func add(logits: Tensor, labels: [Int]) {
        let c = logits.dim(1)
        for (i, label) in labels.enumerated() {
            let row = logits.data[(i * c) ..< (i + 1) * c]
            let score = row[row.startIndex + label]
            let higher = row.filter { $0 > score }.count
            if higher < 1 { top1 += 1 }
            if higher < 5 { top5 += 1 }
            images += 1
        }
    }
}

/// Top-1 and top-5 accuracy (in %) of `model` on `dataset`, written to `<outputPrefix>_metrics.json`
/// by rank 0, which returns the report (nil on the other processes). Process r evaluates the
/// batches r, r + N, ...; a stop request of any process ends every process between batches
/// (`Stopped`) and nothing is written.
public func evaluateClassifier(_ model: ImageClassifier, config: ExperimentConfig, dataset: Dataset, outputPrefix: String,
                               stop: StopRequest? = nil, group: ProcessGroup = .world) throws -> EvaluationReport? {
    let perBatch = max(1, config.data.imagesPerBatch)
    let batches = (dataset.images.count + perBatch - 1) / perBatch
    var shard = dataset
    shard.images = stride(from: group.rank, to: batches, by: group.size).flatMap { b in
        (b * perBatch ..< min(dataset.images.count, (b + 1) * perBatch)).map { dataset.images[$0] }
    }
    let ws = Workspace()
    var counts = AccuracyCounts()
    let rounds = (batches + group.size - 1) / group.size
    let loader = shard.images.isEmpty ? nil : try DataLoader.classification(dataset: shard, imagesPerBatch: perBatch,
                                                                             transform: classificationTransform(config), mode: .evaluation)
    for _ in 0..<rounds {
        let signal = try group.max(Double(stop?.signal ?? 0))
        if signal != 0 { throw Stopped(signal: Int32(signal)) }
        guard let batch = try loader?.nextIfAvailable() else { continue }
        counts.add(logits: try model.logits(batch.images, ws), labels: batch.classLabels)
    }
    let total = try group.sum([Double(counts.top1), Double(counts.top5), Double(counts.images)])
    guard group.isRoot else { return nil }
    let images = max(1, total[2])
    let top1 = 100 * total[0] / images, top5 = 100 * total[1] / images
    let metrics: [(name: String, value: Double)] = [("top1", top1), ("top5", top5)]
    try AtomicFile.write(metricsJSON(metrics, extra: ["images": Int(total[2])]), to: outputPrefix + "_metrics.json")
    let text = String(format: "top-1 accuracy %.2f%%, top-5 accuracy %.2f%% (%d images, %d classes)", top1, top5, Int(total[2]), model.classes)
    return EvaluationReport(metrics: metrics, text: text)
}
