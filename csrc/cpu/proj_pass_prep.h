// Operands of the projection pass (proj_pass_kernel.h) from the decoder's parameters: the per-image block, each
// prompt's matrices, and the final attention's output from the pass's accumulators.
#pragma once
#include <cstdint>

#include "cpu/cached_decoder_steps.h"
#include "cpu/proj_pass_kernel.h"

namespace samfast::cpu {

// Whether the whole-decoder kernel runs its second pass through proj_pass_cpu: needs the per-image block (N a
// multiple of the pass's 32-pixel tiles), at most 8 tokens (the per-head rows) and H T a multiple of 8.
bool proj_pass_applies(int64_t N, int64_t H, int64_t T, int64_t Tu);
// Whether fold_image writes the per-image block (the first condition above).
bool proj_image_applies(int64_t N);

// Per-image block [N / 32, proj_image_width(Di), 32] (pixel blocks, feature-major) from x0 [N, C] and pe [N, C].
void proj_pass_image(const decoder_steps::Ctx& c, const DecoderParams& p, const float* x0, const float* pe, int64_t N,
                     float* out);

// Token-side inputs of one call (B prompts, T tokens, Tu final-attention queries):
struct ProjTokenInputs {
  const float* r0 = nullptr;   // [B, H T, C] layer 0's image->token rows (token-major rows t H + h)
  const float* r0c = nullptr;  // [B, H T, C] the same, centred
  const float* k0 = nullptr;   // [B T, Di] layer 0's image->token keys
  const float* v0 = nullptr;   // [B T, Di] layer 0's image->token values
  const float* r1 = nullptr;   // [B, H T, C] layer 1's image->token rows (not centred)
  const float* k1 = nullptr;   // [B T, Di] layer 1's image->token keys
  const float* v1 = nullptr;   // [B T, Di] layer 1's image->token values
  const float* u1 = nullptr;   // [B, C, H T] layer 1's folded image queries (i2t_prepare's u: scaled, token-major)
  const float* cb1 = nullptr;  // [B, H T] and their bias terms
  const float* qf = nullptr;   // [B Tu, Di] the final attention's q_proj(queries + pe), unscaled
  const float* ukf = nullptr;  // [B, H, Tu, C] t2i_fold's u for the final attention (W_k,h^T q / sqrt(dh))
};

// prompts [B, d.prompt_floats()] (64-byte aligned): the layer-0 operands (proj_stats0_cpu; zeroes the blocks first,
// reads r0, r0c, k0, v0), then the rest (proj_pass_cpu).
void proj_pass_prompts0(const decoder_steps::Ctx& c, const DecoderParams& p, const ProjDims& d,
                        const ProjTokenInputs& in, float* prompts);
// rows_g1 [B, 2 HT, C]: written for proj_pass_finish (the final attention's value rows, g1 J G0 R0c | g1 R1c).
void proj_pass_prompts(const decoder_steps::Ctx& c, const DecoderParams& p, const ProjDims& d,
                       const ProjTokenInputs& in, float* prompts, float* rows_g1);

// The final attention's o_proj input side: z [B, H, Tu, C] (what t2i_unfold consumes) and the A7 part
// extra [B, H, Tu, dh] from the pass's normalised accumulators acc [B, rows, HUq] (proj_pass_cpu).
void proj_pass_finish(const decoder_steps::Ctx& c, const DecoderParams& p, const ProjDims& d, const float* rows_g1,
                      const float* acc, float* z, float* extra);

}  // namespace samfast::cpu
