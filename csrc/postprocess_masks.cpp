// Bindings: _C.postprocess_masks_cpu(masks, out, img_size, input_h, input_w, threshold, binarize) and
// _C.postprocess_masks_stats_cpu(...): the binarized resize plus per-mask stability score and box, one pass.
#include <pybind11/pybind11.h>

#include <string>
#include <utility>

#include "cpu/postprocess_masks_kernel.h"
#include "decoder_ops.h"
#include "op_checks.h"
#include "op_registry.h"
#include "tensor_ref.h"
#include "cpu_kernel_scope.h"

namespace py = pybind11;

namespace samfast {

void postprocess_masks_cpu_op(const TensorRef& masks,  // [B, M, h, w] float32 / bfloat16
                              const TensorRef& out,    // [B, M, H0, W0] masks' dtype, or bool if binarize
                              int64_t img_size, int64_t input_h, int64_t input_w, double threshold,
                              bool binarize) {
  check_device(masks, "masks", /*want_cuda=*/false);
  check_device(out, "out", /*want_cuda=*/false);
  check_tensor(masks, "masks", {-1, -1, -1, -1}, {DType::Float32, DType::BFloat16});
  const int64_t B = masks.size(0), M = masks.size(1), h = masks.size(2), w = masks.size(3);
  check_tensor(out, "out", {B, M, -1, -1}, {binarize ? DType::Bool : masks.dtype});
  if (h <= 0 || w <= 0) throw ShapeError("masks: spatial size must be positive, got " + shape_str(masks.shape));
  check_postprocess_sizes(img_size, input_h, input_w);

  cpu::PostprocessArgs a;
  a.B = B; a.M = M; a.h = h; a.w = w;
  a.img_size = img_size; a.input_h = input_h; a.input_w = input_w;
  a.H0 = out.size(2); a.W0 = out.size(3);
  a.masks = masks.data<void>();
  a.masks_bf16 = masks.dtype == DType::BFloat16;
  a.out = out.data<void>();
  a.out_kind = binarize ? cpu::MaskOut::Bool
                        : (a.masks_bf16 ? cpu::MaskOut::BFloat16 : cpu::MaskOut::Float32);
  a.threshold = static_cast<float>(threshold);
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::postprocess_masks_cpu(a);
}

namespace {

void postprocess_masks_stats_cpu_op(const TensorRef& masks,      // [N, h, w] float32 low-res logits
                                    const TensorRef& out,        // [N, H0, W0] bool: value > threshold
                                    const TensorRef& stability,  // [N] float32
                                    const TensorRef& boxes,      // [N, 4] int64 XYXY
                                    int64_t img_size, int64_t input_h, int64_t input_w, double threshold,
                                    double stab_hi, double stab_lo) {
  for (auto [t, name] : {std::pair{&masks, "masks"}, {&out, "out"}, {&stability, "stability"}, {&boxes, "boxes"}})
    check_device(*t, name, /*want_cuda=*/false);
  const int64_t N = check_postprocess_stats_args(masks, out, stability, boxes, img_size, input_h, input_w);
  const int64_t h = masks.size(1), w = masks.size(2);

  cpu::PostprocessArgs a;
  a.B = 1; a.M = N; a.h = h; a.w = w;
  a.img_size = img_size; a.input_h = input_h; a.input_w = input_w;
  a.H0 = out.size(1); a.W0 = out.size(2);
  a.masks = masks.data<void>();
  a.out = out.data<void>();
  a.out_kind = cpu::MaskOut::Bool;
  a.threshold = static_cast<float>(threshold);
  a.stability = stability.data<float>();
  a.boxes = boxes.data<int64_t>();
  a.stab_hi = static_cast<float>(stab_hi);
  a.stab_lo = static_cast<float>(stab_lo);
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::postprocess_masks_cpu(a);
}

void bind(py::module_& m) {
  m.def("postprocess_masks_stats_cpu", &postprocess_masks_stats_cpu_op, py::arg("masks"), py::arg("out"),
        py::arg("stability"), py::arg("boxes"), py::arg("img_size"), py::arg("input_h"), py::arg("input_w"),
        py::arg("threshold"), py::arg("stab_hi"), py::arg("stab_lo"),
        "postprocess_masks binarized at threshold plus, in the same pass, each mask's stability score "
        "(#(v > stab_hi) / #(v > stab_lo)) and XYXY box of v > threshold (zeros when empty).");
  m.def("postprocess_masks_cpu", &postprocess_masks_cpu_op, py::arg("masks"), py::arg("out"),
        py::arg("img_size"), py::arg("input_h"), py::arg("input_w"), py::arg("threshold"),
        py::arg("binarize"),
        "Fused SAM postprocess_masks: bilinear to img_size^2, crop to input size, bilinear to out's "
        "size (align_corners=False); out = value > threshold when binarize (bool out).");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(postprocess_masks, samfast::bind)
