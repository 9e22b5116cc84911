// CPU rel-pos attention driver + portable (auto-vectorised) micro-kernels.
//
// Per (batch, head, block) where a block is the whole H x W grid (global) or one window:
//   * K^T and V are packed per key block of Tk keys into fp32 16-wide panels (K^T: [Tk/16, hd, 16],
//     V: [hdp/16, Tk, 16]); padded window tokens take the qkv bias. Global blocks pack once per
//     (batch, head) into a shared buffer; windows pack into per-thread scratch.
//   * queries are tiled (<= 48, rows padded to a multiple of 6; global tiles walk 6 x 8 grid
//     patches so their rel_h / rel_w slices stay in L2); per tile we keep Qs = q * scale,
//     the rel-pos dot products bh[q, ky] = q . rel_h[qy, ky] and bw[q, kx] = q . rel_w[qx, kx],
//     and stream key blocks with an online softmax (S = Qs Kt + bh + bw; O = O * alpha + P V), so the
//     score matrix never exceeds [48, Tk]. Padded window queries are skipped entirely.
#include "cpu/rel_pos_attention_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "cpu/cpu_features.h"

#ifdef SAMFAST_WITH_OPENMP
#include <omp.h>
#endif

namespace samfast::cpu {
namespace {

constexpr int64_t MR = 6;         // register-block rows (qk / pv)
constexpr int64_t TQ_MAX = 48;    // queries per tile (multiple of MR)
constexpr int64_t TK_BIG = 256;   // key block for blocks with more than TK_SINGLE_MAX tokens
constexpr int64_t TK_SINGLE_MAX = 256;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// ---------------------------------------------------------------------------------------------
// portable micro-kernels (same contracts as the AVX2 ones; inner loops are contiguous so the
// compiler vectorises them for the baseline ISA)
// ---------------------------------------------------------------------------------------------

// Baseline register blocks use GCC/Clang 4-wide vector extensions (SSE2 on x86-64, NEON on aarch64):
// 6 rows x 8 columns = 12 named accumulators, so they stay in registers.
typedef float v4f __attribute__((vector_size(16)));
inline v4f ld4(const float* p) { v4f v; std::memcpy(&v, p, sizeof(v)); return v; }
inline void st4(float* p, v4f v) { std::memcpy(p, &v, sizeof(v)); }

#define SAMFAST_BLOCK6x8(ACC_INIT, A_OF, B_PTR, NITER, STORE_ROW)                                        \
  {                                                                                                    \
    v4f c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;                                    \
    ACC_INIT(0, c00, c01) ACC_INIT(1, c10, c11) ACC_INIT(2, c20, c21)                                  \
    ACC_INIT(3, c30, c31) ACC_INIT(4, c40, c41) ACC_INIT(5, c50, c51)                                  \
    for (int64_t it = 0; it < (NITER); ++it) {                                                         \
      const float* bp = (B_PTR);                                                                       \
      const v4f b0 = ld4(bp), b1 = ld4(bp + 4);                                                        \
      v4f a;                                                                                           \
      a = v4f{} + A_OF(0); c00 += a * b0; c01 += a * b1;                                               \
      a = v4f{} + A_OF(1); c10 += a * b0; c11 += a * b1;                                               \
      a = v4f{} + A_OF(2); c20 += a * b0; c21 += a * b1;                                               \
      a = v4f{} + A_OF(3); c30 += a * b0; c31 += a * b1;                                               \
      a = v4f{} + A_OF(4); c40 += a * b0; c41 += a * b1;                                               \
      a = v4f{} + A_OF(5); c50 += a * b0; c51 += a * b1;                                               \
    }                                                                                                  \
    STORE_ROW(0, c00, c01) STORE_ROW(1, c10, c11) STORE_ROW(2, c20, c21)                               \
    STORE_ROW(3, c30, c31) STORE_ROW(4, c40, c41) STORE_ROW(5, c50, c51)                               \
  }

void qk_base(const float* Qs, int64_t rows, int64_t hd, const float* Kt, int64_t Tk, int64_t nk, float* S) {
  for (int64_t j = 0; j < nk; j += 16) {
    const float* panel = Kt + j * hd;  // [hd, 16]
    for (int64_t r0 = 0; r0 < rows; r0 += MR) {
      const float* q = Qs + r0 * hd;
      for (int h = 0; h < 16; h += 8) {
        float* s = S + r0 * Tk + j + h;
#define QK_INIT(i, x, y) x = v4f{}; y = v4f{};
#define QK_A(i) q[(i) * hd + it]
#define QK_STORE(i, x, y) st4(s + (i) * Tk, x); st4(s + (i) * Tk + 4, y);
        SAMFAST_BLOCK6x8(QK_INIT, QK_A, panel + it * 16 + h, hd, QK_STORE)
#undef QK_INIT
#undef QK_A
#undef QK_STORE
      }
    }
  }
}

// exp for x <= 0, branch-free polynomial (same as the AVX2 one) so the loop vectorises.
inline float exp_poly(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  const float y0 = x * 1.44269504088896341f + 0.5f;
  const float tr = static_cast<float>(static_cast<int32_t>(y0));  // floor without SSE4.1 roundps
  const float fx = tr > y0 ? tr - 1.f : tr;
  x = x - fx * 0.693359375f - fx * -2.12194440e-4f;
  float y = 1.9875691500E-4f;
  y = y * x + 1.3981999507E-3f;
  y = y * x + 8.3334519073E-3f;
  y = y * x + 4.1665795894E-2f;
  y = y * x + 1.6666665459E-1f;
  y = y * x + 5.0000001201E-1f;
  y = y * (x * x) + x + 1.0f;
  const int32_t e = (static_cast<int32_t>(fx) + 127) << 23;
  float p;
  std::memcpy(&p, &e, sizeof(p));
  return y * p;
}

typedef int32_t v4i __attribute__((vector_size(16)));
inline v4f exp_v4(v4f x) {  // exp_poly, 4 lanes
  const v4f lo = v4f{} - 87.3f, hi = v4f{} + 88.3f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const v4f y0 = x * 1.44269504088896341f + 0.5f;
  const v4f tr = __builtin_convertvector(__builtin_convertvector(y0, v4i), v4f);
  const v4f fx = tr > y0 ? tr - 1.f : tr;
  x = x - fx * 0.693359375f - fx * -2.12194440e-4f;
  v4f y = v4f{} + 1.9875691500E-4f;
  y = y * x + 1.3981999507E-3f;
  y = y * x + 8.3334519073E-3f;
  y = y * x + 4.1665795894E-2f;
  y = y * x + 1.6666665459E-1f;
  y = y * x + 5.0000001201E-1f;
  y = y * (x * x) + x + 1.0f;
  const v4i e = (__builtin_convertvector(fx, v4i) + 127) << 23;
  v4f p;
  std::memcpy(&p, &e, sizeof(p));
  return y * p;
}

void softmax_base(float* S, int64_t Tk, int64_t nk, int64_t rows, const float* bh, int64_t Sh,
                  const float* bw, int64_t Sw, int64_t j0, float* m, float* l, float* alpha) {
  for (int64_t r = 0; r < rows; ++r) {
    float* s = S + r * Tk;
    const float* bhr = bh + r * Sh;
    const float* bwr = bw + r * Sw;
    float mx = -std::numeric_limits<float>::infinity();
    int64_t ky = j0 / Sw, kx0 = j0 - ky * Sw;
    for (int64_t jj = 0; jj < nk; ++ky, kx0 = 0) {
      const int64_t len = std::min(Sw - kx0, nk - jj);
      const float hb = bhr[ky];
      for (int64_t t = 0; t < len; ++t) {
        const float v = s[jj + t] + hb + bwr[kx0 + t];
        s[jj + t] = v;
        mx = std::max(mx, v);
      }
      jj += len;
    }
    const float m_new = std::max(m[r], mx);
    const float a = std::exp(m[r] - m_new);
    v4f vsum = v4f{};
    int64_t j = 0;
    for (; j + 4 <= nk; j += 4) {
      const v4f p = exp_v4(ld4(s + j) - m_new);
      st4(s + j, p);
      vsum += p;
    }
    float sum = (vsum[0] + vsum[1]) + (vsum[2] + vsum[3]);
    for (; j < nk; ++j) {
      const float p = exp_poly(s[j] - m_new);
      s[j] = p;
      sum += p;
    }
    m[r] = m_new;
    l[r] = l[r] * a + sum;
    alpha[r] = a;
  }
}

void pv_base(const float* P, int64_t Tk, int64_t nk, const float* V, int64_t hdp, float* O, const float* alpha,
             int64_t rows) {
  for (int64_t d0 = 0; d0 < hdp; d0 += 16) {
    const float* panel = V + d0 * Tk;  // [Tk, 16]
    for (int64_t r0 = 0; r0 < rows; r0 += MR) {
      const float* p = P + r0 * Tk;
      for (int h = 0; h < 16; h += 8) {
        float* o = O + r0 * hdp + d0 + h;
#define PV_INIT(i, x, y) x = ld4(o + (i) * hdp) * alpha[r0 + (i)]; y = ld4(o + (i) * hdp + 4) * alpha[r0 + (i)];
#define PV_A(i) p[(i) * Tk + it]
#define PV_STORE(i, x, y) st4(o + (i) * hdp, x); st4(o + (i) * hdp + 4, y);
        SAMFAST_BLOCK6x8(PV_INIT, PV_A, panel + it * 16 + h, nk, PV_STORE)
#undef PV_INIT
#undef PV_A
#undef PV_STORE
      }
    }
  }
}
#undef SAMFAST_BLOCK6x8

void rel_dots_base(const float* q, const float* rel, int64_t n, int64_t hd, float* out) {
  for (int64_t k = 0; k < n; ++k) {
    const float* r = rel + k * hd;
    float acc[8] = {};
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8)
      for (int t = 0; t < 8; ++t) acc[t] += q[d + t] * r[d + t];
    for (; d < hd; ++d) acc[0] += q[d] * r[d];
    out[k] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  }
}

// ---------------------------------------------------------------------------------------------
// storage conversion
// ---------------------------------------------------------------------------------------------

inline float load_f(const float* p, int64_t i) { return p[i]; }
inline float load_f(const uint16_t* p, int64_t i) {
  const uint32_t u = static_cast<uint32_t>(p[i]) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
inline void store_f(float* p, int64_t i, float v) { p[i] = v; }
inline void store_f(uint16_t* p, int64_t i, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) { p[i] = static_cast<uint16_t>((u >> 16) | 0x40); return; }  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  p[i] = static_cast<uint16_t>(u >> 16);
}

struct AlignedBuf {
  std::unique_ptr<float, decltype(&std::free)> p{nullptr, &std::free};
  int64_t n = 0;
  float* get(int64_t need) {
    if (need > n) {
      const size_t bytes = static_cast<size_t>(round_up(std::max<int64_t>(need, 16), 16)) * sizeof(float);
      p.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!p) throw std::bad_alloc();
      n = need;
    }
    return p.get();
  }
};

struct Scratch {
  AlignedBuf qs, bh, bw, s, o, stats, qraw, kp, vp;
  std::vector<int64_t> qidx;
};

// One (batch, head) attention problem over a block (a window or the whole grid).
template <typename T>
struct Problem {
  const T* qkv;     // [B, H, W, 3*C]
  const T* bias;    // [3*C]
  const float* rel_h;  // [Sh, Sh, hd] fp32
  const float* rel_w;  // [Sw, Sw, hd] fp32
  T* out;           // [B, H, W, C]
  const AttnKernels* K;
  int64_t H, W, C, hd, hdp, Sh, Sw, N, Tk, nblk;
  float scale;

  // per key block: Kp [Tk/16, hd, 16] (K^T in 16-key panels), Vp [hdp/16, Tk, 16]; blocks [blk0, blk1)
  void pack_kv(int64_t b, int64_t head, int64_t oy, int64_t ox, int64_t blk0, int64_t blk1, float* Kp,
               float* Vp) const {
    for (int64_t j = blk0 * Tk; j < blk1 * Tk; ++j) {
      const int64_t jj = j % Tk;
      float* kt = Kp + (j / Tk) * hd * Tk + (jj / 16) * hd * 16 + (jj % 16);  // panels [Tk/16][hd][16]
      float* v = Vp + (j / Tk) * Tk * hdp + jj * 16;                          // panels [hdp/16][Tk][16]
      const T* ks = nullptr;
      const T* vs = nullptr;
      if (j < N) {
        const int64_t y = oy + j / Sw, x = ox + j % Sw;
        const T* base = (y < H && x < W) ? qkv + ((b * H + y) * W + x) * 3 * C : bias;
        ks = base + C + head * hd;
        vs = base + 2 * C + head * hd;
      }
      if (ks) {
        for (int64_t d = 0; d < hd; ++d) kt[d * 16] = load_f(ks, d);
        for (int64_t d0 = 0; d0 < hd; d0 += 16) {
          float* vd = v + d0 * Tk;
          const int64_t n = std::min<int64_t>(16, hd - d0);
          for (int64_t t = 0; t < n; ++t) vd[t] = load_f(vs, d0 + t);
          for (int64_t t = n; t < 16; ++t) vd[t] = 0.f;
        }
      } else {
        for (int64_t d = 0; d < hd; ++d) kt[d * 16] = 0.f;
        for (int64_t d0 = 0; d0 < hdp; d0 += 16) std::fill(v + d0 * Tk, v + d0 * Tk + 16, 0.f);
      }
    }
  }

  // Queries qidx[0..nq) (block-local token indices, all inside the image) against all keys.
  void query_tile(int64_t b, int64_t head, int64_t oy, int64_t ox, const int64_t* qidx, int64_t nq,
                  const float* Kp, const float* Vp, Scratch& sc) const {
    const int64_t rows = round_up(nq, MR);
    float* Qs = sc.qs.get(rows * hd);
    float* bh = sc.bh.get(rows * Sh);
    float* bw = sc.bw.get(rows * Sw + 16);  // slack for full-width SIMD tails
    float* S = sc.s.get(rows * Tk + 16);
    float* O = sc.o.get(rows * hdp);
    float* st = sc.stats.get(3 * rows);
    float* qr = sc.qraw.get(hd);
    float *m = st, *l = st + rows, *alpha = st + 2 * rows;
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t qy = qidx[i] / Sw, qx = qidx[i] % Sw;
      const T* src = qkv + ((b * H + oy + qy) * W + ox + qx) * 3 * C + head * hd;
      for (int64_t d = 0; d < hd; ++d) qr[d] = load_f(src, d);
      for (int64_t d = 0; d < hd; ++d) Qs[i * hd + d] = qr[d] * scale;
      K->rel_dots(qr, rel_h + qy * Sh * hd, Sh, hd, bh + i * Sh);
      K->rel_dots(qr, rel_w + qx * Sw * hd, Sw, hd, bw + i * Sw);
    }
    std::fill(Qs + nq * hd, Qs + rows * hd, 0.f);
    std::fill(O, O + rows * hdp, 0.f);
    std::fill(m, m + rows, -std::numeric_limits<float>::infinity());
    std::fill(l, l + rows, 0.f);
    std::fill(alpha, alpha + rows, 1.f);
    for (int64_t kb = 0; kb < nblk; ++kb) {
      const int64_t j0 = kb * Tk, nk = std::min(Tk, N - j0);
      K->qk(Qs, rows, hd, Kp + kb * hd * Tk, Tk, nk, S);
      K->softmax(S, Tk, nk, nq, bh, Sh, bw, Sw, j0, m, l, alpha);
      K->pv(S, Tk, nk, Vp + kb * Tk * hdp, hdp, O, alpha, rows);
    }
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t qy = qidx[i] / Sw, qx = qidx[i] % Sw;
      T* dst = out + ((b * H + oy + qy) * W + ox + qx) * C + head * hd;
      const float inv = 1.f / l[i];
      for (int64_t d = 0; d < hd; ++d) store_f(dst, d, O[i * hdp + d] * inv);
    }
  }
};

template <typename T>
void run(const RelPosAttentionArgs& a, const AttnKernels* K) {
  const int64_t B = a.B, H = a.H, W = a.W, C = a.C, nh = a.num_heads, hd = C / nh, ws = a.window_size;
  const int64_t Sh = ws > 0 ? ws : H, Sw = ws > 0 ? ws : W;
  if (B == 0 || H == 0 || W == 0 || C == 0) return;
  // rel tables in fp32
  std::vector<float> rh32, rw32;
  const float* rel_h = static_cast<const float*>(a.rel_h);
  const float* rel_w = static_cast<const float*>(a.rel_w);
  if (a.bf16) {
    rh32.resize(Sh * Sh * hd);
    rw32.resize(Sw * Sw * hd);
    auto* rh = static_cast<const uint16_t*>(a.rel_h);
    auto* rw = static_cast<const uint16_t*>(a.rel_w);
    for (size_t i = 0; i < rh32.size(); ++i) rh32[i] = load_f(rh, i);
    for (size_t i = 0; i < rw32.size(); ++i) rw32[i] = load_f(rw, i);
    rel_h = rh32.data();
    rel_w = rw32.data();
  }
  Problem<T> P;
  P.qkv = static_cast<const T*>(a.qkv);
  P.bias = static_cast<const T*>(a.qkv_bias);
  P.rel_h = rel_h;
  P.rel_w = rel_w;
  P.out = static_cast<T*>(a.out);
  P.K = K;
  P.H = H; P.W = W; P.C = C; P.hd = hd; P.hdp = round_up(hd, 16);
  P.Sh = Sh; P.Sw = Sw; P.N = Sh * Sw;
  P.Tk = P.N <= TK_SINGLE_MAX ? round_up(P.N, 16) : TK_BIG;
  P.nblk = ceil_div(P.N, P.Tk);
  P.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t N = P.N, kv_k = P.nblk * hd * P.Tk, kv_v = P.nblk * P.Tk * P.hdp;

  if (ws == 0) {
    // global: K/V packed once per (b, head) into shared buffers, query tiles in parallel
    const int64_t nqt = ceil_div(N, TQ_MAX), tq = round_up(ceil_div(N, nqt), MR);
    const int64_t ntiles = ceil_div(N, tq);
    // (batch, head) pairs are processed in groups whose packed K/V fit in ~32 MiB: one pack loop and
    // one dynamic tile loop per group (two barriers per group instead of per head)
    const int64_t BH = B * nh;
    const int64_t G = std::min(BH, std::max<int64_t>(1, (int64_t(32) << 20) / (4 * (kv_k + kv_v))));
    AlignedBuf kbuf, vbuf;
    float* Kp = kbuf.get(G * kv_k);
    float* Vp = vbuf.get(G * kv_v);
    // queries in 6 x 8 grid patches, so a tile touches ~6 rel_h[qy] and ~8 rel_w[qx] slices
    // (instead of 48 distinct rel_w slices streamed from L3 for a row-major tile)
    std::vector<int64_t> all;
    all.reserve(N);
    for (int64_t y0 = 0; y0 < Sh; y0 += 6)
      for (int64_t x0 = 0; x0 < Sw; x0 += 8)
        for (int64_t y = y0; y < std::min(y0 + 6, Sh); ++y)
          for (int64_t x = x0; x < std::min(x0 + 8, Sw); ++x) all.push_back(y * Sw + x);
#pragma omp parallel
    {
      Scratch sc;
      for (int64_t g0 = 0; g0 < BH; g0 += G) {
        const int64_t gn = std::min(G, BH - g0);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < gn * P.nblk; ++i) {
          const int64_t bh = g0 + i / P.nblk, kb = i % P.nblk;
          P.pack_kv(bh / nh, bh % nh, 0, 0, kb, kb + 1, Kp + (i / P.nblk) * kv_k, Vp + (i / P.nblk) * kv_v);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < gn * ntiles; ++i) {
          const int64_t bh = g0 + i / ntiles, q0 = (i % ntiles) * tq;
          P.query_tile(bh / nh, bh % nh, 0, 0, all.data() + q0, std::min(tq, N - q0), Kp + (i / ntiles) * kv_k,
                       Vp + (i / ntiles) * kv_v, sc);
        }
      }
    }
    return;
  }

  // windowed: one task per (b, window, head); padded queries are dropped
  const int64_t nwy = ceil_div(H, ws), nwx = ceil_div(W, ws);
  const int64_t ntask = B * nwy * nwx * nh;
#pragma omp parallel
  {
    Scratch sc;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask; ++task) {
      const int64_t head = task % nh, win = task / nh;
      const int64_t b = win / (nwy * nwx), wy = (win / nwx) % nwy, wx = win % nwx;
      const int64_t oy = wy * ws, ox = wx * ws;
      float* Kp = sc.kp.get(kv_k);
      float* Vp = sc.vp.get(kv_v);
      P.pack_kv(b, head, oy, ox, 0, P.nblk, Kp, Vp);
      sc.qidx.clear();
      for (int64_t y = 0; y < std::min(ws, H - oy); ++y)
        for (int64_t x = 0; x < std::min(ws, W - ox); ++x) sc.qidx.push_back(y * ws + x);
      const int64_t nv = static_cast<int64_t>(sc.qidx.size());
      const int64_t nqt = ceil_div(nv, TQ_MAX), tq = round_up(ceil_div(nv, nqt), MR);
      for (int64_t q0 = 0; q0 < nv; q0 += tq)
        P.query_tile(b, head, oy, ox, sc.qidx.data() + q0, std::min(tq, nv - q0), Kp, Vp, sc);
    }
  }
}

}  // namespace

const AttnKernels& attn_kernels_baseline() {
  static const AttnKernels k{qk_base, softmax_base, pv_base, rel_dots_base};
  return k;
}

void rel_pos_attention(const RelPosAttentionArgs& args) {
  const AttnKernels* K = &attn_kernels_baseline();
  if (use_avx2() && attn_kernels_avx2()) K = attn_kernels_avx2();
  if (use_avx2() && use_avx512() && attn_kernels_avx512()) K = attn_kernels_avx512();
  if (args.bf16)
    run<uint16_t>(args, K);
  else
    run<float>(args, K);
}

}  // namespace samfast::cpu
