// Issue 29, defects 7 and 17: counts and sizes given on the command line are bounded (or checked
// against the machine's memory) before anything is allocated or created, and negative or
// degenerate values get a message that says what is expected, not "Missing value".
import Foundation
import TestSupport
import Testing

@Suite("Command-line counts, sizes and negative values")
struct CommandLineBoundsTests {
    /// Each run ends with status 64 (ArgumentParser's validation error), never a trap (134), and says `message`.
    func expectRefused(_ tool: String, _ arguments: [String], _ message: String) throws {
        let run = try runBuiltTool(tool, arguments, timeout: 60)
        #expect(run.status == 64 && run.stderr.contains(message) && !run.stderr.contains("Missing value"), "\(tool) \(arguments.joined(separator: " ")): \(run)")
    }

    @Test("Unbounded counts and sizes are refused before any allocation, and leave no folder behind")
    func unboundedCounts() throws {
        let dir = try temporaryFolder("bounds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try expectRefused("dcn-data", ["synth", "--out", dir + "/synth", "--train", "3000000000"], "at most 1000000 images each")
        try expectRefused("dcn-data", ["synth-cls", "--out", dir + "/cls", "--train-per-class", "10000000000000"], "at most 100000 images per class")
        #expect(!FileManager.default.fileExists(atPath: dir + "/synth") && !FileManager.default.fileExists(atPath: dir + "/cls"))
        let config = try writeFile(dir, "c.yaml", "model:\n  name: x\n"), checkpoint = try writeFile(dir, "k.safetensors", "x")
        try expectRefused("dcn-eval", ["sweep", "--configs", config, "--checkpoints", checkpoint, "--sizes", "100000", "--out", dir + "/sweep"],
                          "--sizes takes shorter sides of 32 to 4096 pixels")
        try expectRefused("dcn-bench", ["ops", "--shape", "100000,100000,100000"], "would take about")
        try expectRefused("dcn-bench", ["blas", "--size", "1000000"], "would take about")
        try expectRefused("dcn-bench", ["train-step", "--config", repositoryRoot + "/configs/demo.yaml", "--batch", "100000"], "at most 1024 images per step")
    }

    @Test("Negative and degenerate option values are named with what is expected")
    func negativeAndDegenerateValues() throws {
        let dir = try temporaryFolder("negative")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try writeFile(dir, "c.yaml", "model:\n  name: x\n"), checkpoint = try writeFile(dir, "k.safetensors", "x")
        let image = repositoryRoot + "/Tests/Fixtures/images/upright.png"
        let vis = ["sampling", "--config", config, "--checkpoint", checkpoint, "--image", image, "--out", dir + "/o.png"]
        try expectRefused("dcn-vis", vis + ["--point", "-10,-10"], "--point -10,-10: expected x,y of a pixel of the original image (0 or more)")
        try expectRefused("dcn-vis", vis + ["--roi", "-5,0,10,10"], "--roi -5,0,10,10: expected x0,y0,x1,y1")
        try expectRefused("dcn-vis", vis + ["--roi", "10,10,10.001,10.001"], "at least 1 pixel wide and tall (x1 - x0 >= 1, y1 - y0 >= 1)")
        try expectRefused("dcn-bench", ["ops", "--shape", "-1,2,3"], "--shape '-1,2,3': expected three positive integers C,H,W")
        try expectRefused("dcn-bench", ["allreduce", "--floats", "-5"], "--floats must be between 1 and 2^31 - 1")
        try expectRefused("dcn-bench", ["ops", "--repeats", "-2"], "--repeats must be at least 1")
        try expectRefused("dcn-bench", ["roi", "--threads", "-1"], "--threads must be at least 1")
    }
}
