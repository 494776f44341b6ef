// The data loader: background threads decode, augment, normalise and pad whole batches ahead of
// the training step, into a bounded queue. Every batch is a pure function of (seed, iteration):
// the images of iteration i are the samples i*N ..< (i+1)*N of the concatenated epoch
// permutations, and each sample's augmentation draws from a generator seeded by
// (seed, epoch, position in the epoch). Thread timing and thread count never change results,
// and starting at iteration k gives exactly the batches a run from 0 gives from k on.
import DCNTensor
import Foundation

/// One batch for the training step (or for evaluation).
public struct TrainingBatch: Sendable {
    /// [N, 3, H, W], ImageNet-normalised, padded with zeros to a multiple of the size divisibility.
    public var images: Tensor
    /// Size of each image inside the padding (after resizing).
    public var sizes: [ImageSize]
    /// Size of each image as decoded.
    public var originalSizes: [ImageSize]
    /// resized / original per axis.
    public var scales: [(x: Float, y: Float)]
    public var imageIDs: [Int]
    /// The objects of each image in the resized (and possibly flipped) image, boxes emptied by
    /// clipping dropped; ignore regions (crowd, difficult) transformed the same way.
    public var instances: [Instances]
    /// Whether each image was flipped horizontally.
    public var flipped: [Bool]
    /// Epoch of the batch's first image (training); 0 in evaluation.
    public var epoch: Int
    /// Iteration number of this batch (0-based).
    public var iteration: Int
    /// Seconds `next()` blocked waiting for this batch.
    public var dataWaitSeconds: Double
    /// Position of the first image in the global batch (data-parallel training: this process's
    /// share starts there; 0 otherwise).
    public var firstImage: Int = 0
    /// Classification: each image's class index, 0-based (empty for detection).
    public var classLabels: [Int] = []
    /// Semantic segmentation (training): the classes of every pixel of the padded batch, N x H x W
    /// row-major, resized and flipped with the images; 255 (void) in the padding. Empty otherwise.
    public var pixelLabels: [UInt8] = []

    /// Images `range` of this batch (positions within it), padded as the whole batch is: what a
    /// process whose share they are would get (`firstImage` moves with them).
    public func part(_ range: Range<Int>) throws -> TrainingBatch {
        let n = images.dim(0)
        guard range.lowerBound >= 0 && range.upperBound <= n && !range.isEmpty else {
            throw DataLoaderError.invalidSettings("images \(range) of a batch of \(n)")
        }
        let plane = images.count / max(1, n)
        var shape = images.shape
        shape[0] = range.count
        var part = self
        part.images = try Tensor(shape: shape, data: Array(images.data[range.lowerBound * plane ..< range.upperBound * plane]))
        func slice<T>(_ xs: [T]) -> [T] { xs.count == n ? Array(xs[range]) : xs }
        part.sizes = slice(sizes); part.originalSizes = slice(originalSizes); part.scales = slice(scales)
        part.imageIDs = slice(imageIDs); part.instances = slice(instances); part.flipped = slice(flipped)
        part.classLabels = slice(classLabels)
        if !pixelLabels.isEmpty {
            let pixels = images.dim(2) * images.dim(3)
            part.pixelLabels = Array(pixelLabels[range.lowerBound * pixels ..< range.upperBound * pixels])
        }
        part.firstImage = firstImage + range.lowerBound
        return part
    }
}

/// One process's part of every global batch in data-parallel training: images
/// `rank * N / ranks ..< (rank + 1) * N / ranks` of each batch of N, padded to the size the whole
/// batch is padded to, so each image's tensor is the one a single process would see.
public struct BatchShare: Sendable, Equatable {
    public let rank: Int
    public let ranks: Int
    public init(rank: Int, ranks: Int) { self.rank = rank; self.ranks = ranks }
}

/// Errors of the loader itself (decode errors are `ImageError`s, which name the file).
public enum DataLoaderError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Evaluation mode has returned every image.
    case endOfData
    case invalidSettings(String)

    public var description: String {
        switch self {
        case .endOfData: return "the evaluation loader has returned every image"
        case .invalidSettings(let m): return "data loader: \(m)"
        }
    }
}

public final class DataLoader: @unchecked Sendable {
    public enum Mode: Sendable, Equatable {
        /// Infinite stream over shuffled epochs with random augmentation.
        case training
        /// One pass in dataset order, every image, no randomness (the last batch may be smaller).
        case evaluation
    }

    public let mode: Mode
    public let imagesPerBatch: Int
    /// Batches in one pass over the data: floor(images / N) steps per epoch in training (the
    /// stream itself runs across epoch boundaries), ceil(images / N) in evaluation.
    public let iterationsPerEpoch: Int
    private let state: LoaderState

    /// - Parameters:
    ///   - augmentation: resize (multi-scale short side) and flip; evaluation uses `.test(...)`.
    ///   - seed: determines the epoch permutations and every image's augmentation.
    ///   - workers: background threads (results do not depend on it).
    ///   - prefetch: batches prepared ahead of the consumer at most (the queue bound).
    ///   - startIteration: the first iteration `next()` returns (exact resume from a checkpoint).
    public init(dataset: Dataset, imagesPerBatch: Int, augmentation: Augmentation, mode: Mode = .training,
                seed: UInt64 = 0, workers: Int = 2, prefetch: Int = 4, normalization: PixelNormalization = .imageNet,
                sizeDivisibility: Int = 32, startIteration: Int = 0, share: BatchShare? = nil,
                classification: ClassificationTransform? = nil) throws {
        guard !dataset.images.isEmpty else { throw DataLoaderError.invalidSettings("the dataset has no images") }
        guard imagesPerBatch >= 1 else { throw DataLoaderError.invalidSettings("images per batch must be at least 1, got \(imagesPerBatch)") }
        guard workers >= 1, prefetch >= 1 else { throw DataLoaderError.invalidSettings("workers and prefetch must be at least 1") }
        guard startIteration >= 0 else { throw DataLoaderError.invalidSettings("startIteration must be 0 or more, got \(startIteration)") }
        guard sizeDivisibility >= 1 else { throw DataLoaderError.invalidSettings("size divisibility must be at least 1") }
        if let share {
            guard mode == .training, share.ranks >= 1, (0..<share.ranks).contains(share.rank), imagesPerBatch % share.ranks == 0 else {
                throw DataLoaderError.invalidSettings("a training batch of \(imagesPerBatch) images cannot be split evenly over \(share.ranks) processes")
            }
        }
        self.mode = mode
        self.imagesPerBatch = imagesPerBatch
        let n = dataset.images.count
        iterationsPerEpoch = mode == .training ? max(1, n / imagesPerBatch) : (n + imagesPerBatch - 1) / imagesPerBatch
        let end = mode == .training ? Int.max : iterationsPerEpoch
        var aug = augmentation
        // Evaluation is deterministic: no flip, or (multi-view testing) every image flipped.
        if mode == .evaluation && aug.flipProbability != 1 { aug.flipProbability = 0 }
        let plan = BatchPlan(images: dataset.images, imagesPerBatch: imagesPerBatch, augmentation: aug, mode: mode, seed: seed,
                             normalization: normalization, sizeDivisibility: sizeDivisibility, share: share, classification: classification,
                             labelClasses: dataset.classNames.count)
        state = LoaderState(plan: plan, start: startIteration, end: end, prefetch: prefetch)
        for _ in 0..<workers {
            let s = state
            let thread = Thread { s.workLoop() }
            thread.name = "dcn-data-loader"
            thread.start()
        }
    }

    /// The paper's training loader: multi-scale short side, longer side at most `maxSize`, flip 0.5.
    public static func training(dataset: Dataset, imagesPerBatch: Int, shortEdges: [Int], maxSize: Int, seed: UInt64,
                                workers: Int = 2, startIteration: Int = 0) throws -> DataLoader {
        try DataLoader(dataset: dataset, imagesPerBatch: imagesPerBatch, augmentation: .training(shortEdges: shortEdges, maxSize: maxSize),
                       mode: .training, seed: seed, workers: workers, startIteration: startIteration)
    }

    /// A classification loader: training batches of random resized crops (flipped half of the
    /// time), or in evaluation every image once, in order, resized and centre-cropped.
    public static func classification(dataset: Dataset, imagesPerBatch: Int, transform: ClassificationTransform, mode: Mode,
                                      seed: UInt64 = 0, workers: Int = 2, startIteration: Int = 0, share: BatchShare? = nil) throws -> DataLoader {
        try DataLoader(dataset: dataset, imagesPerBatch: imagesPerBatch, augmentation: try .test(), mode: mode, seed: seed, workers: workers,
                       sizeDivisibility: 1, startIteration: startIteration, share: share, classification: transform)
    }

    /// The evaluation loader: every image once, in order, at the test size, not flipped (or, with
    /// `flip`, every image flipped horizontally after resizing).
    public static func evaluation(dataset: Dataset, imagesPerBatch: Int = 1, shortEdge: Int, maxSize: Int, flip: Bool = false,
                                  workers: Int = 2, prefetch: Int = 4) throws -> DataLoader {
        var augmentation = try Augmentation.test(shortEdge: shortEdge, maxSize: maxSize)
        augmentation.flipProbability = flip ? 1 : 0
        return try DataLoader(dataset: dataset, imagesPerBatch: imagesPerBatch, augmentation: augmentation,
                              mode: .evaluation, workers: workers, prefetch: prefetch)
    }

    deinit { state.stop() }

    /// The iteration the next call to `next()` returns.
    public var iteration: Int { state.currentIteration }

    /// The next batch, waiting for the workers if needed. A decode error of one image is thrown
    /// here (naming the file) and the loader moves on to the next batch. Evaluation mode throws
    /// `DataLoaderError.endOfData` after the last batch.
    public func next() throws -> TrainingBatch {
        try state.take()
    }

    /// Like `next()`, but nil at the end of an evaluation pass.
    public func nextIfAvailable() throws -> TrainingBatch? {
        do { return try next() } catch DataLoaderError.endOfData { return nil }
    }
}

/// What a batch is made of, as a pure function of its iteration number.
struct BatchPlan: Sendable {
    let images: [DatasetImage]
    let imagesPerBatch: Int
    let augmentation: Augmentation
    let mode: DataLoader.Mode
    let seed: UInt64
    let normalization: PixelNormalization
    let sizeDivisibility: Int
    let share: BatchShare?
    /// Set for classification batches (fixed-size crops and class labels).
    let classification: ClassificationTransform?
    /// Classes of the label maps (background included); training batches of images with a label
    /// map carry their pixel labels.
    let labelClasses: Int

    /// The epoch's order: a Fisher-Yates shuffle seeded by (seed, epoch).
    func permutation(epoch: Int) -> [Int] {
        var order = Array(0..<images.count)
        var rng = SeededGenerator(seed: deriveSeed(seed, 0x5348_5546, UInt64(epoch)))
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return order
    }

    /// (dataset index, epoch, position in the epoch) of the batch's samples.
    func samples(iteration: Int, permutations: (Int) -> [Int]) -> [(index: Int, epoch: Int, position: Int)] {
        let n = images.count
        var out = [(index: Int, epoch: Int, position: Int)]()
        for j in 0..<imagesPerBatch {
            let g = iteration * imagesPerBatch + j
            if mode == .evaluation {
                if g < n { out.append((g, 0, g)) }
            } else {
                let epoch = g / n, position = g % n
                out.append((permutations(epoch)[position], epoch, position))
            }
        }
        return out
    }

    /// The batch of `samples` (with a share, only the share's images, padded as the whole batch).
    func build(iteration: Int, samples all: [(index: Int, epoch: Int, position: Int)]) throws -> TrainingBatch {
        if let classification { return try buildClassification(iteration: iteration, samples: all, classification) }
        var prepared = [PreparedImage](), ids = [Int](), instances = [Instances](), flipped = [Bool](), labelMaps = [LabelMap]()
        var mine = all.indices, padTo = ImageSize(height: 1, width: 1)
        if let share {
            let per = all.count / share.ranks
            mine = share.rank * per ..< (share.rank + 1) * per
            // The other processes' images: their resized sizes, from the same random resize draw and
            // the size their process decodes (EXIF orientation applied; never the
            // annotated size, which may be wrong and would pad this process's images differently).
            for (k, s) in all.enumerated() where !mine.contains(k) {
                let size = try decodedImageSize(path: images[s.index].path)
                var rng = SeededGenerator(seed: deriveSeed(seed, UInt64(s.epoch), UInt64(s.position)))
                let resized = augmentation.resize.transform(for: size, using: &rng).output
                padTo = ImageSize(height: max(padTo.height, resized.height), width: max(padTo.width, resized.width))
            }
        }
        for s in all[mine] {
            let item = images[s.index]
            let decoded = try decodeImage(path: item.path)
            let sample = ImageSample(image: decoded, boxes: item.objects.map(\.box), polygons: item.objects.map(\.polygons))
            var rng = SeededGenerator(seed: deriveSeed(seed, UInt64(s.epoch), UInt64(s.position)))
            let augmented = augmentation.apply(to: sample, using: &rng)
            var objects = Instances(boxes: [], labels: [])
            for (k, o) in item.objects.enumerated() {
                let box = augmented.sample.boxes[k]
                guard box.width > 0, box.height > 0 else { continue }  // emptied by clipping
                if o.ignore {
                    objects.ignore.append(box)
                } else {
                    objects.boxes.append(box); objects.labels.append(o.label); objects.polygons.append(augmented.sample.polygons[k])
                }
            }
            if mode == .training, let labelPath = item.labelPath {
                let labels = try readLabelMap(path: labelPath, classes: labelClasses)
                guard labels.width == decoded.width && labels.height == decoded.height else {
                    throw LabelMapError(file: labelPath, "the label map is \(labels.width)x\(labels.height) but its image \(item.path) is \(decoded.width)x\(decoded.height)")
                }
                let image = augmented.sample.image
                labelMaps.append(labels.resized(width: image.width, height: image.height, flip: augmented.flipped))
            }
            prepared.append(PreparedImage(augmented: augmented, normalization: normalization))
            ids.append(item.id); instances.append(objects); flipped.append(augmented.flipped)
        }
        let batch = try ImageBatch(prepared, sizeDivisibility: sizeDivisibility, minimumSize: padTo)
        var result = TrainingBatch(images: batch.images, sizes: batch.imageSizes, originalSizes: batch.originalSizes, scales: batch.scales,
                                   imageIDs: ids, instances: instances, flipped: flipped,
                                   epoch: all.first?.epoch ?? 0, iteration: iteration, dataWaitSeconds: 0, firstImage: mine.lowerBound)
        if !labelMaps.isEmpty {
            // Each map at the top left of its image's padded plane, as the image is.
            let (h, w) = (batch.images.dim(2), batch.images.dim(3))
            var pixels = [UInt8](repeating: voidLabel, count: labelMaps.count * h * w)
            for (n, map) in labelMaps.enumerated() {
                for y in 0..<map.height {
                    let row = n * h * w + y * w
                    pixels.replaceSubrange(row ..< row + map.width, with: map.labels[y * map.width ..< (y + 1) * map.width])
                }
            }
            result.pixelLabels = pixels
        }
        return result
    }
}

extension BatchPlan {
    /// A classification batch: every image transformed to the same square size, so no padding;
    /// with a share, only the share's images.
    func buildClassification(iteration: Int, samples all: [(index: Int, epoch: Int, position: Int)],
                             _ transform: ClassificationTransform) throws -> TrainingBatch {
        var mine = all.indices
        if let share {
            let per = all.count / share.ranks
            mine = share.rank * per ..< (share.rank + 1) * per
        }
        var tensors: [Tensor] = [], labels: [Int] = [], ids: [Int] = [], originals: [ImageSize] = []
        for s in all[mine] {
            let item = images[s.index]
            let decoded = try decodeImage(path: item.path)
            var rng = SeededGenerator(seed: deriveSeed(seed, UInt64(s.epoch), UInt64(s.position)))
            let image = mode == .training ? try transform.training(decoded, using: &rng) : try transform.test.apply(decoded)
            tensors.append(normalization.tensor(from: image))
            labels.append(item.classLabel); ids.append(item.id)
            originals.append(ImageSize(height: decoded.height, width: decoded.width))
        }
        let (stacked, sizes) = try padAndStack(tensors, sizeDivisibility: 1)
        return TrainingBatch(images: stacked, sizes: sizes, originalSizes: originals, scales: sizes.map { _ in (1, 1) }, imageIDs: ids,
                             instances: sizes.map { _ in Instances(boxes: [], labels: []) }, flipped: sizes.map { _ in false },
                             epoch: all.first?.epoch ?? 0, iteration: iteration, dataWaitSeconds: 0, firstImage: mine.lowerBound,
                             classLabels: labels)
    }
}

/// The queue shared by the workers and the consumer, guarded by one condition variable.
/// Workers claim iterations in order up to `consumed + prefetch` and park results by iteration.
final class LoaderState: @unchecked Sendable {
    let plan: BatchPlan
    let end: Int
    let prefetch: Int
    private let condition = NSCondition()
    private var nextToBuild: Int
    private var consumed: Int
    private var ready = [Int: Result<TrainingBatch, Error>]()
    private var stopped = false
    private var permutationCache = [Int: [Int]]()

    init(plan: BatchPlan, start: Int, end: Int, prefetch: Int) {
        self.plan = plan; self.end = end; self.prefetch = prefetch
        nextToBuild = start; consumed = start
    }

    var currentIteration: Int {
        condition.lock(); defer { condition.unlock() }
        return consumed
    }

    func stop() {
        condition.lock(); stopped = true; condition.broadcast(); condition.unlock()
    }

    /// Epoch permutations, computed once (under the lock) and kept for the current epochs only.
    private func permutationLocked(_ epoch: Int) -> [Int] {
        if let p = permutationCache[epoch] { return p }
        let p = plan.permutation(epoch: epoch)
        permutationCache[epoch] = p
        for k in permutationCache.keys where k < epoch - 1 { permutationCache[k] = nil }
        return p
    }

    func workLoop() {
        while true {
            condition.lock()
            while !stopped && (nextToBuild >= consumed + prefetch || nextToBuild >= end) { condition.wait() }
            if stopped { condition.unlock(); return }
            let iteration = nextToBuild
            nextToBuild += 1
            let samples = plan.samples(iteration: iteration) { permutationLocked($0) }
            condition.unlock()
            let result = Result { try plan.build(iteration: iteration, samples: samples) }
            condition.lock()
            ready[iteration] = result
            condition.broadcast()
            condition.unlock()
        }
    }

    func take() throws -> TrainingBatch {
        let t0 = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        let iteration = consumed
        if iteration >= end { condition.unlock(); throw DataLoaderError.endOfData }
        while ready[iteration] == nil { condition.wait() }
        let result = ready.removeValue(forKey: iteration)!
        consumed += 1
        condition.broadcast()
        condition.unlock()
        var batch = try result.get()
        batch.dataWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return batch
    }
}
