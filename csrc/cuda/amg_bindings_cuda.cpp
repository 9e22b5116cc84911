// pybind11 bindings of the automatic-mask-generator CUDA kernels (compiled only with CUDA):
//   _C.amg_nms_cuda, amg_stability_score_cuda, amg_mask_to_box_cuda, amg_rle_count_cuda, amg_rle_encode_cuda.
// Every TensorRef is validated (shape, dtype, contiguity, CUDA, one device) before launching on the
// caller's stream, with the GIL released.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../op_registry.h"
#include "../tensor_ref.h"
#include "amg_kernels.h"
#include "binding_utils.h"

namespace py = pybind11;

namespace samfast::cuda::amg {
namespace {

void nms_cuda(const TensorRef& boxes,  // [N, 4] float32 / float64 XYXY
              const TensorRef& order,  // [N] int64 visiting order (scores sorted descending, stable)
              const TensorRef& cats,   // [N] int64
              const TensorRef& mask,   // [N, ceil(N / 64)] int64 scratch
              const TensorRef& keep,   // [N] int64 (out)
              const TensorRef& count,  // [1] int64 (out)
              double iou_threshold, uintptr_t stream) {
  check_tensor(boxes, "boxes", {-1, 4}, {DType::Float32, DType::Float64});
  const int64_t N = boxes.size(0);
  check_tensor(order, "order", {N}, {DType::Int64});
  check_tensor(cats, "idxs", {N}, {DType::Int64});
  check_tensor(mask, "mask", {N, (N + 63) / 64}, {DType::Int64});
  check_tensor(keep, "keep", {N}, {DType::Int64});
  check_tensor(count, "count", {1}, {DType::Int64});
  check_cuda({{&boxes, "boxes"}, {&order, "order"}, {&cats, "idxs"}, {&mask, "mask"}, {&keep, "keep"},
           {&count, "count"}});
  if (N > kNmsMaxBoxes)
    throw ShapeError("boxes: CUDA NMS supports at most " + std::to_string(kNmsMaxBoxes) + " boxes, got " +
                     std::to_string(N));
  py::gil_scoped_release nogil;
  DeviceGuard dev(boxes.device);
  nms(ptr(boxes), boxes.dtype == DType::Float64, order.data<int64_t>(), cats.data<int64_t>(), N, iou_threshold,
      mask.data<uint64_t>(), keep.data<int64_t>(), count.data<int64_t>(), as_stream(stream));
}

void stability_score_cuda(const TensorRef& masks,  // [N, H, W] float32 / bfloat16
                          const TensorRef& out,    // [N] float32
                          double hi, double lo, uintptr_t stream) {
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Float32, DType::BFloat16});
  check_tensor(out, "out", {masks.size(0)}, {DType::Float32});
  check_cuda({{&masks, "masks"}, {&out, "out"}});
  py::gil_scoped_release nogil;
  DeviceGuard dev(masks.device);
  stability_score(ptr(masks), masks.dtype == DType::BFloat16, masks.size(0), masks.size(1), masks.size(2),
                  static_cast<float>(hi), static_cast<float>(lo), out.data<float>(), as_stream(stream));
}

void mask_to_box_cuda(const TensorRef& masks,  // [N, H, W] bool
                      const TensorRef& out,    // [N, 4] int64
                      uintptr_t stream) {
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Bool});
  check_tensor(out, "out", {masks.size(0), 4}, {DType::Int64});
  check_cuda({{&masks, "masks"}, {&out, "out"}});
  if (masks.size(1) >= (int64_t(1) << 31) || masks.size(2) >= (int64_t(1) << 31))
    throw ShapeError("masks: H and W must be < 2^31");
  py::gil_scoped_release nogil;
  DeviceGuard dev(masks.device);
  mask_to_box(masks.data<uint8_t>(), masks.size(0), masks.size(1), masks.size(2), out.data<int64_t>(),
              as_stream(stream));
}

void rle_count_cuda(const TensorRef& masks,    // [N, H, W] bool
                    const TensorRef& lengths,  // [N] int64
                    uintptr_t stream) {
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Bool});
  check_tensor(lengths, "lengths", {masks.size(0)}, {DType::Int64});
  check_cuda({{&masks, "masks"}, {&lengths, "lengths"}});
  py::gil_scoped_release nogil;
  DeviceGuard dev(masks.device);
  rle_count(masks.data<uint8_t>(), masks.size(0), masks.size(1), masks.size(2), lengths.data<int64_t>(),
            as_stream(stream));
}

void rle_encode_cuda(const TensorRef& masks,    // [N, H, W] bool
                     const TensorRef& offsets,  // [N + 1] int64
                     const TensorRef& counts,   // [T] int64
                     uintptr_t stream) {
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Bool});
  check_tensor(offsets, "offsets", {masks.size(0) + 1}, {DType::Int64});
  check_tensor(counts, "counts", {-1}, {DType::Int64});
  check_cuda({{&masks, "masks"}, {&offsets, "offsets"}, {&counts, "counts"}});
  py::gil_scoped_release nogil;
  DeviceGuard dev(masks.device);
  rle_encode(masks.data<uint8_t>(), masks.size(0), masks.size(1), masks.size(2), offsets.data<int64_t>(),
             counts.data<int64_t>(), as_stream(stream));
}

void bind(py::module_& m) {
  m.def("amg_nms_cuda", &nms_cuda, py::arg("boxes"), py::arg("order"), py::arg("idxs"), py::arg("mask"),
        py::arg("keep"), py::arg("count"), py::arg("iou_threshold"), py::arg("stream"),
        "Batched greedy NMS over boxes visited in `order`; keep[:count] = kept indices.");
  m.def("amg_stability_score_cuda", &stability_score_cuda, py::arg("masks"), py::arg("out"), py::arg("hi"),
        py::arg("lo"), py::arg("stream"), "out[n] = |masks[n] > hi| / |masks[n] > lo|.");
  m.def("amg_mask_to_box_cuda", &mask_to_box_cuda, py::arg("masks"), py::arg("out"), py::arg("stream"),
        "XYXY box per mask, zeros when empty.");
  m.def("amg_rle_count_cuda", &rle_count_cuda, py::arg("masks"), py::arg("lengths"), py::arg("stream"),
        "Number of column-major RLE counts per mask.");
  m.def("amg_rle_encode_cuda", &rle_encode_cuda, py::arg("masks"), py::arg("offsets"), py::arg("counts"),
        py::arg("stream"), "Column-major RLE counts per mask into counts[offsets[i]:offsets[i+1]].");
}

}  // namespace
}  // namespace samfast::cuda::amg

SAMFAST_REGISTER_OPS(amg_cuda, samfast::cuda::amg::bind)
