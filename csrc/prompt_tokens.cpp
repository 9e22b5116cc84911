// Binding: _C.prompt_tokens_cpu(coords, labels, boxes, gauss, pe0, pe1, pe2, pe3, not_a_point, iou_token,
// mask_tokens, out, has_box, pad, img_h, img_w) -- SAM prompt encoder's sparse embeddings (points, boxes) behind the
// decoder's IoU / mask tokens. The embedding tensors are the modules' weights as they are ([1, C] / [M, C]).
#include <pybind11/pybind11.h>

#include "cpu/prompt_tokens_kernel.h"
#include "decoder_ops.h"
#include "op_registry.h"
#include "tensor_ref.h"

namespace py = pybind11;

namespace samfast {

void prompt_tokens_cpu_op(const TensorRef& coords,       // [B, Np, 2]  (Np may be 0)
                          const TensorRef& labels,       // [B, Np]     int64
                          const TensorRef& boxes,        // [B, 4] (read when has_box)
                          const TensorRef& gauss,        // [2, F]
                          const TensorRef& pe0, const TensorRef& pe1, const TensorRef& pe2,
                          const TensorRef& pe3,          // [1, C = 2 F] each: point_embeddings[0..3].weight
                          const TensorRef& not_a_point,  // [1, C]
                          const TensorRef& iou_token,    // [1, C]
                          const TensorRef& mask_tokens,  // [M, C]
                          const TensorRef& out,          // [B, 1 + M + Np + pad + 2 has_box, C]
                          bool has_box, bool pad, double img_h, double img_w) {
  const std::pair<const TensorRef*, const char*> all[] = {
      {&coords, "coords"}, {&labels, "labels"}, {&boxes, "boxes"}, {&gauss, "gauss"}, {&pe0, "pe0"}, {&pe1, "pe1"},
      {&pe2, "pe2"}, {&pe3, "pe3"}, {&not_a_point, "not_a_point"}, {&iou_token, "iou_token"},
      {&mask_tokens, "mask_tokens"}, {&out, "out"}};
  for (auto& [t, name] : all) check_device(*t, name, /*want_cuda=*/false);
  const std::vector<DType> f32 = {DType::Float32};
  check_tensor(coords, "coords", {-1, -1, 2}, f32);
  const int64_t B = coords.size(0), Np = coords.size(1);
  check_tensor(labels, "labels", {B, Np}, {DType::Int64});
  const int64_t Nb = has_box ? 1 : 0;
  if (Nb) check_tensor(boxes, "boxes", {B, 4}, f32);
  check_tensor(gauss, "gauss", {2, -1}, f32);
  const int64_t F = gauss.size(1), C = 2 * F;
  if (F == 0) throw ShapeError("gauss: expected [2, F] with F > 0, got " + shape_str(gauss.shape));
  const std::pair<const TensorRef*, const char*> rows[] = {
      {&pe0, "pe0"}, {&pe1, "pe1"}, {&pe2, "pe2"}, {&pe3, "pe3"}, {&not_a_point, "not_a_point"},
      {&iou_token, "iou_token"}};
  for (auto& [t, name] : rows) check_tensor(*t, name, {1, C}, f32);
  check_tensor(mask_tokens, "mask_tokens", {-1, C}, f32);
  const int64_t P = 1 + mask_tokens.size(0);
  check_tensor(out, "out", {B, P + Np + (pad ? 1 : 0) + 2 * Nb, C}, f32);
  if (!(img_h > 0) || !(img_w > 0)) throw ShapeError("img_h, img_w: the input image size must be positive");

  cpu::PromptTokensArgs a;
  a.B = B; a.Np = Np; a.Nb = Nb; a.P = P; a.C = C; a.F = F; a.pad = pad;
  a.img_h = static_cast<float>(img_h); a.img_w = static_cast<float>(img_w);
  a.coords = coords.data<const float>(); a.labels = labels.data<const int64_t>();
  a.boxes = Nb ? boxes.data<const float>() : nullptr;
  a.gauss = gauss.data<const float>();
  const TensorRef* pe[4] = {&pe0, &pe1, &pe2, &pe3};
  for (int i = 0; i < 4; ++i) a.point_emb[i] = pe[i]->data<const float>();
  a.not_a_point = not_a_point.data<const float>(); a.iou_token = iou_token.data<const float>();
  a.mask_tokens = mask_tokens.data<const float>();
  a.out = out.data<float>();
  cpu::prompt_tokens_cpu(a);  // a few microseconds: keeps the GIL, no threads
}

namespace {

void bind(py::module_& m) {
  m.def("prompt_tokens_cpu", &prompt_tokens_cpu_op, py::arg("coords"), py::arg("labels"), py::arg("boxes"),
        py::arg("gauss"), py::arg("pe0"), py::arg("pe1"), py::arg("pe2"), py::arg("pe3"), py::arg("not_a_point"),
        py::arg("iou_token"), py::arg("mask_tokens"), py::arg("out"), py::arg("has_box"), py::arg("pad"),
        py::arg("img_h"), py::arg("img_w"),
        "SAM prompt encoder's point / box embeddings behind the IoU and mask tokens (float32 CPU tensors, "
        "int64 labels). Writes out [B, 1 + M + Np + pad + 2 has_box, C].");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(prompt_tokens, samfast::bind)
