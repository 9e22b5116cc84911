// Token->image attention over LayerNorm(cached image + rank-HT update) rows (see token_to_image_ln_kernel.h).
// Per (batch, key range) task, per tile of kKeys rows:
//   S = r * (P @ G^T + alpha)                          [kk, Q]   (P: the tile's p rows)
//   S[:, head h] += (r Kc + Kpe)[:, h] @ q_h            per head: [kk, dh] @ [dh, Tp]
//   online softmax per column; W = pi * r (row scale)
//   acc[j] += {W^T Vc_h (per head), W^T P, column sums of W}
// then the key ranges are merged (merge_key_ranges).
#include "cpu/token_to_image_ln_kernel.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"
#include "cpu/online_softmax.h"
#include "cpu/small_gemm.h"

namespace samfast::cpu {
namespace {

using namespace small_gemm;

constexpr int64_t kKeys = 72;  // rows per tile (as token_to_image_cpu: 3 image->token tiles when fused)

struct LnBufs {
  AlignedFloats s;        // [kKeys, Q] scores -> probabilities -> W
  AlignedFloats w;        // [kKeys, Di] r Kc + Kpe
  AlignedFloats mt, corr, colsum;  // [Q]
};

SAMFAST_FLATTEN_BODY void ln_range_body(const TokenToImageLnArgs& a, const RowProducer& produce, int64_t b,
                                        int64_t k0, int64_t k1, float* m, float* l, float* acc, int64_t Wa,
                                        LnBufs& buf, Isa isa) {
  const int64_t H = a.H, Tp = a.Tp, Q = H * Tp, dh = a.dh, Di = H * dh, HT = a.HT;
  const float* qT = a.q + b * Di * Tp;
  const float* gT = a.gT + b * HT * Q;
  const float* alpha = a.alpha + b * Q;
  std::fill(m, m + Q, -std::numeric_limits<float>::infinity());
  std::fill(l, l + Q, 0.f);
  std::fill(acc, acc + Q * Wa, 0.f);
  float *S = buf.s.p, *Wt = buf.w.p, *colsum = buf.colsum.p;
  for (int64_t n0 = k0; n0 < k1; n0 += kKeys) {
    const int64_t kk = std::min(kKeys, k1 - n0);
    if (produce) produce(b, n0, n0 + kk);
    const float* P = a.p + (b * a.N + n0) * HT;
    const float* st = a.stats + (b * a.N + n0) * 2;
    const float* KV = a.kv + n0 * a.ldkv;
    // The next tile's kv rows (per-image, from DRAM) are requested while this tile computes, a few rows per head
    // step below: the pass stalled on reading them row by row (~12 GB/s) with the compute not overlapped.
    const int64_t kn = n0 + kKeys < k1 ? std::min(kKeys, k1 - n0 - kKeys) : 0, per_step = (kn + 2 * H - 1) / (2 * H);
    const float* KVn = KV + kKeys * a.ldkv;
    auto prefetch_next = [&](int64_t step, int64_t col, int64_t width) {  // rows of step, columns [col, col + width)
      for (int64_t j = step * per_step; j < std::min(kn, (step + 1) * per_step); ++j)
        prefetch_rows(KVn + j * a.ldkv + col, width);
    };
    // scores
    std::fill(S, S + kk * Q, 0.f);
    gemm(isa, P, HT, kk, HT, gT, Q, Q, S, Q);
    for (int64_t j = 0; j < kk; ++j) {
      const float r = st[2 * j + 1];
      float* s = S + j * Q;
      for (int64_t c = 0; c < Q; ++c) s[c] = r * (s[c] + alpha[c]);
      const float* kc = KV + j * a.ldkv + a.kc;
      const float* kpe = KV + j * a.ldkv + a.kpe;
      float* w = Wt + j * Di;
      for (int64_t c = 0; c < Di; ++c) w[c] = r * kc[c] + kpe[c];
      if (j < kn) prefetch_rows(KVn + j * a.ldkv + a.vc, Di);
    }
    for (int64_t h = 0; h < H; ++h) {
      prefetch_next(h, a.kc, Di);
      prefetch_next(H + h, a.kc, Di);
      gemm(isa, Wt + h * dh, Di, kk, dh, qT + h * dh * Tp, Tp, Tp, S + h * Tp, Q);
    }
    online_softmax_tile(isa, S, kk, Q, Q, m, l, buf.mt.p, buf.corr.p, acc, Wa);
    // W = pi * r; the value sums
    std::fill(colsum, colsum + Q, 0.f);
    for (int64_t j = 0; j < kk; ++j) {
      const float r = st[2 * j + 1];
      float* s = S + j * Q;
      for (int64_t c = 0; c < Q; ++c) colsum[c] += (s[c] *= r);
    }
    for (int64_t c = 0; c < Q; ++c) acc[c * Wa + dh + HT] += colsum[c];
    for (int64_t h = 0; h < H; ++h) {
      prefetch_next(h, a.kpe, Di);
      prefetch_next(H + h, a.kpe, Di);
      gemm<true>(isa, S + h * Tp, Q, Tp, kk, KV + a.vc + h * dh, a.ldkv, dh, acc + h * Tp * Wa, Wa);
    }
    gemm<true>(isa, S, Q, Q, kk, P, HT, HT, acc + dh, Wa);
  }
}

void ln_range_base(const TokenToImageLnArgs& a, const RowProducer& pr, int64_t b, int64_t k0, int64_t k1, float* m,
                   float* l, float* acc, int64_t Wa, LnBufs& buf) {
  ln_range_body(a, pr, b, k0, k1, m, l, acc, Wa, buf, Isa::Base);
}
#if SAMFAST_X86
SAMFAST_AVX2 void ln_range_avx2(const TokenToImageLnArgs& a, const RowProducer& pr, int64_t b, int64_t k0, int64_t k1,
                                float* m, float* l, float* acc, int64_t Wa, LnBufs& buf) {
  ln_range_body(a, pr, b, k0, k1, m, l, acc, Wa, buf, Isa::Avx2);
}
SAMFAST_AVX512 void ln_range_avx512(const TokenToImageLnArgs& a, const RowProducer& pr, int64_t b, int64_t k0,
                                    int64_t k1, float* m, float* l, float* acc, int64_t Wa, LnBufs& buf) {
  ln_range_body(a, pr, b, k0, k1, m, l, acc, Wa, buf, Isa::Avx512);
}
#endif

}  // namespace

int64_t token_to_image_ln_out_width(int64_t dh, int64_t HT) { return round_up(dh + HT + 1, 8); }

void token_to_image_ln_cpu(const TokenToImageLnArgs& a, const RowProducer& produce) {
  if (a.B == 0 || a.N == 0 || a.H == 0 || a.Tp == 0) return;
  const int64_t Q = a.H * a.Tp, Di = a.H * a.dh, Wa = token_to_image_ln_out_width(a.dh, a.HT);
  const int64_t nsplit = key_range_splits(a.B, a.N, kKeys, bool(produce));
  const int64_t tiles_per = ((a.N + kKeys - 1) / kKeys + nsplit - 1) / nsplit;
  const int64_t tasks = a.B * nsplit;
  AlignedFloats M, L, Acc;
  M.alloc(tasks * Q, false);
  L.alloc(tasks * Q, false);
  Acc.alloc(tasks * Q * Wa, false);
  const Isa isa = pick_isa();
#pragma omp parallel
  {
    LnBufs buf;
    buf.s.alloc(kKeys * Q, false);
    buf.w.alloc(kKeys * Di, false);
    buf.mt.alloc(Q, false);
    buf.corr.alloc(Q, false);
    buf.colsum.alloc(Q, false);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t b = t / nsplit, sp = t % nsplit;
      const int64_t k0 = std::min(a.N, sp * tiles_per * kKeys), k1 = std::min(a.N, (sp + 1) * tiles_per * kKeys);
      float *m = M.p + t * Q, *l = L.p + t * Q, *acc = Acc.p + t * Q * Wa;
#if SAMFAST_X86
      if (isa == Isa::Avx512) {
        ln_range_avx512(a, produce, b, k0, k1, m, l, acc, Wa, buf);
        continue;
      }
      if (isa == Isa::Avx2) {
        ln_range_avx2(a, produce, b, k0, k1, m, l, acc, Wa, buf);
        continue;
      }
#endif
      ln_range_base(a, produce, b, k0, k1, m, l, acc, Wa, buf);
    }
    merge_key_ranges(a.B, Q, Q, nsplit, M.p, L.p, Acc.p, Wa, Wa, a.out);
  }
}

}  // namespace samfast::cpu
