// The whole detector learns: on two synthetic images, each RoI extractor (and mdpool with
// mimicking) drives the training loss below 10% of its start and then detects every object.
import DCNConfig
import DCNData
import DCNEval
import DCNModels
import DCNOps
import DCNTensor
import DCNTraining
import Testing
import DCNAnnotations

/// Two synthetic images (128 px by default) as a padded batch, with their targets and COCO ground truth.
func twoSyntheticImages(size: Int = 128) throws -> (images: Tensor, sizes: [ImageSize], targets: [Instances], truth: COCOGroundTruth) {
    let samples = (0..<2).map { renderSyntheticImage(seed: 11, split: 0, index: $0, size: size) }
    let (images, sizes) = try padAndStack(samples.map { PixelNormalization.imageNet.tensor(from: $0.image) }, sizeDivisibility: 32)
    var targets: [Instances] = [], cocoImages: [COCOImage] = [], annotations: [COCOAnnotation] = []
    for (i, s) in samples.enumerated() {
        let boxes = s.objects.map { Box(Float($0.bbox[0]), Float($0.bbox[1]), Float($0.bbox[0] + $0.bbox[2]), Float($0.bbox[1] + $0.bbox[3])) }
        targets.append(Instances(boxes: boxes, labels: s.objects.map(\.categoryID),
                                 polygons: s.objects.map { $0.polygons.map { $0.map(Float.init) } }))
        cocoImages.append(COCOImage(id: i + 1, width: s.image.width, height: s.image.height, fileName: "\(i).jpg"))
        for o in s.objects {
            annotations.append(COCOAnnotation(id: annotations.count + 1, imageID: i + 1, categoryID: o.categoryID,
                                              bbox: COCOBox(x: o.bbox[0], y: o.bbox[1], width: o.bbox[2], height: o.bbox[3]),
                                              area: Double(o.area), segmentation: .polygons(o.polygons)))
        }
    }
    let categories = syntheticClassNames.enumerated().map { COCOCategory(id: $0.offset + 1, name: $0.element) }
    return (images, sizes, targets, COCOGroundTruth(images: cocoImages, annotations: annotations, categories: categories))
}

func overfitSpec(_ extractor: RoIExtractorKind, _ mimic: MimicRegions, mask: Bool = false) -> DetectorSpec {
    var backbone = ResNetSpec(BackboneConfig())  // the backbone section's defaults: R-50's bottleneck blocks
    backbone.layers = [1, 1, 1, 1]
    backbone.stemWidth = 16
    backbone.stagePlanes = [8, 16, 32, 32]
    backbone.stageConv = [.regular, .mdconv, .mdconv, .mdconv]
    backbone.res5Dilation = 2
    backbone.frozenStages = 0
    backbone.norm = .groupNorm(groups: 4)
    var rpn = RPNSpec(RPNConfig())
    rpn.anchors = AnchorGenerator(sizes: [16, 32, 64, 128], aspectRatios: [0.5, 1, 2], stride: 16)
    rpn.headChannels = 32
    rpn.batchSizePerImage = 64
    rpn.preNMSTopKTrain = 300; rpn.postNMSTopKTrain = 100
    rpn.preNMSTopKTest = 300; rpn.postNMSTopKTest = 100
    var head = RoIHeadSpec(RoIHeadConfig())
    head.extractor = extractor
    head.reduceChannels = 32
    head.fcDim = 128
    head.batchSizePerImage = 64
    head.offsetLearningRateScale = 0.1
    var m = MimicSpec(MimicConfig())
    m.regions = mimic
    m.roisPerImage = 4
    m.patchSize = 32
    var maskSpec = MaskHeadSpec(MaskConfig())
    maskSpec.convDim = 32
    return DetectorSpec(backbone: backbone, rpn: rpn, roiHead: head, branches: (mimic == .off ? [] : [m]) + (mask ? [maskSpec] : []),
                        classes: syntheticClassNames.count)
}

@Test(arguments: [(RoIExtractorKind.roialign, MimicRegions.off, false), (.dpool, .off, false), (.mdpool, .fg, false),
                  (.mdpool, .fg, true)])
func detectorOverfitsTwoSyntheticImages(extractor: RoIExtractorKind, mimic: MimicRegions, mask: Bool) throws {
    // Masks of objects a few feature cells wide are the mask branch's limit (14x14 RoI features
    // from a stride-16 map): the mask case uses 192-px images, whose objects span more cells.
    let (images, sizes, targets, truth) = try twoSyntheticImages(size: mask ? 192 : 128)
    let model = try GeneralizedRCNN(spec: overfitSpec(extractor, mimic, mask: mask), seed: 4)
    let sgd = SGD(parameters: model.parameters.all, momentum: 0.9, weightDecay: 1e-4, weightDecayNorm: 0)
    // The mask branch learns more slowly than the boxes (its loss is still 0.4 after 160 steps): twice the schedule.
    let iterations = mask ? 320 : 160
    let schedule = LearningRateSchedule(baseLR: 0.02, warmupIterations: 30, warmupFactor: 0.01, steps: [iterations * 13 / 16], gamma: 0.1)
    var rng = SeededGenerator(seed: 8)
    let ws = Workspace()
    var history: [Double] = []
    for step in 0..<iterations {
        model.parameters.zeroGrad()
        let losses = try model.trainStep(images: images, sizes: sizes, targets: targets, rng: &rng, ws)
        history.append(losses.values.reduce(0.0) { $0 + Double($1) })
        sgd.step(lr: schedule.rate(at: step), clipNorm: 10)
    }
    let start = history.prefix(5).reduce(0, +) / 5, end = history.suffix(10).reduce(0, +) / 10
    #expect(end < 0.1 * start, "\(extractor) mimic \(mimic): loss \(start) -> \(end)")

    let detections = try model.detect(images: images, sizes: sizes, ws)
    var results: [COCOResult] = [], maskResults: [COCOResult] = []
    for (i, dets) in detections.enumerated() {
        for d in dets {
            results.append(COCOResult(imageID: i + 1, categoryID: d.label, score: Double(d.score),
                                      bbox: COCOBox(x: Double(d.box.x1), y: Double(d.box.y1), width: Double(d.box.width), height: Double(d.box.height))))
            guard let probabilities = d.mask else { continue }
            let rle = try pasteMaskRLE(probabilities: probabilities, maskSize: model.spec.branch(MaskHeadSpec.self)!.maskSize,
                                       box: MaskBox(x0: d.box.x1, y0: d.box.y1, x1: d.box.x2, y1: d.box.y2),
                                       imageHeight: sizes[i].height, imageWidth: sizes[i].width)
            maskResults.append(COCOResult(imageID: i + 1, categoryID: d.label, score: Double(d.score),
                                          segmentation: .compressedRLE(height: rle.height, width: rle.width, counts: rle.compressedString)))
        }
    }
    let evaluation = try evaluateCOCO(groundTruth: truth, results: results, iouType: .bbox, threads: 1)
    #expect(evaluation.stats.AP50 == 1.0, "\(extractor) mimic \(mimic): AP50 \(evaluation.stats.AP50), \(targets.map(\.boxes.count)) objects")
    if mask {
        let segm = try evaluateCOCO(groundTruth: truth, results: maskResults, iouType: .segm, threads: 1)
        #expect(segm.stats.AP50 == 1.0, "Mask R-CNN: segm AP50 \(segm.stats.AP50), AP \(segm.stats.AP)")
    }
}
