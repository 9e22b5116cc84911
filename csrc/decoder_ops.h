// The CPU decoder ops' bindings as plain functions (each checks its arguments, then runs its kernel), so that
// predict_prompts.cpp can chain them in one call from Python. Shapes as in cached_decoder.cpp, prompt_tokens.cpp
// and postprocess_masks.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor_ref.h"

namespace samfast {

void prompt_tokens_cpu_op(const TensorRef& coords, const TensorRef& labels, const TensorRef& boxes,
                          const TensorRef& gauss, const TensorRef& pe0, const TensorRef& pe1, const TensorRef& pe2,
                          const TensorRef& pe3, const TensorRef& not_a_point, const TensorRef& iou_token,
                          const TensorRef& mask_tokens, const TensorRef& out, bool has_box, bool pad, double img_h,
                          double img_w);

void cached_decoder_cpu_op(const TensorRef& tokens, const TensorRef& x0, const TensorRef& pe, const TensorRef& k0,
                           const TensorRef& v0, const TensorRef& q0, const TensorRef& features, const TensorRef& dense,
                           const TensorRef& packed, const std::vector<int64_t>& dims, int64_t h, int64_t w,
                           bool multimask, double eps, double eps2d, const TensorRef& masks, const TensorRef& iou,
                           const TensorRef& g);

void postprocess_masks_cpu_op(const TensorRef& masks, const TensorRef& out, int64_t img_size, int64_t input_h,
                              int64_t input_w, double threshold, bool binarize);

}  // namespace samfast
