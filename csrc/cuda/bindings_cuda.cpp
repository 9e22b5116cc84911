// pybind11 bindings of the CUDA ops (compiled by the host C++ compiler, only when CUDA is enabled).
// Every TensorRef is validated (shape, dtype, contiguity, CUDA, same device) before anything is
// launched; launches go to the caller's stream on the tensors' device, with the GIL released.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "../op_checks.h"
#include "../op_registry.h"
#include "../tensor_ref.h"
#include "binding_utils.h"
#include "kernels.h"

namespace py = pybind11;

namespace samfast::cuda {
namespace {

const std::vector<DType> kFloatTypes = {DType::Float32, DType::Float16, DType::BFloat16};

Dt to_dt(DType d) {
  switch (d) {
    case DType::Float32: return Dt::F32;
    case DType::Float16: return Dt::F16;
    case DType::BFloat16: return Dt::BF16;
    default: throw DTypeError(std::string("samfast CUDA kernels: unsupported dtype ") + dtype_name(d));
  }
}

AttnDims check_attention(const TensorRef& qkv, const TensorRef& qkv_bias, const TensorRef& rel_h,
                         const TensorRef& rel_w, const TensorRef* out, int num_heads, int window_size) {
  const AttnDims d =
      check_rel_pos_attention_args(qkv, qkv_bias, rel_h, rel_w, out, num_heads, window_size, kFloatTypes);
  std::vector<std::pair<const TensorRef*, const char*>> all = {
      {&qkv, "qkv"}, {&qkv_bias, "qkv_bias"}, {&rel_h, "rel_h"}, {&rel_w, "rel_w"}};
  if (out) all.push_back({out, "out"});
  check_cuda(all);
  return d;
}

void rel_pos_attention_cuda(const TensorRef& qkv,       // [B, H, W, 3*C]
                            const TensorRef& qkv_bias,  // [3*C]
                            const TensorRef& rel_h,     // [Sh, Sh, hd]
                            const TensorRef& rel_w,     // [Sw, Sw, hd]
                            const TensorRef& out,       // [B, H, W, C]
                            int num_heads, int window_size, uintptr_t stream) {
  const AttnDims d = check_attention(qkv, qkv_bias, rel_h, rel_w, &out, num_heads, window_size);
  py::gil_scoped_release nogil;
  DeviceGuard guard(qkv.device);
  rel_pos_attention(ptr(qkv), ptr(qkv_bias), ptr(rel_h), ptr(rel_w), ptr(out), d.B, d.H, d.W, d.C, num_heads,
                    window_size, to_dt(qkv.dtype), as_stream(stream));
}

std::string rel_pos_attention_cuda_path(const TensorRef& qkv, const TensorRef& qkv_bias, const TensorRef& rel_h,
                                        const TensorRef& rel_w, const TensorRef& out, int num_heads,
                                        int window_size) {
  const AttnDims d = check_attention(qkv, qkv_bias, rel_h, rel_w, &out, num_heads, window_size);
  DeviceGuard guard(qkv.device);
  return rel_pos_attention_path(d.H, d.W, d.C, num_heads, window_size, to_dt(qkv.dtype), ptr(qkv),
                                ptr(qkv_bias), ptr(rel_h), ptr(rel_w), ptr(out));
}

void mask_head_cuda(const TensorRef& src,       // [B, h, w, C]
                    const TensorRef& w1,        // [C, C1, 2, 2]
                    const TensorRef& b1,        // [C1]
                    const TensorRef& ln_w,      // [C1]
                    const TensorRef& ln_b,      // [C1]
                    const TensorRef& w2,        // [C1, C2, 2, 2]
                    const TensorRef& b2,        // [C2]
                    const TensorRef& hyper_in,  // [B, M, C2]
                    const TensorRef& out,       // [B, M, 4h, 4w]
                    uintptr_t stream) {
  // the kernel is specialised to SAM's C1 = 64, C2 = 32
  const MaskHeadDims d = check_mask_head_args(src, w1, b1, ln_w, ln_b, w2, b2, hyper_in, out, kFloatTypes, 64, 32);
  const int64_t B = d.B, h = d.h, w = d.w, C = d.C, C1 = d.C1, C2 = d.C2, M = d.M;
  check_cuda({{&src, "src"}, {&w1, "w1"}, {&b1, "b1"}, {&ln_w, "ln_w"}, {&ln_b, "ln_b"}, {&w2, "w2"},
              {&b2, "b2"}, {&hyper_in, "hyper_in"}, {&out, "out"}});
  py::gil_scoped_release nogil;
  DeviceGuard guard(src.device);
  mask_head(ptr(src), ptr(w1), ptr(b1), ptr(ln_w), ptr(ln_b), ptr(w2), ptr(b2), ptr(hyper_in), ptr(out), B, h, w, C,
            C1, C2, M, to_dt(src.dtype), as_stream(stream));
}

void hypernet_mlps_cuda(const TensorRef& tokens,  // [B, M, C]
                        const TensorRef& w0,      // [M, C, C]
                        const TensorRef& b0,      // [M, C]
                        const TensorRef& w1,      // [M, C, C]
                        const TensorRef& b1,      // [M, C]
                        const TensorRef& w2,      // [M, C2, C]
                        const TensorRef& b2,      // [M, C2]
                        const TensorRef& out,     // [B, M, C2]
                        uintptr_t stream) {
  check_tensor(tokens, "tokens", {-1, -1, -1}, kFloatTypes);
  const int64_t B = tokens.size(0), M = tokens.size(1), C = tokens.size(2);
  check_tensor(w0, "w0", {M, C, C}, {tokens.dtype});
  check_tensor(b0, "b0", {M, C}, {tokens.dtype});
  check_tensor(w1, "w1", {M, C, C}, {tokens.dtype});
  check_tensor(b1, "b1", {M, C}, {tokens.dtype});
  check_tensor(w2, "w2", {M, -1, C}, {tokens.dtype});
  const int64_t C2 = w2.size(1);
  check_tensor(b2, "b2", {M, C2}, {tokens.dtype});
  check_tensor(out, "out", {B, M, C2}, {tokens.dtype});
  check_cuda({{&tokens, "tokens"}, {&w0, "w0"}, {&b0, "b0"}, {&w1, "w1"}, {&b1, "b1"}, {&w2, "w2"}, {&b2, "b2"},
              {&out, "out"}});
  py::gil_scoped_release nogil;
  DeviceGuard guard(tokens.device);
  hypernet_mlps(ptr(tokens), ptr(w0), ptr(b0), ptr(w1), ptr(b1), ptr(w2), ptr(b2), ptr(out), B, M, C, C2,
                to_dt(tokens.dtype), as_stream(stream));
}

void postprocess_masks_cuda(const TensorRef& masks,  // [B, M, h, w]
                            const TensorRef& out,    // [B, M, H0, W0] (masks' dtype, or bool when binarize)
                            int64_t img_size, int64_t input_h, int64_t input_w, double threshold, bool binarize,
                            uintptr_t stream) {
  check_tensor(masks, "masks", {-1, -1, -1, -1}, kFloatTypes);
  const int64_t B = masks.size(0), M = masks.size(1);
  check_tensor(out, "out", {B, M, -1, -1}, {binarize ? DType::Bool : masks.dtype});
  check_postprocess_sizes(img_size, input_h, input_w);
  if (masks.numel() > 0 && (masks.size(2) == 0 || masks.size(3) == 0))
    throw ShapeError("masks: empty spatial size " + shape_str(masks.shape));
  check_cuda({{&masks, "masks"}, {&out, "out"}});
  py::gil_scoped_release nogil;
  DeviceGuard guard(masks.device);
  postprocess_masks(ptr(masks), ptr(out), B * M, masks.size(2), masks.size(3), out.size(2), out.size(3), img_size,
                    input_h, input_w, static_cast<float>(threshold), binarize, to_dt(masks.dtype),
                    as_stream(stream));
}

void postprocess_masks_stats_cuda(const TensorRef& masks,      // [N, h, w] float32
                                  const TensorRef& out,        // [N, H0, W0] bool
                                  const TensorRef& stability,  // [N] float32
                                  const TensorRef& boxes,      // [N, 4] int64
                                  const TensorRef& scratch,    // [N, 6] int32
                                  int64_t img_size, int64_t input_h, int64_t input_w, double threshold,
                                  double stab_hi, double stab_lo, uintptr_t stream) {
  const int64_t N = check_postprocess_stats_args(masks, out, stability, boxes, img_size, input_h, input_w);
  check_tensor(scratch, "scratch", {N, 6}, {DType::Int32});
  check_cuda({{&masks, "masks"}, {&out, "out"}, {&stability, "stability"}, {&boxes, "boxes"}, {&scratch, "scratch"}});
  py::gil_scoped_release nogil;
  DeviceGuard guard(masks.device);
  postprocess_masks_stats(static_cast<const float*>(ptr(masks)), static_cast<unsigned char*>(ptr(out)),
                          static_cast<float*>(ptr(stability)), static_cast<int64_t*>(ptr(boxes)),
                          static_cast<int*>(ptr(scratch)), N, masks.size(1), masks.size(2), out.size(1), out.size(2),
                          img_size, input_h, input_w, static_cast<float>(threshold), static_cast<float>(stab_hi),
                          static_cast<float>(stab_lo), as_stream(stream));
}

void bind(py::module_& m) {
  m.def("postprocess_masks_stats_cuda", &postprocess_masks_stats_cuda, py::arg("masks"), py::arg("out"),
        py::arg("stability"), py::arg("boxes"), py::arg("scratch"), py::arg("img_size"), py::arg("input_h"),
        py::arg("input_w"), py::arg("threshold"), py::arg("stab_hi"), py::arg("stab_lo"), py::arg("stream"),
        "Binarized postprocess_masks + per-mask stability score and box in one pass, on CUDA.");
  m.def("rel_pos_attention_cuda", &rel_pos_attention_cuda, py::arg("qkv"), py::arg("qkv_bias"), py::arg("rel_h"),
        py::arg("rel_w"), py::arg("out"), py::arg("num_heads"), py::arg("window_size"), py::arg("stream"),
        "Rel-pos attention on CUDA (see samfast.ops.rel_pos_attention_reference).");
  m.def("rel_pos_attention_cuda_path", &rel_pos_attention_cuda_path, py::arg("qkv"), py::arg("qkv_bias"),
        py::arg("rel_h"), py::arg("rel_w"), py::arg("out"), py::arg("num_heads"), py::arg("window_size"),
        "Which CUDA attention kernel these arguments take: 'mma' (tensor cores) or 'simt'.");
  m.def("mask_head_cuda", &mask_head_cuda, py::arg("src"), py::arg("w1"), py::arg("b1"), py::arg("ln_w"),
        py::arg("ln_b"), py::arg("w2"), py::arg("b2"), py::arg("hyper_in"), py::arg("out"), py::arg("stream"),
        "Fused mask head on CUDA (see samfast.ops.mask_head_reference).");
  m.def("hypernet_mlps_cuda", &hypernet_mlps_cuda, py::arg("tokens"), py::arg("w0"), py::arg("b0"), py::arg("w1"),
        py::arg("b1"), py::arg("w2"), py::arg("b2"), py::arg("out"), py::arg("stream"),
        "Per-token hypernetwork MLPs on CUDA (see samfast.ops.hypernet_mlps_reference).");
  m.def("postprocess_masks_cuda", &postprocess_masks_cuda, py::arg("masks"), py::arg("out"), py::arg("img_size"),
        py::arg("input_h"), py::arg("input_w"), py::arg("threshold"), py::arg("binarize"), py::arg("stream"),
        "Fused two-step bilinear mask resize (+ threshold) on CUDA (see samfast.ops.postprocess_masks_reference).");
}

}  // namespace
}  // namespace samfast::cuda

SAMFAST_REGISTER_OPS(cuda_ops, samfast::cuda::bind)
