// ImageNet VID configs: data.format vid and its keys, the errors that name them, and the
// configs/vid and configs/synth_vid files (each row is its COCO or synthetic detector with FGFA's
// data and schedule).
import DCNConfig
import Foundation
import Testing

/// The error lines of a config given as YAML (nil when it loads).
private func yamlErrors(_ yaml: String) -> [String]? {
    do {
        _ = try loadConfig(yaml: yaml, name: "vid.yaml")
        return nil
    } catch let errors as ConfigErrors {
        return errors.errors.map(\.description)
    } catch {
        return ["unexpected error type: \(error)"]
    }
}

@Suite struct VIDConfigTests {
    @Test func aVIDConfigReadsItsRootListsAndClasses() throws {
        let c = try loadConfig(yaml: """
            data:
              format: vid
              root: data/synth-vid
              train_lists: [ImageSets/VID/VID_train_15frames.txt]
              val_list: ImageSets/VID/VID_val_videos.txt
              classes: [ring, cross, star, arrow, L, T]
            """)
        #expect(c.data.format == .vid && c.data.root == "data/synth-vid")
        #expect(c.data.trainLists == ["ImageSets/VID/VID_train_15frames.txt"] && c.data.valList == "ImageSets/VID/VID_val_videos.txt")
        #expect(c.data.classes?.count == 6)
        // The defaults are FGFA's lists below the ILSVRC2015 root.
        let d = DataConfig()
        #expect(d.trainLists == ["ImageSets/DET_train_30classes.txt", "ImageSets/VID_train_15frames.txt"])
        #expect(d.valList == "ImageSets/VID_val_frames.txt")
    }

    @Test func badVIDSettingsAreErrorsNamingTheKey() {
        #expect(yamlErrors("data:\n  format: vid\n") == [
            "vid.yaml: data.format (line 2, column 11): data.format vid needs data.root, the ILSVRC2015 folder (Data/, Annotations/)",
        ])
        #expect(yamlErrors("data:\n  format: vid\n  root: r\n  train_lists: []\n") == [
            "vid.yaml: data.train_lists (line 4, column 16): data.format vid needs at least one training list, e.g. [ImageSets/DET_train_30classes.txt, ImageSets/VID_train_15frames.txt]",
        ])
        #expect(yamlErrors("data:\n  format: vid\n  root: r\n  val_list: ImageSets/DET_train_30classes.txt\n") == [
            "vid.yaml: data.val_list (line 4, column 13): 'ImageSets/DET_train_30classes.txt' names DET images (its name starts with DET_), but the VID evaluation scores VID frames: give a VID list such as ImageSets/VID_val_frames.txt or ImageSets/VID_val_videos.txt",
        ])
        #expect(yamlErrors("data:\n  format: vid\n  root: r\n  train_lists: [ImageSets/a.txt, '']\n") == [
            "vid.yaml: data.train_lists[1] (line 4, column 34): must not be empty",
        ])
        #expect(yamlErrors("mask:\n  enabled: true\ndata:\n  format: vid\n  root: r\n") == [
            "vid.yaml: mask.enabled (line 2, column 12): the mask branch needs instance segmentations, which ImageNet VID detection data does not have: use coco or synth data, or set mask.enabled to false",
        ])
        let unknown = yamlErrors("data:\n  format: ilsvrc\n")?.first ?? ""
        #expect(unknown.contains("expected one of") && unknown.contains(" vid"), "\(unknown)")
        #expect(yamlErrors("model:\n  task: classification\ndata:\n  format: vid\n  root: r\n")?.first?.contains("set data.format to imagefolder (got vid)") == true)
    }

    /// Table 7's VID rows are the COCO R-101 rows with FGFA's data, image sizes and schedule; the
    /// synthetic rows are the synthetic rows on synthetic videos.
    @Test func vidRowsAreTheirDetectorsWithFGFAsDataAndSchedule() throws {
        for (vid, detector) in [("vid/faster_rcnn_r101_regular", "coco/faster_rcnn_r101_regular"),
                                ("vid/faster_rcnn_r101_dcnv2", "coco/faster_rcnn_r101_dcnv2"),
                                ("synth_vid/regular", "synth/faster_rcnn_r50_roialign"),
                                ("synth_vid/dcnv2", "synth/faster_rcnn_r50_mdconv_c3-c5_mdpool_mimic_fg")] {
            var c = try loadRepositoryConfig("configs/\(vid).yaml")
            let reference = try loadRepositoryConfig("configs/\(detector).yaml")
            #expect(c.data.format == .vid, "\(vid)")
            #expect(c.model.name != reference.model.name, "\(vid) needs its own name (and output folder)")
            c.model.name = reference.model.name
            c.data = reference.data
            c.solver = reference.solver
            #expect(c == reference, "\(vid) differs from \(detector) in more than the data and the schedule")
        }
        let fgfa = try loadRepositoryConfig("configs/vid/faster_rcnn_r101_regular.yaml")
        #expect(fgfa.data.trainLists == ["ImageSets/DET_train_30classes.txt", "ImageSets/VID_train_15frames.txt"])
        #expect(fgfa.data.valList == "ImageSets/VID_val_frames.txt" && fgfa.data.trainAnnotations == nil)
        #expect(fgfa.data.minSize == [600] && fgfa.data.maxSize == 1000 && fgfa.data.testMinSize == 600 && fgfa.data.flip)
        // 2 epochs of FGFA's flip-doubled roidb at 4 images per step, lr / 10 after 1.333.
        #expect(fgfa.data.imagesPerBatch == 4 && fgfa.solver.baseLr == 0.001 && fgfa.solver.warmupIters == 0)
        #expect(fgfa.solver.steps.count == 1 && abs(Double(fgfa.solver.steps[0]) / Double(fgfa.solver.maxIter) - 1.333 / 2) < 0.001)
        let synth = try loadRepositoryConfig("configs/synth_vid/regular.yaml")
        #expect(synth.data.classes == ["ring", "cross", "star", "arrow", "L", "T"])
    }
}
