// Which OpenBLAS kernels run. Debian's OpenBLAS is built for every x86-64 core (DYNAMIC_ARCH) and
// picks one when it loads, from a table of CPU models; a CPU newer than the library (Debian 12's
// 0.3.21 does not know Sapphire/Emerald Rapids, for one) gets the generic Prescott kernels,
// about 4x slower than the AVX-512 ones the CPU runs. Before the first BLAS call of a process,
// `BLASKernel.selection` compares the loaded core with what CPUID says the CPU supports and, when
// the library fell back to a weaker core, switches to the best one it has: the library's own
// start-up routine is run again with OPENBLAS_CORETYPE set for that moment only. A value the user
// set in OPENBLAS_CORETYPE is never overridden.
import CBLAS
#if canImport(Glibc)
import Glibc
#endif

/// What CPUID and the operating system report about vector instructions.
public struct CPUFeatures: Sendable, Equatable {
    public var vendor: String
    public var family: Int
    public var model: Int
    /// AVX2 and FMA, with the AVX register state saved by the OS.
    public var avx2: Bool
    /// AVX-512 F, CD, BW, DQ and VL, with the opmask and ZMM state saved by the OS.
    public var avx512: Bool
    /// AVX-512 BF16 (Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later).
    public var avx512bf16: Bool

    public init(vendor: String, family: Int, model: Int, avx2: Bool, avx512: Bool, avx512bf16: Bool) {
        self.vendor = vendor; self.family = family; self.model = model
        self.avx2 = avx2; self.avx512 = avx512; self.avx512bf16 = avx512bf16
    }

    /// This machine's features.
    public static let current: CPUFeatures = {
        func cpuid(_ leaf: UInt32, _ subleaf: UInt32 = 0) -> [UInt32] {
            var r: [UInt32] = [0, 0, 0, 0]
            r.withUnsafeMutableBufferPointer { dcn_cpuid(leaf, subleaf, $0.baseAddress) }
            return r
        }
        func bit(_ value: UInt32, _ n: UInt32) -> Bool { value & (1 << n) != 0 }
        let leaf0 = cpuid(0)
        let vendor = String(decoding: [leaf0[1], leaf0[3], leaf0[2]].flatMap { word in
            (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) }
        }, as: UTF8.self)
        let leaf1 = cpuid(1), leaf7 = leaf0[0] >= 7 ? cpuid(7) : [0, 0, 0, 0]
        let leaf7s1 = leaf0[0] >= 7 && leaf7[0] >= 1 ? cpuid(7, 1) : [0, 0, 0, 0]
        // family and model as Intel and AMD define them (extended fields for families 6 and 15).
        let baseFamily = Int((leaf1[0] >> 8) & 0xF), baseModel = Int((leaf1[0] >> 4) & 0xF)
        let family = baseFamily == 0xF ? baseFamily + Int((leaf1[0] >> 20) & 0xFF) : baseFamily
        let model = baseFamily == 0x6 || baseFamily == 0xF ? baseModel | Int((leaf1[0] >> 16) & 0xF) << 4 : baseModel
        let osSaves = bit(leaf1[2], 27) ? dcn_xgetbv0() : 0
        let avxState = osSaves & 0x6 == 0x6            // XMM and YMM registers
        let avx512State = osSaves & 0xE6 == 0xE6       // plus opmask, ZMM_Hi256, Hi16_ZMM
        let avx2 = avxState && bit(leaf1[2], 28) && bit(leaf1[2], 12) && bit(leaf7[1], 5)
        let avx512 = avx2 && avx512State && [16, 17, 28, 30, 31].allSatisfy { bit(leaf7[1], $0) }
        return CPUFeatures(vendor: vendor, family: family, model: model, avx2: avx2, avx512: avx512,
                           avx512bf16: avx512 && bit(leaf7s1[0], 5))
    }()

    /// "GenuineIntel family 6 model 207: AVX2, AVX-512, AVX-512 BF16".
    public var description: String {
        let list = [avx2 ? "AVX2" : nil, avx512 ? "AVX-512" : nil, avx512bf16 ? "AVX-512 BF16" : nil].compactMap { $0 }
        return "\(vendor) family \(family) model \(model): \(list.isEmpty ? "no AVX2" : list.joined(separator: ", "))"
    }
}

/// OpenBLAS's kernel choice for this process.
public enum BLASKernel {
    /// What happened at start-up.
    public struct Selection: Sendable, Equatable {
        /// The core OpenBLAS picked when it loaded.
        public var loaded: String
        /// The core that runs now.
        public var running: String
        /// One line for stderr when the choice deserves a word (a switch, or a slow core kept), else nil.
        public var notice: String?
    }

    /// What `decide` concludes.
    public enum Decision: Equatable, Sendable {
        case keep(notice: String?)
        case switchTo(String, notice: String)
    }

    /// The fastest core of OpenBLAS 0.3.21's x86-64 set that `cpu` can run, or nil for none better
    /// than the generic ones (SapphireRapids is not in 0.3.21's list of names it accepts).
    public static func best(for cpu: CPUFeatures) -> String? {
        if cpu.avx512bf16 { return "Cooperlake" }
        if cpu.avx512 { return "SkylakeX" }
        if cpu.avx2 { return cpu.vendor == "AuthenticAMD" || cpu.vendor == "HygonGenuine" ? "Zen" : "Haswell" }
        return nil
    }

    /// 3 for the AVX-512 BF16 cores, 2 for AVX-512, 1 for the AVX2 cores, 0 for anything older.
    public static func tier(_ core: String) -> Int {
        switch core.lowercased() {
        case "cooperlake", "sapphirerapids": return 3
        case "skylakex": return 2
        case "haswell", "zen": return 1
        default: return 0
        }
    }

    /// The choice, as a pure function of what the process sees: the core OpenBLAS loaded, the
    /// user's OPENBLAS_CORETYPE (nil when unset), the CPU, and whether this OpenBLAS can switch
    /// (it is built with DYNAMIC_ARCH).
    public static func decide(loaded: String, userSetting: String?, cpu: CPUFeatures, canSwitch: Bool) -> Decision {
        guard let best = best(for: cpu), tier(best) > tier(loaded) else { return .keep(notice: nil) }
        let why = "OpenBLAS runs its \(loaded) kernels on this CPU (\(cpu.description))"
        if let userSetting {
            return .keep(notice: "\(why): kept, as OPENBLAS_CORETYPE=\(userSetting) asks; unset it to use \(best)")
        }
        guard canSwitch else {
            return .keep(notice: "\(why) and this OpenBLAS is built for one core only: matrix products run at a fraction of the CPU's speed")
        }
        return .switchTo(best, notice: "\(why): using its \(best) kernels instead (set OPENBLAS_CORETYPE to choose)")
    }

    /// The selection, made once, before the first BLAS call (every BLAS entry point reads it).
    public static let selection: Selection = {
        let loaded = coreName
        let user = getenv("OPENBLAS_CORETYPE").map { String(cString: $0) }
        switch decide(loaded: loaded, userSetting: user, cpu: .current, canSwitch: restartRoutines != nil) {
        case .keep(let notice):
            return report(Selection(loaded: loaded, running: loaded, notice: notice))
        case .switchTo(let core, let notice):
            let running = restart(core: core) ?? coreName
            let line = running.lowercased() == core.lowercased() ? notice
                : "OpenBLAS runs its \(loaded) kernels on this CPU (\(CPUFeatures.current.description)); switching to \(core) failed"
            return report(Selection(loaded: loaded, running: running, notice: line))
        }
    }()

    private static func report(_ selection: Selection) -> Selection {
        // Our threads run the products (`BLAS.sgemm`); OpenBLAS's own would spin beside them.
        openblas_set_num_threads(1)
        if let notice = selection.notice {
            let line = Array("dcn: \(notice)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
        return selection
    }

    /// What decides the bits of a matrix product: "OpenBLAS 0.3.21 Cooperlake, products cut for 2
    /// cores" (`ProductPieces`). The thread count does not: every piece is one single-threaded call.
    /// Whether our forward-convolution kernels run (AVX-512) enters too.
    public static var arithmetic: String {
        "\(version) \(coreName), products cut for \(System.activeProcessorCount) cores"
            + (OwnProduct.enabled ? ", forward convolutions by ours" : "")
    }

    /// Every kernel that runs, for benchmark lines: "OpenBLAS 0.3.21 Cooperlake kernels, forward
    /// convolutions ours (AVX-512, 8 x 48)".
    public static var kernels: String { "\(version) \(coreName) kernels, forward convolutions \(OwnProduct.description)" }

    /// The core OpenBLAS runs now ("Cooperlake", "Haswell", "Prescott", ...).
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// "OpenBLAS 0.3.21" (the first two words of the library's build configuration).
    public static var version: String {
        String(cString: openblas_get_config()).split(separator: " ").prefix(2).joined(separator: " ")
    }

    /// The library's start-up routines that pick a core (exported by DYNAMIC_ARCH builds only).
    private static let restartRoutines: (quit: @convention(c) () -> Void, start: @convention(c) () -> Void)? = {
        #if canImport(Glibc)
        guard let handle = dlopen(nil, RTLD_NOW),
              let quit = dlsym(handle, "gotoblas_dynamic_quit"), let start = dlsym(handle, "gotoblas_dynamic_init")
        else { return nil }
        return (unsafeBitCast(quit, to: (@convention(c) () -> Void).self), unsafeBitCast(start, to: (@convention(c) () -> Void).self))
        #else
        return nil
        #endif
    }()

    /// Switches OpenBLAS to `core` ("Haswell", "SkylakeX", ...) and returns the core that runs
    /// afterwards (OpenBLAS keeps its default for a name it does not know). For `dcn-bench blas`,
    /// which compares the kernels in one process; never call it while another thread runs BLAS.
    @discardableResult
    public static func switchCore(to core: String) throws -> String {
        _ = selection
        guard let running = restart(core: core) else {
            throw BLASKernelError(description: "this OpenBLAS (\(version)) is built for one core only: its kernels cannot be switched")
        }
        return running
    }

    /// Runs OpenBLAS's core choice again with OPENBLAS_CORETYPE = `core`, then restores the
    /// variable as it was, so child processes make their own choice. Nil when the library
    /// cannot switch.
    private static func restart(core: String) -> String? {
        guard let routines = restartRoutines else { return nil }
        let previous = getenv("OPENBLAS_CORETYPE").map { String(cString: $0) }
        setenv("OPENBLAS_CORETYPE", core, 1)
        routines.quit()
        routines.start()
        if let previous { setenv("OPENBLAS_CORETYPE", previous, 1) } else { unsetenv("OPENBLAS_CORETYPE") }
        return coreName
    }
}

public struct BLASKernelError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}
