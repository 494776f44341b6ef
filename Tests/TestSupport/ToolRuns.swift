// The project's tools as child processes of a test (directly or under mpirun), so that nothing a
// tool sets (threads, signals, MPI) touches the test process: one definition for every test target.
import Foundation

/// A tool that is missing, or whose output files cannot be made.
public struct ToolRunError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `words` quoted for bash.
public func shellQuoted(_ words: [String]) -> String {
    words.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
}

/// A tool built next to the tests (`swift build --build-tests`).
public func builtToolPath(_ name: String) throws -> String {
    let here = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    guard let tool = [here, here.deletingLastPathComponent()].map({ $0.appendingPathComponent(name) })
        .first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw ToolRunError("\(name) is not built next to the tests in \(here.path)")
    }
    return tool.path
}

/// mpirun's options for tests: root allowed (CI), more processes than cores allowed, shared memory
/// between the processes (plain copies: no ptrace-based single copy, which containers often forbid)
/// and the loopback interface for the launcher, nothing else.
public let mpirunOptions = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none",
                            "--mca", "oob_tcp_if_include", "lo"]

/// A tool run directly (`ranks` nil) or under `mpirun -np ranks`, its output in `folder/name.{out,err}`.
public struct ToolRun {
    public let process = Process()
    public let outputPath: String, errorPath: String

    public init(_ tool: String, _ arguments: [String], ranks: Int?, folder: String, name: String) throws {
        let path = try builtToolPath(tool)
        if let ranks {
            try self.init(executable: "/usr/bin/env", ["mpirun"] + mpirunOptions + ["-np", String(ranks), path] + arguments, folder: folder, name: name)
        } else {
            try self.init(executable: path, arguments, folder: folder, name: name)
        }
    }

    /// A bash script (`bash -c script`), for pipelines.
    public init(bash script: String, folder: String, name: String) throws {
        try self.init(executable: "/bin/bash", ["-c", script], folder: folder, name: name)
    }

    private init(executable: String, _ arguments: [String], folder: String, name: String) throws {
        outputPath = "\(folder)/\(name).out"
        errorPath = "\(folder)/\(name).err"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil), FileManager.default.createFile(atPath: errorPath, contents: nil) else {
            throw ToolRunError("cannot create \(outputPath) and \(errorPath)")
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        try process.run()
    }

    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    public var errors: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    /// The exit status, or nil if it had not ended after `seconds` (it is then killed).
    public func exitStatus(within seconds: Double) -> Int32? {
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
    public static func run(_ tool: String, _ arguments: [String], ranks: Int?, folder: String, name: String, seconds: Double = 300) throws -> ToolRun {
        let run = try ToolRun(tool, arguments, ranks: ranks, folder: folder, name: name)
        _ = run.exitStatus(within: seconds)
        return run
    }
}

/// What one finished run of a built tool did (`runBuiltTool`).
public struct ToolResult: CustomStringConvertible {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let seconds: Double
    public let timedOut: Bool
    public var description: String { "status \(status)\(timedOut ? " (killed: timed out)" : ""), \(seconds) s\nstdout: \(stdout)\nstderr: \(stderr)" }
}

/// Runs the tool `name` built beside the test bundle, killing it after `timeout` seconds; output
/// goes through files (no pipe to fill up).
public func runBuiltTool(_ name: String, _ arguments: [String], timeout: Double = 30) throws -> ToolResult {
    let tool = URL(fileURLWithPath: try builtToolPath(name))
    let folder = try temporaryFolder("run-\(name)")
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let outPath = folder + "/stdout", errPath = folder + "/stderr"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let process = Process()
    process.executableURL = tool
    process.arguments = arguments
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    let finished = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in finished.signal() }
    let start = Date()
    try process.run()
    let timedOut = finished.wait(timeout: .now() + timeout) == .timedOut
    if timedOut {
        process.terminate()
        finished.wait()
    }
    func text(_ path: String) -> String { String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
    return ToolResult(status: process.terminationStatus, stdout: text(outPath), stderr: text(errPath),
                      seconds: Date().timeIntervalSince(start), timedOut: timedOut)
}

/// Runs a tool with `environment` added to this process's, and returns its exit status, stdout and stderr.
public func runTool(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try builtToolPath(name))
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile(), errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// Waits up to `seconds` for `condition`.
public func eventually(within seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() >= deadline { return false }
        usleep(50_000)
    }
    return true
}
