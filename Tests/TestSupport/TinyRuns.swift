// The tiny training runs the process tests start from: a synthetic dataset and configs/demo.yaml
// made small enough to train in seconds.
import DCNConfig
import DCNData
import DCNTensor
import DCNTraining
import Foundation

/// The data of the tiny runs: 6 training images, 5 validation images (two batches of 2 and one of 1).
public func distributedData(_ dir: String) throws -> [String] {
    _ = try writeSyntheticDataset(out: dir + "/data", config: SyntheticConfig(train: 6, val: 5, size: 96, seed: 3))
    return ["data.root=\(dir)/data", "data.min_size=[96]", "data.max_size=128", "data.test_min_size=96",
            "mimic.patch_size=32", "mimic.rois_per_image=2", "roi_head.batch_size_per_image=16", "rpn.batch_size_per_image=32",
            "solver.max_iter=10", "solver.warmup_iters=5", "solver.steps=[8]", "solver.checkpoint_period=5",
            "solver.eval_period=0", "output.log_period=1"]
}

/// The demo detector (mask branch included) trained 20 steps on `distributedData` in one process,
/// into dir/out (checkpoints at steps 10 and 20): the settings and the config.
public func trainTinyDemo(_ dir: String) throws -> (settings: [String], config: ExperimentConfig) {
    let settings = try distributedData(dir) + ["output.dir=\(dir)/out", "solver.max_iter=20", "solver.steps=[15]"]
    let config = try loadConfig(path: repositoryPath("configs/demo.yaml"), overrides: settings)
    try Threads.with(1) { try train(config: config, resume: nil, force: false) }
    return (settings, config)
}

/// dcn-train's arguments for configs/demo.yaml on one thread with `settings` and then `extra` as `--set`s.
public func trainArguments(_ settings: [String], _ extra: [String] = []) -> [String] {
    ["--config", repositoryPath("configs/demo.yaml"), "--threads", "1"] + (settings + extra).flatMap { ["--set", $0] }
}
