// Layer 0's image->token probabilities and the LayerNorm statistics of its output from the per-image projections
// (proj_stats0_cpu, see proj_pass_kernel.h), and the exact per-row recomputation from x0 (proj_exact_row).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/proj_pass_kernel.h"
#include "cpu/proj_tile.h"

namespace samfast::cpu {
namespace {

using namespace small_gemm;
using namespace proj_tile;

// One 32-pixel block of batch b for proj_stats0_cpu. buf: [4 HT, kP] scratch (scores / P0, head products,
// U0 P0, the w8 rows).
SAMFAST_FLATTEN_BODY void stats0_body(const ProjStats0Args& a, const Geometry& g, const ProjPrompt& pp, int64_t b,
                                      int64_t nb, float* buf, Isa isa) {
  const int64_t H = g.H, T = g.T, HT = g.HT, Di = g.Di;
  const float invC = 1.f / static_cast<float>(a.C);
  const float* A = a.img + (nb / kP) * a.ld_img * kP;  // [A8 | A0 | e5 e6 e7, kP]
  const float* e = A + 2 * Di * kP;
  const float *e5 = e, *e6 = e + kP, *e7 = e + 2 * kP;
  float *P0 = buf, *t8 = buf + HT * kP, *qv = t8 + HT * kP, *w8 = qv + HT * kP;
  const float* An = nb + kP < a.N ? A + a.ld_img * kP : A;  // the next block's rows are requested along the way
  for (int64_t f = Di; f < 2 * Di; ++f) prefetch2(An + f * kP);
  head_products(isa, g, pp.kq0, T, A + Di * kP, P0, true);  // scores q0 . k / sqrt(dh)
  for (int64_t f = 0; f < Di; ++f) prefetch2(An + f * kP);
  for (int64_t f = 2 * Di; f < a.ld_img; ++f) prefetch2(An + f * kP);
  alignas(64) float mx[kP];
  softmax_tokens(isa, P0, H, T, mx);
  head_products(isa, g, pp.kv0, T, A, t8, true);  // R0 rows . Jx0
  upper_product(isa, pp.u0, HT, P0, qv);
  std::fill(w8, w8 + 8 * kP, 0.f);
  gemm(isa, pp.w8, HT, 8, HT, P0, kP, kP, w8, kP);
  alignas(64) float d8[kP], quad[kP];
  std::fill(d8, d8 + kP, 0.f);
  std::fill(quad, quad + kP, 0.f);
  dot_rows(P0, t8, HT, d8);
  dot_rows(P0, qv, HT, quad);
  const float* s = pp.s;
  float* st0 = a.st0 + (b * a.N + nb) * 2;
  for (int64_t i = 0; i < kP; ++i) {
    const float ysq = e5[i] + 2.f * d8[i] + 2.f * e7[i] + quad[i] + 2.f * w8[kP + i] + s[5];
    const float mag =
        e5[i] + 2.f * std::abs(d8[i]) + 2.f * std::abs(e7[i]) + std::abs(quad[i]) + 2.f * std::abs(w8[kP + i]) + s[5];
    st0[2 * i] = e6[i] + w8[i] + s[6];
    st0[2 * i + 1] = 1.f / std::sqrt(std::max(ysq, 0.f) * invC + a.exact.eps);
    mx[i] = (ysq >= kCancel * mag && std::isfinite(mag) && !a.force_exact) ? 0.f : 1.f;
  }
  float* p0 = a.p0 + (b * a.N + nb) * HT;
  transpose_tile(isa, P0, kP, HT, kP, p0, HT);
  for (int64_t i = 0; i < kP; ++i)
    if (mx[i] != 0.f) proj_exact_row(a.exact, b, nb + i, p0 + i * HT, nullptr, st0 + 2 * i);
}

void stats0_base(const ProjStats0Args& a, const Geometry& g, const ProjPrompt& pp, int64_t b, int64_t nb, float* buf) {
  stats0_body(a, g, pp, b, nb, buf, Isa::Base);
}
#if SAMFAST_X86
SAMFAST_AVX2 void stats0_avx2(const ProjStats0Args& a, const Geometry& g, const ProjPrompt& pp, int64_t b, int64_t nb,
                              float* buf) {
  stats0_body(a, g, pp, b, nb, buf, Isa::Avx2);
}
SAMFAST_AVX512 void stats0_avx512(const ProjStats0Args& a, const Geometry& g, const ProjPrompt& pp, int64_t b,
                                  int64_t nb, float* buf) {
  stats0_body(a, g, pp, b, nb, buf, Isa::Avx512);
}
#endif

}  // namespace

void proj_stats0_rows(const ProjStats0Args& a, int64_t b, int64_t n0, int64_t n1) {
  const Geometry g(a.d);
  const Isa isa = pick_isa();
  thread_local AlignedFloats buf;  // per-thread scratch, sized for the largest call seen on this thread
  thread_local int64_t cap = 0;
  const int64_t need = 3 * g.HT * kP + 8 * kP;
  if (need > cap) buf.alloc(cap = need, false);
  const ProjPrompt pp = proj_prompt_views(a.d, const_cast<float*>(a.prompts) + b * a.d.prompt_floats());
  for (int64_t nb = n0; nb < n1; nb += kP) {
#if SAMFAST_X86
    if (isa == Isa::Avx512) stats0_avx512(a, g, pp, b, nb, buf.p);
    else if (isa == Isa::Avx2) stats0_avx2(a, g, pp, b, nb, buf.p);
    else
#endif
      stats0_base(a, g, pp, b, nb, buf.p);
  }
}

void proj_stats0_cpu(const ProjStats0Args& a) {
  const int64_t nblk = a.N / kP, total = a.B * nblk;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < total; ++t) proj_stats0_rows(a, t / nblk, (t % nblk) * kP, (t % nblk + 1) * kP);
}

void proj_exact_row(const ProjExact& e, int64_t b, int64_t n, const float* p0, const float* p1, float* stats,
                    float* x1) {
  const int64_t C = e.C, HT = e.HT;
  std::vector<double> y(C);
  const float* x = e.x0 + n * C;
  for (int64_t c = 0; c < C; ++c) y[c] = double(x[c]) + e.b0[c];
  for (int64_t j = 0; j < HT; ++j) {
    const float* rr = e.r0 + (b * HT + j) * C;
    for (int64_t c = 0; c < C; ++c) y[c] += double(p0[j]) * rr[c];
  }
  auto moments = [&](double& mean, double& rstd) {
    double s = 0.0, s2 = 0.0;
    for (int64_t c = 0; c < C; ++c) s += y[c];
    mean = s / double(C);
    for (int64_t c = 0; c < C; ++c) s2 += (y[c] - mean) * (y[c] - mean);
    rstd = 1.0 / std::sqrt(s2 / double(C) + double(e.eps));
  };
  double mean, rstd;
  moments(mean, rstd);
  if (p1) {  // xb = LN0(y0), then y1 = xb + R1^T p1 + b1
    for (int64_t c = 0; c < C; ++c) y[c] = (y[c] - mean) * rstd * e.g0[c] + e.beta0[c] + e.b1[c];
    for (int64_t j = 0; j < HT; ++j) {
      const float* rr = e.r1 + (b * HT + j) * C;
      for (int64_t c = 0; c < C; ++c) y[c] += double(p1[j]) * rr[c];
    }
    moments(mean, rstd);
    if (x1)
      for (int64_t c = 0; c < C; ++c) x1[c] = static_cast<float>((y[c] - mean) * rstd * e.g1[c] + e.beta1[c]);
  }
  stats[0] = static_cast<float>(mean);
  stats[1] = static_cast<float>(rstd);
}

void proj_materialize_x1(const ProjExact& e, int64_t B, const float* p0, const float* p1, float* x1) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < B * e.N; ++r) {
    float st[2];
    proj_exact_row(e, r / e.N, r % e.N, p0 + r * e.HT, p1 + r * e.HT, st, x1 + r * e.C);
  }
}

}  // namespace samfast::cpu
