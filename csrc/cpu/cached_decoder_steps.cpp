// Token-side steps of the whole-decoder kernel (see cached_decoder_steps.h).
#include "cpu/cached_decoder_steps.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/token_to_image_ln_kernel.h"

namespace samfast::cpu::decoder_steps {

using namespace small_gemm;

void linear(const Ctx& c, const Slot& L, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
            bool relu) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * ldy, L.b, L.outp * sizeof(float));
  constexpr int64_t kRows = 48;
  const int64_t rb = (rows + kRows - 1) / kRows, np = L.panels();
  const bool par = rows * L.in * L.outp >= kLinearParallelMacs;
#pragma omp parallel for collapse(2) schedule(static) if (par)
  for (int64_t i = 0; i < rb; ++i)
    for (int64_t p = 0; p < np; ++p) {
      const int64_t r0 = i * kRows, width = L.panel_width(p);
      gemm(c.isa, x + r0 * ldx, ldx, std::min(kRows, rows - r0), L.in, L.panel(p), width, width,
           y + r0 * ldy + p * kPanel, ldy);
    }
  if (relu)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < L.out; ++k) y[r * ldy + k] = std::max(y[r * ldy + k], 0.f);
}

void gemm_wt(const Ctx& c, const Slot& L, const float* A, int64_t lda, int64_t R, int64_t k0, int64_t K, int64_t col0,
             int64_t ncols, float* C, int64_t ldc) {
  for (int64_t col = col0; col < col0 + ncols;) {
    const int64_t p = col / kPanel, off = col % kPanel, width = L.panel_width(p);
    const int64_t n = std::min(col0 + ncols - col, width - off);
    gemm(c.isa, A, lda, R, K, L.panel(p) + k0 * width + off, width, n, C + (col - col0), ldc);
    col += n;
  }
}

void add_norm(const Ctx& c, float* q, const float* a, int64_t rows, const Slot& n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = q + r * c.C;
    if (a) add(c.isa, row, a + r * c.C, row, c.C);
    layer_norm_row(c.isa, row, c.C, c.C, n.w, n.b, c.eps, row);
  }
}

void self_attention(const Ctx& c, const AttnP& a, const float* qin, const float* kin, const float* vin, int64_t T,
                    float* out, float* scratch /* [4, B*T, C] */) {
  const int64_t R = c.B * T, C = c.C, dh = C / c.H;
  float *q = scratch, *k = q + R * C, *v = k + R * C, *o = v + R * C;
  linear(c, a.q, qin, C, R, q, C);
  linear(c, a.k, kin, C, R, k, C);
  linear(c, a.v, vin, C, R, v, C);
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  std::vector<float> s(T);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const float* qr = q + (b * T + t) * C + h * dh;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t t2 = 0; t2 < T; ++t2) {
          const float* kr = k + (b * T + t2) * C + h * dh;
          float acc = 0.f;
          for (int64_t d = 0; d < dh; ++d) acc += qr[d] * kr[d];
          s[t2] = acc * scale;
          m = std::max(m, s[t2]);
        }
        float sum = 0.f;
        for (int64_t t2 = 0; t2 < T; ++t2) sum += (s[t2] = std::exp(s[t2] - m));
        float* orow = o + (b * T + t) * C + h * dh;
        std::fill(orow, orow + dh, 0.f);
        for (int64_t t2 = 0; t2 < T; ++t2) {
          const float p = s[t2] / sum;
          const float* vr = v + (b * T + t2) * C + h * dh;
          for (int64_t d = 0; d < dh; ++d) orow[d] += p * vr[d];
        }
      }
  linear(c, a.o, o, C, R, out, C);
}

void t2i_cached(const Ctx& c, const AttnP& a, const float* qt, int64_t T, const float* k0, const float* v0,
                int64_t N, float* out, float* qh /* [B*T, Di] */, float* o /* [B*T, Di] */) {
  const int64_t R = c.B * T, Di = c.Di, dh = Di / c.H;
  linear(c, a.q, qt, c.C, R, qh, Di);
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  constexpr int64_t kRows = 16;
  const int64_t nchunk = (R + kRows - 1) / kRows;
#pragma omp parallel
  {
    AlignedFloats s, q2;
    s.alloc(kRows * N, false);
    q2.alloc(kRows * dh, false);
#pragma omp for collapse(2) schedule(static)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t ch = 0; ch < nchunk; ++ch) {
        const int64_t r0 = ch * kRows, rr = std::min(kRows, R - r0);
        for (int64_t i = 0; i < rr; ++i)
          for (int64_t d = 0; d < dh; ++d) q2.p[i * dh + d] = qh[(r0 + i) * Di + h * dh + d] * scale;
        std::fill(s.p, s.p + rr * N, 0.f);
        gemm(c.isa, q2.p, dh, rr, dh, k0 + h * dh * N, N, N, s.p, N);
        for (int64_t i = 0; i < rr; ++i) {
          softmax_row(c.isa, s.p + i * N, N);
          std::fill(o + (r0 + i) * Di + h * dh, o + (r0 + i) * Di + (h + 1) * dh, 0.f);
        }
        gemm(c.isa, s.p, N, rr, N, v0 + h * N * dh, dh, dh, o + r0 * Di + h * dh, Di);
      }
  }
  linear(c, a.o, o, Di, R, out, c.C);
}

void t2i_fold(const Ctx& c, const AttnP& a, const float* qt, int64_t T, T2iBufs& w) {
  const int64_t B = c.B, C = c.C, H = c.H, Di = c.Di, dh = Di / H;
  linear(c, a.q, qt, C, B * T, w.qh, Di);
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  std::fill(w.u.p, w.u.p + B * H * T * C, 0.f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      gemm(c.isa, w.qh + b * T * Di + h * dh, Di, T, dh, a.k.w + h * dh * C, C, C, w.u.p + (b * H + h) * T * C, C);
  for (int64_t i = 0; i < B * H * T * C; ++i) w.u.p[i] *= scale;
}

void t2i_attend(const Ctx& c, int64_t T, const float* x, int64_t Bx, const float* pe, int64_t N, T2iBufs& w,
                const RowProducer& produce) {
  TokenToImageArgs ta;
  ta.B = c.B; ta.Bx = Bx; ta.Q = c.H * T; ta.N = N; ta.C = c.C;
  ta.u = w.u.p; ta.x = x; ta.k_add = pe; ta.out = w.z.p;
  token_to_image_cpu(ta, produce);
}

void t2i_unfold(const Ctx& c, const AttnP& a, int64_t T, T2iBufs& w, float* out /* [B*T, C] */,
                const float* extra, int64_t Tx, int64_t ldx) {
  const int64_t B = c.B, C = c.C, H = c.H, Di = c.Di, dh = Di / H, R = B * T;
  for (int64_t r = 0; r < R; ++r) std::memcpy(w.o + r * Di, a.v.b, Di * sizeof(float));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      gemm_wt(c, a.v, w.z.p + (b * H + h) * T * C, C, T, 0, C, h * dh, dh, w.o + b * T * Di + h * dh, Di);
  if (extra)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t d = 0; d < dh; ++d)
            w.o[(b * T + t) * Di + h * dh + d] += extra[((b * H + h) * Tx + t) * ldx + d];
  linear(c, a.o, w.o, Di, R, out, C);
}

void center_rows(const float* src, int64_t rows, int64_t C, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {  // the mean in double: a float32 running sum leaves rows with a large mean
    double mean = 0.0;                  // off-centre by ~|mean| 2^-24 sqrt(C) (review, sixth session)
    for (int64_t k = 0; k < C; ++k) mean += src[r * C + k];
    mean /= static_cast<double>(C);
    for (int64_t k = 0; k < C; ++k) dst[r * C + k] = static_cast<float>(static_cast<double>(src[r * C + k]) - mean);
  }
}

void t2i_ln(const Ctx& c, const AttnP& a, const float* obc, const Slot& norm0, const float* Rc, const float* qt,
            int64_t T, T2iBufs& w, const float* p0, const float* st0, const float* kv, int64_t N,
            const RowProducer& produce, float* out /* [B*T, C] */) {
  const int64_t B = c.B, C = c.C, H = c.H, Di = c.Di, dh = Di / H, HT = H * T, Tp = round_up(T, 8), Q = H * Tp;
  const int64_t Wa = token_to_image_ln_out_width(dh, HT);
  t2i_fold(c, a, qt, T, w);  // qh = q_proj(qt); u[(b*H + h)*T + t] = Wk_h^T q / sqrt(dh)
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  AlignedFloats qT, uT, gT, alpha, res;
  qT.alloc(B * Di * Tp);
  uT.alloc(C * Q);
  gT.alloc(B * HT * Q);
  alpha.alloc(B * Q);
  res.alloc(B * Q * Wa, false);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t d = 0; d < dh; ++d)
          qT.p[(b * Di + h * dh + d) * Tp + t] = w.qh[(b * T + t) * Di + h * dh + d] * scale;
        const float* u = w.u.p + ((b * H + h) * T + t) * C;
        for (int64_t k = 0; k < C; ++k) uT.p[k * Q + h * Tp + t] = u[k] * norm0.w[k];
      }
    gemm(c.isa, Rc + b * HT * C, C, HT, C, uT.p, Q, Q, gT.p + b * HT * Q, Q);  // G^T = R^c u~^T
    gemm(c.isa, obc, C, 1, C, uT.p, Q, Q, alpha.p + b * Q, Q);
  }
  TokenToImageLnArgs ta;
  ta.B = B; ta.N = N; ta.H = H; ta.Tp = Tp; ta.dh = dh; ta.HT = HT;
  ta.q = qT.p; ta.gT = gT.p; ta.alpha = alpha.p;
  ta.kv = kv; ta.ldkv = kKvBlocks * Di; ta.kc = 0; ta.kpe = Di; ta.vc = 2 * Di;
  ta.p = p0; ta.stats = st0; ta.out = res.p;
  token_to_image_ln_cpu(ta, produce);
  // Y_j = gamma * (R^cT B_j + ob^c s_j) + beta into z rows (b*H + h)*T + t; o = bv + Wv_h Y_j + A_j; out = o_proj(o)
  float* z = w.z.p;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const float* rj = res.p + (b * Q + h * Tp) * Wa;
      float* zr = z + (b * H + h) * T * C;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < C; ++k) zr[t * C + k] = obc[k] * rj[t * Wa + dh + HT];
      gemm(c.isa, rj + dh, Wa, T, HT, Rc + b * HT * C, C, C, zr, C);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < C; ++k) zr[t * C + k] = zr[t * C + k] * norm0.w[k] + norm0.b[k];
    }
  t2i_unfold(c, a, T, w, out, res.p, Tp, Wa);  // + A_j (res rows b * Q + h * Tp + t)
}

ImageToTokenArgs i2t_prepare(const Ctx& c, const AttnP& a, const Slot& norm, const float* x, int64_t Bx,
                             const float* pe, const float* q0, int64_t N, const float* k_tok, const float* v_tok,
                             int64_t T, float* x_out, I2tBufs& w) {
  const int64_t B = c.B, C = c.C, H = c.H, Di = c.Di, dh = Di / H, R = B * T, HT = H * T;
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  float *kh = w.kh, *vh = w.vh;
  linear(c, a.k, k_tok, C, R, kh, Di);
  linear(c, a.v, v_tok, C, R, vh, Di);
  const int64_t Cq = q0 ? Di : C;
  std::fill(w.u.p, w.u.p + B * Cq * HT, 0.f);
  std::fill(w.cb.p, w.cb.p + B * HT, 0.f);
  if (q0) {  // u[b, h*dh + d, t*H + h] = kh[b, t, h*dh + d] / sqrt(dh), also given as ut = kh / sqrt(dh)
    for (int64_t i = 0; i < R * Di; ++i) w.ut.p[i] = kh[i] * scale;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t d = 0; d < dh; ++d)
            w.u.p[(b * Di + h * dh + d) * HT + t * H + h] = w.ut.p[(b * T + t) * Di + h * dh + d];
  } else {  // ut[b, t*H + h] = Wq_h^T kh[b, t, h]; u = ut^T / sqrt(dh); cb = bq_h . kh / sqrt(dh)
    std::fill(w.ut.p, w.ut.p + B * HT * C, 0.f);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        gemm(c.isa, kh + b * T * Di + h * dh, Di, T, dh, a.q.w + h * dh * C, C, C, w.ut.p + (b * HT + h) * C, H * C);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < HT; ++j)
        for (int64_t k = 0; k < C; ++k) w.u.p[(b * C + k) * HT + j] = w.ut.p[(b * HT + j) * C + k] * scale;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
          float acc = 0.f;
          for (int64_t d = 0; d < dh; ++d) acc += a.q.b[h * dh + d] * kh[(b * T + t) * Di + h * dh + d];
          w.cb.p[b * HT + t * H + h] = acc * scale;
        }
  }
  // r[b, t*H + h] = Wo_h vh[b, t, h]
  std::fill(w.r.p, w.r.p + B * HT * C, 0.f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      gemm_wt(c, a.o, vh + b * T * Di + h * dh, Di, T, h * dh, dh, 0, C, w.r.p + (b * HT + h) * C, H * C);
  ImageToTokenArgs ia;
  ia.B = B; ia.Bq = q0 ? 1 : Bx; ia.Bx = Bx; ia.N = N; ia.Cq = Cq; ia.C = C; ia.H = H; ia.T = T;
  ia.q_in = q0 ? q0 : x; ia.q_add = q0 ? nullptr : pe;
  ia.u = w.u.p; ia.cb = w.cb.p; ia.r = w.r.p; ia.out_bias = a.o.b; ia.residual = x;
  ia.ln_w = norm.w; ia.ln_b = norm.b; ia.out = x_out; ia.eps = c.eps;
  if (q0) ia.k_heads = w.ut.p;  // u is block diagonal: per-head scores
  return ia;
}

namespace {
#if SAMFAST_X86
// out[b, n, c0 : c0 + 8] for n = n0 .. n0 + 7: 8x8 blocks of f + d transposed in registers.
SAMFAST_AVX2 void add_transpose_rows_avx2(const float* f, const float* d, int64_t C, int64_t N, int64_t n0,
                                          float* out) {
  for (int64_t c0 = 0; c0 < C; c0 += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i)
      r[i] = _mm256_add_ps(_mm256_loadu_ps(f + (c0 + i) * N + n0), _mm256_loadu_ps(d + (c0 + i) * N + n0));
    transpose8_avx2(r);
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + (n0 + j) * C + c0, r[j]);
  }
}
#endif
}  // namespace

void add_transpose(Isa isa, const float* features, const float* dense, int64_t B, int64_t C, int64_t N, float* xd) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n0 = 0; n0 < N; n0 += 8) {
      const float* d = dense + b * C * N;
      float* out = xd + b * N * C;
#if SAMFAST_X86
      if (isa != Isa::Base) {
        add_transpose_rows_avx2(features, d, C, N, n0, out);
        continue;
      }
#endif
      (void)isa;
      for (int64_t n = n0; n < n0 + 8; ++n)
        for (int64_t ch = 0; ch < C; ++ch) out[n * C + ch] = features[ch * N + n] + d[ch * N + n];
    }
}

void mlp3(const Ctx& c, const Slot* L, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
          float* h1, float* h2) {
  linear(c, L[0], x, ldx, rows, h1, L[0].outp, true);
  linear(c, L[1], h1, L[0].outp, rows, h2, L[1].outp, true);
  linear(c, L[2], h2, L[1].outp, rows, y, ldy);
}

}  // namespace samfast::cpu::decoder_steps
