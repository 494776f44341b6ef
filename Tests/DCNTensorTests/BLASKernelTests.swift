// OpenBLAS kernel selection (pure decision, and the in-process switch in a child process) and
// task-scoped thread counts.
import DCNTensor
import Foundation
import TestSupport
import Testing

private let emeraldRapids = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 207, avx2: true, avx512: true, avx512bf16: true)
private let iceLake = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 106, avx2: true, avx512: true, avx512bf16: false)
private let alderLake = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 151, avx2: true, avx512: false, avx512bf16: false)
private let zen3 = CPUFeatures(vendor: "AuthenticAMD", family: 25, model: 1, avx2: true, avx512: false, avx512bf16: false)
private let zen4 = CPUFeatures(vendor: "AuthenticAMD", family: 25, model: 17, avx2: true, avx512: true, avx512bf16: true)
private let oldCPU = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 23, avx2: false, avx512: false, avx512bf16: false)

@Test func bestCoreFollowsTheCPUsVectorUnits() {
    #expect(BLASKernel.best(for: emeraldRapids) == "Cooperlake")
    #expect(BLASKernel.best(for: zen4) == "Cooperlake")
    #expect(BLASKernel.best(for: iceLake) == "SkylakeX")
    #expect(BLASKernel.best(for: alderLake) == "Haswell")
    #expect(BLASKernel.best(for: zen3) == "Zen")
    #expect(BLASKernel.best(for: oldCPU) == nil)
}

@Test func aGenericFallbackIsReplacedUnlessTheUserChoseIt() {
    // Debian 12's OpenBLAS on an Emerald Rapids Xeon: Prescott -> Cooperlake, with one notice.
    guard case .switchTo(let core, let notice) = BLASKernel.decide(loaded: "Prescott", userSetting: nil, cpu: emeraldRapids, canSwitch: true) else {
        Issue.record("expected a switch"); return
    }
    #expect(core == "Cooperlake")
    #expect(notice.contains("Prescott") && notice.contains("Cooperlake") && notice.contains("OPENBLAS_CORETYPE"))
    // An AVX2 core on an AVX-512 CPU is a fallback too; an AVX2 CPU goes from Sandybridge to Haswell.
    func switched(_ loaded: String, _ cpu: CPUFeatures) -> String? {
        if case .switchTo(let core, _) = BLASKernel.decide(loaded: loaded, userSetting: nil, cpu: cpu, canSwitch: true) { return core }
        return nil
    }
    #expect(switched("Haswell", iceLake) == "SkylakeX")
    #expect(switched("Sandybridge", alderLake) == "Haswell")
    #expect(switched("Nehalem", zen3) == "Zen")
    // A correct choice stays, silently: this machine's kind (Zen 4 -> Cooperlake), Zen 3 -> Zen.
    #expect(BLASKernel.decide(loaded: "Cooperlake", userSetting: nil, cpu: zen4, canSwitch: true) == .keep(notice: nil))
    #expect(BLASKernel.decide(loaded: "Zen", userSetting: nil, cpu: zen3, canSwitch: true) == .keep(notice: nil))
    #expect(BLASKernel.decide(loaded: "Haswell", userSetting: nil, cpu: zen3, canSwitch: true) == .keep(notice: nil))
    #expect(BLASKernel.decide(loaded: "Prescott", userSetting: nil, cpu: oldCPU, canSwitch: true) == .keep(notice: nil))
    // Never downgraded: a stronger core than we would pick stays.
    #expect(BLASKernel.decide(loaded: "SapphireRapids", userSetting: nil, cpu: iceLake, canSwitch: true) == .keep(notice: nil))
    // The user's OPENBLAS_CORETYPE is kept, with a word on what the CPU could run.
    guard case .keep(let kept?) = BLASKernel.decide(loaded: "Prescott", userSetting: "Prescott", cpu: emeraldRapids, canSwitch: true) else {
        Issue.record("a user's choice must be kept with a notice"); return
    }
    #expect(kept.contains("OPENBLAS_CORETYPE=Prescott") && kept.contains("Cooperlake"))
    // A library built for one core cannot switch: it says so.
    guard case .keep(let single?) = BLASKernel.decide(loaded: "Prescott", userSetting: nil, cpu: emeraldRapids, canSwitch: false) else {
        Issue.record("expected a notice"); return
    }
    #expect(single.contains("one core"))
}

@Test func thisProcessRunsTheBestCoreItsCPUAllows() {
    let selection = BLASKernel.selection
    #expect(selection.running == BLASKernel.coreName)
    if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil, let best = BLASKernel.best(for: .current) {
        #expect(BLASKernel.tier(selection.running) >= BLASKernel.tier(best), "\(selection)")
    }
    #expect(BLASKernel.version.hasPrefix("OpenBLAS "))
}

@Test func scopedThreadCountsStayInTheirTask() async {
    let outside = Threads.count
    #expect(Threads.with(1) { Threads.count } == 1)
    #expect(Threads.with(3) { Threads.with(2) { Threads.count } } == 2)
    #expect(Threads.count == outside)
    // Two tasks with different counts at the same time each see their own.
    async let a = Task { Threads.with(1) { (0..<1000).map { _ in Threads.count } } }.value
    async let b = Task { Threads.with(4) { (0..<1000).map { _ in Threads.count } } }.value
    let (ca, cb) = await (a, b)
    #expect(Set(ca) == [1] && Set(cb) == [4])
}

@Test func kernelsSwitchInProcessAndTheUsersChoiceIsKept() throws {
    // dcn-bench blas switches OpenBLAS's core in its own process and back (a child process: the
    // switch is process-wide). Prescott runs on every x86-64 CPU.
    #if arch(x86_64)
    let cores = ["Prescott"] + (CPUFeatures.current.avx2 ? ["Haswell"] : [])
    let (status, out, _) = try runTool("dcn-bench", ["blas", "--json", "--size", "64", "--threads", "1", "--cores"] + cores)
    #expect(status == 0)
    let reports = out.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    #expect(reports.compactMap { $0["core"] as? String } == cores)
    // A user's OPENBLAS_CORETYPE is what runs; on a CPU with better kernels one notice says so.
    let (status2, out2, err2) = try runTool("dcn-bench", ["blas", "--size", "64", "--threads", "1", "--cores", "Prescott"],
                                            environment: ["OPENBLAS_CORETYPE": "Prescott", "LD_PRELOAD": ""])  // nothing may unset it
    #expect(status2 == 0)
    #expect(out2.contains("loaded Prescott, running Prescott"), "\(out2)")
    if let best = BLASKernel.best(for: .current) {
        #expect(err2.contains("kept, as OPENBLAS_CORETYPE=Prescott asks; unset it to use \(best)"), "\(err2)")
    }
    #endif
}
