// SAM mask decoder tail on the GPU (contracts in python/samfast/ops.py):
//   * mask_head_kernel: ConvT2x2 -> LayerNorm(C1) -> GELU -> ConvT2x2 -> GELU -> hyper_in . u, fused:
//     a CTA owns 16 input pixels of one image; src tile, w2, biases and hyper_in sit in shared memory,
//     w1 streams from L2 in coalesced rows; nothing of size 4h x 4w x C2 touches global memory.
//   * hypernet_kernel: the M per-token 3-layer MLPs of the hypernetwork, one launch.
// All arithmetic in fp32 whatever the storage dtype.
#include "common.cuh"

namespace samfast::cuda {
namespace {

constexpr int kMhThreads = 256;
constexpr int kMhP = 16;            // input pixels per CTA
constexpr int kC1 = 64, kC2 = 32;   // SAM: transformer_dim / 4 and / 8
constexpr int kTS = kC1 + 4;        // row stride of t (floats): conflict-free float4 reads across rows
constexpr int kW2E = kC1 * kC2 + 4; // stride of w2 per (ey, ex) (floats)
static_assert(kC1 * 4 == kMhThreads, "stage 1 maps one thread to one (c1, dy, dx) column of w1");
static_assert(kMhP * 16 == kMhThreads, "stage 3 maps one thread to one (pixel, dy, dx, ey, ex)");

size_t mh_smem_floats(int64_t C, int64_t M) {
  return static_cast<size_t>(C) * kMhP + kMhP * 4 * kTS + 4 * kW2E + static_cast<size_t>(M) * kC2 + 3 * kC1 + kC2;
}

template <typename T>
__global__ void __launch_bounds__(kMhThreads)
    mask_head_kernel(const T* __restrict__ src,       // [B, h, w, C]
                     const T* __restrict__ w1,        // [C, C1, 2, 2]
                     const T* __restrict__ b1,        // [C1]
                     const T* __restrict__ ln_w,      // [C1]
                     const T* __restrict__ ln_b,      // [C1]
                     const T* __restrict__ w2,        // [C1, C2, 2, 2]
                     const T* __restrict__ b2,        // [C2]
                     const T* __restrict__ hyper_in,  // [B, M, C2]
                     T* __restrict__ out,             // [B, M, 4h, 4w]
                     int h, int w, int C, int M) {
  extern __shared__ __align__(16) float sm[];
  float* srcs = sm;                        // [C][P]   (pixel fastest: float4 broadcast reads)
  float* ts = srcs + C * kMhP;             // [P * 4][kTS]  t per (pixel, dy, dx), then LN + GELU in place
  float* w2s = ts + kMhP * 4 * kTS;        // [4 (ey, ex)][kW2E]: [c1][c2]
  float* hyp = w2s + 4 * kW2E;             // [M][C2]
  float* b1s = hyp + M * kC2;              // [C1]
  float* lnws = b1s + kC1;                 // [C1]
  float* lnbs = lnws + kC1;                // [C1]
  float* b2s = lnbs + kC1;                 // [C2]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int b = blockIdx.y, HW = h * w, pix0 = blockIdx.x * kMhP;
  const int npix = min(kMhP, HW - pix0);
  const T* srcb = src + (static_cast<int64_t>(b) * HW + pix0) * C;

  for (int i = tid; i < kMhP * C; i += kMhThreads) {
    const int p = i / C, c = i - p * C;
    srcs[c * kMhP + p] = p < npix ? to_f(srcb[static_cast<int64_t>(p) * C + c]) : 0.f;
  }
  for (int i = tid; i < kC1 * kC2 * 4; i += kMhThreads) {  // w2 flat: (c1 * C2 + c2) * 4 + e
    const int e = i & 3, cc = i >> 2;
    w2s[e * kW2E + cc] = to_f(w2[i]);
  }
  for (int i = tid; i < M * kC2; i += kMhThreads) hyp[i] = to_f(hyper_in[static_cast<int64_t>(b) * M * kC2 + i]);
  if (tid < kC1) {
    b1s[tid] = to_f(b1[tid]);
    lnws[tid] = to_f(ln_w[tid]);
    lnbs[tid] = to_f(ln_b[tid]);
  }
  if (tid < kC2) b2s[tid] = to_f(b2[tid]);
  __syncthreads();

  // Stage 1: t[p][s][c1] = b1[c1] + sum_c src[p][c] * w1[c][c1][s], thread = column c1 * 4 + s.
  {
    float acc[kMhP];
#pragma unroll
    for (int p = 0; p < kMhP; ++p) acc[p] = 0.f;
    const T* wcol = w1 + tid;
#pragma unroll 4
    for (int c = 0; c < C; ++c) {
      const float wv = to_f(wcol[static_cast<int64_t>(c) * (kC1 * 4)]);
      const float4* xs = reinterpret_cast<const float4*>(srcs + c * kMhP);
#pragma unroll
      for (int q = 0; q < kMhP / 4; ++q) {
        const float4 x = xs[q];
        acc[4 * q + 0] = fmaf(x.x, wv, acc[4 * q + 0]);
        acc[4 * q + 1] = fmaf(x.y, wv, acc[4 * q + 1]);
        acc[4 * q + 2] = fmaf(x.z, wv, acc[4 * q + 2]);
        acc[4 * q + 3] = fmaf(x.w, wv, acc[4 * q + 3]);
      }
    }
    const int c1 = tid >> 2, s = tid & 3;
#pragma unroll
    for (int p = 0; p < kMhP; ++p) ts[(p * 4 + s) * kTS + c1] = acc[p] + b1s[c1];
  }
  __syncthreads();

  // Stage 2: LayerNorm over C1 (biased variance, eps 1e-6) + GELU; one warp per (pixel, s) row.
  for (int r = warp; r < kMhP * 4; r += kMhThreads / 32) {
    float* row = ts + r * kTS;
    const float x0 = row[lane], x1 = row[lane + 32];
    const float mean = warp_sum(x0 + x1) * (1.f / kC1);
    const float d0 = x0 - mean, d1 = x1 - mean;
    const float rstd = rsqrtf(warp_sum(d0 * d0 + d1 * d1) * (1.f / kC1) + 1e-6f);
    row[lane] = gelu_erf(fmaf(d0 * rstd, lnws[lane], lnbs[lane]));
    row[lane + 32] = gelu_erf(fmaf(d1 * rstd, lnws[lane + 32], lnbs[lane + 32]));
  }
  __syncthreads();

  // Stage 3: thread = (pixel p, s = dy*2+dx, e = ey*2+ex): u[c2] = GELU(b2 + sum_c1 t[c1] w2[c1][c2][e]),
  // then out[m] = hyper_in[b, m] . u at (4y + 2dy + ey, 4x + 2dx + ex).
  const int p = tid >> 4, s = (tid >> 2) & 3, e = tid & 3;
  float u[kC2];
#pragma unroll
  for (int c2 = 0; c2 < kC2; ++c2) u[c2] = b2s[c2];
  const float* trow = ts + (p * 4 + s) * kTS;
  const float* w2e = w2s + e * kW2E;
#pragma unroll 2
  for (int c1 = 0; c1 < kC1; ++c1) {
    const float tv = trow[c1];
    const float4* wr = reinterpret_cast<const float4*>(w2e + c1 * kC2);
#pragma unroll
    for (int q = 0; q < kC2 / 4; ++q) {
      const float4 wv = wr[q];
      u[4 * q + 0] = fmaf(tv, wv.x, u[4 * q + 0]);
      u[4 * q + 1] = fmaf(tv, wv.y, u[4 * q + 1]);
      u[4 * q + 2] = fmaf(tv, wv.z, u[4 * q + 2]);
      u[4 * q + 3] = fmaf(tv, wv.w, u[4 * q + 3]);
    }
  }
#pragma unroll
  for (int c2 = 0; c2 < kC2; ++c2) u[c2] = gelu_erf(u[c2]);
  if (p >= npix) return;  // no barrier below
  const int pix = pix0 + p, y = pix / w, x = pix - y * w;
  const int64_t oy = 4 * static_cast<int64_t>(y) + 2 * (s >> 1) + (e >> 1);
  const int64_t ox = 4 * static_cast<int64_t>(x) + 2 * (s & 1) + (e & 1);
  const int64_t OH = 4 * static_cast<int64_t>(h), OW = 4 * static_cast<int64_t>(w);
  T* outp = out + (static_cast<int64_t>(b) * M * OH + oy) * OW + ox;
  for (int m = 0; m < M; ++m) {
    const float* hm = hyp + m * kC2;
    float acc = 0.f;
#pragma unroll
    for (int c2 = 0; c2 < kC2; ++c2) acc = fmaf(hm[c2], u[c2], acc);
    outp[static_cast<int64_t>(m) * OH * OW] = from_f<T>(acc);
  }
}

// ---- hypernetwork MLPs: CTA = (mask token m, up to kHbRows batch rows); warp per output feature ----
constexpr int kHbThreads = 256, kHbRows = 8;

// dst[r * dst_stride + j] = act(bias[j] + W[j, :] . in[r, :]) for rows r < nb, j < rows; warp per j,
// lanes over the input features (coalesced W rows), then a warp reduction per batch row.
template <typename T, typename D>
__device__ __forceinline__ void linear_rows(const float* in, const T* W, const T* bias, int rows, int C, bool relu,
                                            int nb, D* dst, int64_t dst_stride) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int j = warp; j < rows; j += kHbThreads / 32) {
    float acc[kHbRows];
#pragma unroll
    for (int r = 0; r < kHbRows; ++r) acc[r] = 0.f;
    const T* wr = W + static_cast<int64_t>(j) * C;
    for (int i = lane; i < C; i += 32) {
      const float wv = to_f(wr[i]);
#pragma unroll
      for (int r = 0; r < kHbRows; ++r) acc[r] = fmaf(wv, in[r * C + i], acc[r]);
    }
    const float bj = to_f(bias[j]);
    float mine = 0.f;  // lane r keeps row r's result
#pragma unroll
    for (int r = 0; r < kHbRows; ++r) {
      const float v = warp_sum(acc[r]) + bj;
      if (lane == r) mine = relu ? fmaxf(v, 0.f) : v;
    }
    if (lane < nb) dst[lane * dst_stride + j] = from_f<D>(mine);
  }
}

template <typename T>
__global__ void __launch_bounds__(kHbThreads)
    hypernet_kernel(const T* __restrict__ tokens,  // [B, M, C]
                    const T* __restrict__ w0,      // [M, C, C]
                    const T* __restrict__ b0,      // [M, C]
                    const T* __restrict__ w1,      // [M, C, C]
                    const T* __restrict__ b1,      // [M, C]
                    const T* __restrict__ w2,      // [M, C2, C]
                    const T* __restrict__ b2,      // [M, C2]
                    T* __restrict__ out,           // [B, M, C2]
                    int B, int M, int C, int C2) {
  extern __shared__ __align__(16) float hs_sm[];
  float* xs = hs_sm;              // [kHbRows][C]
  float* hs = xs + kHbRows * C;   // [kHbRows][C]
  const int m = blockIdx.x, r0 = blockIdx.y * kHbRows, nb = min(kHbRows, B - r0);
  for (int i = threadIdx.x; i < kHbRows * C; i += kHbThreads) {
    const int r = i / C, c = i - r * C;
    xs[i] = r < nb ? to_f(tokens[(static_cast<int64_t>(r0 + r) * M + m) * C + c]) : 0.f;
  }
  __syncthreads();
  const int64_t mCC = static_cast<int64_t>(m) * C * C;
  // hidden layers fill all kHbRows smem rows (rows >= nb from zero inputs) so nothing reads stale smem
  linear_rows<T, float>(xs, w0 + mCC, b0 + static_cast<int64_t>(m) * C, C, C, true, kHbRows, hs, C);
  __syncthreads();
  linear_rows<T, float>(hs, w1 + mCC, b1 + static_cast<int64_t>(m) * C, C, C, true, kHbRows, xs, C);
  __syncthreads();
  // out[r0 + r, m, j]: rows of out for consecutive batch entries are M * C2 apart
  linear_rows<T, T>(xs, w2 + static_cast<int64_t>(m) * C2 * C, b2 + static_cast<int64_t>(m) * C2, C2, C, false, nb,
                    out + (static_cast<int64_t>(r0) * M + m) * C2, static_cast<int64_t>(M) * C2);
}

}  // namespace

void mask_head(const void* src, const void* w1, const void* b1, const void* ln_w, const void* ln_b, const void* w2,
               const void* b2, const void* hyper_in, void* out, int64_t B, int64_t h, int64_t w, int64_t C,
               int64_t C1, int64_t C2, int64_t M, Dt dt, void* stream) {
  if (C1 != kC1 || C2 != kC2)
    throw std::runtime_error("samfast CUDA mask_head: needs C1 == 64 and C2 == 32 (SAM), got C1 = " +
                             std::to_string(C1) + ", C2 = " + std::to_string(C2));
  if (B == 0 || h == 0 || w == 0 || M == 0) return;
  if (B > 65535 || h * w > (int64_t(1) << 30) || C > (1 << 20) || M > (1 << 20) || C == 0)
    throw std::runtime_error("samfast CUDA mask_head: sizes out of range for one launch");
  const size_t smem = mh_smem_floats(C, M) * sizeof(float);
  const dim3 grid(ceil_div_u(h * w, kMhP), static_cast<unsigned>(B));
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  dispatch_dt(dt, [&](auto tag) {
    using T = decltype(tag);
    set_smem(mask_head_kernel<T>, smem, "mask_head");
    mask_head_kernel<T><<<grid, kMhThreads, smem, st>>>(
        static_cast<const T*>(src), static_cast<const T*>(w1), static_cast<const T*>(b1),
        static_cast<const T*>(ln_w), static_cast<const T*>(ln_b), static_cast<const T*>(w2),
        static_cast<const T*>(b2), static_cast<const T*>(hyper_in), static_cast<T*>(out), static_cast<int>(h),
        static_cast<int>(w), static_cast<int>(C), static_cast<int>(M));
  });
  check_launch("mask_head");
}

void hypernet_mlps(const void* tokens, const void* w0, const void* b0, const void* w1, const void* b1, const void* w2,
                   const void* b2, void* out, int64_t B, int64_t M, int64_t C, int64_t C2, Dt dt, void* stream) {
  if (B == 0 || M == 0 || C2 == 0) return;
  if (M > (int64_t(1) << 30) || (B + kHbRows - 1) / kHbRows > 65535 || C > (1 << 16) || C2 > (1 << 20) || C == 0)
    throw std::runtime_error("samfast CUDA hypernet_mlps: sizes out of range for one launch");
  const size_t smem = sizeof(float) * 2 * kHbRows * static_cast<size_t>(C);
  const dim3 grid(static_cast<unsigned>(M), ceil_div_u(B, kHbRows));
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  dispatch_dt(dt, [&](auto tag) {
    using T = decltype(tag);
    set_smem(hypernet_kernel<T>, smem, "hypernet_mlps");
    hypernet_kernel<T><<<grid, kHbThreads, smem, st>>>(
        static_cast<const T*>(tokens), static_cast<const T*>(w0), static_cast<const T*>(b0),
        static_cast<const T*>(w1), static_cast<const T*>(b1), static_cast<const T*>(w2), static_cast<const T*>(b2),
        static_cast<T*>(out), static_cast<int>(B), static_cast<int>(M), static_cast<int>(C), static_cast<int>(C2));
  });
  check_launch("hypernet_mlps");
}

}  // namespace samfast::cuda
