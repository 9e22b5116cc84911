// Host launchers of samfast's CUDA kernels. Plain C++: raw device pointers, sizes, a dtype code and
// the cudaStream_t passed as void*. Every launcher enqueues on `stream`, checks cudaGetLastError and
// throws std::runtime_error (with the CUDA error string) on failure. Inputs are contiguous, on the
// current device, and already validated by csrc/cuda/bindings_cuda.cpp.
#pragma once
#include <cstdint>

namespace samfast::cuda {

// Element type of every floating tensor of one call (they all share it).
enum class Dt : int { F32 = 0, F16 = 1, BF16 = 2 };

// Multi-head attention with decomposed rel-pos bias (see ops.rel_pos_attention_reference).
// window_size 0: global over H x W (rel_h [H, H, hd], rel_w [W, W, hd]); > 0: windows of ws x ws
// over the grid padded to a multiple of ws (rel tables [ws, ws, hd]); padded keys hold qkv_bias.
void rel_pos_attention(const void* qkv,       // [B, H, W, 3*C]  (3 x heads x hd on the last axis)
                       const void* qkv_bias,  // [3*C]
                       const void* rel_h,     // [Sh, Sh, hd]
                       const void* rel_w,     // [Sw, Sw, hd]
                       void* out,             // [B, H, W, C]
                       int64_t B, int64_t H, int64_t W, int64_t C, int num_heads, int window_size,
                       Dt dt, void* stream);

// Which attention kernel rel_pos_attention picks for these arguments ("mma" or "simt"); for tests.
// Queries the current device.
const char* rel_pos_attention_path(int64_t H, int64_t W, int64_t C, int num_heads, int window_size, Dt dt,
                                   const void* qkv, const void* qkv_bias, const void* rel_h, const void* rel_w,
                                   const void* out);

// Fused ConvT2x2 -> LayerNorm(C1) -> GELU -> ConvT2x2 -> GELU -> (hyper_in . u) (ops.mask_head_reference).
// Requires C1 == 64 and C2 == 32 (SAM's decoder); any C.
void mask_head(const void* src,       // [B, h, w, C]
               const void* w1,        // [C, C1, 2, 2]
               const void* b1,        // [C1]
               const void* ln_w,      // [C1]
               const void* ln_b,      // [C1]
               const void* w2,        // [C1, C2, 2, 2]
               const void* b2,        // [C2]
               const void* hyper_in,  // [B, M, C2]
               void* out,             // [B, M, 4h, 4w]
               int64_t B, int64_t h, int64_t w, int64_t C, int64_t C1, int64_t C2, int64_t M, Dt dt,
               void* stream);

// Per mask token m: relu(relu(x @ w0[m]^T + b0[m]) @ w1[m]^T + b1[m]) @ w2[m]^T + b2[m].
void hypernet_mlps(const void* tokens,  // [B, M, C]
                   const void* w0,      // [M, C, C]
                   const void* b0,      // [M, C]
                   const void* w1,      // [M, C, C]
                   const void* b1,      // [M, C]
                   const void* w2,      // [M, C2, C]
                   const void* b2,      // [M, C2]
                   void* out,           // [B, M, C2]
                   int64_t B, int64_t M, int64_t C, int64_t C2, Dt dt, void* stream);

// Bilinear (align_corners=False) h x w -> img_size^2, crop [:input_h, :input_w], bilinear -> H0 x W0,
// fused (16 taps); binarize: out is bool (1 byte) = value > threshold, else out has masks' dtype.
void postprocess_masks(const void* masks,  // [B, M, h, w]
                       void* out,          // [B, M, H0, W0]
                       int64_t planes, int64_t h, int64_t w, int64_t H0, int64_t W0, int64_t img_size,
                       int64_t input_h, int64_t input_w, float threshold, bool binarize, Dt dt,
                       void* stream);

// postprocess_masks binarized at threshold (float32 logits) plus, in the same pass, each plane's stability
// score #(v > stab_hi) / #(v > stab_lo) and XYXY box of v > threshold (zeros when empty).
void postprocess_masks_stats(const float* masks,      // [planes, h, w]
                             unsigned char* out,      // [planes, H0, W0] bool
                             float* stability,        // [planes]
                             int64_t* boxes,          // [planes, 4]
                             int* acc,                // [planes, 6] int32 scratch
                             int64_t planes, int64_t h, int64_t w, int64_t H0, int64_t W0, int64_t img_size,
                             int64_t input_h, int64_t input_w, float threshold, float stab_hi, float stab_lo,
                             void* stream);

}  // namespace samfast::cuda
