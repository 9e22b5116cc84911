// Fused SAM decoder token->image attention with the projections folded into the token side
// (see samfast.ops.token_to_image_attention_reference). For each batch b and query row q:
//   out[b, q] = sum_n softmax_n(u[b, q] . (x[n] + k_add[n])) x[n]
// Keys are streamed in tiles with an online softmax (split over key ranges when the batch is small,
// then merged), so neither the [B, Q, N] scores nor x + k_add are ever written to memory.
#pragma once
#include <cstdint>
#include <functional>

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
//
// produce (optional): called as produce(b, n0, n1) from the worker threads right before rows [n0, n1) of
// batch b of x are read, each row exactly once; lets a kernel that writes x run fused with this one
// (rows still in cache when they are consumed). Requires Bx == B.
using RowProducer = std::function<void(int64_t b, int64_t n0, int64_t n1)>;
void token_to_image_cpu(const TokenToImageArgs& a, const RowProducer& produce = {});

// Shared with the other online-softmax kernels (token_to_image_ln_kernel.h):
// how many key ranges each batch's N keys are split into (tiles of `tile` keys; enough tasks for the threads);
int64_t key_range_splits(int64_t B, int64_t N, int64_t tile, bool producer);
// and the merge of the ranges' partials (task t = b * nsplit + s: running max M[t, Qp], sum L[t, Qp],
// accumulator Acc[t, Q, lda]): out[b, q, 0:C] = sum_s e^(M_s - max) Acc_s / sum_s e^(M_s - max) L_s.
// An `omp for` over (b, q): call it from inside a parallel region (or serially).
void merge_key_ranges(int64_t B, int64_t Q, int64_t Qp, int64_t nsplit, const float* M, const float* L,
                      const float* Acc, int64_t lda, int64_t C, float* out);

}  // namespace samfast::cpu
