#include "op_checks.h"

#include <string>

namespace samfast {

AttnDims check_rel_pos_attention_args(const TensorRef& qkv, const TensorRef& qkv_bias, const TensorRef& rel_h,
                                      const TensorRef& rel_w, const TensorRef* out, int64_t num_heads,
                                      int64_t window_size, const std::vector<DType>& dtypes) {
  check_tensor(qkv, "qkv", {-1, -1, -1, -1}, dtypes);
  const int64_t C3 = qkv.size(3);
  if (num_heads <= 0 || C3 % (3 * num_heads) != 0)
    throw ShapeError("qkv: last dim " + std::to_string(C3) + " must be 3 * num_heads (" +
                     std::to_string(num_heads) + ") * head_dim");
  if (window_size < 0) throw ShapeError("window_size must be >= 0, got " + std::to_string(window_size));
  AttnDims d{qkv.size(0), qkv.size(1), qkv.size(2), C3 / 3, 0, 0, 0};
  d.hd = d.C / num_heads;
  d.Sh = window_size > 0 ? window_size : d.H;
  d.Sw = window_size > 0 ? window_size : d.W;
  check_tensor(qkv_bias, "qkv_bias", {C3}, {qkv.dtype});
  check_tensor(rel_h, "rel_h", {d.Sh, d.Sh, d.hd}, {qkv.dtype});
  check_tensor(rel_w, "rel_w", {d.Sw, d.Sw, d.hd}, {qkv.dtype});
  if (out) check_tensor(*out, "out", {d.B, d.H, d.W, d.C}, {qkv.dtype});
  return d;
}

MaskHeadDims check_mask_head_args(const TensorRef& src, const TensorRef& w1, const TensorRef& b1,
                                  const TensorRef& ln_w, const TensorRef& ln_b, const TensorRef& w2,
                                  const TensorRef& b2, const TensorRef& hyper_in, const TensorRef& out,
                                  const std::vector<DType>& dtypes, int64_t c1, int64_t c2) {
  check_tensor(src, "src", {-1, -1, -1, -1}, dtypes);
  MaskHeadDims d{src.size(0), src.size(1), src.size(2), src.size(3), 0, 0, 0};
  const std::vector<DType> dt = {src.dtype};
  check_tensor(w1, "w1", {d.C, c1, 2, 2}, dt);
  d.C1 = w1.size(1);
  check_tensor(b1, "b1", {d.C1}, dt);
  check_tensor(ln_w, "ln_w", {d.C1}, dt);
  check_tensor(ln_b, "ln_b", {d.C1}, dt);
  check_tensor(w2, "w2", {d.C1, c2, 2, 2}, dt);
  d.C2 = w2.size(1);
  check_tensor(b2, "b2", {d.C2}, dt);
  check_tensor(hyper_in, "hyper_in", {d.B, -1, d.C2}, dt);
  d.M = hyper_in.size(1);
  check_tensor(out, "out", {d.B, d.M, 4 * d.h, 4 * d.w}, dt);
  return d;
}

void check_postprocess_sizes(int64_t img_size, int64_t input_h, int64_t input_w) {
  if (img_size <= 0 || input_h <= 0 || input_w <= 0 || input_h > img_size || input_w > img_size)
    throw ShapeError("input size (" + std::to_string(input_h) + ", " + std::to_string(input_w) +
                     ") must be positive and within img_size " + std::to_string(img_size));
}

int64_t check_postprocess_stats_args(const TensorRef& masks, const TensorRef& out, const TensorRef& stability,
                                     const TensorRef& boxes, int64_t img_size, int64_t input_h, int64_t input_w) {
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Float32});
  const int64_t N = masks.size(0);
  check_tensor(out, "out", {N, -1, -1}, {DType::Bool});
  check_tensor(stability, "stability", {N}, {DType::Float32});
  check_tensor(boxes, "boxes", {N, 4}, {DType::Int64});
  if (masks.size(1) <= 0 || masks.size(2) <= 0)
    throw ShapeError("masks: spatial size must be positive, got " + shape_str(masks.shape));
  if (out.size(1) <= 0 || out.size(2) <= 0)
    throw ShapeError("out: spatial size must be positive, got " + shape_str(out.shape));
  check_postprocess_sizes(img_size, input_h, input_w);
  return N;
}

}  // namespace samfast
