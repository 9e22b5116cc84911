// Shared pieces of the projection-pass kernels (proj_pass_kernel.cpp, proj_stats0_kernel.cpp): pixel tiles of kP
// = 32 held feature-major ([features, kP], the per-image block's layout), so per-pixel work is loops across the
// tile that vectorize and the small products are GEMMs whose wide side is the tile's pixels.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"
#include "cpu/proj_pass_kernel.h"
#include "cpu/small_gemm.h"

namespace samfast::cpu::proj_tile {

using small_gemm::Isa;
using small_gemm::gemm;

constexpr int64_t kP = 32;          // pixels per tile (the per-image block's pixel blocking)
// |y - mean|^2 under this fraction of the sum of its expansion's term magnitudes: the row is recomputed exactly
// (float32 rounding of the terms, ~1e-7 of that sum, then stays below ~1e-5 of the result)
constexpr float kCancel = 1e-2f;

constexpr float kMaxSlack = 8.f;    // online softmax: the running max moves when exceeded by more than this

inline int64_t al16(int64_t n) { return (n + 15) / 16 * 16; }

// SAMFAST_PROJ_EXACT=1: every row takes the exact recompute from x0 (tests compare it with the expansions).
inline bool force_exact() {
  const char* v = std::getenv("SAMFAST_PROJ_EXACT");
  return v && v[0] == '1';
}

struct Geometry {
  int64_t H, dh, Di, T, Tu, HT, HU, HUp, HUq, W0, W1, ZW, rows;  // rows: accT rows = Di + ZW
  explicit Geometry(const ProjDims& d)
      : H(d.H), dh(d.dh), Di(d.H * d.dh), T(d.T), Tu(d.Tu), HT(d.ht()), HU(d.hu()), HUp(d.hup()), HUq(d.acc_cols()),
        W0(d.w0_rows()), W1(d.w1_rows()), ZW(2 * d.ht() + 8), rows(d.acc_rows()) {}
};

#if SAMFAST_X86
SAMFAST_AVX2 inline void transpose8_block_avx2(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  transpose8_avx2(r);
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * ldd, r[i]);
}
#endif

// dst[c, r] = src[r, c] for r < R, c < Cc (8x8 register blocks with AVX2 when both are multiples of 8)
SAMFAST_FLATTEN_BODY void transpose_tile(Isa isa, const float* src, int64_t lds, int64_t R, int64_t Cc, float* dst,
                                         int64_t ldd) {
#if SAMFAST_X86
  if (isa != Isa::Base && R % 8 == 0 && Cc % 8 == 0) {
    for (int64_t r0 = 0; r0 < R; r0 += 8)
      for (int64_t c0 = 0; c0 < Cc; c0 += 8) transpose8_block_avx2(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
    return;
  }
#endif
  (void)isa;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < Cc; ++c) dst[c * ldd + r] = src[r * lds + c];
}

#if SAMFAST_X86
// One head's products for the tile: out[t * ldo + i] = sum_d k[t, d] * A[d, i], t < NK, i < kP (= 2 zmm).
template <int NK>
SAMFAST_AVX512 inline void head_block_avx512(const float* k, int64_t dh, const float* A, float* out, int64_t ldo) {
  __m512 acc[NK][2];
#pragma GCC unroll 8
  for (int t = 0; t < NK; ++t) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
  for (int64_t d = 0; d < dh; ++d) {
    const __m512 a0 = _mm512_loadu_ps(A + d * kP), a1 = _mm512_loadu_ps(A + d * kP + 16);
#pragma GCC unroll 8
    for (int t = 0; t < NK; ++t) {
      const __m512 kb = _mm512_set1_ps(k[t * dh + d]);
      acc[t][0] = _mm512_fmadd_ps(kb, a0, acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(kb, a1, acc[t][1]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < NK; ++t) {
    _mm512_storeu_ps(out + t * ldo, acc[t][0]);
    _mm512_storeu_ps(out + t * ldo + 16, acc[t][1]);
  }
}

SAMFAST_AVX512 inline void head_block_avx512(int64_t nk, const float* k, int64_t dh, const float* A, float* out, int64_t ldo) {
  switch (nk) {
    case 8: return head_block_avx512<8>(k, dh, A, out, ldo);
    case 7: return head_block_avx512<7>(k, dh, A, out, ldo);
    case 6: return head_block_avx512<6>(k, dh, A, out, ldo);
    case 5: return head_block_avx512<5>(k, dh, A, out, ldo);
    case 4: return head_block_avx512<4>(k, dh, A, out, ldo);
    case 3: return head_block_avx512<3>(k, dh, A, out, ldo);
    case 2: return head_block_avx512<2>(k, dh, A, out, ldo);
    default: return head_block_avx512<1>(k, dh, A, out, ldo);
  }
}
#endif

// Head-block products: out[row(t, h), :] = sum_d k[h, t, d] * A[h*dh + d, :] for t < nk, where row(t, h) is
// t * H + h (token-major, ldo = H * kP apart per token) or h * nk + t (head-major): A is [Di, kP].
SAMFAST_FLATTEN_BODY void head_products(Isa isa, const Geometry& g, const float* k, int64_t nk, const float* A,
                                        float* out, bool token_major) {
  for (int64_t h = 0; h < g.H; ++h) {
    float* o = token_major ? out + h * kP : out + h * nk * kP;
    const int64_t ldo = token_major ? g.H * kP : kP;
    const float* kh = k + h * kProjSlots * g.dh;
#if SAMFAST_X86
    if (isa == Isa::Avx512) {
      head_block_avx512(nk, kh, g.dh, A + h * g.dh * kP, o, ldo);
      continue;
    }
#endif
    for (int64_t t = 0; t < nk; ++t) std::fill(o + t * ldo, o + t * ldo + kP, 0.f);
    gemm(isa, kh, g.dh, nk, g.dh, A + h * g.dh * kP, kP, kP, o, ldo);
  }
}

// The two cache lines of one feature row of a pixel block (kP floats) toward L2.
inline void prefetch2(const float* p) {
  __builtin_prefetch(p, 0, 2);
  __builtin_prefetch(p + 16, 0, 2);
}

// m[i] = max(m[i], v[i]) (a select the vectorizer turns into compare + blend; std::max's reference return kept
// these loops scalar, with a data-dependent branch per element)
SAMFAST_FLATTEN_BODY void max_into(float* __restrict m, const float* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = m[i], y = v[i];
    m[i] = x < y ? y : x;
  }
}

// acc[:] += sum over rows j < n of a[j, :] * b[j, :]
SAMFAST_FLATTEN_BODY void dot_rows(const float* a, const float* b, int64_t n, float* acc) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < kP; ++i) acc[i] += a[j * kP + i] * b[j * kP + i];
}

// Per-head softmax over the tokens, in place: P [T * H, kP] with rows t * H + h (token-major); mx: [kP] scratch.
SAMFAST_FLATTEN_BODY void softmax_tokens(Isa isa, float* P, int64_t H, int64_t T, float* mx) {
  for (int64_t h = 0; h < H; ++h) {
    std::copy(P + h * kP, P + (h + 1) * kP, mx);
    for (int64_t t = 1; t < T; ++t) max_into(mx, P + (t * H + h) * kP, kP);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < kP; ++i) P[(t * H + h) * kP + i] -= mx[i];
  }
  small_gemm::exp_row(isa, P, H * T * kP);
  for (int64_t h = 0; h < H; ++h) {
    std::copy(P + h * kP, P + (h + 1) * kP, mx);
    for (int64_t t = 1; t < T; ++t)
      for (int64_t i = 0; i < kP; ++i) mx[i] += P[(t * H + h) * kP + i];
    for (int64_t i = 0; i < kP; ++i) mx[i] = 1.f / mx[i];
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < kP; ++i) P[(t * H + h) * kP + i] *= mx[i];
  }
}

// out [n, kP] = U p for an upper-triangular U [n, n] (rows i read columns >= i only), in bands of 16 rows; p [n, kP].
SAMFAST_FLATTEN_BODY void upper_product(Isa isa, const float* U, int64_t n, const float* p, float* out) {
  std::fill(out, out + n * kP, 0.f);
  for (int64_t i0 = 0; i0 < n; i0 += 16)
    gemm(isa, U + i0 * n + i0, n, std::min<int64_t>(16, n - i0), n - i0, p + i0 * kP, kP, kP, out + i0 * kP, kP);
}

}  // namespace samfast::cpu::proj_tile
