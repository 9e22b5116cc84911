// Binding: _C.mask_embed_cpu(mask, w1, b1, ln1_w, ln1_b, w2, b2, ln2_w, ln2_b, w3, b3, out, eps1, eps2) --
// SAM prompt encoder's mask downscaling (conv 2x2 s2 -> LN -> GELU -> conv 2x2 s2 -> LN -> GELU -> conv 1x1).
#include <pybind11/pybind11.h>

#include "cpu/mask_embed_kernel.h"
#include "op_registry.h"
#include "tensor_ref.h"
#include "cpu_kernel_scope.h"

namespace py = pybind11;

namespace samfast {
namespace {

void mask_embed_cpu_op(const TensorRef& mask,   // [B, 1, 4h, 4w]
                       const TensorRef& w1,     // [C1, 1, 2, 2]
                       const TensorRef& b1,     // [C1]
                       const TensorRef& ln1_w,  // [C1]
                       const TensorRef& ln1_b,  // [C1]
                       const TensorRef& w2,     // [C2, C1, 2, 2]
                       const TensorRef& b2,     // [C2]
                       const TensorRef& ln2_w,  // [C2]
                       const TensorRef& ln2_b,  // [C2]
                       const TensorRef& w3,     // [C, C2, 1, 1]
                       const TensorRef& b3,     // [C]
                       const TensorRef& out,    // [B, C, h, w]
                       double eps1, double eps2) {
  const std::pair<const TensorRef*, const char*> all[] = {
      {&mask, "mask"}, {&w1, "w1"}, {&b1, "b1"}, {&ln1_w, "ln1_w"}, {&ln1_b, "ln1_b"}, {&w2, "w2"}, {&b2, "b2"},
      {&ln2_w, "ln2_w"}, {&ln2_b, "ln2_b"}, {&w3, "w3"}, {&b3, "b3"}, {&out, "out"}};
  for (auto& [t, name] : all) check_device(*t, name, /*want_cuda=*/false);
  const std::vector<DType> f32 = {DType::Float32};
  check_tensor(mask, "mask", {-1, 1, -1, -1}, f32);
  const int64_t B = mask.size(0), H = mask.size(2), W = mask.size(3);
  if (H % 4 != 0 || W % 4 != 0)
    throw ShapeError("mask: height and width must be multiples of 4 (two stride-2 convolutions), got " +
                     shape_str(mask.shape));
  check_tensor(w1, "w1", {-1, 1, 2, 2}, f32);
  const int64_t C1 = w1.size(0);
  check_tensor(w2, "w2", {-1, C1, 2, 2}, f32);
  const int64_t C2 = w2.size(0);
  check_tensor(w3, "w3", {-1, C2, 1, 1}, f32);
  const int64_t C = w3.size(0);
  if (C1 == 0 || C2 == 0) throw ShapeError("mask_embed: conv channel counts must be positive");
  check_tensor(b1, "b1", {C1}, f32);
  check_tensor(ln1_w, "ln1_w", {C1}, f32);
  check_tensor(ln1_b, "ln1_b", {C1}, f32);
  check_tensor(b2, "b2", {C2}, f32);
  check_tensor(ln2_w, "ln2_w", {C2}, f32);
  check_tensor(ln2_b, "ln2_b", {C2}, f32);
  check_tensor(b3, "b3", {C}, f32);
  check_tensor(out, "out", {B, C, H / 4, W / 4}, f32);

  cpu::MaskEmbedArgs a;
  a.B = B; a.h = H / 4; a.w = W / 4; a.C1 = C1; a.C2 = C2; a.C = C;
  a.mask = mask.data<const float>();
  a.w1 = w1.data<const float>(); a.b1 = b1.data<const float>();
  a.ln1_w = ln1_w.data<const float>(); a.ln1_b = ln1_b.data<const float>();
  a.w2 = w2.data<const float>(); a.b2 = b2.data<const float>();
  a.ln2_w = ln2_w.data<const float>(); a.ln2_b = ln2_b.data<const float>();
  a.w3 = w3.data<const float>(); a.b3 = b3.data<const float>();
  a.eps1 = static_cast<float>(eps1); a.eps2 = static_cast<float>(eps2);
  a.out = out.data<float>();
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::mask_embed_cpu(a);
}

void bind(py::module_& m) {
  m.def("mask_embed_cpu", &mask_embed_cpu_op, py::arg("mask"), py::arg("w1"), py::arg("b1"), py::arg("ln1_w"),
        py::arg("ln1_b"), py::arg("w2"), py::arg("b2"), py::arg("ln2_w"), py::arg("ln2_b"), py::arg("w3"),
        py::arg("b3"), py::arg("out"), py::arg("eps1"), py::arg("eps2"),
        "SAM mask downscaling: conv2x2/s2 -> LayerNorm2d -> GELU -> conv2x2/s2 -> LayerNorm2d -> GELU -> conv1x1 "
        "(float32, contiguous CPU tensors). Writes out [B, C, H/4, W/4].");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(mask_embed, samfast::bind)
