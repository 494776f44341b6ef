// Semantic-segmentation label maps (issue 32): palette PNGs read as their indices, grayscale PNGs
// as their values, bad values and unreadable files as errors naming the file; the VOC, SBD and
// Cityscapes layouts; the synthetic labels against the detection data of the same seed; and
// `dcn-data check --segmentation`.
import DCNAnnotations
import DCNData
import Foundation
import TestSupport
import Testing

/// Tests/Fixtures/segmentation/loaders/loaders.json: what Pillow reads from each file.
struct LoaderExpectation: Decodable {
    var width: Int
    var height: Int
    var values: [Int]
    var palette: Bool
}

@Suite("Segmentation label maps")
struct SegmentationLabelTests {
    static let loaders = fixturePath("segmentation/loaders")

    @Test("Palette (8- and 4-bit) and grayscale PNGs give the values Pillow gives (indices, not colours)",
          arguments: ["palette_voc.png", "palette_4bit.png", "gray.png"])
    func readsValues(name: String) throws {
        let all = try JSONDecoder().decode([String: LoaderExpectation].self,
                                           from: Data(contentsOf: URL(fileURLWithPath: Self.loaders + "/loaders.json")))
        let expected = try #require(all[name])
        let samples = try readLabelSamples(path: Self.loaders + "/" + name)
        #expect(samples.width == expected.width && samples.height == expected.height && samples.isPalette == expected.palette)
        #expect(samples.samples.map(Int.init) == expected.values)
        let map = try readLabelMap(path: Self.loaders + "/" + name, classes: 21)
        #expect(map.labels == samples.samples)
    }

    @Test("A value that is neither a class nor 255 is an error naming the file, the value and where it is")
    func badValue() throws {
        let path = Self.loaders + "/bad_value.png"
        #expect(throws: Never.self) { try readLabelMap(path: path, classes: 38) }
        let error = try #require(throws: LabelMapError.self) { try readLabelMap(path: path, classes: 21) }
        #expect(error.description == "\(path): value 37 at x 3, y 2 (2 pixels) is neither a class index 0...20 nor 255 (void); expected a label map of 21 classes")
        let gray = try #require(throws: LabelMapError.self) { try readLabelMap(path: Self.loaders + "/gray.png", classes: 5) }
        #expect(gray.description.contains("value 7 at x 1, y 0 (5 pixels)") && gray.description.contains("(other such values: 18)"), "\(gray)")
    }

    @Test("Missing, truncated, non-PNG, RGB and 16-bit files are errors naming the file and what is expected",
          arguments: [("missing.png", "no such file; expected a label map (palette or grayscale PNG)"),
                      ("truncated.png", "truncated PNG"),
                      ("not_a_png.png", "not a JPEG or PNG file"),
                      ("rgb.png", "RGB with 8-bit samples; a label map is a palette or grayscale PNG of at most 8 bits"),
                      ("gray16.png", "grayscale with 16-bit samples; a label map is a palette or grayscale PNG")])
    func unreadable(name: String, message: String) throws {
        let path = Self.loaders + "/" + name
        do {
            _ = try readLabelMap(path: path, classes: 21)
            Issue.record("\(name) was read")
        } catch {
            #expect("\(error)".hasPrefix(path + ": ") && "\(error)".contains(message), "\(error)")
        }
    }

    @Test("Written label maps read back: 8-bit grayscale and VOC-palette PNGs")
    func writeRoundTrip() throws {
        let dir = try temporaryFolder("labels-write")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let map = LabelMap(width: 5, height: 3, labels: (0..<15).map { UInt8($0 == 7 ? 255 : $0) })
        for palette in [false, true] {
            let path = dir + "/map\(palette).png"
            try writeLabelMap(map, to: path, vocColours: palette)
            let back = try readLabelSamples(path: path)
            #expect(back.isPalette == palette && back.width == 5 && back.height == 3 && back.samples == map.labels)
        }
        #expect(vocPalette.count == 768 && Array(vocPalette[3..<6]) == [128, 0, 0] && Array(vocPalette[765..<768]) == [224, 224, 192])
    }

    @Test("VOC, SBD and Cityscapes layouts list their samples; a Cityscapes folder without train ids says how to make them")
    func layouts() throws {
        let dir = try temporaryFolder("labels-layouts")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let devkit = dir + "/VOC2012"
        try createFolder(devkit + "/ImageSets/Segmentation")
        try Data("2007_000032\r\n\n2007_000039\n".utf8).write(to: URL(fileURLWithPath: devkit + "/ImageSets/Segmentation/trainaug.txt"))
        let voc = try loadSegmentationSplit(layout: .voc, root: devkit, split: "trainaug")
        #expect(voc.map(\.id) == ["2007_000032", "2007_000039"] && voc[0].labelPath == devkit + "/SegmentationClass/2007_000032.png"
                && voc[0].imagePath == devkit + "/JPEGImages/2007_000032.jpg")
        #expect(try loadSegmentationSplit(layout: .sbd, root: devkit, split: "trainaug")[1].labelPath == devkit + "/SegmentationClassAug/2007_000039.png")
        let missing = try #require(throws: FileError.self) { try loadSegmentationSplit(layout: .voc, root: devkit, split: "val") }
        #expect(missing.description.contains("ImageSets/Segmentation/val.txt: no such file"), "\(missing)")

        let city = dir + "/cityscapes"
        try createFolder(city + "/gtFine/val/lindau")
        let map = LabelMap(width: 4, height: 2, labels: [0, 1, 18, 255, 0, 0, 0, 0])
        try writeLabelMap(map, to: city + "/gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png")
        let hint = try #require(throws: FileError.self) { try loadSegmentationSplit(layout: .cityscapes, root: city, split: "val") }
        #expect(hint.description.contains("createTrainIdLabelImgs"), "\(hint)")
        try writeLabelMap(map, to: city + "/gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png")
        let samples = try loadSegmentationSplit(layout: .cityscapes, root: city, split: "val")
        #expect(samples == [SegmentationSample(id: "lindau_000000_000019", imagePath: city + "/leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png",
                                               labelPath: city + "/gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png")])
        #expect(SegmentationLayout.cityscapes.classNames.count == 19 && SegmentationLayout.voc.classNames.count == 21)
        #expect(labelMapKey("lindau/lindau_000000_000019_gtFine_labelTrainIds.png") == "lindau_000000_000019" && labelMapKey("x_leftImg8bit.png") == "x")
    }

    @Test("Synthetic labels: the detection data's images (same bytes), class maps read back, labelled pixels inside masks of their category")
    func syntheticAgreesWithDetectionData() throws {
        let dir = try temporaryFolder("labels-synth")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = SyntheticConfig(train: 3, val: 2, size: 128, seed: 5)
        _ = try writeSyntheticDataset(out: dir, config: config)
        _ = try writeSyntheticSegmentation(out: dir, config: config)
        let root = dir + "/VOCdevkit/VOC2012"
        let train = try loadSegmentationSplit(layout: .voc, root: root, split: "train"), val = try loadSegmentationSplit(layout: .voc, root: root, split: "val")
        #expect(train.map(\.id) == ["000001", "000002", "000003"] && val.map(\.id) == ["000004", "000005"])
        let gt = try COCOGroundTruth.load(path: dir + "/annotations/instances_train.json")
        var inside = 0, labelled = 0
        for (i, s) in train.enumerated() {
            #expect(FileManager.default.contentsEqual(atPath: s.imagePath, andPath: dir + "/images/train/\(s.id).jpg"))
            let map = try readLabelMap(path: s.labelPath, classes: syntheticSegmentationClassNames.count)
            let rendered = renderSyntheticImage(seed: 5, split: 0, index: i, size: 128)
            #expect(map.labels == rendered.classMap && map.width == rendered.image.width && map.height == rendered.image.height)
            // Every category of the image's annotations appears, and labelled pixels lie in a mask of their category.
            let anns = gt.annotations.filter { $0.imageID == i + 1 }
            var masks = [Int: [UInt8]]()
            for a in anns {
                guard case .polygons(let p)? = a.segmentation else { continue }
                let m = try RLE(polygons: p, height: map.height, width: map.width).decode()
                masks[a.categoryID] = masks[a.categoryID].map { zip($0, m).map { max($0, $1) } } ?? m
            }
            for y in 0..<map.height {
                for x in 0..<map.width {
                    let k = Int(map.labels[y * map.width + x])
                    guard k > 0 else { continue }
                    labelled += 1
                    // RLE masks are column-major.
                    if masks[k]?[x * map.height + y] == 1 { inside += 1 }
                }
            }
        }
        print("synthetic labels: \(inside) of \(labelled) labelled pixels inside an annotated mask of their class")
        #expect(labelled > 0 && Double(inside) >= 0.98 * Double(labelled), "\(inside) of \(labelled) labelled pixels inside a mask of their class")
    }

    @Test("dcn-data check --segmentation: a synthetic split passes; a bad value and a missing image are problems naming the files")
    func checkTool() throws {
        let dir = try temporaryFolder("labels-check")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let synth = try runBuiltTool("dcn-data", ["synth", "--out", dir, "--train", "3", "--val", "2", "--size", "96", "--semantic"], timeout: 60)
        #expect(synth.status == 0 && synth.stdout.contains("label maps to \(dir)/VOCdevkit/VOC2012"), "\(synth)")
        let root = dir + "/VOCdevkit/VOC2012"
        let names = "ring,cross,star,arrow,L,T"
        let ok = try runBuiltTool("dcn-data", ["check", "--segmentation", "voc", "--root", root, "--split", "train", "--classes", names])
        #expect(ok.status == 0 && ok.stdout.contains("images: 3 (voc layout, split train; label maps: 3 palette, 0 grayscale PNGs)")
                && ok.stdout.contains("problems: 0") && ok.stdout.contains("\tring\t"), "\(ok)")
        let bad = LabelMap(width: 4, height: 4, labels: [UInt8](repeating: 9, count: 16))
        try writeLabelMap(bad, to: root + "/SegmentationClass/000004.png")
        try FileManager.default.removeItem(atPath: root + "/JPEGImages/000005.jpg")
        let run = try runBuiltTool("dcn-data", ["check", "--segmentation", "voc", "--root", root, "--split", "val", "--classes", names])
        #expect(run.status == 1 && run.stdout.contains("problems: 2"), "\(run)")
        #expect(run.stdout.contains("problem: 000004: \(root)/SegmentationClass/000004.png: value 9 at x 0, y 0 (16 pixels) is neither a class index 0...6 nor 255"), "\(run)")
        #expect(run.stdout.contains("problem: 000005: \(root)/JPEGImages/000005.jpg: "), "\(run)")
        let usage = try runBuiltTool("dcn-data", ["check", "--segmentation", "cityscapes", "--root", root])
        #expect(usage.status != 0 && usage.stderr.contains("--segmentation needs --split NAME"), "\(usage)")
    }
}
