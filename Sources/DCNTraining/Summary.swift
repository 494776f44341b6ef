// `dcn-train --summary`: parameters per component and multiply-adds (the paper's FLOPs).
import DCNModels
import Foundation

/// Parameters and multiply-adds of a detector at one input size.
public struct ModelSummary: Codable, Sendable {
    public var inputHeight: Int
    public var inputWidth: Int
    /// Component name -> number of weights (buffers such as running statistics excluded).
    public var parameters: [String: Int]
    /// Component name -> multiply-adds of one test-time forward pass.
    public var multiplyAdds: [String: Int]
    public var componentOrder: [String]

    public var parametersTotal: Int { parameters.values.reduce(0, +) }
    public var multiplyAddsTotal: Int { multiplyAdds.values.reduce(0, +) }

    public init(model: GeneralizedRCNN, height: Int, width: Int) throws {
        let s = try model.summary(height: height, width: width)
        self.init(height: height, width: width, parameters: s.parameters, multiplyAdds: s.multiplyAdds)
    }

    /// A semantic segmentation model on a `height` x `width` image.
    public init(segmenter: SemanticSegmenter, height: Int, width: Int) throws {
        let s = try segmenter.summary(height: height, width: width)
        self.init(height: height, width: width, parameters: s.parameters, multiplyAdds: s.multiplyAdds)
    }

    /// A classifier at `size` x `size` (Table 6 counts FLOPs at 224).
    public init(classifier: ImageClassifier, size: Int) throws {
        let s = try classifier.summary(size: size)
        self.init(height: size, width: size, parameters: s.parameters, multiplyAdds: s.multiplyAdds)
    }

    init(height: Int, width: Int, parameters: [(String, Int)], multiplyAdds: [(String, Int)]) {
        inputHeight = height
        inputWidth = width
        self.parameters = Dictionary(uniqueKeysWithValues: parameters)
        self.multiplyAdds = Dictionary(uniqueKeysWithValues: multiplyAdds)
        componentOrder = parameters.map(\.0) + multiplyAdds.map(\.0).filter { name in !parameters.contains { $0.0 == name } }
    }

    /// A fixed-width table: component, parameters (M), multiply-adds (G).
    public var table: String {
        var lines = ["input \(inputHeight)x\(inputWidth)",
                     "component            params (M)   FLOPs (G, multiply-adds)"]
        for name in componentOrder {
            let p = Double(parameters[name] ?? 0) / 1e6
            let f = multiplyAdds[name].map { String(format: "%10.2f", Double($0) / 1e9) } ?? "         -"
            lines.append(name.padding(toLength: 20, withPad: " ", startingAt: 0) + String(format: "%10.3f   ", p) + f)
        }
        lines.append("total".padding(toLength: 20, withPad: " ", startingAt: 0)
                     + String(format: "%10.3f   %10.2f", Double(parametersTotal) / 1e6, Double(multiplyAddsTotal) / 1e9))
        return lines.joined(separator: "\n")
    }

    /// `{"params_total": N, "flops_total": N, "components": {name: {"params": N, "flops": N}}, ...}`
    public var json: String {
        var components: [String: [String: Int]] = [:]
        for name in componentOrder {
            components[name] = ["params": parameters[name] ?? 0, "flops": multiplyAdds[name] ?? 0]
        }
        let object: [String: Any] = ["params_total": parametersTotal, "flops_total": multiplyAddsTotal,
                                     "input": ["height": inputHeight, "width": inputWidth], "components": components]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}
