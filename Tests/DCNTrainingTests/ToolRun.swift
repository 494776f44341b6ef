// The project's tools as child processes of a test (directly or under mpirun), their output in files.
import DCNTraining
import Foundation

/// `words` quoted for bash.
func shellQuoted(_ words: [String]) -> String {
    words.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
}

/// A tool built next to the tests.
func builtToolPath(_ name: String) throws -> String {
    let here = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    guard let tool = [here, here.deletingLastPathComponent()].map({ $0.appendingPathComponent(name) })
        .first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw TrainingError("\(name) is not built next to the tests in \(here.path)")
    }
    return tool.path
}

/// mpirun's options for tests: root allowed (CI), more processes than cores allowed, shared memory
/// between the processes (plain copies: no ptrace-based single copy, which containers often forbid)
/// and the loopback interface for the launcher, nothing else.
let mpirunOptions = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none",
                     "--mca", "oob_tcp_if_include", "lo"]

/// A tool run directly (`ranks` nil) or under `mpirun -np ranks`, its output in `folder/name.{out,err}`.
struct ToolRun {
    let process = Process()
    let outputPath: String, errorPath: String

    init(_ tool: String, _ arguments: [String], ranks: Int?, folder: String, name: String) throws {
        let path = try builtToolPath(tool)
        if let ranks {
            try self.init(executable: "/usr/bin/env", ["mpirun"] + mpirunOptions + ["-np", String(ranks), path] + arguments, folder: folder, name: name)
        } else {
            try self.init(executable: path, arguments, folder: folder, name: name)
        }
    }

    /// A bash script (`bash -c script`), for pipelines.
    init(bash script: String, folder: String, name: String) throws {
        try self.init(executable: "/bin/bash", ["-c", script], folder: folder, name: name)
    }

    private init(executable: String, _ arguments: [String], folder: String, name: String) throws {
        outputPath = "\(folder)/\(name).out"
        errorPath = "\(folder)/\(name).err"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil), FileManager.default.createFile(atPath: errorPath, contents: nil) else {
            throw TrainingError("cannot create \(outputPath) and \(errorPath)")
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    /// The exit status, or nil if it had not ended after `seconds` (it is then killed).
    func exitStatus(within seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    /// Runs to the end (at most `seconds`) and returns the exit status (-1 when killed at the deadline).
    static func run(_ tool: String, _ arguments: [String], ranks: Int?, folder: String, name: String, seconds: Double = 300) throws -> ToolRun {
        let run = try ToolRun(tool, arguments, ranks: ranks, folder: folder, name: name)
        _ = run.exitStatus(within: seconds)
        return run
    }
}

