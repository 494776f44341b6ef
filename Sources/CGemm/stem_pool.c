// The stem's 3x3, stride 2, padding 1 max pool, 16 outputs per AVX-512 register (see
// include/cgemm.h).
#include "cgemm.h"
#include <immintrin.h>

// Lanes i of 16 whose column first + i lies in [0, w).
static inline __mmask16 inside(long first, int w) {
    const long start = first < 0 ? -first : 0, end = w - first < 16 ? w - first : 16;
    if (end <= start) return 0;
    return (__mmask16)(((1u << end) - 1) & ~((1u << start) - 1));
}

// Output ox reads input columns 2ox - 1, 2ox, 2ox + 1. For 16 outputs from ox0 and one column
// offset d, the 32 floats from column 2ox0 + d hold them at the even lanes: two masked loads
// (columns outside [0, w) read as -inf, never touched) and one two-register permute.
__attribute__((target("avx512f")))
static inline __m512 every_other(const float *line, long first, int w, __m512i evens) {
    const __m512 none = _mm512_set1_ps(-__builtin_inff());
    const __mmask16 lo = inside(first, w), hi = inside(first + 16, w);
    // Masked-off lanes are not read, so the addresses before or after the row never fault.
    const __m512 a = _mm512_mask_loadu_ps(none, lo, (const char *)line + first * 4);
    const __m512 b = _mm512_mask_loadu_ps(none, hi, (const char *)line + (first + 16) * 4);
    return _mm512_permutex2var_ps(a, evens, b);
}

__attribute__((target("avx512f")))
void dcn_stem_max_pool_row(const float *plane, int w, int rowLo, int rowHi, float *out, int outWidth) {
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (int ox = 0; ox < outWidth; ox += 16) {
        __m512 best = _mm512_set1_ps(-__builtin_inff());
        for (int iy = rowLo; iy < rowHi; iy++) {
            const float *line = plane + (long)iy * w;
            // The scalar loop's order and rule: rows, then columns; a larger value or a NaN
            // replaces (a padding column's -inf never does).
            for (int d = -1; d <= 1; d++) {
                const __m512 v = every_other(line, 2L * ox + d, w, evens);
                const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                best = _mm512_mask_mov_ps(best, take, v);
            }
        }
        const int n = outWidth - ox < 16 ? outWidth - ox : 16;
        _mm512_mask_storeu_ps(out + ox, (__mmask16)((1u << n) - 1), best);
    }
}
