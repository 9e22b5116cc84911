// Host-side helpers shared by the CUDA binding files (compiled by the host C++ compiler, CUDA builds only).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../tensor_ref.h"

namespace samfast::cuda {

inline void* ptr(const TensorRef& t) { return reinterpret_cast<void*>(t.ptr); }
inline void* as_stream(uintptr_t s) { return reinterpret_cast<void*>(s); }

// Every tensor on a CUDA device, all on the same one.
inline void check_cuda(const std::vector<std::pair<const TensorRef*, const char*>>& ts) {
  for (auto& [t, name] : ts) check_device(*t, name, /*want_cuda=*/true);
  check_same_device(ts);
}

// Sets the current device for the scope of a launch, restoring the caller's on exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int dev) {
    if (cudaGetDevice(&prev_) != cudaSuccess) prev_ = -1;
    if (prev_ != dev) {
      cudaError_t e = cudaSetDevice(dev);
      if (e != cudaSuccess) {
        cudaGetLastError();
        throw std::runtime_error(std::string("samfast CUDA: cudaSetDevice(") + std::to_string(dev) +
                                 "): " + cudaGetErrorString(e));
      }
      set_ = true;
    }
  }
  ~DeviceGuard() {
    if (set_ && prev_ >= 0) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
  bool set_ = false;
};

}  // namespace samfast::cuda
