// Our own single-precision products for the forward convolutions (DCNTensor/OwnProduct.swift and
// DCNTensor/Winograd.swift call them), Winograd's transforms (Winograd.swift) and the stem's max
// pool (DCNOps/Pool.swift):
//   C[m x n] (+)= A[m x k] * B[k x n], A (the weight) and C (the output, one image) row-major.
// B is never written out. Its rows are read straight from where the data lies, 48 consecutive
// columns at a time (three AVX-512 registers): column q of row r is source[offset[r] + q]. For a
// pointwise convolution the source is the input itself (offset[r] = r * ld). For any other window
// the input is first laid out again (`dcn_relayout`): zero-padded, and split by stride phase, so
// that every tap of the window reads a contiguous run of it; the columns then run over a
// "virtual" output row of `virtualWidth` >= outWidth columns, whose extra columns are computed
// and dropped.
// Every element of C is a chain of fused multiply-adds in k order starting from C's value (or 0),
// whatever the thread count or the cut of the columns: the same bits. AVX-512 only: on AVX2 our
// kernels (4 x 16 and 4 x 24 registers) ran at 45-70 % of OpenBLAS's Haswell kernels, so the
// callers keep OpenBLAS there.
#ifndef DCN_CGEMM_H
#define DCN_CGEMM_H

// A convolution's window over one image [channels][height][width].
typedef struct {
    int channels, height, width;
    int kernelH, kernelW, strideH, strideW, padH, padW, dilationH, dilationW;
    int outHeight, outWidth;
} dcn_window;

// Rows of C one kernel call computes (m must be a multiple) and columns it computes at once.
enum { DCN_GEMM_ROWS = 8, DCN_GEMM_COLUMNS = 48 };

// The laid-out input of `dcn_relayout`: per channel the stride phase planes some tap reads (up to
// strideH * strideW) of phaseHeight x virtualWidth floats, with room after the last plane for the
// dropped columns' reads.
typedef struct {
    long phaseHeight, virtualWidth, channelFloats, totalFloats;
} dcn_layout;
dcn_layout dcn_layout_of(const dcn_window *w);

// Writes channels c0 ..< c1 of `image` laid out as `dcn_layout_of(w)` says into `out` (which holds
// totalFloats; the caller zeroes the room after the planes once).
void dcn_relayout(const dcn_window *w, const float *image, float *out, int c0, int c1);

// Offsets of B's rows: offsets[r] for r = (c * kernelH + i) * kernelW + j in the laid-out input.
void dcn_window_offsets(const dcn_window *w, long *offsets);

// A (m x k, rows lda apart) copied for `dcn_gemm`: its strips of DCN_GEMM_ROWS rows s0 ..< s1, each
// k-major (the rows' elements t side by side, then t + 1), strip s at packed + s * ROWS * k.
void dcn_pack_rows(int k, const float *a, long lda, float *packed, int s0, int s1);

// What a conv's output goes through next in inference, applied while it is in cache: a per-row
// affine map (a frozen batch norm), then a ReLU when relu != 0.
typedef struct {
    const float *scale, *shift;
    int relu;
} dcn_affine;

// C[:, columns of q0 ..< q1] (+)= A * B for B's columns q0 ..< q1 (virtual columns: q = oy *
// virtualWidth + ox; the output column is oy * outWidth + ox when ox < outWidth), B[r][q] =
// source[offsets[r] + q], A as `dcn_pack_rows` packed it. accumulate != 0 adds to C, else C is
// overwritten, row r starting from bias[r] (bias may be NULL: from 0); then `then` (may be NULL)
// maps the result. streamOutput != 0: a window's kept columns reach C by streaming stores (no
// read of C's lines first), for an output far larger than the cache that the next op reads back
// from memory anyway. m must be a multiple of DCN_GEMM_ROWS. Needs AVX-512 F; runs on the calling
// thread.
void dcn_gemm(int m, long q0, long q1, int k, const float *a,
              const float *source, const long *offsets, long virtualWidth, long outWidth,
              const float *bias, const dcn_affine *then, float *c, long ldc, int accumulate, int streamOutput);

// One output row of the stem's 3x3, stride 2, padding 1 max pool over input rows rowLo ..< rowHi
// of a w-wide plane: out[ox] = the maximum of the window, scanned by rows, then columns, a
// larger value or a NaN replacing (the scalar loop's rule and bits). Needs AVX-512 F.
void dcn_stem_max_pool_row(const float *plane, int w, int rowLo, int rowHi, float *out, int outWidth);

// Winograd's F(2x2, 3x3) (winograd.c) for a 3x3, stride-1 window (any padding, one dilation for
// both axes), in inference: the outputs in d x d phases (d the dilation), each phase in tiles of
// 2 x 2 outputs, tilesY x tilesX per phase, `count` in all; tile t = ((py * d + px) * tilesY + ty)
// * tilesX + tx covers outputs (py + d (2 ty + a), px + d (2 tx + b)), a, b in {0, 1}.
typedef struct {
    int tilesY, tilesX;
    long count;
} dcn_winograd_tiles;
dcn_winograd_tiles dcn_winograd_tiles_of(const dcn_window *w);

// The weight [outC][inC][3][3] transformed, U[xi] = (G g G^T)[xi] for the 16 points xi, each an
// outC x inC matrix in strips of mr rows (mr <= DCN_GEMM_ROWS) as `dcn_pack_rows` packs A (mr = 1:
// row-major), xi's at u + xi * outC * inC; strips s0 ..< s1.
void dcn_winograd_weights(int outC, int inC, const float *weight, int mr, float *u, int s0, int s1);

// The input `images` x [channels][height][width] transformed: V[xi][c][n * count + t] = (B^T d B)[xi]
// of image n's tile t's 4 x 4 input (zero outside the image), at v + (xi * channels + c) * images *
// count, for channels c0 ..< c1.
void dcn_winograd_input(const dcn_window *w, const float *image, int images, float *v, int c0, int c1);

// Output channels o0 ..< o1 of `images` x [outC][outHeight][outWidth] from the products M[xi] =
// U[xi] V[xi] (M[xi][o][n * count + t] at m + (xi * outC + o) * images * count; the buffer holds 16
// floats more): Y = A^T M A per tile, plus bias[o] (may be NULL), then `then` (may be NULL).
void dcn_winograd_output(const dcn_window *w, int images, int outC, const float *m, const float *bias, const dcn_affine *then,
                         float *out, int o0, int o1);

#endif
