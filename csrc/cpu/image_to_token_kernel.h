// Fused SAM decoder image->token attention + residual + LayerNorm on CPU
// (see samfast.ops.image_to_token_attention_reference). Per image row n of batch b:
//   s = (q_in[n] (+ q_add[n])) @ u[b] + cb[b]; p = softmax over each head's T scores
//   (columns token-major: j = t*H + h);
//   out[b, n] = LayerNorm(residual[n] + p @ r[b] + out_bias) * ln_w + ln_b.
// Rows are processed in tiles, so the [B, N, HT] scores and [B, N, C] attention output never hit memory.
#pragma once
#include <cstdint>
#include <memory>

namespace samfast::cpu {

struct ImageToTokenArgs {
  int64_t B = 0, Bq = 1, Bx = 1, N = 0, Cq = 0, C = 0, H = 0, T = 0;
  const float* q_in = nullptr;      // [Bq, N, Cq]  (Bq = 1 or B)
  const float* q_add = nullptr;     // [N, Cq] or nullptr
  const float* u = nullptr;         // [B, Cq, T*H]  column t*H + h
  const float* cb = nullptr;        // [B, T*H]
  const float* r = nullptr;         // [B, T*H, C]  row t*H + h
  const float* out_bias = nullptr;  // [C]
  const float* residual = nullptr;  // [Bx, N, C]  (Bx = 1 or B)
  const float* ln_w = nullptr;      // [C]
  const float* ln_b = nullptr;      // [C]
  float* out = nullptr;             // [B, N, C]; may alias residual / q_in of batch size B (a tile's rows
                                    // are read before they are written)
  float eps = 1e-5f;
  // Optional block-diagonal scores (cached layer 0, where u[b, h*dh + d, t*H + h] = k_heads[b, t, h*dh + d]
  // and every other entry of u is 0): with H == 8 and AVX2, the scores are formed per head from these
  // [B, T, Cq] keys (dh = Cq / H MACs per score instead of Cq); u must still be given (portable path).
  const float* k_heads = nullptr;
  // Optional outputs for the mask head's folded first ConvT (see mask_head_kernel.h, MaskHeadFold): the
  // attention probabilities [B, N, T*H] (column t*H + h) and each row's LayerNorm {mean, rstd} [B, N, 2].
  float* p_out = nullptr;
  float* ln_stats = nullptr;
};

// All pointers contiguous float32. OpenMP over (batch, row tiles); AVX-512F / AVX2+FMA GEMMs picked at
// run time (SAMFAST_SIMD=avx2 caps at AVX2, =baseline forces the portable path).
void image_to_token_cpu(const ImageToTokenArgs& a);

// The same kernel, prepared once (u / cb / r repacked) and run on row ranges by the caller, e.g. fused
// with a consumer of the rows it writes (token_to_image_cpu's `produce`). run() is thread-safe
// (per-thread scratch); `a`'s pointers must outlive this object.
class ImageToTokenRows {
 public:
  explicit ImageToTokenRows(const ImageToTokenArgs& a);
  ~ImageToTokenRows();
  void run(int64_t b, int64_t n0, int64_t n1) const;  // rows [n0, n1) of batch b

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace samfast::cpu
