// Transforms against detectron2/Pillow: resize sizes and pixels, flips, augmentation
// determinism, normalisation values, batch padding and mapping boxes back.
import DCNData
import DCNTensor
import Foundation
import Testing

/// Bounding box (detectron2 convention: x2 = last column + 1) of pixels whose red channel is
/// above `threshold`.
func brightBox(_ image: RGBImage, threshold: UInt8 = 128) -> Box? {
    var x1 = Int.max, y1 = Int.max, x2 = -1, y2 = -1
    for y in 0..<image.height {
        for x in 0..<image.width where image[x, y].r > threshold {
            x1 = min(x1, x)
            y1 = min(y1, y)
            x2 = max(x2, x)
            y2 = max(y2, y)
        }
    }
    return x2 < 0 ? nil : Box(Float(x1), Float(y1), Float(x2 + 1), Float(y2 + 1))
}

/// A dark image with a bright rectangle covering pixels [x1, x2) x [y1, y2).
func rectangleImage(width: Int, height: Int, box: Box) -> RGBImage {
    var image = RGBImage(width: width, height: height, fill: (10, 20, 30))
    for y in Int(box.y1)..<Int(box.y2) {
        for x in Int(box.x1)..<Int(box.x2) { image[x, y] = (250, 240, 230) }
    }
    return image
}

func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

@Suite("Transforms")
struct TransformTests {
    @Test("Bilinear resize matches Pillow's Image.resize(BILINEAR)", arguments: [
        (41, 26), (150, 94), (97, 30), (200, 61), (13, 9),
    ])
    func resizeMatchesPillow(size: (Int, Int)) throws {
        let source = try decodeImage(path: imageFixture("resize_src.png"))
        let reference = try decodeImage(path: imageFixture("resize_src_\(size.0)x\(size.1).ref.png"))
        let resized = resizeBilinear(source, width: size.0, height: size.1)
        let d = pixelDifference(resized, reference)
        #expect(d.mean < 0.05, "mean difference \(d.mean)")
        #expect(d.max <= 1, "max difference \(d.max)")
    }

    @Test("Resize to the same size is the identity")
    func resizeIdentity() {
        let image = randomImage(width: 17, height: 11, seed: 5)
        #expect(resizeBilinear(image, width: 17, height: 11) == image)
        // A constant image stays constant whatever the scale (weights sum to one).
        let flat = RGBImage(width: 40, height: 30, fill: (77, 150, 201))
        for (w, h) in [(7, 5), (40, 90), (123, 29)] {
            #expect(resizeBilinear(flat, width: w, height: h) == RGBImage(width: w, height: h, fill: (77, 150, 201)))
        }
    }

    @Test("ResizeShortestEdge output sizes are detectron2's", arguments: [
        (480, 640, 800, 1333, 800, 1067), (640, 480, 800, 1333, 1067, 800), (1000, 100, 800, 1333, 1333, 133),
        (500, 500, 800, 1333, 800, 800), (427, 640, 800, 1333, 800, 1199), (375, 500, 600, 1000, 600, 800),
        (333, 500, 1000, 1666, 1000, 1502), (23, 37, 8, 12, 7, 12), (612, 612, 640, 1333, 640, 640),
    ])
    func outputSizes(c: (Int, Int, Int, Int, Int, Int)) {
        let out = ResizeShortestEdge.outputSize(for: ImageSize(height: c.0, width: c.1), shortEdge: c.2, maxSize: c.3)
        #expect(out == ImageSize(height: c.4, width: c.5))
    }

    @Test("Resized boxes and polygons follow the resized pixels", arguments: [
        (64, 48, 100, 75), (64, 48, 32, 24), (90, 40, 45, 60), (45, 77, 135, 154),
    ])
    func resizeGeometry(c: (Int, Int, Int, Int)) throws {
        let box = Box(12, 8, 40, 30)
        let image = rectangleImage(width: c.0, height: c.1, box: box)
        let resize = ResizeTransform(input: ImageSize(height: c.1, width: c.0), output: ImageSize(height: c.3, width: c.2))
        let resized = resize.apply(image: image)
        #expect(resized.width == c.2 && resized.height == c.3)
        let moved = try #require(resize.apply(boxes: [box]).first)
        let seen = try #require(brightBox(resized))
        for (a, b) in zip(moved.array, seen.array) { #expect(abs(a - b) <= 1.01, "box \(moved) vs pixels \(seen)") }
        // The polygon of the box's corners moves exactly as the box does.
        let polygon: [Float] = [box.x1, box.y1, box.x2, box.y1, box.x2, box.y2, box.x1, box.y2]
        let p = resize.apply(polygons: [polygon])[0]
        #expect(Box(p[0], p[1], p[4], p[5]) == moved)
        #expect(moved.x1 == box.x1 * Float(c.2) / Float(c.0) && moved.y2 == box.y2 * Float(c.3) / Float(c.1))
        // And the inverse brings them back.
        let back = resize.inverse.apply(boxes: [moved])[0]
        #expect(maxDifference(back.array, box.array) < 1e-4)
    }

    @Test("Horizontal flip: detectron2 convention, twice is the identity")
    func flip() throws {
        let box = Box(10, 20, 30, 40)
        let flip = HFlipTransform(width: 100)
        #expect(flip.apply(boxes: [box]) == [Box(70, 20, 90, 40)])
        #expect(flip.apply(polygons: [[10, 20, 30, 25, 0, 1]]) == [[90, 20, 70, 25, 100, 1]])
        var rng = SeededGenerator(seed: 11)
        let boxes = (0..<20).map { _ in
            let x = rng.uniform(0, 80), y = rng.uniform(0, 50)
            return Box(x, y, x + rng.uniform(0, 20), y + rng.uniform(0, 10))
        }
        let polygons = (0..<5).map { _ in (0..<12).map { _ in rng.uniform(0, 100) } }
        // W - (W - x) == x up to Float rounding.
        let twice = flip.apply(boxes: flip.apply(boxes: boxes))
        #expect(maxDifference(twice.flatMap(\.array), boxes.flatMap(\.array)) < 1e-5)
        let twicePolygons = flip.apply(polygons: flip.apply(polygons: polygons))
        #expect(maxDifference(twicePolygons.flatMap { $0 }, polygons.flatMap { $0 }) < 1e-5)
        #expect(twicePolygons.map(\.count) == polygons.map(\.count))
        let image = randomImage(width: 100, height: 7, seed: 2)
        #expect(flip.apply(image: flip.apply(image: image)) == image)
        // Pixels and boxes agree.
        let rect = rectangleImage(width: 100, height: 60, box: box)
        #expect(brightBox(flip.apply(image: rect)) == flip.apply(boxes: [box])[0])
    }

    @Test("Augmentation is deterministic for a seed and keeps targets aligned")
    func augmentation() throws {
        let box = Box(12, 8, 40, 30)
        let sample = ImageSample(image: rectangleImage(width: 64, height: 48, box: box), boxes: [box],
                                 polygons: [[[12, 8, 40, 8, 40, 30, 12, 30]]])
        let augmentation = try Augmentation.training(shortEdges: [24, 48, 96], maxSize: 200)
        var a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42)
        var sizes = Set<Int>(), flips = 0
        for _ in 0..<60 {
            let x = augmentation.apply(to: sample, using: &a), y = augmentation.apply(to: sample, using: &b)
            #expect(x.sample == y.sample && x.flipped == y.flipped)
            sizes.insert(x.sample.image.height)
            if x.flipped { flips += 1 }
            let seen = try #require(brightBox(x.sample.image))
            for (p, q) in zip(x.sample.boxes[0].array, seen.array) { #expect(abs(p - q) <= 1.01) }
            let poly = x.sample.polygons[0][0]
            #expect(Set([poly[0], poly[2]]) == Set([x.sample.boxes[0].x1, x.sample.boxes[0].x2]))
            #expect(x.scaleY == Float(x.sample.image.height) / 48)
        }
        #expect(sizes == [24, 48, 96])
        // A box touching the borders stays inside the image whatever the scale.
        let whole = ImageSample(image: RGBImage(width: 61, height: 37), boxes: [Box(0, 0, 61, 37)])
        for _ in 0..<20 {
            let x = try Augmentation.training(shortEdges: [23, 29, 41, 53], maxSize: 77).apply(to: whole, using: &a)
            #expect(x.sample.boxes == [Box(0, 0, Float(x.sample.image.width), Float(x.sample.image.height))])
        }
        #expect(flips > 15 && flips < 45)
        // Test-time augmentation: no flip, one size.
        var r = SeededGenerator(seed: 1)
        let test = try Augmentation.test(shortEdge: 96, maxSize: 1000).apply(to: sample, using: &r)
        #expect(!test.flipped && test.sample.image.width == 128 && test.sample.image.height == 96)
    }

    @Test("Range sampling covers [lo, hi]")
    func rangeSampling() throws {
        let resize = try ResizeShortestEdge(shortEdgeLengths: [5, 8], maxSize: 100, sampleStyle: .range)
        var rng = SeededGenerator(seed: 3)
        let seen = Set((0..<200).map { _ in resize.sampleShortEdge(using: &rng) })
        #expect(seen == [5, 6, 7, 8])
        #expect(throws: ShapeError.self) { try ResizeShortestEdge(shortEdgeLengths: [9, 8], maxSize: 10, sampleStyle: .range) }
        #expect(throws: ShapeError.self) { try ResizeShortestEdge(shortEdgeLengths: [], maxSize: 10) }
    }

    @Test("Normalisation: ImageNet mean/std on [0, 1] RGB, CHW layout")
    func normalisation() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [0, 128, 255, 124, 116, 104])
        let t = PixelNormalization.imageNet.tensor(from: image)
        #expect(t.shape == [3, 1, 2])
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        let expected: [Float] = [
            (0 / 255 - mean[0]) / std[0], (124 / 255 - mean[0]) / std[0],
            (128 / 255 - mean[1]) / std[1], (116 / 255 - mean[1]) / std[1],
            (255 / 255 - mean[2]) / std[2], (104 / 255 - mean[2]) / std[2],
        ]
        #expect(maxDifference(t.data, expected) < 1e-6)
        #expect(abs(t.data[0] - (-2.117904)) < 1e-5)  // torchvision: (0 - 0.485) / 0.229
        #expect(abs(t.data[4] - 2.64) < 1e-5)         // (1 - 0.406) / 0.225
        let big = smoothImage(width: 123, height: 77)
        #expect(try PixelNormalization.imageNet.image(from: PixelNormalization.imageNet.tensor(from: big)) == big)
    }

    @Test("Batches pad to multiples of 32 with zeros at the bottom and right")
    func batching() throws {
        let a = randomImage(width: 50, height: 40, seed: 1), b = randomImage(width: 33, height: 70, seed: 2)
        let pa = PreparedImage(tensor: PixelNormalization.imageNet.tensor(from: a), originalSize: ImageSize(height: 20, width: 25), scaleX: 2, scaleY: 2)
        let pb = PreparedImage(tensor: PixelNormalization.imageNet.tensor(from: b), originalSize: ImageSize(height: 70, width: 33), scaleX: 1, scaleY: 1)
        let batch = try ImageBatch([pa, pb])
        #expect(batch.images.shape == [2, 3, 96, 64])
        #expect(batch.imageSizes == [ImageSize(height: 40, width: 50), ImageSize(height: 70, width: 33)])
        let H = 96, W = 64
        for (n, p) in [pa, pb].enumerated() {
            let h = p.tensor.dim(1), w = p.tensor.dim(2)
            for c in 0..<3 {
                for y in 0..<H {
                    for x in 0..<W {
                        let v = batch.images.data[((n * 3 + c) * H + y) * W + x]
                        let expected = (y < h && x < w) ? p.tensor.data[(c * h + y) * w + x] : 0
                        if v != expected { Issue.record("image \(n) c\(c) y\(y) x\(x): \(v) vs \(expected)"); return }
                    }
                }
            }
        }
        // Detections on the resized image map back to the original, clipped.
        #expect(batch.toOriginal(boxes: [Box(10, 4, 60, 30)], image: 0) == [Box(5, 2, 25, 15)])
        let (single, sizes) = try padAndStack([pb.tensor], sizeDivisibility: 1)
        #expect(single.shape == [1, 3, 70, 33] && sizes == [ImageSize(height: 70, width: 33)])
        #expect(throws: ShapeError.self) { try padAndStack([]) }
        #expect(throws: ShapeError.self) { try padAndStack([Tensor(zeros: [1, 4, 4])]) }
        #expect(roundUp(800, toMultipleOf: 32) == 800 && roundUp(1067, toMultipleOf: 32) == 1088)
    }

    @Test("Inference preparation: 640x480 -> 1067x800, mapping back to the original")
    func prepareForInference() throws {
        let image = smoothImage(width: 640, height: 480)
        let prepared = PreparedImage(image: image)
        #expect(prepared.tensor.shape == [3, 800, 1067])
        let batch = try ImageBatch([prepared])
        #expect(batch.images.shape == [1, 3, 800, 1088])
        let back = batch.toOriginal(boxes: [Box(0, 0, 1067, 800), Box(1000, 700, 1200, 900)], image: 0)
        #expect(maxDifference(back[0].array, [0, 0, 640, 480]) < 1e-3)
        #expect(back[1].x2 == 640 && back[1].y2 == 480)
    }
}

/// Timing of decode + resize, run only with DCN_IMAGE_BENCH=<a 640x480 JPEG> (e.g. in a release
/// build: `DCN_IMAGE_BENCH=img.jpg swift test -c release --filter imageBenchmark`). If
/// `<img>.up.ref.png` (Pillow's decode resized to 1067x800) exists, it is compared too.
@Test("Decode + resize timing", .enabled(if: ProcessInfo.processInfo.environment["DCN_IMAGE_BENCH"] != nil))
func imageBenchmark() throws {
    let path = ProcessInfo.processInfo.environment["DCN_IMAGE_BENCH"]!
    let threads = ProcessInfo.processInfo.environment["DCN_BENCH_THREADS"].flatMap { Int($0) } ?? Threads.count
    try Threads.with(threads) { try timeDecodeAndResize(path: path) }
}

private func timeDecodeAndResize(path: String) throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let image = try decodeImage(data: data, name: path)
    let size = ResizeShortestEdge.outputSize(for: ImageSize(height: image.height, width: image.width), shortEdge: 800, maxSize: 1333)
    if FileManager.default.fileExists(atPath: path + ".up.ref.png") {
        let reference = try decodeImage(path: path + ".up.ref.png")
        let d = pixelDifference(resizeBilinear(image, width: size.width, height: size.height), reference)
        print("vs Pillow: max \(d.max), mean \(d.mean)")
        #expect(d.max <= 1)
    }
    let clock = ContinuousClock()
    let runs = 30
    func ms(_ body: () throws -> Void) rethrows -> Double {
        let t = try clock.measure { for _ in 0..<runs { try body() } }
        return Double(t.components.attoseconds) / 1e15 / Double(runs) + Double(t.components.seconds) * 1000 / Double(runs)
    }
    let decode = try ms { _ = try decodeImage(data: data, name: path) }
    let resize = ms { _ = resizeBilinear(image, width: size.width, height: size.height) }
    let resized = resizeBilinear(image, width: size.width, height: size.height)
    let normalise = ms { _ = PixelNormalization.imageNet.tensor(from: resized) }
    let horizontalOnly = ms { _ = resizeBilinear(image, width: size.width, height: image.height) }
    let verticalOnly = ms { _ = resizeBilinear(image, width: image.width, height: size.height) }
    print(String(format: "horizontal pass only %.2f ms, vertical pass only %.2f ms", horizontalOnly, verticalOnly))
    print(String(format: "%dx%d: decode %.2f ms, resize to %dx%d %.2f ms, normalise %.2f ms",
                 image.width, image.height, decode, size.width, size.height, resize, normalise))
}
