// The training loaders a config describes (detection and classification).
import DCNConfig
import DCNData
import DCNModels
import DCNRun

/// The training loader the config describes (multi-scale shorter side, flip, seeded, resumable).
func makeTrainingLoader(_ c: ExperimentConfig, dataset: Dataset, startIteration: Int, share: BatchShare? = nil) throws -> DataLoader {
    var augmentation = try Augmentation.training(shortEdges: c.data.minSize, maxSize: c.data.maxSize)
    if !c.data.flip { augmentation.flipProbability = 0 }
    return try DataLoader(dataset: dataset, imagesPerBatch: c.data.imagesPerBatch, augmentation: augmentation, mode: .training,
                          seed: UInt64(c.solver.seed), workers: c.data.loaderThreads, startIteration: startIteration, share: share)
}

/// The classification training loader (seeded, resumable, a process's share).
public func makeClassificationLoader(_ c: ExperimentConfig, dataset: Dataset, startIteration: Int, share: BatchShare?) throws -> DataLoader {
    try DataLoader.classification(dataset: dataset, imagesPerBatch: c.data.imagesPerBatch, transform: classificationTransform(c), mode: .training,
                                  seed: UInt64(c.solver.seed), workers: c.data.loaderThreads, startIteration: startIteration, share: share)
}
