// Fused SAM mask postprocessing on CPU (see samfast.ops.postprocess_masks_reference):
// bilinear (align_corners=False) h x w -> img_size^2, crop [:input_h, :input_w], bilinear -> H0 x W0,
// optionally `> threshold` (+ stability score and box per mask). One pass over the output; each output = <= 4 x 4 low-res taps (separable).
#pragma once
#include <cstdint>

namespace samfast::cpu {

enum class MaskOut { Float32, BFloat16, Bool };

struct PostprocessArgs {
  int64_t B = 0, M = 0, h = 0, w = 0;  // masks [B, M, h, w]
  int64_t img_size = 0, input_h = 0, input_w = 0;
  int64_t H0 = 0, W0 = 0;              // out [B, M, H0, W0]
  const void* masks = nullptr;
  bool masks_bf16 = false;             // else float32
  void* out = nullptr;
  MaskOut out_kind = MaskOut::Float32;
  float threshold = 0.f;               // used when out_kind == Bool: out = value > threshold
  // Optional per-plane statistics, computed in the same pass (out_kind == Bool, float32 masks only):
  float* stability = nullptr;          // [B*M] #(value > stab_hi) / #(value > stab_lo) (NaN if 0 / 0)
  int64_t* boxes = nullptr;            // [B*M, 4] XYXY (inclusive) of value > threshold; zeros if empty
  float stab_hi = 0.f, stab_lo = 0.f;
};

void postprocess_masks_cpu(const PostprocessArgs& a);

}  // namespace samfast::cpu
