// The mask head's GEMMs (see mask_head_kernel.cpp): C[rows, Np] = A[rows, K] (row stride lda) x Bp + bias, with
// optional exact GELU on the result, B packed into 16-column panels ([Np / 16][K][16], zero padded, 64-byte
// aligned). Register-blocked: portable 4x8 blocks (generic 4-float vectors), AVX2+FMA 6x16, AVX-512F 12x32; the
// caller picks one at run time. Internal to the mask head kernel (included by one translation unit).
#pragma once
#include <algorithm>
#include <cstdint>

#include "cpu/mask_simd.h"

namespace samfast::cpu::mask_head_gemm {

constexpr int64_t kNR = 16;  // panel width: two 8-float vectors

// ---------------------------------------------------------------- portable path

// C[MR, 8] = bias + A[MR, K] @ (8 columns of a packed panel, row stride kNR), optionally GELU.
template <int MR>
inline void block_base(const float* A, int64_t lda, int64_t K, const float* Bp, const float* bias, float* Cm,
                       int64_t ldc, bool gelu) {
  v4f c0[MR], c1[MR];
  for (int r = 0; r < MR; ++r) {
    c0[r] = load4(bias);
    c1[r] = load4(bias + 4);
  }
  for (int64_t k = 0; k < K; ++k) {
    const v4f b0 = load4(Bp + k * kNR), b1 = load4(Bp + k * kNR + 4);
    for (int r = 0; r < MR; ++r) {
      const v4f a = splat4(A[r * lda + k]);
      c0[r] += a * b0;
      c1[r] += a * b1;
    }
  }
  for (int r = 0; r < MR; ++r) {
    store4(Cm + r * ldc, gelu ? gelu4(c0[r]) : c0[r]);
    store4(Cm + r * ldc + 4, gelu ? gelu4(c1[r]) : c1[r]);
  }
}

// C[rows, Np] = A[rows, K] (row stride lda) x Bp + bias, optionally GELU. Portable: 4x8 register blocks.
inline void gemm_base(const float* A, int64_t lda, int64_t rows, int64_t K, const float* Bp, int64_t Np,
                      const float* bias, float* Cm, int64_t ldc, bool gelu) {
  for (int64_t j = 0; j < Np; j += 8) {
    const float* panel = Bp + (j / kNR) * kNR * K + j % kNR;
    for (int64_t i = 0; i < rows; i += 4) {
      const float* a = A + i * lda;
      float* c = Cm + i * ldc + j;
      switch (std::min<int64_t>(4, rows - i)) {
        case 4: block_base<4>(a, lda, K, panel, bias + j, c, ldc, gelu); break;
        case 3: block_base<3>(a, lda, K, panel, bias + j, c, ldc, gelu); break;
        case 2: block_base<2>(a, lda, K, panel, bias + j, c, ldc, gelu); break;
        default: block_base<1>(a, lda, K, panel, bias + j, c, ldc, gelu); break;
      }
    }
  }
}

#if SAMFAST_X86
// ---------------------------------------------------------------- AVX2 + FMA path

template <int R>
SAMFAST_AVX2 inline void ukernel_avx2(const float* A, int64_t lda, const float* Bp, int64_t K,
                                      const float* bias, float* Cm, int64_t ldc, bool gelu) {
  __m256 c0[R], c1[R];
  const __m256 z0 = _mm256_loadu_ps(bias), z1 = _mm256_loadu_ps(bias + 8);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) { c0[i] = z0; c1[i] = z1; }
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_load_ps(Bp + k * kNR), b1 = _mm256_load_ps(Bp + k * kNR + 8);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 av = _mm256_broadcast_ss(A + i * lda + k);
      c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    if (gelu) { c0[i] = gelu_avx2(c0[i]); c1[i] = gelu_avx2(c1[i]); }
    _mm256_storeu_ps(Cm + i * ldc, c0[i]);
    _mm256_storeu_ps(Cm + i * ldc + 8, c1[i]);
  }
}

SAMFAST_AVX2 inline void gemm_avx2(const float* A, int64_t lda, int64_t rows, int64_t K, const float* Bp,
                                   int64_t Np, const float* bias, float* Cm, int64_t ldc, bool gelu) {
  for (int64_t jp = 0; jp < Np; jp += kNR) {
    const float* panel = Bp + jp * K;
    int64_t i = 0;
    for (; i + 6 <= rows; i += 6) ukernel_avx2<6>(A + i * lda, lda, panel, K, bias + jp, Cm + i * ldc + jp, ldc, gelu);
    const float* a = A + i * lda;
    float* c = Cm + i * ldc + jp;
    switch (rows - i) {
      case 5: ukernel_avx2<5>(a, lda, panel, K, bias + jp, c, ldc, gelu); break;
      case 4: ukernel_avx2<4>(a, lda, panel, K, bias + jp, c, ldc, gelu); break;
      case 3: ukernel_avx2<3>(a, lda, panel, K, bias + jp, c, ldc, gelu); break;
      case 2: ukernel_avx2<2>(a, lda, panel, K, bias + jp, c, ldc, gelu); break;
      case 1: ukernel_avx2<1>(a, lda, panel, K, bias + jp, c, ldc, gelu); break;
      default: break;
    }
  }
}

// ---------------------------------------------------------------- AVX-512F path

// R rows x NV panels (16 columns each, one zmm): panel v of this block starts at Bp + v * kNR * K.
template <int R, int NV>
SAMFAST_AVX512 inline void ukernel_avx512(const float* A, int64_t lda, const float* Bp, int64_t K,
                                          const float* bias, float* Cm, int64_t ldc, bool gelu) {
  __m512 c[R][NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    const __m512 z = _mm512_loadu_ps(bias + 16 * v);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) c[i][v] = z;
  }
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(Bp + v * kNR * K + k * kNR);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(A[i * lda + k]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) c[i][v] = _mm512_fmadd_ps(av, b[v], c[i][v]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(Cm + i * ldc + 16 * v, gelu ? gelu_avx512(c[i][v]) : c[i][v]);
}

template <int NV>
SAMFAST_AVX512 inline void panels_avx512(const float* A, int64_t lda, int64_t rows, int64_t K, const float* panel,
                                         const float* bias, float* Cm, int64_t ldc, bool gelu) {
  int64_t i = 0;
  for (; i + 12 <= rows; i += 12) ukernel_avx512<12, NV>(A + i * lda, lda, panel, K, bias, Cm + i * ldc, ldc, gelu);
  const float* a = A + i * lda;
  float* c = Cm + i * ldc;
  switch (rows - i) {
    case 11: ukernel_avx512<11, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 10: ukernel_avx512<10, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 9: ukernel_avx512<9, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 8: ukernel_avx512<8, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 7: ukernel_avx512<7, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 6: ukernel_avx512<6, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 5: ukernel_avx512<5, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 4: ukernel_avx512<4, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 3: ukernel_avx512<3, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 2: ukernel_avx512<2, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    case 1: ukernel_avx512<1, NV>(a, lda, panel, K, bias, c, ldc, gelu); break;
    default: break;
  }
}

// Same contract as gemm_avx2: two panels (32 columns) per register block, 12 rows.
SAMFAST_AVX512 inline void gemm_avx512(const float* A, int64_t lda, int64_t rows, int64_t K, const float* Bp,
                                       int64_t Np, const float* bias, float* Cm, int64_t ldc, bool gelu) {
  int64_t jp = 0;
  for (; jp + 2 * kNR <= Np; jp += 2 * kNR)
    panels_avx512<2>(A, lda, rows, K, Bp + jp * K, bias + jp, Cm + jp, ldc, gelu);
  if (jp < Np) panels_avx512<1>(A, lda, rows, K, Bp + jp * K, bias + jp, Cm + jp, ldc, gelu);
}
#endif  // SAMFAST_X86

}  // namespace samfast::cpu::mask_head_gemm
