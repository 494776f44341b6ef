// A detector run over a dataset: sharded over processes, one pass per image or several views
// (multi-scale and flipped testing) merged, the detections mapped back into the original images
// and their masks pasted.
import DCNAnnotations
import DCNConfig
import DCNData
import DCNDistributed
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import Foundation

/// Detections of every image of `dataset` (in dataset order) in original image coordinates,
/// decoded and resized ahead by the evaluation loader; Mask R-CNN masks are pasted into the
/// original image (detectron2's paste_masks_in_image, threshold 0.5). A `stop` request is
/// honoured between batches (it throws `Stopped`).
///
/// With `merged` false the detector runs once per image at `views[0]`. With `merged` true it runs
/// every view (multi-scale and flipped testing) and merges the detections: see `mergedDetections`.
///
/// With several processes (`group`), process r runs the batches r, r + size, ... (the same batches,
/// padded the same way, as one process runs) and rank 0 gathers every image's detections: it
/// returns them all, the other processes nil. A stop request of any process stops every process
/// between batches.
///
/// `progress(done, total)` is called before each batch and at the end with the number of images
/// done (with several processes: the images of the rounds of batches every process finished).
public func runInference(_ model: GeneralizedRCNN, dataset: Dataset, views: [TestView], maxSize: Int, merged: Bool, imagesPerBatch: Int,
                         workers: Int = 2, stop: StopRequest? = nil, group: ProcessGroup = .world,
                         progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> [[ImageDetection]]? {
    guard let first = views.first, merged || (views.count == 1 && !first.flip) else {
        throw TrainingError("inference needs one unflipped view, or merged views (got \(views.map(\.description)))")
    }
    let shard = { (images: Dataset, beforeBatch: () throws -> Void) throws -> [[ImageDetection]] in
        merged ? try runMergedInferenceShard(model, dataset: images, views: views, maxSize: maxSize, imagesPerBatch: imagesPerBatch,
                                             beforeBatch: beforeBatch)
               : try runInferenceShard(model, dataset: images, shortEdge: first.shortEdge, maxSize: maxSize, imagesPerBatch: imagesPerBatch,
                                       workers: workers, beforeBatch: beforeBatch)
    }
    let total = dataset.images.count
    guard group.isDistributed else {
        var batch = 0
        let all = try shard(dataset) {
            try stop?.check()
            progress?(min(total, batch * imagesPerBatch), total)
            batch += 1
        }
        progress?(total, total)
        return all
    }
    let batches = (dataset.images.count + imagesPerBatch - 1) / imagesPerBatch
    let mine = stride(from: group.rank, to: batches, by: group.size).flatMap { b in
        b * imagesPerBatch ..< min(dataset.images.count, (b + 1) * imagesPerBatch)
    }
    var subset = dataset
    subset.images = mine.map { dataset.images[$0] }
    let rounds = (batches + group.size - 1) / group.size
    var round = 0
    // Every process checks for a stop in each round, including those whose shard has ended.
    let agreeOnStop = {
        let signal = try group.max(Double(stop?.signal ?? 0))
        if signal != 0 { throw Stopped(signal: Int32(signal)) }
        progress?(min(total, round * group.size * imagesPerBatch), total)
        round += 1
    }
    let detections = subset.images.isEmpty ? [] : try shard(subset, agreeOnStop)
    while round < rounds { try agreeOnStop() }
    guard let parts = try group.gather(DetectionCodec.encode(zip(mine, detections).map { ($0, $1) })) else { return nil }
    progress?(total, total)
    var all = [[ImageDetection]](repeating: [], count: dataset.images.count)
    for part in parts { for (index, dets) in try DetectionCodec.decode(part) { all[index] = dets } }
    return all
}

/// Detections of every image of `dataset` in order, one pass at `shortEdge`; `beforeBatch` runs
/// before each batch.
func runInferenceShard(_ model: GeneralizedRCNN, dataset: Dataset, shortEdge: Int, maxSize: Int, imagesPerBatch: Int, workers: Int,
                       beforeBatch: () throws -> Void) throws -> [[ImageDetection]] {
    let ws = Workspace()
    let loader = try DataLoader.evaluation(dataset: dataset, imagesPerBatch: imagesPerBatch, shortEdge: shortEdge,
                                           maxSize: maxSize, workers: workers)
    var all: [[ImageDetection]] = []
    while let batch = try loader.nextIfAvailable() {
        try beforeBatch()
        let detections = try model.detect(images: batch.images, sizes: batch.sizes, ws)
        for (i, dets) in detections.enumerated() {
            all.append(try originalImageDetections(dets, boxes: batch.toOriginal(dets.map(\.box), image: i), mirrored: dets.map { _ in false },
                                                   imageSize: batch.originalSizes[i], maskSize: model.pastedMaskSize))
        }
    }
    return all
}

/// Multi-view testing (the MSRA Deformable-ConvNets tester's merge, plus flipped views): every view
/// of a batch runs the detector up to the RoI head's candidates (scores above the threshold,
/// decoded, clipped, before NMS); each view's candidates are mapped into the first view's pixels
/// (un-flipped, scaled per axis); the union gets one per-class NMS (`roi_head.nms_threshold`) and
/// keeps the top `roi_head.detections_per_image`. A kept box's mask comes from its own view
/// (mirrored back for a flipped view). Merging in the first view's pixels makes one unflipped view
/// give exactly the one-pass detections.
///
/// The views' loaders advance together, so only the current batch of every view is in memory.
func runMergedInferenceShard(_ model: GeneralizedRCNN, dataset: Dataset, views: [TestView], maxSize: Int, imagesPerBatch: Int,
                             beforeBatch: () throws -> Void) throws -> [[ImageDetection]] {
    let ws = Workspace()
    let loaders = try views.map {
        try DataLoader.evaluation(dataset: dataset, imagesPerBatch: imagesPerBatch, shortEdge: $0.shortEdge, maxSize: maxSize, flip: $0.flip,
                                  workers: 1, prefetch: 1)
    }
    var all: [[ImageDetection]] = []
    while let first = try loaders[0].nextIfAvailable() {
        try beforeBatch()
        var batches = [first]
        for loader in loaders.dropFirst() {
            guard let batch = try loader.nextIfAvailable(), batch.imageIDs == first.imageIDs else {
                throw TrainingError("multi-view testing: the views' loaders returned different images (internal error)")
            }
            batches.append(batch)
        }
        let outputs = try batches.map { try model.detectionCandidates(images: $0.images, sizes: $0.sizes, ws) }
        let merged = try first.sizes.indices.map { i in
            try mergeViewCandidates(outputs.map { $0.candidates[i] }, sizes: batches.map { $0.sizes[i] }, flipped: views.map(\.flip),
                                    select: model.boxHead.selection)
        }
        var detections = merged.map { $0.map(\.detection) }
        if !model.detectionAdditions.isEmpty {
            // Each view annotates its kept boxes (masks, ...), on its own features and boxes.
            for v in views.indices {
                let mine = merged.map { kept in kept.indices.filter { kept[$0].view == v } }
                var boxes = mine.indices.map { i in mine[i].map { outputs[v].candidates[i][merged[i][$0].index] } }
                if boxes.allSatisfy(\.isEmpty) { continue }
                try model.annotate(&boxes, features: outputs[v].features, ws)
                for i in mine.indices { for (j, d) in zip(mine[i], boxes[i]) { detections[i][j].takeAdditions(from: d) } }
            }
        }
        for i in first.sizes.indices {
            all.append(try originalImageDetections(detections[i], boxes: first.toOriginal(detections[i].map(\.box), image: i),
                                                   mirrored: merged[i].map { views[$0.view].flip },
                                                   imageSize: first.originalSizes[i], maskSize: model.pastedMaskSize))
        }
    }
    return all
}

/// One image's candidates from every view (`candidates[v]`, predicted on the image resized to
/// `sizes[v]`, flipped first if `flipped[v]`) merged: each mapped into the first view's pixels, the
/// union selected by `select` (per-class NMS and the top detections). Returns the kept detections
/// by descending score, each with its view and its index among that view's candidates.
public func mergeViewCandidates(_ candidates: [[Detection]], sizes: [ImageSize], flipped: [Bool],
                                select: ([Detection]) throws -> [Int]) throws -> [(detection: Detection, view: Int, index: Int)] {
    var union: [Detection] = [], source: [(view: Int, index: Int)] = []
    for (v, viewCandidates) in candidates.enumerated() {
        for (k, c) in viewCandidates.enumerated() {
            var d = c
            d.box = mapBetweenViews(c.box, from: sizes[v], flipped: flipped[v], to: sizes[0])
            union.append(d); source.append((v, k))
        }
    }
    return try select(union).map { (union[$0], source[$0].view, source[$0].index) }
}

/// A box predicted on an image of size `from` (flipped horizontally first if `flipped`) in the
/// pixels of the same image at size `to`: un-flipped, then each axis scaled by to / from.
public func mapBetweenViews(_ b: Box, from: ImageSize, flipped: Bool, to: ImageSize) -> Box {
    let w = Float(from.width)
    let unflipped = flipped ? Box(w - b.x2, b.y1, w - b.x1, b.y2) : b
    if from == to { return unflipped }
    let sx = Float(to.width) / Float(from.width), sy = Float(to.height) / Float(from.height)
    return Box(unflipped.x1 * sx, unflipped.y1 * sy, unflipped.x2 * sx, unflipped.y2 * sy)
}

/// Detections with their boxes in the original image (`boxes`) and masks pasted into it (a mask
/// predicted on a flipped view is mirrored first).
func originalImageDetections(_ detections: [Detection], boxes: [Box], mirrored: [Bool], imageSize: ImageSize,
                             maskSize: Int) throws -> [ImageDetection] {
    var out: [ImageDetection] = []
    for (k, d) in detections.enumerated() {
        let b = boxes[k]
        let mask = try d.mask.map { probabilities in
            let grid = mirrored[k] ? mirrorRows(probabilities, width: maskSize) : probabilities
            return try pasteMaskRLE(probabilities: grid, maskSize: maskSize, box: MaskBox(x0: b.x1, y0: b.y1, x1: b.x2, y1: b.y2),
                                    imageHeight: imageSize.height, imageWidth: imageSize.width)
        }
        out.append(ImageDetection(detection: Detection(box: b, score: d.score, label: d.label), mask: mask))
    }
    return out
}

extension GeneralizedRCNN {
    /// Side of the mask grids the model predicts (0: none).
    var pastedMaskSize: Int {
        for addition in detectionAdditions {
            switch addition {
            case .mask(let size): return size
            }
        }
        return 0
    }
}

/// A row-major grid of rows `width` wide, each row reversed (a horizontal flip).
func mirrorRows(_ grid: [Float], width: Int) -> [Float] {
    var out = grid
    for row in stride(from: 0, to: grid.count, by: width) {
        for x in 0..<width { out[row + x] = grid[row + width - 1 - x] }
    }
    return out
}

extension TrainingBatch {
    /// Boxes of image `index` mapped from the network input back to the original image.
    func toOriginal(_ boxes: [Box], image index: Int) -> [Box] {
        mapToOriginal(boxes, resized: sizes[index], original: originalSizes[index])
    }
}
