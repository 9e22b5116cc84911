// Fused token->image attention (see token_to_image_kernel.h). Per (batch, key range) task, per tile of
// kKeys image tokens: K = x tile + k_add, S^T = K @ U^T, online softmax per query (running max m, sum l,
// rescaled accumulator), Acc += P @ x tile. Key ranges of one batch are merged at the end:
// out = sum_s e^(m_s - M) Acc_s / sum_s e^(m_s - M) l_s.
#include "cpu/token_to_image_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"
#include "cpu/online_softmax.h"
#include "cpu/small_gemm.h"

#ifdef SAMFAST_WITH_OPENMP
#include <omp.h>
#endif

namespace samfast::cpu {
namespace {

using namespace small_gemm;

constexpr int64_t kKeys = 72;  // image tokens per tile (multiple of 8; 3 image->token tiles when fused)

struct TaskBufs {
  AlignedFloats kb;   // [kKeys, Cp] keys tile x + k_add (zero padded columns)
  AlignedFloats xb;   // [kKeys, Cp] values tile, when C is not a multiple of 8 (padding)
  AlignedFloats st;   // [kKeys, Qp] scores^T -> probabilities^T
  AlignedFloats mt, corr;  // [Qp] tile max, rescale factors
};

// Keys [k0, k1) of batch b: running (m, l, acc) for every query row; UT: [Cp, Qp] = u[b]^T, acc: [Q, Cp].
// Scores are formed transposed (S^T = K @ U^T), so the softmax statistics run along contiguous rows and
// the PV product reads P through the transposed-A GEMM: no per-tile transposes.
// Compiled once per ISA (thin wrappers below) so the bookkeeping loops auto-vectorize at that width.
SAMFAST_FLATTEN_BODY void run_range_body(const TokenToImageArgs& a, const RowProducer& produce, const float* UT,
                                         int64_t Cp, int64_t Qp, int64_t b, int64_t k0, int64_t k1, float* m,
                                         float* l, float* acc, TaskBufs& buf, Isa isa) {
  const int64_t Q = a.Q, C = a.C;
  const float* X = a.x + (a.Bx == 1 ? 0 : b) * a.N * C;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::fill(m, m + Qp, neg_inf);
  std::fill(l, l + Qp, 0.f);
  std::fill(acc, acc + Q * Cp, 0.f);
  float* mt = buf.mt.p;
  float* corr = buf.corr.p;
  for (int64_t n0 = k0; n0 < k1; n0 += kKeys) {
    const int64_t kk = std::min(kKeys, k1 - n0);
    if (produce) produce(b, n0, n0 + kk);  // the rows are written just before they are read
    const float* xs = X + n0 * C;
    // values: x rows in place when they need no padding
    const float* V = xs;
    int64_t ldv = C;
    if (C != Cp) {
      for (int64_t j = 0; j < kk; ++j) std::memcpy(buf.xb.p + j * Cp, xs + j * C, C * sizeof(float));
      V = buf.xb.p;
      ldv = Cp;
    }
    // keys: x + k_add (or the values themselves)
    const float* Kt = V;
    int64_t ldk = ldv;
    if (a.k_add) {
      const float* ka = a.k_add + n0 * C;
      for (int64_t j = 0; j < kk; ++j) {
        float* kr = buf.kb.p + j * Cp;
        const float* xr = xs + j * C;
        const float* ar = ka + j * C;
        for (int64_t c = 0; c < C; ++c) kr[c] = xr[c] + ar[c];
      }
      Kt = buf.kb.p;
      ldk = Cp;
    }
    float* st = buf.st.p;
    std::fill(st, st + kk * Qp, 0.f);
    gemm(isa, Kt, ldk, kk, Cp, UT, Qp, Qp, st, Qp);  // S^T[kk, Qp]
    online_softmax_tile(isa, st, kk, Qp, Q, m, l, mt, corr, acc, Cp);
    gemm<true>(isa, st, Qp, Q, kk, V, ldv, Cp, acc, Cp);  // acc[Q, Cp] += P[Q, kk] @ V[kk, Cp]
  }
}

void run_range_base(const TokenToImageArgs& a, const RowProducer& pr, const float* UT, int64_t Cp, int64_t Qp,
                    int64_t b, int64_t k0, int64_t k1, float* m, float* l, float* acc, TaskBufs& buf) {
  run_range_body(a, pr, UT, Cp, Qp, b, k0, k1, m, l, acc, buf, Isa::Base);
}
#if SAMFAST_X86
SAMFAST_AVX2 void run_range_avx2(const TokenToImageArgs& a, const RowProducer& pr, const float* UT, int64_t Cp,
                                 int64_t Qp, int64_t b, int64_t k0, int64_t k1, float* m, float* l, float* acc,
                                 TaskBufs& buf) {
  run_range_body(a, pr, UT, Cp, Qp, b, k0, k1, m, l, acc, buf, Isa::Avx2);
}
SAMFAST_AVX512 void run_range_avx512(const TokenToImageArgs& a, const RowProducer& pr, const float* UT, int64_t Cp,
                                     int64_t Qp, int64_t b, int64_t k0, int64_t k1, float* m, float* l, float* acc,
                                     TaskBufs& buf) {
  run_range_body(a, pr, UT, Cp, Qp, b, k0, k1, m, l, acc, buf, Isa::Avx512);
}
#endif

void run_range(const TokenToImageArgs& a, const RowProducer& pr, const float* UT, int64_t Cp, int64_t Qp,
               int64_t b, int64_t k0, int64_t k1, float* m, float* l, float* acc, TaskBufs& buf, Isa isa) {
#if SAMFAST_X86
  if (isa == Isa::Avx512) return run_range_avx512(a, pr, UT, Cp, Qp, b, k0, k1, m, l, acc, buf);
  if (isa == Isa::Avx2) return run_range_avx2(a, pr, UT, Cp, Qp, b, k0, k1, m, l, acc, buf);
#endif
  run_range_base(a, pr, UT, Cp, Qp, b, k0, k1, m, l, acc, buf);
}

}  // namespace

int64_t key_range_splits(int64_t B, int64_t N, int64_t tile, bool producer) {
  const int64_t ntiles = (N + tile - 1) / tile;
#ifdef SAMFAST_WITH_OPENMP
  const int64_t threads = std::max(1, omp_get_max_threads());
#else
  const int64_t threads = 1;
#endif
  // Enough tasks for every thread (x2 for balance) when the batch alone does not provide them.
  // (x8 with a producer: its share of the work makes tasks coarse, so balance needs more of them)
  const int64_t per_thread = producer ? 8 : 2;
  return std::clamp<int64_t>((per_thread * threads + B - 1) / B, 1, std::max<int64_t>(ntiles, 1));
}

void merge_key_ranges(int64_t B, int64_t Q, int64_t Qp, int64_t nsplit, const float* M, const float* L,
                      const float* Acc, int64_t lda, int64_t C, float* out) {
#pragma omp for schedule(static)
  for (int64_t r = 0; r < B * Q; ++r) {
    const int64_t b = r / Q, i = r % Q;
    float mmax = -std::numeric_limits<float>::infinity();
    for (int64_t sp = 0; sp < nsplit; ++sp) mmax = std::max(mmax, M[(b * nsplit + sp) * Qp + i]);
    float* o = out + r * C;
    std::fill(o, o + C, 0.f);
    float lsum = 0.f;
    for (int64_t sp = 0; sp < nsplit; ++sp) {
      const int64_t t = b * nsplit + sp;
      if (L[t * Qp + i] == 0.f) continue;  // empty key range
      const float w = std::exp(M[t * Qp + i] - mmax);
      lsum += w * L[t * Qp + i];
      const float* ar = Acc + (t * Q + i) * lda;
      for (int64_t c = 0; c < C; ++c) o[c] += w * ar[c];
    }
    const float inv = 1.f / lsum;
    for (int64_t c = 0; c < C; ++c) o[c] *= inv;
  }
}

void token_to_image_cpu(const TokenToImageArgs& a, const RowProducer& produce) {
  if (produce && a.Bx != a.B)
    throw std::invalid_argument("token_to_image_cpu: a row producer needs per-batch image tokens (Bx == B)");
  if (a.B == 0 || a.Q == 0 || a.C == 0) return;
  const int64_t Q = a.Q, C = a.C, Cp = round_up(C, 8), Qp = round_up(Q, 8);
  const int64_t nsplit = key_range_splits(a.B, a.N, kKeys, bool(produce));
  const int64_t tiles_per = ((a.N + kKeys - 1) / kKeys + nsplit - 1) / nsplit;

  AlignedFloats UT, M, L, Acc;
  UT.alloc(a.B * Cp * Qp);  // u[b]^T, zero padded
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t q = 0; q < Q; ++q)
      for (int64_t c = 0; c < C; ++c) UT.p[(b * Cp + c) * Qp + q] = a.u[(b * Q + q) * C + c];
  M.alloc(a.B * nsplit * Qp);
  L.alloc(a.B * nsplit * Qp);
  Acc.alloc(a.B * nsplit * Q * Cp);
  const Isa isa = pick_isa();
  const int64_t tasks = a.B * nsplit;
#pragma omp parallel
  {
    TaskBufs buf;
    if (a.k_add) buf.kb.alloc(kKeys * Cp);
    if (C != Cp) buf.xb.alloc(kKeys * Cp);
    buf.st.alloc(kKeys * Qp);
    buf.mt.alloc(Qp);
    buf.corr.alloc(Qp);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t b = t / nsplit, sp = t % nsplit;
      const int64_t k0 = std::min(a.N, sp * tiles_per * kKeys), k1 = std::min(a.N, (sp + 1) * tiles_per * kKeys);
      run_range(a, produce, UT.p + b * Cp * Qp, Cp, Qp, b, k0, k1, M.p + t * Qp, L.p + t * Qp, Acc.p + t * Q * Cp,
                buf, isa);
    }
    merge_key_ranges(a.B, Q, Qp, nsplit, M.p, L.p, Acc.p, Cp, C, a.out);
  }
}

}  // namespace samfast::cpu
