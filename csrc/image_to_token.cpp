// Binding: _C.image_to_token_attention_cpu(q_in, q_add, u, cb, r, out_bias, residual, ln_w, ln_b, out,
// eps, num_heads) -- fused SAM decoder image->token attention + residual + LayerNorm (float32).
// q_add is optional: pass a tensor with numel 0 for "absent".
#include <pybind11/pybind11.h>

#include "cpu/image_to_token_kernel.h"
#include "op_registry.h"
#include "tensor_ref.h"
#include "cpu_kernel_scope.h"

namespace py = pybind11;

namespace samfast {
namespace {

void image_to_token_cpu_op(const TensorRef& q_in,      // [Bq, N, Cq]  (Bq = 1 or B)
                           const TensorRef& q_add,     // [N, Cq] or numel 0 (absent)
                           const TensorRef& u,         // [B, Cq, HT]
                           const TensorRef& cb,        // [B, HT]
                           const TensorRef& r,         // [B, HT, C]
                           const TensorRef& out_bias,  // [C]
                           const TensorRef& residual,  // [Bx, N, C]  (Bx = 1 or B)
                           const TensorRef& ln_w,      // [C]
                           const TensorRef& ln_b,      // [C]
                           const TensorRef& out,       // [B, N, C]
                           double eps, int64_t num_heads) {
  const std::pair<const TensorRef*, const char*> all[] = {
      {&q_in, "q_in"}, {&q_add, "q_add"}, {&u, "u"}, {&cb, "cb"}, {&r, "r"}, {&out_bias, "out_bias"},
      {&residual, "residual"}, {&ln_w, "ln_w"}, {&ln_b, "ln_b"}, {&out, "out"}};
  for (auto& [t, name] : all) check_device(*t, name, /*want_cuda=*/false);
  const std::vector<DType> f32 = {DType::Float32};
  check_tensor(u, "u", {-1, -1, -1}, f32);
  const int64_t B = u.size(0), Cq = u.size(1), HT = u.size(2);
  if (num_heads <= 0 || HT == 0 || HT % num_heads != 0)
    throw ShapeError("image_to_token_attention: u's last dim (" + std::to_string(HT) +
                     ") must be a positive multiple of num_heads (" + std::to_string(num_heads) + ")");
  check_tensor(q_in, "q_in", {-1, -1, Cq}, f32);
  const int64_t Bq = q_in.size(0), N = q_in.size(1);
  if (Bq != 1 && Bq != B)
    throw ShapeError("q_in: expected [1 or " + std::to_string(B) + ", N, " + std::to_string(Cq) + "], got " +
                     shape_str(q_in.shape));
  const bool has_q_add = q_add.numel() > 0;
  if (has_q_add) check_tensor(q_add, "q_add", {N, Cq}, f32);
  check_tensor(cb, "cb", {B, HT}, f32);
  check_tensor(r, "r", {B, HT, -1}, f32);
  const int64_t C = r.size(2);
  check_tensor(out_bias, "out_bias", {C}, f32);
  check_tensor(residual, "residual", {-1, N, C}, f32);
  const int64_t Bx = residual.size(0);
  if (Bx != 1 && Bx != B)
    throw ShapeError("residual: expected [1 or " + std::to_string(B) + ", " + std::to_string(N) + ", " +
                     std::to_string(C) + "], got " + shape_str(residual.shape));
  check_tensor(ln_w, "ln_w", {C}, f32);
  check_tensor(ln_b, "ln_b", {C}, f32);
  check_tensor(out, "out", {B, N, C}, f32);

  cpu::ImageToTokenArgs a;
  a.B = B; a.Bq = Bq; a.Bx = Bx; a.N = N; a.Cq = Cq; a.C = C; a.H = num_heads; a.T = HT / num_heads;
  a.q_in = q_in.data<const float>(); a.q_add = has_q_add ? q_add.data<const float>() : nullptr;
  a.u = u.data<const float>(); a.cb = cb.data<const float>(); a.r = r.data<const float>();
  a.out_bias = out_bias.data<const float>(); a.residual = residual.data<const float>();
  a.ln_w = ln_w.data<const float>(); a.ln_b = ln_b.data<const float>(); a.out = out.data<float>();
  a.eps = static_cast<float>(eps);
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::image_to_token_cpu(a);
}

void bind(py::module_& m) {
  m.def("image_to_token_attention_cpu", &image_to_token_cpu_op, py::arg("q_in"), py::arg("q_add"), py::arg("u"),
        py::arg("cb"), py::arg("r"), py::arg("out_bias"), py::arg("residual"), py::arg("ln_w"), py::arg("ln_b"),
        py::arg("out"), py::arg("eps"), py::arg("num_heads"),
        "Fused SAM decoder image->token attention: LayerNorm(residual + softmax_t((q_in + q_add) @ u + cb) @ r "
        "+ out_bias) (float32, contiguous CPU tensors; q_add numel 0 = absent). Writes out [B, N, C].");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(image_to_token, samfast::bind)
