// Whole mask-decoder forward on a cached image (see cached_decoder_kernel.h).
// Token-side rows are r = b * T + t ([B * T, C] row-major); per-head slices of a [rows, Di] projection
// are columns h * dh .. h * dh + dh. Image-sized work goes to the existing fused kernels.
#include "cpu/cached_decoder_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/cached_decoder_params.h"
#include "cpu/image_to_token_kernel.h"
#include "cpu/mask_head_kernel.h"
#include "cpu/phase_timer.h"
#include "cpu/small_gemm.h"
#include "cpu/token_to_image_kernel.h"
#include "cpu/token_to_image_ln_kernel.h"
#include "tensor_ref.h"

namespace samfast::cpu {
namespace {

using namespace small_gemm;

// ---- token-side building blocks -------------------------------------------------------------

struct Ctx {
  Isa isa;
  int64_t B, C, H, Di;
  float eps;
};

// y[rows, 0:out] = x[rows, in] @ W^T + b (y row stride ldy >= outp; columns out..outp get 0), ReLU optional.
void linear(const Ctx& c, const Slot& L, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
            bool relu = false) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * ldy, L.b, L.outp * sizeof(float));
  constexpr int64_t kRows = 48;
  const int64_t rb = (rows + kRows - 1) / kRows, np = L.panels();
  const bool par = rows * L.in * L.outp >= (int64_t{1} << 18);
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

// C[R, ncols] += A[R, K] @ W^T[k0:k0+K, col0:col0+ncols] of a linear (panel by panel; col0, ncols % 8 == 0).
void gemm_wt(const Ctx& c, const Slot& L, const float* A, int64_t lda, int64_t R, int64_t k0, int64_t K, int64_t col0,
             int64_t ncols, float* C, int64_t ldc) {
  for (int64_t col = col0; col < col0 + ncols;) {
    const int64_t p = col / kPanel, off = col % kPanel, width = L.panel_width(p);
    const int64_t n = std::min(col0 + ncols - col, width - off);
    gemm(c.isa, A, lda, R, K, L.panel(p) + k0 * width + off, width, n, C + (col - col0), ldc);
    col += n;
  }
}

// q = LayerNorm(q + a) row by row ([rows, C]).
void add_norm(const Ctx& c, float* q, const float* a, int64_t rows, const Slot& n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = q + r * c.C;
    if (a) add(c.isa, row, a + r * c.C, row, c.C);
    layer_norm_row(c.isa, row, c.C, c.C, n.w, n.b, c.eps, row);
  }
}

// Token self attention (internal dim C): out[B*T, C] = o_proj(softmax(q k^T / sqrt(dh)) v).
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

// Layer 0 token->image attention against the cached per-head k0 [H, dh, N] / v0 [H, N, dh]:
// out [B*T, C] = o_proj(softmax(q_h k0_h / sqrt(dh)) v0_h).
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

// Token->image attention with the k / v projections folded into the token side (fast_decoder._t2i), in three
// steps so the image-sized middle one can be fused with the kernel that writes x:
//   t2i_fold:   u[b, h*T + t] = Wk_h^T q_h[b, t] / sqrt(dh)     (q_h = q_proj(qt))
//   t2i_attend: z = token_to_image_cpu(u, x, pe)               (keys x + pe, values x)
//   t2i_unfold: out = o_proj(Wv_h z + bv)
struct T2iBufs {
  float* qh;  // [B*T, Di]
  float* o;   // [B*T, Di]
  AlignedFloats& u;
  AlignedFloats& z;
};

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
                const RowProducer& produce = {}) {
  TokenToImageArgs ta;
  ta.B = c.B; ta.Bx = Bx; ta.Q = c.H * T; ta.N = N; ta.C = c.C;
  ta.u = w.u.p; ta.x = x; ta.k_add = pe; ta.out = w.z.p;
  token_to_image_cpu(ta, produce);
}

// extra (optional, t2i_ln): [B, H, Tx, ldx], row (b, h, t)'s first dh values are added to head h's v_proj
// output of token t before o_proj.
void t2i_unfold(const Ctx& c, const AttnP& a, int64_t T, T2iBufs& w, float* out /* [B*T, C] */,
                const float* extra = nullptr, int64_t Tx = 0, int64_t ldx = 0) {
  const int64_t B = c.B, C = c.C, H = c.H, Di = c.Di, dh = Di / H, R = B * T;
  for (int64_t r = 0; r < R; ++r) std::memcpy(w.o + r * Di, a.v.b, Di * sizeof(float));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      gemm_wt(c, a.v, w.z.p + (b * H + h) * T * C, C, T, 0, C, h * dh, dh, w.o + b * T * Di + h * dh, Di);
  if (extra)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t d = 0; d < dh; ++d) w.o[(b * T + t) * Di + h * dh + d] += extra[((b * H + h) * Tx + t) * ldx + d];
  linear(c, a.o, w.o, Di, R, out, C);
}

// Blocks of the per-image kv block of g (cached_decoder_fold_image): Kc | Kpe | Vc, Di columns each.
constexpr int64_t kKvBlocks = 3;

// dst[r, :] = src[r, :] - mean(src[r, :]) for `rows` rows of C.
void center_rows(const float* src, int64_t rows, int64_t C, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    float mean = 0.f;
    for (int64_t k = 0; k < C; ++k) mean += src[r * C + k];
    mean /= static_cast<float>(C);
    for (int64_t k = 0; k < C; ++k) dst[r * C + k] = src[r * C + k] - mean;
  }
}

// Layer 1's token->image attention over layer 0's image->token output without reading it (token_to_image_ln_kernel.h):
// x_n = LN(y_n) with y_n = img_n + R0^T p0_n + ob0, from the per-image kv block (Kc | Kpe | Vc, [N, 3 Di]) and the
// rows' p0 / {mean, rstd}, which the fused layer-0 image->token pass (`produce`) writes just before they are read.
// Rc: layer 0's image->token rows R0, centred [B, HT, C]; obc: its out_proj bias, centred [C] (center_rows).
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

// Image->token attention + residual + norm4 (fast_decoder._i2t): the token-side operands u / cb / r for
// image_to_token_cpu, which then writes x_out [B, N, C] (may be x itself when Bx == B).
// cached: layer 0, q_proj(x + pe) precomputed as q0 [N, Di] (u block diagonal over heads, cb = 0).
struct I2tBufs {
  float* kh;  // [B*T, Di]
  float* vh;  // [B*T, Di]
  AlignedFloats &ut, &u, &cb, &r;
};

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

// Mask prompts: xd[b, n, c] = features[c, n] + dense[b, c, n] (token-major image side; C, N % 8 == 0).
// Reading 8 channel rows at a time keeps the strided accesses in few cache sets (a scalar transpose over
// 16 channel rows, N floats apart, ran at ~1 ms for 64 x 64 x 256).
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

// Three-layer ReLU MLP (IoU head, hypernetworks) on `rows` rows of stride ldx -> y [rows, ldy].
void mlp3(const Ctx& c, const Slot* L, const float* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
          float* h1, float* h2) {
  linear(c, L[0], x, ldx, rows, h1, L[0].outp, true);
  linear(c, L[1], h1, L[0].outp, rows, h2, L[1].outp, true);
  linear(c, L[2], h2, L[1].outp, rows, y, ldy);
}

}  // namespace

void cached_decoder_cpu(const CachedDecoderArgs& a) {
  const DecoderDims& d = a.d;
  check_decoder_dims(d);
  if (a.B == 0) return;
  const DecoderParams p = bind_params(d, a.packed);
  SAMFAST_PHASE_BEGIN("cached_decoder_cpu");
  const Ctx c{pick_isa(), a.B, d.C, d.H, d.Di, a.eps};
  const int64_t B = a.B, T = a.T, C = d.C, Di = d.Di, N = a.h * a.w, R = B * T, H = d.H;
  const int64_t K = a.multimask ? d.M - 1 : 1, Tu = 1 + K;
  const int64_t Tmax = std::max(T, Tu);
  AlignedFloats q, tmp, scratch, hid, qh, o, u, z, kh_buf, vh_buf, xb;
  q.alloc(R * C, false);
  tmp.alloc(R * C, false);
  scratch.alloc(4 * R * C, false);
  hid.alloc(R * std::max({d.Mlp, round_up(d.Hid, 8), C}), false);
  qh.alloc(R * Di, false);
  o.alloc(R * Di, false);
  u.alloc(B * H * Tmax * C, false);
  z.alloc(B * H * Tmax * C, false);
  kh_buf.alloc(R * Di, false);
  vh_buf.alloc(R * Di, false);
  xb.alloc(B * N * C, false);  // layer 0's image-token output, then layer 1's in place
  AlignedFloats xd;  // mask prompts: features + dense, token-major [B, N, C]
  if (a.dense) {
    xd.alloc(B * N * C, false);
    add_transpose(c.isa, a.features, a.dense, B, C, N, xd.p);
  }
  const float* P = a.tokens;  // token positional encoding = the initial tokens
  std::memcpy(q.p, a.tokens, R * C * sizeof(float));
  float* qpe = hid.p;
  float* qt = scratch.p + 3 * R * C;  // shares the self-attention's last scratch slot (not live across)
  T2iBufs tw{qh.p, o.p, u, z};
  AlignedFloats u_i, ut_i, cb_i, r_i;  // image->token operands: live while its fused pass runs
  u_i.alloc(B * std::max(C, Di) * H * T, false);  // [B, Cq, H*T], Cq = Di (cached layer 0) or C
  ut_i.alloc(B * T * std::max(H * C, Di), false);
  cb_i.alloc(B * H * T, false);
  r_i.alloc(B * H * T * C, false);
  I2tBufs iw{kh_buf.p, vh_buf.p, ut_i, u_i, cb_i, r_i};
  // The image side changes only in the image->token steps. Their outputs are consumed by the next
  // token->image attention, whose queries do not depend on them, so each image->token pass runs fused into
  // the next token->image pass (rows produced right before they are read): layer 0's into layer 1's,
  // layer 1's (in place) into the final one.
  // ---- layer 0 (skip_first_layer_pe: queries = self_attn(q, q, q), no residual; cached image side)
  const LayerP& L0 = p.layers[0];
  self_attention(c, L0.self_attn, q.p, q.p, q.p, T, tmp.p, scratch.p);
  std::memcpy(q.p, tmp.p, R * C * sizeof(float));
  add_norm(c, q.p, nullptr, R, L0.n1);
  add(c.isa, q.p, P, qpe, R * C);
  if (a.dense) {  // mask prompt: the image side differs per prompt, no layer-0 cache
    t2i_fold(c, L0.t2i, qpe, T, tw);
    t2i_attend(c, T, xd.p, B, a.pe, N, tw);
    t2i_unfold(c, L0.t2i, T, tw, tmp.p);
  } else {
    t2i_cached(c, L0.t2i, qpe, T, a.k0, a.v0, N, tmp.p, qh.p, o.p);
  }
  add_norm(c, q.p, tmp.p, R, L0.n2);
  linear(c, L0.mlp1, q.p, C, R, hid.p, d.Mlp, true);
  linear(c, L0.mlp2, hid.p, d.Mlp, R, tmp.p, C);
  add_norm(c, q.p, tmp.p, R, L0.n3);
  SAMFAST_PHASE("layer 0 token side (incl. cached token->image)");
  add(c.isa, q.p, P, qt, R * C);
  // Folded first ConvT of the mask head (MaskHeadFold; mask-free prompts with the per-image g): the image->token
  // passes keep their probabilities and LayerNorm statistics, and R0 A'' / R1 A' are formed per prompt. Only for
  // few tokens: per pixel the fold costs 2 * H * (T - 1) * n1p MACs against C * n1p for the direct product, plus its
  // own passes; measured slower from T ~ 12 on (SAM: H * T <= C / 4 means T <= 8, a point or a box).
  const int64_t HT = H * T, n1p = p.fold.N1p;
  const bool fold = a.g && !a.dense && 4 * HT <= C;
  // Layer 1's token->image attention from the per-image kv block (t2i_ln): per image row it costs ~2 Q (HT + dh)
  // MACs (Q = H * round_up(T, 8) columns) against 2 HT C for reading the rows; used where that is at most half,
  // since its small GEMMs run less efficiently (SAM: T <= 8; measured slower at T = 9, even at T = 12..16).
  const int64_t Qln = H * round_up(T, 8), dh1 = Di / H;
  const bool ln1 = a.g && !a.dense && HT % 8 == 0 && dh1 % 8 == 0 && 2 * Qln * (HT + dh1) <= HT * C;
  AlignedFloats P0, P1, st0, st1, M01, Mfold, c01b;
  if (fold || ln1) {
    P0.alloc(B * N * HT, false);
    st0.alloc(B * N * 2, false);
  }
  const int64_t Kf = H * (T - 1);  // MaskHeadFold::K
  if (fold) {
    P1.alloc(B * N * HT, false);
    st1.alloc(B * N * 2, false);
    M01.alloc(B * 2 * HT * n1p, false);  // per prompt M0 = R0 A'' then M1 = R1 A' ([HT, n1p] each)
    Mfold.alloc(B * 2 * Kf * n1p, false);
    c01b.alloc(2 * B * n1p, false);  // c0b [B, n1p], then c1b [B, n1p]
  }
  // M0 (layer 0, Aw = A'') or M1 (layer 1, Aw = A') of every prompt; after layer 1, the MaskHeadFold operands
  auto fold_update = [&](const float* R /* [B, HT, C] */, const float* Aw /* [C, n1p] */, int64_t layer) {
#pragma omp parallel for schedule(static) if (B > 1)
    for (int64_t b = 0; b < B; ++b) {
      float* M = M01.p + (b * 2 + layer) * HT * n1p;
      std::fill(M, M + HT * n1p, 0.f);
      gemm(c.isa, R + b * HT * C, C, HT, C, Aw, n1p, n1p, M, n1p);
      if (layer == 1)
        mask_head_fold_prepare(M - HT * n1p, M, H, T, n1p, p.fold.c0, p.fold.c1, Mfold.p + b * 2 * Kf * n1p,
                               c01b.p + b * n1p, c01b.p + (B + b) * n1p);
    }
  };
  ImageToTokenArgs ia0 = a.dense ? i2t_prepare(c, L0.i2t, L0.n4, xd.p, B, a.pe, nullptr, N, qt, q.p, T, xb.p, iw)
                                 : i2t_prepare(c, L0.i2t, L0.n4, a.x0, 1, a.pe, a.q0, N, qt, q.p, T, xb.p, iw);
  if (fold || ln1) {
    ia0.p_out = P0.p;
    ia0.ln_stats = st0.p;
  }
  if (fold) fold_update(iw.r.p, p.fold.App, 0);
  AlignedFloats Rc, obc;  // layer 0's image->token rows and out_proj bias, centred (t2i_ln)
  if (ln1) {
    Rc.alloc(B * HT * C, false);
    obc.alloc(C, false);
    center_rows(iw.r.p, B * HT, C, Rc.p);
    center_rows(L0.i2t.o.b, 1, C, obc.p);
  }
  SAMFAST_PHASE("layer 0 image->token operands");
  const ImageToTokenRows i2t0(ia0);
  // ---- layer 1
  const LayerP& L1 = p.layers[1];
  add(c.isa, q.p, P, qpe, R * C);
  self_attention(c, L1.self_attn, qpe, qpe, q.p, T, tmp.p, scratch.p);
  add_norm(c, q.p, tmp.p, R, L1.n1);
  SAMFAST_PHASE("layer 1 self-attention");
  add(c.isa, q.p, P, qpe, R * C);
  const RowProducer run_i2t0 = [&](int64_t b, int64_t n0, int64_t n1) { i2t0.run(b, n0, n1); };
  const float* kv = a.g ? a.g + N * n1p : nullptr;  // g's kv block
  if (ln1) {
    t2i_ln(c, L1.t2i, obc.p, L0.n4, Rc.p, qpe, T, tw, P0.p, st0.p, kv, N, run_i2t0, tmp.p);
  } else {
    t2i_fold(c, L1.t2i, qpe, T, tw);
    t2i_attend(c, T, xb.p, B, a.pe, N, tw, run_i2t0);
    t2i_unfold(c, L1.t2i, T, tw, tmp.p);
  }
  SAMFAST_PHASE("fused layer-0 image->token + layer-1 token->image");
  add_norm(c, q.p, tmp.p, R, L1.n2);
  linear(c, L1.mlp1, q.p, C, R, hid.p, d.Mlp, true);
  linear(c, L1.mlp2, hid.p, d.Mlp, R, tmp.p, C);
  add_norm(c, q.p, tmp.p, R, L1.n3);
  add(c.isa, q.p, P, qt, R * C);
  // in place: image_to_token reads a tile's rows of x before writing them
  ImageToTokenArgs ia1 = i2t_prepare(c, L1.i2t, L1.n4, xb.p, B, a.pe, nullptr, N, qt, q.p, T, xb.p, iw);
  if (fold) {
    ia1.p_out = P1.p;
    ia1.ln_stats = st1.p;
    fold_update(iw.r.p, p.fold.Ap, 1);
  }
  SAMFAST_PHASE("layer 1 token side + image->token operands");
  const ImageToTokenRows i2t1(ia1);
  // ---- final token->image attention, only for the tokens read afterwards: IoU + requested mask tokens
  const int64_t Ru = B * Tu;
  float* qu = scratch.p;          // [B*Tu, C]
  float* tu = scratch.p + R * C;  // [B*Tu, C] queries + pe
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Tu; ++i) {
      const int64_t t = i == 0 ? 0 : (a.multimask ? 1 + i : 1);
      std::memcpy(qu + (b * Tu + i) * C, q.p + (b * T + t) * C, C * sizeof(float));
      add(c.isa, q.p + (b * T + t) * C, P + (b * T + t) * C, tu + (b * Tu + i) * C, C);
    }
  t2i_fold(c, p.final_attn, tu, Tu, tw);
  SAMFAST_PHASE("final token->image operands");
  t2i_attend(c, Tu, xb.p, B, a.pe, N, tw, [&](int64_t b, int64_t n0, int64_t n1) { i2t1.run(b, n0, n1); });
  t2i_unfold(c, p.final_attn, Tu, tw, tmp.p);
  SAMFAST_PHASE("fused layer-1 image->token + final token->image");
  const float* x = xb.p;
  add_norm(c, qu, tmp.p, Ru, p.nf);
  // IoU head on token 0 of each prompt
  const int64_t Mp = round_up(d.M, 8);
  float* iou_all = tu;  // [B, Mp]
  float* h1 = hid.p;
  float* h2 = hid.p + B * std::max(round_up(d.Hid, 8), C);
  mlp3(c, p.iou, qu, Tu * C, B, iou_all, Mp, h1, h2);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) a.iou[b * K + k] = iou_all[b * Mp + (a.multimask ? 1 + k : 0)];
  // hypernetwork MLP j on mask token j -> hyper_in [B, K, C2]
  AlignedFloats hyper;
  hyper.alloc(B * K * d.C2, false);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t j = a.multimask ? 1 + k : 0;
    mlp3(c, &p.hyper[3 * j], qu + (1 + k) * C, Tu * C, B, hyper.p + k * d.C2, K * d.C2, h1, h2);
  }
  SAMFAST_PHASE("IoU head + hypernetworks");
  MaskHeadArgs m;
  m.B = B; m.h = a.h; m.w = a.w; m.C = C; m.C1 = d.C1; m.C2 = d.C2; m.M = K;
  m.src = x; m.w1 = p.up1.w; m.b1 = p.up1.b; m.ln_w = p.up_ln.w; m.ln_b = p.up_ln.b;
  m.w2 = p.up2.w; m.b2 = p.up2.b; m.hyper = hyper.p; m.out = a.masks; m.eps = a.eps2d;
  m.prepacked = p.mask_head;
  MaskHeadFold mf;
  if (fold) {
    mf.K = Kf; mf.ldp = HT; mf.G = a.g; mf.P0 = P0.p; mf.P1 = P1.p; mf.st0 = st0.p; mf.st1 = st1.p;
    mf.Mp = Mfold.p; mf.c0b = c01b.p; mf.c1b = c01b.p + B * n1p;
    mf.k1 = p.fold.k1; mf.k2 = p.fold.k2; mf.cz = p.fold.cz;
    m.fold = &mf;
  }
  mask_head_cpu(m);
  SAMFAST_PHASE("mask head");
}

int64_t cached_decoder_fold_width(const DecoderDims& d) { return mask_head_conv1_width(d.C1) + kKvBlocks * d.Di; }

void cached_decoder_fold_image(const DecoderDims& d, const float* packed, const float* x0, const float* pe, int64_t N,
                               float* g) {
  check_decoder_dims(d);
  const DecoderParams p = bind_params(d, packed);
  const int64_t n1p = p.fold.N1p, C = d.C, Di = d.Di, W = kKvBlocks * Di;
  const Ctx c{pick_isa(), 1, C, d.H, Di, 0.f};
  const Slot &gamma = p.layers[0].n4, &wk = p.layers[1].t2i.k, &wv = p.layers[1].t2i.v;
  float* kv = g + N * n1p;
  constexpr int64_t kRows = 64;
#pragma omp parallel
  {
    AlignedFloats xc;
    xc.alloc(kRows * C, false);
#pragma omp for schedule(static)
    for (int64_t r0 = 0; r0 < N; r0 += kRows) {
      const int64_t rows = std::min(kRows, N - r0);
      std::fill(g + r0 * n1p, g + (r0 + rows) * n1p, 0.f);
      gemm(c.isa, x0 + r0 * C, C, rows, C, p.fold.App, n1p, n1p, g + r0 * n1p, n1p);
      center_rows(x0 + r0 * C, rows, C, xc.p);  // (x0 - row mean) * layer 0's norm4 weight
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t k = 0; k < C; ++k) xc.p[i * C + k] *= gamma.w[k];
      float* out = kv + r0 * W;
      std::fill(out, out + rows * W, 0.f);
      gemm_wt(c, wk, xc.p, C, rows, 0, C, 0, Di, out, W);                // Kc
      gemm_wt(c, wk, pe + r0 * C, C, rows, 0, C, 0, Di, out + Di, W);    // Kpe
      gemm_wt(c, wv, xc.p, C, rows, 0, C, 0, Di, out + 2 * Di, W);       // Vc
    }
  }
}

}  // namespace samfast::cpu
