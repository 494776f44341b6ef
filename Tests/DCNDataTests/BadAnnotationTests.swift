// Bad annotations that loading refuses (issue 29): malformed polygons and objects without one
// for Mask R-CNN (defect 6), image paths that lead outside the dataset folder (defect 15). Each
// error names the file and the entry; `dcn-data check` and `dcn-train` load through these calls.
import DCNData
import Foundation
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
}
