// Fused SAM mask-decoder output stage on CPU (see samfast.ops.mask_head_reference):
// ConvT(2x2, s2) -> LayerNorm2d -> GELU -> ConvT(2x2, s2) -> GELU -> dot with hypernetwork weights.
// The [B, C2, 4h, 4w] upscaled feature map is never materialised: pixels are processed in tiles.
#pragma once
#include <cmath>
#include <cstdint>

namespace samfast::cpu {

// The first ConvT from the decoder's image->token updates instead of from src (float32 only). The decoder's
// last image->token output is src = LN1(y2) * w1n + b1n with y2 = LN0(y1) * w0 + b0 + P1 R1 + ob1 and
// y1 = x0 + P0 R0 + ob0 (row LayerNorms with per-row {mean m, rstd r}); with A' = diag(w1n) A and
// A'' = diag(w0) A' (A: ConvT1 as a [C, 4 C1] matrix), the pre-activation src A + bias is
//   T = cz + r2 * (r1 * (G + c0 + P0 M0 - m1 k1) + c1 + P1 M1 - m2 k2)
// where G = x0 A'' is per image, M0 = R0 A'' and M1 = R1 A' per prompt ([HT, 4 C1]: rank-HT updates), and
// k1 = 1 A'', k2 = 1 A', c0 = ob0 A'', c1 = b0 A' + ob1 A', cz = b1n A + bias per weight set. Columns are
// in the kernel's order (s * C1 + co, s = 2 dy + dx), padded to N1p = round_up(4 C1, 16).
// Each head's probabilities sum to 1, so the last token's rows drop out of both products: with P's columns
// token-major (t * H + h), the first K = H (T - 1) of them and the rows M[t, h] - M[T - 1, h] give
// P M = P[:, :K] Md + sum_h M[T - 1, h]. The kernel runs the two products as one GEMM of depth 2 K,
//   U = c1b + [r1 P0[:, :K] | P1[:, :K]] [M0d; M1d],   T = cz + r2 * (r1 * (G + c0b - m1 k1) + U - m2 k2),
// with the per-prompt c0b = c0 + sum_h M0[T - 1, h], c1b = c1 + sum_h M1[T - 1, h] (mask_head_fold_prepare).
// src must still be given: tiles with a row whose |mean| * rstd is large (cancellation in the m k terms) use it.
struct MaskHeadFold {
  int64_t K = 0;    // columns of P0 / P1 used: H * (T - 1)
  int64_t ldp = 0;  // row stride of P0 / P1: H * T
  const float* G = nullptr;                          // [h*w, N1p]
  const float *P0 = nullptr, *P1 = nullptr;          // [B, h*w, ldp]
  const float *st0 = nullptr, *st1 = nullptr;        // [B, h*w, 2] {mean, rstd}
  const float* Mp = nullptr;                         // [B, N1p / 16, 2 K, 16]  [M0d; M1d] as GEMM panels
  const float *c0b = nullptr, *c1b = nullptr;        // [B, N1p]
  const float *k1 = nullptr, *k2 = nullptr, *cz = nullptr;  // [N1p]
};

// Whether a row with LayerNorm statistics st = {mean, rstd} (of y1 or y2 above) may use the fold: the m k terms
// cancel when |mean| is large next to the spread, and the loss grows as |mean| * rstd (relative error ~ |m| r
// 6e-8). The fold is used for a pixel tile only when all its rows pass both LayerNorms (NaN fails).
inline bool mask_head_fold_row_ok(const float* st) { return std::abs(st[0]) * st[1] <= 32.f; }

// N1p: the first ConvT's 4 * C1 output columns padded to the GEMM panel width (the kernel's T tiles, g, M0/M1).
int64_t mask_head_conv1_width(int64_t C1);

// One prompt's MaskHeadFold operands from M0 = R0 A'' and M1 = R1 A' ([H * T, N1p] row-major, rows t * H + h):
// Mp [N1p / 16, 2 K, 16] (K = H (T - 1)), c0b = c0 + sum_h M0[T - 1, h], c1b = c1 + sum_h M1[T - 1, h] ([N1p]).
void mask_head_fold_prepare(const float* M0, const float* M1, int64_t H, int64_t T, int64_t N1p, const float* c0,
                            const float* c1, float* Mp, float* c0b, float* c1b);

struct MaskHeadArgs {
  int64_t B = 0, h = 0, w = 0, C = 0, C1 = 0, C2 = 0, M = 0;
  const void* src = nullptr;    // [B, h, w, C]
  const void* w1 = nullptr;     // [C, C1, 2, 2]
  const void* b1 = nullptr;     // [C1]
  const void* ln_w = nullptr;   // [C1]
  const void* ln_b = nullptr;   // [C1]
  const void* w2 = nullptr;     // [C1, C2, 2, 2]
  const void* b2 = nullptr;     // [C2]
  const void* hyper = nullptr;  // [B, M, C2]
  void* out = nullptr;          // [B, M, 4h, 4w]
  bool bf16 = false;            // all tensors bfloat16 (else float32); math is fp32 either way
  float eps = 1e-6f;
  const MaskHeadFold* fold = nullptr;  // optional: the first ConvT from the folded form above (ignored with bf16)
  const float* prepacked = nullptr;  // optional: pack_mask_head's output for these weights (w1 .. b2 are then
                                     // not read); used in place when 64-byte aligned, else copied per call
};

// Floats pack_mask_head writes for (C, C1, C2); the block's layout does not depend on its address.
int64_t mask_head_packed_numel(int64_t C, int64_t C1, int64_t C2);
// Repacks a's ConvT weights / biases and LayerNorm parameters (a.bf16 says their dtype) into dst.
void pack_mask_head(const MaskHeadArgs& a, float* dst);

// All pointers contiguous, same dtype. Uses OpenMP over (batch, pixel tiles) and AVX-512F or AVX2+FMA
// GEMMs picked at run time (SAMFAST_SIMD=avx2 caps at AVX2, =baseline forces the portable path).
void mask_head_cpu(const MaskHeadArgs& a);

}  // namespace samfast::cpu
