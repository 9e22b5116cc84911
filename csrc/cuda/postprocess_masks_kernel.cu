// Mask postprocessing (contract: python/samfast/ops.py postprocess_masks_reference), fused:
// bilinear (align_corners=False) h x w -> S x S (S = img_size), crop [:input_h, :input_w], bilinear
// -> H0 x W0. Each step is separable, so an output pixel is a 4 x 4 (16-tap) stencil of the low-res
// mask: 2 intermediate rows x 2 low-res rows each, same for columns. One thread per output pixel;
// the taps are computed once per thread and reused for every (b, m) plane of its grid-z slice.
#include "common.cuh"

namespace samfast::cuda {
namespace {

// PyTorch's source index for align_corners=False without a scale factor: scale = in / out (float),
// src = max(scale * (dst + 0.5) - 0.5, 0), i0 = floor(src), i1 = min(i0 + 1, in - 1), w1 = src - i0.
// __fmul_rn / __fsub_rn keep nvcc from contracting into an FMA (PyTorch rounds both steps); __fdiv_rn
// keeps --use_fast_math from turning in / out into div.approx (PyTorch's scale is the IEEE quotient).
__device__ __forceinline__ void linear_taps(int dst, int in_size, int out_size, int& i0, int& i1, float& w0,
                                            float& w1) {
  const float scale = __fdiv_rn(static_cast<float>(in_size), static_cast<float>(out_size));
  float src = __fsub_rn(__fmul_rn(scale, static_cast<float>(dst) + 0.5f), 0.5f);
  src = fmaxf(src, 0.f);
  i0 = min(static_cast<int>(src), in_size - 1);  // min: guards float rounding at the far edge
  i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  w1 = src - static_cast<float>(i0);
  w0 = 1.f - w1;
}

// The 4 low-res taps (index, weight) along one axis for output coordinate o:
// out (size out_size) <- crop (size crop, first `crop` of S) <- low-res (size in_size).
__device__ __forceinline__ void composite_taps(int o, int out_size, int crop, int S, int in_size, int (&idx)[4],
                                               float (&wt)[4]) {
  int m0, m1;
  float a0, a1;
  linear_taps(o, crop, out_size, m0, m1, a0, a1);  // intermediate rows m0, m1 < crop <= S
  int j0, j1;
  float c0, c1;
  linear_taps(m0, in_size, S, j0, j1, c0, c1);
  idx[0] = j0; wt[0] = a0 * c0;
  idx[1] = j1; wt[1] = a0 * c1;
  linear_taps(m1, in_size, S, j0, j1, c0, c1);
  idx[2] = j0; wt[2] = a1 * c0;
  idx[3] = j1; wt[3] = a1 * c1;
}

template <typename T, bool BIN>
__global__ void __launch_bounds__(256)
    postprocess_kernel(const T* __restrict__ masks,  // [planes, h, w]
                       void* __restrict__ out,       // [planes, H0, W0] (T, or uint8/bool when BIN)
                       int64_t planes, int h, int w, int H0, int W0, int S, int ih, int iw, float thr) {
  const int ox = blockIdx.x * blockDim.x + threadIdx.x;
  const int oy = blockIdx.y * blockDim.y + threadIdx.y;
  if (ox >= W0 || oy >= H0) return;  // no barriers in this kernel
  int ry[4], cx[4];
  float wy[4], wx[4];
  composite_taps(oy, H0, ih, S, h, ry, wy);
  composite_taps(ox, W0, iw, S, w, cx, wx);
  const int64_t plane_in = static_cast<int64_t>(h) * w, plane_out = static_cast<int64_t>(H0) * W0;
  const int64_t opix = static_cast<int64_t>(oy) * W0 + ox;
  const float thr_t = to_f(from_f<T>(thr));
  for (int64_t pl = blockIdx.z; pl < planes; pl += gridDim.z) {
    const T* mp = masks + pl * plane_in;
    float v = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const T* row = mp + static_cast<int64_t>(ry[i]) * w;
      float r = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) r = fmaf(wx[j], to_f(__ldg(row + cx[j])), r);
      v = fmaf(wy[i], r, v);
    }
    const T vt = from_f<T>(v);
    if constexpr (BIN) {  // thr_t: torch compares a T tensor with a Python float rounded to T
      static_cast<unsigned char*>(out)[pl * plane_out + opix] = to_f(vt) > thr_t ? 1 : 0;
    } else {
      static_cast<T*>(out)[pl * plane_out + opix] = vt;
    }
  }
}

}  // namespace

void postprocess_masks(const void* masks, void* out, int64_t planes, int64_t h, int64_t w, int64_t H0, int64_t W0,
                       int64_t img_size, int64_t input_h, int64_t input_w, float threshold, bool binarize, Dt dt,
                       void* stream) {
  if (planes == 0 || H0 == 0 || W0 == 0) return;
  if (h <= 0 || w <= 0 || img_size <= 0 || input_h <= 0 || input_w <= 0 || input_h > img_size || input_w > img_size)
    throw std::runtime_error("samfast CUDA postprocess_masks: bad sizes");
  constexpr int64_t kMax = int64_t(1) << 30;
  if (h > kMax || w > kMax || H0 > kMax || W0 > kMax || img_size > kMax || (H0 + 7) / 8 > 65535)
    throw std::runtime_error("samfast CUDA postprocess_masks: sizes out of range for one launch");
  const dim3 block(32, 8);
  const dim3 grid(ceil_div_u(W0, 32), ceil_div_u(H0, 8), static_cast<unsigned>(planes < 65535 ? planes : 65535));
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  dispatch_dt(dt, [&](auto tag) {
    using T = decltype(tag);
    auto args = [&](auto kernel) {
      kernel<<<grid, block, 0, st>>>(static_cast<const T*>(masks), out, planes, static_cast<int>(h),
                                     static_cast<int>(w), static_cast<int>(H0), static_cast<int>(W0),
                                     static_cast<int>(img_size), static_cast<int>(input_h),
                                     static_cast<int>(input_w), threshold);
    };
    if (binarize) args(postprocess_kernel<T, true>);
    else args(postprocess_kernel<T, false>);
  });
  check_launch("postprocess_masks");
}

}  // namespace samfast::cuda
