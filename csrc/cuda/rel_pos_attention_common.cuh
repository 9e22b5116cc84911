// Shared parts of the rel-pos attention kernels (included by rel_pos_attention_kernel.cu only):
// launch parameters, token addressing of windowed / global blocks, and the rel-pos bias tile.
#pragma once
#include "common.cuh"

namespace samfast::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

struct AttnParams {
  const void* qkv;   // [B, H, W, 3*C]
  const void* bias;  // [3*C]
  const void* rel_h; // [Sh, Sh, hd]
  const void* rel_w; // [Sw, Sw, hd]
  void* out;         // [B, H, W, C]
  int H, W, C, hd;
  int Sh, Sw, N;     // window (or whole grid when global) is Sh x Sw tokens, N = Sh * Sw
  int nWw, nW;       // windows per window-row, windows per image (1, 1 when global)
  float scale;       // hd^-0.5
};

// Token index (b * H + gy) * W + gx of sequence element `idx` (< N) of window-batch z; valid = inside H x W.
__device__ __forceinline__ int64_t token_index(const AttnParams& p, int z, int idx, bool& valid) {
  const int b = z / p.nW, wi = z - b * p.nW;
  const int wy = wi / p.nWw, wx = wi - wy * p.nWw;
  const int ty = idx / p.Sw, tx = idx - ty * p.Sw;
  const int gy = wy * p.Sh + ty, gx = wx * p.Sw + tx;
  valid = gy < p.H && gx < p.W;
  return (static_cast<int64_t>(b) * p.H + gy) * p.W + gx;
}

// bias_s[qi * (Sh + Sw) + r] for the CTA's queries q0 + qi (qi < nq): r < Sh: q . rel_h[qy, r];
// else q . rel_w[qx, r - Sh]. qs: the queries' vectors in shared memory (row stride qs_stride).
// (SIMT kernel; the mma kernel computes the same values on the tensor cores, see bias_pass.)
template <typename T, typename QT>
__device__ void rel_bias_tile(const AttnParams& p, const QT* qs, int qs_stride, int q0, int nq, float* bias_s,
                              int tid, int nthreads) {
  const int SS = p.Sh + p.Sw;
  const T* rh = static_cast<const T*>(p.rel_h);
  const T* rw = static_cast<const T*>(p.rel_w);
  for (int i = tid; i < nq * SS; i += nthreads) {
    const int qi = i / SS, r = i - qi * SS, q = q0 + qi;
    float acc = 0.f;
    if (q < p.N) {  // q >= N has no (qy, qx) inside the tables
      const int qy = q / p.Sw, qx = q - qy * p.Sw;
      const T* row = r < p.Sh ? rh + (static_cast<int64_t>(qy) * p.Sh + r) * p.hd
                              : rw + (static_cast<int64_t>(qx) * p.Sw + (r - p.Sh)) * p.hd;
      const QT* qr = qs + qi * qs_stride;
      for (int d = 0; d < p.hd; ++d) acc = fmaf(to_f(row[d]), to_f(qr[d]), acc);
    }
    bias_s[i] = acc;
  }
}

}  // namespace
}  // namespace samfast::cuda
