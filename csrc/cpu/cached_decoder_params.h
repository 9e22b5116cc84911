// Packed-parameter layout of the whole-decoder kernel (see cached_decoder_kernel.h): one definition of the
// order (visit_params), the packer, and the binding of a packed buffer to named views (bind_params).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/cached_decoder_kernel.h"

namespace samfast::cpu {

// W^T of a linear is stored in column panels of kPanel (the last one narrower when outp % kPanel != 0):
// panel p holds columns [p*kPanel, p*kPanel + width) as [in, width], so a column block streams one
// contiguous chunk of memory (the token-side linears are bound by reading their weights).
constexpr int64_t kPanel = 32;

// Bound view of one packed entry (Norm / ConvT use w and b only).
struct Slot {
  const float* wt = nullptr;  // Linear: W^T [in, outp] in column panels (see panel())
  const float* w = nullptr;   // Linear: [out, in]; Norm: [out]; ConvT: [in, out, 2, 2]
  const float* b = nullptr;   // Linear: [outp]; Norm / ConvT: [out]
  int64_t in = 0, out = 0, outp = 0;

  int64_t panels() const { return (outp + kPanel - 1) / kPanel; }
  int64_t panel_width(int64_t p) const { return std::min(kPanel, outp - p * kPanel); }
  // W^T[k, p*kPanel + j] = panel(p)[k * panel_width(p) + j]
  const float* panel(int64_t p) const { return wt + p * kPanel * in; }
};
struct AttnP {
  Slot q, k, v, o;
};
struct LayerP {
  AttnP self_attn, t2i, i2t;
  Slot n1, n2, n3, n4, mlp1, mlp2;
};
struct DecoderParams {
  LayerP layers[2];
  AttnP final_attn;
  Slot nf, iou[3], up1, up_ln, up2;
  std::vector<Slot> hyper;  // [M * 3]
  const float* mask_head = nullptr;  // up1 / up_ln / up2 repacked by pack_mask_head (after the entries)
  // The mask head's folded first ConvT (MaskHeadFold, mask_head_kernel.h), after the mask head block:
  // A' = diag(w1n) A, A'' = diag(w0) A' as [C, N1p] row-major; k1, k2, c0, c1, cz [N1p].
  struct Fold {
    int64_t N1p = 0;
    const float *Ap = nullptr, *App = nullptr, *k1 = nullptr, *k2 = nullptr, *c0 = nullptr, *c1 = nullptr,
                *cz = nullptr;
  } fold;
};

// Checks dims (throws ShapeError) and binds every entry of `packed` (laid out by pack_decoder_params).
void check_decoder_dims(const DecoderDims& d);
DecoderParams bind_params(const DecoderDims& d, const float* packed);

}  // namespace samfast::cpu
