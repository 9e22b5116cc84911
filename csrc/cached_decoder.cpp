// Bindings of the whole-decoder CPU path (see cpu/cached_decoder_kernel.h):
//   _C.cached_decoder_param_entries(dims) -> [(kind, name, out, in)]  the packed order (Python gathers by name)
//   _C.cached_decoder_packed_numel(dims)
//   _C.cached_decoder_pack_cpu(weights, dims, packed)      weights: 2 per entry (weight, bias), float32
//   _C.cached_decoder_cpu(tokens, x0, pe, k0, v0, q0, features, dense, packed, dims, h, w, multimask, eps, eps2d,
//                         masks, iou, g)   dense numel 0: mask-free prompts (layer 0 from the cache); g numel 0:
//                         first ConvT unfolded
//   _C.cached_decoder_fold_image_cpu(x0, pe, packed, dims, g)   per image: g = {x0 @ A'' (MaskHeadFold), layer 1's
//                         token->image kv block (t2i_ln)}, see cached_decoder_fold_image
// dims = [C, heads, Di, mlp_dim, mask_tokens, iou_hidden, C1, C2].
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <vector>

#include "cpu/cached_decoder_kernel.h"
#include "cpu/cached_decoder_params.h"
#include "decoder_ops.h"
#include "op_registry.h"
#include "tensor_ref.h"
#include "cpu_kernel_scope.h"

namespace py = pybind11;

namespace samfast {
namespace {

const std::vector<DType> kF32 = {DType::Float32};

cpu::DecoderDims parse_dims(const std::vector<int64_t>& v) {
  if (v.size() != 8)
    throw ShapeError("dims: expected 8 values [C, heads, Di, mlp_dim, mask_tokens, iou_hidden, C1, C2], got " +
                     std::to_string(v.size()));
  cpu::DecoderDims d;
  d.C = v[0]; d.H = v[1]; d.Di = v[2]; d.Mlp = v[3]; d.M = v[4]; d.Hid = v[5]; d.C1 = v[6]; d.C2 = v[7];
  cpu::check_decoder_dims(d);
  return d;
}

std::vector<std::tuple<std::string, std::string, int64_t, int64_t>> param_entries(const std::vector<int64_t>& dims) {
  std::vector<std::tuple<std::string, std::string, int64_t, int64_t>> out;
  for (const auto& e : cpu::decoder_param_entries(parse_dims(dims))) {
    const char* kind = e.kind == cpu::ParamEntry::Linear ? "linear" : e.kind == cpu::ParamEntry::Norm ? "norm" : "convt";
    out.emplace_back(kind, e.name, e.out, e.in);
  }
  return out;
}

void pack_op(const std::vector<TensorRef>& weights, const std::vector<int64_t>& dims, const TensorRef& packed) {
  const cpu::DecoderDims d = parse_dims(dims);
  const auto entries = cpu::decoder_param_entries(d);
  if (weights.size() != 2 * entries.size())
    throw ShapeError("weights: expected " + std::to_string(2 * entries.size()) + " tensors (weight, bias per entry), got " +
                     std::to_string(weights.size()));
  std::vector<const float*> ptrs;
  for (size_t e = 0; e < entries.size(); ++e) {
    const auto& E = entries[e];
    const std::string wn = E.name + ".weight", bn = E.name + ".bias";
    const TensorRef& w = weights[2 * e];
    const TensorRef& b = weights[2 * e + 1];
    check_device(w, wn.c_str(), false);
    check_device(b, bn.c_str(), false);
    if (E.kind == cpu::ParamEntry::Linear) check_tensor(w, wn.c_str(), {E.out, E.in}, kF32);
    else if (E.kind == cpu::ParamEntry::Norm) check_tensor(w, wn.c_str(), {E.out}, kF32);
    else check_tensor(w, wn.c_str(), {E.in, E.out, 2, 2}, kF32);
    check_tensor(b, bn.c_str(), {E.out}, kF32);
    ptrs.push_back(w.data<const float>());
    ptrs.push_back(b.data<const float>());
  }
  check_device(packed, "packed", false);
  check_tensor(packed, "packed", {cpu::decoder_packed_numel(d)}, kF32);
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::pack_decoder_params(d, ptrs, packed.data<float>());
}

}  // namespace

void cached_decoder_cpu_op(const TensorRef& tokens,  // [B, T, C]
                const TensorRef& x0,      // [1, N, C]
                const TensorRef& pe,      // [1, N, C]
                const TensorRef& k0,      // [H, Di/H, N]
                const TensorRef& v0,      // [H, N, Di/H]
                const TensorRef& q0,      // [N, Di]
                const TensorRef& features,  // [1, C, h, w]  image embedding (read with dense)
                const TensorRef& dense,   // [B, C, h, w] or numel 0 (absent: mask-free prompts)
                const TensorRef& packed,  // [packed_numel(dims)]
                const std::vector<int64_t>& dims, int64_t h, int64_t w, bool multimask, double eps, double eps2d,
                const TensorRef& masks,   // [B, K, 4h, 4w]
                const TensorRef& iou,     // [B, K]
                const TensorRef& g) {     // [N, fold width] cached_decoder_fold_image(x0), or numel 0 (absent)
  const std::pair<const TensorRef*, const char*> all[] = {
      {&tokens, "tokens"}, {&x0, "x0"}, {&pe, "pe"}, {&k0, "k0"}, {&v0, "v0"}, {&q0, "q0"},
      {&features, "features"}, {&dense, "dense"}, {&packed, "packed"}, {&masks, "masks"}, {&iou, "iou"}, {&g, "g"}};
  for (auto& [t, name] : all) check_device(*t, name, /*want_cuda=*/false);
  cpu::CachedDecoderArgs a;
  a.d = parse_dims(dims);
  const int64_t C = a.d.C, H = a.d.H, Di = a.d.Di;
  if (h <= 0 || w <= 0 || (h * w) % 8 != 0)
    throw ShapeError("h, w: expected a positive grid with h * w a multiple of 8, got " + std::to_string(h) + "x" +
                     std::to_string(w));
  const int64_t N = h * w;
  check_tensor(tokens, "tokens", {-1, -1, C}, kF32);
  const int64_t B = tokens.size(0), T = tokens.size(1);
  if (T < a.d.M + 1)
    throw ShapeError("tokens: expected [B, T >= " + std::to_string(a.d.M + 1) + " (IoU + mask tokens + prompts), " +
                     std::to_string(C) + "], got " + shape_str(tokens.shape));
  check_tensor(x0, "x0", {1, N, C}, kF32);
  check_tensor(pe, "pe", {1, N, C}, kF32);
  check_tensor(k0, "k0", {H, Di / H, N}, kF32);
  check_tensor(v0, "v0", {H, N, Di / H}, kF32);
  check_tensor(q0, "q0", {N, Di}, kF32);
  const bool has_dense = !(dense.dim() == 1 && dense.numel() == 0);  // a 1-D empty tensor means absent
  if (has_dense) {
    check_tensor(features, "features", {1, C, h, w}, kF32);
    check_tensor(dense, "dense", {B, C, h, w}, kF32);
  }
  check_tensor(packed, "packed", {cpu::decoder_packed_numel(a.d)}, kF32);
  const bool has_g = !(g.dim() == 1 && g.numel() == 0);
  if (has_g) check_tensor(g, "g", {N, cpu::cached_decoder_fold_width(a.d)}, kF32);
  const int64_t K = multimask ? a.d.M - 1 : 1;
  check_tensor(masks, "masks", {B, K, 4 * h, 4 * w}, kF32);
  check_tensor(iou, "iou", {B, K}, kF32);
  a.B = B; a.T = T; a.h = h; a.w = w; a.multimask = multimask;
  a.eps = static_cast<float>(eps); a.eps2d = static_cast<float>(eps2d);
  a.packed = packed.data<const float>(); a.tokens = tokens.data<const float>();
  a.x0 = x0.data<const float>(); a.pe = pe.data<const float>(); a.k0 = k0.data<const float>();
  a.v0 = v0.data<const float>(); a.q0 = q0.data<const float>();
  a.features = has_dense ? features.data<const float>() : nullptr;
  a.dense = has_dense ? dense.data<const float>() : nullptr;
  a.g = has_g ? g.data<const float>() : nullptr;
  a.masks = masks.data<float>(); a.iou = iou.data<float>();
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::cached_decoder_cpu(a);
}

namespace {

void fold_image_op(const TensorRef& x0,      // [1, N, C]
                   const TensorRef& pe,      // [1, N, C]
                   const TensorRef& packed,  // [packed_numel(dims)]
                   const std::vector<int64_t>& dims,
                   const TensorRef& g) {     // [N, fold width]
  for (auto [t, name] : {std::pair{&x0, "x0"}, std::pair{&pe, "pe"}, std::pair{&packed, "packed"},
                         std::pair{&g, "g"}})
    check_device(*t, name, /*want_cuda=*/false);
  const cpu::DecoderDims d = parse_dims(dims);
  check_tensor(x0, "x0", {1, -1, d.C}, kF32);
  const int64_t N = x0.size(1);
  check_tensor(pe, "pe", {1, N, d.C}, kF32);
  check_tensor(packed, "packed", {cpu::decoder_packed_numel(d)}, kF32);
  check_tensor(g, "g", {N, cpu::cached_decoder_fold_width(d)}, kF32);
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::cached_decoder_fold_image(d, packed.data<const float>(), x0.data<const float>(), pe.data<const float>(), N,
                                 g.data<float>());
}

void bind(py::module_& m) {
  m.def("cached_decoder_param_entries", &param_entries, py::arg("dims"),
        "Packed decoder layout: [(kind, name, out, in)] in order; dims = [C, heads, Di, mlp_dim, mask_tokens, "
        "iou_hidden, C1, C2].");
  m.def("cached_decoder_packed_numel", [](const std::vector<int64_t>& d) { return cpu::decoder_packed_numel(parse_dims(d)); },
        py::arg("dims"), "Number of float32 values of the packed decoder parameters.");
  m.def("cached_decoder_pack_cpu", &pack_op, py::arg("weights"), py::arg("dims"), py::arg("packed"),
        "Pack the mask decoder's parameters (weight, bias per entry of cached_decoder_param_entries) into `packed`.");
  m.def("cached_decoder_cpu", &cached_decoder_cpu_op, py::arg("tokens"), py::arg("x0"), py::arg("pe"), py::arg("k0"),
        py::arg("v0"), py::arg("q0"), py::arg("features"), py::arg("dense"), py::arg("packed"), py::arg("dims"), py::arg("h"), py::arg("w"),
        py::arg("multimask"), py::arg("eps"), py::arg("eps2d"), py::arg("masks"), py::arg("iou"), py::arg("g"),
        "Whole SAM mask decoder on a cached image (float32 CPU; dense = mask prompt embedding, or numel 0): writes low-res mask "
        "logits [B, K, 4h, 4w] and IoU predictions [B, K]. g: cached_decoder_fold_image's output, or numel 0.");
  m.def("cached_decoder_fold_width", [](const std::vector<int64_t>& d) { return cpu::cached_decoder_fold_width(parse_dims(d)); },
        py::arg("dims"), "Columns of cached_decoder_fold_image's output.");
  m.def("cached_decoder_fold_image_cpu", &fold_image_op, py::arg("x0"), py::arg("pe"), py::arg("packed"), py::arg("dims"),
        py::arg("g"),
        "Per-image products for mask-free prompts, g [N, fold width]: x0 @ A'' (the mask head's folded first ConvT) "
        "and layer 1's token->image kv block (see cpu/cached_decoder_kernel.h).");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(cached_decoder, samfast::bind)
