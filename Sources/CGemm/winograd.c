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

dcn_winograd_tiles dcn_winograd_tiles_of(const dcn_window *w) {
    dcn_winograd_tiles t;
    const int d = w->dilationH;
    const int phaseRows = (w->outHeight + d - 1) / d, phaseCols = (w->outWidth + d - 1) / d;
    t.tilesY = (phaseRows + 1) / 2;
    t.tilesX = (phaseCols + 1) / 2;
    t.count = (long)d * d * t.tilesY * t.tilesX;
    return t;
}

// U[xi] = (G g G^T)[xi] for every (output, input) channel pair, each xi's matrix in strips of mr
// rows as `dcn_pack_rows` packs A (mr = 1: row-major), xi's at u + xi * outC * inC.
static inline __attribute__((always_inline)) void weight_strips(int outC, int inC, const float *weight, const int mr, float *u,
                                                                int s0, int s1) {
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
            for (int xi = 0; xi < 16; xi++) memcpy(u + xi * matrix + ((long)s * inC + c) * mr, x[xi], (size_t)mr * sizeof(float));
        }
    }
}

void dcn_winograd_weights(int outC, int inC, const float *weight, int mr, float *u, int s0, int s1) {
    if (mr == DCN_GEMM_ROWS) weight_strips(outC, inC, weight, DCN_GEMM_ROWS, u, s0, s1);  // unrolled for our kernel's strips
    else weight_strips(outC, inC, weight, mr, u, s0, s1);
}

// The transforms below work on 16 tiles of a row at once (lanes), in plain loops the compiler
// vectorizes for the CPU it finds (AVX-512, AVX2 or the baseline: one source, three builds).
#define LANES 16
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// Row iy of channel `plane`, phase columns m = 0 ..< 2 * tilesX + 2 (input column px - pad + d m),
// split into even m (ev[n] = e[2n]) and odd m (od[n] = e[2n + 1]), zero outside the image and up to
// `padded`, where the last lanes' reads end.
static void phase_row(const dcn_window *w, const float *plane, int iy, int px, int tilesX, float *ev, float *od, int padded) {
    const int d = w->dilationW, W = w->width, x = px - w->padW;  // x + 2 d n, x + d + 2 d n: ev[n], od[n]
    int n = 0;
    if (iy >= 0 && iy < w->height) {
        const float *row = plane + (long)iy * W;
        // n in [lo, hi): both columns inside the row, no test.
        int lo = 0, hi = tilesX + 1;
        while (lo < hi && x + 2 * d * lo < 0) lo++;
        while (hi > lo && x + d + 2 * d * (hi - 1) >= W) hi--;
        for (; n < lo; n++) {
            const int x0 = x + 2 * d * n, x1 = x0 + d;
            ev[n] = x0 >= 0 && x0 < W ? row[x0] : 0;
            od[n] = x1 >= 0 && x1 < W ? row[x1] : 0;
        }
        for (; n < hi; n++) ev[n] = row[x + 2 * d * n], od[n] = row[x + d + 2 * d * n];
        for (; n <= tilesX; n++) {
            const int x0 = x + 2 * d * n, x1 = x0 + d;
            ev[n] = x0 >= 0 && x0 < W ? row[x0] : 0;
            od[n] = x1 >= 0 && x1 < W ? row[x1] : 0;
        }
    }
    for (; n < padded; n++) ev[n] = od[n] = 0;
}

// V[xi][c][n count + t] = (B^T d B)[xi] for channels c0 ..< c1, every image n and tile t, at
// v + (xi * channels + c) * images * count.
CLONES void dcn_winograd_input(const dcn_window *w, const float *image, int images, float *v, int c0, int c1) {
    const dcn_winograd_tiles tl = dcn_winograd_tiles_of(w);
    const int d = w->dilationH, tilesX = tl.tilesX;
    const int padded = (tilesX + 1 + LANES) / LANES * LANES + LANES;
    float *rows = malloc((size_t)8 * padded * sizeof(float));
    const long columns = images * tl.count, matrix = w->channels * columns;
    for (int c = c0; c < c1; c++) for (int n = 0; n < images; n++) {
        const float *plane = image + ((long)n * w->channels + c) * w->height * w->width;
        for (int py = 0; py < d; py++) {
            for (int px = 0; px < d; px++) {
                for (int ty = 0; ty < tl.tilesY; ty++) {
                    for (int i = 0; i < 4; i++)
                        phase_row(w, plane, py - w->padH + d * (2 * ty + i), px, tilesX, rows + 2 * i * padded, rows + (2 * i + 1) * padded, padded);
                    float *out = v + c * columns + n * tl.count + (((long)py * d + px) * tl.tilesY + ty) * tilesX;
                    for (int tx = 0; tx < tilesX; tx += LANES) {
                        float x[16][LANES];
#pragma clang loop vectorize(enable)
                        for (int l = 0; l < LANES; l++) {
                            // Column j of tile tx + l: e[2 (tx + l) + j] = ev[.], od[.], ev[. + 1], od[. + 1].
                            float e[4][4], t[4][4];
                            for (int i = 0; i < 4; i++) {
                                const float *ev = rows + 2 * i * padded + tx + l, *od = rows + (2 * i + 1) * padded + tx + l;
                                e[i][0] = ev[0], e[i][1] = od[0], e[i][2] = ev[1], e[i][3] = od[1];
                            }
                            for (int j = 0; j < 4; j++) {  // B^T d: over rows
                                t[0][j] = e[0][j] - e[2][j];
                                t[1][j] = e[1][j] + e[2][j];
                                t[2][j] = e[2][j] - e[1][j];
                                t[3][j] = e[1][j] - e[3][j];
                            }
                            for (int i = 0; i < 4; i++) {  // (B^T d) B: over columns
                                x[i * 4][l] = t[i][0] - t[i][2];
                                x[i * 4 + 1][l] = t[i][1] + t[i][2];
                                x[i * 4 + 2][l] = t[i][2] - t[i][1];
                                x[i * 4 + 3][l] = t[i][1] - t[i][3];
                            }
                        }
                        const int n = tilesX - tx < LANES ? tilesX - tx : LANES;
                        for (int xi = 0; xi < 16; xi++) memcpy(out + xi * matrix + tx, x[xi], (size_t)n * sizeof(float));
                    }
                }
            }
        }
    }
    free(rows);
}

// out[n][o] for output channels o0 ..< o1 of every image n from M[xi][o][n count + t] (m + (xi *
// outC + o) * images * count): Y = A^T M A
// per tile, plus bias[o], then `then`'s multiply, add and ReLU (v < 0 ? 0 : v), as the direct
// product's epilogue. Reads up to LANES - 1 floats past the last tile of the last matrix.
CLONES void dcn_winograd_output(const dcn_window *w, int images, int outC, const float *m, const float *bias, const dcn_affine *then,
                                float *out, int o0, int o1) {
    const dcn_winograd_tiles tl = dcn_winograd_tiles_of(w);
    const int d = w->dilationH, tilesX = tl.tilesX, Ho = w->outHeight, Wo = w->outWidth;
    const long columns = images * tl.count, matrix = outC * columns;
    for (int o = o0; o < o1; o++) for (int n = 0; n < images; n++) {
        const float b = bias ? bias[o] : 0, s = then ? then->scale[o] : 1, sh = then ? then->shift[o] : 0;
        const int mapped = then != NULL, relu = then && then->relu;
        float *plane = out + ((long)n * outC + o) * Ho * Wo;
        for (int py = 0; py < d; py++) {
            for (int px = 0; px < d; px++) {
                for (int ty = 0; ty < tl.tilesY; ty++) {
                    const float *src = m + o * columns + n * tl.count + (((long)py * d + px) * tl.tilesY + ty) * tilesX;
                    for (int tx = 0; tx < tilesX; tx += LANES) {
                        float y[4][LANES];  // outputs (a, b) of the lanes' tiles at y[2 a + b]
                        for (int l = 0; l < LANES; l++) {
                            float x[4][4], r[2][4];
                            for (int i = 0; i < 4; i++)
                                for (int j = 0; j < 4; j++) x[i][j] = src[(i * 4 + j) * matrix + tx + l];
                            for (int j = 0; j < 4; j++) {  // A^T M: over rows
                                r[0][j] = x[0][j] + x[1][j] + x[2][j];
                                r[1][j] = x[1][j] - x[2][j] - x[3][j];
                            }
                            for (int a = 0; a < 2; a++) {  // (A^T M) A: over columns
                                float q[2] = {r[a][0] + r[a][1] + r[a][2], r[a][1] - r[a][2] - r[a][3]};
                                for (int e = 0; e < 2; e++) {
                                    float v = q[e] + b;
                                    if (mapped) {
                                        v = v * s;  // a multiply, then an add (no fused multiply-add)
                                        v = v + sh;
                                        if (relu) v = v < 0 ? 0 : v;
                                    }
                                    y[2 * a + e][l] = v;
                                }
                            }
                        }
                        const int n = tilesX - tx < LANES ? tilesX - tx : LANES;
                        for (int a = 0; a < 2; a++) {
                            const int oy = py + d * (2 * ty + a);
                            if (oy >= Ho) continue;
                            float *row = plane + (long)oy * Wo;
                            for (int l = 0; l < n; l++) {
                                const int ox = px + d * 2 * (tx + l);
                                if (ox < Wo) row[ox] = y[2 * a][l];
                                if (ox + d < Wo) row[ox + d] = y[2 * a + 1][l];
                            }
                        }
                    }
                }
            }
        }
    }
}
