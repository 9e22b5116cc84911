// Binding: _C.mask_head_cpu(src, w1, b1, ln_w, ln_b, w2, b2, hyper_in, out) -- fused SAM mask head.
#include <pybind11/pybind11.h>

#include "cpu/mask_head_kernel.h"
#include "op_checks.h"
#include "op_registry.h"
#include "tensor_ref.h"
#include "cpu_kernel_scope.h"

namespace py = pybind11;

namespace samfast {
namespace {

void mask_head_cpu_op(const TensorRef& src,       // [B, h, w, C]
                      const TensorRef& w1,        // [C, C1, 2, 2]
                      const TensorRef& b1,        // [C1]
                      const TensorRef& ln_w,      // [C1]
                      const TensorRef& ln_b,      // [C1]
                      const TensorRef& w2,        // [C1, C2, 2, 2]
                      const TensorRef& b2,        // [C2]
                      const TensorRef& hyper_in,  // [B, M, C2]
                      const TensorRef& out) {     // [B, M, 4h, 4w]
  const std::pair<const TensorRef*, const char*> all[] = {
      {&src, "src"}, {&w1, "w1"}, {&b1, "b1"}, {&ln_w, "ln_w"}, {&ln_b, "ln_b"},
      {&w2, "w2"}, {&b2, "b2"}, {&hyper_in, "hyper_in"}, {&out, "out"}};
  for (auto& [t, name] : all) check_device(*t, name, /*want_cuda=*/false);
  const MaskHeadDims d = check_mask_head_args(src, w1, b1, ln_w, ln_b, w2, b2, hyper_in, out,
                                              {DType::Float32, DType::BFloat16});
  const int64_t B = d.B, h = d.h, w = d.w, C = d.C, C1 = d.C1, C2 = d.C2, M = d.M;
  if (C == 0 || C1 == 0 || C2 == 0) throw ShapeError("mask_head: C, C1 and C2 must be positive");

  cpu::MaskHeadArgs a;
  a.B = B; a.h = h; a.w = w; a.C = C; a.C1 = C1; a.C2 = C2; a.M = M;
  a.src = src.data<void>(); a.w1 = w1.data<void>(); a.b1 = b1.data<void>();
  a.ln_w = ln_w.data<void>(); a.ln_b = ln_b.data<void>(); a.w2 = w2.data<void>();
  a.b2 = b2.data<void>(); a.hyper = hyper_in.data<void>(); a.out = out.data<void>();
  a.bf16 = src.dtype == DType::BFloat16;
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::mask_head_cpu(a);
}

void bind(py::module_& m) {
  m.def("mask_head_cpu", &mask_head_cpu_op, py::arg("src"), py::arg("w1"), py::arg("b1"), py::arg("ln_w"),
        py::arg("ln_b"), py::arg("w2"), py::arg("b2"), py::arg("hyper_in"), py::arg("out"),
        "Fused SAM mask head: ConvT2x2 -> LayerNorm -> GELU -> ConvT2x2 -> GELU -> hyper_in dot "
        "(float32 or bfloat16, contiguous CPU tensors). Writes out [B, M, 4h, 4w].");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(mask_head, samfast::bind)
