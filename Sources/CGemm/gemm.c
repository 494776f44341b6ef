// Our products for forward convolutions (see include/cgemm.h).
//
// Blocking: the caller cuts the virtual columns into blocks of up to 768 (one call each) and packs
// A once (`dcn_pack_rows`: 8-row strips, k-major). In a block, k runs 256 at a time; for each k
// block and each strip (8 x 256 floats, in L1) the kernel runs over the block's panels of 48
// columns: C[8 x 48] += A[8 x kc] * B[kc x 48] in 24 AVX-512 registers, per k 3 loads of B's row
// straight from the source, 8 broadcasts of A and 24 fused multiply-adds. The block's C is C
// itself when the virtual columns are the output's, else a buffer that takes C's values first
// (when accumulating) and gives the kept columns back at the end, so the chains are the same
// either way.
#include "cgemm.h"
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

#define KC 256
#define NC 768  // columns of one block, a multiple of the panel width

// ---- the input laid out for contiguous reads

static int plane_is_read(const dcn_window *w, int py, int px) {
    int rows = 0, cols = 0;
    for (int i = 0; i < w->kernelH; i++) rows |= (i * w->dilationH) % w->strideH == py;
    for (int j = 0; j < w->kernelW; j++) cols |= (j * w->dilationW) % w->strideW == px;
    return rows && cols;
}

// The place of phase plane (py, px) among the planes some tap reads (only those are laid out: a
// strided 1x1 window reads one of its four).
static int plane_slot(const dcn_window *w, int py, int px) {
    int slot = 0;
    for (int p = 0; p < py * w->strideW + px; p++) slot += plane_is_read(w, p / w->strideW, p % w->strideW);
    return slot;
}

dcn_layout dcn_layout_of(const dcn_window *w) {
    dcn_layout l;
    const long paddedH = w->height + 2L * w->padH, paddedW = w->width + 2L * w->padW;
    l.phaseHeight = (paddedH + w->strideH - 1) / w->strideH;
    l.virtualWidth = (paddedW + w->strideW - 1) / w->strideW;
    l.channelFloats = (long)plane_slot(w, w->strideH, 0) * l.phaseHeight * l.virtualWidth;  // read planes
    // The dropped columns of the last output row read up to one panel and one row past the planes.
    l.totalFloats = w->channels * l.channelFloats + l.virtualWidth + 64;
    return l;
}

// dst[q] = src[2q] for q < count, 16 at a time (a stride-2 conv's phase planes).
__attribute__((target("avx512f")))
static void every_second(float *dst, const float *src, int count) {
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    int q = 0;
    for (; q + 16 < count; q += 16) {  // reads src[2q ..< 2q + 32], within the 2 count - 1 floats
        const __m512 lo = _mm512_loadu_ps(src + 2 * q), hi = _mm512_loadu_ps(src + 2 * q + 16);
        _mm512_storeu_ps(dst + q, _mm512_permutex2var_ps(lo, evens, hi));
    }
    for (; q < count; q++) dst[q] = src[2L * q];
}

// Padded pixel (y, x) (y = iy + padH, x = ix + padW) goes to phase plane (y % sh, x % sw) at row
// y / sh, column x / sw; padding and the planes' spare cells are zero.
void dcn_relayout(const dcn_window *w, const float *image, float *out, int c0, int c1) {
    const dcn_layout l = dcn_layout_of(w);
    const int sh = w->strideH, sw = w->strideW, H = w->height, W = w->width;
    const long planeFloats = l.phaseHeight * l.virtualWidth;
    for (int c = c0; c < c1; c++) {
        for (int py = 0; py < sh; py++) {
            for (int px = 0; px < sw; px++) {
                if (!plane_is_read(w, py, px)) continue;
                float *plane = out + (long)c * l.channelFloats + (long)plane_slot(w, py, px) * planeFloats;
                memset(plane, 0, (size_t)planeFloats * sizeof(float));
                // Input columns of this phase: ix = x - padW for x = px, px + sw, ... inside the image.
                int x0 = px;
                while (x0 < w->padW) x0 += sw;
                const int first = x0 - w->padW, count = first < W ? (W - 1 - first) / sw + 1 : 0;
                for (int y = py; y < H + w->padH; y += sh) {
                    const int iy = y - w->padH;
                    if (iy < 0 || count == 0) continue;
                    float *dst = plane + (long)(y / sh) * l.virtualWidth + x0 / sw;
                    const float *src = image + ((long)c * H + iy) * W + first;
                    if (sw == 1) memcpy(dst, src, (size_t)count * sizeof(float));
                    else if (sw == 2) every_second(dst, src, count);
                    else for (int q = 0; q < count; q++) dst[q] = src[(long)q * sw];
                }
            }
        }
    }
}

// Output (oy, ox) under tap (i, j) reads padded (oy * sh + i * dh, ox * sw + j * dw): phase plane
// ((i * dh) % sh, (j * dw) % sw), row oy + i * dh / sh, column ox + j * dw / sw, so its offset from
// virtual column q = oy * virtualWidth + ox is the same for every q.
void dcn_window_offsets(const dcn_window *w, long *offsets) {
    const dcn_layout l = dcn_layout_of(w);
    const int sh = w->strideH, sw = w->strideW;
    long r = 0;
    for (int c = 0; c < w->channels; c++) {
        for (int i = 0; i < w->kernelH; i++) {
            for (int j = 0; j < w->kernelW; j++, r++) {
                const int dy = i * w->dilationH, dx = j * w->dilationW;
                const long plane = plane_slot(w, dy % sh, dx % sw);
                offsets[r] = c * l.channelFloats + plane * l.phaseHeight * l.virtualWidth
                    + (long)(dy / sh) * l.virtualWidth + dx / sw;
            }
        }
    }
}

// ---- AVX-512: 8 rows x 48 columns (24 accumulators)

#define MR512 DCN_GEMM_ROWS
#define NR512 DCN_GEMM_COLUMNS

__attribute__((target("avx512f,fma")))
static void kernel512(int kc, const float *a, const float *b, const long *offsets,
                      float *c, long ldc, int accumulate, const float *start, const float *nextA) {
    __m512 acc[MR512][3];
    for (int r = 0; r < MR512; r++) {
        // From C's values, else from the rows' start values (the bias), else from 0.
        const __m512 first = start ? _mm512_set1_ps(start[r]) : _mm512_setzero_ps();
        for (int v = 0; v < 3; v++) acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16 * v) : first;
    }
    for (int k = 0; k < kc; k++) {
        const float *row = b + offsets[k];
        // The next strip of A, a cache line every other k: it comes from L3 otherwise.
        if ((k & 1) == 0) _mm_prefetch((const char *)(nextA + k * MR512), _MM_HINT_T0);
        const __m512 b0 = _mm512_loadu_ps(row), b1 = _mm512_loadu_ps(row + 16), b2 = _mm512_loadu_ps(row + 32);
        for (int r = 0; r < MR512; r++) {
            const __m512 x = _mm512_set1_ps(a[k * MR512 + r]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(x, b2, acc[r][2]);
        }
    }
    for (int r = 0; r < MR512; r++) {
        for (int v = 0; v < 3; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
    }
}


// dst[0 ..< n] = src[0 ..< n], the 64-byte-aligned middle by streaming stores: no read of the
// destination's lines first.
__attribute__((target("avx512f")))
static void copy_streaming(float *dst, const float *src, long n) {
    long i = 0;
    while (i < n && ((unsigned long)(dst + i) & 63)) { dst[i] = src[i]; i++; }
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
    for (; i < n; i++) dst[i] = src[i];
}

// Copies the kept columns of virtual block [q0, q1) between C and the block buffer (ld NC):
// toBlock != 0: block <- C (dropped columns 0); else C <- block, by streaming stores when `stream`.
static void exchange(float *block, float *c, long ldc, int m, long q0, long q1, long virtualWidth, long outWidth, int toBlock,
                     int stream) {
    for (int r = 0; r < m; r++) {
        float *line = block + (long)r * NC, *out = c + r * ldc;
        long q = q0;
        while (q < q1) {
            const long oy = q / virtualWidth, ox = q % virtualWidth;
            const long end = q1 - q < virtualWidth - ox ? q1 : q + (virtualWidth - ox);  // to the row's end
            const long kept = ox < outWidth ? (end - q < outWidth - ox ? end - q : outWidth - ox) : 0;
            if (toBlock) {
                if (kept) memcpy(line + (q - q0), out + oy * outWidth + ox, (size_t)kept * sizeof(float));
                memset(line + (q - q0) + kept, 0, (size_t)(end - q - kept) * sizeof(float));
            } else if (kept) {
                if (stream) copy_streaming(out + oy * outWidth + ox, line + (q - q0), kept);
                else memcpy(out + oy * outWidth + ox, line + (q - q0), (size_t)kept * sizeof(float));
            }
            q = end;
        }
    }
}

// Row r of the block (`count` columns, rows `ld` apart): v = v * scale[r] + shift[r] (a multiply,
// then an add: no fused multiply-add, as the separate pass rounds), then v < 0 ? 0 : v (a NaN and
// -0 stay), 16 columns at a time.
__attribute__((target("avx512f")))
static void apply_affine(const dcn_affine *f, float *block, long ld, int m, long count) {
    const __m512 zero = _mm512_setzero_ps();
    for (int r = 0; r < m; r++) {
        float *line = block + (long)r * ld;
        const __m512 s = _mm512_set1_ps(f->scale[r]), t = _mm512_set1_ps(f->shift[r]);
        for (long q = 0; q < count; q += 16) {
            const __mmask16 lanes = count - q >= 16 ? 0xFFFF : (__mmask16)((1u << (count - q)) - 1);
            __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, line + q), s), t);
            if (f->relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
            _mm512_mask_storeu_ps(line + q, lanes, v);
        }
    }
}

void dcn_pack_rows(int k, const float *a, long lda, float *packed, int s0, int s1) {
    const int mr = DCN_GEMM_ROWS;
    for (int s = s0; s < s1; s++) {
        const float *rows = a + (long)s * mr * lda;
        float *out = packed + (long)s * mr * k;
        for (int t = 0; t < k; t++) {
            for (int r = 0; r < mr; r++) out[(long)t * mr + r] = rows[r * lda + t];
        }
    }
}

void dcn_gemm(int m, long q0, long q1, int k, const float *a,
              const float *source, const long *offsets, long virtualWidth, long outWidth,
              const float *bias, const dcn_affine *then, float *c, long ldc, int accumulate, int streamOutput) {
    const int mr = DCN_GEMM_ROWS, nr = DCN_GEMM_COLUMNS;
    if (m % mr != 0 || q1 <= q0) return;
    const int direct = virtualWidth == outWidth;  // the virtual columns are C's own
    float *block = direct ? NULL : aligned_alloc(64, (size_t)m * NC * sizeof(float));
    // A partial panel (the last of the columns) is copied, zero-padded, so that no read passes the
    // source's end; its rows are then nr apart.
    // Only the last block of a range can end in a partial panel (NC is a whole number of panels).
    float *tail = (q1 - q0) % nr ? aligned_alloc(64, (size_t)KC * NR512 * sizeof(float)) : NULL;
    long tailOffsets[KC];
    for (int t = 0; t < KC; t++) tailOffsets[t] = (long)t * nr;
    float edge[MR512 * NR512];  // a partial panel's C rows
    for (long b0 = q0; b0 < q1; b0 += NC) {
        const long b1 = q1 - b0 < NC ? q1 : b0 + NC;
        float *cb = direct ? c + b0 : block;
        const long ldb = direct ? ldc : NC;
        if (!direct && accumulate) exchange(block, c, ldc, m, b0, b1, virtualWidth, outWidth, 1, 0);
        const long full = b0 + (b1 - b0) / nr * nr;  // panels from `full` on are partial
        const int cols = (int)(b1 - full);
        for (int k0 = 0; k0 < k; k0 += KC) {
            const int kc = k - k0 < KC ? k - k0 : KC;
            // The first k block starts every element from its bias (or 0), in C or in the block
            // buffer alike; later ones, and an accumulating product, from the element's value.
            const int add = accumulate || k0 > 0;
            const float *start = add ? NULL : bias;
            if (cols > 0) {
                for (int t = 0; t < kc; t++) {
                    const float *row = source + offsets[k0 + t] + full;
                    for (int q = 0; q < nr; q++) tail[t * nr + q] = q < cols ? row[q] : 0;
                }
            }
            for (int r0 = 0; r0 < m; r0 += mr) {
                // A's MR x kc block, k-major: one stream of broadcasts.
                const float *ar = a + (long)r0 * k + (long)k0 * mr;
                for (long p0 = b0; p0 < full; p0 += nr)
                    kernel512(kc, ar, source + p0, offsets + k0, cb + (long)r0 * ldb + (p0 - b0), ldb, add, start ? start + r0 : NULL,
                              r0 + mr < m ? ar + (long)mr * k : ar);
                if (cols > 0) {
                    float *cr = cb + (long)r0 * ldb + (full - b0);
                    for (int r = 0; r < mr; r++) {
                        const float first = start ? start[r0 + r] : 0;
                        for (int q = 0; q < nr; q++) edge[r * nr + q] = add && q < cols ? cr[r * ldb + q] : first;
                    }
                    kernel512(kc, ar, tail, tailOffsets, edge, nr, 1, NULL, ar);
                    for (int r = 0; r < mr; r++) memcpy(cr + r * ldb, edge + r * nr, (size_t)cols * sizeof(float));
                }
            }
        }
        if (then) apply_affine(then, cb, ldb, m, b1 - b0);
        if (!direct) exchange(block, c, ldc, m, b0, b1, virtualWidth, outWidth, 0, streamOutput);
    }
    if (streamOutput) _mm_sfence();  // the streaming stores are seen before the threads join
    free(tail);
    free(block);
}
