// Each op's binding file registers itself, so adding an op never edits bindings.cpp:
//   static void bind(pybind11::module_& m) { m.def("my_op", ...); }
//   SAMFAST_REGISTER_OPS(my_op, bind)
#pragma once
#include <pybind11/pybind11.h>

#include <functional>
#include <string>
#include <vector>

namespace samfast {

using BindFn = void (*)(pybind11::module_&);

struct OpRegistration {
  std::string name;
  BindFn bind;
};

std::vector<OpRegistration>& op_registry();

struct OpRegistrar {
  OpRegistrar(const char* name, BindFn fn) { op_registry().push_back({name, fn}); }
};

}  // namespace samfast

#define SAMFAST_REGISTER_OPS(name, fn) static ::samfast::OpRegistrar samfast_registrar_##name(#name, fn);
