#include "cpu/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace samfast {

std::string CpuFeatures::best() const {
  if (avx512bf16) return "avx512bf16";
  if (avx512f) return "avx512f";
  if (avx2 && fma) return "avx2+fma";
  if (neon) return "neon";
  return "baseline";
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures r;
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    r.avx2 = __builtin_cpu_supports("avx2");
    r.fma = __builtin_cpu_supports("fma");
    r.f16c = __builtin_cpu_supports("f16c");
    r.avx512f = __builtin_cpu_supports("avx512f");
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    r.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
#elif defined(__aarch64__)
    r.neon = true;
#endif
    return r;
  }();
  return f;
}

static int simd_cap() {
  const char* env = std::getenv("SAMFAST_SIMD");
  if (!env) return 3;
  if (!std::strcmp(env, "baseline")) return 0;
  if (!std::strcmp(env, "avx2")) return 1;
  return 3;
}

bool use_avx2() { return simd_cap() >= 1 && cpu_features().avx2 && cpu_features().fma; }
bool use_avx512() { return simd_cap() >= 2 && cpu_features().avx512f; }

}  // namespace samfast
