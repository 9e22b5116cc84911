// Shared helpers of samfast's .cu files: dtype conversion, dispatch, launch checks.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels.h"

namespace samfast::cuda {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

// Butterfly reductions over a full warp (float or int); every lane gets the result.
template <typename V>
__device__ __forceinline__ V warp_sum(V v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename V>
__device__ __forceinline__ V warp_max(V v) {  // float: fmaxf semantics
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <typename V>
__device__ __forceinline__ V warp_min(V v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("samfast CUDA ") + what + ": " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
}

inline void check_call(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // do not leave a non-sticky error behind for the next launch check
    throw std::runtime_error(std::string("samfast CUDA ") + what + ": " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
  }
}

// Raises `kernel`'s dynamic shared-memory limit to `bytes` when above the default 48 KiB; throws if the
// device cannot give that much.
template <typename K> inline void set_smem(K kernel, size_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return;
  int dev = 0, max_optin = 0;
  check_call(cudaGetDevice(&dev), what);
  check_call(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), what);
  if (bytes > static_cast<size_t>(max_optin))
    throw std::runtime_error(std::string("samfast CUDA ") + what + ": needs " + std::to_string(bytes) +
                             " bytes of shared memory per block, the device allows " + std::to_string(max_optin));
  check_call(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
             what);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Calls f(T{}) with T = float / __half / __nv_bfloat16 for dt.
template <typename F> inline void dispatch_dt(Dt dt, F&& f) {
  switch (dt) {
    case Dt::F32: f(float{}); break;
    case Dt::F16: f(__half{}); break;
    case Dt::BF16: f(__nv_bfloat16{}); break;
    default: throw std::runtime_error("samfast CUDA: unsupported dtype code");
  }
}

inline unsigned ceil_div_u(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace samfast::cuda
