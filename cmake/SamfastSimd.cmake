# Kernels are compiled for a portable baseline; hot files add per-function
# `__attribute__((target("avx2,fma")))` variants picked at run time (csrc/cpu/cpu_features.h).
# No -march=native: a wheel built here must run on any x86-64 (or aarch64) CPU.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(SAMFAST_SIMD_TARGETS "baseline, avx2+fma (runtime dispatch)")
else()
  set(SAMFAST_SIMD_TARGETS "baseline (${CMAKE_SYSTEM_PROCESSOR})")
endif()
