// Binding: _C.PromptPredictor -- SamPredictor.predict's mask-free CPU path for one image as one C++ call per prompt.
// Made once per image from the decoder cache and the prompt weights (kept alive through its `owners`), its
// predict(point_coords, point_labels, box, multimask, threshold, binarize) takes the user's numpy prompts in the
// original image frame, checks them, scales them into the input frame, runs prompt_tokens_cpu_op ->
// cached_decoder_cpu_op -> postprocess_masks_cpu_op and returns new numpy arrays (masks, iou, low_res), exactly as
// the official predictor. Right after a decoder call has evicted the caches, every Python-level step of the
// general path (conversions, checks, tensor refs, output allocation) costs microseconds: ~0.3 ms per prompt.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "decoder_ops.h"
#include "op_registry.h"
#include "tensor_ref.h"

namespace py = pybind11;

namespace samfast {
namespace {

// A contiguous CPU view of memory owned by the caller.
TensorRef local_ref(const void* p, std::vector<int64_t> shape, DType dtype) {
  TensorRef t;
  t.ptr = reinterpret_cast<uintptr_t>(p);
  t.dtype = dtype;
  t.strides.assign(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) t.strides[i] = t.strides[i + 1] * shape[i + 1];
  t.shape = std::move(shape);
  return t;
}

constexpr int kNpyAligned = 0x0100;  // NPY_ARRAY_ALIGNED

// Whether o is a C-contiguous, aligned, native-order numpy array of one of `kinds` ('f' float, 'i' signed int) with
// itemsize 4 or 8; then *out is it.
bool plain_array(const py::object& o, const char* kinds, py::array* out) {
  if (!py::isinstance<py::array>(o)) return false;
  py::array a = py::reinterpret_borrow<py::array>(o);
  const py::dtype dt = a.dtype();
  if (std::string(kinds).find(dt.kind()) == std::string::npos || (dt.itemsize() != 4 && dt.itemsize() != 8)) return false;
  if (!(a.flags() & py::array::c_style) || !(a.flags() & kNpyAligned) || dt.byteorder() == '>') return false;
  *out = std::move(a);
  return true;
}

// A new numpy array on 64-byte aligned memory (as torch's CPU allocator gives: the kernels' wide stores then never
// split cache lines).
template <typename T>
py::array_t<T> aligned_array(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  void* p = std::aligned_alloc(64, (static_cast<size_t>(n > 0 ? n : 1) * sizeof(T) + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  py::capsule owner(p, [](void* q) { std::free(q); });
  return py::array_t<T>(shape, static_cast<T*>(p), owner);
}

// Element i of a float array (plain_array with "f").
double float_at(const py::array& a, int64_t i) {
  const void* p = a.data();
  return a.itemsize() == 8 ? static_cast<const double*>(p)[i] : static_cast<const float*>(p)[i];
}

// Element i of a signed-int array (plain_array with "i").
int64_t int_at(const py::array& a, int64_t i) {
  const void* p = a.data();
  return a.itemsize() == 8 ? static_cast<const int64_t*>(p)[i] : static_cast<const int32_t*>(p)[i];
}

// float32(value * scale) per value, x / y alternating: numpy's float64 product (ResizeLongestSide.apply_coords) then
// torch's float32 cast, as the general path; the values must be finite (the general path's check and message).
std::vector<float> scaled_coords(const py::array& a, const char* name, double sx, double sy) {
  const int64_t n = a.size();
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const double v = float_at(a, i);
    if (!std::isfinite(v)) throw ShapeError(std::string(name) + ": contains NaN or infinite values");
    out[i] = static_cast<float>(v * (i % 2 == 0 ? sx : sy));
  }
  return out;
}

class PromptPredictor {
 public:
  PromptPredictor(std::vector<TensorRef> weights,  // gauss [2, F], pe0..pe3, not_a_point, iou_token [1, C], mask_tokens [M, C]
                  std::vector<TensorRef> cache,    // x0, pe, k0, v0, q0, packed, g (see cached_decoder_cpu)
                  std::vector<int64_t> dims, int64_t h, int64_t w, double eps, double eps2d, double img_h, double img_w,
                  int64_t img_size, int64_t input_h, int64_t input_w, int64_t out_h, int64_t out_w, double scale_x,
                  double scale_y, py::object owners)
      : wt_(std::move(weights)), cache_(std::move(cache)), dims_(std::move(dims)), h_(h), w_(w), eps_(eps),
        eps2d_(eps2d), img_h_(img_h), img_w_(img_w), img_size_(img_size), input_h_(input_h), input_w_(input_w),
        out_h_(out_h), out_w_(out_w), sx_(scale_x), sy_(scale_y), owners_(std::move(owners)) {
    if (wt_.size() != 8) throw ShapeError("weights: expected 8 tensors (gauss, pe0..pe3, not_a_point, iou_token, mask_tokens)");
    if (cache_.size() != 7) throw ShapeError("cache: expected 7 tensors (x0, pe, k0, v0, q0, packed, g)");
    if (dims_.size() != 8) throw ShapeError("dims: expected 8 values");
    check_tensor(wt_[7], "mask_tokens", {-1, -1}, {DType::Float32});
    if (wt_[7].size(0) != dims_[4]) throw ShapeError("mask_tokens: expected dims[4] rows");
    if (out_h <= 0 || out_w <= 0) throw ShapeError("out_h, out_w: the original image size must be positive");
    if (!(std::isfinite(scale_x) && scale_x > 0 && std::isfinite(scale_y) && scale_y > 0))
      throw ShapeError("scale_x, scale_y: expected positive finite scales");
  }

  // (masks [K, H0, W0] bool, or float32 logits when not binarize; iou [K]; low_res [K, 4h, 4w]) for one prompt, or
  // None where the prompts are not numpy arrays of the usual kinds (the general path then runs, with its checks).
  py::object predict(const py::object& point_coords, const py::object& point_labels, const py::object& box,
                     bool multimask, double threshold, bool binarize) const {
    const bool has_points = !point_coords.is_none() || !point_labels.is_none();
    const bool has_box = !box.is_none();
    if (!has_points && !has_box) return py::none();
    py::array pc, pl, pb;
    if (has_points && !(plain_array(point_coords, "f", &pc) && plain_array(point_labels, "i", &pl) && pc.ndim() == 2 &&
                        pc.shape(1) == 2 && pl.ndim() == 1 && pl.shape(0) == pc.shape(0)))
      return py::none();
    if (has_box && !(plain_array(box, "f", &pb) && pb.size() == 4)) return py::none();
    const int64_t Np = has_points ? pc.shape(0) : 0;
    const std::vector<float> coords = has_points ? scaled_coords(pc, "point_coords", sx_, sy_) : std::vector<float>();
    const std::vector<float> boxes = has_box ? scaled_coords(pb, "box", sx_, sy_) : std::vector<float>();
    std::vector<int64_t> labels(Np);  // labels beyond int32 (torch.as_tensor(dtype=torch.int) there): the general path
    for (int64_t i = 0; i < Np; ++i) {
      labels[i] = int_at(pl, i);
      if (labels[i] < INT32_MIN || labels[i] > INT32_MAX) return py::none();
    }

    const int64_t M = wt_[7].size(0), C = wt_[7].size(1), K = multimask ? M - 1 : 1;
    const bool pad = !has_box;
    const int64_t T = 1 + M + Np + (pad ? 1 : 0) + (has_box ? 2 : 0);
    std::vector<float> tokens(T * C);
    const TensorRef coords_ref = local_ref(coords.data(), {1, Np, 2}, DType::Float32);
    const TensorRef tokens_ref = local_ref(tokens.data(), {1, T, C}, DType::Float32);
    prompt_tokens_cpu_op(coords_ref, local_ref(labels.data(), {1, Np}, DType::Int64),
                         has_box ? local_ref(boxes.data(), {1, 4}, DType::Float32) : coords_ref, wt_[0], wt_[1], wt_[2],
                         wt_[3], wt_[4], wt_[5], wt_[6], wt_[7], tokens_ref, has_box, pad, img_h_, img_w_);

    py::array_t<float> low_res = aligned_array<float>({K, 4 * h_, 4 * w_}), iou = aligned_array<float>({K});
    py::array masks = binarize ? py::array(aligned_array<bool>({K, out_h_, out_w_}))
                               : py::array(aligned_array<float>({K, out_h_, out_w_}));
    const TensorRef low_res_ref = local_ref(low_res.data(), {1, K, 4 * h_, 4 * w_}, DType::Float32);
    const TensorRef absent = local_ref(nullptr, {0}, DType::Float32);
    const std::vector<TensorRef>& c = cache_;
    cached_decoder_cpu_op(tokens_ref, c[0], c[1], c[2], c[3], c[4], absent, absent, c[5], dims_, h_, w_, multimask,
                          eps_, eps2d_, low_res_ref, local_ref(iou.data(), {1, K}, DType::Float32), c[6]);
    postprocess_masks_cpu_op(low_res_ref,
                             local_ref(masks.data(), {1, K, out_h_, out_w_}, binarize ? DType::Bool : DType::Float32),
                             img_size_, input_h_, input_w_, threshold, binarize);
    return py::make_tuple(masks, iou, low_res);
  }

 private:
  std::vector<TensorRef> wt_, cache_;
  std::vector<int64_t> dims_;
  int64_t h_, w_;
  double eps_, eps2d_, img_h_, img_w_;
  int64_t img_size_, input_h_, input_w_, out_h_, out_w_;
  double sx_, sy_;
  py::object owners_;  // the Python objects owning the tensors above: alive as long as this (and any call of it)
};

void bind(py::module_& m) {
  py::class_<PromptPredictor>(m, "PromptPredictor",
                              "SamPredictor.predict's mask-free CPU path for one image (see predict_prompts.cpp). "
                              "Reads the tensors behind its refs; `owners` (e.g. a tuple of them) keeps them alive.")
      .def(py::init<std::vector<TensorRef>, std::vector<TensorRef>, std::vector<int64_t>, int64_t, int64_t, double,
                    double, double, double, int64_t, int64_t, int64_t, int64_t, int64_t, double, double, py::object>(),
           py::arg("weights"), py::arg("cache"), py::arg("dims"), py::arg("h"), py::arg("w"), py::arg("eps"),
           py::arg("eps2d"), py::arg("img_h"), py::arg("img_w"), py::arg("img_size"), py::arg("input_h"),
           py::arg("input_w"), py::arg("out_h"), py::arg("out_w"), py::arg("scale_x"), py::arg("scale_y"),
           py::arg("owners"))
      .def("predict", &PromptPredictor::predict, py::arg("point_coords"), py::arg("point_labels"), py::arg("box"),
           py::arg("multimask"), py::arg("threshold"), py::arg("binarize"),
           "Numpy prompts in the original frame -> (masks [K, H0, W0], iou [K], low_res [K, 4h, 4w]) numpy arrays, "
           "or None where they are not float / int numpy arrays of the expected shapes.");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(predict_prompts, samfast::bind)
