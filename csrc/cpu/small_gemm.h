// Small dense GEMM + exp helpers shared by the decoder attention kernels (image->token, token->image):
// C[R, Np] += A[R, K] @ B[K, Np] with row strides, Np % 8 == 0; 6x16 AVX2+FMA register blocks plus a
// portable path. Header-only; AVX2 functions carry SAMFAST_AVX2 and run only after use_avx2().
#pragma once
#include <cmath>
#include <cstdint>

#include "cpu/mask_simd.h"

namespace samfast::cpu::small_gemm {

constexpr int64_t kMR = 6;  // rows per register block

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// ---- portable path -------------------------------------------------------------------------

// C[R, ldc] += A[R, K] (row stride lda) @ B[K, Np] (row stride ldb); Np % 8 == 0.
inline void gemm_base(const float* A, int64_t lda, int64_t R, int64_t K, const float* B, int64_t ldb, int64_t Np,
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

inline void exp_row_base(float* s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) s[j] = std::exp(s[j]);
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
SAMFAST_AVX2 inline void rows_avx2(const float* A, int64_t lda, int64_t K, const float* B, int64_t ldb, int64_t Np,
                            float* C, int64_t ldc) {
  int64_t j = 0;
  for (; j + 16 <= Np; j += 16) micro_avx2<MR, 2>(A, lda, K, B + j, ldb, C + j, ldc);
  if (j < Np) micro_avx2<MR, 1>(A, lda, K, B + j, ldb, C + j, ldc);
}

SAMFAST_AVX2 inline void gemm_avx2(const float* A, int64_t lda, int64_t R, int64_t K, const float* B, int64_t ldb,
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

SAMFAST_AVX2 inline void exp_row_avx2(float* s, int64_t n) {  // n % 8 == 0
  for (int64_t j = 0; j < n; j += 8) _mm256_storeu_ps(s + j, exp_avx2(_mm256_loadu_ps(s + j)));
}
#endif  // SAMFAST_X86

}  // namespace samfast::cpu::small_gemm
