// Fused SAM mask-decoder output stage on CPU (see samfast.ops.mask_head_reference):
// ConvT(2x2, s2) -> LayerNorm2d -> GELU -> ConvT(2x2, s2) -> GELU -> dot with hypernetwork weights.
// The [B, C2, 4h, 4w] upscaled feature map is never materialised: pixels are processed in tiles.
#pragma once
#include <cstdint>

namespace samfast::cpu {

struct MaskHeadArgs {
  int64_t B = 0, h = 0, w = 0, C = 0, C1 = 0, C2 = 0, M = 0;
  const void* src = nullptr;    // [B, h, w, C]
  const void* w1 = nullptr;     // [C, C1, 2, 2]
  const void* b1 = nullptr;     // [C1]
  const void* ln_w = nullptr;   // [C1]
  const void* ln_b = nullptr;   // [C1]
  const void* w2 = nullptr;     // [C1, C2, 2, 2]
  const void* b2 = nullptr;     // [C2]
  const void* hyper = nullptr;  // [B, M, C2]
  void* out = nullptr;          // [B, M, 4h, 4w]
  bool bf16 = false;            // all tensors bfloat16 (else float32); math is fp32 either way
  float eps = 1e-6f;
  const float* prepacked = nullptr;  // optional: pack_mask_head's output for these weights (w1 .. b2 are then
                                     // not read); used in place when 64-byte aligned, else copied per call
};

// Floats pack_mask_head writes for (C, C1, C2); the block's layout does not depend on its address.
int64_t mask_head_packed_numel(int64_t C, int64_t C1, int64_t C2);
// Repacks a's ConvT weights / biases and LayerNorm parameters (a.bf16 says their dtype) into dst.
void pack_mask_head(const MaskHeadArgs& a, float* dst);

// All pointers contiguous, same dtype. Uses OpenMP over (batch, pixel tiles) and AVX-512F or AVX2+FMA
// GEMMs picked at run time (SAMFAST_SIMD=avx2 caps at AVX2, =baseline forces the portable path).
void mask_head_cpu(const MaskHeadArgs& a);

}  // namespace samfast::cpu
