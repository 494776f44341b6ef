// Winograd's F(2x2, 3x3) for 3x3 stride-1 convolutions in inference (see include/cgemm.h).
//
// A 2x2 tile of outputs reads a 4x4 tile d of the input; with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1]
// the tile is  Y = A^T [ sum_c (G g_c G^T) .* (B^T d_c B) ] A : the sum over input channels at
// each of the 16 points xi is a product U[xi] (out x in channels) * V[xi] (in channels x tiles),
// 16 products of 4 multiply-adds per output pixel and channel instead of 9.
// A dilation d splits the outputs into d x d phases (oy % d, ox % d); in each phase the taps are
// d apart, so the same tiles run on the phase's own grid.
#include "cgemm.h"
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

dcn_winograd_tiles dcn_winograd_tiles_of(const dcn_window *w) {
    dcn_winograd_tiles t;
    const int d = w->dilationH;
    const int phaseRows = (w->outHeight + d - 1) / d, phaseCols = (w->outWidth + d - 1) / d;
    t.tilesY = (phaseRows + 1) / 2;
    t.tilesX = (phaseCols + 1) / 2;
    t.count = (long)d * d * t.tilesY * t.tilesX;
    return t;
}

// U[xi] = (G g G^T)[xi] for every (output, input) channel pair, each xi's matrix packed as
// `dcn_pack_rows` packs A (8-row strips, input channel major): xi's at u + xi * outC * inC.
void dcn_winograd_weights(int outC, int inC, const float *weight, float *u, int s0, int s1) {
    const int mr = DCN_GEMM_ROWS;
    const long matrix = (long)outC * inC;
    for (int s = s0; s < s1; s++) {
        for (int c = 0; c < inC; c++) {
            float x[16][DCN_GEMM_ROWS];  // the strip's rows side by side, per point
            for (int r = 0; r < mr; r++) {
                const float *g = weight + ((long)(s * mr + r) * inC + c) * 9;
                float t[4][3];  // G g, 4 x 3
                for (int j = 0; j < 3; j++) {
                    t[0][j] = g[j];
                    t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                    t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                    t[3][j] = g[6 + j];
                }
                for (int i = 0; i < 4; i++) {  // (G g) G^T
                    x[i * 4][r] = t[i][0];
                    x[i * 4 + 1][r] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                    x[i * 4 + 2][r] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                    x[i * 4 + 3][r] = t[i][2];
                }
            }
            for (int xi = 0; xi < 16; xi++) memcpy(u + xi * matrix + ((long)s * inC + c) * mr, x[xi], sizeof x[xi]);
        }
    }
}

// Row iy of channel `plane`, phase columns m = 0 ..< 2 * tilesX + 2 (input column px - pad + d m),
// split into even m (ev[n] = e[2n]) and odd m (od[n] = e[2n + 1]), zero outside the image, then
// zero to the end of the 16-float vectors the tiles read.
static void phase_row(const dcn_window *w, const float *plane, int iy, int px, int tilesX, float *ev, float *od, int padded) {
    const int d = w->dilationW;
    int n = 0;
    if (iy >= 0 && iy < w->height) {
        const float *row = plane + (long)iy * w->width;
        for (; n <= tilesX; n++) {
            const int x0 = px - w->padW + d * 2 * n, x1 = x0 + d;
            ev[n] = x0 >= 0 && x0 < w->width ? row[x0] : 0;
            od[n] = x1 >= 0 && x1 < w->width ? row[x1] : 0;
        }
    }
    for (; n < padded; n++) ev[n] = od[n] = 0;
}

// V[xi][c][t] = (B^T d B)[xi] for channels c0 ..< c1 and every tile t, at v + (xi * inC + c) * count.
__attribute__((target("avx512f")))
void dcn_winograd_input(const dcn_window *w, const float *image, float *v, int c0, int c1) {
    const dcn_winograd_tiles tl = dcn_winograd_tiles_of(w);
    const int d = w->dilationH, tilesX = tl.tilesX;
    const int padded = (tilesX + 1 + 16) / 16 * 16 + 16;
    float *rows = aligned_alloc(64, (size_t)8 * padded * sizeof(float));
    const long matrix = (long)w->channels * tl.count;
    for (int c = c0; c < c1; c++) {
        const float *plane = image + (long)c * w->height * w->width;
        for (int py = 0; py < d; py++) {
            for (int px = 0; px < d; px++) {
                for (int ty = 0; ty < tl.tilesY; ty++) {
                    const long t0 = (((long)py * d + px) * tl.tilesY + ty) * tilesX;
                    for (int i = 0; i < 4; i++)
                        phase_row(w, plane, py - w->padH + d * (2 * ty + i), px, tilesX, rows + 2 * i * padded, rows + (2 * i + 1) * padded, padded);
                    float *out = v + (long)c * tl.count + t0;
                    for (int tx = 0; tx < tilesX; tx += 16) {
                        const __mmask16 lanes = tilesX - tx >= 16 ? 0xFFFF : (__mmask16)((1u << (tilesX - tx)) - 1);
                        // Columns j of the tile: e[2 tx + j] = ev[tx], od[tx], ev[tx + 1], od[tx + 1].
                        __m512 t[4][4];
                        __m512 dd[4][4];
                        for (int i = 0; i < 4; i++) {
                            const float *ev = rows + 2 * i * padded, *od = rows + (2 * i + 1) * padded;
                            dd[i][0] = _mm512_loadu_ps(ev + tx);
                            dd[i][1] = _mm512_loadu_ps(od + tx);
                            dd[i][2] = _mm512_loadu_ps(ev + tx + 1);
                            dd[i][3] = _mm512_loadu_ps(od + tx + 1);
                        }
                        for (int j = 0; j < 4; j++) {  // B^T d: over rows
                            t[0][j] = _mm512_sub_ps(dd[0][j], dd[2][j]);
                            t[1][j] = _mm512_add_ps(dd[1][j], dd[2][j]);
                            t[2][j] = _mm512_sub_ps(dd[2][j], dd[1][j]);
                            t[3][j] = _mm512_sub_ps(dd[1][j], dd[3][j]);
                        }
                        for (int i = 0; i < 4; i++) {  // (B^T d) B: over columns
                            const __m512 x[4] = {_mm512_sub_ps(t[i][0], t[i][2]), _mm512_add_ps(t[i][1], t[i][2]),
                                                 _mm512_sub_ps(t[i][2], t[i][1]), _mm512_sub_ps(t[i][1], t[i][3])};
                            for (int j = 0; j < 4; j++) _mm512_mask_storeu_ps(out + (i * 4 + j) * matrix + tx, lanes, x[j]);
                        }
                    }
                }
            }
        }
    }
    free(rows);
}

// out[o] for output channels o0 ..< o1 from M[xi][o][t] (m + (xi * outC + o) * count): Y = A^T M A
// per tile, plus bias[o], then `then`'s affine map and ReLU, as the direct product's epilogue.
__attribute__((target("avx512f")))
void dcn_winograd_output(const dcn_window *w, int outC, const float *m, const float *bias, const dcn_affine *then,
                         float *out, int o0, int o1) {
    const dcn_winograd_tiles tl = dcn_winograd_tiles_of(w);
    const int d = w->dilationH, tilesX = tl.tilesX, Ho = w->outHeight, Wo = w->outWidth;
    const long matrix = (long)outC * tl.count;
    const __m512 zero = _mm512_setzero_ps();
    // Interleaving two vectors of 16 tiles into 32 consecutive outputs.
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    float spill[4][16];
    for (int o = o0; o < o1; o++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0);
        const __m512 s = _mm512_set1_ps(then ? then->scale[o] : 1), sh = _mm512_set1_ps(then ? then->shift[o] : 0);
        float *plane = out + (long)o * Ho * Wo;
        for (int py = 0; py < d; py++) {
            for (int px = 0; px < d; px++) {
                for (int ty = 0; ty < tl.tilesY; ty++) {
                    const long t0 = (((long)py * d + px) * tl.tilesY + ty) * tilesX;
                    const float *src = m + (long)o * tl.count + t0;
                    for (int tx = 0; tx < tilesX; tx += 16) {
                        const __mmask16 lanes = tilesX - tx >= 16 ? 0xFFFF : (__mmask16)((1u << (tilesX - tx)) - 1);
                        __m512 x[4][4], r[2][4];
                        for (int i = 0; i < 4; i++)
                            for (int j = 0; j < 4; j++) x[i][j] = _mm512_maskz_loadu_ps(lanes, src + (i * 4 + j) * matrix + tx);
                        for (int j = 0; j < 4; j++) {  // A^T M: over rows
                            r[0][j] = _mm512_add_ps(_mm512_add_ps(x[0][j], x[1][j]), x[2][j]);
                            r[1][j] = _mm512_sub_ps(_mm512_sub_ps(x[1][j], x[2][j]), x[3][j]);
                        }
                        __m512 y[2][2];
                        for (int a = 0; a < 2; a++) {  // (A^T M) A: over columns
                            y[a][0] = _mm512_add_ps(_mm512_add_ps(r[a][0], r[a][1]), r[a][2]);
                            y[a][1] = _mm512_sub_ps(_mm512_sub_ps(r[a][1], r[a][2]), r[a][3]);
                            for (int e = 0; e < 2; e++) {
                                __m512 v = _mm512_add_ps(y[a][e], b);
                                if (then) {
                                    v = _mm512_add_ps(_mm512_mul_ps(v, s), sh);
                                    if (then->relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
                                }
                                y[a][e] = v;
                            }
                        }
                        for (int a = 0; a < 2; a++) {
                            const int oy = py + d * (2 * ty + a);
                            if (oy >= Ho) continue;
                            float *row = plane + (long)oy * Wo;
                            const int first = px + d * 2 * tx;  // output column of lane 0, column 0
                            if (d == 1) {
                                // 32 consecutive outputs from column 2 tx on, those before Wo kept.
                                const __m512 p0 = _mm512_permutex2var_ps(y[a][0], lo, y[a][1]);
                                const __m512 p1 = _mm512_permutex2var_ps(y[a][0], hi, y[a][1]);
                                const int n0 = Wo - first < 16 ? Wo - first : 16, n1 = Wo - first - 16 < 16 ? Wo - first - 16 : 16;
                                if (n0 > 0) _mm512_mask_storeu_ps(row + first, n0 >= 16 ? 0xFFFF : (__mmask16)((1u << n0) - 1), p0);
                                if (n1 > 0) _mm512_mask_storeu_ps(row + first + 16, n1 >= 16 ? 0xFFFF : (__mmask16)((1u << n1) - 1), p1);
                            } else {
                                _mm512_storeu_ps(spill[2 * a], y[a][0]);
                                _mm512_storeu_ps(spill[2 * a + 1], y[a][1]);
                                for (int q = 0; q < 16 && tx + q < tilesX; q++) {
                                    const int ox = first + 2 * d * q;
                                    if (ox < Wo) row[ox] = spill[2 * a][q];
                                    if (ox + d < Wo) row[ox + d] = spill[2 * a + 1][q];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
