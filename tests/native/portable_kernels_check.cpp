// Stand-alone check of CPU kernels outside Python: small_gemm::gemm (plain and transposed A) vs a double
// loop, and mask_head_cpu / mask_embed_cpu vs naive double-precision references. Built by
// tests/test_native_kernels.py natively (each SIMD level via SAMFAST_SIMD) and for AArch64 (run under
// qemu-aarch64), where only the portable generic-vector code exists. Prints one line per check, then OK
// or FAIL (exit status 1).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "cpu/small_gemm.h"
#include "cpu/mask_head_kernel.h"
#include "cpu/mask_embed_kernel.h"
using namespace samfast::cpu;
static std::mt19937 rng(1);
static std::vector<float> rnd(size_t n, float s = 1.f) { std::normal_distribution<float> d(0, s); std::vector<float> v(n); for (auto& x : v) x = d(rng); return v; }
static double gelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
int main() {
  int fails = 0;
  for (int AT = 0; AT < 2; ++AT) {
    const int R = 13, K = 37, Np = 24, lda = AT ? R : K;
    auto A = rnd(R * K), B = rnd(K * Np), C = rnd(R * Np);
    std::vector<double> ref(C.begin(), C.end());
    for (int i = 0; i < R; ++i) for (int k = 0; k < K; ++k) for (int j = 0; j < Np; ++j)
      ref[i * Np + j] += double(AT ? A[k * lda + i] : A[i * lda + k]) * B[k * Np + j];
    if (AT) small_gemm::gemm<true>(small_gemm::pick_isa(), A.data(), lda, R, K, B.data(), Np, Np, C.data(), Np);
    else small_gemm::gemm<false>(small_gemm::pick_isa(), A.data(), lda, R, K, B.data(), Np, Np, C.data(), Np);
    double e = 0; for (int i = 0; i < R * Np; ++i) e = std::max(e, std::abs(C[i] - ref[i]));
    std::printf("gemm AT=%d max abs err %.2e\n", AT, e); fails += e > 1e-4;
  }
  {  // mask head: B=2, h=3, w=5, C=24, C1=8, C2=8, M=3
    const int B = 2, h = 3, w = 5, C = 24, C1 = 8, C2 = 8, M = 3;
    auto src = rnd(B * h * w * C), w1 = rnd(C * C1 * 4, 0.2f), b1 = rnd(C1), lw = rnd(C1), lb = rnd(C1);
    auto w2 = rnd(C1 * C2 * 4, 0.3f), b2 = rnd(C2), hy = rnd(B * M * C2);
    std::vector<float> out(B * M * 16 * h * w);
    MaskHeadArgs a; a.B = B; a.h = h; a.w = w; a.C = C; a.C1 = C1; a.C2 = C2; a.M = M;
    a.src = src.data(); a.w1 = w1.data(); a.b1 = b1.data(); a.ln_w = lw.data(); a.ln_b = lb.data();
    a.w2 = w2.data(); a.b2 = b2.data(); a.hyper = hy.data(); a.out = out.data();
    mask_head_cpu(a);
    double e = 0, mx = 0;
    for (int b = 0; b < B; ++b) for (int y = 0; y < h; ++y) for (int x = 0; x < w; ++x)
      for (int dy = 0; dy < 2; ++dy) for (int dx = 0; dx < 2; ++dx) {
        std::vector<double> t(C1);
        for (int c = 0; c < C1; ++c) { double z = b1[c]; for (int k = 0; k < C; ++k) z += double(src[((b * h + y) * w + x) * C + k]) * w1[(k * C1 + c) * 4 + dy * 2 + dx]; t[c] = z; }
        double mean = 0, var = 0; for (double v : t) mean += v; mean /= C1; for (double v : t) var += (v - mean) * (v - mean); var /= C1;
        for (int c = 0; c < C1; ++c) t[c] = gelu((t[c] - mean) / std::sqrt(var + 1e-6) * lw[c] + lb[c]);
        for (int ey = 0; ey < 2; ++ey) for (int ex = 0; ex < 2; ++ex) {
          std::vector<double> u(C2);
          for (int o = 0; o < C2; ++o) { double z = b2[o]; for (int c = 0; c < C1; ++c) z += t[c] * w2[(c * C2 + o) * 4 + ey * 2 + ex]; u[o] = gelu(z); }
          for (int m = 0; m < M; ++m) {
            double z = 0; for (int o = 0; o < C2; ++o) z += u[o] * hy[(b * M + m) * C2 + o];
            const int oy = 4 * y + 2 * dy + ey, ox = 4 * x + 2 * dx + ex;
            const double got = out[((b * M + m) * 4 * h + oy) * 4 * w + ox];
            e = std::max(e, std::abs(got - z)); mx = std::max(mx, std::abs(z));
          }
        }
      }
    std::printf("mask_head max rel err %.2e\n", e / mx); fails += e / mx > 1e-5;
  }
  {  // mask embed: B=1, h=2, w=11 (8-pixel blocks + tail on x86; portable here), C1=4, C2=16, C=12
    const int B = 1, h = 2, w = 11, C1 = 4, C2 = 16, C = 12, H = 4 * h, W = 4 * w;
    auto m = rnd(B * H * W, 3.f), w1 = rnd(C1 * 4, 0.7f), b1 = rnd(C1), l1w = rnd(C1), l1b = rnd(C1);
    auto w2 = rnd(C2 * C1 * 4, 0.25f), b2 = rnd(C2), l2w = rnd(C2), l2b = rnd(C2), w3 = rnd(C * C2, 0.25f), b3 = rnd(C);
    std::vector<float> out(B * C * h * w);
    MaskEmbedArgs a; a.B = B; a.h = h; a.w = w; a.C1 = C1; a.C2 = C2; a.C = C; a.mask = m.data();
    a.w1 = w1.data(); a.b1 = b1.data(); a.ln1_w = l1w.data(); a.ln1_b = l1b.data(); a.w2 = w2.data(); a.b2 = b2.data();
    a.ln2_w = l2w.data(); a.ln2_b = l2b.data(); a.w3 = w3.data(); a.b3 = b3.data(); a.out = out.data();
    mask_embed_cpu(a);
    double e = 0, mx = 0;
    for (int y = 0; y < h; ++y) for (int x = 0; x < w; ++x) {
      std::vector<double> g1(4 * C1), g2(C2);
      for (int s = 0; s < 4; ++s) {
        const int dy = s >> 1, dx = s & 1; double mean = 0, var = 0;
        for (int c = 0; c < C1; ++c) { double z = b1[c]; for (int ky = 0; ky < 2; ++ky) for (int kx = 0; kx < 2; ++kx) z += double(w1[c * 4 + ky * 2 + kx]) * m[(4 * y + 2 * dy + ky) * W + 4 * x + 2 * dx + kx]; g1[s * C1 + c] = z; mean += z; }
        mean /= C1; for (int c = 0; c < C1; ++c) var += (g1[s * C1 + c] - mean) * (g1[s * C1 + c] - mean); var /= C1;
        for (int c = 0; c < C1; ++c) g1[s * C1 + c] = gelu((g1[s * C1 + c] - mean) / std::sqrt(var + 1e-6) * l1w[c] + l1b[c]);
      }
      double mean = 0, var = 0;
      for (int o = 0; o < C2; ++o) { double z = b2[o]; for (int c = 0; c < C1; ++c) for (int s = 0; s < 4; ++s) z += double(w2[(o * C1 + c) * 4 + s]) * g1[s * C1 + c]; g2[o] = z; mean += z; }
      mean /= C2; for (double v : g2) var += (v - mean) * (v - mean); var /= C2;
      for (int o = 0; o < C2; ++o) g2[o] = gelu((g2[o] - mean) / std::sqrt(var + 1e-6) * l2w[o] + l2b[o]);
      for (int k = 0; k < C; ++k) { double z = b3[k]; for (int o = 0; o < C2; ++o) z += double(w3[k * C2 + o]) * g2[o];
        e = std::max(e, std::abs(out[k * h * w + y * w + x] - z)); mx = std::max(mx, std::abs(z)); }
    }
    std::printf("mask_embed max rel err %.2e\n", e / mx); fails += e / mx > 1e-5;
  }
  std::printf("%s\n", fails ? "FAIL" : "OK");
  return fails != 0;
}
