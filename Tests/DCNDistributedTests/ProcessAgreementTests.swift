// Issue 29, defects 4, 5 and 12: the processes of an mpirun job run one job. Ranks started with
// different configs are refused at once, naming the key; wrong image sizes in the annotations pad
// 1 and 2 processes alike (both use the decoded image's size); a redirected mpirun log has plain lines.
import DCNRun
import DCNTensor
import DCNTraining
import Foundation
import TestSupport
import Testing

@Suite(.serialized) struct ProcessAgreementTests {
    /// `mpirun -np 1 dcn-train A : -np 1 dcn-train A --set <different>` ends within 10 s (after the
    /// data and model are built), non-zero, naming the differing key with both values. Before, a
    /// different roi_head.fc_dim corrupted the heap, a different max_iter hung rank 0 and a
    /// different base_lr trained different weights with exit status 0.
    @Test(arguments: [("roi_head.fc_dim=128", "roi_head.fc_dim: rank 0 has 256, rank 1 has 128"),
                      ("solver.max_iter=12", "solver.max_iter: rank 0 has 10, rank 1 has 12"),
                      ("solver.base_lr=0.001", "solver.base_lr: rank 0 has 0.01, rank 1 has 0.001")])
    func ranksWithDifferentConfigsAreRefused(setting: String, named: String) throws {
        let dir = temporaryDirectory("mpi-agree-\(setting.prefix { $0 != "=" })")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arguments = trainArguments(try distributedData(dir), ["output.dir=\(dir)/out", "solver.base_lr=0.01"])
        let tool = try builtToolPath("dcn-train")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun"] + mpirunOptions + ["-np", "1", tool] + arguments + [":", "-np", "1", tool] + arguments + ["--set", setting]
        let errors = dir + "/err"
        _ = FileManager.default.createFile(atPath: errors, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: dir + "/out.txt") ?? FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: errors)
        let start = Date()
        try process.run()
        while process.isRunning && Date().timeIntervalSince(start) < 60 { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let seconds = Date().timeIntervalSince(start)
        let text = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus != 0 && seconds < 10, "\(seconds) s, status \(process.terminationStatus): \(text)")
        #expect(text.contains("the processes do not run the same job") && text.contains(named), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/out/\(RunFiles.finalCheckpoint)"))
    }

    /// Every image's annotated width and height wrong (larger than the files'): 1 process and 2
    /// processes train the same bits, as both pad by the decoded sizes. Both logs, redirected to a
    /// file, have one line per logged iteration.
    @Test func wrongAnnotatedSizesTrainTheSameBitsInOneAndTwoProcesses() throws {
        let dir = temporaryDirectory("mpi-sizes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = try distributedData(dir) + ["solver.max_iter=4", "solver.steps=[3]", "solver.warmup_iters=2", "solver.checkpoint_period=4"]
        let annotations = dir + "/data/annotations/instances_train.json"
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: annotations))) as? [String: Any])
        let images = try #require(json["images"] as? [[String: Any]])
        json["images"] = images.enumerated().map { k, image -> [String: Any] in
            var wrong = image
            wrong["width"] = (image["width"] as? Int ?? 0) + 40 + 7 * k
            wrong["height"] = (image["height"] as? Int ?? 0) * 2
            return wrong
        }
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: annotations))
        var finals: [String] = []
        for (name, ranks) in [("one", nil), ("two", 2)] as [(String, Int?)] {
            let run = try ToolRun.run("dcn-train", trainArguments(settings, ["output.dir=\(dir)/\(name)"]), ranks: ranks, folder: dir, name: name)
            #expect(run.process.terminationStatus == 0, "\(name): \(run.output)\n\(run.errors)")
            // Defect 12: mpirun gives its processes a pseudo-terminal, but its own output is a file
            // here: plain lines, one per logged iteration (before, one live line of \r updates).
            let lines = run.output.split(separator: "\n")
            #expect(!run.output.contains("\r") && (1...4).allSatisfy { k in lines.contains { $0.hasPrefix("[\(k)/4]") } }, "\(name): \(run.output)")
            finals.append("\(dir)/\(name)/\(RunFiles.finalCheckpoint)")
        }
        let first = try SafeTensorsFile(path: finals[0]), second = try SafeTensorsFile(path: finals[1])
        let differing = try first.names.filter { name in
            guard name.hasPrefix("model.") else { return false }
            return try first.doubles(name).values != second.doubles(name).values
        }
        let same = differing.isEmpty
        #expect(same, "\(differing.count) weights differ, first \(differing.first ?? "")")
    }
}
