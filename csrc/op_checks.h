// Argument checks shared by the CPU and CUDA bindings of the same op (shape + dtype only; each
// binding checks the device itself). Errors name the argument and the expected shape / dtype.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor_ref.h"

namespace samfast {

struct AttnDims {
  int64_t B, H, W, C, hd, Sh, Sw;
};

// qkv [B, H, W, 3*C] in `dtypes`; qkv_bias [3*C], rel_h [Sh, Sh, hd], rel_w [Sw, Sw, hd],
// out [B, H, W, C] (when given) in qkv's dtype; Sh = Sw = window_size, or H / W when global.
AttnDims check_rel_pos_attention_args(const TensorRef& qkv, const TensorRef& qkv_bias, const TensorRef& rel_h,
                                      const TensorRef& rel_w, const TensorRef* out, int64_t num_heads,
                                      int64_t window_size, const std::vector<DType>& dtypes);

struct MaskHeadDims {
  int64_t B, h, w, C, C1, C2, M;
};

// src [B, h, w, C] in `dtypes`; w1 [C, C1, 2, 2], b1/ln_w/ln_b [C1], w2 [C1, C2, 2, 2], b2 [C2],
// hyper_in [B, M, C2], out [B, M, 4h, 4w] in src's dtype. c1 / c2 >= 0 pin C1 / C2 (-1: any).
MaskHeadDims check_mask_head_args(const TensorRef& src, const TensorRef& w1, const TensorRef& b1,
                                  const TensorRef& ln_w, const TensorRef& ln_b, const TensorRef& w2,
                                  const TensorRef& b2, const TensorRef& hyper_in, const TensorRef& out,
                                  const std::vector<DType>& dtypes, int64_t c1 = -1, int64_t c2 = -1);

// img_size > 0 and 0 < input_h, input_w <= img_size (the crop of the padded square).
void check_postprocess_sizes(int64_t img_size, int64_t input_h, int64_t input_w);

// Fused AMG mask pass: masks [N, h, w] float32 (h, w > 0), out [N, H0, W0] bool (H0, W0 > 0),
// stability [N] float32, boxes [N, 4] int64, plus check_postprocess_sizes. Returns N.
int64_t check_postprocess_stats_args(const TensorRef& masks, const TensorRef& out, const TensorRef& stability,
                                     const TensorRef& boxes, int64_t img_size, int64_t input_h, int64_t input_w);

}  // namespace samfast
