// Fused SAM mask head (see mask_head_kernel.h). Per tile of kTile pixels:
//   GEMM1  T[P, 4*C1]    = src[P, C] x W1p[C, 4*C1] + b1   (columns ordered [dy, dx, c1])
//   LN+GELU over each sub-pixel's C1 channels (in place: T viewed as [4P, C1])
//   GEMM2  U[4P, 4*C2]   = GELU(T[4P, C1] x W2p[C1, 4*C2] + b2)  (columns ordered [ey, ex, c2])
//   out[b, m, 4y+2dy+ey, 4x+2dx+ex] = U[4p+2dy+dx, (2ey+ex)*C2 : +C2] . hyper_in[b, m, :]
// GEMMs use weights packed per call into 16-column panels ([N/16][K][16], zero padded) and a
// 6x16 register-blocked AVX2+FMA micro-kernel or a 12x32 AVX-512F one (run-time choice); a portable
// path mirrors the same structure.
#include "cpu/mask_head_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "cpu/cpu_features.h"
#include "cpu/mask_head_gemm.h"
#include "cpu/mask_simd.h"
#include "cpu/small_gemm.h"

namespace samfast::cpu {
namespace {

using namespace mask_head_gemm;

constexpr int64_t kTile = 24;  // pixels per tile (4 register tiles of 6 rows; 12..48 measured equal)

// The kernel's view of the weights: ConvT panels, padded biases, LayerNorm (all 64-byte aligned).
struct Packed {
  int64_t C, C1, C2, N1p, N2p;
  const float *w1p, *b1p, *w2p, *b2p, *lnw, *lnb;
};

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

inline float load_elem(const void* p, int64_t i, bool bf16) {
  return bf16 ? bf16_to_float(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}

// ConvT weight [K, Cout, 2, 2] -> panels of the [K, 4*Cout] matrix with column n = (2*dy+dx)*Cout + co.
void pack_convt(const void* w, int64_t K, int64_t Cout, int64_t Np, bool bf16, float* dst) {
  for (int64_t jp = 0; jp < Np; jp += kNR)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < kNR; ++j) {
        const int64_t n = jp + j, s = n / std::max<int64_t>(Cout, 1), co = n - s * Cout;
        dst[jp * K + k * kNR + j] = n < 4 * Cout ? load_elem(w, (k * Cout + co) * 4 + s, bf16) : 0.f;
      }
}

// Bias [Cout] repeated for the 4 sub-pixel column groups, zero padded to Np.
void pack_bias(const void* b, int64_t Cout, int64_t Np, bool bf16, float* dst) {
  for (int64_t n = 0; n < Np; ++n) dst[n] = n < 4 * Cout ? load_elem(b, n % Cout, bf16) : 0.f;
}


template <typename OutT>
inline void store_out(OutT* p, float v) {
  if constexpr (sizeof(OutT) == 2) *p = float_to_bf16(v); else *p = v;
}

// ---------------------------------------------------------------- portable path

// T[P, N1p] (sub-pixel rows of C1) -> LN + GELU -> T2[4P, C1]; P <= kTile. Two passes, as every ln_gelu: the rows'
// statistics first, then the normalisation + GELU over the tile as independent vectors (with a pass per row, each
// row's GELUs waited on its reductions: the AVX-512 mask head 7 % slower).
void ln_gelu_base(const float* T, int64_t P, const Packed& pk, float eps, float* T2) {
  const int64_t C1 = pk.C1, R = 4 * P;
  float mean[4 * kTile], rstd[4 * kTile];
  for (int64_t r = 0; r < R; ++r) {
    const float* x = T + (r >> 2) * pk.N1p + (r & 3) * C1;
    float m = 0.f, var = 0.f;
    for (int64_t c = 0; c < C1; ++c) m += x[c];
    m /= float(C1);
    for (int64_t c = 0; c < C1; ++c) var += (x[c] - m) * (x[c] - m);
    mean[r] = m;
    rstd[r] = 1.f / std::sqrt(var / float(C1) + eps);
  }
  for (int64_t r = 0; r < R; ++r) {
    const float* x = T + (r >> 2) * pk.N1p + (r & 3) * C1;
    float* y = T2 + r * C1;
    const float m = mean[r], rs = rstd[r];
    int64_t c = 0;
    for (; c + 4 <= C1; c += 4)
      store4(y + c, gelu4((load4(x + c) - m) * rs * load4(pk.lnw + c) + load4(pk.lnb + c)));
    for (; c < C1; ++c) y[c] = gelu_exact((x[c] - m) * rs * pk.lnw[c] + pk.lnb[c]);
  }
}

// U[4P, N2p] . hyper[M, C2] -> out[M, 4h, 4w] for pixels q0 .. q0+P-1 of one batch item.
template <typename OutT>
void hyper_base(const float* U, int64_t P, int64_t q0, int64_t h, int64_t w, const Packed& pk,
                const float* hyp, int64_t M, OutT* out) {
  const int64_t C2 = pk.C2, W4 = 4 * w, plane = 16 * h * w;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t y = (q0 + p) / w, x = (q0 + p) % w;
    for (int64_t s = 0; s < 4; ++s)
      for (int64_t e = 0; e < 4; ++e) {
        const float* u = U + (p * 4 + s) * pk.N2p + e * C2;
        const int64_t oy = 4 * y + 2 * (s >> 1) + (e >> 1), ox = 4 * x + 2 * (s & 1) + (e & 1);
        for (int64_t m = 0; m < M; ++m) {
          float acc = 0.f;
          for (int64_t c = 0; c < C2; ++c) acc += u[c] * hyp[m * C2 + c];
          store_out(out + m * plane + oy * W4 + ox, acc);
        }
      }
  }
}

// ---------------------------------------------------------------- AVX2 + FMA path
#if SAMFAST_X86

// Requires C1 % 8 == 0; P <= kTile.
SAMFAST_AVX2 void ln_gelu_avx2(const float* T, int64_t P, const Packed& pk, float eps, float* T2) {
  const int64_t C1 = pk.C1, R = 4 * P;
  const __m256 inv_n = _mm256_set1_ps(1.f / float(C1));
  alignas(32) float mean[4 * kTile], rstd[4 * kTile];
  for (int64_t r = 0; r < R; ++r) {
    const float* x = T + (r >> 2) * pk.N1p + (r & 3) * C1;
    __m256 sum = _mm256_setzero_ps();
    for (int64_t c = 0; c < C1; c += 8) sum = _mm256_add_ps(sum, _mm256_loadu_ps(x + c));
    const __m256 m = _mm256_mul_ps(hsum_bcast_avx2(sum), inv_n);
    __m256 vs = _mm256_setzero_ps();
    for (int64_t c = 0; c < C1; c += 8) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + c), m);
      vs = _mm256_fmadd_ps(d, d, vs);
    }
    const __m256 var = _mm256_fmadd_ps(hsum_bcast_avx2(vs), inv_n, _mm256_set1_ps(eps));
    mean[r] = _mm256_cvtss_f32(m);
    rstd[r] = _mm256_cvtss_f32(_mm256_div_ps(_mm256_set1_ps(1.f), _mm256_sqrt_ps(var)));
  }
  for (int64_t r = 0; r < R; ++r) {
    const float* x = T + (r >> 2) * pk.N1p + (r & 3) * C1;
    float* y = T2 + r * C1;
    const __m256 m = _mm256_set1_ps(mean[r]), rs = _mm256_set1_ps(rstd[r]);
    for (int64_t c = 0; c < C1; c += 8) {
      const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), m), rs);
      const __m256 v = _mm256_fmadd_ps(d, _mm256_load_ps(pk.lnw + c), _mm256_load_ps(pk.lnb + c));
      _mm256_storeu_ps(y + c, gelu_avx2(v));
    }
  }
}

template <typename OutT>
SAMFAST_AVX2 inline void store4_avx2(OutT* dst, __m128 v) {
  if constexpr (sizeof(OutT) == 2) {
    alignas(16) float t[4];
    _mm_store_ps(t, v);
    for (int i = 0; i < 4; ++i) dst[i] = float_to_bf16(t[i]);
  } else {
    _mm_storeu_ps(dst, v);
  }
}

// Requires C2 % 8 == 0. Each (pixel, dy, m) yields the 2x4 output block rows 4y+2dy+{0,1}, cols 4x..4x+3.
template <typename OutT>
SAMFAST_AVX2 void hyper_avx2(const float* U, int64_t P, int64_t q0, int64_t h, int64_t w, const Packed& pk,
                             const float* hyp, int64_t M, OutT* out) {
  const int64_t C2 = pk.C2, N2p = pk.N2p, W4 = 4 * w, plane = 16 * h * w;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t y = (q0 + p) / w, x = (q0 + p) % w;
    for (int64_t dy = 0; dy < 2; ++dy) {
      const float* u0 = U + (p * 4 + 2 * dy) * N2p;  // lane l: dx = l >> 2, (ey, ex) = l & 3
      for (int64_t m = 0; m < M; ++m) {
        const float* hm = hyp + m * C2;
        __m256 v[8];
#pragma GCC unroll 8
        for (int l = 0; l < 8; ++l) v[l] = _mm256_setzero_ps();
        for (int64_t c = 0; c < C2; c += 8) {
          const __m256 hv = _mm256_loadu_ps(hm + c);
#pragma GCC unroll 8
          for (int l = 0; l < 8; ++l)
            v[l] = _mm256_fmadd_ps(_mm256_loadu_ps(u0 + (l >> 2) * N2p + (l & 3) * C2 + c), hv, v[l]);
        }
        const __m256 s = hsum8_avx2(v);  // [a0..a7]
        const __m128 lo = _mm256_castps256_ps128(s), hi = _mm256_extractf128_ps(s, 1);
        OutT* o = out + m * plane + (4 * y + 2 * dy) * W4 + 4 * x;
        store4_avx2(o, _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(1, 0, 1, 0)));       // ey = 0
        store4_avx2(o + W4, _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 2, 3, 2)));  // ey = 1
      }
    }
  }
}

#endif  // SAMFAST_X86

struct TileBufs {
  AlignedFloats a, t, t2, u, f, fa;
};

using GemmFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, const float*, float*, int64_t,
                        bool);

// T[p, :] = cz + r2 * (r1 * (G + c0b - m1 k1) + U - m2 k2) for the tile's rows (U = c1b + [r1 P0 | P1] Md).
SAMFAST_FLATTEN_BODY void fold_combine_body(const MaskHeadFold& f, int64_t N1p, const float* G, const float* c0b,
                                            const float* s0, const float* s1, int64_t P, const float* U, float* T) {
  for (int64_t p = 0; p < P; ++p) {
    const float m1 = s0[2 * p], r1 = s0[2 * p + 1], m2 = s1[2 * p], r2 = s1[2 * p + 1];
    float* t = T + p * N1p;
    const float* g = G + p * N1p;
    const float* u = U + p * N1p;
    for (int64_t n = 0; n < N1p; ++n) t[n] = f.cz[n] + r2 * (r1 * (g[n] + c0b[n] - m1 * f.k1[n]) + u[n] - m2 * f.k2[n]);
  }
}
void fold_combine_base(const MaskHeadFold& f, int64_t N1p, const float* G, const float* c0b, const float* s0,
                       const float* s1, int64_t P, const float* U, float* T) {
  fold_combine_body(f, N1p, G, c0b, s0, s1, P, U, T);
}
#if SAMFAST_X86
SAMFAST_AVX2 void fold_combine_avx2(const MaskHeadFold& f, int64_t N1p, const float* G, const float* c0b,
                                    const float* s0, const float* s1, int64_t P, const float* U, float* T) {
  fold_combine_body(f, N1p, G, c0b, s0, s1, P, U, T);
}
SAMFAST_AVX512 void fold_combine_avx512(const MaskHeadFold& f, int64_t N1p, const float* G, const float* c0b,
                                        const float* s0, const float* s1, int64_t P, const float* U, float* T) {
  fold_combine_body(f, N1p, G, c0b, s0, s1, P, U, T);
}
#endif

// Tiles with a row that fails mask_head_fold_row_ok (either LayerNorm) take the direct product instead.
bool fold_ok(const MaskHeadArgs& a, int64_t b, int64_t q0, int64_t P) {
  const int64_t row = b * a.h * a.w + q0;
  for (const float* st : {a.fold->st0, a.fold->st1})
    for (int64_t p = 0; p < P; ++p)
      if (!mask_head_fold_row_ok(st + 2 * (row + p))) return false;
  return true;
}

// The first ConvT's pre-activation T [P, N1p] of pixels q0 .. q0 + P - 1 of batch b, in the folded form
// (A: [P, 2 K] scratch, U: [P, N1p] scratch).
void fold_convt(GemmFn gemm, bool avx2, bool avx512, const MaskHeadArgs& a, const Packed& pk, int64_t b, int64_t q0,
                int64_t P, float* T, float* A, float* U) {
  const MaskHeadFold& f = *a.fold;
  const int64_t hw = a.h * a.w, K = f.K, row = b * hw + q0, N1p = pk.N1p;
  const float *s0 = f.st0 + 2 * row, *s1 = f.st1 + 2 * row;
  small_gemm::prefetch_rows(f.G + q0 * N1p, P * N1p);  // per-image rows from DRAM: in flight during the GEMM
  for (int64_t p = 0; p < P; ++p) {
    const float r1 = s0[2 * p + 1];
    const float *p0 = f.P0 + (row + p) * f.ldp, *p1 = f.P1 + (row + p) * f.ldp;
    float* ar = A + p * 2 * K;
    for (int64_t k = 0; k < K; ++k) ar[k] = r1 * p0[k];
    std::memcpy(ar + K, p1, K * sizeof(float));
  }
  gemm(A, 2 * K, P, 2 * K, f.Mp + b * 2 * K * N1p, N1p, f.c1b + b * N1p, U, N1p, false);
  const float* G = f.G + q0 * N1p;
  const float* c0b = f.c0b + b * N1p;
#if SAMFAST_X86
  if (avx512) return fold_combine_avx512(f, N1p, G, c0b, s0, s1, P, U, T);
  if (avx2) return fold_combine_avx2(f, N1p, G, c0b, s0, s1, P, U, T);
#endif
  (void)avx2;
  (void)avx512;
  fold_combine_base(f, N1p, G, c0b, s0, s1, P, U, T);
}

#if SAMFAST_X86
// Requires C1 % 16 == 0; P <= kTile. ln_gelu_avx2 on 16 lanes (GELU's divide replaced by rcp14 + Newton).
SAMFAST_AVX512 void ln_gelu_avx512(const float* T, int64_t P, const Packed& pk, float eps, float* T2) {
  const int64_t C1 = pk.C1, R = 4 * P;
  const float inv_n = 1.f / float(C1);
  alignas(64) float mean[4 * kTile], rstd[4 * kTile];
  for (int64_t r = 0; r < R; ++r) {
    const float* x = T + (r >> 2) * pk.N1p + (r & 3) * C1;
    __m512 sum = _mm512_setzero_ps();
    for (int64_t c = 0; c < C1; c += 16) sum = _mm512_add_ps(sum, _mm512_loadu_ps(x + c));
    const float mu = _mm512_reduce_add_ps(sum) * inv_n;
    const __m512 m = _mm512_set1_ps(mu);
    __m512 vs = _mm512_setzero_ps();
    for (int64_t c = 0; c < C1; c += 16) {
      const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + c), m);
      vs = _mm512_fmadd_ps(d, d, vs);
    }
    mean[r] = mu;
    rstd[r] = 1.f / std::sqrt(_mm512_reduce_add_ps(vs) * inv_n + eps);
  }
  for (int64_t r = 0; r < R; ++r) {
    const float* x = T + (r >> 2) * pk.N1p + (r & 3) * C1;
    float* y = T2 + r * C1;
    const __m512 m = _mm512_set1_ps(mean[r]), rs = _mm512_set1_ps(rstd[r]);
    for (int64_t c = 0; c < C1; c += 16) {
      const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + c), m), rs);
      const __m512 v = _mm512_fmadd_ps(d, _mm512_loadu_ps(pk.lnw + c), _mm512_loadu_ps(pk.lnb + c));
      _mm512_storeu_ps(y + c, gelu_avx512(v));
    }
  }
}
#endif  // SAMFAST_X86

template <typename OutT>
void run_tile(const float* A, int64_t P, int64_t b, int64_t q0, const MaskHeadArgs& args, const Packed& pk,
              const float* hyp, OutT* out, TileBufs& buf, bool avx2, bool avx512) {
  const int64_t C = pk.C, C1 = pk.C1;
  float* T = buf.t.p;
  float* T2 = pk.N1p == 4 * C1 ? T : buf.t2.p;
  float* U = buf.u.p;
#if SAMFAST_X86
  if (avx2) {
    const GemmFn gemm = avx512 ? gemm_avx512 : gemm_avx2;
    if (args.fold && !args.bf16 && fold_ok(args, b, q0, P))
      fold_convt(gemm, avx2, avx512, args, pk, b, q0, P, T, buf.fa.p, buf.f.p);
    else gemm(A, C, P, C, pk.w1p, pk.N1p, pk.b1p, T, pk.N1p, false);
    if (avx512 && C1 % 16 == 0) ln_gelu_avx512(T, P, pk, args.eps, T2);
    else if (C1 % 8 == 0) ln_gelu_avx2(T, P, pk, args.eps, T2);
    else ln_gelu_base(T, P, pk, args.eps, T2);
    gemm(T2, C1, 4 * P, C1, pk.w2p, pk.N2p, pk.b2p, U, pk.N2p, true);
    if (pk.C2 % 8 == 0) hyper_avx2(U, P, q0, args.h, args.w, pk, hyp, args.M, out);
    else hyper_base(U, P, q0, args.h, args.w, pk, hyp, args.M, out);
    return;
  }
#endif
  (void)avx2;
  (void)avx512;
  if (args.fold && !args.bf16 && fold_ok(args, b, q0, P))
    fold_convt(gemm_base, false, false, args, pk, b, q0, P, T, buf.fa.p, buf.f.p);
  else gemm_base(A, C, P, C, pk.w1p, pk.N1p, pk.b1p, T, pk.N1p, false);
  ln_gelu_base(T, P, pk, args.eps, T2);
  gemm_base(T2, C1, 4 * P, C1, pk.w2p, pk.N2p, pk.b2p, U, pk.N2p, true);
  hyper_base(U, P, q0, args.h, args.w, pk, hyp, args.M, out);
}

template <typename OutT>
void mask_head_impl(const MaskHeadArgs& a, const Packed& pk, const float* hyper_all, bool avx2, bool avx512) {
  const int64_t hw = a.h * a.w, ntile = (hw + kTile - 1) / kTile, total = a.B * ntile;
  const int64_t out_batch = a.M * 16 * hw;
#pragma omp parallel
  {
    TileBufs buf;
    if (a.bf16) buf.a.alloc(kTile * pk.C);
    buf.t.alloc(kTile * pk.N1p);
    if (pk.N1p != 4 * pk.C1) buf.t2.alloc(4 * kTile * pk.C1);
    buf.u.alloc(4 * kTile * pk.N2p);
    if (a.fold) {
      buf.f.alloc(kTile * pk.N1p);
      buf.fa.alloc(kTile * 2 * std::max<int64_t>(a.fold->K, 1));
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < total; ++t) {
      const int64_t b = t / ntile, q0 = (t % ntile) * kTile, P = std::min(kTile, hw - q0);
      const float* A;
      if (a.bf16) {
        const uint16_t* s = static_cast<const uint16_t*>(a.src) + (b * hw + q0) * pk.C;
        for (int64_t i = 0; i < P * pk.C; ++i) buf.a.p[i] = bf16_to_float(s[i]);
        A = buf.a.p;
      } else {
        A = static_cast<const float*>(a.src) + (b * hw + q0) * pk.C;
      }
      run_tile(A, P, b, q0, a, pk, hyper_all + b * a.M * pk.C2, static_cast<OutT*>(a.out) + b * out_batch,
               buf, avx2, avx512);
    }
  }
}

// Offsets (floats, multiples of 16) of the packed arrays for (C, C1, C2) from the block's start.
struct PackLayout {
  int64_t N1p, N2p, w1p, b1p, w2p, b2p, lnw, lnb, end;
  PackLayout(int64_t C, int64_t C1, int64_t C2) {
    N1p = mask_head_conv1_width(C1);
    N2p = round_up(4 * C2, kNR);
    w1p = 0;
    b1p = w1p + round_up(N1p * C, 16);
    w2p = b1p + round_up(N1p, 16);
    b2p = w2p + round_up(N2p * C1, 16);
    lnw = b2p + round_up(N2p, 16);
    lnb = lnw + round_up(C1, 16);
    end = lnb + round_up(C1, 16);
  }
};

Packed bind_packed(const MaskHeadArgs& a, const float* base /* 64-byte aligned */) {
  const PackLayout L(a.C, a.C1, a.C2);
  return Packed{a.C, a.C1, a.C2, L.N1p, L.N2p, base + L.w1p, base + L.b1p, base + L.w2p, base + L.b2p,
                base + L.lnw, base + L.lnb};
}

}  // namespace

int64_t mask_head_conv1_width(int64_t C1) { return round_up(4 * C1, kNR); }

void mask_head_fold_prepare(const float* M0, const float* M1, int64_t H, int64_t T, int64_t N1p, const float* c0,
                            const float* c1, float* Mp, float* c0b, float* c1b) {
  const int64_t K = H * (T - 1), last = K;  // rows of the last token: last + h
  for (int64_t n = 0; n < N1p; ++n) {
    c0b[n] = c0[n];
    c1b[n] = c1[n];
  }
  for (int64_t h = 0; h < H; ++h)
    for (int64_t n = 0; n < N1p; ++n) {
      c0b[n] += M0[(last + h) * N1p + n];
      c1b[n] += M1[(last + h) * N1p + n];
    }
  for (int64_t jp = 0; jp < N1p; jp += kNR)
    for (int64_t k = 0; k < 2 * K; ++k) {
      const float* M = k < K ? M0 : M1;
      const int64_t r = k < K ? k : k - K, h = r % H;
      float* dst = Mp + jp * 2 * K + k * kNR;
      for (int64_t j = 0; j < kNR; ++j) dst[j] = M[r * N1p + jp + j] - M[(last + h) * N1p + jp + j];
    }
}

int64_t mask_head_packed_numel(int64_t C, int64_t C1, int64_t C2) { return PackLayout(C, C1, C2).end; }

void pack_mask_head(const MaskHeadArgs& a, float* dst) {
  const PackLayout L(a.C, a.C1, a.C2);
  pack_convt(a.w1, a.C, a.C1, L.N1p, a.bf16, dst + L.w1p);
  pack_convt(a.w2, a.C1, a.C2, L.N2p, a.bf16, dst + L.w2p);
  pack_bias(a.b1, a.C1, L.N1p, a.bf16, dst + L.b1p);
  pack_bias(a.b2, a.C2, L.N2p, a.bf16, dst + L.b2p);
  for (int64_t c = 0; c < a.C1; ++c) {
    dst[L.lnw + c] = load_elem(a.ln_w, c, a.bf16);
    dst[L.lnb + c] = load_elem(a.ln_b, c, a.bf16);
  }
}

void mask_head_cpu(const MaskHeadArgs& a) {
  if (a.B == 0 || a.h == 0 || a.w == 0 || a.M == 0) return;
  // the GEMMs read the panels with aligned loads: a prepacked block off a 64-byte boundary is copied
  AlignedFloats own;
  const float* base = a.prepacked;
  if (!base || reinterpret_cast<uintptr_t>(base) % 64 != 0) {
    const int64_t n = mask_head_packed_numel(a.C, a.C1, a.C2);
    own.alloc(n, false);
    if (base) std::memcpy(own.p, base, n * sizeof(float));
    else pack_mask_head(a, own.p);
    base = own.p;
  }
  const Packed pk = bind_packed(a, base);
  AlignedFloats hyper;
  hyper.alloc(a.B * a.M * a.C2);
  for (int64_t i = 0; i < a.B * a.M * a.C2; ++i) hyper.p[i] = load_elem(a.hyper, i, a.bf16);
  const bool avx2 = use_avx2(), avx512 = avx2 && use_avx512();
  if (a.bf16) mask_head_impl<uint16_t>(a, pk, hyper.p, avx2, avx512);
  else mask_head_impl<float>(a, pk, hyper.p, avx2, avx512);
}

}  // namespace samfast::cpu
