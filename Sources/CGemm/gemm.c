// Our matrix product for forward convolutions (see include/cgemm.h).
//
// Blocking: the columns of C are walked 384 at a time. For each 256-long block of k, those
// columns of B are packed in panels of NR columns (48 with AVX-512, 24 with AVX2), k-major, NR
// floats per k (copied from the matrix, or gathered from the image as im2col would), then every
// MR rows of C (8 or 4) get C[MR x NR] += A[MR x kc] * panel[kc x NR] in registers, panel after
// panel: per k, NR/16 (or NR/8) vector loads of the panel, MR broadcasts of A and MR * NR / 16 (or
// / 8) fused multiply-adds. The packed block (384 KB) stays in L2, A's MR rows in L1.
#include "cgemm.h"
#include <immintrin.h>
#include <string.h>

#define KC 256
#define NC 384  // columns packed at once: KC x NC floats (384 KB), a multiple of both panel widths

// ---- packing: panel[k][0 ..< NR] = B[k0 + k][p0 ..< p0 + cols], zero past `cols`

static void pack_matrix(const dcn_columns *b, int k0, int kc, long p0, int cols, int nr, float *panel) {
    for (int k = 0; k < kc; k++) {
        const float *row = b->matrix + (long)(k0 + k) * b->ld + p0;
        float *out = panel + (long)k * nr;
        memcpy(out, row, (size_t)cols * sizeof(float));
        for (int j = cols; j < nr; j++) out[j] = 0;
    }
}

// The columns p0 ..< p0 + cols cover pieces of output rows; for each piece and each row of the
// window the inputs are a strided run of one image row, bounds-checked per element.
static void pack_image(const dcn_columns *b, int k0, int kc, long p0, int cols, int nr, float *panel) {
    const int taps = b->kernelH * b->kernelW, W = b->width, H = b->height;
    for (int k = 0; k < kc; k++) {
        const int r = k0 + k, ch = r / taps, t = r % taps, i = t / b->kernelW, j = t % b->kernelW;
        const float *plane = b->matrix + (long)ch * H * W;
        float *out = panel + (long)k * nr;
        int col = 0;
        while (col < cols) {
            const long p = p0 + col;
            const int oy = (int)(p / b->outWidth), ox0 = (int)(p % b->outWidth);
            const int run = b->outWidth - ox0 < cols - col ? b->outWidth - ox0 : cols - col;
            const int iy = oy * b->strideH - b->padH + i * b->dilationH;
            if (iy < 0 || iy >= H) {
                for (int q = 0; q < run; q++) out[col + q] = 0;
            } else {
                const float *line = plane + (long)iy * W;
                int ix = ox0 * b->strideW - b->padW + j * b->dilationW;
                for (int q = 0; q < run; q++, ix += b->strideW)
                    out[col + q] = (unsigned)ix < (unsigned)W ? line[ix] : 0.0f;
            }
            col += run;
        }
        for (int q = cols; q < nr; q++) out[q] = 0;
    }
}

static void pack_transposed(const dcn_columns *b, int k0, int kc, long p0, int cols, int nr, float *panel) {
    for (int q = 0; q < cols; q++) {
        const float *column = b->matrix + (p0 + q) * b->ld + k0;
        for (int k = 0; k < kc; k++) panel[(long)k * nr + q] = column[k];
    }
    for (int k = 0; k < kc; k++) {
        for (int q = cols; q < nr; q++) panel[(long)k * nr + q] = 0;
    }
}

static void pack(const dcn_columns *b, int k0, int kc, long p0, int cols, int nr, float *panel) {
    switch (b->kind) {
    case DCN_COLUMNS_IMAGE: pack_image(b, k0, kc, p0, cols, nr, panel); break;
    case DCN_COLUMNS_TRANSPOSED: pack_transposed(b, k0, kc, p0, cols, nr, panel); break;
    default: pack_matrix(b, k0, kc, p0, cols, nr, panel);
    }
}

// ---- AVX-512: 8 rows x 48 columns (24 accumulators)

#define MR512 8
#define NR512 48

__attribute__((target("avx512f,fma")))
static void kernel512(int kc, const float *a, long lda, const float *panel, float *c, long ldc, int accumulate) {
    __m512 acc[MR512][3];
    for (int r = 0; r < MR512; r++) {
        for (int v = 0; v < 3; v++)
            acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++, panel += NR512) {
        const __m512 b0 = _mm512_load_ps(panel), b1 = _mm512_load_ps(panel + 16), b2 = _mm512_load_ps(panel + 32);
        for (int r = 0; r < MR512; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(x, b2, acc[r][2]);
        }
    }
    for (int r = 0; r < MR512; r++) {
        for (int v = 0; v < 3; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
    }
}

// ---- AVX2: 4 rows x 24 columns (12 accumulators)

#define MR256 4
#define NR256 24

__attribute__((target("avx2,fma")))
static void kernel256(int kc, const float *a, long lda, const float *panel, float *c, long ldc, int accumulate) {
    __m256 acc[MR256][3];
    for (int r = 0; r < MR256; r++) {
        for (int v = 0; v < 3; v++)
            acc[r][v] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8 * v) : _mm256_setzero_ps();
    }
    for (int k = 0; k < kc; k++, panel += NR256) {
        const __m256 b0 = _mm256_load_ps(panel), b1 = _mm256_load_ps(panel + 8), b2 = _mm256_load_ps(panel + 16);
        for (int r = 0; r < MR256; r++) {
            const __m256 x = _mm256_broadcast_ss(a + r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(x, b2, acc[r][2]);
        }
    }
    for (int r = 0; r < MR256; r++) {
        for (int v = 0; v < 3; v++) _mm256_storeu_ps(c + r * ldc + 8 * v, acc[r][v]);
    }
}

int dcn_gemm_rows(int isa) { return isa == DCN_GEMM_AVX512 ? MR512 : isa == DCN_GEMM_AVX2 ? MR256 : 0; }
int dcn_gemm_panel(int isa) { return isa == DCN_GEMM_AVX512 ? NR512 : isa == DCN_GEMM_AVX2 ? NR256 : 0; }

void dcn_gemm(int isa, int m, long n0, long n1, int k, const float *a, long lda,
              const dcn_columns *b, float *c, long ldc, int accumulate, float *pack_buffer) {
    const int mr = dcn_gemm_rows(isa), nr = dcn_gemm_panel(isa);
    if (mr == 0 || m % mr != 0) return;
    void (*kernel)(int, const float *, long, const float *, float *, long, int) =
        isa == DCN_GEMM_AVX512 ? kernel512 : kernel256;
    float edge[MR512 * NR512];  // a partial panel's rows of C, padded to nr columns
    for (long b0 = n0; b0 < n1; b0 += NC) {
        const long b1 = n1 - b0 < NC ? n1 : b0 + NC;
        for (int k0 = 0; k0 < k; k0 += KC) {
            const int kc = k - k0 < KC ? k - k0 : KC;
            const int add = accumulate || k0 > 0;
            for (long p0 = b0; p0 < b1; p0 += nr) {
                const int cols = b1 - p0 < nr ? (int)(b1 - p0) : nr;
                pack(b, k0, kc, p0, cols, nr, pack_buffer + (p0 - b0) * kc);
            }
            // Each MR rows of A (MR x kc, in L1) meet every panel of the block (in L2).
            for (int r0 = 0; r0 < m; r0 += mr) {
                const float *ar = a + (long)r0 * lda + k0;
                for (long p0 = b0; p0 < b1; p0 += nr) {
                    const int cols = b1 - p0 < nr ? (int)(b1 - p0) : nr;
                    const float *panel = pack_buffer + (p0 - b0) * kc;
                    float *cr = c + (long)r0 * ldc + p0;
                    if (cols == nr) {
                        kernel(kc, ar, lda, panel, cr, ldc, add);
                    } else {
                        for (int r = 0; r < mr; r++) {
                            for (int q = 0; q < nr; q++) edge[r * nr + q] = add && q < cols ? cr[r * ldc + q] : 0;
                        }
                        kernel(kc, ar, lda, panel, edge, nr, 1);
                        for (int r = 0; r < mr; r++) memcpy(cr + r * ldc, edge + r * nr, (size_t)cols * sizeof(float));
                    }
                }
            }
        }
    }
}
