// The second image-sized decoder pass from per-image projections (see proj_pass_kernel.h).
// Work is done on tiles of kP = 32 pixels held feature-major ([features, kP]): the per-image block is stored
// that way (proj_pass_image), so the head-block products and the P0 / P1 products are GEMMs whose wide side is
// the tile's pixels (register blocks of 32 columns), and the per-pixel softmaxes and statistics are plain
// loops across the tile that vectorize. The final attention's online softmax keeps, per task, the running max
// m, sum l and the transposed accumulator accT [rows, HUq] (rows: A7 part, then the Z features) per query.
#include "cpu/proj_pass_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"
#include "cpu/small_gemm.h"
#include "cpu/proj_tile.h"
#include "cpu/token_to_image_kernel.h"

namespace samfast::cpu {
namespace {

using namespace small_gemm;
using namespace proj_tile;

struct Bufs {
  AlignedFloats t;        // [3 HT + HUp, kP] head-block products (r0 A1 + A2, A3, A4, r1 r0 A5 + A6)
  AlignedFloats ab;       // [Di, kP] r0 A1 + A2, then r1 r0 A5 + A6
  AlignedFloats pt;       // [2 HT, kP] r0 P0 | P1
  AlignedFloats qv;       // [2 HT, kP] U pt
  AlignedFloats g0, g1;   // [W0, kP], [W1, kP]
  AlignedFloats sf;       // [HUq, kP] final scores
  AlignedFloats et;       // [kP, HUq] final scores transposed -> softmax weights
  AlignedFloats z;        // [Di + ZW, kP] A7 r1 r0 | r1 pt | r1 r0, r1
  AlignedFloats mt, corr;  // [HUq]
};

// Exact statistics of y1 for pixel n (rows whose expansion would cancel); p1: column i of the tile's P1 rows.
void exact_stats(const ProjPassArgs& a, const Geometry& g, int64_t b, int64_t n, const float* p1, int64_t i,
                 float& mu, float& r) {
  std::vector<float> p1row(g.HT);
  for (int64_t j = 0; j < g.HT; ++j) p1row[j] = p1[j * kP + i];
  float st[2];
  proj_exact_row(a.exact, b, n, a.p0 + (b * a.N + n) * g.HT, p1row.data(), st);
  mu = st[0];
  r = st[1];
}

// Pixels [n0, n1) (multiples of kP) of batch b: P1 / st1 rows and the running softmax state m, l, accT.
SAMFAST_FLATTEN_BODY void range_body(const ProjPassArgs& a, const Geometry& g, const ProjPrompt& pp, int64_t b,
                                     int64_t n0, int64_t n1, float* m, float* l, float* accT, Bufs& w, Isa isa) {
  const int64_t H = g.H, T = g.T, Tu = g.Tu, HT = g.HT, HU = g.HU, HUq = g.HUq, Di = g.Di, HT2 = 2 * HT;
  const float invC = 1.f / static_cast<float>(a.C);
  const float* s = pp.s;
  std::fill(m, m + HUq, -std::numeric_limits<float>::infinity());
  std::fill(l, l + HUq, 0.f);
  std::fill(accT, accT + g.rows * HUq, 0.f);
  const int64_t blk = a.ld_img * kP;  // floats per pixel block of the per-image array
  float *t1 = w.t.p, *t3 = t1 + HT * kP, *t4 = t3 + HT * kP, *t5 = t4 + HT * kP;
  float *pt = w.pt.p, *P1 = pt + HT * kP, *G0 = w.g0.p, *G1 = w.g1.p, *qv = w.qv.p;
  alignas(64) float r0[kP], r1[kP], rr0[kP], mu1[kP], y1sq[kP], mag[kP], d3[kP], d4[kP], quad[kP];
  for (int64_t nb = n0; nb < n1; nb += kP) {
    const float* A = a.img + (nb / kP) * blk;  // [7 Di + 8, kP]
    // the next block's rows are requested alongside this block's same rows (the pass is bound by reading them;
    // one burst of requests per block stalled on the miss buffers)
    const float* An = nb + kP < n1 ? A + blk : A;
    const float* e = A + kProjArrays * Di * kP;  // e1 .. e4 rows
    const float* st0 = a.st0 + (b * a.N + nb) * 2;
    for (int64_t i = 0; i < kP; ++i) r0[i] = st0[2 * i + 1];
    // r0 (A1 k) + A2 k as one product of r0 A1 + A2
    float* ab = w.ab.p;
    for (int64_t f = 0; f < Di; ++f) {
      for (int64_t k = 0; k < 4; ++k) prefetch2(An + (k * Di + f) * kP);  // A1 .. A4
      for (int64_t i = 0; i < kP; ++i) ab[f * kP + i] = r0[i] * A[f * kP + i] + A[(Di + f) * kP + i];
    }
    head_products(isa, g, pp.kq1, T, ab, t1, true);
    head_products(isa, g, pp.kv0, T, A + 2 * Di * kP, t3, true);
    head_products(isa, g, pp.kv1, T, A + 3 * Di * kP, t4, true);
    // r0 P0 -> pt[0:HT]
    transpose_tile(isa, a.p0 + (b * a.N + nb) * HT, HT, kP, HT, pt, kP);
    for (int64_t j = 0; j < HT; ++j)
      for (int64_t i = 0; i < kP; ++i) pt[j * kP + i] *= r0[i];
    std::fill(G0, G0 + g.W0 * kP, 0.f);
    gemm(isa, pp.w0, HT, g.W0, HT, pt, kP, kP, G0, kP);  // [W0, kP]
    // s1 = r0 (A1 k + c1) + r0 P0 M1 + A2 k + c2, then the per-head softmax over the tokens -> P1
    for (int64_t j = 0; j < HT; ++j) {
      const float *a1 = t1 + j * kP, *gm = G0 + j * kP;
      float* sr = P1 + j * kP;
      for (int64_t i = 0; i < kP; ++i) sr[i] = r0[i] * pp.c1[j] + a1[i] + gm[i] + pp.c2[j];
    }
    softmax_tokens(isa, P1, H, T, w.mt.p);
    std::fill(G1, G1 + g.W1 * kP, 0.f);
    gemm(isa, pp.w1, HT, g.W1, HT, P1, kP, kP, G1, kP);  // [W1, kP]
    // quadratic form p^T G p, p = [r0 P0; P1], through U (upper triangle) in bands of 16 rows
    upper_product(isa, pp.uq, HT2, pt, qv);
    std::fill(quad, quad + kP, 0.f);
    std::fill(d3, d3 + kP, 0.f);
    std::fill(d4, d4 + kP, 0.f);
    dot_rows(pt, qv, HT2, quad);
    dot_rows(pt, t3, HT, d3);  // r0 P0 . (R0c S Jx0)
    dot_rows(P1, t4, HT, d4);  // P1 . (R1c G0 Jx0)
    const float *v0 = G0 + (g.W0 - 8) * kP, *v1 = G1 + (g.W1 - 8) * kP;  // the vector rows
    const float *e1 = e, *e2 = e + kP, *e3 = e + 2 * kP, *e4 = e + 3 * kP;
    for (int64_t i = 0; i < kP; ++i) {
      const float ri = r0[i];
      const float sq = ri * ri * (e2[i] + 2.f * e3[i] + s[1]);
      const float lin = d3[i] + v0[kP + i] + e4[i] + s[2] + d4[i] + v1[2 * kP + i];
      y1sq[i] = sq + 2.f * ri * lin + 2.f * v0[2 * kP + i] + s[3] + 2.f * v1[kP + i] + quad[i];
      mag[i] = std::abs(sq) + 2.f * ri * (std::abs(d3[i]) + std::abs(v0[kP + i]) + std::abs(e4[i] + s[2]) +
                                         std::abs(d4[i]) + std::abs(v1[2 * kP + i])) +
               2.f * std::abs(v0[2 * kP + i]) + s[3] + 2.f * std::abs(v1[kP + i]) + std::abs(quad[i]);
      r1[i] = 1.f / std::sqrt(std::max(y1sq[i], 0.f) * invC + a.exact.eps);
      mu1[i] = (ri * (e1[i] + s[0]) + v0[i]) * invC + s[4] + v1[i];
    }
    for (int64_t i = 0; i < kP; ++i)
      if (!(y1sq[i] >= kCancel * mag[i]) || !std::isfinite(mag[i]) || a.force_exact)
        exact_stats(a, g, b, nb + i, P1, i, mu1[i], r1[i]);
    float* st1 = a.st1 + (b * a.N + nb) * 2;
    for (int64_t i = 0; i < kP; ++i) {
      st1[2 * i] = mu1[i];
      st1[2 * i + 1] = r1[i];
      rr0[i] = r1[i] * r0[i];
    }
    transpose_tile(isa, P1, kP, HT, kP, a.p1 + (b * a.N + nb) * HT, HT);
    // final attention scores sf [HUq, kP], q = h * Tu + u (rows past HU: 0)
    // r1 r0 (A5 q) + A6 q as one product of r1 r0 A5 + A6
    for (int64_t f = 0; f < Di; ++f) {
      for (int64_t k = 4; k < 7; ++k) prefetch2(An + (k * Di + f) * kP);  // A5 .. A7
      for (int64_t i = 0; i < kP; ++i) ab[f * kP + i] = rr0[i] * A[(4 * Di + f) * kP + i] + A[(5 * Di + f) * kP + i];
    }
    for (int64_t f = 0; f < kProjScalars; ++f) prefetch2(An + (7 * Di + f) * kP);
    head_products(isa, g, pp.kqf, Tu, ab, t5, false);
    float* sf = w.sf.p;
    const float *F0 = G0 + HT * kP, *F1 = G1;
    for (int64_t q = 0; q < HU; ++q) {
      const float *a5 = t5 + q * kP, *f0r = F0 + q * kP, *f1r = F1 + q * kP;
      float* sr = sf + q * kP;
      for (int64_t i = 0; i < kP; ++i)
        sr[i] = r1[i] * (r0[i] * pp.f0[q] + f0r[i] + f1r[i] + pp.f1[q]) + a5[i] + pp.f2[q];
    }
    std::fill(sf + HU * kP, sf + HUq * kP, 0.f);
    // online softmax over the pixels (transposed: et [kP, HUq]), per query
    float* et = w.et.p;
    transpose_tile(isa, sf, kP, HUq, kP, et, HUq);
    float* mt = w.mt.p;
    std::copy(et, et + HUq, mt);
    for (int64_t i = 1; i < kP; ++i)
      max_into(mt, et + i * HUq, HUq);
    float* corr = w.corr.p;
    for (int64_t q = 0; q < HUq; ++q) {  // lazy max: moved only when the tile's exceeds it by > kMaxSlack, so
      // the accumulators are rarely rescaled; the weights e^(s - m) stay below e^kMaxSlack (no overflow)
      const float m_new = mt[q] > m[q] + kMaxSlack ? mt[q] : m[q];
      corr[q] = m[q] - m_new;
      m[q] = m_new;
    }
    exp_row(isa, corr, HUq);
    for (int64_t i = 0; i < kP; ++i)
      for (int64_t q = 0; q < HUq; ++q) et[i * HUq + q] -= m[q];
    exp_row(isa, et, kP * HUq);
    for (int64_t q = 0; q < HUq; ++q) l[q] *= corr[q];
    for (int64_t i = 0; i < kP; ++i)
      for (int64_t q = 0; q < HUq; ++q) l[q] += et[i * HUq + q];
    bool rescale = false;
    for (int64_t q = 0; q < HUq; ++q) rescale |= corr[q] != 1.f;
    if (rescale) {  // the running max moved (mostly the first tiles)
      float* __restrict acc = accT;
      const float* __restrict cq = corr;
      for (int64_t rr = 0; rr < g.rows; ++rr)
        for (int64_t q = 0; q < HUq; ++q) acc[rr * HUq + q] *= cq[q];
    }
    // features: A7 r1 r0 (Di rows) | r1 pt (2 HT) | r1 r0 | r1 | 0 ...
    float* z = w.z.p;
    const float* a7 = A + 6 * Di * kP;
    for (int64_t f = 0; f < Di; ++f)
      for (int64_t i = 0; i < kP; ++i) z[f * kP + i] = a7[f * kP + i] * rr0[i];
    float* zz = z + Di * kP;
    for (int64_t j = 0; j < HT2; ++j)
      for (int64_t i = 0; i < kP; ++i) zz[j * kP + i] = pt[j * kP + i] * r1[i];
    std::fill(zz + HT2 * kP, zz + (HT2 + 8) * kP, 0.f);
    std::copy(rr0, rr0 + kP, zz + HT2 * kP);
    std::copy(r1, r1 + kP, zz + (HT2 + 1) * kP);
    // accT[Di:, :] += Z et ; accT[h*dh + d, h*Tu + 0..7] += A7s[h*dh + d, :] et[:, h*Tu ..]
    gemm(isa, zz, kP, g.ZW, kP, et, HUq, g.HUp, accT + Di * HUq, HUq);
    for (int64_t h = 0; h < H; ++h)
      gemm(isa, z + h * g.dh * kP, kP, g.dh, kP, et + h * Tu, HUq, 8, accT + h * g.dh * HUq + h * Tu, HUq);
  }
}

void range_base(const ProjPassArgs& a, const Geometry& g, const ProjPrompt& pp, int64_t b, int64_t n0, int64_t n1,
                float* m, float* l, float* accT, Bufs& w) {
  range_body(a, g, pp, b, n0, n1, m, l, accT, w, Isa::Base);
}
#if SAMFAST_X86
SAMFAST_AVX2 void range_avx2(const ProjPassArgs& a, const Geometry& g, const ProjPrompt& pp, int64_t b, int64_t n0,
                             int64_t n1, float* m, float* l, float* accT, Bufs& w) {
  range_body(a, g, pp, b, n0, n1, m, l, accT, w, Isa::Avx2);
}
SAMFAST_AVX512 void range_avx512(const ProjPassArgs& a, const Geometry& g, const ProjPrompt& pp, int64_t b,
                                 int64_t n0, int64_t n1, float* m, float* l, float* accT, Bufs& w) {
  range_body(a, g, pp, b, n0, n1, m, l, accT, w, Isa::Avx512);
}
#endif

}  // namespace

int64_t ProjDims::prompt_floats() const {
  const int64_t kb = al16(H * kProjSlots * dh);
  return 5 * kb + al16(w0_rows() * ht()) + al16(w1_rows() * ht()) + al16(4 * ht() * ht()) + al16(ht() * ht()) +
         al16(8 * ht()) + 2 * al16(ht()) + 3 * al16(hup()) + 16;
}

ProjPrompt proj_prompt_views(const ProjDims& d, float* p) {
  ProjPrompt v;
  const int64_t kb = al16(d.H * kProjSlots * d.dh);
  v.kq1 = p; p += kb;
  v.kv0 = p; p += kb;
  v.kv1 = p; p += kb;
  v.kqf = p; p += kb;
  v.w0 = p; p += al16(d.w0_rows() * d.ht());
  v.w1 = p; p += al16(d.w1_rows() * d.ht());
  v.uq = p; p += al16(4 * d.ht() * d.ht());
  v.c1 = p; p += al16(d.ht());
  v.c2 = p; p += al16(d.ht());
  v.f0 = p; p += al16(d.hup());
  v.f1 = p; p += al16(d.hup());
  v.f2 = p; p += al16(d.hup());
  v.s = p; p += 16;
  v.kq0 = p; p += kb;
  v.u0 = p; p += al16(d.ht() * d.ht());
  v.w8 = p;
  return v;
}

void proj_pass_cpu(const ProjPassArgs& a) {
  const Geometry g(a.d);
  if (a.B == 0) return;
  const int64_t nblk = a.N / kP, nsplit = key_range_splits(a.B, a.N, kP, true);
  const int64_t per = (nblk + nsplit - 1) / nsplit, tasks = a.B * nsplit, HUq = g.HUq;
  AlignedFloats M, L, Acc;
  M.alloc(tasks * HUq, false);
  L.alloc(tasks * HUq, false);
  Acc.alloc(tasks * g.rows * HUq, false);
  const Isa isa = pick_isa();
#pragma omp parallel
  {
    Bufs w;
    w.t.alloc((3 * g.HT + g.HUp) * kP, false);
    w.ab.alloc(g.Di * kP, false);
    w.pt.alloc(2 * g.HT * kP, false);
    w.qv.alloc(2 * g.HT * kP, false);
    w.g0.alloc(g.W0 * kP, false);
    w.g1.alloc(g.W1 * kP, false);
    w.sf.alloc(HUq * kP, false);
    w.et.alloc(kP * HUq, false);
    w.z.alloc(g.rows * kP, false);
    w.mt.alloc(std::max(kP, HUq), false);
    w.corr.alloc(HUq, false);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t b = t / nsplit, sp = t % nsplit;
      const int64_t n0 = std::min(nblk, sp * per) * kP, n1 = std::min(nblk, (sp + 1) * per) * kP;
      float *m = M.p + t * HUq, *l = L.p + t * HUq, *acc = Acc.p + t * g.rows * HUq;
      const ProjPrompt pp = proj_prompt_views(a.d, const_cast<float*>(a.prompts) + b * a.d.prompt_floats());
#if SAMFAST_X86
      if (isa == Isa::Avx512) range_avx512(a, g, pp, b, n0, n1, m, l, acc, w);
      else if (isa == Isa::Avx2) range_avx2(a, g, pp, b, n0, n1, m, l, acc, w);
      else
#endif
        range_base(a, g, pp, b, n0, n1, m, l, acc, w);
    }
    // merge the ranges of each batch: out = sum_s e^(m_s - max) acc_s / sum_s e^(m_s - max) l_s
#pragma omp for schedule(static)
    for (int64_t r = 0; r < a.B * HUq; ++r) {
      const int64_t b = r / HUq, q = r % HUq;
      float* out = a.acc + b * g.rows * HUq;
      if (q >= g.HU) {
        for (int64_t rr = 0; rr < g.rows; ++rr) out[rr * HUq + q] = 0.f;
        continue;
      }
      float mmax = -std::numeric_limits<float>::infinity();
      for (int64_t sp = 0; sp < nsplit; ++sp) mmax = std::max(mmax, M.p[(b * nsplit + sp) * HUq + q]);
      float lsum = 0.f;
      for (int64_t rr = 0; rr < g.rows; ++rr) out[rr * HUq + q] = 0.f;
      for (int64_t sp = 0; sp < nsplit; ++sp) {
        const int64_t t = b * nsplit + sp;
        if (L.p[t * HUq + q] == 0.f) continue;  // empty range
        const float wgt = std::exp(M.p[t * HUq + q] - mmax);
        lsum += wgt * L.p[t * HUq + q];
        const float* acc = Acc.p + t * g.rows * HUq;
        for (int64_t rr = 0; rr < g.rows; ++rr) out[rr * HUq + q] += wgt * acc[rr * HUq + q];
      }
      const float inv = 1.f / lsum;
      for (int64_t rr = 0; rr < g.rows; ++rr) out[rr * HUq + q] *= inv;
    }
  }
}

}  // namespace samfast::cpu
