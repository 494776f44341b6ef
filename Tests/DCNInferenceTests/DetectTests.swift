// dcn-detect: which files a command line and list files name, how images map to a COCO file's ids,
// and the tool end to end: a folder of mixed images with bad ones, one process and two, the output
// folder's rules, and detections that dcn-eval coco scores exactly as dcn-eval model does.
import DCNAnnotations
import DCNData
import DCNInference
import DCNRun
import DCNTraining
import Foundation
import TestSupport
import Testing

private func touch(_ path: String, _ text: String = "x") throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

@Suite("dcn-detect inputs")
struct DetectInputTests {
    @Test("Folders are searched recursively and sorted; hidden files, other extensions and the output folder are skipped")
    func foldersAndFiles() throws {
        let dir = try temporaryFolder("detect-inputs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["photos/b.JPG", "photos/a.png", "photos/a/z.jpeg", "photos/a.jpg", "photos/notes.txt", "photos/.hidden.jpg",
                     "photos/.cache/x.jpg", "photos/out/pictures/a.png", "single.dat"] {
            try touch(dir + "/" + name)
        }
        let inputs = try collectDetectInputs(arguments: [dir + "/photos/", dir + "/single.dat"], skipping: dir + "/photos/out")
        #expect(inputs.map(\.fileName) == [dir + "/photos/a.jpg", dir + "/photos/a.png", dir + "/photos/a/z.jpeg", dir + "/photos/b.JPG",
                                          dir + "/single.dat"])
        #expect(inputs.map(\.pictureStem) == ["a", "a_2", "a/z", "b", "single"])
        #expect(inputs.map(\.path) == inputs.map(\.fileName))

        // A list file: relative to its folder, comments and blank lines skipped, missing entries kept.
        try touch(dir + "/lists/images.txt", "# my images\n../photos/a.jpg\r\n\n  \(dir)/photos/b.JPG  \nnone.png\n")
        let listed = try collectDetectInputs(arguments: [], lists: [dir + "/lists/images.txt"])
        #expect(listed.map(\.fileName) == ["../photos/a.jpg", dir + "/photos/b.JPG", "none.png"])
        #expect(listed.map(\.path) == [dir + "/lists/../photos/a.jpg", dir + "/photos/b.JPG", dir + "/lists/none.png"])
        #expect(listed.map(\.pictureStem) == ["a", "b", "none"])

        // A missing path on the command line, and the output folder given as the input, are errors.
        #expect(throws: DetectError.self) { try collectDetectInputs(arguments: [dir + "/nothere"]) }
        let same = #expect(throws: DetectError.self) { try collectDetectInputs(arguments: [dir + "/photos"], skipping: dir + "/photos") }
        #expect(same?.description.contains("is the output folder") == true)
    }

    @Test("Images take a COCO file's ids by the end of their path; classes its category ids by name")
    func annotationIDs() throws {
        let images = [COCOImage(id: 7, width: 1, height: 1, fileName: "000007.jpg"), COCOImage(id: 9, width: 1, height: 1, fileName: "val/000009.jpg"),
                      COCOImage(id: 11, width: 1, height: 1, fileName: "other/000009.jpg")]
        func input(_ path: String) -> DetectInput { DetectInput(path: path, fileName: path, pictureStem: "x") }
        #expect(try annotationImageIDs([input("/data/val/000009.jpg"), input("/x/000007.jpg")], images: images, annotations: "a.json") == [9, 7])
        #expect(try annotationImageIDs([input("/x/other/000009.jpg")], images: images, annotations: "a.json") == [11])
        let missing = #expect(throws: DetectError.self) { try annotationImageIDs([input("/x/000008.jpg")], images: images, annotations: "a.json") }
        #expect(missing?.description.contains("no image has the file_name of /x/000008.jpg") == true)
        let twice = #expect(throws: DetectError.self) {
            try annotationImageIDs([input("/x/000007.jpg"), input("/y/000007.jpg")], images: images, annotations: "a.json")
        }
        #expect(twice?.description.contains("are both the image 7") == true)
        // A file name that only the last component matches is ambiguous when two images share it.
        let ambiguous = #expect(throws: DetectError.self) {
            try annotationImageIDs([input("/x/000009.jpg")], images: images + [COCOImage(id: 12, width: 1, height: 1, fileName: "000009.jpg"),
                                                                              COCOImage(id: 13, width: 1, height: 1, fileName: "000009.jpg")],
                                   annotations: "a.json")
        }
        #expect(ambiguous?.description.contains("all have the file_name 000009.jpg") == true)

        let categories = [COCOCategory(id: 3, name: "cat"), COCOCategory(id: 17, name: "dog")]
        #expect(try annotationCategoryIDs(classNames: ["dog", "cat"], categories: categories, annotations: "a.json") == [17, 3])
        #expect(throws: DetectError.self) { try annotationCategoryIDs(classNames: ["bird"], categories: categories, annotations: "a.json") }
    }
}

/// The demo detector (mask branch included) trained on tiny synthetic data, and what dcn-detect
/// needs to run it: 20 steps (`trainTinyDemo`), or with `steps` on the easy data in a dcn-train
/// child process (200 steps reach a bbox AP50 near 0.4 in about 12 s, so that scores are not all 0).
private struct TrainedDetector {
    let dir: String
    let settings: [String]

    init(_ name: String, steps: Int? = nil) throws {
        dir = temporaryDirectory(name)
        guard let steps else {
            settings = try trainTinyDemo(dir).settings
            return
        }
        _ = try writeSyntheticDataset(out: dir + "/data", config: SyntheticConfig(train: 6, val: 5, size: 96, seed: 3, difficulty: .easy))
        settings = ["data.root=\(dir)/data", "data.min_size=[96]", "data.max_size=128", "data.test_min_size=96",
                    "mimic.patch_size=32", "mimic.rois_per_image=2", "roi_head.batch_size_per_image=16", "rpn.batch_size_per_image=32"]
        let schedule = ["solver.max_iter=\(steps)", "solver.warmup_iters=5", "solver.steps=[\(steps * 4 / 5)]", "solver.checkpoint_period=\(steps)",
                        "solver.eval_period=0", "output.log_period=\(steps)", "output.dir=\(dir)/out"]
        let run = try ToolRun.run("dcn-train", trainArguments(settings, schedule), ranks: nil, folder: dir, name: "train")
        guard run.process.terminationStatus == 0 else { throw ToolRunError("dcn-train failed: \(run.errors)") }
    }

    var checkpoint: String { "\(dir)/out/\(RunFiles.finalCheckpoint)" }

    /// dcn-detect's arguments before the inputs.
    func arguments(_ extra: [String] = []) -> [String] {
        ["--config", repositoryPath("configs/demo.yaml"), "--checkpoint", checkpoint, "--threads", "1"]
            + (settings + extra).flatMap { ["--set", $0] }
    }
}

@Suite("dcn-detect", .serialized)
struct DetectToolTests {
    /// A folder of JPEG and PNG images (a synthetic one, an EXIF-rotated JPEG, grayscale JPEG and
    /// PNG, a palette PNG, a CMYK JPEG, in a subfolder too) with a truncated JPEG and a text file
    /// named .png: every good image gets detections and a picture (masks too), the bad ones are
    /// named on stderr with their reason and listed as failed, the status is 3, and two processes
    /// write the same files as one.
    @Test func aMixedFolderGivesDetectionsForEveryGoodImageAndNamesTheBadOnes() throws {
        let model = try TrainedDetector("detect-mixed")
        let dir = model.dir
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let images = dir + "/mixed"
        try FileManager.default.createDirectory(atPath: images + "/sub", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(dir)/data/images/val/000007.jpg", toPath: images + "/000007.jpg")
        for name in ["exif_6.jpg", "cmyk.jpg", "gray.jpg", "gray.png", "palette.png"] {
            try FileManager.default.copyItem(atPath: fixturePath("images/" + name), toPath: images + "/sub/" + name)
        }
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: fixturePath("images/rgb.jpg")))
        try jpeg.prefix(jpeg.count / 2).write(to: URL(fileURLWithPath: images + "/sub/truncated.jpg"))
        try touch(images + "/notes.png", "not an image\n")
        let good = ["000007.jpg", "sub/cmyk.jpg", "sub/exif_6.jpg", "sub/gray.jpg", "sub/gray.png", "sub/palette.png"]
        // Upright sizes (width, height): the EXIF-rotated JPEG's are swapped from those stored.
        let sizes = ["sub/exif_6.jpg": (37, 23), "sub/cmyk.jpg": (45, 31), "sub/gray.png": (45, 31)]

        // Every detection kept (score threshold 0), so that every good image has some.
        let arguments = model.arguments(["roi_head.score_threshold=0"]) + ["--score", "0.05", "--mask-pngs", images]
        let run = try ToolRun.run("dcn-detect", arguments + ["--out", dir + "/det"], ranks: nil, folder: dir, name: "detect")
        #expect(run.process.terminationStatus == 3, "\(run.output)\n\(run.errors)")
        #expect(run.errors.contains("\(images)/sub/truncated.jpg: truncated JPEG"), "\(run.errors)")
        #expect(run.errors.contains("\(images)/notes.png: not a JPEG or PNG file"), "\(run.errors)")
        #expect(run.errors.contains("2 of 8 images could not be read"), "\(run.errors)")

        // Input order (sorted by path inside the folder): ids 1...8, the bad ones included.
        let order = ["000007.jpg", "notes.png", "sub/cmyk.jpg", "sub/exif_6.jpg", "sub/gray.jpg", "sub/gray.png", "sub/palette.png", "sub/truncated.jpg"]
        let detections = try #require(try readJSON(dir + "/det/" + DetectFiles.detections) as? [[String: Any]])
        for (k, name) in order.enumerated() {
            let mine = detections.filter { $0["file_name"] as? String == images + "/" + name }
            if good.contains(name) {
                #expect(!mine.isEmpty, "no detection for \(name)")
                #expect(mine.allSatisfy { $0["image_id"] as? Int == k + 1 && $0["segmentation"] != nil && $0["bbox"] != nil })
            } else {
                #expect(mine.isEmpty, "detections for the bad file \(name)")
            }
        }
        #expect(Set(detections.compactMap { $0["file_name"] as? String }) == Set(good.map { images + "/" + $0 }))
        // Boxes inside the upright image.
        for d in detections where d["file_name"] as? String == images + "/sub/exif_6.jpg" {
            let b = try #require(d["bbox"] as? [Double])
            #expect(b[0] >= 0 && b[1] >= 0 && b[0] + b[2] <= 37.001 && b[1] + b[3] <= 23.001, "\(b)")
        }

        let index = try #require(try readJSON(dir + "/det/" + DetectFiles.images) as? [String: Any])
        let listed = try #require(index["images"] as? [[String: Any]])
        #expect(listed.map { $0["file_name"] as? String } == good.map { images + "/" + $0 })
        for entry in listed {
            let name = String((entry["file_name"] as! String).dropFirst(images.count + 1))
            if let (width, height) = sizes[name] { #expect(entry["width"] as? Int == width && entry["height"] as? Int == height, "\(entry)") }
            // The picture and every mask PNG are written and decode; masks have the image's size.
            let picture = try decodeImage(path: dir + "/det/" + (entry["picture"] as! String))
            #expect(picture.width > 0)
            let masks = try #require(entry["masks"] as? [String])
            #expect(!masks.isEmpty, "\(name) has no mask PNG")
            for mask in masks.prefix(2) {
                let samples = try decodePNGSamples(data: Data(contentsOf: URL(fileURLWithPath: dir + "/det/" + mask)), name: mask)
                #expect(samples.width == entry["width"] as? Int && samples.height == entry["height"] as? Int)
                #expect(Set(samples.samples).isSubset(of: [0, 255]))
            }
        }
        let failed = try #require(index["failed"] as? [[String: Any]])
        #expect(failed.map { $0["file_name"] as? String } == [images + "/notes.png", images + "/sub/truncated.jpg"])
        #expect(failed.map { $0["id"] as? Int } == [2, 8])
        #expect((index["categories"] as? [[String: Any]])?.count == 6)

        // Two processes split the images and write the same files.
        let split = try ToolRun.run("dcn-detect", arguments + ["--out", dir + "/det2"], ranks: 2, folder: dir, name: "detect2")
        #expect(split.process.terminationStatus == 3, "\(split.output)\n\(split.errors)")
        for file in [DetectFiles.detections, DetectFiles.images] {
            #expect(FileManager.default.contents(atPath: "\(dir)/det/\(file)") == FileManager.default.contents(atPath: "\(dir)/det2/\(file)"),
                    "\(file) differs between one and two processes")
        }

        // The folder now holds a run: refused without --force; --force replaces only that run's files.
        try touch(dir + "/det/mine.txt")
        let again = try ToolRun.run("dcn-detect", arguments + ["--out", dir + "/det"], ranks: nil, folder: dir, name: "again")
        #expect(again.process.terminationStatus == 1 && again.errors.contains("pass --force"), "\(again.errors)")
        let forced = try ToolRun.run("dcn-detect", model.arguments() + ["\(images)/000007.jpg", "--out", dir + "/det", "--force"],
                                     ranks: nil, folder: dir, name: "forced")
        #expect(forced.process.terminationStatus == 0, "\(forced.errors)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/det/pictures") == ["000007.png"])
        #expect(FileManager.default.fileExists(atPath: dir + "/det/mine.txt") && !FileManager.default.fileExists(atPath: dir + "/det/masks"))
        // An input inside the folder a run replaces, and a training run's folder, are refused.
        let inside = try ToolRun.run("dcn-detect", model.arguments() + ["\(dir)/det/pictures/000007.png", "--out", dir + "/det", "--force"],
                                     ranks: nil, folder: dir, name: "inside")
        #expect(inside.process.terminationStatus == 1 && inside.errors.contains("holds the input"), "\(inside.errors)")
        let training = try ToolRun.run("dcn-detect", model.arguments() + ["\(images)/000007.jpg", "--out", dir + "/out"], ranks: nil, folder: dir, name: "training")
        #expect(training.process.terminationStatus == 1 && training.errors.contains("holds a training run"), "\(training.errors)")
    }

    /// On the synthetic validation split with its annotation file, dcn-detect's detections.json
    /// (image and category ids from --annotations) is dcn-eval model's results plus file names,
    /// and dcn-eval coco gives it dcn-eval model's numbers; at one scale, and multi-scale + flipped.
    @Test(arguments: [[String](), ["--scales", "80,112", "--flip"]])
    func detectionsScoreAsDcnEvalModelScoresThem(views: [String]) throws {
        let model = try TrainedDetector("detect-coco", steps: 200)
        let dir = model.dir
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let annotations = "\(dir)/data/annotations/instances_val.json"
        let eval = try ToolRun.run("dcn-eval", ["model"] + model.arguments() + views + ["--results", "\(dir)/model_results.json"],
                                   ranks: nil, folder: dir, name: "model")
        #expect(eval.process.terminationStatus == 0, "\(eval.errors)")
        let detect = try ToolRun.run("dcn-detect", model.arguments() + views + ["\(dir)/data/images/val", "--annotations", annotations, "--out", "\(dir)/det"],
                                     ranks: nil, folder: dir, name: "detect")
        #expect(detect.process.terminationStatus == 0, "\(detect.errors)")

        var detections = try #require(try readJSON("\(dir)/det/detections.json") as? [[String: Any]])
        #expect(!detections.isEmpty && detections.allSatisfy { ($0["file_name"] as? String)?.hasPrefix("\(dir)/data/images/val/") == true })
        for k in detections.indices { detections[k]["file_name"] = nil }
        let evaluated = try #require(try readJSON("\(dir)/model_results.json") as? [[String: Any]])
        #expect(NSArray(array: detections).isEqual(to: evaluated), "the detections differ from dcn-eval model's")

        let metrics = try #require(try readJSON("\(dir)/model_metrics.json") as? [String: Double])
        for type in ["bbox", "segm"] {
            let coco = try ToolRun.run("dcn-eval", ["coco", "--gt", annotations, "--results", "\(dir)/det/detections.json", "--iou-type", type,
                                                    "--json", "\(dir)/coco_\(type).json"], ranks: nil, folder: dir, name: "coco_\(type)")
            #expect(coco.process.terminationStatus == 0, "\(coco.errors)")
            let scored = try #require(try readJSON("\(dir)/coco_\(type).json") as? [String: Double])
            #expect(scored.count == 12)
            for (name, value) in scored {
                #expect(metrics["\(type)/\(name)"] == value, "\(type)/\(name): dcn-eval coco \(value), dcn-eval model \(String(describing: metrics["\(type)/\(name)"]))")
            }
            print("dcn-detect + dcn-eval coco \(type)\(views.isEmpty ? "" : " " + views.joined(separator: " ")): AP \(scored["AP"]!) AP50 \(scored["AP50"]!) "
                  + "(dcn-eval model: \(metrics["\(type)/AP"]!), \(metrics["\(type)/AP50"]!))")
        }
    }
}
