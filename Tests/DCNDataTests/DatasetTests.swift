// Annotation loading: COCO and VOC fixtures (category mapping, crowd and difficult as ignore,
// 0-based VOC boxes) and bad input reported with the offending ids or positions.
import DCNData
import DCNEval
import DCNTensor
import Foundation
import TestSupport
import Testing
import DCNAnnotations

func writeText(_ text: String, _ path: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

@Suite("Dataset loading")
struct DatasetTests {
    @Test("COCO fixture: 100 images, 839 objects, contiguous labels, crowd kept as ignore")
    func cocoFixture() throws {
        let d = try Dataset.coco(annotations: fixturePath("coco/instances_val2014_100.json"), imageRoot: "/images", skipEmpty: false)
        #expect(d.warnings.isEmpty)
        #expect(d.images.count == 100)
        #expect(d.objectCount == 839)
        #expect(d.classNames.count == 80 && d.categoryIDs.count == 80)
        #expect(d.categoryIDs == d.categoryIDs.sorted())
        #expect(d.label(forCategoryID: 18) == 17 && d.classNames[16] == "dog")
        #expect(d.images.flatMap(\.objects).filter(\.ignore).count == 9)
        let image74 = try #require(d.images.first { $0.id == 74 })
        #expect(image74.path.hasPrefix("/images/"))
        // annotation 1774: bbox [61.87, 276.25, 296.42, 103.18] -> x1y1x2y2
        let dog = try #require(image74.objects.first { abs($0.box.x1 - 61.87) < 1e-4 })
        #expect(dog.label == 17 && !dog.ignore)
        #expect(abs(dog.box.x2 - (61.87 + 296.42)) < 1e-3 && abs(dog.box.y2 - (276.25 + 103.18)) < 1e-3)
        #expect(!dog.polygons.isEmpty && dog.polygons[0].count % 2 == 0)
        // crowd annotation 905500000715 on image 715: category 55, box [49, 155, 457, 324]
        let image715 = try #require(d.images.first { $0.id == 715 })
        let crowd = try #require(image715.objects.first { $0.ignore })
        #expect(crowd.box == Box(49, 155, 49 + 457, 155 + 324))
        #expect(crowd.label == d.label(forCategoryID: 55))
    }

    @Test("COCO skipEmpty drops images without non-crowd objects (training), keeps them otherwise")
    func cocoSkipEmpty() throws {
        let dir = try temporaryFolder("skip")
        let path = dir + "/a.json"
        try writeText("""
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
                    {"id": 2, "file_name": "b.jpg", "width": 10, "height": 10},
                    {"id": 3, "file_name": "c.jpg", "width": 10, "height": 10}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0},
                         {"id": 2, "image_id": 2, "category_id": 7, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 1}],
         "categories": [{"id": 7, "name": "x"}]}
        """, path)
        #expect(try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: true).images.map(\.id) == [1])
        #expect(try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false).images.map(\.id) == [1, 2, 3])
    }

    @Test("COCO bad entries are skipped with warnings naming the ids")
    func cocoBadEntries() throws {
        let dir = try temporaryFolder("bad")
        let path = dir + "/a.json"
        try writeText("""
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
         "annotations": [{"id": 11, "image_id": 1, "category_id": 7, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0},
                         {"id": 12, "image_id": 99, "category_id": 7, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0},
                         {"id": 13, "image_id": 1, "category_id": 8, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0},
                         {"id": 14, "image_id": 1, "category_id": 7, "bbox": [1, 1, 0, 2], "area": 0, "iscrowd": 0},
                         {"id": 15, "image_id": 1, "category_id": 7, "bbox": [1, 1, 3, -2], "area": 0, "iscrowd": 0}],
         "categories": [{"id": 7, "name": "x"}]}
        """, path)
        let d = try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false)
        #expect(d.objectCount == 1)
        #expect(d.warnings.count == 4)
        #expect(d.warnings.contains { $0.contains("annotation id 12") && $0.contains("image id 99") })
        #expect(d.warnings.contains { $0.contains("annotation id 13") && $0.contains("unknown category id 8") })
        #expect(d.warnings.contains { $0.contains("annotation id 14") && $0.contains("non-positive box") })
        #expect(d.warnings.contains { $0.contains("annotation id 15") && $0.contains("non-positive box") })
    }

    @Test("COCO RLE masks that are garbage or do not add up to their size are warnings naming the annotation")
    func cocoBadRLE() throws {
        let dir = try temporaryFolder("rle")
        let path = dir + "/a.json"
        func annotation(_ id: Int, _ counts: String) -> String {
            "{\"id\": \(id), \"image_id\": 1, \"category_id\": 7, \"bbox\": [1, 1, 2, 2], \"area\": 4, \"iscrowd\": 1, \"segmentation\": {\"size\": [132, 190], \"counts\": \(counts)}}"
        }
        try writeText("""
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 190, "height": 132}],
         "annotations": [\(annotation(1, "\"5X_Y2\"")), \(annotation(2, "\"garbage~\"")), \(annotation(3, "[10, 20]")), \(annotation(4, "[25080]"))],
         "categories": [{"id": 7, "name": "x"}]}
        """, path)
        let d = try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false)
        #expect(d.objectCount == 4)
        #expect(d.warnings.count == 3)
        #expect(d.warnings.contains { $0.hasPrefix("annotation id 1 (image id 1)") && $0.contains("75245 pixels, expected 132x190 = 25080") })
        #expect(d.warnings.contains { $0.hasPrefix("annotation id 2 (image id 1)") && $0.contains("outside '0'...'o'") })
        #expect(d.warnings.contains { $0.hasPrefix("annotation id 3 (image id 1)") && $0.contains("30 pixels") })
    }

    @Test("Malformed COCO JSON names the file, line and column")
    func cocoMalformed() throws {
        let dir = try temporaryFolder("malformed")
        let path = dir + "/broken.json"
        try writeText("{\"images\": [\n  {\"id\": 1, \"file_name\": \"a.jpg\"}\n  {\"id\": 2}]}", path)
        do {
            _ = try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false)
            Issue.record("expected an error")
        } catch let e as JSONReadError {
            #expect(e.file == path)
            #expect(e.line == 3 && e.column == 3, "\(e)")
        }
        try writeText("{\"images\": [], \"annotations\": []}", path)
        #expect(throws: COCOFormatError.self) { try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false) }
        try writeText("{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}, {\"id\": 1, \"file_name\": \"b.jpg\"}], \"categories\": []}", path)
        #expect(throws: DatasetError.self) { try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false) }
    }

    @Test("VOC fixture: 0-based boxes, difficult as ignore (or dropped), sizes, class labels")
    func vocFixture() throws {
        let devkit = fixturePath("voc/VOCdevkit/VOC2007")
        let d = try Dataset.voc(devkits: [devkit], splits: ["test"])
        #expect(d.warnings.isEmpty)
        #expect(d.images.count == 25 && d.objectCount == 69)
        #expect(d.classNames == vocClassNames && d.categoryIDs == Array(1...20))
        #expect(d.images.flatMap(\.objects).filter(\.ignore).count == 16)
        let first = d.images[0]
        #expect(first.name == "000001" && first.id == 0 && first.width == 360 && first.height == 389)
        #expect(first.path.hasSuffix("VOC2007/JPEGImages/000001.jpg"))
        // <xmin>161</xmin><ymin>34</ymin><xmax>324</xmax><ymax>164</ymax>, bird
        #expect(first.objects[0].box == Box(160, 33, 324, 164))
        #expect(first.objects[0].label == 3)
        let fifth = try #require(d.images.first { $0.name == "000005" })
        let bottle = try #require(fifth.objects.first { $0.ignore })
        #expect(bottle.box == Box(158, 1, 228, 20) && bottle.label == 5)
        let dropped = try Dataset.voc(devkits: [devkit], splits: ["test"], difficultAsIgnore: false)
        #expect(dropped.objectCount == 69 - 16)
        // Two devkits (or splits) combine in order.
        let twice = try Dataset.voc(devkits: [devkit, devkit], splits: ["test"])
        #expect(twice.images.count == 50 && twice.images[25].name == "000001" && twice.images[25].id == 25)
    }

    @Test("VOC: unknown classes and non-positive boxes are warnings; malformed XML names the file")
    func vocBadInput() throws {
        let root = try temporaryFolder("voc") + "/VOC2007"
        try FileManager.default.createDirectory(atPath: root + "/Annotations", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/ImageSets/Main", withIntermediateDirectories: true)
        try writeText("a\nb\n", root + "/ImageSets/Main/train.txt")
        func object(_ name: String, _ box: (Int, Int, Int, Int)) -> String {
            "<object><name>\(name)</name><difficult>0</difficult><bndbox><xmin>\(box.0)</xmin><ymin>\(box.1)</ymin><xmax>\(box.2)</xmax><ymax>\(box.3)</ymax></bndbox></object>"
        }
        try writeText("<annotation><size><width>50</width><height>40</height></size>\(object("dog", (1, 1, 10, 10)))\(object("unicorn", (1, 1, 5, 5)))</annotation>", root + "/Annotations/a.xml")
        try writeText("<annotation>\(object("cat", (10, 10, 5, 20)))</annotation>", root + "/Annotations/b.xml")
        let d = try Dataset.voc(devkits: [root], splits: ["train"])
        #expect(d.objectCount == 1 && d.images[0].width == 50 && d.images[0].height == 40)
        #expect(d.warnings.count == 2)
        #expect(d.warnings.contains { $0.contains("image a") && $0.contains("unicorn") })
        #expect(d.warnings.contains { $0.contains("image b") && $0.contains("non-positive box") })
        try writeText("<annotation><object><name>cat</name></annotation>", root + "/Annotations/b.xml")
        do {
            _ = try Dataset.voc(devkits: [root], splits: ["train"])
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("b.xml"), "\(error)")
        }
        #expect(throws: FileError.self) { try Dataset.voc(devkits: [root], splits: ["missing"]) }
    }
}
