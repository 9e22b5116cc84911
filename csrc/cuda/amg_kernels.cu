// CUDA kernels of the automatic mask generator; contracts in amg_kernels.h.
// The build uses --use_fast_math, so every rounding-sensitive operation (IoU, ratios) goes through the
// explicit IEEE intrinsics (__fmul_rn, __fdiv_rn, ...) to match torchvision / torch bit for bit.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <stdexcept>
#include <string>

#include "amg_kernels.h"

namespace samfast::cuda::amg {
namespace {

inline void check(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("samfast CUDA ") + what + ": " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
}

// ------------------------------------------------------------------------------------ NMS

__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }

template <typename T>
__device__ __forceinline__ bool iou_above(const T* a, const T* b, double thr) {
  const T w = fmax(T(0), sub_rn(fmin(a[2], b[2]), fmax(a[0], b[0])));
  const T h = fmax(T(0), sub_rn(fmin(a[3], b[3]), fmax(a[1], b[1])));
  const T inter = mul_rn(w, h);
  const T area_a = mul_rn(sub_rn(a[2], a[0]), sub_rn(a[3], a[1]));
  const T area_b = mul_rn(sub_rn(b[2], b[0]), sub_rn(b[3], b[1]));
  const T iou = div_rn(inter, sub_rn(add_rn(area_a, area_b), inter));
  return static_cast<double>(iou) > thr;  // NaN (0 / 0) never suppresses
}

// Block (row block r, column block c), 64 threads: bit j of mask[i][c] = box at visiting position
// c*64+j overlaps the one at position i = r*64+t (only j positions after i).
template <typename T>
__global__ void nms_mask_kernel(const T* __restrict__ boxes, const int64_t* __restrict__ order,
                                const int64_t* __restrict__ cats, int64_t N, int64_t col_blocks, double thr,
                                uint64_t* __restrict__ mask) {
  const int64_t r = blockIdx.y, c = blockIdx.x;
  if (c < r) return;
  __shared__ T col_box[64 * 4];
  __shared__ int64_t col_cat[64];
  const int t = threadIdx.x;
  const int64_t cj = c * 64 + t;
  if (cj < N) {
    const int64_t k = order[cj];
    for (int q = 0; q < 4; ++q) col_box[t * 4 + q] = boxes[k * 4 + q];
    col_cat[t] = cats[k];
  }
  __syncthreads();
  const int64_t i = r * 64 + t;
  if (i >= N) return;
  const int64_t ki = order[i];
  T me[4];
  for (int q = 0; q < 4; ++q) me[q] = boxes[ki * 4 + q];
  const int64_t my_cat = cats[ki];
  const int64_t n_col = (N - c * 64) < 64 ? (N - c * 64) : 64;
  uint64_t bits = 0;
  for (int64_t j = (c == r ? t + 1 : 0); j < n_col; ++j)
    if (col_cat[j] == my_cat && iou_above(me, &col_box[j * 4], thr)) bits |= 1ull << j;
  mask[i * col_blocks + c] = bits;
}

// One block: visit positions in order, keep the unsuppressed ones, OR their rows into `removed`.
__global__ void nms_sweep_kernel(const uint64_t* __restrict__ mask, const int64_t* __restrict__ order, int64_t N,
                                 int64_t col_blocks, int64_t* __restrict__ keep, int64_t* __restrict__ count) {
  extern __shared__ uint64_t removed[];
  for (int64_t w = threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] = 0;
  __syncthreads();
  int64_t n_keep = 0;
  for (int64_t i = 0; i < N; ++i) {
    const bool suppressed = (removed[i >> 6] >> (i & 63)) & 1ull;
    __syncthreads();  // everyone has read removed[] before it changes
    if (!suppressed) {
      if (threadIdx.x == 0) keep[n_keep] = order[i];
      ++n_keep;
      const uint64_t* row = mask + i * col_blocks;
      for (int64_t w = (i >> 6) + threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] |= row[w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) count[0] = n_keep;
}

// ------------------------------------------------------------------------------ stability score

template <typename T> __device__ __forceinline__ float load_f(const T* p, int64_t i);
template <> __device__ __forceinline__ float load_f<float>(const float* p, int64_t i) { return p[i]; }
template <> __device__ __forceinline__ float load_f<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

constexpr int kStabThreads = 256;

// Block per mask; warp per row (per-row counts wrap to int16 like torch's .sum(dtype=int16)).
template <typename T>
__global__ void stability_kernel(const T* __restrict__ logits, int64_t H, int64_t W, float hi, float lo,
                                 float* __restrict__ out) {
  const T* m = logits + blockIdx.x * H * W;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  int32_t inter = 0, uni = 0;
  for (int64_t y = warp; y < H; y += n_warps) {
    int32_t ci = 0, cu = 0;
    for (int64_t x = lane; x < W; x += 32) {
      const float v = load_f(m, y * W + x);
      ci += v > hi;
      cu += v > lo;
    }
    for (int o = 16; o > 0; o >>= 1) {
      ci += __shfl_xor_sync(0xffffffffu, ci, o);
      cu += __shfl_xor_sync(0xffffffffu, cu, o);
    }
    inter += static_cast<int16_t>(static_cast<uint16_t>(ci));
    uni += static_cast<int16_t>(static_cast<uint16_t>(cu));
  }
  using Reduce = cub::BlockReduce<int32_t, kStabThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const int32_t ti = Reduce(tmp).Sum(lane == 0 ? inter : 0);
  __syncthreads();
  const int32_t tu = Reduce(tmp).Sum(lane == 0 ? uni : 0);
  if (threadIdx.x == 0) out[blockIdx.x] = __fdiv_rn(static_cast<float>(ti), static_cast<float>(tu));
}

// --------------------------------------------------------------------------------- mask -> box

constexpr int kBoxThreads = 256;

__global__ void mask_to_box_kernel(const uint8_t* __restrict__ masks, int64_t H, int64_t W,
                                   int64_t* __restrict__ boxes) {
  const int64_t HW = H * W;
  const uint8_t* m = masks + blockIdx.x * HW;
  __shared__ int s_min_x, s_min_y, s_max_x, s_max_y;
  if (threadIdx.x == 0) { s_min_x = s_min_y = INT_MAX; s_max_x = s_max_y = -1; }
  __syncthreads();
  int min_x = INT_MAX, min_y = INT_MAX, max_x = -1, max_y = -1;
  for (int64_t p = threadIdx.x; p < HW; p += blockDim.x) {
    if (m[p]) {
      const int y = static_cast<int>(p / W), x = static_cast<int>(p % W);
      min_x = min(min_x, x); max_x = max(max_x, x);
      min_y = min(min_y, y); max_y = max(max_y, y);
    }
  }
  if (max_x >= 0) {
    atomicMin(&s_min_x, min_x); atomicMax(&s_max_x, max_x);
    atomicMin(&s_min_y, min_y); atomicMax(&s_max_y, max_y);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t* b = boxes + 4 * blockIdx.x;
    const bool empty = s_max_x < 0;
    b[0] = empty ? 0 : s_min_x; b[1] = empty ? 0 : s_min_y;
    b[2] = empty ? 0 : s_max_x; b[3] = empty ? 0 : s_max_y;
  }
}

// ---------------------------------------------------------------------------------------- RLE

constexpr int kRleThreads = 256;

__device__ __forceinline__ uint8_t colmajor(const uint8_t* m, int64_t q, int64_t H, int64_t W) {
  return m[(q % H) * W + q / H];
}

__global__ void rle_count_kernel(const uint8_t* __restrict__ masks, int64_t H, int64_t W,
                                 int64_t* __restrict__ lengths) {
  const int64_t HW = H * W;
  const uint8_t* m = masks + blockIdx.x * HW;
  int64_t t = 0;
  for (int64_t p = threadIdx.x; p < HW; p += blockDim.x) {
    const int64_t y = p / W, x = p % W;
    if (y + 1 < H) t += m[p] ^ m[p + W];                // down the column
    else if (x + 1 < W) t += m[p] ^ m[x + 1];           // bottom of column x -> top of column x + 1
  }
  using Reduce = cub::BlockReduce<int64_t, kRleThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const int64_t total = Reduce(tmp).Sum(t);
  if (threadIdx.x == 0) lengths[blockIdx.x] = HW == 0 ? 1 : total + 1 + (m[0] ? 1 : 0);
}

// Block per mask. Phase 1: ordered transition positions (block scan per chunk) into the count slots;
// phase 2: positions -> run lengths, chunk by chunk with a carry (in place, race free).
__global__ void rle_encode_kernel(const uint8_t* __restrict__ masks, int64_t H, int64_t W,
                                  const int64_t* __restrict__ offsets, int64_t* __restrict__ counts) {
  const int64_t HW = H * W;
  const uint8_t* m = masks + blockIdx.x * HW;
  int64_t* c = counts + offsets[blockIdx.x];
  const int64_t cap = offsets[blockIdx.x + 1] - offsets[blockIdx.x];  // block-uniform
  if (cap < 1) return;
  if (HW == 0) {
    if (threadIdx.x == 0) c[0] = 0;
    return;
  }
  const int lead = m[0] ? 1 : 0;
  if (lead && threadIdx.x == 0) c[0] = 0;
  using Scan = cub::BlockScan<int, kRleThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  int64_t K = 0;
  for (int64_t base = 1; base < HW; base += blockDim.x) {
    const int64_t q = base + threadIdx.x;
    const int flag = q < HW && colmajor(m, q, H, W) != colmajor(m, q - 1, H, W);
    int off, agg;
    Scan(scan_tmp).ExclusiveSum(flag, off, agg);
    if (flag && lead + K + off < cap - 1) c[lead + K + off] = q;  // guard: offsets must come from rle_count
    K += agg;
    __syncthreads();
  }
  __shared__ int64_t carry;
  if (threadIdx.x == 0) carry = 0;
  const int64_t last = min(lead + K, cap - 1);  // slot of the final run
  for (int64_t base = lead; base <= last; base += blockDim.x) {
    const int64_t s = base + threadIdx.x;
    int64_t cur = 0, prev = 0;
    __syncthreads();
    if (s <= last) {
      cur = s < last ? c[s] : HW;
      prev = s == base ? carry : c[s - 1];
    }
    __syncthreads();
    if (s <= last) c[s] = cur - prev;
    if (threadIdx.x == blockDim.x - 1) carry = cur;
  }
}

}  // namespace

void nms(const void* boxes, bool boxes_f64, const int64_t* order, const int64_t* cats, int64_t N,
         double iou_threshold, uint64_t* mask, int64_t* keep, int64_t* count, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (N > kNmsMaxBoxes)
    throw std::runtime_error("samfast CUDA nms: at most " + std::to_string(kNmsMaxBoxes) + " boxes, got " +
                             std::to_string(N));
  const int64_t cb = (N + 63) / 64;
  if (N > 0) {
    dim3 grid(static_cast<unsigned>(cb), static_cast<unsigned>(cb));
    if (boxes_f64)
      nms_mask_kernel<double><<<grid, 64, 0, s>>>(static_cast<const double*>(boxes), order, cats, N, cb,
                                                  iou_threshold, mask);
    else
      nms_mask_kernel<float><<<grid, 64, 0, s>>>(static_cast<const float*>(boxes), order, cats, N, cb,
                                                 iou_threshold, mask);
    check("nms mask");
  }
  const size_t smem = static_cast<size_t>(cb) * sizeof(uint64_t);
  if (smem > 48 * 1024) {
    cudaFuncSetAttribute(nms_sweep_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    check("nms sweep smem");
  }
  nms_sweep_kernel<<<1, 256, smem, s>>>(mask, order, N, cb, keep, count);
  check("nms sweep");
}

void stability_score(const void* logits, bool bf16, int64_t N, int64_t H, int64_t W, float hi, float lo,
                     float* out, void* stream) {
  if (N == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (bf16)
    stability_kernel<__nv_bfloat16><<<static_cast<unsigned>(N), kStabThreads, 0, s>>>(
        static_cast<const __nv_bfloat16*>(logits), H, W, hi, lo, out);
  else
    stability_kernel<float><<<static_cast<unsigned>(N), kStabThreads, 0, s>>>(static_cast<const float*>(logits),
                                                                              H, W, hi, lo, out);
  check("stability_score");
}

void mask_to_box(const uint8_t* masks, int64_t N, int64_t H, int64_t W, int64_t* boxes, void* stream) {
  if (N == 0) return;
  mask_to_box_kernel<<<static_cast<unsigned>(N), kBoxThreads, 0, static_cast<cudaStream_t>(stream)>>>(masks, H, W,
                                                                                                   boxes);
  check("mask_to_box");
}

void rle_count(const uint8_t* masks, int64_t N, int64_t H, int64_t W, int64_t* lengths, void* stream) {
  if (N == 0) return;
  rle_count_kernel<<<static_cast<unsigned>(N), kRleThreads, 0, static_cast<cudaStream_t>(stream)>>>(masks, H, W,
                                                                                                 lengths);
  check("rle_count");
}

void rle_encode(const uint8_t* masks, int64_t N, int64_t H, int64_t W, const int64_t* offsets, int64_t* counts,
                void* stream) {
  if (N == 0) return;
  rle_encode_kernel<<<static_cast<unsigned>(N), kRleThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      masks, H, W, offsets, counts);
  check("rle_encode");
}

}  // namespace samfast::cuda::amg
