// dcn-vis: the spatial support of a trained detector's nodes (the paper's Figures 1 and 5):
// effective sampling locations, effective receptive fields and error-bounded saliency regions,
// as pictures with a JSON sidecar of the raw numbers, figures comparing models, and `focus`, the
// share of each kind of support that falls inside the objects.
import ArgumentParser
import DCNAnalysis
import DCNCommandLine
import DCNAnnotations
import DCNConfig
import DCNData
import DCNInference
import DCNModels
import DCNOps
import DCNPictures
import DCNRun
import DCNTensor
import Foundation

struct VisError: Error, CustomStringConvertible {
    let description: String
    init(_ s: String) { description = s }
}

/// The error bound of the saliency search when none is given: the node's feature vector within
/// 10% (relative L2) of its full-image value.
let defaultErrorBound = 0.1

/// A trained detector's backbone and RoI head ready for the analysis (`AnalysedConfig` says how a
/// regular network is analysed).
struct AnalysedModel {
    let config: ExperimentConfig
    let support: BackboneSupport
    let dataset: Dataset?
    let regular: Bool

    init(config path: String, checkpoint: String, overrides: [String]) throws {
        let trained = try loadConfig(path: path, overrides: overrides)
        guard trained.model.task == .detection else { throw VisError("\(path): dcn-vis analyses detectors (model.task: detection)") }
        let dataset = try loadDataset(trained, train: false)
        guard let classes = trained.model.classes ?? dataset?.classNames.count else {
            throw VisError("\(path): set model.classes or an evaluation split, so that the detector can be built")
        }
        let analysed = AnalysedConfig(trained)
        let model = try buildModel(analysed.config, classes: classes)
        _ = try Checkpoint.load(path: checkpoint, into: model.parameters, optimizer: nil, mayBeMissing: analysed.mayBeMissing)
        self.regular = analysed.regular
        self.config = analysed.config
        self.dataset = dataset
        support = BackboneSupport(backbone: model.backbone, head: model.boxHead)
    }

    func image(_ original: RGBImage, size: Int?) throws -> AnalysisImage {
        // Another shorter side keeps the config's test aspect (the longest side scales with it).
        try AnalysisImage(original, size: size ?? config.data.testMinSize, maxSize: size.map { sweepMaxSize(config, shortEdge: $0) } ?? config.testMaxSize)
    }
}

/// `--error-bound`, shared by every command that searches saliency regions.
struct SaliencyBound: ParsableArguments {
    @Option(parsing: .unconditional, help: "Relative L2 error of the node's feature vector allowed in a saliency region.")
    var errorBound: Double = defaultErrorBound

    func validate() throws {
        guard errorBound > 0 && errorBound < 1 else { throw ValidationError("--error-bound \(errorBound): expected a number in (0, 1)") }
    }
}

/// `--node`: a backbone stage.
func checkStage(_ node: String) throws {
    guard ["res2", "res3", "res4", "res5"].contains(node) else { throw ValidationError("--node \(node): expected res2, res3, res4 or res5") }
}

func parsePair(_ text: String, _ option: String) throws -> (Double, Double) {
    let parts = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
    guard parts.count == 2, let a = parts[0], let b = parts[1], a.isFinite, b.isFinite else {
        throw ValidationError("\(option) \(text): expected two numbers x,y (pixels of the original image)")
    }
    return (a, b)
}

/// `--roi x0,y0,x1,y1`: four numbers, a box of at least one pixel each way starting at 0 or more
/// (the image's own size is checked once it is read).
func parseBox(_ text: String) throws -> [Double] {
    let v = text.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
    guard v.count == 4, v.allSatisfy(\.isFinite), v[0] >= 0, v[1] >= 0, v[2] - v[0] >= 1, v[3] - v[1] >= 1 else {
        throw ValidationError("--roi \(text): expected x0,y0,x1,y1 in pixels of the original image, x0 and y0 0 or more, "
                              + "at least 1 pixel wide and tall (x1 - x0 >= 1, y1 - y0 >= 1)")
    }
    return v
}

func writeJSON(_ object: Any, to path: String) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    try writeAtomically(data, to: path)
}

/// OUT.png -> OUT.json.
func sidecarPath(_ png: String) -> String { (png.hasSuffix(".png") ? String(png.dropLast(4)) : png) + ".json" }

/// Refuses outputs that would replace a file the command reads (`option` gave them).
func refuseOverwrite(_ outputs: [String], option: String, _ read: ReadFiles) throws {
    for output in outputs {
        if let problem = outputProblem(output, read: read) { throw VisError("\(option) \(output): \(problem)") }
    }
}

/// Runs a command's body: a failure is one message and status 1 (2 for a config error).
func reporting(_ body: () throws -> Void) throws {
    do { try body() } catch let e as ConfigErrors {
        FileHandle.standardError.write(Data((e.description + "\n").utf8))
        throw ExitCode(2)
    } catch let e as ValidationError {
        throw e
    } catch {
        FileHandle.standardError.write(Data("dcn-vis: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct ModelOptions: ParsableArguments {
    @OptionGroup var configOptions: ConfigOptions
    @OptionGroup var checkpointOptions: CheckpointOptions
    @Option(parsing: .unconditional, help: "Shorter side of the image the network sees (default: the config's data.test_min_size).")
    var size: Int?
    @OptionGroup var threadOptions: ThreadOptions

    var config: String { configOptions.config }
    var checkpoint: String { checkpointOptions.checkpoint }
    var overrides: [String] { configOptions.overrides }

    func validate() throws {
        if let size, !shorterSideRange.contains(size) {
            throw ValidationError("--size \(size): expected a shorter side between \(shorterSideRange.lowerBound) and \(shorterSideRange.upperBound) pixels")
        }
        for (path, option) in [(config, "--config"), (checkpoint, "--checkpoint")] where !FileManager.default.isReadableFile(atPath: path) {
            throw ValidationError("\(option) \(path): no readable file there")
        }
    }
}

/// One node's analysis on one image (the three single-analysis commands).
struct NodeCommand {
    let tool: String

    func run(model options: ModelOptions, image path: String, point: String?, roi: String?, stage: String, errorBound: Double, out: String) throws {
        // `all`: the three analyses of one pass (OUT_sampling.png, OUT_erf.png, OUT_saliency.png).
        let tools = tool == "all" ? ["sampling", "erf", "saliency"] : [tool]
        let picturePaths = tools.map { tools.count == 1 ? out : String(out.dropLast(4)) + "_\($0).png" }
        var read = checkpointInputs(config: options.config, checkpoint: options.checkpoint)
        read.add(path, as: "the image given to --image")
        try refuseOverwrite(picturePaths + [sidecarPath(out)], option: "--out", read)
        options.threadOptions.apply()
        let model = try AnalysedModel(config: options.config, checkpoint: options.checkpoint, overrides: options.overrides)
        let original = try decodeImage(path: path)
        let image = try model.image(original, size: options.size)
        let request: NodeRequest, px: Double, py: Double
        if let roi {
            let v = try parseBox(roi)
            guard v[2] <= Double(original.width), v[3] <= Double(original.height) else {
                throw VisError("--roi \(roi) reaches outside the \(original.width) x \(original.height) image \(path)")
            }
            let s = Float(image.scale)
            request = .roi(Box(Float(v[0]) * s, Float(v[1]) * s, Float(v[2]) * s, Float(v[3]) * s))
            (px, py) = ((v[0] + v[2]) / 2, (v[1] + v[3]) / 2)
        } else {
            guard let point else { throw VisError("give the node with --point x,y or --roi x0,y0,x1,y1 (pixels of the original image)") }
            (px, py) = try parsePair(point, "--point")
            guard (0..<Double(original.width)).contains(px), (0..<Double(original.height)).contains(py) else {
                throw VisError("--point \(point) is outside the \(original.width) x \(original.height) image \(path)")
            }
            request = .point(stage: stage, x: px * image.scale, y: py * image.scale)
        }
        let start = Date()
        let support = try model.support.analyse(image, request, errorBound: tool == "saliency" || tool == "all" ? errorBound : nil)
        let seconds = Date().timeIntervalSince(start)
        var json: [String: Any] = [
            "tool": tool, "config": options.config, "checkpoint": options.checkpoint, "image": path,
            "network_input": ["height": image.image.height, "width": image.image.width, "scale": image.scale],
            "regular_network_as_zero_offset_dconv": model.regular, "seconds": seconds,
        ]
        let outputs = nodePictures(support, on: image.image, tools: tools, stage: stage)
        json.merge(nodeNumbers(support, originalX: px, originalY: py)) { a, _ in a }
        json.merge(outputs.numbers) { a, _ in a }
        var pictures: [String] = []
        for (picture, path) in zip(outputs.pictures, picturePaths) {
            try writeAtomically(try encodePNG(picture), to: path)
            pictures.append(path)
        }
        try writeJSON(json, to: sidecarPath(out))
        print("\(tool): node \(describeNode(support.node)) at (\(Int(px)), \(Int(py))) in \(String(format: "%.1f", seconds)) s"
              + (support.saliency.map { String(format: "; saliency region %.1f%% of the image, error %.3f", 100 * $0.areaFraction, $0.error) } ?? ""))
        print("pictures: \(pictures.joined(separator: ", "))\nnumbers: \(sidecarPath(out))")
    }
}

struct SingleNode: ParsableArguments {
    @OptionGroup var model: ModelOptions
    @Option(help: "The image (JPEG or PNG).")
    var image: String
    @Option(parsing: .unconditional, help: ArgumentHelp("The node: the backbone position nearest to this pixel of the original image.", valueName: "x,y"))
    var point: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("The node: the RoI head's 2fc output for this box (pixels of the original image), instead of --point.",
                               valueName: "x0,y0,x1,y1"))
    var roi: String?
    @Option(help: "The backbone stage of the node: res2, res3, res4 or res5.")
    var node: String = "res5"
    @Option(help: "Where the picture goes (PNG); the numbers go beside it as .json.")
    var out: String

    /// Runs `tool` (sampling, erf, saliency or all) on this node.
    func run(_ tool: String, errorBound: Double = defaultErrorBound) throws {
        try reporting { try NodeCommand(tool: tool).run(model: model, image: image, point: point, roi: roi, stage: node, errorBound: errorBound, out: out) }
    }

    func validate() throws {
        try checkStage(node)
        guard out.hasSuffix(".png") else { throw ValidationError("--out \(out): expected a .png file") }
        if (point == nil) == (roi == nil) { throw ValidationError("give the node with --point x,y or with --roi x0,y0,x1,y1 (one of them)") }
        if let roi { _ = try parseBox(roi) }
        if let point {
            let (x, y) = try parsePair(point, "--point")
            guard x >= 0, y >= 0 else { throw ValidationError("--point \(point): expected x,y of a pixel of the original image (0 or more)") }
        }
    }
}

struct Sampling: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Effective sampling locations of a node through the deformable layers of its stage.")
    @OptionGroup var node: SingleNode
    func run() throws {
        try node.run("sampling")
    }
}

struct ERF: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "erf", abstract: "The effective receptive field of a node: |d response / d pixel|.")
    @OptionGroup var node: SingleNode
    func run() throws {
        try node.run("erf")
    }
}

struct Saliency: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The error-bounded saliency region of a node.")
    @OptionGroup var node: SingleNode
    @OptionGroup var bound: SaliencyBound
    func run() throws { try node.run("saliency", errorBound: bound.errorBound) }
}

struct Figure: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The paper's Figure 1 layout (models x nodes x the three analyses), or Figure 5's with --sizes.",
        discussion: "Nodes are picked from the ground truth of the config's evaluation split: the centres of the smallest and largest objects and a background point far from every object.")
    @Option(help: "Experiment configs, one per checkpoint (or one for all), comma-separated.")
    var configs: String
    @Option(help: "Checkpoints, comma-separated.")
    var checkpoints: String
    @Option(help: "Row labels, comma-separated (default: the checkpoints' file names).")
    var labels: String?
    @Option(help: "Image names of the config's evaluation split (file_name / VOC id), comma-separated (default: the first image).")
    var images: String?
    @Option(help: "Figure 5: shorter sides, comma-separated (e.g. 400,800,1400); the large object's node at each.")
    var sizes: String?
    @Option(help: "Shorter side (Figure 1 layout; default: the config's data.test_min_size).")
    var size: Int?
    @Option(help: "The nodes: a backbone stage (res2 ... res5), or head for the RoI head's 2fc output on the objects' boxes (Figure 2).")
    var node: String = "res5"
    @OptionGroup var bound: SaliencyBound
    @Option(parsing: .unconditional, help: "Width of each picture in the figure, pixels.")
    var cellWidth: Int = 260
    @OptionGroup var overrideOptions: OverrideOptions
    @OptionGroup var threadOptions: ThreadOptions
    @Option(help: "The figure (PNG).")
    var out: String

    func validate() throws {
        guard ["res2", "res3", "res4", "res5", "head"].contains(node) else { throw ValidationError("--node \(node): expected res2, res3, res4, res5 or head") }
        guard (32...2000).contains(cellWidth) else { throw ValidationError("--cell-width \(cellWidth): expected 32 to 2000 pixels") }
        guard out.hasSuffix(".png") else { throw ValidationError("--out \(out): expected a .png file") }
    }

    func run() throws {
        try reporting {
            threadOptions.apply()
            let checkpointList = checkpoints.split(separator: ",").map(String.init)
            var configList = configs.split(separator: ",").map(String.init)
            if configList.count == 1 { configList = Array(repeating: configList[0], count: checkpointList.count) }
            guard configList.count == checkpointList.count, !checkpointList.isEmpty else {
                throw VisError("--configs names \(configList.count) configs for \(checkpointList.count) checkpoints: give one, or one per checkpoint")
            }
            let labelList = labels.map { $0.split(separator: ",").map(String.init) }
                ?? checkpointList.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
            guard labelList.count == checkpointList.count else { throw VisError("--labels has \(labelList.count) labels for \(checkpointList.count) checkpoints") }
            let sizeList = try sizes.map { text in
                try text.split(separator: ",").map { s -> Int in
                    guard let v = Int(s), shorterSideRange.contains(v) else {
                        throw VisError("--sizes \(text): expected shorter sides between \(shorterSideRange.lowerBound) and \(shorterSideRange.upperBound)")
                    }
                    return v
                }
            }
            var read = ReadFiles()
            for (config, checkpoint) in zip(configList, checkpointList) {
                read.add(config, as: "the config \(config) given to --configs")
                read.add(checkpoint, as: "the checkpoint \(checkpoint) given to --checkpoints")
            }
            try refuseOverwrite([out], option: "--out", read)
            let models = try zip(configList, checkpointList).map { try AnalysedModel(config: $0, checkpoint: $1, overrides: overrideOptions.overrides) }
            guard let dataset = models[0].dataset, !dataset.images.isEmpty else { throw VisError("\(configList[0]): the config names no evaluation split with images") }
            let names = images.map { $0.split(separator: ",").map(String.init) } ?? [dataset.images[0].name]
            var rows: [[(caption: String, image: RGBImage)]] = [], titles: [String] = []
            for name in names {
                guard let entry = dataset.images.first(where: { $0.name == name }) else {
                    throw VisError("--images: \(name) is not an image of the evaluation split (e.g. \(dataset.images[0].name))")
                }
                let original = try decodeImage(path: entry.path)
                let nodes = automaticNodes(entry, width: original.width, height: original.height)
                for (model, label) in zip(models, labelList) {
                    var row: [(String, RGBImage)] = []
                    for c in figureCells(nodes, sizes: sizeList, size: size) {
                        let image = try model.image(original, size: c.size)
                        let support = try model.support.analyse(image, nodeRequest(c.node, stage: node, scale: image.scale), errorBound: bound.errorBound)
                        row.append(("\(c.caption): sampling", samplingPicture(support, on: image.image, include: shownLayers(support.node, stage: node))))
                        row.append(("ERF", receptiveFieldPicture(support, on: image.image)))
                        row.append(("saliency", saliencyPicture(support, on: image.image)))
                        print("\(label) \(name) \(c.caption): saliency \(String(format: "%.1f%%", 100 * (support.saliency?.areaFraction ?? 0)))")
                    }
                    rows.append(row)
                    titles.append(label)
                }
            }
            try writeAtomically(try encodePNG(try pictureGrid(rows, cellWidth: cellWidth, rowTitles: titles)), to: out)
            print("figure: \(out)")
        }
    }
}

struct Focus: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "How much of a node's support falls inside its object: the ERF mass and the saliency region's area inside the box, for nodes at the object centres of the evaluation split.")
    @OptionGroup var model: ModelOptions
    @Option(parsing: .unconditional, help: "Objects analysed (the first of the split, in order).")
    var maxObjects: Int = 50
    @Option(help: "The backbone stage of the nodes.")
    var node: String = "res5"
    @OptionGroup var bound: SaliencyBound
    @Option(help: "Write the numbers (per object and summary) to this JSON file.")
    var json: String?

    func validate() throws {
        try checkStage(node)
        guard maxObjects >= 1 else { throw ValidationError("--max-objects \(maxObjects): expected at least 1") }
    }

    func run() throws {
        try reporting {
            model.threadOptions.apply()
            if let json { try refuseOverwrite([json], option: "--json", checkpointInputs(config: model.config, checkpoint: model.checkpoint)) }
            let analysed = try AnalysedModel(config: model.config, checkpoint: model.checkpoint, overrides: model.overrides)
            guard let dataset = analysed.dataset else { throw VisError("\(model.config): the config names no evaluation split") }
            let start = Date()
            let objects = try focusSurvey(analysed.support, dataset: dataset, stage: node, errorBound: bound.errorBound, maxObjects: maxObjects) {
                try analysed.image($0, size: model.size)
            }
            let erfInside = objects.map(\.erfInside), saliencyInside = objects.map(\.saliencyInside), perObject = objects.map(\.numbers)
            guard !erfInside.isEmpty else { throw VisError("the evaluation split has no objects") }
            let summary: [String: Any] = ["objects": erfInside.count, "erf_inside": meanAndQuartiles(erfInside), "saliency_inside": meanAndQuartiles(saliencyInside),
                                          "config": model.config, "checkpoint": model.checkpoint, "node": node, "error_bound": bound.errorBound]
            func line(_ name: String, _ v: [Double]) -> String {
                let s = meanAndQuartiles(v)
                return String(format: "%@  mean %.3f  quartiles %.3f / %.3f / %.3f", name, s["mean"]!, s["q1"]!, s["median"]!, s["q3"]!)
            }
            print("\(erfInside.count) objects, nodes at the box centres (\(node)), \(String(format: "%.0f", Date().timeIntervalSince(start))) s")
            print(line("ERF mass inside the box:          ", erfInside))
            print(line("saliency region area inside the box:", saliencyInside))
            if let json { try writeJSON(["summary": summary, "objects": perObject], to: json) }
        }
    }
}

struct Dilation: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "DCNv1's Table 2: the effective dilation of each deformable convolution at nodes in small, medium and large objects and on the background.",
        discussion: """
            Over the first images of the config's evaluation split. A node is an output pixel of the layer; its region is that of             the smallest ground-truth box holding its centre (COCO's area ranges), or the background. A classifier (model.task:             classification) is analysed on a `dcn-data synth-cls` set: its regions are the shape's size below, within or above the             training split's sizes. Its effective dilation is the             mean distance between the sampling locations of adjacent kernel taps, in image pixels (d x stride for a regular kernel).             A regular network is analysed with res5 as zero-offset deformable convolutions: its values are the regular kernel's.
            """)
    @OptionGroup var model: ModelOptions
    @Option(parsing: .unconditional, help: "Images analysed (the first of the split, in order).")
    var maxImages: Int = 50
    @Option(help: "Write the numbers (per layer and region: mean, std, nodes) to this JSON file.")
    var json: String?
    @Option(help: "Write the Markdown table to this file.")
    var markdown: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("A classifier's shape sizes (sqrt(area) / image side) that form the middle region (default: the training split's, from the set's geometry.json).", valueName: "lo,hi"))
    var sizeRange: String?

    func validate() throws {
        guard maxImages >= 1 else { throw ValidationError("--max-images \(maxImages): expected at least 1") }
        if let sizeRange { _ = try parseSizeRange(sizeRange) }
    }

    func parseSizeRange(_ text: String) throws -> ClosedRange<Double> {
        let v = text.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard v.count == 2, v[0] > 0, v[0] <= v[1], v[1] <= 1 else { throw ValidationError("--size-range \(text): expected lo,hi with 0 < lo <= hi <= 1, e.g. 0.35,0.45") }
        return v[0]...v[1]
    }

    func run() throws {
        try reporting {
            let read = checkpointInputs(config: model.config, checkpoint: model.checkpoint)
            try refuseOverwrite([json, markdown].compactMap { $0 }, option: "--json/--markdown", read)
            model.threadOptions.apply()
            if try loadConfig(path: model.config, overrides: model.overrides).model.task == .classification {
                try classifierSurvey()
                return
            }
            if sizeRange != nil { throw VisError("--size-range is for classifiers; \(model.config) is a detector") }
            let analysed = try AnalysedModel(config: model.config, checkpoint: model.checkpoint, overrides: model.overrides)
            guard let dataset = analysed.dataset else { throw VisError("\(model.config): the config names no evaluation split") }
            var survey = DilationSurvey()
            let ws = Workspace()
            for entry in dataset.images.prefix(maxImages) {
                let image = try analysed.image(try decodeImage(path: entry.path), size: model.size)
                try survey.add(backbone: analysed.support.backbone, image: image, boxes: entry.objects.filter { !$0.ignore }.map(\.box), ws)
            }
            let regular = regularKernelDilation(analysed.support.backbone)
            let table = survey.markdown(regularValue: regular)
            print("effective dilation (image pixels), mean ± std (nodes), \(min(maxImages, dataset.images.count)) images of \(model.config)"
                  + (analysed.regular ? " (a regular network: res5 analysed with zero offsets)" : ""))
            print(table, terminator: "")
            if let markdown { try writeAtomically(Data(table.utf8), to: markdown) }
            if let json {
                try writeJSON(["config": model.config, "checkpoint": model.checkpoint, "images": min(maxImages, dataset.images.count),
                               "regular_network": analysed.regular, "unit": "image pixels", "layers": survey.rows(regularValue: regular)], to: json)
            }
        }
    }

    /// A classifier on a `dcn-data synth-cls` set (the offsets-only test): each evaluation image as the
    /// evaluation sees it (resize, centre crop), its shape's box from `objects.json`, and the regions
    /// by the shape's size against the training split's sizes (`geometry.json`). A regular network is
    /// analysed with res3-res5 as zero-offset deformable convolutions (the regular kernel's values).
    func classifierSurvey() throws {
        let analysed = AnalysedConfig(classifier: try loadConfig(path: model.config, overrides: model.overrides))
        let config = analysed.config, regular = analysed.regular
        let classes = try Checkpoint.classNames(path: model.checkpoint).map { Dataset.ClassList(names: $0, source: "the checkpoint \(model.checkpoint)") }
        guard let dataset = try loadDataset(config, train: false, classes: classes) else { throw VisError("\(model.config): the config names no evaluation split") }
        let classifier = try buildClassifier(config, classes: dataset.classNames.count)
        _ = try Checkpoint.load(path: model.checkpoint, into: classifier.parameters, optimizer: nil, mayBeMissing: analysed.mayBeMissing)
        guard let dataRoot = config.data.root else { throw VisError("\(model.config): data.root: expected the `dcn-data synth-cls` folder") }
        let root = URL(fileURLWithPath: dataRoot).standardizedFileURL.path
        let trainingSizes = try sizeRange.map(parseSizeRange) ?? trainingShapeSizes(root: root)
        let images = Array(dataset.images.prefix(maxImages))
        let survey = try classifierDilationSurvey(classifier.network, images: images, root: root,
                                                  view: ResizeCenterCrop(resizeSize: config.data.resizeSize, cropSize: config.data.cropSize),
                                                  trainingSizes: trainingSizes)
        let regularValue = regularKernelDilation(classifier.network)
        let table = survey.markdown(regularValue: regularValue, titles: NodeRegion.classifierTitles(trainingSizes: trainingSizes))
        print("effective dilation (image pixels), mean ± std (nodes), \(images.count) images of \(model.config)"
              + (regular ? " (a regular network: res3-res5 analysed with zero offsets)" : "")
              + "; regions by the shape's size (sqrt(area) / image side)" + (sizeRange == nil ? ", the middle one the training split's sizes" : ""))
        print(table, terminator: "")
        if let markdown { try writeAtomically(Data(table.utf8), to: markdown) }
        if let json {
            try writeJSON(["config": model.config, "checkpoint": model.checkpoint, "images": images.count, "regular_network": regular,
                           "unit": "image pixels", "size_range": [trainingSizes.lowerBound, trainingSizes.upperBound],
                           "regions": "small: shapes below size_range, medium: within, large: above (sqrt(area) / image side)", "size_range_is_training": sizeRange == nil,
                           "layers": survey.rows(regularValue: regularValue)], to: json)
        }
    }
}

struct All: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The three analyses of a node from one pass: OUT_sampling.png, OUT_erf.png, OUT_saliency.png and OUT.json.")
    @OptionGroup var node: SingleNode
    @OptionGroup var bound: SaliencyBound
    func run() throws { try node.run("all", errorBound: bound.errorBound) }
}

struct DCNVis: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcn-vis",
        abstract: "The spatial support of a trained detector's nodes: effective sampling locations, effective receptive fields, error-bounded saliency regions.",
        subcommands: [Sampling.self, ERF.self, Saliency.self, All.self, Figure.self, Focus.self, Dilation.self])
}

System.keepFreedMemoryForReuse()
DCNVis.main()
