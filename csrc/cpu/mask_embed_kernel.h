// SAM prompt encoder's mask downscaling on CPU (see samfast.ops.mask_embed_reference), one pass per output
// pixel: Conv(2x2, s2, 1 -> C1) -> LayerNorm2d -> GELU -> Conv(2x2, s2, C1 -> C2) -> LayerNorm2d -> GELU ->
// Conv(1x1, C2 -> C). Each output pixel reads its 4x4 input patch; nothing in between is written to memory.
#pragma once
#include <cstdint>

namespace samfast::cpu {

struct MaskEmbedArgs {
  int64_t B = 0, h = 0, w = 0;  // output grid; the mask is [B, 1, 4h, 4w]
  int64_t C1 = 0, C2 = 0, C = 0;
  const float* mask = nullptr;                       // [B, 1, 4h, 4w]
  const float *w1 = nullptr, *b1 = nullptr;          // [C1, 1, 2, 2], [C1]
  const float *ln1_w = nullptr, *ln1_b = nullptr;    // [C1]
  const float *w2 = nullptr, *b2 = nullptr;          // [C2, C1, 2, 2], [C2]
  const float *ln2_w = nullptr, *ln2_b = nullptr;    // [C2]
  const float *w3 = nullptr, *b3 = nullptr;          // [C, C2, 1, 1], [C]
  float eps1 = 1e-6f, eps2 = 1e-6f;
  float* out = nullptr;                              // [B, C, h, w]
};

// All pointers contiguous float32. OpenMP over output rows; AVX2 (8 pixels per vector) when the CPU has it
// and C1 <= kMaxC1, C2 <= kMaxC2, else a portable per-pixel path.
constexpr int64_t kMaskEmbedMaxC1 = 16, kMaskEmbedMaxC2 = 64;
void mask_embed_cpu(const MaskEmbedArgs& a);

}  // namespace samfast::cpu
