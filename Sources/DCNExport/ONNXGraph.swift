// An ONNX graph under construction: nodes in topological order, weights as initializers, every
// name unique. The exporters (BackboneExport.swift) add nodes through it; `model` wraps the graph
// in a ModelProto of ONNX IR 9 with the default domain at opset 19 (the first with DeformConv).
import DCNTensor
import Foundation
import SwiftProtobuf

/// An error of the export: something the model holds that the ONNX graph cannot express, or a
/// name used twice.
public struct ExportError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The opset of the default domain ("ai.onnx") the exported models import: 19, where DeformConv
/// (with its `mask` input for DCNv2) first appears.
public let onnxOpset: Int64 = 19

/// ONNX IR version 9 (ONNX 1.14, the release of opset 19).
public let onnxIRVersion: Int64 = 9

/// A dimension of a graph input or output: a fixed size or a symbolic name (dynamic).
public enum ONNXDim: Equatable, Sendable {
    case fixed(Int)
    case symbolic(String)
}

/// A graph input or output: a tensor of this shape, float32 unless `int64`.
public struct ONNXValue: Equatable, Sendable {
    public let name: String
    public let shape: [ONNXDim]
    public let int64: Bool
    public init(name: String, shape: [ONNXDim], int64: Bool = false) { self.name = name; self.shape = shape; self.int64 = int64 }
}

/// One node attribute (the few kinds the exporters use).
public enum ONNXAttribute {
    case int(String, Int)
    case ints(String, [Int])
    case float(String, Float)
    case string(String, String)

    var proto: Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        switch self {
        case let .int(name, v):
            a.name = name; a.type = .int; a.i = Int64(v)
        case let .ints(name, v):
            a.name = name; a.type = .ints; a.ints = v.map(Int64.init)
        case let .float(name, v):
            a.name = name; a.type = .float; a.f = v
        case let .string(name, v):
            a.name = name; a.type = .string; a.s = Data(v.utf8)
        }
        return a
    }
}

/// Nodes and initializers in the order they are added (a node may only read names defined
/// before it: graph inputs, initializers, earlier nodes' outputs).
public struct ONNXGraph {
    public private(set) var nodes: [Onnx_NodeProto] = []
    public private(set) var initializers: [Onnx_TensorProto] = []
    /// Every name defined so far: graph inputs, initializers, node outputs.
    public private(set) var defined: Set<String> = []
    private var nodeNames: Set<String> = []
    /// Constant int64 vectors already added, by value (a shape used by many Reshapes is stored once).
    private var int64Constants: [[Int64]: String] = [:]
    private var floatConstants: [UInt32: String] = [:]

    public init() {}

    /// Declares a graph input so that nodes may read it.
    public mutating func declareInput(_ name: String) throws {
        try define(name)
    }

    private mutating func define(_ name: String) throws {
        guard !name.isEmpty, defined.insert(name).inserted else {
            throw ExportError("onnx export: the name '\(name)' is defined twice")
        }
    }

    /// Adds a float32 initializer named `name` holding `tensor`; returns the name.
    @discardableResult
    public mutating func initializer(_ name: String, _ tensor: Tensor) throws -> String {
        try initializer(name, shape: tensor.shape, values: tensor.data)
    }

    /// Adds a float32 initializer of `shape` holding `values` (row-major); returns the name.
    @discardableResult
    public mutating func initializer(_ name: String, shape: [Int], values: [Float]) throws -> String {
        guard shape.reduce(1, *) == values.count else {
            throw ExportError("onnx export: initializer '\(name)' has shape \(shape) but \(values.count) values")
        }
        try define(name)
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.dims = shape.map(Int64.init)
        t.rawData = values.withUnsafeBufferPointer(littleEndianBytes)
        initializers.append(t)
        return name
    }

    /// An int64 vector constant (shapes, axes): added once per value, named `name` the first time.
    public mutating func int64Constant(_ name: String, _ values: [Int]) throws -> String {
        let v = values.map(Int64.init)
        if let existing = int64Constants[v] { return existing }
        try define(name)
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        t.dims = [Int64(v.count)]
        var data = Data(capacity: 8 * v.count)
        for x in v { withUnsafeBytes(of: x.littleEndian) { data.append(contentsOf: $0) } }
        t.rawData = data
        initializers.append(t)
        int64Constants[v] = name
        return name
    }

    /// An int64 scalar constant (a Gather index, a Range bound), added once per value.
    public mutating func int64Scalar(_ value: Int) throws -> String {
        let key = [Int64.min, Int64(value)]  // distinct from every vector key (no vector starts with Int64.min)
        if let existing = int64Constants[key] { return existing }
        let name = "const.int64.\(value)"
        try define(name)
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        withUnsafeBytes(of: Int64(value).littleEndian) { t.rawData = Data($0) }
        initializers.append(t)
        int64Constants[key] = name
        return name
    }

    /// A float32 scalar constant, added once per value.
    public mutating func floatScalar(_ value: Float) throws -> String {
        if let existing = floatConstants[value.bitPattern] { return existing }
        let name = "const.float.\(value)"
        try initializer(name, shape: [], values: [value])
        floatConstants[value.bitPattern] = name
        return name
    }

    /// Adds a node `op` reading `inputs` (an empty string skips an optional input) and writing
    /// `outputs`; the node is named after its first output. Returns the outputs.
    @discardableResult
    public mutating func node(_ op: String, _ inputs: [String], outputs: [String], _ attributes: [ONNXAttribute] = []) throws -> [String] {
        for input in inputs where !input.isEmpty && !defined.contains(input) {
            throw ExportError("onnx export: node \(op) -> \(outputs) reads '\(input)', which nothing defines before it")
        }
        for output in outputs { try define(output) }
        var n = Onnx_NodeProto()
        n.opType = op
        n.input = inputs
        n.output = outputs
        let name = outputs[0] + "/" + op
        guard nodeNames.insert(name).inserted else { throw ExportError("onnx export: two nodes are named '\(name)'") }
        n.name = name
        n.attribute = attributes.map(\.proto)
        nodes.append(n)
        return outputs
    }

    /// A node with one output; returns its name.
    @discardableResult
    public mutating func node(_ op: String, _ inputs: [String], output: String, _ attributes: [ONNXAttribute] = []) throws -> String {
        try node(op, inputs, outputs: [output], attributes)[0]
    }

    /// The graph as a model: `inputs` and `outputs` typed float32 with their (possibly symbolic)
    /// shapes, `metadata` as the model's metadata_props.
    public func model(name: String, inputs: [ONNXValue], outputs: [ONNXValue], docString: String,
                      metadata: [(String, String)] = []) throws -> Onnx_ModelProto {
        for output in outputs where !defined.contains(output.name) {
            throw ExportError("onnx export: the graph output '\(output.name)' is computed by no node")
        }
        var g = Onnx_GraphProto()
        g.name = name
        g.node = nodes
        g.initializer = initializers
        g.input = inputs.map(Self.valueInfo)
        g.output = outputs.map(Self.valueInfo)
        var m = Onnx_ModelProto()
        m.irVersion = onnxIRVersion
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = onnxOpset
        m.opsetImport = [opset]
        m.producerName = "dcn-export"
        m.producerVersion = "1"
        m.docString = docString
        m.graph = g
        m.metadataProps = metadata.map { k, v in
            var p = Onnx_StringStringEntryProto()
            p.key = k; p.value = v
            return p
        }
        return m
    }

    static func valueInfo(_ v: ONNXValue) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        shape.dim = v.shape.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            switch d {
            case .fixed(let n): dim.dimValue = Int64(n)
            case .symbolic(let s): dim.dimParam = s
            }
            return dim
        }
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32((v.int64 ? Onnx_TensorProto.DataType.int64 : .float).rawValue)
        tensor.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensor
        var info = Onnx_ValueInfoProto()
        info.name = v.name
        info.type = type
        return info
    }
}

/// The float32 values as little-endian bytes.
private func littleEndianBytes(_ b: UnsafeBufferPointer<Float>) -> Data {
    #if _endian(little)
    return Data(buffer: b)
    #else
    var data = Data(capacity: 4 * b.count)
    for x in b { withUnsafeBytes(of: x.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    return data
    #endif
}
