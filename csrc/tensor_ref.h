// A borrowed view of a tensor owned by Python (torch / numpy): raw pointer + shape + strides + dtype.
// samfast._C never links against PyTorch's C++ ABI; python/samfast/ops.py builds these from tensors.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace samfast {

enum class DType { Float32, Float16, BFloat16, Float64, Int32, Int64, UInt8, Bool };

DType parse_dtype(const std::string& name);  // "float32", "bfloat16", ... (torch names)
const char* dtype_name(DType d);
int64_t dtype_size(DType d);

struct TensorRef {
  uintptr_t ptr = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  DType dtype = DType::Float32;
  int device = -1;  // -1: CPU, >= 0: CUDA device index

  int64_t dim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size(int64_t i) const { return shape.at(i < 0 ? i + dim() : i); }
  int64_t numel() const;
  bool is_contiguous() const;
  bool is_cuda() const { return device >= 0; }
  template <typename T> T* data() const { return reinterpret_cast<T*>(ptr); }
};

// Errors surface in Python as ValueError (shape/contiguity/device) or TypeError (dtype).
struct ShapeError : std::invalid_argument { using std::invalid_argument::invalid_argument; };
struct DTypeError : std::invalid_argument { using std::invalid_argument::invalid_argument; };

std::string shape_str(const std::vector<int64_t>& shape);

// Checks `t` (called `name` in messages): rank and sizes (-1 = any), dtype set, contiguity, device.
void check_tensor(const TensorRef& t, const char* name, const std::vector<int64_t>& expected_shape,
                  const std::vector<DType>& dtypes, bool require_contiguous = true);
void check_same_device(const std::vector<std::pair<const TensorRef*, const char*>>& tensors);
void check_device(const TensorRef& t, const char* name, bool want_cuda);

}  // namespace samfast
