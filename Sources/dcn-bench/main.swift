import DCNBench
import Foundation
let threads = Int(CommandLine.arguments.dropFirst().first ?? "2") ?? 2
let r = try runEvalBenchmark(directory: "/tmp/evalbench", threads: threads, compareJSONDecoder: CommandLine.arguments.count > 2)
print(r.summary.joined(separator: "\n"))
print("images \(r.images) gt \(r.groundTruths) crowd \(r.crowd) dets \(r.detections) bytes \(r.resultsFileBytes)")
print("generate \(r.generateSeconds) load \(r.loadSeconds) eval \(r.evaluateSeconds) total \(r.totalSeconds) decoder \(r.jsonDecoderSeconds as Any) threads \(r.threads)")
