// CPU kernels of the automatic mask generator (python/samfast/automatic_mask_generator.py).
// Plain C++ on raw, contiguous buffers; inputs are validated by csrc/amg_ops.cpp. Bool tensors are
// 1 byte per element holding 0 / 1. RLE counts are in column-major (Fortran) order, starting with a
// run of zeros (possibly of length 0), exactly as segment_anything's `mask_to_rle_pytorch`.
#pragma once
#include <cstdint>

namespace samfast::cpu {

// Greedy NMS with torchvision's semantics: boxes visited by score descending (stable: ties in index
// order), a box suppresses every later box of the same category whose IoU with it is > iou_threshold
// (IoU in the boxes' precision). Writes the kept indices (in visiting order) to keep; returns their count.
template <typename BoxT, typename ScoreT>
int64_t nms(const BoxT* boxes,      // [N, 4] XYXY
            const ScoreT* scores,   // [N]
            const int64_t* cats,    // [N] categories, or nullptr (all one category)
            int64_t N, double iou_threshold,
            int64_t* keep);         // [N] (first return-value entries written)

// Official `calculate_stability_score`: |logits > hi| / |logits > lo| per mask, counts summed per row
// in int16 (wrapping like torch) and over rows in int32; 0/0 -> NaN.
void stability_score(const void* logits,  // [N, H, W] float32, or bfloat16 when bf16
                     bool bf16, int64_t N, int64_t H, int64_t W, float hi, float lo,
                     float* out);         // [N]

// Official `batched_mask_to_box`: XYXY (inclusive max) per mask, [0, 0, 0, 0] for an empty mask.
void mask_to_box(const uint8_t* masks,  // [N, H, W] bool
                 int64_t N, int64_t H, int64_t W,
                 int64_t* boxes);       // [N, 4]

// Number of RLE counts of each mask (pass 1 of the encoder).
void rle_count(const uint8_t* masks,  // [N, H, W] bool
               int64_t N, int64_t H, int64_t W,
               int64_t* lengths);     // [N]

// RLE counts of mask i go to counts[offsets[i] : offsets[i + 1]] (pass 2; offsets from rle_count).
void rle_encode(const uint8_t* masks,    // [N, H, W] bool
                int64_t N, int64_t H, int64_t W,
                const int64_t* offsets,  // [N + 1]
                int64_t* counts);        // [offsets[N]]

// Inverse of rle_encode. Throws std::invalid_argument unless each mask's counts are >= 0 and sum to H*W.
void rle_decode(const int64_t* counts,   // [T]
                const int64_t* offsets,  // [N + 1]
                int64_t N, int64_t H, int64_t W,
                uint8_t* out);           // [N, H, W] bool

// Area (sum of the odd-position counts) of each RLE.
void rle_area(const int64_t* counts, const int64_t* offsets, int64_t N, int64_t* area);  // area: [N]

// pycocotools' compressed RLE string (rleToString, counts as uint32) of each RLE: string i is
// chars[7 * offsets[i] : 7 * offsets[i] + lengths[i]] (at most 7 chars per count).
void coco_rle_strings(const int64_t* counts,   // [T]
                      const int64_t* offsets,  // [N + 1]
                      int64_t N,
                      uint8_t* chars,          // [7 * T]
                      int64_t* lengths);       // [N]

// Official `remove_small_regions` (cv2.connectedComponentsWithStats, 8-connectivity): holes mode fills
// components of ~mask smaller than area_thresh; islands mode drops components of mask smaller than it
// (keeping the largest when all are). changed[i] = 1 when any component was below the threshold.
void remove_small_regions(const uint8_t* masks,  // [N, H, W] bool
                          int64_t N, int64_t H, int64_t W, double area_thresh, bool holes,
                          uint8_t* out,          // [N, H, W] bool
                          uint8_t* changed);     // [N] bool

}  // namespace samfast::cpu
