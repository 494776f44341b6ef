// What dcn-vis reports, as functions: run lengths of a saliency mask, mean and quartiles, node
// names, the layers a picture shows, the nodes picked from the ground truth, the support inside a
// box, one node's pictures and numbers, and the effective-dilation rows.
import DCNAnalysis
import DCNData
import DCNModels
import DCNOps
import DCNPictures
import DCNTensor
import Testing

@Suite struct NodeReports {
    @Test func runLengthsStartWithARunOfFalse() {
        #expect(runLengths([]) == [0])
        #expect(runLengths([true, true, false]) == [0, 2, 1])
        #expect(runLengths([false, false, true, true, true, false]) == [2, 3, 1])
        #expect(runLengths([false]) == [1])
    }

    @Test func meanAndQuartilesInterpolateBetweenOrderStatistics() {
        #expect(meanAndQuartiles([5, 1, 4, 2, 3]) == ["mean": 3, "q1": 2, "median": 3, "q3": 4])
        #expect(meanAndQuartiles([2, 1]) == ["mean": 1.5, "q1": 1.25, "median": 1.5, "q3": 1.75])
        #expect(meanAndQuartiles([7]) == ["mean": 7, "q1": 7, "median": 7, "q3": 7])
    }

    @Test func nodesAreNamedByStageAndPositionOrByTheirRoI() {
        #expect(describeNode(SupportNode(stage: "res5", row: 3, column: 4)) == "res5[3, 4]")
        #expect(describeNode(.roi(Box(10, 20.4, 30, 40))) == "2fc of RoI (10, 20, 30, 40)")
    }

    @Test func picturesShowTheNodesStageOrTheRoIBins() {
        let unit = SupportNode(stage: "res3", row: 0, column: 0)
        let res3 = shownLayers(unit, stage: "res3")
        #expect(res3("backbone.layer2.0.conv2") && !res3("backbone.layer4.0.conv2") && !res3("roi_bins"))
        #expect(shownLayers(unit, stage: "res5")("backbone.layer4.1.conv2"))
        let roi = shownLayers(.roi(Box(0, 0, 8, 8)), stage: "res5")
        #expect(roi("roi_bins") && !roi("backbone.layer4.0.conv2"))
    }

    @Test func automaticNodesAreTheSmallestAndLargestObjectsAndTheFarthestBackground() {
        let objects = [DatasetObject(box: Box(100, 20, 180, 90), label: 1), DatasetObject(box: Box(10, 10, 20, 20), label: 2),
                       DatasetObject(box: Box(0, 0, 5, 5), label: 1, ignore: true)]
        let image = DatasetImage(id: 1, name: "a.jpg", path: "a.jpg", width: 200, height: 100, objects: objects)
        let nodes = automaticNodes(image, width: 200, height: 100)
        #expect(nodes.map(\.name) == ["small", "large", "background"])
        #expect(nodes[0].x == 15 && nodes[0].y == 15 && nodes[0].box == (10, 10, 20, 20))
        #expect(nodes[1].x == 140 && nodes[1].y == 55)
        // The background point is outside every box and away from the border; its box has the
        // median object's size (the larger of two) and stays in the image.
        let b = nodes[2]
        #expect(!(b.x >= 100 && b.x <= 180 && b.y >= 20 && b.y <= 90) && !(b.x >= 10 && b.x <= 20 && b.y >= 10 && b.y <= 20))
        #expect(b.box.x2 - b.box.x1 <= 80 && b.box.y2 - b.box.y1 <= 70 && b.box.x1 >= 0 && b.box.y1 >= 0 && b.box.x2 <= 200 && b.box.y2 <= 100)
        // No objects: only the background, with a box a quarter of the image each way.
        let empty = automaticNodes(DatasetImage(id: 2, name: "b.jpg", path: "b.jpg", width: 200, height: 100, objects: []), width: 200, height: 100)
        #expect(empty.map(\.name) == ["background"])
        #expect(empty[0].box.x2 - empty[0].box.x1 == 50 && empty[0].box.y2 - empty[0].box.y1 == 25)
    }

    /// One analysed node of a tiny deformable network on a 64 x 48 image.
    func analysedNode(errorBound: Double? = 0.2) throws -> (NodeSupport, AnalysisImage) {
        let support = BackboneSupport(backbone: try tinyBackbone(res5: .dconv))
        var pixels = [UInt8](repeating: 0, count: 64 * 48 * 3)
        var rng = SeededGenerator(seed: 5)
        for i in pixels.indices { pixels[i] = UInt8(rng.next() % 256) }
        let image = try AnalysisImage(try RGBImage(width: 64, height: 48, pixels: pixels), size: 48, maxSize: 64)
        return (try support.analyse(image, .point(stage: "res5", x: 30, y: 20), errorBound: errorBound), image)
    }

    @Test func theSupportInsideABoxIsAShareOfTheWhole() throws {
        let (node, image) = try analysedNode()
        let (w, h) = (image.image.width, image.image.height)
        let all = insideShares(node, box: (0, 0, Double(w), Double(h)), width: w, height: h)
        #expect(abs(all.erf - 1) < 1e-12 && all.saliency == 1)
        let none = insideShares(node, box: (Double(w) + 10, 0, Double(w) + 20, 10), width: w, height: h)
        #expect(none.erf == 0 && none.saliency == 0)
        // The left half: the ERF mass of the pixels whose centres are inside, over the total.
        let g = node.gradients
        var left = 0.0, total = 0.0
        for y in 0..<h { for x in 0..<w { let v = Double(g.receptiveField[y * g.width + x]); total += v; if x < w / 2 { left += v } } }
        let half = insideShares(node, box: (0, 0, Double(w / 2), Double(h)), width: w, height: h)
        #expect(abs(half.erf - left / total) < 1e-12)
        #expect((0...1).contains(half.saliency))
        // Without a saliency region the region's share is 0.
        let (noRegion, _) = try analysedNode(errorBound: nil)
        #expect(insideShares(noRegion, box: (0, 0, Double(w), Double(h)), width: w, height: h).saliency == 0)
    }

    @Test func aNodesPicturesAndNumbersCoverTheImage() throws {
        let (node, image) = try analysedNode()
        let (w, h) = (image.image.width, image.image.height)
        let outputs = nodePictures(node, on: image.image, tools: ["sampling", "erf", "saliency"], stage: "res5")
        #expect(outputs.pictures.count == 3 && outputs.pictures.allSatisfy { $0.width == w && $0.height == h })
        let field = try #require(outputs.numbers["receptive_field"] as? [String: Any])
        #expect((field["values"] as? [Double])?.count == w * h && field["height"] as? Int == h && field["width"] as? Int == w)
        let points = try #require(outputs.numbers["sampling_points"] as? [[String: Any]])
        #expect(points.count == node.gradients.samples.count && !points.isEmpty)
        let saliency = try #require(outputs.numbers["saliency"] as? [String: Any])
        #expect((saliency["mask_row_runs"] as? [Int])?.reduce(0, +) == w * h)
        #expect(saliency["error_bound"] as? Double == 0.2)
        // One tool: one picture and its numbers only.
        let erf = nodePictures(node, on: image.image, tools: ["erf"], stage: "res5")
        #expect(erf.pictures.count == 1 && Set(erf.numbers.keys) == ["receptive_field"])

        let numbers = nodeNumbers(node, originalX: 7, originalY: 9)
        let described = try #require(numbers["node"] as? [String: Any])
        #expect(described["stage"] as? String == "res5" && described["original_x"] as? Double == 7 && described["original_y"] as? Double == 9)
        #expect(described["row"] as? Int != nil && described["column"] as? Int != nil)
        let norm = node.gradients.response.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(numbers["response_norm"] as? Double == norm && norm > 0)
    }

    @Test func dilationRowsHaveEveryRegionWithNodesAndTheRegularKernel() throws {
        let backbone = try tinyBackbone(res5: .dconv)
        let image = try AnalysisImage(RGBImage(width: 128, height: 96, fill: (120, 90, 60)), size: 96, maxSize: 128)
        var survey = DilationSurvey()
        try survey.add(backbone: backbone, image: image, boxes: [Box(5, 5, 60, 60), Box(20, 20, 40, 40)], Workspace())
        let regular = regularKernelDilation(backbone)
        // res5: dilation 2 on stride-16 inputs.
        #expect(backbone.deformableLayers.allSatisfy { regular($0.name) == 32 } && regular("no such layer") == nil)
        let rows = survey.rows(regularValue: regular)
        // Small, medium and background per layer (no large object).
        #expect(rows.count == 3 * survey.layers.count)
        #expect(rows.map { $0["region"] as? String } == Array(repeating: ["small", "medium", "background"], count: survey.layers.count).flatMap { $0 })
        #expect(rows.allSatisfy { $0["regular_kernel"] as? Double == 32 && ($0["nodes"] as? Int ?? 0) > 0 })
        #expect(survey.rows(regularValue: { _ in nil }).allSatisfy { $0["regular_kernel"] as? Double == 0 })
    }
}
