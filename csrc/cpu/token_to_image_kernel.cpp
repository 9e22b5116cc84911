// Fused token->image attention (see token_to_image_kernel.h). Per (batch, key range) task, per tile of
// kKeys image tokens: Xt = x tile (zero padded to Cp), Kt = (Xt + k_add)^T, S = U @ Kt, online softmax
// row by row (running max m, sum l, rescaled accumulator), Acc += P @ Xt. Key ranges of one batch are
// merged at the end: out = sum_s e^(m_s - M) Acc_s / sum_s e^(m_s - M) l_s.
#include "cpu/token_to_image_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"
#include "cpu/small_gemm.h"

#ifdef SAMFAST_WITH_OPENMP
#include <omp.h>
#endif

namespace samfast::cpu {
namespace {

using namespace small_gemm;

constexpr int64_t kKeys = 64;  // image tokens per tile (multiple of 8)

struct TaskBufs {
  AlignedFloats xt;  // [kKeys, Cp] values tile
  AlignedFloats kt;  // [Cp, kKeys] keys tile, transposed
  AlignedFloats s;   // [Q, kKeys] scores -> probabilities
};

// Keys [k0, k1) of batch b: running (m, l, acc) for every query row, acc: [Q, Cp].
void run_range(const TokenToImageArgs& a, const float* U, int64_t Cp, int64_t b, int64_t k0, int64_t k1, float* m,
               float* l, float* acc, TaskBufs& buf, Isa isa) {
  const int64_t Q = a.Q, C = a.C;
  const float* X = a.x + (a.Bx == 1 ? 0 : b) * a.N * C;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::fill(m, m + Q, neg_inf);
  std::fill(l, l + Q, 0.f);
  std::fill(acc, acc + Q * Cp, 0.f);
  for (int64_t n0 = k0; n0 < k1; n0 += kKeys) {
    const int64_t kk = std::min(kKeys, k1 - n0);
    float* xt = buf.xt.p;
    float* kt = buf.kt.p;
    for (int64_t j = 0; j < kk; ++j) {
      const float* xr = X + (n0 + j) * C;
      std::memcpy(xt + j * Cp, xr, C * sizeof(float));  // padding columns C..Cp stay zero
      const float* ka = a.k_add ? a.k_add + (n0 + j) * C : nullptr;
      for (int64_t c = 0; c < C; ++c) kt[c * kKeys + j] = ka ? xr[c] + ka[c] : xr[c];
    }
    for (int64_t c = 0; c < C; ++c)  // keys past the end of a short tile score 0 and are masked below
      for (int64_t j = kk; j < kKeys; ++j) kt[c * kKeys + j] = 0.f;
    float* S = buf.s.p;
    std::fill(S, S + Q * kKeys, 0.f);
    gemm(isa, U, Cp, Q, Cp, kt, kKeys, kKeys, S, kKeys);
    for (int64_t i = 0; i < Q; ++i) {
      float* s = S + i * kKeys;
      float mt = s[0];
      for (int64_t j = 1; j < kk; ++j) mt = std::max(mt, s[j]);
      const float m_new = std::max(m[i], mt);
      for (int64_t j = 0; j < kKeys; ++j) s[j] -= m_new;
      exp_row(isa, s, kKeys);
      float sum = 0.f;
      for (int64_t j = 0; j < kk; ++j) sum += s[j];
      for (int64_t j = kk; j < kKeys; ++j) s[j] = 0.f;
      const float corr = std::exp(m[i] - m_new);  // 0 on the first tile (m = -inf)
      if (corr != 1.f) {
        float* ar = acc + i * Cp;
        for (int64_t c = 0; c < Cp; ++c) ar[c] *= corr;
      }
      l[i] = l[i] * corr + sum;
      m[i] = m_new;
    }
    gemm(isa, S, kKeys, Q, kk, xt, Cp, Cp, acc, Cp);
  }
}

}  // namespace

void token_to_image_cpu(const TokenToImageArgs& a) {
  if (a.B == 0 || a.Q == 0 || a.C == 0) return;
  const int64_t Q = a.Q, C = a.C, Cp = round_up(C, 8);
  const int64_t ntiles = (a.N + kKeys - 1) / kKeys;
#ifdef SAMFAST_WITH_OPENMP
  const int64_t threads = std::max(1, omp_get_max_threads());
#else
  const int64_t threads = 1;
#endif
  // Enough tasks for every thread (x2 for balance) when the batch alone does not provide them.
  const int64_t nsplit = std::clamp<int64_t>((2 * threads + a.B - 1) / a.B, 1, ntiles);
  const int64_t tiles_per = (ntiles + nsplit - 1) / nsplit;

  AlignedFloats U, M, L, Acc;
  U.alloc(a.B * Q * Cp);  // zero padded columns
  for (int64_t r = 0; r < a.B * Q; ++r) std::memcpy(U.p + r * Cp, a.u + r * C, C * sizeof(float));
  M.alloc(a.B * nsplit * Q);
  L.alloc(a.B * nsplit * Q);
  Acc.alloc(a.B * nsplit * Q * Cp);
  const Isa isa = pick_isa();
  const int64_t tasks = a.B * nsplit;
#pragma omp parallel
  {
    TaskBufs buf;
    buf.xt.alloc(kKeys * Cp);
    buf.kt.alloc(Cp * kKeys);
    buf.s.alloc(Q * kKeys);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t b = t / nsplit, sp = t % nsplit;
      const int64_t k0 = std::min(a.N, sp * tiles_per * kKeys), k1 = std::min(a.N, (sp + 1) * tiles_per * kKeys);
      run_range(a, U.p + b * Q * Cp, Cp, b, k0, k1, M.p + t * Q, L.p + t * Q, Acc.p + t * Q * Cp, buf, isa);
    }
    // merge the key ranges of each (batch, query row)
#pragma omp for schedule(static)
    for (int64_t r = 0; r < a.B * Q; ++r) {
      const int64_t b = r / Q, i = r % Q;
      float mmax = -std::numeric_limits<float>::infinity();
      for (int64_t sp = 0; sp < nsplit; ++sp) mmax = std::max(mmax, M.p[(b * nsplit + sp) * Q + i]);
      float* o = a.out + r * C;
      std::fill(o, o + C, 0.f);
      float lsum = 0.f;
      for (int64_t sp = 0; sp < nsplit; ++sp) {
        const int64_t t = b * nsplit + sp;
        if (L.p[t * Q + i] == 0.f) continue;  // empty key range
        const float w = std::exp(M.p[t * Q + i] - mmax);
        lsum += w * L.p[t * Q + i];
        const float* ar = Acc.p + (t * Q + i) * Cp;
        for (int64_t c = 0; c < C; ++c) o[c] += w * ar[c];
      }
      const float inv = 1.f / lsum;
      for (int64_t c = 0; c < C; ++c) o[c] *= inv;
    }
  }
}

}  // namespace samfast::cpu
