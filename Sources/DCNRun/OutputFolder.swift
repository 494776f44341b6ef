// The output folder of a run: the names of the files a run writes there, the lock that keeps a
// second run out for as long as the first lives, and the clean-up of a replaced run's files and of
// temporaries a killed run left behind. Nothing else in the folder is ever touched.
import DCNEval
import Foundation
#if canImport(Glibc)
import Glibc
import DCNAnnotations
#endif

/// The names of the files a run writes in its output folder.
public enum RunFiles {
    public static let config = "config.yaml"
    public static let metrics = "metrics.jsonl"
    public static let curves = "training_curves.svg"
    /// A relative symlink to the newest checkpoint.
    public static let latest = "latest"
    /// Held (flock) by the run that trains into the folder; never removed.
    public static let lock = ".lock"
    public static let finalCheckpoint = "model_final.safetensors"
    /// Classification: the class of each output index, `["name0", "name1", ...]` (ImageFolder's sorted folders).
    public static let classIndex = "classes.json"
    /// The folder of the validation images drawn with detections at each evaluation.
    public static let drawings = "detections"

    /// A TensorBoard event file (`events.out.tfevents.<seconds>.<host>[.<k>]`).
    public static func isEventFile(_ name: String) -> Bool { name.hasPrefix("events.out.tfevents.") }

    /// The prefix of an evaluation's drawn images in `drawings`: `<tag>_<image>.png`.
    public static func drawingPrefix(iteration: Int?) -> String { (iteration.map { String(format: "%07d", $0) } ?? "final") + "_" }

    public static func checkpoint(iteration: Int) -> String { String(format: "model_%07d.safetensors", iteration) }

    /// The prefix of an evaluation's `_results.json` (`_results.txt`) and `_metrics.json` files.
    public static func evaluationPrefix(iteration: Int?) -> String { "eval_" + (iteration.map(String.init) ?? "final") }

    /// A checkpoint (`model_*.safetensors`) or `latest`.
    public static func isCheckpoint(_ name: String) -> Bool {
        name == latest || (name.hasPrefix("model_") && name.hasSuffix(".safetensors"))
    }

    /// A file a run writes: checkpoints, `latest`, config.yaml, metrics.jsonl, training_curves.svg, classes.json,
    /// TensorBoard event files, the `detections` folder, `eval_<tag>_results.json` (`.txt` for VID data) and `eval_<tag>_metrics.json` (the tag is an iteration or `final`;
    /// `dcn-eval model` writes `eval_model_*` beside the checkpoint it evaluates).
    public static func isRunFile(_ name: String) -> Bool {
        if isCheckpoint(name) || isEventFile(name) || [config, metrics, curves, classIndex, drawings].contains(name) { return true }
        return name.hasPrefix("eval_") && ["_results.json", "_results.txt", "_metrics.json"].contains { name.hasSuffix($0) && name.count > "eval_".count + $0.count }
    }

    /// The process writing `name` when it is the temporary of a run file:
    /// `.<name>.<pid>[.<random>].tmp`, as `AtomicFile` and `Checkpoint.markLatest` name them.
    public static func temporaryWriter(_ name: String) -> pid_t? {
        guard name.hasPrefix("."), name.hasSuffix(".tmp") else { return nil }
        var parts = name.dropFirst().dropLast(".tmp".count).split(separator: ".", omittingEmptySubsequences: false)
        var numbers: [Substring] = []
        while let last = parts.last, !last.isEmpty, last.allSatisfy(\.isNumber) { numbers.insert(parts.removeLast(), at: 0) }
        guard (1...2).contains(numbers.count), isRunFile(parts.joined(separator: ".")) else { return nil }
        return pid_t(numbers[0])
    }
}

/// A run file's temporary whose writer is gone (killed while writing): nothing will finish it.
/// One whose writer lives (a `dcn-eval model` writing into the folder) is left alone.
public func isStaleTemporary(_ name: String) -> Bool {
    guard let pid = RunFiles.temporaryWriter(name) else { return false }
    return kill(pid, 0) != 0 && errno == ESRCH
}

/// Creates `path` and its missing parents. The error names `key` (the config key or option that
/// gave the path), the path, what stopped it, and what is expected.
public func makeFolder(_ path: String, key: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        let reason = folderCreateProblem(path) ?? describeFileError(error)
        throw TrainingError("\(key): cannot create the folder \(path): \(reason); expected a folder where dcn-train may write", exitCode: 2)
    }
}

/// An exclusive lock on an output folder (`flock` on `<folder>/.lock`), held by the run that trains
/// into it until `release()` or the end of its process (the kernel drops it when the process dies,
/// however it dies). A second run on the folder fails at once; flock locks also exclude each other
/// within one process, so a test can hold one as the training code does.
public final class OutputFolderLock {
    public let folder: String
    private var descriptor: Int32

    /// `tool` writes into the folder given by `key` (dcn-train's output.dir, dcn-detect's --out);
    /// the errors name both.
    public init(folder: String, tool: String = "dcn-train", key: String = "output.dir") throws {
        self.folder = folder
        let path = folder + "/" + RunFiles.lock
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw TrainingError("\(key): cannot write in \(folder) (\(String(cString: strerror(errno))) on \(path)); expected a folder where \(tool) may write",
                                exitCode: 2)
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            // "<pid> <tool>" (older runs wrote the pid alone, always dcn-train's).
            let words = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(whereSeparator: \.isWhitespace)
            let holder = words.first.flatMap { Int32($0) }, holderTool = words.count > 1 ? String(words[1]) : "dcn-train"
            close(descriptor)
            throw TrainingError("\(key): \(folder) is in use by another \(holderTool) run\(holder.map { " (process \($0))" } ?? "") that holds \(path): "
                                + "wait for it to end, or set another \(key)", exitCode: 2)
        }
        // The holder's process id and tool, for the message above.
        let pid = Array("\(getpid()) \(tool)\n".utf8)
        if ftruncate(descriptor, 0) == 0 { _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) } }
    }

    /// Releases the lock (the folder may then take another run).
    public func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { release() }
}

/// Removes the files of `folder` whose names satisfy `isRemoved` (a folder among them with what it
/// holds) and returns their names.
public func removeFiles(in folder: String, where isRemoved: (String) -> Bool) throws -> [String] {
    let names: [String]
    do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
        throw TrainingError("cannot list \(folder): \(error.localizedDescription)")
    }
    var removed: [String] = []
    for name in names.sorted() where isRemoved(name) {
        let path = folder + "/" + name
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            do { try FileManager.default.removeItem(atPath: path) } catch {
                throw TrainingError("cannot remove \(path): \(error.localizedDescription)")
            }
            removed.append(name)
            continue
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw TrainingError("cannot remove \(path) (\(String(cString: strerror(errno))))")
        }
        removed.append(name)
    }
    return removed
}

/// The absolute path with every symlink resolved, or nil if it does not exist.
public func canonicalPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}
