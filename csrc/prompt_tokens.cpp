// Binding: _C.prompt_tokens_cpu(coords, labels, boxes, gauss, point_emb, not_a_point, prefix, out, pad, img_h, img_w)
// -- SAM prompt encoder's sparse embeddings (points, boxes) behind the decoder's IoU / mask tokens.
#include <pybind11/pybind11.h>

#include "cpu/prompt_tokens_kernel.h"
#include "op_registry.h"
#include "tensor_ref.h"

namespace py = pybind11;

namespace samfast {
namespace {

void prompt_tokens_cpu_op(const TensorRef& coords,       // [B, Np, 2]  (Np may be 0)
                          const TensorRef& labels,       // [B, Np]     int64
                          const TensorRef& boxes,        // [B, 4] or empty (no box)
                          const TensorRef& gauss,        // [2, F]
                          const TensorRef& point_emb,    // [4, C = 2 F]
                          const TensorRef& not_a_point,  // [C]
                          const TensorRef& prefix,       // [P, C]
                          const TensorRef& out,          // [B, P + Np + pad + 2 Nb, C]
                          bool pad, double img_h, double img_w) {
  const std::pair<const TensorRef*, const char*> all[] = {
      {&coords, "coords"}, {&labels, "labels"}, {&boxes, "boxes"}, {&gauss, "gauss"}, {&point_emb, "point_emb"},
      {&not_a_point, "not_a_point"}, {&prefix, "prefix"}, {&out, "out"}};
  for (auto& [t, name] : all) check_device(*t, name, /*want_cuda=*/false);
  const std::vector<DType> f32 = {DType::Float32};
  check_tensor(coords, "coords", {-1, -1, 2}, f32);
  const int64_t B = coords.size(0), Np = coords.size(1);
  check_tensor(labels, "labels", {B, Np}, {DType::Int64});
  const int64_t Nb = boxes.numel() == 0 ? 0 : 1;
  if (Nb) check_tensor(boxes, "boxes", {B, 4}, f32);
  check_tensor(gauss, "gauss", {2, -1}, f32);
  const int64_t F = gauss.size(1), C = 2 * F;
  if (F == 0) throw ShapeError("gauss: expected [2, F] with F > 0, got " + shape_str(gauss.shape));
  check_tensor(point_emb, "point_emb", {4, C}, f32);
  check_tensor(not_a_point, "not_a_point", {C}, f32);
  check_tensor(prefix, "prefix", {-1, C}, f32);
  const int64_t P = prefix.size(0);
  check_tensor(out, "out", {B, P + Np + (pad ? 1 : 0) + 2 * Nb, C}, f32);
  if (!(img_h > 0) || !(img_w > 0)) throw ShapeError("img_h, img_w: the input image size must be positive");

  cpu::PromptTokensArgs a;
  a.B = B; a.Np = Np; a.Nb = Nb; a.P = P; a.C = C; a.F = F; a.pad = pad;
  a.img_h = static_cast<float>(img_h); a.img_w = static_cast<float>(img_w);
  a.coords = coords.data<const float>(); a.labels = labels.data<const int64_t>();
  a.boxes = Nb ? boxes.data<const float>() : nullptr;
  a.gauss = gauss.data<const float>(); a.point_emb = point_emb.data<const float>();
  a.not_a_point = not_a_point.data<const float>(); a.prefix = prefix.data<const float>();
  a.out = out.data<float>();
  cpu::prompt_tokens_cpu(a);  // a few microseconds: keeps the GIL, no threads
}

void bind(py::module_& m) {
  m.def("prompt_tokens_cpu", &prompt_tokens_cpu_op, py::arg("coords"), py::arg("labels"), py::arg("boxes"),
        py::arg("gauss"), py::arg("point_emb"), py::arg("not_a_point"), py::arg("prefix"), py::arg("out"),
        py::arg("pad"), py::arg("img_h"), py::arg("img_w"),
        "SAM prompt encoder's point / box embeddings behind the IoU and mask tokens (float32 CPU tensors, "
        "int64 labels). Writes out [B, P + Np + pad + 2 Nb, C].");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(prompt_tokens, samfast::bind)
