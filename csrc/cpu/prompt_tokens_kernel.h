// SAM prompt encoder's sparse embeddings (points and boxes) plus the mask decoder's token assembly on CPU, in one
// call (see samfast.ops.prompt_tokens_reference): for a mask-free prompt this is all that runs before the decoder,
// and as ~20 small torch ops it cost ~0.3 ms per prompt right after a decoder call (cold caches), ~0.065 ms warm.
// Per point (x, y) in input-frame pixels with label l, and per box corner:
//   c = ((x + 0.5) / W, (y + 0.5) / H) (the padding point: (0, 0)), pe = [sin(a), cos(a)], a = 2 pi ((2 c - 1) @ G)
//   l == -1: not_a_point; l == 0 / 1: pe + point_emb[l]; other labels: pe. Box corners k = 0, 1: pe + point_emb[2 + k].
// out[b] = [IoU token; mask tokens; the points (+ the padding point when `pad`); the box corners].
#pragma once
#include <cstdint>

namespace samfast::cpu {

struct PromptTokensArgs {
  int64_t B = 0, Np = 0, Nb = 0;  // prompts, points per prompt, boxes per prompt (0 or 1)
  int64_t P = 0, C = 0, F = 0;    // prefix tokens (1 + mask tokens), channels, C = 2 F
  bool pad = false;               // append a padding point (label -1) after the points
  float img_h = 0.f, img_w = 0.f;               // the model's input image size
  const float* coords = nullptr;                // [B, Np, 2]  (x, y)
  const int64_t* labels = nullptr;              // [B, Np]
  const float* boxes = nullptr;                 // [B, 4] (x0, y0, x1, y1) when Nb == 1
  const float* gauss = nullptr;                 // [2, F]  positional_encoding_gaussian_matrix
  const float* point_emb[4] = {};               // [C] each: point_embeddings[0..3] (the modules' weights, live)
  const float* not_a_point = nullptr;           // [C]
  const float* iou_token = nullptr;             // [C]
  const float* mask_tokens = nullptr;           // [P - 1, C]
  float* out = nullptr;                         // [B, P + Np + pad + 2 Nb, C]
};

void prompt_tokens_cpu(const PromptTokensArgs& a);

}  // namespace samfast::cpu
