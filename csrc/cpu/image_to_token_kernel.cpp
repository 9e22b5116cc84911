// Fused image->token attention + residual + LayerNorm (see image_to_token_kernel.h).
// Per tile of kTile image rows: S = Q @ U + cb (scores, [rows, HTp], columns t*H + h), per-head
// softmax in place (vectorized across the heads),
// O = residual + out_bias + P @ R ([rows, Cp]), LayerNorm row by row into `out`.
// U / R / cb are repacked once per call with their column counts padded to multiples of 8
// (padding is zero, so padded score columns multiply zero rows of R and padded O columns are ignored).
#include "cpu/image_to_token_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"
#include "cpu/small_gemm.h"

namespace samfast::cpu {
namespace {

using namespace small_gemm;

constexpr int64_t kTile = 24;  // image rows per tile (4 AVX2 register blocks of 6 rows, 2 AVX-512 ones of 12)

// ---- driver --------------------------------------------------------------------------------

// s: one row of scores [T * H (+ padding to HTp)], column t*H + h; softmax over t for each head h.
void softmax_heads_base(float* s, int64_t H, int64_t T) {
  for (int64_t h = 0; h < H; ++h) {
    float m = s[h];
    for (int64_t t = 1; t < T; ++t) m = std::max(m, s[t * H + h]);
    float sum = 0.f;
    for (int64_t t = 0; t < T; ++t) sum += (s[t * H + h] = std::exp(s[t * H + h] - m));
    const float inv = 1.f / sum;
    for (int64_t t = 0; t < T; ++t) s[t * H + h] *= inv;
  }
}

#if SAMFAST_X86
SAMFAST_AVX2 void softmax_heads8_avx2(float* s, int64_t T) {
  __m256 m = _mm256_loadu_ps(s);
  for (int64_t t = 1; t < T; ++t) m = _mm256_max_ps(m, _mm256_loadu_ps(s + 8 * t));
  __m256 sum = _mm256_setzero_ps();
  for (int64_t t = 0; t < T; ++t) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + 8 * t), m));
    _mm256_storeu_ps(s + 8 * t, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.f), sum);
  for (int64_t t = 0; t < T; ++t) _mm256_storeu_ps(s + 8 * t, _mm256_mul_ps(_mm256_loadu_ps(s + 8 * t), inv));
}

// Block-diagonal scores of one row for H = 8: s[t*8 + h] += q[h*dh : (h+1)*dh] . k[t, h*dh : (h+1)*dh], t < T.
// kp: the keys as [T/8 chunks][8 heads][dh][8 tokens] (zero past T): per head an FMA chain over d whose 8
// lanes are the chunk's tokens (the same products, in the same order, as the dense GEMM over u), then an
// 8x8 transpose gives each token's 8 head scores as one vector (the score layout).
SAMFAST_AVX2 void scores_heads8_avx2(const float* q, int64_t dh, const float* kp, int64_t T, float* s) {
  for (int64_t c0 = 0; c0 < T; c0 += 8) {
    const float* kc = kp + c0 * 8 * dh;
    __m256 acc[8];
#pragma GCC unroll 8
    for (int h = 0; h < 8; ++h) acc[h] = _mm256_setzero_ps();
    // d outer, heads inner: 8 independent FMA chains (one chain at a time would wait on the FMA latency)
    for (int64_t d = 0; d < dh; ++d) {
#pragma GCC unroll 8
      for (int h = 0; h < 8; ++h)
        acc[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + h * dh + d), _mm256_load_ps(kc + (h * dh + d) * 8), acc[h]);
    }
    transpose8_avx2(acc);
    for (int64_t t = c0; t < std::min(T, c0 + 8); ++t)
      _mm256_storeu_ps(s + t * 8, _mm256_add_ps(_mm256_loadu_ps(s + t * 8), acc[t - c0]));
  }
}
#endif

void softmax_heads(Isa isa, float* s, int64_t H, int64_t T, int64_t HTp) {
#if SAMFAST_X86
  if (isa != Isa::Base && H == 8) return softmax_heads8_avx2(s, T);
  if (isa != Isa::Base) {  // vector exp over the row, per-head max / sum in scalar code
    for (int64_t h = 0; h < H; ++h) {
      float m = s[h];
      for (int64_t t = 1; t < T; ++t) m = std::max(m, s[t * H + h]);
      for (int64_t t = 0; t < T; ++t) s[t * H + h] -= m;
    }
    for (int64_t j = H * T; j < HTp; ++j) s[j] = 0.f;
    exp_row(isa, s, HTp);
    for (int64_t h = 0; h < H; ++h) {
      float sum = 0.f;
      for (int64_t t = 0; t < T; ++t) sum += s[t * H + h];
      const float inv = 1.f / sum;
      for (int64_t t = 0; t < T; ++t) s[t * H + h] *= inv;
    }
    return;
  }
#endif
  (void)HTp;
  softmax_heads_base(s, H, T);
}

struct Packed {
  int64_t HT = 0, HTp = 0, Cp = 0;
  AlignedFloats u;   // [B, Cq, HTp]
  AlignedFloats cb;  // [B, HTp]
  AlignedFloats r;   // [B, HT, Cp]
  AlignedFloats ob;  // [Cp] out_bias, zero padded
  AlignedFloats kp;  // k_heads as [B][T/8 chunks][8 heads][dh][8 tokens] (set when the per-head scores run)
  int64_t kp_batch = 0;
};

struct TileBufs {
  AlignedFloats q;  // [kTile, Cq] q_in + q_add
  AlignedFloats s;  // [kTile, HTp] scores -> probabilities
  AlignedFloats o;  // [kTile, Cp] residual + attention output
};

void run_tile(const ImageToTokenArgs& a, const Packed& pk, int64_t b, int64_t n0, int64_t R, TileBufs& buf,
              Isa isa) {
  const int64_t Cq = a.Cq, C = a.C, T = a.T, HT = pk.HT, HTp = pk.HTp, Cp = pk.Cp;
  const float* Q = a.q_in + ((a.Bq == 1 ? 0 : b) * a.N + n0) * Cq;
  if (a.q_add) {
    const float* qa = a.q_add + n0 * Cq;
    add(isa, Q, qa, buf.q.p, R * Cq);
    Q = buf.q.p;
  }
  // scores
  float* S = buf.s.p;
  for (int64_t i = 0; i < R; ++i) std::memcpy(S + i * HTp, pk.cb.p + b * HTp, HTp * sizeof(float));
#if SAMFAST_X86
  if (pk.kp.p) {
    for (int64_t i = 0; i < R; ++i)
      scores_heads8_avx2(Q + i * Cq, Cq / 8, pk.kp.p + b * pk.kp_batch, T, S + i * HTp);
  } else
#endif
  {
    const float* U = pk.u.p + b * Cq * HTp;
    gemm(isa, Q, Cq, R, Cq, U, HTp, HTp, S, HTp);
  }
  // per-head softmax over the T tokens; columns are token-major (j = t*H + h), so with H = 8 each
  // token's 8 head scores are one AVX2 vector and the softmax runs across heads in parallel
  for (int64_t i = 0; i < R; ++i) softmax_heads(isa, S + i * HTp, a.H, T, HTp);
  if (a.p_out)
    for (int64_t i = 0; i < R; ++i) std::memcpy(a.p_out + (b * a.N + n0 + i) * HT, S + i * HTp, HT * sizeof(float));
  // O = residual + out_bias + P @ R
  float* O = buf.o.p;
  const float* X = a.residual + ((a.Bx == 1 ? 0 : b) * a.N + n0) * C;
  for (int64_t i = 0; i < R; ++i) {
    float* o = O + i * Cp;
    const float* xr = X + i * C;
    add(isa, xr, pk.ob.p, o, C);
    for (int64_t c = C; c < Cp; ++c) o[c] = 0.f;
  }
  const float* Rm = pk.r.p + b * HT * Cp;
  gemm(isa, S, HTp, R, HT, Rm, Cp, Cp, O, Cp);
  // LayerNorm
  float* out = a.out + (b * a.N + n0) * C;
  float* stats = a.ln_stats ? a.ln_stats + (b * a.N + n0) * 2 : nullptr;
  for (int64_t i = 0; i < R; ++i)
    layer_norm_row(isa, O + i * Cp, C, Cp, a.ln_w, a.ln_b, a.eps, out + i * C, stats ? stats + 2 * i : nullptr);
}

}  // namespace

struct ImageToTokenRows::Impl {
  ImageToTokenArgs a;
  Packed pk;
  Isa isa;
};

ImageToTokenRows::ImageToTokenRows(const ImageToTokenArgs& a) : impl_(new Impl) {
  Impl& m = *impl_;
  m.a = a;
  m.isa = pick_isa();
  Packed& pk = m.pk;
  pk.HT = a.H * a.T;
  pk.HTp = round_up(std::max<int64_t>(pk.HT, 1), 8);
  pk.Cp = round_up(a.C, 8);
  pk.u.alloc(a.B * a.Cq * pk.HTp);
  pk.cb.alloc(a.B * pk.HTp);
  pk.r.alloc(a.B * pk.HT * pk.Cp);
  pk.ob.alloc(pk.Cp);
  for (int64_t b = 0; b < a.B; ++b) {
    for (int64_t c = 0; c < a.Cq; ++c)
      std::memcpy(pk.u.p + (b * a.Cq + c) * pk.HTp, a.u + (b * a.Cq + c) * pk.HT, pk.HT * sizeof(float));
    std::memcpy(pk.cb.p + b * pk.HTp, a.cb + b * pk.HT, pk.HT * sizeof(float));
    for (int64_t j = 0; j < pk.HT; ++j)
      std::memcpy(pk.r.p + (b * pk.HT + j) * pk.Cp, a.r + (b * pk.HT + j) * a.C, a.C * sizeof(float));
  }
  std::memcpy(pk.ob.p, a.out_bias, a.C * sizeof(float));
  if (a.k_heads && a.H == 8 && a.Cq % 8 == 0 && m.isa != Isa::Base) {
    const int64_t dh = a.Cq / 8, nc = (a.T + 7) / 8;
    pk.kp_batch = nc * 8 * dh * 8;
    pk.kp.alloc(a.B * pk.kp_batch);  // zeroed: tokens past T
    for (int64_t b = 0; b < a.B; ++b)
      for (int64_t t = 0; t < a.T; ++t)
        for (int64_t h = 0; h < 8; ++h)
          for (int64_t d = 0; d < dh; ++d)
            pk.kp.p[b * pk.kp_batch + (((t / 8) * 8 + h) * dh + d) * 8 + t % 8] =
                a.k_heads[(b * a.T + t) * a.Cq + h * dh + d];
  }
}

ImageToTokenRows::~ImageToTokenRows() = default;

void ImageToTokenRows::run(int64_t b, int64_t n0, int64_t n1) const {
  const Impl& m = *impl_;
  // per-thread scratch, sized for the largest call seen on this thread
  thread_local TileBufs buf;
  thread_local int64_t cap_q = 0, cap_s = 0, cap_o = 0;
  const int64_t nq = kTile * m.a.Cq, ns = kTile * m.pk.HTp, no = kTile * m.pk.Cp;
  if (m.a.q_add && nq > cap_q) buf.q.alloc(cap_q = nq);
  if (ns > cap_s) buf.s.alloc(cap_s = ns);
  if (no > cap_o) buf.o.alloc(cap_o = no);
  for (int64_t t = n0; t < n1; t += kTile) run_tile(m.a, m.pk, b, t, std::min(kTile, n1 - t), buf, m.isa);
}

void image_to_token_cpu(const ImageToTokenArgs& a) {
  if (a.B == 0 || a.N == 0 || a.C == 0) return;
  const ImageToTokenRows rows(a);
  const int64_t ntile = (a.N + kTile - 1) / kTile, total = a.B * ntile;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < total; ++t) {
    const int64_t b = t / ntile, n0 = (t % ntile) * kTile;
    rows.run(b, n0, std::min(a.N, n0 + kTile));
  }
}

}  // namespace samfast::cpu
