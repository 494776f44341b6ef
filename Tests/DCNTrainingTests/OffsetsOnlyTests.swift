// The offsets-only test's start (issue 30, part 4): a regular classifier made deformable with
// zero offsets (and the modulation at 1: backbone.modulation: two_sigmoid) computes the same
// logits (to float rounding), and with solver.train_only: offsets only the offset and modulation
// branches change while it trains.
import DCNConfig
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

@Suite struct OffsetsOnly {
    @Test func aRegularClassifierMadeDeformableStartsEqualAndOnlyItsOffsetsTrain() throws {
        let dir = temporaryDirectory("offsets-only")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let regular = try loadConfig(path: repositoryPath("configs/synth_cls/regular.yaml"), overrides: fixtureImageFolderOverrides + [
            "solver.max_iter=3", "solver.warmup_iters=1", "solver.eval_period=0", "output.dir=\(dir)/regular",
        ])
        try Threads.with(1) { try train(config: regular, resume: nil, force: false) }
        let checkpoint = "\(dir)/regular/\(RunFiles.finalCheckpoint)"
        let weights = ["backbone.weights=\(checkpoint)", "backbone.weights_prefix=model."]
        let deformableSettings = weights + ["backbone.deformable_stages=[3,4,5]", "backbone.conv_type=mdconv", "backbone.modulation=two_sigmoid"]
        let images = try Tensor(shape: [2, 3, 32, 32], data: (0..<(2 * 3 * 32 * 32)).map { Float(($0 * 7919) % 255) / 64 - 2 })
        func logits(_ settings: [String]) throws -> [Float] {
            let config = try loadConfig(path: repositoryPath("configs/synth_cls/regular.yaml"), overrides: fixtureImageFolderOverrides + settings)
            let classifier = try buildClassifier(config, classes: 3)
            return try Threads.with(1) { try classifier.logits(images, Workspace()).data }
        }
        // The deformable convolution's products are ordered differently from the regular one's
        // (its own columns and matrix-product split), so "equal" is to float rounding, not bits.
        let before = try logits(weights)
        func difference(_ other: [Float]) -> Float { zip(other, before).map { abs($0 - $1) }.max()! / before.map(abs).max()! }
        let twoSigmoid = difference(try logits(deformableSettings))
        #expect(twoSigmoid < 1e-6, "two_sigmoid, zero offsets: the regular network's logits (relative difference \(twoSigmoid))")
        let dconv = difference(try logits(weights + ["backbone.deformable_stages=[3,4,5]", "backbone.conv_type=dconv"]))
        #expect(dconv < 1e-6, "DCNv1, zero offsets: relative difference \(dconv)")
        // The paper's sigmoid starts the modulation at 0.5: group norm right after the convolution
        // divides the factor out (up to its epsilon), frozen batch norm (an affine map) does not.
        let sigmoid = difference(try logits(weights + ["backbone.deformable_stages=[3,4,5]", "backbone.conv_type=mdconv"]))
        #expect(sigmoid < 1e-4, "group norm absorbs the 0.5: relative difference \(sigmoid)")
        let frozen = try loadConfig(path: repositoryPath("configs/synth_cls/regular.yaml"), overrides: fixtureImageFolderOverrides + [
            "backbone.norm=frozen_bn", "solver.max_iter=3", "solver.warmup_iters=1", "solver.eval_period=0", "output.dir=\(dir)/frozen",
        ])
        try Threads.with(1) { try train(config: frozen, resume: nil, force: false) }
        let frozenWeights = ["backbone.norm=frozen_bn", "backbone.weights=\(dir)/frozen/\(RunFiles.finalCheckpoint)", "backbone.weights_prefix=model."]
        let frozenBefore = try logits(frozenWeights)
        func frozenDifference(_ settings: [String]) throws -> Float {
            zip(try logits(frozenWeights + ["backbone.deformable_stages=[3,4,5]", "backbone.conv_type=mdconv"] + settings), frozenBefore)
                .map { abs($0 - $1) }.max()! / frozenBefore.map(abs).max()!
        }
        #expect(try frozenDifference(["backbone.modulation=two_sigmoid"]) < 1e-6)
        let halved = try frozenDifference([])
        #expect(halved > 0.01, "frozen batch norm: the sigmoid's 0.5 changes the function, relative difference \(halved)")

        let offsetsOnly = try loadConfig(path: repositoryPath("configs/synth_cls/regular.yaml"), overrides: fixtureImageFolderOverrides
            + deformableSettings + ["solver.train_only=offsets", "solver.max_iter=4", "solver.warmup_iters=1", "solver.eval_period=0",
                                    "backbone.offset_lr_mult=1", "output.dir=\(dir)/offsets"])
        try Threads.with(1) { try train(config: offsetsOnly, resume: nil, force: false) }
        let start = try SafeTensorsFile(path: checkpoint), end = try SafeTensorsFile(path: "\(dir)/offsets/\(RunFiles.finalCheckpoint)")
        var changed: [String] = []
        for name in end.names where name.hasPrefix("model.") {
            let after = try end.doubles(name).values
            let before = start.entry(name) == nil ? [Double](repeating: 0, count: after.count) : try start.doubles(name).values
            if after != before { changed.append(name) }
        }
        #expect(!changed.isEmpty && changed.allSatisfy { $0.contains("_offset.") }, "\(changed)")
        #expect(Set(changed.map { $0.components(separatedBy: "_offset.")[0] }).count == 3, "every deformable layer's branch moved: \(changed)")
        // A network without deformable layers has nothing to train that way.
        let nothing = try loadConfig(path: repositoryPath("configs/synth_cls/regular.yaml"), overrides: fixtureImageFolderOverrides
            + ["solver.train_only=offsets", "output.dir=\(dir)/nothing"])
        #expect(throws: TrainingError.self) { try train(config: nothing, resume: nil, force: false) }
    }
}
