// Label maps through the training loader: resized by nearest neighbour and flipped with their
// images, padded with 255, split with the batch; the split as a dataset.
import DCNData
import DCNTensor
import Foundation
import TestSupport
import Testing

@Suite("Segmentation training batches")
struct SegmentationLoaderTests {
    @Test func nearestResizeAndFlip() {
        let map = LabelMap(width: 3, height: 2, labels: [0, 1, 2, 3, 4, 5])
        #expect(map.resized(width: 3, height: 2) == map)
        #expect(map.resized(width: 6, height: 4).labels == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 3, 3, 4, 4, 5, 5])
        #expect(map.resized(width: 3, height: 2, flip: true).labels == [2, 1, 0, 5, 4, 3])
        #expect(map.resized(width: 1, height: 1).labels == [4])
    }

    /// Synthetic images and their label maps: each batch's labels are the files' maps, resized to
    /// their images' sizes, flipped with them, at the top left of a 255-padded plane.
    @Test func batchesCarryTheirImagesLabels() throws {
        let dir = try temporaryFolder("seg-loader")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = SyntheticConfig(train: 6, val: 0, size: 96, seed: 4)
        _ = try writeSyntheticDataset(out: dir, config: config)
        _ = try writeSyntheticSegmentation(out: dir, config: config)
        let root = dir + "/VOCdevkit/VOC2012"
        let dataset = Dataset.segmentation(try loadSegmentationSplit(layout: .voc, root: root, split: "train"),
                                           classNames: syntheticSegmentationClassNames)
        #expect(dataset.images.count == 6 && dataset.images.allSatisfy { $0.labelPath != nil })
        let loader = try DataLoader(dataset: dataset, imagesPerBatch: 3, augmentation: try .training(shortEdges: [64, 80], maxSize: 200),
                                    seed: 1, workers: 1)
        var flips = Set<Bool>()
        for _ in 0..<4 {
            let batch = try loader.next()
            let (h, w) = (batch.images.dim(2), batch.images.dim(3))
            #expect(batch.pixelLabels.count == 3 * h * w)
            for n in 0..<3 {
                let item = dataset.images.first { $0.id == batch.imageIDs[n] }!
                let size = batch.sizes[n]
                let expected = try readLabelMap(path: item.labelPath!, classes: 7).resized(width: size.width, height: size.height, flip: batch.flipped[n])
                flips.insert(batch.flipped[n])
                for y in 0..<h {
                    let row = Array(batch.pixelLabels[(n * h + y) * w ..< (n * h + y + 1) * w])
                    let inside = y < size.height ? Array(expected.labels[y * size.width ..< (y + 1) * size.width]) : []
                    #expect(row == inside + [UInt8](repeating: 255, count: w - inside.count), "image \(n) row \(y)")
                }
            }
            // A process's share carries its images' labels.
            let part = try batch.part(1..<3)
            #expect(part.pixelLabels == Array(batch.pixelLabels[h * w ..< 3 * h * w]))
        }
        #expect(flips == [true, false])
    }
}
