// Packed-parameter layout of the whole-decoder kernel (see cached_decoder_kernel.h): one definition of the
// order (visit_params), the packer, and the binding of a packed buffer to named views (bind_params).
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/cached_decoder_kernel.h"

namespace samfast::cpu {

// Bound view of one packed entry (Norm / ConvT use w and b only).
struct Slot {
  const float* wt = nullptr;  // Linear: [in, outp]
  const float* w = nullptr;   // Linear: [out, in]; Norm: [out]; ConvT: [in, out, 2, 2]
  const float* b = nullptr;   // Linear: [outp]; Norm / ConvT: [out]
  int64_t in = 0, out = 0, outp = 0;
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
};

// Checks dims (throws ShapeError) and binds every entry of `packed` (laid out by pack_decoder_params).
void check_decoder_dims(const DecoderDims& d);
DecoderParams bind_params(const DecoderDims& d, const float* packed);

}  // namespace samfast::cpu
