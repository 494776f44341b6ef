// dcn-bench detect: the whole detector's per-image latency, ours against onnxruntime on the model
// `dcn-export onnx` writes of the same weights, alternated in one run on the same input tensor,
// with a breakdown into backbone, RPN + proposals and RoI heads (issue 33, item 4).
import DCNConfig
import DCNExport
import DCNModels
import DCNOps
import DCNRun
import DCNTensor
import Dispatch
import Foundation

/// The three parts of one image's detection, as the breakdown names them.
public let detectParts = ["backbone", "RPN + proposals", "RoI heads"]

/// Ours and onnxruntime on one detector config.
public struct DetectBenchResult: Sendable {
    public var label: String
    public var height: Int, width: Int, threads: Int
    /// Our median seconds per image, and per part (`detectParts` order).
    public var oursSeconds: Double
    public var oursParts: [Double]
    /// Every timed run of ours (seconds), in order.
    public var oursRuns: [Double]
    /// Our detections on the input, and the proposals.
    public var detections: Int, proposals: Int
    /// Peak resident memory of our runs (bytes) and whether it is theirs alone (the peak was reset
    /// after the model was built and exported) or the whole process's.
    public var oursPeakBytes: Int, peakIsOwn: Bool
    /// Our backbone's median seconds per stage and layer kind (with `layers`), in first-run order.
    public var layers: [(name: String, seconds: Double)]
    /// onnxruntime, when it ran.
    public var ort: ORTResult?
    /// Why onnxruntime did not run, or why it stops at the proposals.
    public var notes: [String]
}

public struct ORTResult: Sendable {
    /// "onnxruntime 1.32.0".
    public var version: String
    /// The exported part it ran: "detector", or "proposals" where the RoI heads are not exported.
    public var part: String
    /// Median seconds per run, and every timed run.
    public var seconds: Double
    public var runs: [Double]
    /// Detections of the input (the detector part).
    public var detections: Int?
    /// Its process's peak resident memory (bytes).
    public var peakBytes: Int
    /// Its profiler's kernel milliseconds per run by part (`detectParts`, then "other": the
    /// reshapes and layout reorders onnxruntime adds, named after no part), and by part and op type.
    public var profiledParts: [Double]
    public var profiledOps: [(part: String, op: String, ms: Double)]

    /// The median latency split in the proportions of the profiled parts (seconds; `detectParts`
    /// then "other").
    public var parts: [Double] {
        let total = profiledParts.reduce(0, +)
        return profiledParts.map { total > 0 ? seconds * $0 / total : 0 }
    }
}

/// The part (index into `detectParts`, 3 for "other") an exported node belongs to, from its name:
/// the exporter names nodes after their output ("backbone.layer1.0.conv1/Conv", "proposals.nms/...",
/// "detections.fc1/Gemm"); onnxruntime keeps those names through fusion ("fused detections.fc1/Gemm")
/// and the NCHWc layout change ("rpn.hidden_nchwc").
public func exportedNodePart(_ name: String) -> Int {
    let n = name.hasPrefix("fused ") ? String(name.dropFirst(6)) : name
    if n.hasPrefix("backbone.") || n.hasPrefix("res4") || n.hasPrefix("res5") { return 0 }
    if n.hasPrefix("proposal") || n.hasPrefix("rpn") { return 1 }
    if n.hasPrefix("detection") || n.hasPrefix("roi_heads.") { return 2 }
    return 3
}

/// Where the bench finds onnxruntime: a python with onnxruntime and scripts/bench_onnxruntime.py.
public struct ORTRunner: Sendable {
    public var python: String
    public var script: String
    public init(python: String, script: String) { self.python = python; self.script = script }
}

/// Times `repeats` detections of one synthetic `height x width` image (after one warm-up) by the
/// detector `config` describes, with seeded non-trivial weights (`randomizeForExportCheck`, the
/// weights of `dcn-export check-weights --seed 0`). With `ort` (and a python that has
/// onnxruntime) each of our runs is followed by one of onnxruntime on the same weights and the
/// same input, exported by `detectorModel` (`--part detector`, or `--part proposals` where the
/// RoI heads are not exported); then its profiler splits its time by part. `say` gets each run.
public func runDetectBenchmark(config: ExperimentConfig, label: String, height: Int, width: Int, repeats: Int,
                               ort: ORTRunner?, layers: Bool = false, say: (String) -> Void) throws -> DetectBenchResult {
    var experiment = config
    experiment.backbone.weights = nil
    let model = try buildModel(experiment, classes: defaultClassCount(experiment))
    randomizeForExportCheck(model.parameters, seed: 0)
    let image = syntheticImage(height: height, width: width, seed: 3)
    let sizes = [ImageSize(height: height, width: width)]
    var notes: [String] = []

    // onnxruntime's server on the exported model of the same weights, reading the same input.
    var server: ORTServer?
    var ortPart: (name: String, path: String)?
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dcn-bench-detect-\(getpid())-\(UInt32.random(in: 0 ... .max))")
    defer { try? FileManager.default.removeItem(at: folder) }
    if let ort {
        if !FileManager.default.isExecutableFile(atPath: ort.python) {
            notes.append("onnxruntime: not available (no python at \(ort.python); `make check-onnx` creates .venv-onnx, or give --ort-python)")
        } else if !FileManager.default.fileExists(atPath: ort.script) {
            notes.append("onnxruntime: not available (no \(ort.script); run dcn-bench from the repository's root or give --ort-script)")
        } else {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            // The whole detector when the export covers its RoI heads, else up to the proposals.
            for part in [ExportPart.detector, .proposals] where ortPart == nil {
                do {
                    let path = folder.appendingPathComponent("\(part.rawValue).onnx").path
                    try serializedModel(try detectorModel(model, part: part)).write(to: URL(fileURLWithPath: path))
                    ortPart = (part.rawValue, path)
                } catch {
                    notes.append("onnxruntime: \(error); it runs --part proposals (its RoI heads are not measured)")
                }
            }
            let input = folder.appendingPathComponent("input.safetensors").path
            try SafeTensorsWriter.write(["image": image], to: input)
            if let (name, path) = ortPart {
                do {
                    server = try ORTServer(python: ort.python, script: ort.script,
                                           arguments: ["--input", input, "--threads", "\(Threads.count)", "\(name)=\(path)"])
                } catch {
                    notes.append("onnxruntime: not available (\(error))")
                }
            }
        }
    }
    defer { server?.stop() }

    // The peak of our runs alone: the model is built and exported by now.
    let peakIsOwn = System.resetPeakResidentBytes()
    let ws = Workspace()
    var oursRuns: [Double] = [], partRuns: [[Double]] = [[], [], []], ortRuns: [Double] = []
    let layerSeconds = LayerSecondsMedians()
    var detections = 0, proposals = 0
    for r in 0...repeats {
        let profiler = LayerProfiler()
        let (parts, found, proposed) = layers ? try profiler.collect { try timedDetect(model, image, sizes, ws) }
                                              : try timedDetect(model, image, sizes, ws)
        (detections, proposals) = (found, proposed)
        if r > 0 {
            oursRuns.append(parts.reduce(0, +))
            for i in 0..<3 { partRuns[i].append(parts[i]) }
            if layers { layerSeconds.add(profiler.layers) }
        }
        var line = "\(label): run \(r)\(r == 0 ? " (warm-up)" : ""): ours \(String(format: "%.3f", parts.reduce(0, +))) s"
        if let server, let ortPart {
            let seconds = try server.run(ortPart.name)
            if r > 0 { ortRuns.append(seconds) }
            line += ", onnxruntime (\(ortPart.name)) \(String(format: "%.3f", seconds)) s"
        }
        say(line)
    }
    var ortResult: ORTResult?
    if let server, let ortPart {
        let ortDetections = ortPart.name == "detector" ? try server.outputShapes(ortPart.name)[detectionBoxesName]?.first : nil
        var profiledParts = [0.0, 0.0, 0.0, 0.0]
        var byOp: [String: (part: Int, op: String, ms: Double)] = [:]
        for (name, node) in try server.profile(ortPart.name, runs: 2) {
            let p = exportedNodePart(name)
            profiledParts[p] += node.ms
            byOp["\(p) \(node.op)", default: (p, node.op, 0)].ms += node.ms
        }
        let partNames = detectParts + ["other"]
        let ops = byOp.values.map { (part: partNames[$0.part], op: $0.op, ms: $0.ms) }.sorted { $0.ms > $1.ms }
        ortResult = ORTResult(version: server.version, part: ortPart.name, seconds: median(ortRuns), runs: ortRuns, detections: ortDetections,
                              peakBytes: try server.peakBytes(), profiledParts: profiledParts, profiledOps: ops)
    }
    return DetectBenchResult(label: label, height: height, width: width, threads: Threads.count,
                             oursSeconds: median(oursRuns), oursParts: partRuns.map(median), oursRuns: oursRuns,
                             detections: detections, proposals: proposals,
                             oursPeakBytes: System.peakResidentBytes(), peakIsOwn: peakIsOwn,
                             layers: layerSeconds.medians, ort: ortResult, notes: notes)
}

/// One image through `model.detect`'s stages, each timed: seconds of the backbone, the RPN head
/// and its proposals, and the RoI heads (box head candidates, NMS, every branch's additions);
/// the detections and proposals found.
func timedDetect(_ model: GeneralizedRCNN, _ image: Tensor, _ sizes: [ImageSize], _ ws: Workspace) throws -> ([Double], Int, Int) {
    var seconds: [Double] = []
    var clock = DispatchTime.now().uptimeNanoseconds
    func lap() {
        let now = DispatchTime.now().uptimeNanoseconds
        seconds.append(Double(now - clock) / 1e9)
        clock = now
    }
    var (features, _) = try model.backbone.forward(image, training: false, ws)
    lap()
    let rpnOut = try model.rpn.forward(features[model.rpn.inFeature]!, ws)
    let proposals = try model.rpn.proposals(rpnOut, imageSizes: sizes, training: false)
    lap()
    let box = try model.boxHead.candidates(features, proposals: proposals, imageSizes: sizes, ws)
    features.accumulate(box.published)
    var detections = try box.candidates.map { try model.boxHead.select($0) }
    try model.annotate(&detections, features: features, ws)
    lap()
    return (seconds, detections[0].count, proposals[0].count)
}

/// A normalised RGB image [1, 3, H, W] (ImageNet's mean and std) with smooth blobs, gradients and
/// a little noise, as scripts/check_onnx.py makes: seeded, the same on every run.
public func syntheticImage(height: Int, width: Int, seed: UInt64) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
    var data = [Float](repeating: 0, count: 3 * height * width)
    for c in 0..<3 {
        let blobs = (0..<4).map { _ in
            (y: rng.uniform(0, Float(height)), x: rng.uniform(0, Float(width)),
             r: rng.uniform(4, Float(max(height, width)) / 3), a: rng.uniform(0.3, 1))
        }
        let gy = rng.uniform(-1, 1), gx = rng.uniform(-1, 1)
        for y in 0..<height {
            for x in 0..<width {
                var v = (Float(x) * gx + Float(y) * gy) / Float(height + width)
                for b in blobs {
                    let d = (Float(y) - b.y) * (Float(y) - b.y) + (Float(x) - b.x) * (Float(x) - b.x)
                    v += b.a * Float(exp(Double(-d / (2 * b.r * b.r))))
                }
                v = min(1, max(0, v + rng.uniform(0, 0.1)))
                data[(c * height + y) * width + x] = (v - mean[c]) / std[c]
            }
        }
    }
    return try! Tensor(shape: [1, 3, height, width], data: data)
}

/// Each layer key's seconds over the timed runs; the medians in first-seen order.
final class LayerSecondsMedians {
    private var seconds: [String: [Double]] = [:]
    private var order: [String] = []

    func add(_ profiler: PhaseProfiler) {
        for name in profiler.order {
            if seconds[name] == nil { order.append(name) }
            seconds[name, default: []].append(profiler.seconds[name]!)
        }
    }

    var medians: [(name: String, seconds: Double)] { order.map { ($0, median(seconds[$0]!)) } }
}

/// What went wrong with onnxruntime's side of the bench.
public struct ORTServerError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// scripts/bench_onnxruntime.py, started once and asked for one timed run at a time over its stdin.
final class ORTServer {
    private let process = Process()
    private let input = Pipe(), output = Pipe()
    private var buffer = Data()
    /// "onnxruntime 1.32.0 CPUExecutionProvider".
    let version: String

    init(python: String, script: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script] + arguments
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let first = try Self.readLine(output, &buffer) ?? "error it exited before answering"
        guard first.hasPrefix("ready ") else {
            process.waitUntilExit()
            throw ORTServerError(first.hasPrefix("error ") ? String(first.dropFirst(6)) : "unexpected first line '\(first)' from \(script)")
        }
        let words = first.split(separator: " ")
        version = words.dropFirst().prefix(2).joined(separator: " ")
    }

    /// Sends `request`; returns the answer without its first word (which must be `expect`).
    func ask(_ request: String, expect: String) throws -> String {
        input.fileHandleForWriting.write(Data((request + "\n").utf8))
        guard let line = try Self.readLine(output, &buffer) else { throw ORTServerError("onnxruntime's server exited on '\(request)'") }
        guard line.hasPrefix(expect + " ") else { throw ORTServerError("onnxruntime's server on '\(request)': \(line)") }
        return String(line.dropFirst(expect.count + 1))
    }

    /// Seconds of one run of model `name`.
    func run(_ name: String) throws -> Double {
        let text = try ask("run \(name)", expect: "ms")
        guard let ms = Double(text) else { throw ORTServerError("onnxruntime's server: '\(text)' is not a number of milliseconds") }
        return ms / 1000
    }

    /// Each output's shape after a run of `name`.
    func outputShapes(_ name: String) throws -> [String: [Int]] {
        try JSONDecoder().decode([String: [Int]].self, from: Data(try ask("outputs \(name)", expect: "outputs").utf8))
    }

    /// Milliseconds per run of each node of `name` (by node name, with its op type) over `runs`
    /// profiled runs after a warm-up (onnxruntime's profiler, a separate session).
    func profile(_ name: String, runs: Int) throws -> [String: (op: String, ms: Double)] {
        struct Node: Decodable {
            var op: String, ms: Double
            init(from decoder: Decoder) throws {
                var c = try decoder.unkeyedContainer()
                op = try c.decode(String.self); ms = try c.decode(Double.self)
            }
        }
        let nodes = try JSONDecoder().decode([String: Node].self, from: Data(try ask("profile \(name) \(runs)", expect: "profile").utf8))
        return nodes.mapValues { ($0.op, $0.ms) }
    }

    /// The server process's peak resident set size.
    func peakBytes() throws -> Int { Int(try ask("memory", expect: "memory")) ?? 0 }

    func stop() {
        guard process.isRunning else { return }
        input.fileHandleForWriting.write(Data("quit\n".utf8))
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    /// The next line of `pipe` (without its newline), or nil at its end.
    private static func readLine(_ pipe: Pipe, _ buffer: inout Data) throws -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer = Data(buffer[buffer.index(after: newline)...])
                return line
            }
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
    }
}
