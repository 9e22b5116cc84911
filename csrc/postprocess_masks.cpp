// Binding: _C.postprocess_masks_cpu(masks, out, img_size, input_h, input_w, threshold, binarize).
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/postprocess_masks_kernel.h"
#include "op_registry.h"
#include "tensor_ref.h"

namespace py = pybind11;

namespace samfast {
namespace {

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
  if (img_size <= 0 || input_h <= 0 || input_w <= 0 || input_h > img_size || input_w > img_size)
    throw ShapeError("input size (" + std::to_string(input_h) + ", " + std::to_string(input_w) +
                     ") must be positive and within img_size " + std::to_string(img_size));

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
  py::gil_scoped_release nogil;
  cpu::postprocess_masks_cpu(a);
}

void bind(py::module_& m) {
  m.def("postprocess_masks_cpu", &postprocess_masks_cpu_op, py::arg("masks"), py::arg("out"),
        py::arg("img_size"), py::arg("input_h"), py::arg("input_w"), py::arg("threshold"),
        py::arg("binarize"),
        "Fused SAM postprocess_masks: bilinear to img_size^2, crop to input size, bilinear to out's "
        "size (align_corners=False); out = value > threshold when binarize (bool out).");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(postprocess_masks, samfast::bind)
