// DCNv1's Table 2 for a classifier on a `dcn-data synth-cls` set (the offsets-only test): the
// training split's shape sizes and the survey of the evaluation images, each with its shape's box
// from `objects.json`. What `dcn-vis dilation` prints and writes for classifiers.
import DCNData
import DCNModels
import DCNOps
import Foundation

/// A `dcn-data synth-cls` set that does not hold what the survey needs.
public struct ClassifierSetError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The training split's shape sizes (sqrt(area) / image side) of the `dcn-data synth-cls` set in
/// `root`, from its geometry.json.
public func trainingShapeSizes(root: String) throws -> ClosedRange<Double> {
    let geometryPath = root + "/geometry.json"
    guard let geometryData = FileManager.default.contents(atPath: geometryPath),
          let sizes = (try? JSONDecoder().decode([String: ShapeGeometry].self, from: geometryData))?["train"]?.size else {
        throw ClassifierSetError("\(geometryPath): expected the training split's shape sizes (a `dcn-data synth-cls` set: dcn-vis dilation analyses classifiers on it)")
    }
    return sizes
}

/// The effective dilation of `network`'s deformable layers over `images` (of the evaluation split of
/// the set in `root`, its objects.json naming each image's shape), each as the evaluation sees it
/// (`view`), the regions by the shape's size against `trainingSizes`.
public func classifierDilationSurvey(_ network: ResNet, images: [DatasetImage], root: String, view: ResizeCenterCrop,
                                     trainingSizes: ClosedRange<Double>) throws -> DilationSurvey {
    let objects = Dictionary((try readClassificationObjects(root: root)["val"] ?? []).map { ($0.file, $0) }, uniquingKeysWith: { a, _ in a })
    var survey = DilationSurvey()
    let ws = Workspace()
    for entry in images {
        let file = URL(fileURLWithPath: entry.path).standardizedFileURL.path
        guard file.hasPrefix(root + "/"), let object = objects[String(file.dropFirst(root.count + 1))] else {
            throw ClassifierSetError("\(root)/objects.json: no shape listed for \(entry.path)")
        }
        try survey.add(classifier: network, original: try decodeImage(path: entry.path), view: view, object: object,
                       trainingSizes: trainingSizes, ws)
    }
    return survey
}
