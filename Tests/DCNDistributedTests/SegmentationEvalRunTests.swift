// `dcn-eval seg` under mpirun (issue 32): the processes share the label maps and sum their
// confusion matrices, so 2 and 4 processes (one of them with no file) write the one-process JSON
// byte for byte; a bad file in one process's share ends every process with the file's name.
import Foundation
import TestSupport
import Testing

@Suite(.serialized) struct SegmentationEvaluationRuns {
    @Test func processesWriteTheOneProcessNumbers() throws {
        let dir = temporaryDirectory("mpi-seg")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let labels = fixturePath("segmentation/labels"), predictions = fixturePath("segmentation/predictions")
        func evaluate(_ name: String, ranks: Int?, predictions: String = predictions) throws -> ToolRun {
            try ToolRun.run("dcn-eval", ["seg", "--labels", labels, "--predictions", predictions, "--classes", "5", "--threads", "1",
                                         "--json", "\(dir)/\(name).json"], ranks: ranks, folder: dir, name: name, seconds: 60)
        }
        var written = [String: Data]()
        for (name, ranks) in [("one", nil), ("two", 2), ("four", 4)] as [(String, Int?)] {
            let run = try evaluate(name, ranks: ranks)
            #expect(run.process.terminationStatus == 0, "\(name): \(run.output)\n\(run.errors)")
            #expect(run.output.components(separatedBy: "mIoU 59.69 over 4 classes").count == 2, "rank 0 alone prints: \(run.output)")
            written[name] = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name).json"))
        }
        #expect(written["one"] == written["two"] && written["one"] == written["four"])

        // img_c is the third pair, rank 0's with 2 processes: rank 1 waits in the sum and must end too.
        let bad = dir + "/bad"
        try FileManager.default.copyItem(atPath: predictions, toPath: bad)
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: bad + "/img_c.png"))
        let run = try evaluate("bad", ranks: 2, predictions: bad)
        #expect(run.process.terminationStatus != 0 && run.errors.contains("\(bad)/img_c.png: "), "\(run.output)\n\(run.errors)")
    }
}
