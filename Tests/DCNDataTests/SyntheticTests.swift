// The synthetic dataset: write -> read round trip through Dataset.coco and the VOC reader,
// boxes inside the images, areas equal to DCNEval's pycocotools-equivalent polygon area,
// byte-identical output for a seed whatever the thread count.
import DCNData
import DCNEval
import DCNTensor
import Foundation
import TestSupport
import Testing
import DCNAnnotations

@Suite("Synthetic dataset", .serialized)
struct SyntheticTests {
    @Test("Round trip: COCO JSON loads, boxes inside images, area = rasterised polygon area, bbox = polygon extent",
          arguments: SyntheticDifficulty.allCases)
    func roundTrip(difficulty: SyntheticDifficulty) throws {
        let dir = try temporaryFolder("synth-\(difficulty.rawValue)")
        let summary = try writeSyntheticDataset(out: dir, config: SyntheticConfig(train: 6, val: 3, size: 160, seed: 7, voc: true, difficulty: difficulty))
        #expect(summary.trainImages == 6 && summary.valImages == 3 && summary.objects > 0)
        let train = try Dataset.coco(annotations: dir + "/annotations/instances_train.json", imageRoot: dir + "/images/train", skipEmpty: false)
        let val = try Dataset.coco(annotations: dir + "/annotations/instances_val.json", imageRoot: dir + "/images/val", skipEmpty: false)
        #expect(train.images.count == 6 && val.images.count == 3)
        #expect(train.classNames == syntheticClassNames && train.warnings.isEmpty)
        #expect(val.images.map(\.id) == [7, 8, 9])
        for im in train.images + val.images {
            let decoded = try decodeImage(path: im.path)
            #expect(decoded.width == im.width && decoded.height == im.height)
            #expect(im.width >= 128 && im.width <= 192 && im.height >= 128 && im.height <= 192)
            for o in im.objects {
                #expect(o.box.x1 >= 0 && o.box.y1 >= 0 && o.box.x2 <= Float(im.width) && o.box.y2 <= Float(im.height))
                #expect(o.box.width > 0 && o.box.height > 0 && !o.ignore && (1...6).contains(o.label))
            }
        }
        let gt = try COCOGroundTruth.load(path: dir + "/annotations/instances_train.json")
        let sizes = Dictionary(uniqueKeysWithValues: gt.images.map { ($0.id, ($0.width, $0.height)) })
        for a in gt.annotations {
            guard case .polygons(let p)? = a.segmentation else { Issue.record("annotation \(a.id) has no polygon"); continue }
            let (w, h) = sizes[a.imageID]!
            #expect(Double(try RLE(polygons: p, height: h, width: w).area) == a.area, "annotation \(a.id)")
            let xs = p[0].enumerated().filter { $0.offset % 2 == 0 }.map(\.element), ys = p[0].enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
            let b = try #require(a.bbox)
            #expect(b.x == xs.min()! && b.y == ys.min()! && abs(b.x + b.width - xs.max()!) < 0.006 && abs(b.y + b.height - ys.max()!) < 0.006)
            #expect(!a.isCrowd)
        }
        // The VOC tree holds the same objects.
        let voc = try Dataset.voc(devkits: [dir + "/VOCdevkit/VOC2007"], splits: ["trainval"], classes: syntheticClassNames)
        #expect(voc.images.count == 9 && voc.warnings.isEmpty)
        #expect(voc.objectCount == train.objectCount + val.objectCount)
        for (v, c) in zip(voc.images, train.images + val.images) {
            #expect(v.objects.map(\.label) == c.objects.map(\.label))
            for (a, b) in zip(v.objects, c.objects) { #expect(a.box.iou(b.box) > 0.8) }
        }
    }

    @Test("Same seed, same bytes, whatever the thread count; another seed differs", arguments: SyntheticDifficulty.allCases)
    func determinism(difficulty: SyntheticDifficulty) throws {
        let tag = difficulty.rawValue
        let a = try temporaryFolder("det-a-\(tag)"), b = try temporaryFolder("det-b-\(tag)"), c = try temporaryFolder("det-c-\(tag)")
        let config = SyntheticConfig(train: 4, val: 2, size: 128, seed: 3, difficulty: difficulty)
        _ = try Threads.with(1) { try writeSyntheticDataset(out: a, config: config) }
        _ = try Threads.with(2) { try writeSyntheticDataset(out: b, config: config) }
        var other = config
        other.seed = 4
        _ = try writeSyntheticDataset(out: c, config: other)
        let files = ["annotations/instances_train.json", "annotations/instances_val.json", "images/train/000001.jpg", "images/train/000004.jpg", "images/val/000006.jpg"]
        for f in files {
            let x = try Data(contentsOf: URL(fileURLWithPath: a + "/" + f)), y = try Data(contentsOf: URL(fileURLWithPath: b + "/" + f))
            #expect(x == y, "\(f) differs between thread counts")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: a + "/" + files[2])) != Data(contentsOf: URL(fileURLWithPath: c + "/" + files[2])))
    }

    @Test("Objects span COCO's small, medium and large area ranges over several images")
    func sizeRanges() {
        var small = 0, medium = 0, large = 0
        for i in 0..<12 {
            for o in renderSyntheticImage(seed: 1, split: 0, index: i, size: 320).objects {
                if o.area < 32 * 32 { small += 1 } else if o.area < 96 * 96 { medium += 1 } else { large += 1 }
            }
        }
        #expect(small > 0 && medium > 0 && large > 0, "small \(small) medium \(medium) large \(large)")
    }

    @Test("Easy: at most 4 objects per image, fewer objects and a smaller share of small ones than standard, a different image for the same seed")
    func easy() {
        var counts = [Int](), small = 0, standardSmall = 0, total = 0, standardTotal = 0
        for i in 0..<24 {
            let e = renderSyntheticImage(seed: 1, split: 0, index: i, size: 320, difficulty: .easy)
            let s = renderSyntheticImage(seed: 1, split: 0, index: i, size: 320)
            counts.append(e.objects.count)
            small += e.objects.filter { $0.area < 32 * 32 }.count; total += e.objects.count
            standardSmall += s.objects.filter { $0.area < 32 * 32 }.count; standardTotal += s.objects.count
            #expect(e.image.pixels != s.image.pixels || e.objects != s.objects)
            for o in e.objects { #expect((1...6).contains(o.categoryID) && o.area > 0) }
        }
        // Up to 4 objects are drawn; one may rarely find no place, none is ever added.
        #expect(counts.allSatisfy { $0 <= 4 } && counts.filter { $0 == 0 }.count <= 2, "\(counts)")
        #expect(total < standardTotal && Double(small) / Double(total) < Double(standardSmall) / Double(standardTotal),
                "easy \(small)/\(total) small, standard \(standardSmall)/\(standardTotal)")
    }
}
