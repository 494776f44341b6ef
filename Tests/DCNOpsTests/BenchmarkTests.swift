// The benchmarks behind `dcn-bench` run at tiny sizes and report every op.
import DCNBench
import DCNTensor
import Testing

// `dcn-bench roi` (the timings live there) runs at a tiny size.
@Test func roiBenchmarkReportsEveryOp() throws {
    let threads = Threads.count
    var timings = [RoITiming]()
    try runRoIBenchmark(rois: 6, channels: 3, height: 10, width: 12, boxes: 200, repeats: 1) {
        timings.append($0)
    }
    #expect(timings.map { "\($0.op) \($0.pass ?? "-")" } == [
        "roi_align fwd", "roi_align bwd", "roi_pool fwd", "roi_pool bwd", "mdpool fwd", "mdpool bwd", "nms -",
    ])
    for t in timings {
        #expect(t.ms.isFinite && t.ms > 0, "\(t.op) \(t.pass ?? "")")
        #expect(t.threads == threads)
        if t.op == "nms" {
            #expect(t.boxes == 200 && t.iou == 0.7 && (1...200).contains(t.kept ?? 0))
        } else {
            #expect(t.rois == 6 && t.channels == 3 && t.height == 10 && t.width == 12)
        }
    }
}
