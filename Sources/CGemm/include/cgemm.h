// Our own single-precision matrix product for the forward convolutions:
//   C[m x n] (+)= A[m x k] * B[k x n], A and C row-major, B either a row-major matrix or the
//   im2col columns of one image, packed straight from the image (no columns matrix in memory).
// Every element of C is a chain of fused multiply-adds in k order (k cut at fixed 256-long
// blocks), so the result does not depend on the instruction set, the thread count or the cut of
// the columns between threads. DCNTensor/OwnProduct.swift is the only caller.
#ifndef DCN_CGEMM_H
#define DCN_CGEMM_H

#include <stddef.h>

// The B operand, by `kind`: a row-major matrix (B[r][p] at matrix[r * ld + p]), a transposed one
// (B[r][p] at matrix[p * ld + r]), or the im2col columns of the image `matrix`
// [channels][height][width] under the given convolution window:
// row r = (c * kernelH + i) * kernelW + j, column p = oy * outWidth + ox holds
// image[c][oy * strideH - padH + i * dilationH][ox * strideW - padW + j * dilationW] (0 outside).
typedef struct {
    const float *matrix;
    long ld;
    int kind;
    int channels, height, width;
    int kernelH, kernelW, strideH, strideW, padH, padW, dilationH, dilationW;
    int outWidth;
} dcn_columns;

enum { DCN_COLUMNS_MATRIX = 0, DCN_COLUMNS_TRANSPOSED = 1, DCN_COLUMNS_IMAGE = 2 };

// Instruction sets the product has kernels for.
enum { DCN_GEMM_NONE = 0, DCN_GEMM_AVX2 = 1, DCN_GEMM_AVX512 = 2 };

// Rows of C one kernel call computes (m must be a multiple) and columns of one packed panel.
int dcn_gemm_rows(int isa);
int dcn_gemm_panel(int isa);

// Floats of the packing buffer dcn_gemm needs (256 rows of k x 384 columns).
enum { dcn_gemm_pack_floats = 256 * 384 };

// C[:, n0 ..< n1] (+)= A * B[:, n0 ..< n1] with the kernels of `isa` (accumulate != 0 adds to C,
// else C is overwritten). m must be a multiple of dcn_gemm_rows(isa). `pack` holds
// dcn_gemm_pack_floats floats, 64-byte aligned. Runs on the calling thread.
void dcn_gemm(int isa, int m, long n0, long n1, int k, const float *a, long lda,
              const dcn_columns *b, float *c, long ldc, int accumulate, float *pack);

#endif
