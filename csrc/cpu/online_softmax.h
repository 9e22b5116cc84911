// One step of a streaming (online) softmax over key tiles, shared by the token->image kernels
// (token_to_image_kernel.cpp, token_to_image_ln_kernel.cpp). Always inlined, so each ISA-specific caller
// compiles its bookkeeping loops at its own vector width.
#pragma once
#include <algorithm>
#include <cstdint>

#include "cpu/mask_simd.h"
#include "cpu/small_gemm.h"

namespace samfast::cpu {

// st [kk, Qp]: one tile of scores, keys as rows and queries as columns. Per query column q: the running
// max m[q] and sum l[q] are updated, st becomes exp(st - m_new), and the accumulator rows acc[q, 0:lda]
// (q < Q) are rescaled by e^(m_old - m_new). mt, corr: [Qp] scratch.
SAMFAST_FLATTEN_BODY void online_softmax_tile(small_gemm::Isa isa, float* st, int64_t kk, int64_t Qp, int64_t Q,
                                              float* m, float* l, float* mt, float* corr, float* acc, int64_t lda) {
  std::copy(st, st + Qp, mt);
  for (int64_t j = 1; j < kk; ++j) {
    const float* r = st + j * Qp;
    for (int64_t q = 0; q < Qp; ++q) mt[q] = std::max(mt[q], r[q]);
  }
  for (int64_t q = 0; q < Qp; ++q) {
    const float m_new = std::max(m[q], mt[q]);
    corr[q] = m[q] - m_new;  // -inf on the first tile: exp -> 0 (acc and l are 0 then anyway)
    m[q] = m_new;
  }
  small_gemm::exp_row(isa, corr, Qp);
  for (int64_t j = 0; j < kk; ++j) {
    float* r = st + j * Qp;
    for (int64_t q = 0; q < Qp; ++q) r[q] -= m[q];
    small_gemm::exp_row(isa, r, Qp);
  }
  for (int64_t q = 0; q < Qp; ++q) l[q] *= corr[q];
  for (int64_t j = 0; j < kk; ++j) {
    const float* r = st + j * Qp;
    for (int64_t q = 0; q < Qp; ++q) l[q] += r[q];
  }
  for (int64_t q = 0; q < Q; ++q) {
    const float f = corr[q];
    if (f == 1.f) continue;  // running max unchanged (the common case after the first tiles)
    float* ar = acc + q * lda;
    for (int64_t c = 0; c < lda; ++c) ar[c] *= f;
  }
}

}  // namespace samfast::cpu
