// pybind binding of the CPU rel-pos attention kernel (csrc/cpu/rel_pos_attention_kernel.h):
//   _C.rel_pos_attention_cpu(qkv, qkv_bias, rel_h, rel_w, out, num_heads, window_size)
// Validates every TensorRef (shape / dtype / contiguity / device) before touching memory.
#include <pybind11/pybind11.h>

#include "cpu/rel_pos_attention_kernel.h"
#include "op_checks.h"
#include "op_registry.h"
#include "tensor_ref.h"
#include "cpu_kernel_scope.h"

namespace py = pybind11;
using samfast::DType;
using samfast::TensorRef;

namespace {

void rel_pos_attention_cpu(const TensorRef& qkv,       // [B, H, W, 3*C]
                           const TensorRef& qkv_bias,  // [3*C]
                           const TensorRef& rel_h,     // [Sh, Sh, hd]
                           const TensorRef& rel_w,     // [Sw, Sw, hd]
                           const TensorRef& out,       // [B, H, W, C] (written)
                           int64_t num_heads, int64_t window_size) {
  for (auto [t, name] : {std::pair{&qkv, "qkv"}, {&qkv_bias, "qkv_bias"}, {&rel_h, "rel_h"},
                         {&rel_w, "rel_w"}, {&out, "out"}})
    samfast::check_device(*t, name, /*want_cuda=*/false);
  const samfast::AttnDims d = samfast::check_rel_pos_attention_args(
      qkv, qkv_bias, rel_h, rel_w, &out, num_heads, window_size, {DType::Float32, DType::BFloat16});
  const DType dt = qkv.dtype;

  samfast::cpu::RelPosAttentionArgs a;
  a.qkv = reinterpret_cast<const void*>(qkv.ptr);
  a.qkv_bias = reinterpret_cast<const void*>(qkv_bias.ptr);
  a.rel_h = reinterpret_cast<const void*>(rel_h.ptr);
  a.rel_w = reinterpret_cast<const void*>(rel_w.ptr);
  a.out = reinterpret_cast<void*>(out.ptr);
  a.bf16 = dt == DType::BFloat16;
  a.B = d.B; a.H = d.H; a.W = d.W; a.C = d.C; a.num_heads = num_heads; a.window_size = window_size;
  samfast::CpuKernelScope scope;  // no GIL, samfast's thread count
  samfast::cpu::rel_pos_attention(a);
}

void bind(py::module_& m) {
  m.def("rel_pos_attention_cpu", &rel_pos_attention_cpu, py::arg("qkv"), py::arg("qkv_bias"), py::arg("rel_h"),
        py::arg("rel_w"), py::arg("out"), py::arg("num_heads"), py::arg("window_size"),
        "ViT attention with decomposed rel-pos bias (global if window_size == 0, else windowed with "
        "padding tokens = qkv_bias); writes out [B, H, W, C]. float32 / bfloat16, fp32 math.");
}

}  // namespace

SAMFAST_REGISTER_OPS(rel_pos_attention, bind)
