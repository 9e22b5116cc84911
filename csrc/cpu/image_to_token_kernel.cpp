// Fused image->token attention + residual + LayerNorm (see image_to_token_kernel.h).
// Per tile of kTile image rows: S = Q @ U + cb (scores, [rows, HTp]), per-head softmax in place,
// O = residual + out_bias + P @ R ([rows, Cp]), LayerNorm row by row into `out`.
// U / R / cb are repacked once per call with their column counts padded to multiples of 8
// (padding is zero, so padded score columns multiply zero rows of R and padded O columns are ignored).
#include "cpu/image_to_token_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"

namespace samfast::cpu {
namespace {

constexpr int64_t kTile = 24;  // image rows per tile (4 register blocks of 6 rows)
constexpr int64_t kMR = 6;     // rows per register block

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// ---- portable path -------------------------------------------------------------------------

// C[R, ldc] += A[R, K] (row stride lda) @ B[K, Np] (row stride ldb); Np % 8 == 0.
void gemm_base(const float* A, int64_t lda, int64_t R, int64_t K, const float* B, int64_t ldb, int64_t Np,
               float* C, int64_t ldc) {
  for (int64_t i = 0; i < R; ++i) {
    float* c = C + i * ldc;
    for (int64_t k = 0; k < K; ++k) {
      const float a = A[i * lda + k];
      const float* b = B + k * ldb;
      for (int64_t j = 0; j < Np; ++j) c[j] += a * b[j];
    }
  }
}

void exp_row_base(float* s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) s[j] = std::exp(s[j]);
}

void layer_norm_row_base(const float* y, int64_t C, const float* w, const float* bias, float eps, float* out) {
  float mean = 0.f;
  for (int64_t c = 0; c < C; ++c) mean += y[c];
  mean /= static_cast<float>(C);
  float var = 0.f;
  for (int64_t c = 0; c < C; ++c) var += (y[c] - mean) * (y[c] - mean);
  const float rstd = 1.f / std::sqrt(var / static_cast<float>(C) + eps);
  for (int64_t c = 0; c < C; ++c) out[c] = (y[c] - mean) * rstd * w[c] + bias[c];
}

// ---- AVX2 + FMA path -----------------------------------------------------------------------
#if SAMFAST_X86

// exp(x), Cephes-style: 2^n * p(r), |rel error| ~ 2 ulp; x clamped to [-87.3, 88.3].
SAMFAST_AVX2 inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// Register block: C[MR, 8*NV] += A[MR, K] @ B[K, 8*NV].
template <int MR, int NV>
SAMFAST_AVX2 inline void micro_avx2(const float* A, int64_t lda, int64_t K, const float* B, int64_t ldb,
                                    float* C, int64_t ldc) {
  // (the unroll pragmas keep acc in registers: without them GCC spills it every iteration)
  __m256 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_loadu_ps(C + i * ldc + 8 * v);
  for (int64_t k = 0; k < K; ++k) {
    __m256 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(B + k * ldb + 8 * v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + i * lda + k);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(a, b[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(C + i * ldc + 8 * v, acc[i][v]);
}

template <int MR>
SAMFAST_AVX2 void rows_avx2(const float* A, int64_t lda, int64_t K, const float* B, int64_t ldb, int64_t Np,
                            float* C, int64_t ldc) {
  int64_t j = 0;
  for (; j + 16 <= Np; j += 16) micro_avx2<MR, 2>(A, lda, K, B + j, ldb, C + j, ldc);
  if (j < Np) micro_avx2<MR, 1>(A, lda, K, B + j, ldb, C + j, ldc);
}

SAMFAST_AVX2 void gemm_avx2(const float* A, int64_t lda, int64_t R, int64_t K, const float* B, int64_t ldb,
                            int64_t Np, float* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + kMR <= R; i += kMR) rows_avx2<kMR>(A + i * lda, lda, K, B, ldb, Np, C + i * ldc, ldc);
  const float* a = A + i * lda;
  float* c = C + i * ldc;
  switch (R - i) {
    case 5: rows_avx2<5>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 4: rows_avx2<4>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 3: rows_avx2<3>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 2: rows_avx2<2>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 1: rows_avx2<1>(a, lda, K, B, ldb, Np, c, ldc); break;
    default: break;
  }
}

SAMFAST_AVX2 void exp_row_avx2(float* s, int64_t n) {  // n % 8 == 0
  for (int64_t j = 0; j < n; j += 8) _mm256_storeu_ps(s + j, exp_avx2(_mm256_loadu_ps(s + j)));
}

// y: [Cp] with Cp % 8 == 0 and y[C:Cp] == 0 (zero padding).
SAMFAST_AVX2 void layer_norm_row_avx2(const float* y, int64_t C, int64_t Cp, const float* w, const float* bias,
                                      float eps, float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t c = 0; c < Cp; c += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(y + c));
  const float mean = _mm256_cvtss_f32(hsum_bcast_avx2(acc)) / static_cast<float>(C);
  const __m256 m = _mm256_set1_ps(mean);
  acc = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(y + c), m);
    acc = _mm256_fmadd_ps(d, d, acc);
  }
  float var = _mm256_cvtss_f32(hsum_bcast_avx2(acc));
  for (; c < C; ++c) var += (y[c] - mean) * (y[c] - mean);
  const float rstd = 1.f / std::sqrt(var / static_cast<float>(C) + eps);
  const __m256 rs = _mm256_set1_ps(rstd);
  for (c = 0; c + 8 <= C; c += 8) {
    const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(y + c), m), rs);
    _mm256_storeu_ps(out + c, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + c), _mm256_loadu_ps(bias + c)));
  }
  for (; c < C; ++c) out[c] = (y[c] - mean) * rstd * w[c] + bias[c];
}
#endif  // SAMFAST_X86

// ---- driver --------------------------------------------------------------------------------

struct Packed {
  int64_t HT = 0, HTp = 0, Cp = 0;
  AlignedFloats u;   // [B, Cq, HTp]
  AlignedFloats cb;  // [B, HTp]
  AlignedFloats r;   // [B, HT, Cp]
  AlignedFloats ob;  // [Cp] out_bias, zero padded
};

struct TileBufs {
  AlignedFloats q;  // [kTile, Cq] q_in + q_add
  AlignedFloats s;  // [kTile, HTp] scores -> probabilities
  AlignedFloats o;  // [kTile, Cp] residual + attention output
};

void run_tile(const ImageToTokenArgs& a, const Packed& pk, int64_t b, int64_t n0, int64_t R, TileBufs& buf,
              bool avx2) {
  const int64_t Cq = a.Cq, C = a.C, T = a.T, HT = pk.HT, HTp = pk.HTp, Cp = pk.Cp;
  const float* Q = a.q_in + ((a.Bq == 1 ? 0 : b) * a.N + n0) * Cq;
  if (a.q_add) {
    const float* qa = a.q_add + n0 * Cq;
    for (int64_t i = 0; i < R * Cq; ++i) buf.q.p[i] = Q[i] + qa[i];
    Q = buf.q.p;
  }
  // scores
  float* S = buf.s.p;
  for (int64_t i = 0; i < R; ++i) std::memcpy(S + i * HTp, pk.cb.p + b * HTp, HTp * sizeof(float));
  const float* U = pk.u.p + b * Cq * HTp;
#if SAMFAST_X86
  if (avx2) gemm_avx2(Q, Cq, R, Cq, U, HTp, HTp, S, HTp);
  else
#endif
    gemm_base(Q, Cq, R, Cq, U, HTp, HTp, S, HTp);
  // per-head softmax over T
  for (int64_t i = 0; i < R; ++i) {
    float* s = S + i * HTp;
    for (int64_t h = 0; h < a.H; ++h) {
      float* sh = s + h * T;
      float m = sh[0];
      for (int64_t t = 1; t < T; ++t) m = std::max(m, sh[t]);
      for (int64_t t = 0; t < T; ++t) sh[t] -= m;
    }
#if SAMFAST_X86
    if (avx2) exp_row_avx2(s, HTp);
    else
#endif
      exp_row_base(s, HT);
    for (int64_t h = 0; h < a.H; ++h) {
      float* sh = s + h * T;
      float sum = 0.f;
      for (int64_t t = 0; t < T; ++t) sum += sh[t];
      const float inv = 1.f / sum;
      for (int64_t t = 0; t < T; ++t) sh[t] *= inv;
    }
  }
  // O = residual + out_bias + P @ R
  float* O = buf.o.p;
  const float* X = a.residual + ((a.Bx == 1 ? 0 : b) * a.N + n0) * C;
  for (int64_t i = 0; i < R; ++i) {
    float* o = O + i * Cp;
    const float* xr = X + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] = xr[c] + pk.ob.p[c];
    for (int64_t c = C; c < Cp; ++c) o[c] = 0.f;
  }
  const float* Rm = pk.r.p + b * HT * Cp;
#if SAMFAST_X86
  if (avx2) gemm_avx2(S, HTp, R, HT, Rm, Cp, Cp, O, Cp);
  else
#endif
    gemm_base(S, HTp, R, HT, Rm, Cp, Cp, O, Cp);
  // LayerNorm
  float* out = a.out + (b * a.N + n0) * C;
  for (int64_t i = 0; i < R; ++i) {
#if SAMFAST_X86
    if (avx2) {
      layer_norm_row_avx2(O + i * Cp, C, Cp, a.ln_w, a.ln_b, a.eps, out + i * C);
      continue;
    }
#endif
    layer_norm_row_base(O + i * Cp, C, a.ln_w, a.ln_b, a.eps, out + i * C);
  }
}

}  // namespace

void image_to_token_cpu(const ImageToTokenArgs& a) {
  if (a.B == 0 || a.N == 0 || a.C == 0) return;
  Packed pk;
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
  const bool avx2 = use_avx2();
  const int64_t ntile = (a.N + kTile - 1) / kTile, total = a.B * ntile;
#pragma omp parallel
  {
    TileBufs buf;
    if (a.q_add) buf.q.alloc(kTile * a.Cq);
    buf.s.alloc(kTile * pk.HTp);
    buf.o.alloc(kTile * pk.Cp);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < total; ++t) {
      const int64_t b = t / ntile, n0 = (t % ntile) * kTile;
      run_tile(a, pk, b, n0, std::min(kTile, a.N - n0), buf, avx2);
    }
  }
}

}  // namespace samfast::cpu
