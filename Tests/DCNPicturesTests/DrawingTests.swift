// Pictures a person looks at: the bitmap font, and detections drawn next to the ground truth.
import DCNData
import DCNModels
import DCNPictures
import DCNTensor
import Testing

@Suite struct Drawing {
    /// Every printable ASCII character has its own 5x7 glyph.
    @Test func theFontHasEveryPrintableCharacter() {
        var seen: [[UInt8]: Character] = [:]
        for code in 32...126 {
            let c = Character(UnicodeScalar(UInt8(code)))
            guard let glyph = BitmapFont.glyph(c) else { Issue.record("no glyph for \(c)"); continue }
            #expect(glyph.count == BitmapFont.glyphHeight && glyph.allSatisfy { $0 < 32 }, "glyph \(c)")
            if let other = seen[glyph] { Issue.record("\(c) and \(other) have the same glyph") }
            seen[glyph] = c
        }
        #expect(BitmapFont.size(of: "ab", scale: 2) == (22, 14))
    }

    /// The picture: ground truth left, detections above the threshold right, each box in its
    /// class's colour with a label; a detection below the threshold is not drawn.
    @Test func detectionsAreDrawnNextToTheGroundTruth() throws {
        let image = try RGBImage.filled(width: 240, height: 240, color: RGBColor(128, 128, 128))
        let truth = DatasetImage(id: 1, name: "a.png", path: "", width: 240, height: 240,
                                 objects: [DatasetObject(box: Box(40, 60, 200, 220), label: 1, ignore: false, polygons: [])])
        let detections = [ImageDetection(detection: Detection(box: Box(40, 60, 200, 220), score: 0.9, label: 2), mask: nil),
                          ImageDetection(detection: Detection(box: Box(100, 100, 140, 140), score: 0.2, label: 3), mask: nil)]
        let picture = try detectionPicture(image: image, truth: truth, detections: detections, classNames: ["ring", "star", "blob"],
                                           scoreThreshold: 0.5)
        // 240 px images are drawn at 480: two panels of 480 with a 12 px gap, under a 30 px header.
        #expect(picture.width == 2 * 480 + 12 && picture.height == 480 + 30)
        func pixel(_ x: Int, _ y: Int) -> RGBColor {
            let i = 3 * (y * picture.width + x)
            return RGBColor(picture.pixels[i], picture.pixels[i + 1], picture.pixels[i + 2])
        }
        // The box's left edge (x = 80 at scale 2), halfway down, in the class colour.
        #expect(pixel(81, 30 + 280) == RGBColor.forLabel(1))
        #expect(pixel(480 + 12 + 81, 30 + 280) == RGBColor.forLabel(2))
        // The low-scoring detection's box (x = 200 at scale 2) is not drawn.
        #expect(pixel(480 + 12 + 201, 30 + 240) == RGBColor(128, 128, 128))
        // The label sits above the box: its background in the class colour, text in a readable colour.
        let labelRows = (30 + 120 - 18)..<(30 + 120)
        let labelPixels = labelRows.flatMap { y in (80..<200).map { pixel($0, y) } }
        #expect(labelPixels.contains(RGBColor.forLabel(1)) && labelPixels.contains(RGBColor.forLabel(1).readableTextColor))
    }
}
