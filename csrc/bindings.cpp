// samfast._C: the compiled half of samfast. Build info + every op that registered itself.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cpu/cpu_features.h"
#include "cpu_kernel_scope.h"
#include "op_registry.h"
#include "tensor_ref.h"

#ifdef SAMFAST_WITH_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using namespace samfast;

std::vector<OpRegistration>& samfast::op_registry() {
  static std::vector<OpRegistration> registry;
  return registry;
}

#ifdef SAMFAST_WITH_CUDA
namespace samfast::cuda {
int device_count();  // csrc/cuda/cuda_runtime_info.cpp
std::string runtime_version();
}  // namespace samfast::cuda
#endif

static py::dict build_info() {
  py::dict d;
  d["version"] = "0.1.0";
  d["compiler"] = SAMFAST_COMPILER;
  d["cxx_flags"] = SAMFAST_CXX_FLAGS;
  d["build_type"] = SAMFAST_BUILD_TYPE;
  d["cxx_standard"] = 17;
#ifdef SAMFAST_WITH_OPENMP
  d["openmp"] = true;
  d["openmp_version"] = _OPENMP;
  d["omp_max_threads"] = omp_get_max_threads();
#else
  d["openmp"] = false;
#endif
  d["simd_compiled"] = SAMFAST_SIMD_TARGETS;
  d["simd_runtime"] = cpu_features().best();
#ifdef SAMFAST_WITH_CUDA
  d["cuda"] = true;
  d["cuda_archs"] = SAMFAST_CUDA_ARCHS_STR;
  d["cuda_version"] = SAMFAST_CUDA_VERSION_STR;
#else
  d["cuda"] = false;
  d["cuda_archs"] = "";
#endif
  py::list ops;
  for (auto& r : op_registry()) ops.append(r.name);
  d["op_groups"] = ops;
  return d;
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "samfast compiled kernels (raw pointers + shapes; see samfast.ops)";
  py::register_local_exception<ShapeError>(m, "ShapeError", PyExc_ValueError);
  py::register_local_exception<DTypeError>(m, "DTypeError", PyExc_TypeError);

  py::class_<TensorRef>(m, "TensorRef")
      .def(py::init([](uintptr_t ptr, std::vector<int64_t> shape, std::vector<int64_t> strides,
                       const std::string& dtype, int device) {
             TensorRef t;
             t.ptr = ptr;
             t.shape = std::move(shape);
             t.strides = std::move(strides);
             t.dtype = parse_dtype(dtype);
             t.device = device;
             if (t.strides.size() != t.shape.size()) throw ShapeError("strides and shape differ in rank");
             return t;
           }),
           py::arg("ptr"), py::arg("shape"), py::arg("strides"), py::arg("dtype"), py::arg("device") = -1)
      .def_readonly("shape", &TensorRef::shape)
      .def_readonly("strides", &TensorRef::strides)
      .def_property_readonly("dtype", [](const TensorRef& t) { return dtype_name(t.dtype); })
      .def_readonly("device", &TensorRef::device);

  m.def("build_info", &build_info, "How this module was built: compiler, flags, OpenMP, SIMD, CUDA.");
  m.def("cpu_features", [] {
    auto& f = cpu_features();
    py::dict d;
    d["avx2"] = f.avx2; d["fma"] = f.fma; d["f16c"] = f.f16c; d["avx512f"] = f.avx512f;
    d["avx512bf16"] = f.avx512bf16; d["neon"] = f.neon; d["best"] = f.best();
    return d;
  });
  m.def("set_num_threads", &set_cpu_threads, py::arg("n"),
        "Threads for samfast's CPU kernels (n <= 0: the OpenMP default), applied on every call.");
  m.def("get_num_threads", &cpu_threads, "samfast's CPU kernel thread count as set (0 = the OpenMP default).");
  m.def("kernel_threads", [] {
    CpuKernelScope scope;
#ifdef SAMFAST_WITH_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  }, "Threads a CPU kernel called from this Python thread gets now.");
  m.def("cuda_compiled", [] {
#ifdef SAMFAST_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
#ifdef SAMFAST_WITH_CUDA
  m.def("cuda_device_count", &samfast::cuda::device_count);
  m.def("cuda_runtime_version", &samfast::cuda::runtime_version);
#else
  m.def("cuda_device_count", [] { return 0; });
#endif
  for (auto& r : op_registry()) r.bind(m);
}
