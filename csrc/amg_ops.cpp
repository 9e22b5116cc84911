// Bindings of the automatic-mask-generator CPU kernels (csrc/cpu/amg_kernels.h):
//   _C.amg_nms_cpu, amg_stability_score_cpu, amg_mask_to_box_cpu, amg_rle_count_cpu, amg_rle_encode_cpu,
//   amg_rle_decode_cpu, amg_rle_area_cpu, amg_coco_rle_strings_cpu, amg_remove_small_regions_cpu.
// Outputs are allocated by python/samfast/ops.py; every TensorRef is checked here first.
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/amg_kernels.h"
#include "op_registry.h"
#include "tensor_ref.h"
#include "cpu_kernel_scope.h"

namespace py = pybind11;

namespace samfast {
namespace {

void cpu_only(std::initializer_list<std::pair<const TensorRef*, const char*>> ts) {
  for (auto& [t, name] : ts) check_device(*t, name, /*want_cuda=*/false);
}

// offsets: [N + 1] int64, non-decreasing from 0 to counts.numel().
void check_offsets(const TensorRef& offsets, const TensorRef& counts) {
  check_tensor(offsets, "offsets", {-1}, {DType::Int64});
  check_tensor(counts, "counts", {-1}, {DType::Int64});
  const int64_t n1 = offsets.size(0);
  if (n1 < 1) throw ShapeError("offsets: expected [N + 1] entries, got an empty tensor");
  const int64_t* o = offsets.data<int64_t>();
  if (o[0] != 0 || o[n1 - 1] != counts.size(0))
    throw ShapeError("offsets: must start at 0 and end at counts.numel() = " + std::to_string(counts.size(0)));
  for (int64_t i = 0; i + 1 < n1; ++i)
    if (o[i + 1] < o[i]) throw ShapeError("offsets: must be non-decreasing (at index " + std::to_string(i) + ")");
}

int64_t nms_op(const TensorRef& boxes,   // [N, 4] float32 / float64 XYXY
               const TensorRef& scores,  // [N] float32 / float64
               const TensorRef& cats,    // [N] int64
               const TensorRef& keep,    // [N] int64 (out)
               double iou_threshold) {
  cpu_only({{&boxes, "boxes"}, {&scores, "scores"}, {&cats, "idxs"}, {&keep, "keep"}});
  check_tensor(boxes, "boxes", {-1, 4}, {DType::Float32, DType::Float64});
  const int64_t N = boxes.size(0);
  check_tensor(scores, "scores", {N}, {DType::Float32, DType::Float64});
  check_tensor(cats, "idxs", {N}, {DType::Int64});
  check_tensor(keep, "keep", {N}, {DType::Int64});
  CpuKernelScope scope;  // no GIL, samfast's thread count
  const int64_t* c = cats.data<int64_t>();
  int64_t* k = keep.data<int64_t>();
  const bool bf = boxes.dtype == DType::Float32, sf = scores.dtype == DType::Float32;
  if (bf && sf) return cpu::nms(boxes.data<float>(), scores.data<float>(), c, N, iou_threshold, k);
  if (bf) return cpu::nms(boxes.data<float>(), scores.data<double>(), c, N, iou_threshold, k);
  if (sf) return cpu::nms(boxes.data<double>(), scores.data<float>(), c, N, iou_threshold, k);
  return cpu::nms(boxes.data<double>(), scores.data<double>(), c, N, iou_threshold, k);
}

void stability_score_op(const TensorRef& masks,  // [N, H, W] float32 / bfloat16 logits
                        const TensorRef& out,    // [N] float32
                        double hi, double lo) {
  cpu_only({{&masks, "masks"}, {&out, "out"}});
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Float32, DType::BFloat16});
  check_tensor(out, "out", {masks.size(0)}, {DType::Float32});
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::stability_score(masks.data<void>(), masks.dtype == DType::BFloat16, masks.size(0), masks.size(1),
                       masks.size(2), static_cast<float>(hi), static_cast<float>(lo), out.data<float>());
}

void mask_to_box_op(const TensorRef& masks,  // [N, H, W] bool
                    const TensorRef& out) {  // [N, 4] int64
  cpu_only({{&masks, "masks"}, {&out, "out"}});
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Bool});
  check_tensor(out, "out", {masks.size(0), 4}, {DType::Int64});
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::mask_to_box(masks.data<uint8_t>(), masks.size(0), masks.size(1), masks.size(2), out.data<int64_t>());
}

void rle_count_op(const TensorRef& masks,      // [N, H, W] bool
                  const TensorRef& lengths) {  // [N] int64
  cpu_only({{&masks, "masks"}, {&lengths, "lengths"}});
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Bool});
  check_tensor(lengths, "lengths", {masks.size(0)}, {DType::Int64});
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::rle_count(masks.data<uint8_t>(), masks.size(0), masks.size(1), masks.size(2), lengths.data<int64_t>());
}

void rle_encode_op(const TensorRef& masks,    // [N, H, W] bool
                   const TensorRef& offsets,  // [N + 1] int64 (cumsum of rle_count's lengths)
                   const TensorRef& counts) { // [offsets[N]] int64 (out)
  cpu_only({{&masks, "masks"}, {&offsets, "offsets"}, {&counts, "counts"}});
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Bool});
  check_tensor(offsets, "offsets", {masks.size(0) + 1}, {DType::Int64});
  check_offsets(offsets, counts);
  try {
    CpuKernelScope scope;  // no GIL, samfast's thread count
    cpu::rle_encode(masks.data<uint8_t>(), masks.size(0), masks.size(1), masks.size(2), offsets.data<int64_t>(),
                    counts.data<int64_t>());
  } catch (const std::invalid_argument& e) {
    throw ShapeError(e.what());
  }
}

void rle_decode_op(const TensorRef& counts,   // [T] int64
                   const TensorRef& offsets,  // [N + 1] int64
                   const TensorRef& out) {    // [N, H, W] bool
  cpu_only({{&counts, "counts"}, {&offsets, "offsets"}, {&out, "out"}});
  check_offsets(offsets, counts);
  check_tensor(out, "out", {offsets.size(0) - 1, -1, -1}, {DType::Bool});
  try {
    CpuKernelScope scope;  // no GIL, samfast's thread count
    cpu::rle_decode(counts.data<int64_t>(), offsets.data<int64_t>(), out.size(0), out.size(1), out.size(2),
                    out.data<uint8_t>());
  } catch (const std::invalid_argument& e) {
    throw ShapeError(e.what());
  }
}

void rle_area_op(const TensorRef& counts, const TensorRef& offsets,  // [T], [N + 1] int64
                 const TensorRef& area) {                            // [N] int64
  cpu_only({{&counts, "counts"}, {&offsets, "offsets"}, {&area, "area"}});
  check_offsets(offsets, counts);
  check_tensor(area, "area", {offsets.size(0) - 1}, {DType::Int64});
  cpu::rle_area(counts.data<int64_t>(), offsets.data<int64_t>(), area.size(0), area.data<int64_t>());
}

void coco_rle_strings_op(const TensorRef& counts, const TensorRef& offsets,  // [T], [N + 1] int64
                         const TensorRef& chars,                             // [7 * T] uint8
                         const TensorRef& lengths) {                         // [N] int64
  cpu_only({{&counts, "counts"}, {&offsets, "offsets"}, {&chars, "chars"}, {&lengths, "lengths"}});
  check_offsets(offsets, counts);
  check_tensor(chars, "chars", {7 * counts.size(0)}, {DType::UInt8});
  check_tensor(lengths, "lengths", {offsets.size(0) - 1}, {DType::Int64});
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::coco_rle_strings(counts.data<int64_t>(), offsets.data<int64_t>(), lengths.size(0), chars.data<uint8_t>(),
                        lengths.data<int64_t>());
}

void remove_small_regions_op(const TensorRef& masks,    // [N, H, W] bool
                             const TensorRef& out,      // [N, H, W] bool
                             const TensorRef& changed,  // [N] bool
                             double area_thresh, bool holes) {
  cpu_only({{&masks, "masks"}, {&out, "out"}, {&changed, "changed"}});
  check_tensor(masks, "masks", {-1, -1, -1}, {DType::Bool});
  check_tensor(out, "out", masks.shape, {DType::Bool});
  check_tensor(changed, "changed", {masks.size(0)}, {DType::Bool});
  if (masks.size(1) * masks.size(2) >= (int64_t(1) << 31))
    throw ShapeError("masks: remove_small_regions supports fewer than 2^31 pixels per mask");
  CpuKernelScope scope;  // no GIL, samfast's thread count
  cpu::remove_small_regions(masks.data<uint8_t>(), masks.size(0), masks.size(1), masks.size(2), area_thresh, holes,
                            out.data<uint8_t>(), changed.data<uint8_t>());
}

void bind(py::module_& m) {
  m.def("amg_nms_cpu", &nms_op, py::arg("boxes"), py::arg("scores"), py::arg("idxs"), py::arg("keep"),
        py::arg("iou_threshold"), "Batched greedy box NMS (torchvision semantics); returns the number kept.");
  m.def("amg_stability_score_cpu", &stability_score_op, py::arg("masks"), py::arg("out"), py::arg("hi"),
        py::arg("lo"), "out[n] = |masks[n] > hi| / |masks[n] > lo| (official int16/int32 counting).");
  m.def("amg_mask_to_box_cpu", &mask_to_box_op, py::arg("masks"), py::arg("out"),
        "XYXY box of each mask; [0, 0, 0, 0] for empty masks.");
  m.def("amg_rle_count_cpu", &rle_count_op, py::arg("masks"), py::arg("lengths"),
        "Number of column-major RLE counts of each mask.");
  m.def("amg_rle_encode_cpu", &rle_encode_op, py::arg("masks"), py::arg("offsets"), py::arg("counts"),
        "Column-major RLE counts (starting with zeros) of each mask into counts[offsets[i]:offsets[i+1]].");
  m.def("amg_rle_decode_cpu", &rle_decode_op, py::arg("counts"), py::arg("offsets"), py::arg("out"),
        "Decode column-major RLEs into row-major bool masks.");
  m.def("amg_rle_area_cpu", &rle_area_op, py::arg("counts"), py::arg("offsets"), py::arg("area"),
        "Foreground area of each RLE.");
  m.def("amg_coco_rle_strings_cpu", &coco_rle_strings_op, py::arg("counts"), py::arg("offsets"),
        py::arg("chars"), py::arg("lengths"), "pycocotools compressed RLE strings (7 bytes reserved per count).");
  m.def("amg_remove_small_regions_cpu", &remove_small_regions_op, py::arg("masks"), py::arg("out"),
        py::arg("changed"), py::arg("area_thresh"), py::arg("holes"),
        "Fill small holes (holes=True) or drop small islands of each mask (8-connectivity).");
}

}  // namespace
}  // namespace samfast

SAMFAST_REGISTER_OPS(amg, samfast::bind)
