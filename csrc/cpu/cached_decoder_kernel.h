// SAM mask decoder, whole forward on a cached image in one C++ call (mask prompts too, via dense): the
// two-way transformer's token side (self attention, projections, MLPs, LayerNorms, IoU and hypernetwork
// heads) plus the image-sized kernels (token_to_image_cpu, image_to_token_cpu, mask_head_cpu).
// Same math as samfast.fast_decoder.FastMaskDecoder (see its docstring for the cache and the folding);
// running it without Python between the ~200 small token-side ops is what makes one prompt cheap.
//
// The decoder's parameters live in one flat float32 buffer ("packed"), laid out by visit_params()
// from DecoderDims: linears as (W^T [in, out_p] zero padded to out_p = round_up(out, 8), W [out, in],
// b [out_p]), LayerNorms as (w, b), ConvTranspose2d as (w [cin, cout, 2, 2], b [cout]).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace samfast::cpu {

struct DecoderDims {
  int64_t C = 0;    // transformer dim (256)
  int64_t H = 0;    // attention heads (8)
  int64_t Di = 0;   // cross-attention internal dim (C / downsample rate = 128)
  int64_t Mlp = 0;  // transformer MLP hidden dim (2048)
  int64_t M = 0;    // mask tokens (4)
  int64_t Hid = 0;  // IoU head hidden dim (256)
  int64_t C1 = 0;   // upscaling channels (C / 4, C / 8)
  int64_t C2 = 0;
};

// One entry of the packed layout, in order: a weight and a bias tensor each (names as in
// segment_anything's MaskDecoder.named_parameters(), without ".weight" / ".bias").
struct ParamEntry {
  enum Kind { Linear, Norm, ConvT } kind;
  std::string name;
  int64_t out = 0, in = 0;  // Linear: W [out, in]; Norm: [out]; ConvT: w [in, out, 2, 2]
};

// Checks dims (positive, C / Di / C2 / Di / H multiples of 8) and lists the entries; throws ShapeError.
std::vector<ParamEntry> decoder_param_entries(const DecoderDims& d);
int64_t decoder_packed_numel(const DecoderDims& d);

// weights: 2 per entry (weight, bias), contiguous float32 of the entries' shapes (checked by the caller).
void pack_decoder_params(const DecoderDims& d, const std::vector<const float*>& weights, float* packed);

struct CachedDecoderArgs {
  DecoderDims d;
  int64_t B = 0, T = 0, h = 0, w = 0;  // prompts, tokens per prompt (M + 1 + sparse), embedding grid
  bool multimask = true;               // masks 1..M-1 (else mask 0)
  float eps = 1e-5f;                   // transformer LayerNorms
  float eps2d = 1e-6f;                 // upscaling LayerNorm2d
  const float* packed = nullptr;       // [decoder_packed_numel(d)]
  const float* tokens = nullptr;       // [B, T, C]  output tokens + sparse prompt embeddings
  const float* x0 = nullptr;           // [N, C]  image_embedding + no_mask_embed (N = h * w)
  const float* pe = nullptr;           // [N, C]  dense positional encoding
  const float* k0 = nullptr;           // [H, Di/H, N]  layer 0 token->image k_proj(x0 + pe)
  const float* v0 = nullptr;           // [H, N, Di/H]  layer 0 token->image v_proj(x0)
  const float* q0 = nullptr;           // [N, Di]       layer 0 image->token q_proj(x0 + pe)
  const float* features = nullptr;     // [C, N]  image embedding (NCHW), read with `dense`
  const float* dense = nullptr;        // [B, C, N] or null: dense (mask) prompt embeddings (NCHW); when set,
                                       // layer 0 runs on features + dense instead of the cache (x0 / k0 / v0 / q0)
  const float* g = nullptr;            // [N, fold_width] cached_decoder_fold_image(x0, pe) or null; mask-free
                                       // prompts with it run the mask head's first ConvT folded (MaskHeadFold: no
                                       // [C, 4 C1] GEMM per pixel and prompt) and layer 1's token->image attention
                                       // from its kv block (t2i_ln: no pass over the image rows)
  float* masks = nullptr;              // [B, K, 4h, 4w]  K = M - 1 (multimask) or 1
  float* iou = nullptr;                // [B, K]
};

// All pointers contiguous float32, N % 8 == 0. OpenMP inside; AVX-512F / AVX2 / portable picked at run time.
void cached_decoder_cpu(const CachedDecoderArgs& a);

// Per-image products for mask-free prompts, one buffer g of [N, fold_width] floats laid out as two blocks:
//   G  [N, N1p]   = x0 @ A''  (the mask head's folded first ConvT, MaskHeadFold)
//   kv [N, 3 Di]  = Kc | Kpe | Vc of layer 1's token->image attention (t2i_ln, token_to_image_ln_kernel.h):
//                   Kc = ((x0 - row mean) * w) Wk^T, Kpe = pe Wk^T, Vc = ((x0 - row mean) * w) Wv^T, with w
//                   layer 0's norm4 weight and Wk / Wv layer 1's token->image k / v projections (no bias).
int64_t cached_decoder_fold_width(const DecoderDims& d);
void cached_decoder_fold_image(const DecoderDims& d, const float* packed, const float* x0, const float* pe, int64_t N,
                               float* g);

}  // namespace samfast::cpu
