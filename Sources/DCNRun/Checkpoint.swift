// Training checkpoints in safetensors: every parameter and buffer under `model.`, the momentum
// buffers under `momentum.`, and in the metadata the iteration, the random generator's state, the
// resolved config and the training data's class names. Written atomically (temporary file +
// rename); `latest` is a symlink replaced atomically too, so an interrupted write never damages the
// previous checkpoint.
import DCNModels
import DCNTensor
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a checkpoint holds besides the tensors.
/// An optimiser whose state a checkpoint keeps: a tensor per trainable parameter (SGD's momentum,
/// `momentum.<name>` in the file).
public protocol CheckpointedOptimizer: AnyObject {
    /// The trainable parameters, each with one state tensor.
    var parameters: [Parameter] { get }
    /// The state tensors by parameter name.
    var velocityTensors: [(name: String, value: Tensor)] { get }
    /// Sets the state of parameter `name` (throws on an unknown name or a wrong shape).
    func setVelocity(_ name: String, _ value: Tensor) throws
}

public struct TrainingState: Sendable, Equatable {
    /// Iterations completed.
    public var iteration: Int
    /// The training random generator's state (sampling, mimic RoI choice).
    public var rngState: [UInt64]
    /// The resolved config (YAML).
    public var config: String
    /// The BLAS library, core and thread count that computed it (`BLASKernel.arithmetic`; empty
    /// in checkpoints from before it was recorded).
    public var arithmetic: String
    /// The class of each output, as the training data named them (empty in checkpoints from before
    /// they were recorded).
    public var classNames: [String]

    public init(iteration: Int, rngState: [UInt64], config: String, arithmetic: String = BLASKernel.arithmetic, classNames: [String] = []) {
        self.iteration = iteration; self.rngState = rngState; self.config = config; self.arithmetic = arithmetic; self.classNames = classNames
    }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

public enum Checkpoint {
    public static let format = "dcn-checkpoint-1"

    /// Writes `path` atomically.
    public static func save(parameters: ParameterList, optimizer: (any CheckpointedOptimizer)?, state: TrainingState, to path: String) throws {
        var tensors: [(name: String, payload: SafeTensorsWriter.Payload)] = parameters.all.map {
            ("model." + $0.name, .f32(shape: $0.shape, values: $0.value.data))
        }
        if let optimizer {
            for (name, v) in optimizer.velocityTensors {
                tensors.append(("momentum." + name, .f32(shape: v.shape, values: v.data)))
            }
        }
        var metadata = ["format": format, "iteration": String(state.iteration),
                        "rng": state.rngState.map(String.init).joined(separator: ","), "config": state.config,
                        "arithmetic": state.arithmetic]
        if !state.classNames.isEmpty {
            metadata["classes"] = String(decoding: try JSONSerialization.data(withJSONObject: state.classNames), as: UTF8.self)
        }
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: path)
    }

    /// Reads a checkpoint's metadata and loads its weights (and momentum when `optimizer` is given).
    /// A checkpoint of another architecture is rejected with the missing, unexpected and wrongly
    /// shaped names, and nothing is changed. A resume (`optimizer` given) also needs finite weights
    /// and every momentum tensor (`optimizerState`); else the error names the file and the tensor.
    /// `mayBeMissing`: parameters the checkpoint need not hold (they keep their values).
    public static func load(path: String, into parameters: ParameterList, optimizer: (any CheckpointedOptimizer)?,
                            mayBeMissing: @escaping @Sendable (String) -> Bool = { _ in false }) throws -> TrainingState {
        let file = try open(path)
        guard file.metadata["format"] == format else {
            throw CheckpointError(message: "\(path) is not a dcn-train checkpoint (metadata 'format' should be \(format)); to start from pretrained weights set backbone.weights instead")
        }
        guard let iteration = file.metadata["iteration"].flatMap(Int.init), iteration >= 0 else {
            let found = file.metadata["iteration"].map { "'\($0)'" } ?? "missing"
            throw CheckpointError(message: "\(path): metadata 'iteration' is \(found); expected the number of iterations completed (a whole number >= 0)")
        }
        let rng = (file.metadata["rng"] ?? "").split(separator: ",").compactMap { UInt64($0) }
        guard rng.count == 4 else { throw CheckpointError(message: "\(path): the random generator state is missing or damaged") }
        var options = WeightLoadOptions(filePrefix: "model.")
        options.mayBeMissing = mayBeMissing
        do {
            try loadWeights(parameters, from: file, options: options)
        } catch let error as WeightLoadError {
            throw CheckpointError(message: "\(path) was written by a different architecture:\n" + error.description.split(separator: "\n").dropFirst().joined(separator: "\n"))
        }
        if let optimizer {
            let momentum = try optimizerState(file, for: optimizer)
            // A resume continues from these weights: a non-finite one would only diverge later.
            if let bad = parameters.all.first(where: { $0.value.data.contains { !$0.isFinite } }) {
                throw CheckpointError(message: "\(path): the tensor 'model.\(bad.name)' holds non-finite values (inf or nan); the file is damaged: "
                                      + "resume from another checkpoint of the run")
            }
            for (name, value) in momentum { try optimizer.setVelocity(name, value) }
        }
        return TrainingState(iteration: iteration, rngState: rng, config: file.metadata["config"] ?? "",
                             arithmetic: file.metadata["arithmetic"] ?? "", classNames: try classNames(file) ?? [])
    }

    /// The class names a checkpoint records (metadata 'classes', a JSON list); for a checkpoint from
    /// before they were recorded, those of the `classes.json` beside it (a classification run's);
    /// nil when there are none.
    public static func classNames(path: String) throws -> [String]? {
        if let names = try classNames(try open(path)) { return names }
        guard let file = canonicalPath(path) else { return nil }
        let index = (file as NSString).deletingLastPathComponent + "/" + RunFiles.classIndex
        guard let data = FileManager.default.contents(atPath: index) else { return nil }
        guard let names = try? JSONSerialization.jsonObject(with: data) as? [String] else {
            throw CheckpointError(message: "\(index) is damaged; expected the JSON list of the class names of the run of \(path)")
        }
        return names
    }

    /// The checkpoint file at `path` (its header read), or an error that says what is wrong.
    static func open(_ path: String) throws -> SafeTensorsFile {
        try requireFile(path)
        do { return try SafeTensorsFile(path: path) } catch {
            throw CheckpointError(message: "cannot read checkpoint \(path): \(error)")
        }
    }

    static func classNames(_ file: SafeTensorsFile) throws -> [String]? {
        guard let text = file.metadata["classes"] else { return nil }
        guard let names = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String] else {
            throw CheckpointError(message: "\(file.path): metadata 'classes' is damaged; expected a JSON list of class names")
        }
        return names
    }

    /// The momentum of every trainable parameter of `optimizer` in `file`, by parameter name: a resume
    /// needs each one, of the parameter's shape and finite (a missing one would silently restart at
    /// zero momentum, a non-finite one diverge), and no other.
    static func optimizerState(_ file: SafeTensorsFile, for optimizer: any CheckpointedOptimizer) throws -> [(name: String, value: Tensor)] {
        func damaged(_ what: String) -> CheckpointError {
            CheckpointError(message: "\(file.path): \(what); a resume needs the momentum of every trainable parameter, finite and of its "
                            + "parameter's shape: the file is damaged, or it is not a checkpoint of this model's training. Resume from "
                            + "another checkpoint of the run")
        }
        let expected = Set(optimizer.parameters.map { "momentum." + $0.name })
        if let extra = file.names.filter({ $0.hasPrefix("momentum.") && !expected.contains($0) }).sorted().first {
            throw damaged("the optimizer state '\(extra)' belongs to no trainable parameter of this model")
        }
        return try optimizer.parameters.map { p in
            let name = "momentum." + p.name
            guard file.entry(name) != nil else { throw damaged("the optimizer state '\(name)' is missing") }
            let value: Tensor
            do { value = try file.tensor(name) } catch { throw damaged("the optimizer state '\(name)' cannot be read (\(error))") }
            guard value.shape == p.shape else { throw damaged("the optimizer state '\(name)' has shape \(value.shape), the parameter \(p.shape)") }
            guard value.data.allSatisfy(\.isFinite) else { throw damaged("the optimizer state '\(name)' holds non-finite values (inf or nan)") }
            return (p.name, value)
        }
    }

    /// Checks that `path` names a file, with a message that says what is expected.
    public static func requireFile(_ path: String) throws {
        guard let problem = fileProblem(path) else { return }
        let latest = path + "/" + RunFiles.latest
        let hint = problem == .folder && FileManager.default.fileExists(atPath: latest) ? " (the newest checkpoint of the run there is \(latest))" : ""
        throw CheckpointError(message: "\(path) \(problem); expected a checkpoint file (model_*.safetensors, or an output folder's latest)\(hint)")
    }

    /// Points `directory/latest` at `fileName` (a relative symlink, replaced atomically through a
    /// temporary named as `RunFiles.temporaryWriter` expects).
    public static func markLatest(_ fileName: String, in directory: String) throws {
        let link = directory + "/" + RunFiles.latest
        let temporary = directory + "/.\(RunFiles.latest).\(getpid()).tmp"
        unlink(temporary)
        guard symlink(fileName, temporary) == 0 else { throw CheckpointError(message: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        guard rename(temporary, link) == 0 else {
            unlink(temporary)
            throw CheckpointError(message: "cannot update \(link): \(String(cString: strerror(errno)))")
        }
    }
}
