// SIMT fp32 rel-pos attention kernel (any dtype, hd <= 128); included by rel_pos_attention_kernel.cu.
#pragma once
#include "rel_pos_attention_common.cuh"

namespace samfast::cuda {
namespace {

// ------------------------------------------------------------------------------------------------
// SIMT fp32 path: 8 warps x 4 queries = 32 queries per CTA, key tiles of 32 (lane j = key k0 + j).
// ------------------------------------------------------------------------------------------------
constexpr int kSimtThreads = 256, kSimtQPW = 4, kSimtBQ = 32, kSimtBK = 32;

size_t simt_smem_bytes(int hd, int SS) {
  return sizeof(float) * (static_cast<size_t>(kSimtBQ) * hd + static_cast<size_t>(kSimtBK) * (hd + 1) +
                          static_cast<size_t>(kSimtBK) * hd + static_cast<size_t>(kSimtBQ) * SS);
}

template <typename T, int DPL>  // DPL: head dims per lane (hd <= 32 * DPL)
__global__ void __launch_bounds__(kSimtThreads) attn_simt_kernel(AttnParams p) {
  extern __shared__ float smem[];
  const int hd = p.hd, SS = p.Sh + p.Sw;
  float* Qs = smem;                  // [BQ][hd]
  float* Ks = Qs + kSimtBQ * hd;     // [BK][hd + 1] (odd stride: lane j reads row j conflict-free)
  float* Vs = Ks + kSimtBK * (hd + 1);  // [BK][hd]
  float* Bs = Vs + kSimtBK * hd;     // [BQ][Sh + Sw]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int q0 = blockIdx.x * kSimtBQ, head = blockIdx.y, z = blockIdx.z;
  const T* qkv = static_cast<const T*>(p.qkv);
  const T* bias = static_cast<const T*>(p.bias);
  const int64_t C = p.C, C3 = 3 * static_cast<int64_t>(p.C), hoff = static_cast<int64_t>(head) * hd;

  // Row loads: a warp per row (token address computed once per row), lanes over the head dims.
  for (int qi = warp; qi < kSimtBQ; qi += kSimtThreads / 32) {
    const int q = q0 + qi;
    const T* src = nullptr;  // queries >= N: zeros
    if (q < p.N) {
      bool valid;
      const int64_t tok = token_index(p, z, q, valid);
      src = (valid ? qkv + tok * C3 : bias) + hoff;
    }
    for (int d = lane; d < hd; d += 32) Qs[qi * hd + d] = src ? to_f(src[d]) : 0.f;
  }
  __syncthreads();
  rel_bias_tile<T, float>(p, Qs, hd, q0, kSimtBQ, Bs, tid, kSimtThreads);

  float o[kSimtQPW][DPL], m[kSimtQPW], l[kSimtQPW];
#pragma unroll
  for (int qi = 0; qi < kSimtQPW; ++qi) {
    m[qi] = -INFINITY;
    l[qi] = 0.f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) o[qi][i] = 0.f;
  }
  const float sl2 = p.scale * kLog2e;
  const float* qw = Qs + warp * kSimtQPW * hd;

  for (int k0 = 0; k0 < p.N; k0 += kSimtBK) {
    __syncthreads();  // previous tile fully consumed (first pass: Bs written)
    for (int j = warp; j < kSimtBK; j += kSimtThreads / 32) {
      const int key = k0 + j;
      const T* src = nullptr;  // keys >= N: zeros (masked below; P = 0 must not meet NaN in V)
      if (key < p.N) {
        bool valid;
        const int64_t tok = token_index(p, z, key, valid);
        src = (valid ? qkv + tok * C3 : bias) + C + hoff;  // k; v sits C further, in both
      }
      for (int d = lane; d < hd; d += 32) {
        Ks[j * (hd + 1) + d] = src ? to_f(src[d]) : 0.f;
        Vs[j * hd + d] = src ? to_f(src[d + C]) : 0.f;
      }
    }
    __syncthreads();

    float s[kSimtQPW];
#pragma unroll
    for (int qi = 0; qi < kSimtQPW; ++qi) s[qi] = 0.f;
    const float* kr = Ks + lane * (hd + 1);
#pragma unroll 4
    for (int d = 0; d < hd; ++d) {
      const float kd = kr[d];
#pragma unroll
      for (int qi = 0; qi < kSimtQPW; ++qi) s[qi] = fmaf(qw[qi * hd + d], kd, s[qi]);
    }
    const int key = k0 + lane;
    const bool kvalid = key < p.N;
    int ky = 0, kx = 0;
    if (kvalid) {
      ky = key / p.Sw;
      kx = key - ky * p.Sw;
    }
#pragma unroll
    for (int qi = 0; qi < kSimtQPW; ++qi) {
      const float* br = Bs + (warp * kSimtQPW + qi) * SS;
      const float sv = kvalid ? fmaf(s[qi], sl2, (br[ky] + br[p.Sh + kx]) * kLog2e) : -INFINITY;
      const float mn = fmaxf(m[qi], warp_max(sv));  // finite: lane 0's key k0 < N is valid
      const float corr = exp2f(m[qi] - mn);         // first tile: exp2(-inf) = 0
      const float pv = exp2f(sv - mn);              // masked keys: 0
      l[qi] = l[qi] * corr + warp_sum(pv);
      m[qi] = mn;
#pragma unroll
      for (int i = 0; i < DPL; ++i) o[qi][i] *= corr;
      s[qi] = pv;
    }
#pragma unroll 4
    for (int j = 0; j < kSimtBK; ++j) {
      float vj[DPL];
#pragma unroll
      for (int i = 0; i < DPL; ++i) {
        const int d = lane + 32 * i;
        vj[i] = d < hd ? Vs[j * hd + d] : 0.f;
      }
#pragma unroll
      for (int qi = 0; qi < kSimtQPW; ++qi) {
        const float pj = __shfl_sync(0xffffffffu, s[qi], j);
#pragma unroll
        for (int i = 0; i < DPL; ++i) o[qi][i] = fmaf(pj, vj[i], o[qi][i]);
      }
    }
  }

  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int qi = 0; qi < kSimtQPW; ++qi) {
    const int q = q0 + warp * kSimtQPW + qi;
    if (q >= p.N) continue;
    bool valid;
    const int64_t tok = token_index(p, z, q, valid);
    if (!valid) continue;  // padded query: writes nothing
    const float inv = 1.f / l[qi];
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) out[tok * C + hoff + d] = from_f<T>(o[qi][i] * inv);
    }
  }
}

}  // namespace
}  // namespace samfast::cuda
