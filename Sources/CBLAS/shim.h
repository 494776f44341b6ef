// OpenBLAS's CBLAS interface and LAPACKE (Debian: libopenblas-dev, liblapacke-dev).
// The include paths come from pkg-config (openblas); lapacke.h lives in /usr/include.
#include <cblas.h>
#include <lapacke.h>

// CPUID and XGETBV, for choosing OpenBLAS's kernels (DCNTensor/BLASKernel.swift). On other
// architectures they report no features.
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static inline void dcn_cpuid(unsigned leaf, unsigned subleaf, unsigned registers[4]) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (leaf <= __get_cpuid_max(leaf & 0x80000000u, 0)) __cpuid_count(leaf, subleaf, a, b, c, d);
    registers[0] = a; registers[1] = b; registers[2] = c; registers[3] = d;
}
// The register state the operating system saves (XCR0); valid only when CPUID says OSXSAVE.
static inline unsigned long long dcn_xgetbv0(void) {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#else
static inline void dcn_cpuid(unsigned leaf, unsigned subleaf, unsigned registers[4]) {
    (void)leaf; (void)subleaf;
    registers[0] = registers[1] = registers[2] = registers[3] = 0;
}
static inline unsigned long long dcn_xgetbv0(void) { return 0; }
#endif
