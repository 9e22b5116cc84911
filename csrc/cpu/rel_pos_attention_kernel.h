// CPU rel-pos attention (SAM ViT encoder blocks): flash-style tiled attention with decomposed
// relative-position bias, fp32 / bf16 storage with fp32 math. See python/samfast/ops.py
// (`rel_pos_attention_reference`) for the exact semantics.
#pragma once
#include <cstdint>

namespace samfast::cpu {

struct RelPosAttentionArgs {
  const void* qkv = nullptr;       // [B, H, W, 3*C] contiguous (3 x heads x head_dim on the last axis)
  const void* qkv_bias = nullptr;  // [3*C] (value of padded tokens in windowed blocks)
  const void* rel_h = nullptr;     // [Sh, Sh, hd]
  const void* rel_w = nullptr;     // [Sw, Sw, hd]
  void* out = nullptr;             // [B, H, W, C]
  bool bf16 = false;               // storage dtype: false = float32, true = bfloat16
  int64_t B = 0, H = 0, W = 0, C = 0, num_heads = 1;
  int64_t window_size = 0;  // 0 = global (Sh = H, Sw = W); > 0 = windows (Sh = Sw = window_size)
};

// Runs on the calling thread's OpenMP team; picks AVX-512F, AVX2+FMA or the portable path at run time.
void rel_pos_attention(const RelPosAttentionArgs& args);

// Tile-level micro-kernels (internal; one table per SIMD level). Row counts passed to `qk` / `pv`
// are multiples of 6 (zero-padded rows), Tk is a multiple of 16, hdp = hd rounded up to 16.
struct AttnKernels {
  // S[rows, Tk] (cols < nk, rounded up to 16) = Qs[rows, hd] @ K^T, Kt packed [Tk/16, hd, 16]
  void (*qk)(const float* Qs, int64_t rows, int64_t hd, const float* Kt, int64_t Tk, int64_t nk, float* S);
  // Online-softmax step on S[rows, Tk] for keys j0 .. j0+nk of a Sh x Sw grid: adds the bias
  // bh[r, ky] + bw[r, kx], updates the running max m[r] / sum l[r], writes P = exp(S - m) (0 past nk)
  // and alpha[r] = exp(m_old - m_new). S and bw must have >= 8 floats of slack past [rows, Tk] / [rows, Sw].
  void (*softmax)(float* S, int64_t Tk, int64_t nk, int64_t rows, const float* bh, int64_t Sh,
                  const float* bw, int64_t Sw, int64_t j0, float* m, float* l, float* alpha);
  // O[rows, hdp] = O * alpha[r] + P[rows, :nk] @ V[:nk], V packed [hdp/16, Tk, 16]
  void (*pv)(const float* P, int64_t Tk, int64_t nk, const float* V, int64_t hdp, float* O,
             const float* alpha, int64_t rows);
  // out[k] = q[:hd] . rel[k, :hd] for k < n
  void (*rel_dots)(const float* q, const float* rel, int64_t n, int64_t hd, float* out);
};

const AttnKernels& attn_kernels_baseline();
const AttnKernels* attn_kernels_avx2();    // nullptr when not compiled for x86-64
const AttnKernels* attn_kernels_avx512();  // AVX-512F qk / pv + the AVX2 softmax; nullptr off x86-64

}  // namespace samfast::cpu
