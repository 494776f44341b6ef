// Classification data against torchvision (Tests/Fixtures/classification, made by
// Tests/Fixtures/generate_classification.py): RandomResizedCrop's boxes for recorded random
// draws, the cropped and resized pixels, the evaluation transform, and the ImageFolder layout.
import DCNData
import DCNTensor
import Foundation
import TestSupport
import Testing

/// Absolute path of a file under Tests/Fixtures/classification.
func classificationFixture(_ name: String) -> String { fixturePath("classification/" + name) }

/// Random values recorded from torch, returned in order.
struct RecordedDraws: CropDraws {
    var values: [Double]
    var next = 0
    mutating func drawUniform(_ low: Double, _ high: Double) -> Double { defer { next += 1 }; return values[next] }
    mutating func drawInteger(below count: Int) -> Int {
        defer { next += 1 }
        let v = Int(values[next])
        precondition(v < count, "recorded integer \(v) is not below \(count)")
        return v
    }
}

/// The largest difference between two images' bytes.
func largestDifference(_ image: RGBImage, _ reference: [Double]) -> Double {
    zip(image.pixels, reference).map { abs(Double($0) - $1) }.max() ?? .infinity
}

@Test func randomResizedCropMatchesTorchvision() throws {
    let spec = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: classificationFixture("transforms.json")))) as! [String: Any]
    let references = try SafeTensorsFile(path: classificationFixture("transforms.safetensors"))
    let size = spec["crop_size"] as! Int
    let cases = spec["cases"] as! [[String: Any]]
    #expect(cases.count == 32)
    var fallbacks = 0
    for c in cases {
        let image = try decodeImage(path: classificationFixture(c["image"] as! String))
        let scale = c["scale"] as! [Double], ratio = c["ratio"] as! [Double]
        let crop = RandomResizedCrop(size: size, scale: (scale[0], scale[1]), ratio: (ratio[0], ratio[1]))
        var draws = RecordedDraws(values: (c["draws"] as! [NSNumber]).map(\.doubleValue))
        let box = crop.box(height: image.height, width: image.width, draws: &draws)
        let expected = c["box"] as! [Int]
        #expect(box == CropBox(top: expected[0], left: expected[1], height: expected[2], width: expected[3]), "\(c["key"]!)")
        #expect(draws.next == draws.values.count, "\(c["key"]!): every recorded draw is used")
        if draws.values.count == 20 { fallbacks += 1 }
        let pixels = try crop.apply(image, box: box)
        let reference = try references.doubles(c["key"] as! String)
        #expect(reference.shape == [size, size, 3])
        #expect(largestDifference(pixels, reference.values) <= 1, "\(c["key"]!): pixels differ by more than 1 grey level")
    }
    #expect(fallbacks >= 4, "the central fallback is exercised")
}

@Test func evaluationResizeAndCentreCropMatchTorchvision() throws {
    let spec = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: classificationFixture("transforms.json")))) as! [String: Any]
    let references = try SafeTensorsFile(path: classificationFixture("transforms.safetensors"))
    let transform = ResizeCenterCrop(resizeSize: spec["resize_size"] as! Int, cropSize: spec["eval_crop"] as! Int)
    for k in 0..<(spec["images"] as! Int) {
        let image = try decodeImage(path: classificationFixture("pattern_\(k).png"))
        let out = try transform.apply(image)
        #expect(out.width == transform.cropSize && out.height == transform.cropSize)
        #expect(largestDifference(out, try references.doubles("eval_\(k)").values) <= 1, "image \(k)")
    }
}

@Test func imageFolderListsSortedClassesAndFiles() throws {
    let train = try Dataset.imageFolder(root: classificationFixture("imagefolder/train"))
    #expect(train.classNames == ["bar", "cross", "disc"])
    #expect(train.images.count == 12)
    #expect(train.images.map(\.classLabel) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    #expect(train.images.first?.name == "bar/0.jpg" && train.images.map(\.id) == Array(0..<12))
    // A folder that is not an ImageFolder split, and a class folder without images.
    #expect(throws: DatasetError.self) { try Dataset.imageFolder(root: classificationFixture("transforms.json")) }
    let dir = NSTemporaryDirectory() + "dcn-imagefolder-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
    do {
        _ = try Dataset.imageFolder(root: dir)
        Issue.record("a class folder without images must be refused")
    } catch let error as DatasetError {
        #expect(error.description.contains("empty") && error.description.contains("no JPEG or PNG images"), "\(error)")
    }
}

@Test func classificationBatchesAreDeterministicCrops() throws {
    let train = try Dataset.imageFolder(root: classificationFixture("imagefolder/train"))
    let transform = ClassificationTransform(train: RandomResizedCrop(size: 32), test: ResizeCenterCrop(resizeSize: 36, cropSize: 32))
    func batches(_ share: BatchShare?) throws -> [TrainingBatch] {
        let loader = try DataLoader.classification(dataset: train, imagesPerBatch: 4, transform: transform, mode: .training, seed: 5, share: share)
        return try (0..<3).map { _ in try loader.next() }
    }
    let whole = try batches(nil), second = try batches(BatchShare(rank: 1, ranks: 2))
    #expect(whole[0].images.shape == [4, 3, 32, 32] && whole[0].classLabels.count == 4)
    // A process's share is the same images, cropped the same way, as in the whole batch.
    for (w, s) in zip(whole, second) {
        #expect(s.firstImage == 2 && s.classLabels == Array(w.classLabels[2...]))
        #expect(s.images.data == Array(w.images.data[(2 * 3 * 32 * 32)...]))
    }
    let evaluation = try DataLoader.classification(dataset: train, imagesPerBatch: 5, transform: transform, mode: .evaluation)
    var seen = 0
    while let batch = try evaluation.nextIfAvailable() { seen += batch.classLabels.count }
    #expect(seen == 12)
}

/// `dcn-data synth-cls` lists each image's shape in objects.json: its box holds the shape (the box's
/// area is at least the shape's, sqrt(area) = size x side), inside the image, and the sizes come from
/// each split's range.
@Test func syntheticClassificationListsEachShape() throws {
    let out = try temporaryFolder("synth-cls-objects")
    defer { try? FileManager.default.removeItem(atPath: out) }
    _ = try writeSyntheticClassificationDataset(out: out, trainPerClass: 2, valPerClass: 3, size: 64, seed: 5,
                                                geometry: (.training(size: 0.35...0.45), .training(size: 0.15...0.75)))
    let objects = try readClassificationObjects(root: out)
    #expect(objects["train"]?.count == 20 && objects["val"]?.count == 30)
    for (split, range) in [("train", 0.35...0.45), ("val", 0.15...0.75)] {
        for object in objects[split] ?? [] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + object.file), "\(object.file)")
            #expect(object.file.hasPrefix(split + "/") && object.file.contains(String(format: "/%02d_", object.label)))
            #expect(range.contains(object.size), "\(object.file): size \(object.size)")
            let box = try Box(object.box)
            #expect(box.x1 >= 0 && box.y1 >= 0 && box.x2 <= 64 && box.y2 <= 64, "\(object.file): \(box)")
            // Shapes near the image side may be clipped; the others' boxes hold their area.
            if object.size < 0.5 { #expect(Double(box.area) >= object.size * object.size * 64 * 64, "\(object.file): \(box), size \(object.size)") }
        }
    }
    try "{}".write(toFile: out + "/objects.json", atomically: true, encoding: .utf8)
    #expect(try readClassificationObjects(root: out).isEmpty)
    try FileManager.default.removeItem(atPath: out + "/objects.json")
    #expect(throws: DatasetError.self) { try readClassificationObjects(root: out) }
}
