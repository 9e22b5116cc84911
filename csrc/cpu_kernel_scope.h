// Entered by every CPU op binding around its kernel: releases the GIL and applies samfast's CPU thread
// count (_C.set_num_threads; 0 = the OpenMP default) to the calling thread. OpenMP's thread count is a
// per-thread setting and ops run on whichever Python thread calls them, so it is applied on every call.
#pragma once
#include <pybind11/pybind11.h>

namespace samfast {

void set_cpu_threads(int n);  // n <= 0: back to the OpenMP default
int cpu_threads();            // as set (0 = default)
void apply_cpu_threads();     // on the calling thread

struct CpuKernelScope {
  pybind11::gil_scoped_release nogil;
  CpuKernelScope() { apply_cpu_threads(); }
};

}  // namespace samfast
