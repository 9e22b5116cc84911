// Fused SAM decoder token->image attention with the projections folded into the token side
// (see samfast.ops.token_to_image_attention_reference). For each batch b and query row q:
//   out[b, q] = sum_n softmax_n(u[b, q] . (x[n] + k_add[n])) x[n]
// Keys are streamed in tiles with an online softmax (split over key ranges when the batch is small,
// then merged), so neither the [B, Q, N] scores nor x + k_add are ever written to memory.
#pragma once
#include <cstdint>

namespace samfast::cpu {

struct TokenToImageArgs {
  int64_t B = 0, Bx = 1, Q = 0, N = 0, C = 0;
  const float* u = nullptr;      // [B, Q, C]   folded, pre-scaled queries (Q = heads * tokens)
  const float* x = nullptr;      // [Bx, N, C]  image tokens: the values; keys are x + k_add (Bx = 1 or B)
  const float* k_add = nullptr;  // [N, C] or nullptr
  float* out = nullptr;          // [B, Q, C]
};

// All pointers contiguous float32; N > 0. OpenMP over (batch, key ranges); AVX-512F / AVX2+FMA GEMMs
// picked at run time (SAMFAST_SIMD=avx2 caps at AVX2, =baseline forces the portable path).
void token_to_image_cpu(const TokenToImageArgs& a);

}  // namespace samfast::cpu
