import Foundation
import Testing
import DCNConfig
import DCNModels

let paperRows = [
    "roipool", "roialign", "dcnv1", "dconv_c5", "dconv_c4-c5", "dconv_c3-c5", "dconv_c3-c5_dpool",
    "mdconv_c3-c5_mdpool", "mdconv_c3-c5_mdpool_mimic_fg", "mdconv_c3-c5_mdpool_mimic_bg", "mdconv_c3-c5_mdpool_mimic_fgbg",
]

func loadRepositoryConfig(_ file: String, overrides: [String] = []) throws -> ExperimentConfig {
    try loadConfig(path: repositoryURL.appendingPathComponent(file).path, overrides: overrides)
}

@Suite struct ConfigFileTests {
    @Test func everyRowHasAFileForCocoAndSynth() {
        let files = Set(configFiles())
        for data in ["coco", "synth"] {
            #expect(files.contains("configs/\(data)/base.yaml"))
            for row in paperRows { #expect(files.contains("configs/\(data)/faster_rcnn_r50_\(row).yaml"), "\(data) \(row)") }
        }
        #expect(files.contains("configs/demo.yaml"))
    }

    /// Each Mask R-CNN row is its Faster R-CNN row with the mask branch (Tables 1-3); Table 4 has
    /// rows of both detectors, each its R-50 row with another backbone.
    @Test(arguments: ["coco", "synth"])
    func maskRowsAreTheirFasterRowsWithTheMaskBranch(data: String) throws {
        for row in paperRows {
            let faster = try loadRepositoryConfig("configs/\(data)/faster_rcnn_r50_\(row).yaml")
            var mask = try loadRepositoryConfig("configs/\(data)/mask_rcnn_r50_\(row).yaml")
            #expect(mask.mask.enabled && !faster.mask.enabled, "\(data) \(row)")
            #expect(mask.model.name != faster.model.name)
            mask.mask.enabled = false
            mask.model.name = faster.model.name
            #expect(mask == faster, "\(data) mask_rcnn_r50_\(row) differs from its Faster R-CNN row in more than the mask branch")
        }
        let r50 = ["regular": "roialign", "dcnv1": "dcnv1", "dcnv2": "mdconv_c3-c5_mdpool_mimic_fg"]
        for arch in ["r101", "x101"] {
            for (method, r50Row) in r50 {
                for detector in ["faster", "mask"] {
                    var c = try loadRepositoryConfig("configs/\(data)/\(detector)_rcnn_\(arch)_\(method).yaml")
                    let reference = try loadRepositoryConfig("configs/\(data)/\(detector)_rcnn_r50_\(r50Row).yaml")
                    #expect(c.backbone.depth == (arch == "r101" ? .r101 : .resnext101_32x4d))
                    c.backbone.depth = reference.backbone.depth
                    c.backbone.layers = reference.backbone.layers
                    c.backbone.weights = reference.backbone.weights
                    c.model.name = reference.model.name
                    #expect(c == reference, "\(data) \(detector) \(arch) \(method) differs from its R-50 row in more than the backbone")
                }
            }
        }
    }

    @Test(arguments: configFiles())
    func everyConfigLoads(file: String) throws {
        _ = try loadRepositoryConfig(file)
    }

    @Test(arguments: configFiles())
    func everyConfigRoundTrips(file: String) throws {
        let config = try loadRepositoryConfig(file)
        let again = try loadConfig(yaml: config.resolvedYAML(), name: "resolved.yaml")
        #expect(again == config)
    }

    @Test(arguments: ["coco", "synth"])
    func rowsSetWhatTheirNameSays(data: String) throws {
        func row(_ name: String) throws -> ExperimentConfig { try loadRepositoryConfig("configs/\(data)/faster_rcnn_r50_\(name).yaml") }
        let roipool = try row("roipool")
        #expect(roipool.roiHead.extractor == .roipool && roipool.backbone.convType == .regular && roipool.backbone.deformableStages.isEmpty)
        #expect(try row("roialign").roiHead.extractor == .roialign)
        let v1 = try row("dcnv1")
        #expect(v1.backbone.convType == .dconv && v1.backbone.deformableStages == [5] && v1.roiHead.extractor == .dpool)
        #expect(try row("dconv_c5").backbone.deformableStages == [5])
        #expect(try row("dconv_c4-c5").backbone.deformableStages == [4, 5])
        let c3 = try row("dconv_c3-c5")
        #expect(c3.backbone.deformableStages == [3, 4, 5] && c3.backbone.convType == .dconv && c3.roiHead.extractor == .roialign)
        #expect(try row("dconv_c3-c5_dpool").roiHead.extractor == .dpool)
        let v2 = try row("mdconv_c3-c5_mdpool")
        #expect(v2.backbone.convType == .mdconv && v2.backbone.deformableStages == [3, 4, 5] && v2.roiHead.extractor == .mdpool)
        #expect(v2.mimic.regions == .off)
        for (suffix, regions) in [("fg", MimicRegions.fg), ("bg", .bg), ("fgbg", .all)] {
            var mimic = try row("mdconv_c3-c5_mdpool_mimic_\(suffix)")
            #expect(mimic.mimic.regions == regions)
            mimic.mimic.regions = .off
            mimic.model.name = v2.model.name
            #expect(mimic == v2, "the mimic rows differ from DCNv2 only in mimic.regions")
        }
        // Every row has its own name, so their output folders differ.
        let names = try paperRows.map { try row($0).model.name }
        #expect(Set(names).count == paperRows.count)
    }

    @Test func cocoRowsUseThePaperSettings() throws {
        let c = try loadRepositoryConfig("configs/coco/faster_rcnn_r50_roialign.yaml")
        #expect(c.backbone.depth == .r50 && c.backbone.norm == .frozenBN && c.backbone.frozenStages == 2 && c.backbone.res5Dilation == 2)
        #expect(c.data.format == .coco && c.data.minSize == [800] && c.data.maxSize == 1333)
        #expect(c.data.imagesPerBatch == 16 && c.solver.baseLr == 0.02)
        #expect(c.backbone.weights != nil)
    }

    @Test func theDemoIsTheSynthDCNv2MimicMaskRCNNRow() throws {
        let demo = try loadRepositoryConfig("configs/demo.yaml")
        var row = try loadRepositoryConfig("configs/synth/mask_rcnn_r50_mdconv_c3-c5_mdpool_mimic_fg.yaml")
        #expect(demo.model.name == "demo" && demo.outputDirectory == "output/demo")
        #expect(row.mask.enabled && demo.mask.pooledSize == 7 && demo.mask.convDim == 32)
        row.model.name = demo.model.name
        row.output.dir = demo.output.dir
        row.data.root = demo.data.root  // the demo trains on the easy dataset
        row.solver = demo.solver        // with its own schedule
        row.mask.pooledSize = demo.mask.pooledSize  // and a smaller mask branch
        row.mask.convDim = demo.mask.convDim
        #expect(demo == row)
        #expect(demo.solver.baseLr == 0.01 && demo.solver.maxIter == 2600)
        #expect(demo.backbone.stemWidth == 16 && demo.backbone.stagePlanes == [16, 32, 64, 128] && demo.backbone.resolvedLayers == [1, 1, 1, 1])
        #expect(demo.backbone.frozenStages == 0 && demo.backbone.norm == .gn)
        #expect(demo.data.format == .synth && demo.data.root == "data/synth-easy" && demo.data.minSize == [256] && demo.data.maxSize == 384)
    }
}

@Suite struct RoundTripTests {
    @Test func everyFieldIsWritten() {
        let yaml = ExperimentConfig().resolvedYAML()
        for (section, keys) in ExperimentConfig.schemaKeys {
            #expect(yaml.contains("\n\(section):\n"))
            for key in keys { #expect(yaml.contains("\n  \(key): "), "\(section).\(key)") }
        }
        #expect(ExperimentConfig.schemaFields.count == ExperimentConfig.schemaKeys.map(\.keys.count).reduce(0, +))
    }

    @Test func nonDefaultValuesRoundTrip() throws {
        var c = ExperimentConfig()
        c.model.name = "odd: \"name\" # with \\ and\ttab"
        c.model.classes = 4
        c.backbone.depth = .resnext101_32x4d
        c.backbone.layers = [1, 2, 3, 4]
        c.backbone.weights = "w/x y.safetensors"
        c.backbone.weightsPrefix = "backbone."
        c.backbone.convType = .mdconv
        c.backbone.deformableStages = [3, 4, 5]
        c.rpn.smoothL1Beta = 0.1 + 0.2
        c.rpn.anchorSizes = [1e-3, 12.5]
        c.mimic.regions = .off
        c.data.format = .voc
        c.data.vocDevkit = "VOCdevkit"
        c.data.classes = ["yes", "null", "1", "no"]
        c.solver.clipGradNorm = 35
        c.solver.weightDecay = 1e-05
        c.output.dir = "~"
        let again = try loadConfig(yaml: c.resolvedYAML(), name: "resolved.yaml")
        #expect(again == c)
    }

    @Test func resolvedYAMLLooksLikeThis() {
        let lines = ExperimentConfig().resolvedYAML().split(separator: "\n")
        #expect(lines.contains("  regions: \"off\""))
        #expect(lines.contains("  smooth_l1_beta: 0.1111111111111111"))
        #expect(lines.contains("  depth: 50"))
        #expect(lines.contains("  weights: null"))
    }
}
