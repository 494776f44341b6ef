// The ImageNet VID training dataset (FGFA's DET + VID lists) and `dcn-data synth --video`.
import DCNAnnotations
import DCNData
import DCNEval
import DCNTensor
import Foundation
import Testing
import TestSupport

@Suite struct VIDDataTests {
    /// A root with one DET image (an object of a VID class, one of another DET class, one beyond the
    /// image) and the fixture's VID frames.
    private func makeRoot() throws -> String {
        let root = try temporaryFolder("vid-root")
        try FileManager.default.createDirectory(atPath: root + "/Annotations/DET/train/ILSVRC2013_train/n02691156", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/ImageSets", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/Annotations/VID", withDestinationPath: fixturePath("vid/Annotations/VID"))
        let det = """
            <annotation><size><width>100</width><height>80</height></size>
            <object><name>n02691156</name><bndbox><xmin>10</xmin><ymin>5</ymin><xmax>120</xmax><ymax>30</ymax></bndbox></object>
            <object><name>n00007846</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
            </annotation>
            """
        try det.write(toFile: root + "/Annotations/DET/train/ILSVRC2013_train/n02691156/n02691156_1.xml", atomically: true, encoding: .utf8)
        try "train/ILSVRC2013_train/n02691156/n02691156_1 1\n".write(toFile: root + "/ImageSets/DET_train_30classes.txt", atomically: true, encoding: .utf8)
        // Two frames of video 1 as MSRA's 4-column training lines.
        try "val/ILSVRC2015_val_00000001 1 2 6\nval/ILSVRC2015_val_00000001 1 4 6\n".write(toFile: root + "/ImageSets/VID_train_15frames.txt", atomically: true, encoding: .utf8)
        return root
    }

    @Test func mixesDETImagesAndVIDFramesAsFGFA() throws {
        let root = try makeRoot()
        let d = try Dataset.imagenetVID(root: root, lists: ["ImageSets/DET_train_30classes.txt", "ImageSets/VID_train_15frames.txt"])
        #expect(d.images.map(\.name) == ["DET/train/ILSVRC2013_train/n02691156/n02691156_1",
                                         "VID/val/ILSVRC2015_val_00000001/000002", "VID/val/ILSVRC2015_val_00000001/000004"])
        #expect(d.images[0].path == root + "/Data/DET/train/ILSVRC2013_train/n02691156/n02691156_1.JPEG")
        // The DET object of another class is dropped; the box is clamped to the image (xmax 99) and made exclusive.
        #expect(d.images[0].objects == [DatasetObject(box: Box(10, 5, 100, 31), label: 1)])
        #expect(d.warnings.count == 1 && d.warnings[0].contains("1 object(s) of classes outside the list skipped"))
        #expect(d.images[1].objects.map(\.label) == [5, 5, 9])
        #expect(d.classNames.first == "airplane" && d.classNames.count == 30)
    }

    @Test func unknownClassInAVIDFrameNamesFileAndValue() throws {
        let root = try makeRoot()
        let error = #expect(throws: VIDError.self) {
            try Dataset.imagenetVID(root: root, lists: ["ImageSets/VID_train_15frames.txt"], classes: ["n02691156"])
        }
        #expect(error?.file.hasSuffix("val/ILSVRC2015_val_00000001/000002.xml") == true && error?.message.contains("'n01503061'") == true)
    }

    @Test func syntheticVideosAreDeterministicAndMove() {
        let a = renderSyntheticVideo(seed: 4, split: 1, index: 2, frames: 5, size: 96)
        let b = renderSyntheticVideo(seed: 4, split: 1, index: 2, frames: 5, size: 96)
        #expect(a.frames == b.frames && a.objects == b.objects)
        #expect(a.frames.count == 5 && a.objects.allSatisfy { $0.count == a.objects[0].count && !$0.isEmpty })
        // Every track keeps its class and moves or changes size between the first and last frame.
        for (first, last) in zip(a.objects[0], a.objects[4]) {
            #expect(first.trackID == last.trackID && first.categoryID == last.categoryID)
            #expect(first.box != last.box)
        }
        #expect(renderSyntheticVideo(seed: 5, split: 1, index: 2, frames: 5, size: 96).frames != a.frames)
    }

    /// The synthetic videos in the VID layout load as a dataset and score AP 1 when the
    /// detections are the ground truth.
    @Test func syntheticVideoLayoutRoundTrip() throws {
        let out = try temporaryFolder("vid-synth")
        let summary = try writeSyntheticVideoDataset(out: out, config: SyntheticVideoConfig(trainVideos: 2, valVideos: 2, frames: 18, size: 96, seed: 7))
        #expect(summary.trainImages == 36 && summary.valImages == 36)
        let train15 = try readVIDList(path: out + "/ImageSets/VID/VID_train_15frames.txt")
        #expect(train15.count == 30 && train15.first?.path == "train/synthetic_train_00000/000000" && train15[1].video?.frameIndex == 1)
        let d = try Dataset.imagenetVID(root: out, lists: ["ImageSets/VID/VID_train_15frames.txt"], classes: syntheticClassNames)
        #expect(d.images.count == 30 && d.objectCount > 0 && d.warnings.isEmpty)
        let image = try decodeImage(path: d.images[0].path)
        #expect(image.width == d.images[0].width && image.height == d.images[0].height)
        let frames = try loadVIDGroundTruth(annotations: out + "/Annotations/VID", imageset: out + "/ImageSets/VID/VID_val_videos.txt",
                                            classes: syntheticClassNames)
        #expect(frames.count == 36 && frames.map(\.frameID) == Array(1...36))
        var dets = [VIDDetection]()
        for f in frames { for (l, b) in zip(f.labels, f.boxes) { dets.append(VIDDetection(frameID: f.frameID, label: l, score: Double(dets.count + 1), box: b)) } }
        let ap = evaluateVID(frames: frames, detections: dets, classCount: 6)
        let present = Set(frames.flatMap(\.labels))
        for c in 1...6 { #expect(ap[c - 1] == (present.contains(c) ? 1 : 0)) }
    }
}
