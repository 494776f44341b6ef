// dcn-bench blas: every OpenBLAS kernel this CPU can run, side by side in one process: the
// sgemm rate, and whether our sgemm (OpenBLAS single-threaded, split over our threads) gives the
// same bits on one thread and on several for the products the models compute.
import DCNTensor
import Foundation

/// One kernel's figures.
public struct BLASKernelReport: Sendable, Codable {
    public let blas: String            // "OpenBLAS 0.3.21"
    public let core: String            // the core that ran ("Haswell", ...)
    public let selected: Bool          // the core this process runs outside the benchmark
    public let threads: Int
    public let sgemmN: Int
    public let gflops: Double
    /// Products (of `blasDeterminismShapes`) whose bits differ between 1 and `threads` threads.
    public let differingProducts: [String]
}

/// One matrix product of the models: C[m x n] = op(A) op(B) with k inner terms.
public struct ProductShape: Sendable {
    public let name: String, m: Int, n: Int, k: Int, transA: Bool, transB: Bool
}

/// Products the detectors run (forward A B, input gradient A^T B, weight gradient A B^T):
/// a demo-model 3x3 conv (64 channels at 32x48), an R-50 res4 3x3 conv (256 channels at 50x84)
/// and 1x1 conv (256 -> 1024), the 2fc head's fc6 on 512 RoIs, and a small linear layer.
public let blasDeterminismShapes: [ProductShape] = [
    ProductShape(name: "demo conv3x3 fwd", m: 64, n: 1536, k: 576, transA: false, transB: false),
    ProductShape(name: "demo conv3x3 dInput", m: 576, n: 1536, k: 64, transA: true, transB: false),
    ProductShape(name: "demo conv3x3 dWeight", m: 64, n: 576, k: 1536, transA: false, transB: true),
    ProductShape(name: "res4 conv3x3 fwd", m: 256, n: 4200, k: 2304, transA: false, transB: false),
    ProductShape(name: "res4 conv3x3 dWeight", m: 256, n: 2304, k: 4200, transA: false, transB: true),
    ProductShape(name: "res4 conv1x1 fwd", m: 1024, n: 4200, k: 256, transA: false, transB: false),
    ProductShape(name: "fc6 fwd", m: 512, n: 1024, k: 12544, transA: false, transB: true),
    ProductShape(name: "fc6 dWeight", m: 1024, n: 12544, k: 512, transA: true, transB: false),
    ProductShape(name: "linear 37x300x130", m: 37, n: 130, k: 300, transA: false, transB: true),
]

/// The cores of OpenBLAS's x86-64 set that `cpu` can run, slowest first.
public func runnableCores(_ cpu: CPUFeatures) -> [String] {
    var cores = ["Prescott"]
    if cpu.avx2 { cores += ["Haswell", "Zen"] }
    if cpu.avx512 { cores.append("SkylakeX") }
    if cpu.avx512bf16 { cores.append("Cooperlake") }
    return cores
}

/// Computes `shape` with `BLAS.sgemm` on `threads` threads with inputs ~U(-1, 1) (fixed seed).
func product(_ shape: ProductShape, threads: Int) -> [Float] {
    var rng = SeededGenerator(seed: 7)
    let a = Tensor.uniform([shape.m * shape.k], -1, 1, using: &rng), b = Tensor.uniform([shape.k * shape.n], -1, 1, using: &rng)
    var c = Tensor(zeros: [shape.m * shape.n])
    Threads.with(threads) { a.withUnsafeBufferPointer { ap in
        b.withUnsafeBufferPointer { bp in
            c.withUnsafeMutableBufferPointer { cp in
                BLAS.sgemm(transA: shape.transA, transB: shape.transB, m: shape.m, n: shape.n, k: shape.k, alpha: 1,
                           a: ap.baseAddress!, lda: shape.transA ? shape.m : shape.k,
                           b: bp.baseAddress!, ldb: shape.transB ? shape.k : shape.n,
                           beta: 0, c: cp.baseAddress!, ldc: shape.n)
            }
        }
    } }
    return c.data
}

/// Switches OpenBLAS to each of `cores` in turn (in this process), measures `BLAS.sgemm` n^3 on
/// the process's threads and compares every product of `shapes` on 1 and `threads` threads bit
/// for bit (OpenBLAS runs single-threaded under our split, `ProductPieces`); then switches back to the process's own core. A process-wide change: a command, not a test.
public func runBLASKernelBenchmark(cores: [String], threads: Int, n: Int = 2048, shapes: [ProductShape] = blasDeterminismShapes,
                                   report: (BLASKernelReport) -> Void) throws {
    let own = BLASKernel.selection.running
    defer { _ = try? BLASKernel.switchCore(to: own) }
    for core in cores {
        let running = try BLASKernel.switchCore(to: core)
        var differing = [String]()
        for shape in shapes where product(shape, threads: 1).map(\.bitPattern) != product(shape, threads: threads).map(\.bitPattern) {
            differing.append(shape.name)
        }
        report(BLASKernelReport(blas: BLASKernel.version, core: running, selected: running == own, threads: threads,
                                sgemmN: n, gflops: measureSgemm(n: n), differingProducts: differing))
    }
}
