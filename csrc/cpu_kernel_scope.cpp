// samfast's CPU thread count (see cpu_kernel_scope.h).
#include "cpu_kernel_scope.h"

#include <atomic>

#ifdef SAMFAST_WITH_OPENMP
#include <omp.h>
#endif

namespace samfast {
namespace {

std::atomic<int> g_cpu_threads{0};

#ifdef SAMFAST_WITH_OPENMP
int omp_default_threads() {  // OpenMP's default (OMP_NUM_THREADS or the cores), read before any change
  static const int n = omp_get_max_threads();
  return n;
}
#endif

}  // namespace

void set_cpu_threads(int n) { g_cpu_threads.store(n > 0 ? n : 0); }

int cpu_threads() { return g_cpu_threads.load(); }

void apply_cpu_threads() {
#ifdef SAMFAST_WITH_OPENMP
  const int n = g_cpu_threads.load();
  omp_set_num_threads(n > 0 ? n : omp_default_threads());
#endif
}

}  // namespace samfast
