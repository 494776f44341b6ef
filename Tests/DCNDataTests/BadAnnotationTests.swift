// Bad annotations that loading refuses (issue 29): malformed polygons and objects without one
// for Mask R-CNN (defect 6), image paths that lead outside the dataset folder (defect 15). Each
// error names the file and the entry; `dcn-data check` and `dcn-train` load through these calls.
import DCNData
import Foundation
import TestSupport
import Testing
import DCNAnnotations

/// A COCO instances file: image 1 (`fileName`, 10x10) with annotation 5 whose segmentation is
/// `segmentation` (JSON) on line 3.
private func cocoInstances(fileName: String = "a.jpg", segmentation: String = "[[1, 1, 3, 1, 3, 3]]") -> String {
    """
    {"images": [{"id": 1, "file_name": "\(fileName)", "width": 10, "height": 10}],
     "annotations": [{"id": 5, "image_id": 1, "category_id": 7, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0,
                      "segmentation": \(segmentation)}],
     "categories": [{"id": 7, "name": "x"}]}
    """
}

private let polygonRule = "a polygon is x, y pairs of at least 3 points (an even count >= 6)"

@Suite("Bad annotations refused at load")
struct BadAnnotationTests {
    @Test("Malformed polygons are refused at load with the file, line, image id and annotation id (they passed dcn-data check and killed dcn-train mid-run)",
          arguments: [("[[1, 2, 3, 4]]", "polygon 0 has 4 numbers; " + polygonRule),
                      ("[[1, 2, 3, 4, 5, 6, 7]]", "polygon 0 has 7 numbers; " + polygonRule),
                      ("[[1, 2, 3, 4, 5, 6], []]", "polygon 1 has 0 numbers; " + polygonRule),
                      ("[]", "is an empty polygon list; expected [[x0, y0, x1, y1, x2, y2, ...], ...] or an RLE"),
                      ("[[1, 2, 1e400, 4, 5, 6]]", "polygon 0 has a coordinate that is not a finite number"),
                      ("[[1, 2, 3e38, 4, 5, 6], [1, 2, 1e39, 4, 5, 6]]", "polygon 1 has a coordinate that is not a finite number")])
    func malformedPolygons(_ segmentation: String, _ problem: String) throws {
        let dir = try temporaryFolder("polygons")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/instances.json"
        try writeText(cocoInstances(segmentation: segmentation), path)
        do {
            _ = try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false)
            Issue.record("expected an error")
        } catch let e as JSONReadError {
            #expect(e.file == path && e.line == 3 && e.message == "annotation id 5 (image id 1): segmentation " + problem, "\(e)")
        }
        // The same object with a well-formed polygon loads.
        try writeText(cocoInstances(), path)
        #expect(try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false).objectWithoutPolygon == nil)
    }

    @Test("An object without a polygon is named by image id, file and annotation id (Mask R-CNN refuses it at start)")
    func objectWithoutPolygon() throws {
        let dir = try temporaryFolder("no-polygon")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/instances.json"
        try writeText(cocoInstances(segmentation: "{\"size\": [10, 10], \"counts\": [0, 100]}"), path)
        let d = try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false)
        #expect(d.objectWithoutPolygon == "image id 1 (a.jpg): annotation id 5 has no polygon segmentation (an RLE or none)")
    }

    @Test("An RLE whose size is not its image's is a problem for dcn-data check, naming the annotation (issue 29, defect 14)")
    func rleOfAnotherSizeThanItsImage() throws {
        let dir = try temporaryFolder("rle-size")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/instances.json"
        try writeText(cocoInstances(segmentation: "{\"size\": [10, 20], \"counts\": [200]}"), path)
        #expect(try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false).warnings == [
            "annotation id 5 (image id 1): segmentation: the RLE's size [10, 20] differs from image id 1's [height, width] = [10, 10] (width and height swapped?); an RLE must have its image's size"])
        try writeText(cocoInstances(segmentation: "{\"size\": [10, 10], \"counts\": [100]}"), path)
        #expect(try Dataset.coco(annotations: path, imageRoot: dir, skipEmpty: false).warnings.isEmpty)
    }

    @Test("A COCO file_name that can lead outside the image folder is refused unless allowed",
          arguments: ["../secret/x.jpg", "../../../../etc/passwd", "/etc/passwd", "sub/../../x.jpg"])
    func cocoPathOutsideTheFolder(_ fileName: String) throws {
        let dir = try temporaryFolder("outside")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/instances.json"
        try writeText(cocoInstances(fileName: fileName), path)
        let problem = fileName.hasPrefix("/") ? "is an absolute path" : "has a '..' component"
        do {
            _ = try Dataset.coco(annotations: path, imageRoot: dir + "/images", skipEmpty: false)
            Issue.record("expected an error")
        } catch let e as DatasetError {
            #expect(e.file == path && e.message.hasPrefix("image id 1: file_name '\(fileName)' \(problem), so it can lie outside the image folder \(dir)/images; "), "\(e)")
            #expect(e.message.contains("data.allow_outside_root: true"))
        }
        let allowed = try Dataset.coco(annotations: path, imageRoot: dir + "/images", skipEmpty: false, allowOutsideRoot: true)
        #expect(allowed.images[0].path == dir + "/images/" + fileName)
        // Names that stay inside load as before.
        try writeText(cocoInstances(fileName: "sub/./a..b.jpg"), path)
        #expect(try Dataset.coco(annotations: path, imageRoot: dir + "/images", skipEmpty: false).images[0].path == dir + "/images/sub/./a..b.jpg")
    }

    @Test("A VOC split line that can lead outside the devkit is refused with the line, unless allowed")
    func vocSplitLineOutsideTheDevkit() throws {
        let dir = try temporaryFolder("voc-outside")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let devkit = dir + "/VOC2007"
        for folder in ["/Annotations", "/ImageSets/Main", "/../elsewhere"] {
            try FileManager.default.createDirectory(atPath: devkit + folder, withIntermediateDirectories: true)
        }
        let xml = "<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
        try writeText(xml, devkit + "/Annotations/a.xml")
        try writeText(xml, dir + "/elsewhere/b.xml")
        let split = devkit + "/ImageSets/Main/train.txt"
        try writeText("a\r\n\r\n../../elsewhere/b\r\n", split)
        do {
            _ = try Dataset.voc(devkits: [devkit], splits: ["train"], classes: ["cat"])
            Issue.record("expected an error")
        } catch let e as VOCError {
            #expect(e.file == split && e.message.hasPrefix("line 3: image id '../../elsewhere/b' has a '..' component, so its files can lie outside the devkit folder \(devkit); "), "\(e)")
        }
        #expect(throws: VOCError.self) { try VOCDataset.load(devkit: devkit, split: "train") }
        #expect(try Dataset.voc(devkits: [devkit], splits: ["train"], classes: ["cat"], allowOutsideRoot: true).objectCount == 2)
        #expect(try VOCDataset.load(devkit: devkit, split: "train", allowOutsideRoot: true).imageIDs == ["a", "../../elsewhere/b"])
    }
}
