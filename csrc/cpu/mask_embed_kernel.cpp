// Mask downscaling of SAM's prompt encoder (see mask_embed_kernel.h). Per output pixel (y, x), from its
// 4x4 input patch p[r][c] = mask[4y + r, 4x + c]:
//   z1[s][c1] = b1 + sum_{ky,kx} w1[c1, ky, kx] p[2dy + ky][2dx + kx]   (s = 2dy + dx: the 4 conv1 outputs)
//   g1 = GELU(LayerNorm over c1 of z1[s])
//   z2[o] = b2 + sum_{c1, dy, dx} w2[o, c1, dy, dx] g1[2dy + dx][c1];  g2 = GELU(LayerNorm over o of z2)
//   out[k] = b3 + sum_o w3[k, o] g2[o]
// Per output row: the AVX2 path forms g2 for 8 horizontally adjacent pixels per vector into G2 [C2, w]; the
// 1x1 conv is then one GEMM out[b, :, y, :] = b3 + W3 [C, C2] @ G2 (small_gemm).
#include "cpu/mask_embed_kernel.h"

#include <algorithm>
#include <cmath>

#include "cpu/cpu_features.h"
#include "cpu/mask_simd.h"
#include "cpu/small_gemm.h"

#ifdef SAMFAST_WITH_OPENMP
#include <omp.h>
#endif

namespace samfast::cpu {
namespace {

// LayerNorm2d's formula (mean, then mean squared deviation; divide by sqrt(var + eps)), then GELU, in place.
void ln_gelu_base(float* z, int64_t n, const float* w, const float* b, float eps) {
  float mean = 0.f, var = 0.f;
  for (int64_t i = 0; i < n; ++i) mean += z[i];
  mean /= float(n);
  for (int64_t i = 0; i < n; ++i) var += (z[i] - mean) * (z[i] - mean);
  const float sd = std::sqrt(var / float(n) + eps);
  for (int64_t i = 0; i < n; ++i) z[i] = gelu_exact((z[i] - mean) / sd * w[i] + b[i]);
}

// g2 of pixel (y, x) -> G2[:, x] (row stride ldg).
// scratch: 4 * C1 + C2 floats.
void pixel_base(const MaskEmbedArgs& a, int64_t b, int64_t y, int64_t x, float* G2, int64_t ldg, float* scratch) {
  const int64_t C1 = a.C1, C2 = a.C2, W = 4 * a.w;
  const float* m = a.mask + (b * 4 * a.h + 4 * y) * W + 4 * x;
  float* g1 = scratch;
  float* g2 = scratch + 4 * C1;
  for (int64_t s = 0; s < 4; ++s) {
    const int64_t dy = s >> 1, dx = s & 1;
    for (int64_t c = 0; c < C1; ++c) {
      float z = a.b1[c];
      for (int64_t ky = 0; ky < 2; ++ky)
        for (int64_t kx = 0; kx < 2; ++kx) z += a.w1[c * 4 + ky * 2 + kx] * m[(2 * dy + ky) * W + 2 * dx + kx];
      g1[s * C1 + c] = z;
    }
    ln_gelu_base(&g1[s * C1], C1, a.ln1_w, a.ln1_b, a.eps1);
  }
  for (int64_t o = 0; o < C2; ++o) {
    float z = a.b2[o];
    for (int64_t c = 0; c < C1; ++c)
      for (int64_t s = 0; s < 4; ++s) z += a.w2[(o * C1 + c) * 4 + s] * g1[s * C1 + c];
    g2[o] = z;
  }
  ln_gelu_base(g2, C2, a.ln2_w, a.ln2_b, a.eps2);
  for (int64_t o = 0; o < C2; ++o) G2[o * ldg + x] = g2[o];
}

#if SAMFAST_X86
SAMFAST_AVX2 void ln_gelu_avx2(__m256* z, int64_t n, const float* w, const float* b, float eps) {
  __m256 mean = _mm256_setzero_ps(), var = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; ++i) mean = _mm256_add_ps(mean, z[i]);
  mean = _mm256_div_ps(mean, _mm256_set1_ps(float(n)));
  for (int64_t i = 0; i < n; ++i) {
    const __m256 d = _mm256_sub_ps(z[i], mean);
    var = _mm256_fmadd_ps(d, d, var);
  }
  const __m256 sd = _mm256_sqrt_ps(_mm256_add_ps(_mm256_div_ps(var, _mm256_set1_ps(float(n))), _mm256_set1_ps(eps)));
  for (int64_t i = 0; i < n; ++i) {
    const __m256 v = _mm256_div_ps(_mm256_sub_ps(z[i], mean), sd);
    z[i] = gelu_avx2(_mm256_fmadd_ps(v, _mm256_set1_ps(w[i]), _mm256_set1_ps(b[i])));
  }
}

// g2 of pixels x0 .. x0 + 7 of output row y (x0 + 8 <= w) -> G2[:, x0 : x0 + 8].
SAMFAST_AVX2 void pixels8_avx2(const MaskEmbedArgs& a, int64_t b, int64_t y, int64_t x0, float* G2, int64_t ldg) {
  const int64_t C1 = a.C1, C2 = a.C2, W = 4 * a.w;
  alignas(32) float patch[16][8];  // [r * 4 + c][pixel]
  const float* m = a.mask + (b * 4 * a.h + 4 * y) * W + 4 * x0;
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t l = 0; l < 8; ++l)
      for (int64_t c = 0; c < 4; ++c) patch[r * 4 + c][l] = m[r * W + 4 * l + c];
  __m256 g1[4 * kMaskEmbedMaxC1], g2[kMaskEmbedMaxC2];
  for (int64_t s = 0; s < 4; ++s) {
    const int64_t dy = s >> 1, dx = s & 1;
    for (int64_t c = 0; c < C1; ++c) {
      __m256 z = _mm256_set1_ps(a.b1[c]);
      for (int64_t ky = 0; ky < 2; ++ky)
        for (int64_t kx = 0; kx < 2; ++kx)
          z = _mm256_fmadd_ps(_mm256_set1_ps(a.w1[c * 4 + ky * 2 + kx]),
                              _mm256_load_ps(patch[(2 * dy + ky) * 4 + 2 * dx + kx]), z);
      g1[s * C1 + c] = z;
    }
    ln_gelu_avx2(g1 + s * C1, C1, a.ln1_w, a.ln1_b, a.eps1);
  }
  for (int64_t o = 0; o < C2; ++o) {
    __m256 z = _mm256_set1_ps(a.b2[o]);
    const float* w2 = a.w2 + o * C1 * 4;
    for (int64_t c = 0; c < C1; ++c)
      for (int64_t s = 0; s < 4; ++s) z = _mm256_fmadd_ps(_mm256_set1_ps(w2[c * 4 + s]), g1[s * C1 + c], z);
    g2[o] = z;
  }
  ln_gelu_avx2(g2, C2, a.ln2_w, a.ln2_b, a.eps2);
  for (int64_t o = 0; o < C2; ++o) _mm256_storeu_ps(G2 + o * ldg + x0, g2[o]);
}
#endif

}  // namespace

void mask_embed_cpu(const MaskEmbedArgs& a) {
  if (a.B == 0 || a.h == 0 || a.w == 0 || a.C == 0) return;
  const small_gemm::Isa isa = small_gemm::pick_isa();
  const bool vec = isa != small_gemm::Isa::Base && a.C1 <= kMaskEmbedMaxC1 && a.C2 <= kMaskEmbedMaxC2;
  const int64_t N = a.h * a.w, wp = small_gemm::round_up(a.w, 8);
  const bool direct = wp == a.w;  // GEMM straight into out (else through a padded row buffer)
#ifdef SAMFAST_WITH_OPENMP
  const int64_t threads = std::max(1, omp_get_max_threads());
#else
  const int64_t threads = 1;
#endif
  // per-thread scratch, allocated here: an allocation failure inside the parallel region would terminate
  const int64_t per = small_gemm::round_up(a.C2 * wp + (direct ? 0 : a.C * wp) + 4 * a.C1 + a.C2, 16);
  AlignedFloats scratch;
  scratch.alloc(threads * per);  // zeroed: G2's padding columns stay 0
#pragma omp parallel num_threads(threads)
  {
#ifdef SAMFAST_WITH_OPENMP
    float* G2 = scratch.p + omp_get_thread_num() * per;
#else
    float* G2 = scratch.p;
#endif
    float* O = G2 + a.C2 * wp;
    float* px = O + (direct ? 0 : a.C * wp);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < a.B * a.h; ++r) {
      const int64_t b = r / a.h, y = r % a.h;
      int64_t x = 0;
#if SAMFAST_X86
      if (vec)
        for (; x + 8 <= a.w; x += 8) pixels8_avx2(a, b, y, x, G2, wp);
#endif
      for (; x < a.w; ++x) pixel_base(a, b, y, x, G2, wp, px);
      float* out = a.out + b * a.C * N + y * a.w;
      float* C = direct ? out : O;
      const int64_t ldc = direct ? N : wp;
      for (int64_t k = 0; k < a.C; ++k) std::fill(C + k * ldc, C + k * ldc + wp, a.b3[k]);
      small_gemm::gemm(isa, a.w3, a.C2, a.C, a.C2, G2, wp, wp, C, ldc);
      if (!direct)
        for (int64_t k = 0; k < a.C; ++k) std::copy(O + k * wp, O + k * wp + a.w, out + k * N);
    }
  }
  (void)vec;
}

}  // namespace samfast::cpu
