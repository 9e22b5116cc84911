// Mask postprocessing (contract: python/samfast/ops.py postprocess_masks_reference), fused:
// bilinear (align_corners=False) h x w -> S x S (S = img_size), crop [:input_h, :input_w], bilinear
// -> H0 x W0. Each step is separable, so an output pixel is a 4 x 4 (16-tap) stencil of the low-res
// mask: 2 intermediate rows x 2 low-res rows each, same for columns. One thread per output pixel;
// the taps are computed once per thread and reused for every (b, m) plane of its grid-z slice.
#include <climits>

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

// Value at one output pixel: sum over the 4 x 4 low-res taps (rows ry, columns cx) of wy[i] * wx[j] * plane.
template <typename T>
__device__ __forceinline__ float composite_sample(const T* __restrict__ plane, int w, const int (&ry)[4],
                                                  const float (&wy)[4], const int (&cx)[4], const float (&wx)[4]) {
  float v = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const T* row = plane + static_cast<int64_t>(ry[i]) * w;
    float r = 0.f;
#pragma unroll
    for (int j = 0; j < 4; ++j) r = fmaf(wx[j], to_f(__ldg(row + cx[j])), r);
    v = fmaf(wy[i], r, v);
  }
  return v;
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
    const T vt = from_f<T>(composite_sample(masks + pl * plane_in, w, ry, wy, cx, wx));
    if constexpr (BIN) {  // thr_t: torch compares a T tensor with a Python float rounded to T
      static_cast<unsigned char*>(out)[pl * plane_out + opix] = to_f(vt) > thr_t ? 1 : 0;
    } else {
      static_cast<T*>(out)[pl * plane_out + opix] = vt;
    }
  }
}

// Per-plane accumulators of the stats kernel: n_hi, n_lo (counts), x0, y0 (min), x1, y1 (max).
constexpr int kAcc = 6;

__global__ void stats_init_kernel(int* __restrict__ acc, int64_t planes) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= planes) return;
  int* a = acc + p * kAcc;
  a[0] = 0; a[1] = 0; a[2] = INT_MAX; a[3] = INT_MAX; a[4] = -1; a[5] = -1;
}

// Binarized resize of float32 logits + per-plane counts above stab_hi / stab_lo and the box of
// value > thr. Block (32, 8): every thread stays to the end (out-of-range ones contribute nothing) so
// the warp shuffles and barriers see the full block; one set of atomics per block and plane.
__global__ void __launch_bounds__(256)
    postprocess_stats_kernel(const float* __restrict__ masks,  // [planes, h, w]
                             unsigned char* __restrict__ out,  // [planes, H0, W0] bool
                             int* __restrict__ acc,            // [planes, kAcc]
                             int64_t planes, int h, int w, int H0, int W0, int S, int ih, int iw, float thr,
                             float hi, float lo) {
  __shared__ int red[8][kAcc];
  const int ox = blockIdx.x * blockDim.x + threadIdx.x;
  const int oy = blockIdx.y * blockDim.y + threadIdx.y;
  const bool valid = ox < W0 && oy < H0;
  const int warp = threadIdx.y, lane = threadIdx.x;  // blockDim.x == 32: one warp per block row
  int ry[4], cx[4];
  float wy[4], wx[4];
  composite_taps(valid ? oy : 0, H0, ih, S, h, ry, wy);
  composite_taps(valid ? ox : 0, W0, iw, S, w, cx, wx);
  const int64_t plane_in = static_cast<int64_t>(h) * w, plane_out = static_cast<int64_t>(H0) * W0;
  const int64_t opix = static_cast<int64_t>(oy) * W0 + ox;
  for (int64_t pl = blockIdx.z; pl < planes; pl += gridDim.z) {
    int on = 0, above_hi = 0, above_lo = 0;
    if (valid) {
      const float v = composite_sample(masks + pl * plane_in, w, ry, wy, cx, wx);
      on = v > thr;
      above_hi = v > hi;
      above_lo = v > lo;
      out[pl * plane_out + opix] = static_cast<unsigned char>(on);
    }
    const int n_hi = warp_sum(above_hi), n_lo = warp_sum(above_lo);
    const int x0 = warp_min(on ? ox : INT_MAX), x1 = warp_max(on ? ox : -1);
    const int any = warp_max(on);
    if (lane == 0) {
      red[warp][0] = n_hi; red[warp][1] = n_lo; red[warp][2] = x0; red[warp][4] = x1;
      red[warp][3] = any ? oy : INT_MAX; red[warp][5] = any ? oy : -1;
    }
    __syncthreads();
    if (warp == 0 && lane == 0) {
      int r[kAcc] = {0, 0, INT_MAX, INT_MAX, -1, -1};
      for (int i = 0; i < static_cast<int>(blockDim.y); ++i) {
        r[0] += red[i][0]; r[1] += red[i][1];
        r[2] = min(r[2], red[i][2]); r[3] = min(r[3], red[i][3]);
        r[4] = max(r[4], red[i][4]); r[5] = max(r[5], red[i][5]);
      }
      int* a = acc + pl * kAcc;
      if (r[0]) atomicAdd(a + 0, r[0]);
      if (r[1]) atomicAdd(a + 1, r[1]);
      if (r[5] >= 0) {
        atomicMin(a + 2, r[2]); atomicMin(a + 3, r[3]);
        atomicMax(a + 4, r[4]); atomicMax(a + 5, r[5]);
      }
    }
    __syncthreads();  // red is rewritten by the next plane
  }
}

__global__ void stats_finalize_kernel(const int* __restrict__ acc, float* __restrict__ stability,
                                      int64_t* __restrict__ boxes, int64_t planes) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= planes) return;
  const int* a = acc + p * kAcc;
  stability[p] = __fdiv_rn(static_cast<float>(a[0]), static_cast<float>(a[1]));  // 0 / 0 -> NaN as torch
  const bool empty = a[5] < 0;
  int64_t* b = boxes + p * 4;
  b[0] = empty ? 0 : a[2]; b[1] = empty ? 0 : a[3]; b[2] = empty ? 0 : a[4]; b[3] = empty ? 0 : a[5];
}

}  // namespace

void postprocess_masks_stats(const float* masks, unsigned char* out, float* stability, int64_t* boxes, int* acc,
                             int64_t planes, int64_t h, int64_t w, int64_t H0, int64_t W0, int64_t img_size,
                             int64_t input_h, int64_t input_w, float threshold, float stab_hi, float stab_lo,
                             void* stream) {
  if (planes == 0) return;
  if (h <= 0 || w <= 0 || H0 <= 0 || W0 <= 0 || img_size <= 0 || input_h <= 0 || input_w <= 0 ||
      input_h > img_size || input_w > img_size)
    throw std::runtime_error("samfast CUDA postprocess_masks_stats: bad sizes");
  constexpr int64_t kMax = int64_t(1) << 30;
  if (h > kMax || w > kMax || H0 > kMax || W0 > kMax || img_size > kMax || (H0 + 7) / 8 > 65535 ||
      H0 * W0 > INT_MAX)  // the per-plane counts are int32 atomics
    throw std::runtime_error("samfast CUDA postprocess_masks_stats: sizes out of range for one launch");
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const unsigned pb = ceil_div_u(planes, 256);
  stats_init_kernel<<<pb, 256, 0, st>>>(acc, planes);
  const dim3 block(32, 8);
  const dim3 grid(ceil_div_u(W0, 32), ceil_div_u(H0, 8), static_cast<unsigned>(planes < 65535 ? planes : 65535));
  postprocess_stats_kernel<<<grid, block, 0, st>>>(masks, out, acc, planes, static_cast<int>(h), static_cast<int>(w),
                                                   static_cast<int>(H0), static_cast<int>(W0),
                                                   static_cast<int>(img_size), static_cast<int>(input_h),
                                                   static_cast<int>(input_w), threshold, stab_hi, stab_lo);
  stats_finalize_kernel<<<pb, 256, 0, st>>>(acc, stability, boxes, planes);
  check_launch("postprocess_masks_stats");
}

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
