// Small dense GEMM + exp helpers shared by the decoder attention kernels (image->token, token->image):
// C[R, Np] += A[R, K] @ B[K, Np] with row strides, Np % 8 == 0; A may also be given transposed
// (AT = true: A(i, k) = A[k * lda + i]). Register blocks of 12x32 (AVX-512F),
// 6x16 (AVX2+FMA) and a portable 4x8 one (generic vectors); `gemm(isa, ...)` dispatches on the level picked at run time by
// pick_isa() (SAMFAST_SIMD caps it). Header-only; ISA-specific functions carry target attributes.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"

namespace samfast::cpu::small_gemm {

constexpr int64_t kMR = 6;  // rows per register block

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Requests the n floats at p (contiguous) into L1 ahead of use, one hint per 64-byte line, so that the misses of
// a tile's rows overlap instead of stalling the loads one stream at a time; a no-op where unsupported.
inline void prefetch_rows(const float* p, int64_t n) {
#if defined(__GNUC__)
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 3);
#else
  (void)p;
  (void)n;
#endif
}

// A(i, k) of a row-major A (AT = false) or of A stored transposed (AT = true); lda = its row stride.
template <bool AT>
inline const float* a_at(const float* A, int64_t lda, int64_t i, int64_t k) {
  return AT ? A + k * lda + i : A + i * lda + k;
}

// ---- portable path -------------------------------------------------------------------------

// C[MR, 8] += A[MR, K] @ B[K, 8]: k in order per element (the naive loop's sums), 8 accumulators.
template <int MR, bool AT>
inline void block_base(const float* A, int64_t lda, int64_t K, const float* B, int64_t ldb, float* C, int64_t ldc) {
  v4f c0[MR], c1[MR];
  for (int r = 0; r < MR; ++r) {
    c0[r] = load4(C + r * ldc);
    c1[r] = load4(C + r * ldc + 4);
  }
  for (int64_t k = 0; k < K; ++k) {
    const v4f b0 = load4(B + k * ldb), b1 = load4(B + k * ldb + 4);
    for (int r = 0; r < MR; ++r) {
      const v4f a = splat4(*a_at<AT>(A, lda, r, k));
      c0[r] += a * b0;
      c1[r] += a * b1;
    }
  }
  for (int r = 0; r < MR; ++r) {
    store4(C + r * ldc, c0[r]);
    store4(C + r * ldc + 4, c1[r]);
  }
}

template <bool AT = false>
inline void gemm_base(const float* A, int64_t lda, int64_t R, int64_t K, const float* B, int64_t ldb, int64_t Np,
                      float* C, int64_t ldc) {
  for (int64_t j = 0; j < Np; j += 8)
    for (int64_t i = 0; i < R; i += 4) {
      const float* a = a_at<AT>(A, lda, i, 0);
      float* c = C + i * ldc + j;
      switch (std::min<int64_t>(4, R - i)) {
        case 4: block_base<4, AT>(a, lda, K, B + j, ldb, c, ldc); break;
        case 3: block_base<3, AT>(a, lda, K, B + j, ldb, c, ldc); break;
        case 2: block_base<2, AT>(a, lda, K, B + j, ldb, c, ldc); break;
        default: block_base<1, AT>(a, lda, K, B + j, ldb, c, ldc); break;
      }
    }
}

inline void exp_row_base(float* s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) s[j] = std::exp(s[j]);
}

// ---- AVX2 + FMA path -----------------------------------------------------------------------
#if SAMFAST_X86

// exp(x), Cephes-style: 2^n * p(r), |rel error| ~ 2 ulp; x clamped to [-87.3, 88.3]. NaN stays NaN
// (max/min return their second operand when one is NaN, so x goes second).
SAMFAST_AVX2 inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.3f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
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
template <int MR, int NV, bool AT>
SAMFAST_AVX2 inline void micro_avx2(const float* A, int64_t lda, int64_t K, const float* B, int64_t ldb,
                                    float* C, int64_t ldc) {
  // (the unroll pragmas keep acc in registers: without them GCC spills it every iteration)
  __m256 acc[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_loadu_ps(C + i * ldc + 8 * v);
  for (int64_t k = 0; k < K; ++k) {
    __m256 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(B + k * ldb + 8 * v);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(a_at<AT>(A, lda, i, k));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(a, b[v], acc[i][v]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(C + i * ldc + 8 * v, acc[i][v]);
}

template <int MR, bool AT>
SAMFAST_AVX2 inline void rows_avx2(const float* A, int64_t lda, int64_t K, const float* B, int64_t ldb, int64_t Np,
                                   float* C, int64_t ldc) {
  int64_t j = 0;
  for (; j + 16 <= Np; j += 16) micro_avx2<MR, 2, AT>(A, lda, K, B + j, ldb, C + j, ldc);
  if (j < Np) micro_avx2<MR, 1, AT>(A, lda, K, B + j, ldb, C + j, ldc);
}

template <bool AT = false>
SAMFAST_AVX2 inline void gemm_avx2(const float* A, int64_t lda, int64_t R, int64_t K, const float* B, int64_t ldb,
                                   int64_t Np, float* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + kMR <= R; i += kMR) rows_avx2<kMR, AT>(a_at<AT>(A, lda, i, 0), lda, K, B, ldb, Np, C + i * ldc, ldc);
  const float* a = a_at<AT>(A, lda, i, 0);
  float* c = C + i * ldc;
  switch (R - i) {
    case 5: rows_avx2<5, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 4: rows_avx2<4, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 3: rows_avx2<3, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 2: rows_avx2<2, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 1: rows_avx2<1, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    default: break;
  }
}

SAMFAST_AVX2 inline void exp_row_avx2(float* s, int64_t n) {  // n % 8 == 0
  for (int64_t j = 0; j < n; j += 8) _mm256_storeu_ps(s + j, exp_avx2(_mm256_loadu_ps(s + j)));
}

// ---- AVX-512F path -------------------------------------------------------------------------

// exp_avx2 on 16 lanes: the same operations, so the same result in every lane.
SAMFAST_AVX512 inline __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(88.3f), _mm512_max_ps(_mm512_set1_ps(-87.3f), x));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

SAMFAST_AVX512 inline void exp_row_avx512(float* s, int64_t n) {  // n % 8 == 0
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(s + j, exp_avx512(_mm512_loadu_ps(s + j)));
  if (j < n) _mm256_storeu_ps(s + j, exp_avx2(_mm256_loadu_ps(s + j)));
}

// Register block: C[MR, 16*NV] += A[MR, K] @ B[K, 16*NV].
template <int MR, int NV, bool AT>
SAMFAST_AVX512 inline void micro_avx512(const float* A, int64_t lda, int64_t K, const float* B, int64_t ldb,
                                        float* C, int64_t ldc) {
  __m512 acc[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_loadu_ps(C + i * ldc + 16 * v);
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(B + k * ldb + 16 * v);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(*a_at<AT>(A, lda, i, k));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + i * ldc + 16 * v, acc[i][v]);
}

template <int MR, bool AT>
SAMFAST_AVX512 inline void rows_avx512(const float* A, int64_t lda, int64_t K, const float* B, int64_t ldb,
                                       int64_t Np, float* C, int64_t ldc) {
  int64_t j = 0;
  for (; j + 32 <= Np; j += 32) micro_avx512<MR, 2, AT>(A, lda, K, B + j, ldb, C + j, ldc);
  if (j + 16 <= Np) {
    micro_avx512<MR, 1, AT>(A, lda, K, B + j, ldb, C + j, ldc);
    j += 16;
  }
  if (j < Np) micro_avx2<MR, 1, AT>(A, lda, K, B + j, ldb, C + j, ldc);  // the last 8 columns
}

constexpr int64_t kMR512 = 12;  // rows per AVX-512 register block (24 accumulators)

template <bool AT = false>
SAMFAST_AVX512 inline void gemm_avx512(const float* A, int64_t lda, int64_t R, int64_t K, const float* B,
                                       int64_t ldb, int64_t Np, float* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + kMR512 <= R; i += kMR512)
    rows_avx512<kMR512, AT>(a_at<AT>(A, lda, i, 0), lda, K, B, ldb, Np, C + i * ldc, ldc);
  const float* a = a_at<AT>(A, lda, i, 0);
  float* c = C + i * ldc;
  switch (R - i) {
    case 11: rows_avx512<11, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 10: rows_avx512<10, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 9: rows_avx512<9, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 8: rows_avx512<8, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 7: rows_avx512<7, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 6: rows_avx512<6, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 5: rows_avx512<5, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 4: rows_avx512<4, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 3: rows_avx512<3, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 2: rows_avx512<2, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    case 1: rows_avx512<1, AT>(a, lda, K, B, ldb, Np, c, ldc); break;
    default: break;
  }
}
#endif  // SAMFAST_X86

// ---- dispatch ------------------------------------------------------------------------------
enum class Isa { Base, Avx2, Avx512 };

inline Isa pick_isa() {
  if (!use_avx2()) return Isa::Base;
  return use_avx512() ? Isa::Avx512 : Isa::Avx2;
}

// C[R, ldc] += A[R, K] @ B[K, Np]; Np % 8 == 0. AT: A stored transposed ([K, R] with row stride lda).
template <bool AT = false>
inline void gemm(Isa isa, const float* A, int64_t lda, int64_t R, int64_t K, const float* B, int64_t ldb,
                 int64_t Np, float* C, int64_t ldc) {
#if SAMFAST_X86
  if (isa == Isa::Avx512) return gemm_avx512<AT>(A, lda, R, K, B, ldb, Np, C, ldc);
  if (isa == Isa::Avx2) return gemm_avx2<AT>(A, lda, R, K, B, ldb, Np, C, ldc);
#endif
  (void)isa;
  gemm_base<AT>(A, lda, R, K, B, ldb, Np, C, ldc);
}

// s[j] = exp(s[j]); n % 8 == 0.
inline void exp_row(Isa isa, float* s, int64_t n) {
#if SAMFAST_X86
  if (isa == Isa::Avx512) return exp_row_avx512(s, n);
  if (isa != Isa::Base) return exp_row_avx2(s, n);
#endif
  (void)isa;
  exp_row_base(s, n);
}

// ---- softmax of one row -------------------------------------------------------------------
// s[0:n] = softmax(s[0:n]) in place; n % 8 == 0 (AVX2 path).

inline void softmax_row_base(float* s, int64_t n) {
  float m = s[0];
  for (int64_t j = 1; j < n; ++j) m = std::max(m, s[j]);
  float sum = 0.f;
  for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - m));
  const float inv = 1.f / sum;
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

#if SAMFAST_X86
SAMFAST_AVX2 inline void softmax_row_avx2(float* s, int64_t n) {
  __m256 m0 = _mm256_loadu_ps(s), m1 = m0;
  int64_t j = 8;
  for (; j + 16 <= n; j += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(s + j));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(s + j + 8));
  }
  for (; j < n; j += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(s + j));
  m0 = _mm256_max_ps(m0, m1);
  m0 = _mm256_max_ps(m0, _mm256_permute2f128_ps(m0, m0, 0x01));
  m0 = _mm256_max_ps(m0, _mm256_shuffle_ps(m0, m0, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m256 m = _mm256_max_ps(m0, _mm256_shuffle_ps(m0, m0, _MM_SHUFFLE(2, 3, 0, 1)));
  __m256 acc = _mm256_setzero_ps();
  for (j = 0; j < n; j += 8) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + j), m));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.f), hsum_bcast_avx2(acc));
  for (j = 0; j < n; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
}
#endif  // SAMFAST_X86

#if SAMFAST_X86
SAMFAST_AVX512 inline void softmax_row_avx512(float* s, int64_t n) {  // n % 16 == 0
  __m512 m0 = _mm512_loadu_ps(s);
  for (int64_t j = 16; j < n; j += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + j));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(m0));
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
    _mm512_storeu_ps(s + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(acc));
  for (int64_t j = 0; j < n; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), inv));
}
#endif  // SAMFAST_X86

inline void softmax_row(Isa isa, float* s, int64_t n) {
#if SAMFAST_X86
  if (isa == Isa::Avx512 && n % 16 == 0) return softmax_row_avx512(s, n);
  if (isa != Isa::Base) return softmax_row_avx2(s, n);
#endif
  (void)isa;
  softmax_row_base(s, n);
}

// ---- LayerNorm of one row ------------------------------------------------------------------
// out = (y - mean) / sqrt(var + eps) * w + bias over y[0:C] (biased variance); out may alias y.

inline void layer_norm_row_base(const float* y, int64_t C, const float* w, const float* bias, float eps,
                                float* out, float* stats) {
  float mean = 0.f;
  for (int64_t c = 0; c < C; ++c) mean += y[c];
  mean /= static_cast<float>(C);
  float var = 0.f;
  for (int64_t c = 0; c < C; ++c) var += (y[c] - mean) * (y[c] - mean);
  const float rstd = 1.f / std::sqrt(var / static_cast<float>(C) + eps);
  if (stats) stats[0] = mean, stats[1] = rstd;
  for (int64_t c = 0; c < C; ++c) out[c] = (y[c] - mean) * rstd * w[c] + bias[c];
}

#if SAMFAST_X86
// y: [Cp] with Cp % 8 == 0 and y[C:Cp] == 0 (zero padding).
SAMFAST_AVX2 inline void layer_norm_row_avx2(const float* y, int64_t C, int64_t Cp, const float* w,
                                             const float* bias, float eps, float* out, float* stats) {
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
  if (stats) stats[0] = mean, stats[1] = rstd;
  const __m256 rs = _mm256_set1_ps(rstd);
  for (c = 0; c + 8 <= C; c += 8) {
    const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(y + c), m), rs);
    _mm256_storeu_ps(out + c, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + c), _mm256_loadu_ps(bias + c)));
  }
  for (; c < C; ++c) out[c] = (y[c] - mean) * rstd * w[c] + bias[c];
}
#endif  // SAMFAST_X86

#if SAMFAST_X86
// C % 16 == 0, C <= 256: the row stays in registers (one load pass).
SAMFAST_AVX512 inline void layer_norm_row_avx512(const float* y, int64_t C, const float* w, const float* bias,
                                                 float eps, float* out, float* stats) {
  __m512 v[16];
  const int64_t nv = C / 16;
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < nv; ++i) acc = _mm512_add_ps(acc, v[i] = _mm512_loadu_ps(y + 16 * i));
  const float mean = _mm512_reduce_add_ps(acc) / static_cast<float>(C);
  const __m512 m = _mm512_set1_ps(mean);
  acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < nv; ++i) {
    v[i] = _mm512_sub_ps(v[i], m);
    acc = _mm512_fmadd_ps(v[i], v[i], acc);
  }
  const float rstd = 1.f / std::sqrt(_mm512_reduce_add_ps(acc) / static_cast<float>(C) + eps);
  if (stats) stats[0] = mean, stats[1] = rstd;
  const __m512 rs = _mm512_set1_ps(rstd);
  for (int64_t i = 0; i < nv; ++i)
    _mm512_storeu_ps(out + 16 * i, _mm512_fmadd_ps(_mm512_mul_ps(v[i], rs), _mm512_loadu_ps(w + 16 * i),
                                                   _mm512_loadu_ps(bias + 16 * i)));
}
#endif  // SAMFAST_X86

// y: [Cp], Cp % 8 == 0, zero padded past C. stats (optional): {mean, rstd} of the row.
inline void layer_norm_row(Isa isa, const float* y, int64_t C, int64_t Cp, const float* w, const float* bias,
                           float eps, float* out, float* stats = nullptr) {
#if SAMFAST_X86
  if (isa == Isa::Avx512 && C % 16 == 0 && C <= 256) return layer_norm_row_avx512(y, C, w, bias, eps, out, stats);
  if (isa != Isa::Base) return layer_norm_row_avx2(y, C, Cp, w, bias, eps, out, stats);
#endif
  (void)isa;
  (void)Cp;
  layer_norm_row_base(y, C, w, bias, eps, out, stats);
}

// out[i] = a[i] + b[i] for i < n (out may be a or b). Files built for the baseline ISA would run this loop
// 4 floats at a time; the wrappers compile it per ISA.
SAMFAST_FLATTEN_BODY void add_body(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
#if SAMFAST_X86
SAMFAST_AVX2 inline void add_avx2(const float* a, const float* b, float* out, int64_t n) { add_body(a, b, out, n); }
SAMFAST_AVX512 inline void add_avx512(const float* a, const float* b, float* out, int64_t n) {
  add_body(a, b, out, n);
}
#endif

inline void add(Isa isa, const float* a, const float* b, float* out, int64_t n) {
#if SAMFAST_X86
  if (isa == Isa::Avx512) return add_avx512(a, b, out, n);
  if (isa == Isa::Avx2) return add_avx2(a, b, out, n);
#endif
  (void)isa;
  add_body(a, b, out, n);
}

}  // namespace samfast::cpu::small_gemm
