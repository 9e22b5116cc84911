// Sparse prompt embeddings + token assembly (see prompt_tokens_kernel.h). A few hundred floats per prompt: plain
// scalar code, no threads; the float32 operations follow the official module's order.
#include "cpu/prompt_tokens_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace samfast::cpu {
namespace {

// out[0:C] = [sin(a), cos(a)], a = 2 pi ((2 c - 1) @ G) for c = (cx, cy) already divided by the image size.
void fourier_pe(const PromptTokensArgs& a, float cx, float cy, float* out) {
  const float u = 2.f * cx - 1.f, v = 2.f * cy - 1.f;
  const float two_pi = static_cast<float>(2.0 * 3.14159265358979323846);
  for (int64_t f = 0; f < a.F; ++f) {
    const float t = two_pi * (u * a.gauss[f] + v * a.gauss[a.F + f]);
    out[f] = std::sin(t);
    out[a.F + f] = std::cos(t);
  }
}

void add_row(float* out, const float* w, int64_t C) {
  for (int64_t c = 0; c < C; ++c) out[c] += w[c];
}

}  // namespace

void prompt_tokens_cpu(const PromptTokensArgs& a) {
  const int64_t C = a.C, T = a.P + a.Np + (a.pad ? 1 : 0) + 2 * a.Nb;
  for (int64_t b = 0; b < a.B; ++b) {
    float* out = a.out + b * T * C;
    std::memcpy(out, a.iou_token, C * sizeof(float));
    std::memcpy(out + C, a.mask_tokens, (a.P - 1) * C * sizeof(float));
    out += a.P * C;
    for (int64_t i = 0; i < a.Np; ++i, out += C) {
      const float* xy = a.coords + (b * a.Np + i) * 2;
      const int64_t l = a.labels[b * a.Np + i];
      if (l == -1) {  // the official module zeroes the encoding, then adds not_a_point_embed
        std::memcpy(out, a.not_a_point, C * sizeof(float));
        continue;
      }
      fourier_pe(a, (xy[0] + 0.5f) / a.img_w, (xy[1] + 0.5f) / a.img_h, out);
      if (l == 0 || l == 1) add_row(out, a.point_emb[l], C);
    }
    if (a.pad) {
      std::memcpy(out, a.not_a_point, C * sizeof(float));
      out += C;
    }
    for (int64_t i = 0; i < a.Nb; ++i)
      for (int64_t k = 0; k < 2; ++k, out += C) {
        const float* xy = a.boxes + b * 4 + 2 * k;
        fourier_pe(a, (xy[0] + 0.5f) / a.img_w, (xy[1] + 0.5f) / a.img_h, out);
        add_row(out, a.point_emb[2 + k], C);
      }
  }
}

}  // namespace samfast::cpu
