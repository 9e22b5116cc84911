// Host launchers of the automatic-mask-generator CUDA kernels (csrc/cuda/amg_kernels.cu). Plain C++:
// raw device pointers, sizes, the cudaStream_t as void*. Inputs are contiguous, on the current device
// and validated by csrc/cuda/amg_bindings_cuda.cpp. Launchers enqueue on `stream` and throw
// std::runtime_error on a launch error. Semantics match the CPU kernels (csrc/cpu/amg_kernels.h).
#pragma once
#include <cstdint>

namespace samfast::cuda::amg {

// Largest N the NMS sweep supports (its suppression bitmask lives in shared memory).
constexpr int64_t kNmsMaxBoxes = 64 * 6144;

// Greedy NMS over boxes visited in `order` (score descending, from torch.sort(stable=True)); IoU in the
// boxes' precision with IEEE rounding; suppress when IoU > iou_threshold and the categories match.
// keep[:count[0]] = kept box indices in visiting order.
void nms(const void* boxes,       // [N, 4] XYXY, float32 or float64 (boxes_f64)
         bool boxes_f64,
         const int64_t* order,    // [N] visiting order
         const int64_t* cats,     // [N] categories
         int64_t N, double iou_threshold,
         uint64_t* mask,          // [N, ceil(N / 64)] scratch
         int64_t* keep,           // [N]
         int64_t* count,          // [1]
         void* stream);

// |logits > hi| / |logits > lo| per mask (per-row int16 wrap, int32 total, as the official).
void stability_score(const void* logits,  // [N, H, W] float32, or bfloat16 (bf16)
                     bool bf16, int64_t N, int64_t H, int64_t W, float hi, float lo,
                     float* out,          // [N]
                     void* stream);

// XYXY box (inclusive max) of each mask, [0, 0, 0, 0] when empty.
void mask_to_box(const uint8_t* masks,  // [N, H, W] bool
                 int64_t N, int64_t H, int64_t W,
                 int64_t* boxes,        // [N, 4]
                 void* stream);

// Number of column-major RLE counts of each mask.
void rle_count(const uint8_t* masks,  // [N, H, W] bool
               int64_t N, int64_t H, int64_t W,
               int64_t* lengths,      // [N]
               void* stream);

// RLE counts of mask i into counts[offsets[i] : offsets[i + 1]] (offsets: exclusive cumsum of rle_count).
void rle_encode(const uint8_t* masks,    // [N, H, W] bool
                int64_t N, int64_t H, int64_t W,
                const int64_t* offsets,  // [N + 1]
                int64_t* counts,         // [offsets[N]]
                void* stream);

}  // namespace samfast::cuda::amg
