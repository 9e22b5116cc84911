// AVX2+FMA (and AVX-512F qk / pv) micro-kernels for rel-pos attention (rel_pos_attention_kernel.h).
// Compiled with function-level targets (GCC/Clang `#pragma GCC target` / target attributes), selected
// at run time via samfast::use_avx2() / use_avx512(); the rest of the build stays portable.
#include "cpu/rel_pos_attention_kernel.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace samfast::cpu {
namespace {

constexpr int MR = 6;  // rows per register block (6 x 16 floats = 12 ymm accumulators)

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// exp(x) for x <= 0 (Cephes polynomial, ~1 ulp); very negative inputs flush to ~0.
inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3f));
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

alignas(32) const int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
inline __m256i tail_mask(int64_t n) {  // first n (0..8) lanes on
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - n));
}

// S = Qs @ Kt, register-blocked 6 rows x 16 keys, hd-loop of broadcast-FMAs.
void qk_avx2(const float* Qs, int64_t rows, int64_t hd, const float* Kt, int64_t Tk, int64_t nk, float* S) {
  for (int64_t j = 0; j < nk; j += 16) {  // key panel [hd, 16] stays in L1 across row groups
    for (int64_t r0 = 0; r0 < rows; r0 += MR) {
      const float* q = Qs + r0 * hd;
      __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
      __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
      const float* k = Kt + j * hd;
      for (int64_t d = 0; d < hd; ++d, k += 16) {
        const __m256 b0 = _mm256_loadu_ps(k), b1 = _mm256_loadu_ps(k + 8);
        __m256 a;
        a = _mm256_broadcast_ss(q + d);          c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(q + hd + d);     c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(q + 2 * hd + d); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(q + 3 * hd + d); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(q + 4 * hd + d); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(q + 5 * hd + d); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
      }
      float* s = S + r0 * Tk + j;
      _mm256_storeu_ps(s, c00); _mm256_storeu_ps(s + 8, c01); s += Tk;
      _mm256_storeu_ps(s, c10); _mm256_storeu_ps(s + 8, c11); s += Tk;
      _mm256_storeu_ps(s, c20); _mm256_storeu_ps(s + 8, c21); s += Tk;
      _mm256_storeu_ps(s, c30); _mm256_storeu_ps(s + 8, c31); s += Tk;
      _mm256_storeu_ps(s, c40); _mm256_storeu_ps(s + 8, c41); s += Tk;
      _mm256_storeu_ps(s, c50); _mm256_storeu_ps(s + 8, c51);
    }
  }
}

void softmax_avx2(float* S, int64_t Tk, int64_t nk, int64_t rows, const float* bh, int64_t Sh,
                  const float* bw, int64_t Sw, int64_t j0, float* m, float* l, float* alpha) {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows; ++r) {
    float* s = S + r * Tk;
    const float* bhr = bh + r * Sh;
    const float* bwr = bw + r * Sw;
    __m256 vmax = ninf;
    // keys j0.. walk the grid row by row: segments of constant ky, contiguous kx
    int64_t ky = j0 / Sw, kx0 = j0 - ky * Sw;
    for (int64_t jj = 0; jj < nk; ++ky, kx0 = 0) {
      const int64_t len = std::min(Sw - kx0, nk - jj);
      const __m256 hb = _mm256_set1_ps(bhr[ky]);
      float* sp = s + jj;
      const float* wp = bwr + kx0;
      int64_t t = 0;
      for (; t + 8 <= len; t += 8) {
        __m256 v = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(sp + t), hb), _mm256_loadu_ps(wp + t));
        _mm256_storeu_ps(sp + t, v);
        vmax = _mm256_max_ps(vmax, v);
      }
      if (t < len) {  // full-width tail (no slow maskstore): lanes past the segment add 0 and are
        // written back unchanged; S / bw have 8+ floats of slack (see the header)
        const __m256 mk = _mm256_castsi256_ps(tail_mask(len - t));
        const __m256 add = _mm256_and_ps(_mm256_add_ps(hb, _mm256_loadu_ps(wp + t)), mk);
        const __m256 v = _mm256_add_ps(_mm256_loadu_ps(sp + t), add);
        _mm256_storeu_ps(sp + t, v);
        vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(ninf, v, mk));
      }
      jj += len;
    }
    const float m_old = m[r];
    const float m_new = std::max(m_old, hmax(vmax));
    const float a = std::exp(m_old - m_new);
    const __m256 mn = _mm256_set1_ps(m_new);
    __m256 vsum = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= nk; j += 8) {
      __m256 p = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mn));
      _mm256_storeu_ps(s + j, p);
      vsum = _mm256_add_ps(vsum, p);
    }
    if (j < nk) {  // S has room up to Tk (multiple of 16): store zeros past nk
      const __m256 mk = _mm256_castsi256_ps(tail_mask(nk - j));
      __m256 p = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mn)), mk);
      _mm256_storeu_ps(s + j, p);
      vsum = _mm256_add_ps(vsum, p);
    }
    m[r] = m_new;
    l[r] = l[r] * a + hsum(vsum);
    alpha[r] = a;
  }
}

// O = O * alpha + P @ V, register-blocked 6 rows x 16 head-dims.
void pv_avx2(const float* P, int64_t Tk, int64_t nk, const float* V, int64_t hdp, float* O, const float* alpha,
             int64_t rows) {
  for (int64_t d = 0; d < hdp; d += 16) {  // V panel [Tk, 16] stays in L1 across row groups
    for (int64_t r0 = 0; r0 < rows; r0 += MR) {
      const float* p = P + r0 * Tk;
      __m256 al[MR];
      for (int i = 0; i < MR; ++i) al[i] = _mm256_set1_ps(alpha[r0 + i]);
      float* o = O + r0 * hdp + d;
      __m256 c00 = _mm256_mul_ps(_mm256_loadu_ps(o), al[0]), c01 = _mm256_mul_ps(_mm256_loadu_ps(o + 8), al[0]);
      __m256 c10 = _mm256_mul_ps(_mm256_loadu_ps(o + hdp), al[1]), c11 = _mm256_mul_ps(_mm256_loadu_ps(o + hdp + 8), al[1]);
      __m256 c20 = _mm256_mul_ps(_mm256_loadu_ps(o + 2 * hdp), al[2]), c21 = _mm256_mul_ps(_mm256_loadu_ps(o + 2 * hdp + 8), al[2]);
      __m256 c30 = _mm256_mul_ps(_mm256_loadu_ps(o + 3 * hdp), al[3]), c31 = _mm256_mul_ps(_mm256_loadu_ps(o + 3 * hdp + 8), al[3]);
      __m256 c40 = _mm256_mul_ps(_mm256_loadu_ps(o + 4 * hdp), al[4]), c41 = _mm256_mul_ps(_mm256_loadu_ps(o + 4 * hdp + 8), al[4]);
      __m256 c50 = _mm256_mul_ps(_mm256_loadu_ps(o + 5 * hdp), al[5]), c51 = _mm256_mul_ps(_mm256_loadu_ps(o + 5 * hdp + 8), al[5]);
      const float* v = V + d * Tk;
      for (int64_t j = 0; j < nk; ++j, v += 16) {
        const __m256 b0 = _mm256_loadu_ps(v), b1 = _mm256_loadu_ps(v + 8);
        __m256 a;
        a = _mm256_broadcast_ss(p + j);          c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(p + Tk + j);     c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(p + 2 * Tk + j); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(p + 3 * Tk + j); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(p + 4 * Tk + j); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(p + 5 * Tk + j); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
      }
      _mm256_storeu_ps(o, c00); _mm256_storeu_ps(o + 8, c01); o += hdp;
      _mm256_storeu_ps(o, c10); _mm256_storeu_ps(o + 8, c11); o += hdp;
      _mm256_storeu_ps(o, c20); _mm256_storeu_ps(o + 8, c21); o += hdp;
      _mm256_storeu_ps(o, c30); _mm256_storeu_ps(o + 8, c31); o += hdp;
      _mm256_storeu_ps(o, c40); _mm256_storeu_ps(o + 8, c41); o += hdp;
      _mm256_storeu_ps(o, c50); _mm256_storeu_ps(o + 8, c51);
    }
  }
}

// out[k] = q . rel[k], 4 keys at a time.
void rel_dots_avx2(const float* q, const float* rel, int64_t n, int64_t hd, float* out) {
  const int64_t hd8 = hd & ~int64_t(7);
  const __m256i mk = tail_mask(hd - hd8);
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    const float* r = rel + k * hd;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t d = 0;
    for (; d < hd8; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + d), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + hd + d), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 2 * hd + d), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 3 * hd + d), a3);
    }
    if (d < hd) {
      const __m256 qv = _mm256_maskload_ps(q + d, mk);
      a0 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(r + d, mk), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(r + hd + d, mk), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(r + 2 * hd + d, mk), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(r + 3 * hd + d, mk), a3);
    }
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));  // 4 sums per lane half
    _mm_storeu_ps(out + k, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
  }
  for (; k < n; ++k) {
    const float* r = rel + k * hd;
    __m256 a0 = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d < hd8; d += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(r + d), a0);
    if (d < hd) a0 = _mm256_fmadd_ps(_mm256_maskload_ps(q + d, mk), _mm256_maskload_ps(r + d, mk), a0);
    out[k] = hsum(a0);
  }
}

// ---- AVX-512F: 6 rows x NP panels of 16 (one zmm each), NP <= 4 (24 accumulators) ----------
#define SAMFAST_ATTN_AVX512 __attribute__((target("avx512f,avx2,fma")))

// c[i][p] += sum_k a[i * lda + k] * b[p * ldp + k * 16 : +16] for MR rows of a and NP 16-wide panels of b
// (k in order): the register block shared by the QK^T and PV products.
template <int NP>
SAMFAST_ATTN_AVX512 inline __attribute__((always_inline)) void fma_panels_avx512(const float* a, int64_t lda,
                                                                                 const float* b, int64_t ldp,
                                                                                 int64_t K, __m512 (&c)[MR][NP]) {
  for (int64_t k = 0; k < K; ++k) {
    __m512 bv[NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) bv[p] = _mm512_loadu_ps(b + p * ldp + k * 16);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * lda + k]);
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) c[i][p] = _mm512_fmadd_ps(av, bv[p], c[i][p]);
    }
  }
}

template <int NP>
SAMFAST_ATTN_AVX512 inline void qk_block_avx512(const float* q, int64_t hd, const float* k, float* s, int64_t Tk) {
  __m512 c[MR][NP];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) c[i][p] = _mm512_setzero_ps();
  fma_panels_avx512<NP>(q, hd, k, 16 * hd, hd, c);  // key panel p: [hd, 16]
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) _mm512_storeu_ps(s + i * Tk + 16 * p, c[i][p]);
}

SAMFAST_ATTN_AVX512 void qk_avx512(const float* Qs, int64_t rows, int64_t hd, const float* Kt, int64_t Tk, int64_t nk,
                                   float* S) {
  const int64_t np = (nk + 15) / 16;
  for (int64_t j = 0; j < np; j += 4) {  // 4 key panels stay in L1 across row groups
    const int64_t n = std::min<int64_t>(4, np - j);
    const float* k = Kt + j * 16 * hd;
    for (int64_t r0 = 0; r0 < rows; r0 += MR) {
      const float* q = Qs + r0 * hd;
      float* s = S + r0 * Tk + j * 16;
      switch (n) {
        case 4: qk_block_avx512<4>(q, hd, k, s, Tk); break;
        case 3: qk_block_avx512<3>(q, hd, k, s, Tk); break;
        case 2: qk_block_avx512<2>(q, hd, k, s, Tk); break;
        default: qk_block_avx512<1>(q, hd, k, s, Tk); break;
      }
    }
  }
}

template <int NP>
SAMFAST_ATTN_AVX512 inline void pv_block_avx512(const float* p, int64_t Tk, int64_t nk, const float* v, float* o,
                                                int64_t hdp, const float* alpha) {
  __m512 c[MR][NP];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    const __m512 al = _mm512_set1_ps(alpha[i]);
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) c[i][q] = _mm512_mul_ps(_mm512_loadu_ps(o + i * hdp + 16 * q), al);
  }
  fma_panels_avx512<NP>(p, Tk, v, 16 * Tk, nk, c);  // value panel q: [Tk, 16]
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) _mm512_storeu_ps(o + i * hdp + 16 * q, c[i][q]);
}

SAMFAST_ATTN_AVX512 void pv_avx512(const float* P, int64_t Tk, int64_t nk, const float* V, int64_t hdp, float* O,
                                   const float* alpha, int64_t rows) {
  const int64_t np = hdp / 16;
  for (int64_t d = 0; d < np; d += 4) {
    const int64_t n = std::min<int64_t>(4, np - d);
    const float* v = V + d * 16 * Tk;
    for (int64_t r0 = 0; r0 < rows; r0 += MR) {
      const float* p = P + r0 * Tk;
      float* o = O + r0 * hdp + d * 16;
      switch (n) {
        case 4: pv_block_avx512<4>(p, Tk, nk, v, o, hdp, alpha + r0); break;
        case 3: pv_block_avx512<3>(p, Tk, nk, v, o, hdp, alpha + r0); break;
        case 2: pv_block_avx512<2>(p, Tk, nk, v, o, hdp, alpha + r0); break;
        default: pv_block_avx512<1>(p, Tk, nk, v, o, hdp, alpha + r0); break;
      }
    }
  }
}

}  // namespace

const AttnKernels* attn_kernels_avx2() {
  static const AttnKernels k{qk_avx2, softmax_avx2, pv_avx2, rel_dots_avx2};
  return &k;
}

const AttnKernels* attn_kernels_avx512() {
  static const AttnKernels k{qk_avx512, softmax_avx2, pv_avx512, rel_dots_avx2};
  return &k;
}

}  // namespace samfast::cpu

#pragma GCC pop_options

#else  // not x86-64

namespace samfast::cpu {
const AttnKernels* attn_kernels_avx2() { return nullptr; }
const AttnKernels* attn_kernels_avx512() { return nullptr; }
}  // namespace samfast::cpu

#endif
