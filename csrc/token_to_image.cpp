// Binding: _C.token_to_image_attention_cpu(u, x, k_add, out) -- fused SAM decoder token->image attention
// with folded projections: out[b, q] = sum_n softmax_n(u[b, q] . (x[n] + k_add[n])) x[n] (float32).
// k_add is optional: pass a tensor with numel 0 for "absent".
#include <pybind11/pybind11.h>

#include <string>
#include <utility>

#include "cpu/token_to_image_kernel.h"
#include "op_registry.h"
#include "tensor_ref.h"
#include "cpu_kernel_scope.h"

namespace py = pybind11;

namespace samfast {
namespace {

void token_to_image_cpu_op(const TensorRef& u,      // [B, Q, C]
                           const TensorRef& x,      // [Bx, N, C]  (Bx = 1 or B)
                           const TensorRef& k_add,  // [N, C] or numel 0 (absent)
                           const TensorRef& out) {  // [B, Q, C]
  for (auto [t, name] : {std::pair{&u, "u"}, {&x, "x"}, {&k_add, "k_add"}, {&out, "out"}})
    check_device(*t, name, /*want_cuda=*/false);
  const std::vector<DType> f32 = {DType::Float32};
  check_tensor(u, "u", {-1, -1, -1}, f32);
  const int64_t B = u.size(0), Q = u.size(1), C = u.size(2);
  check_tensor(x, "x", {-1, -1, C}, f32);
  const int64_t Bx = x.size(0), N = x.size(1);
  if (Bx != 1 && Bx != B)
    throw ShapeError("x: expected [1 or " + std::to_string(B) + ", N, " + std::to_string(C) + "], got " +
                     shape_str(x.shape));
  if (N == 0) throw ShapeError("x: needs at least one image token, got " + shape_str(x.shape));
  const bool has_k_add = k_add.numel() > 0;
  if (has_k_add) check_tensor(k_add, "k_add", {N, C}, f32);
  check_tensor(out, "out", {B, Q, C}, f32);

  cpu::TokenToImageArgs a;
  a.B = B; a.Bx = Bx; a.Q = Q; a.N = N; a.C = C;
  a.u = u.data<const float>(); a.x = x.data<const float>();
  a.k_add = has_k_add ? k_add.data<const float>() : nullptr;
  a.out = out.data<float>();
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::token_to_image_cpu(a);
}

void bind(py::module_& m) {
  m.def("token_to_image_attention_cpu", &token_to_image_cpu_op, py::arg("u"), py::arg("x"), py::arg("k_add"),
        py::arg("out"),
        "Fused SAM decoder token->image attention (folded projections): out = softmax_n(u @ (x + k_add)^T) @ x "
        "(float32, contiguous CPU tensors; k_add numel 0 = absent). Writes out [B, Q, C].");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(token_to_image, samfast::bind)
