// Run-time CPU feature detection: kernels pick their SIMD path here, never at build time.
#pragma once
#include <string>

namespace samfast {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false, avx512f = false, avx512bf16 = false, neon = false;
  std::string best() const;  // "avx512bf16" / "avx512f" / "avx2+fma" / "neon" / "baseline"
};

const CpuFeatures& cpu_features();

// SAMFAST_SIMD=baseline|avx2|avx512 caps the level (for testing each path); unset = best available.
bool use_avx2();
bool use_avx512();

}  // namespace samfast
