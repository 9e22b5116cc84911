# Kernels are compiled for a portable baseline; hot files add per-function
# `__attribute__((target("avx2,fma")))` and `target("avx512f,avx2,fma")` variants picked at run time
# (csrc/cpu/cpu_features.h; SAMFAST_SIMD=baseline|avx2 caps the level).
# No -march=native: a wheel built here must run on any x86-64 (or aarch64) CPU.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(SAMFAST_SIMD_TARGETS "baseline, avx2+fma, avx512f (runtime dispatch)")
else()
  set(SAMFAST_SIMD_TARGETS "baseline (${CMAKE_SYSTEM_PROCESSOR})")
endif()
