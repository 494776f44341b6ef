// The data loader: same seed -> same batches whatever the worker count, exact resume from an
// iteration, flips that move boxes with the pixels, evaluation order, decode errors that name
// the file without hanging.
import DCNData
import DCNTensor
import Foundation
import TestSupport
import Testing

/// A small synthetic dataset written once for the loader tests.
let loaderDataset: Result<Dataset, Error> = Result {
    let dir = try temporaryFolder("loader")
    _ = try writeSyntheticDataset(out: dir, config: SyntheticConfig(train: 10, val: 0, size: 96, seed: 11))
    return try Dataset.coco(annotations: dir + "/annotations/instances_train.json", imageRoot: dir + "/images/train", skipEmpty: true)
}

func expectSameBatch(_ a: TrainingBatch, _ b: TrainingBatch) {
    #expect(a.images == b.images)
    #expect(a.imageIDs == b.imageIDs && a.instances == b.instances)
    #expect(a.sizes == b.sizes && a.originalSizes == b.originalSizes && a.epoch == b.epoch && a.flipped == b.flipped)
    #expect(zip(a.scales, b.scales).allSatisfy { $0.x == $1.x && $0.y == $1.y })
}

@Suite("Data loader")
struct DataLoaderTests {
    @Test("Same seed gives the same batches with 1 or 3 workers; resume from an iteration is exact")
    func determinismAndResume() throws {
        let d = try loaderDataset.get()
        let aug = try Augmentation.training(shortEdges: [64, 80, 96], maxSize: 160)
        let one = try DataLoader(dataset: d, imagesPerBatch: 2, augmentation: aug, seed: 5, workers: 1, prefetch: 1)
        let three = try DataLoader(dataset: d, imagesPerBatch: 2, augmentation: aug, seed: 5, workers: 3, prefetch: 6)
        let resumed = try DataLoader(dataset: d, imagesPerBatch: 2, augmentation: aug, seed: 5, workers: 2, startIteration: 4)
        var batches = [TrainingBatch]()
        for i in 0..<8 {
            let a = try one.next(), b = try three.next()
            expectSameBatch(a, b)
            #expect(a.iteration == i)
            #expect(a.images.dim(2) % 32 == 0 && a.images.dim(3) % 32 == 0 && a.images.dim(0) == 2)
            batches.append(a)
        }
        for i in 4..<8 { expectSameBatch(try resumed.next(), batches[i]) }
        // Epochs: every image once per epoch, in a different order each epoch.
        let n = d.images.count
        let ids = batches.flatMap(\.imageIDs)
        #expect(Set(ids.prefix(n)) == Set(d.images.map(\.id)))
        #expect(batches.enumerated().allSatisfy { $0.element.epoch == $0.offset * 2 / n })
        #expect(Array(ids.prefix(n)) != Array(ids[n..<min(ids.count, 2 * n)]) || ids.count < 2 * n)
        let other = try DataLoader(dataset: d, imagesPerBatch: 2, augmentation: aug, seed: 6, workers: 1)
        var differs = false
        for i in 0..<4 { let b = try other.next(); differs = differs || b.imageIDs != batches[i].imageIDs }
        #expect(differs)
    }

    @Test("A flip mirrors boxes and pixels: same draws with flip probability 0 and 1")
    func flipConsistency() throws {
        let d = try loaderDataset.get()
        let resize = try ResizeShortestEdge(shortEdgeLengths: [64, 96], maxSize: 200)
        let plain = try DataLoader(dataset: d, imagesPerBatch: 1, augmentation: Augmentation(resize: resize, flipProbability: 0), seed: 9, workers: 1)
        let flipped = try DataLoader(dataset: d, imagesPerBatch: 1, augmentation: Augmentation(resize: resize, flipProbability: 1), seed: 9, workers: 1)
        for _ in 0..<5 {
            let a = try plain.next(), b = try flipped.next()
            #expect(a.imageIDs == b.imageIDs && a.sizes == b.sizes && b.flipped == [true] && a.flipped == [false])
            let w = Float(a.sizes[0].width)
            #expect(b.instances[0].boxes == a.instances[0].boxes.map { Box(w - $0.x2, $0.y1, w - $0.x1, $0.y2) })
            #expect(b.instances.map(\.labels) == a.instances.map(\.labels))
            let H = a.images.dim(2), W = a.images.dim(3), h = a.sizes[0].height, iw = a.sizes[0].width
            for (y, x) in [(0, 0), (h / 2, iw / 3), (h - 1, iw - 1)] {
                #expect(a.images.data[y * W + x] == b.images.data[y * W + (iw - 1 - x)])
            }
            #expect(H >= h)
            // Boxes stay inside the resized image and scale with it.
            for box in a.instances[0].boxes { #expect(box.x1 >= 0 && box.x2 <= w && box.y2 <= Float(a.sizes[0].height)) }
            #expect(abs(a.scales[0].x - Float(a.sizes[0].width) / Float(a.originalSizes[0].width)) < 1e-6)
        }
    }

    @Test("Evaluation mode: every image once in dataset order, no flip, then endOfData")
    func evaluationMode() throws {
        let d = try loaderDataset.get()
        let loader = try DataLoader.evaluation(dataset: d, imagesPerBatch: 3, shortEdge: 80, maxSize: 160, workers: 2)
        var ids = [Int]()
        while let b = try loader.nextIfAvailable() {
            #expect(b.flipped.allSatisfy { !$0 })
            #expect(b.sizes.allSatisfy { min($0.width, $0.height) == 80 || max($0.width, $0.height) == 160 })
            ids += b.imageIDs
        }
        #expect(ids == d.images.map(\.id))
        #expect(throws: DataLoaderError.endOfData) { try loader.next() }
    }

    @Test("Evaluation with flip: every image mirrored after resizing, the padding still on the right")
    func evaluationFlipMirrorsEveryImage() throws {
        let d = try loaderDataset.get()
        let plain = try DataLoader.evaluation(dataset: d, imagesPerBatch: 2, shortEdge: 80, maxSize: 160, workers: 1)
        let flipped = try DataLoader.evaluation(dataset: d, imagesPerBatch: 2, shortEdge: 80, maxSize: 160, flip: true, workers: 1)
        var batches = 0
        while let a = try plain.nextIfAvailable(), let b = try flipped.nextIfAvailable() {
            #expect(b.flipped.allSatisfy { $0 } && a.imageIDs == b.imageIDs && a.sizes == b.sizes && a.images.shape == b.images.shape)
            let (h, w) = (a.images.dim(2), a.images.dim(3))
            for n in 0..<a.sizes.count {
                let width = a.sizes[n].width
                var worst: Float = 0
                for c in 0..<3 { for y in 0..<a.sizes[n].height { for x in 0..<width {
                    let base = ((n * 3 + c) * h + y) * w
                    worst = max(worst, abs(a.images.data[base + x] - b.images.data[base + width - 1 - x]))
                } } }
                #expect(worst == 0, "image \(a.imageIDs[n]): flipped pixels differ from the mirrored ones by \(worst)")
            }
            batches += 1
        }
        #expect(batches == plain.iterationsPerEpoch)
    }

    @Test("A corrupt image is an error naming the file, and the loader carries on")
    func decodeError() throws {
        var d = try loaderDataset.get()
        let dir = try temporaryFolder("corrupt")
        let bad = dir + "/broken.jpg"
        let good = try Data(contentsOf: URL(fileURLWithPath: d.images[1].path))
        try good.prefix(good.count / 3).write(to: URL(fileURLWithPath: bad))
        d.images[1].path = bad
        let loader = try DataLoader.evaluation(dataset: d, imagesPerBatch: 1, shortEdge: 64, maxSize: 128, workers: 2)
        _ = try loader.next()
        do {
            _ = try loader.next()
            Issue.record("expected a decode error")
        } catch {
            #expect("\(error)".contains("broken.jpg"), "\(error)")
        }
        #expect(try loader.next().imageIDs == [d.images[2].id])
    }
}
