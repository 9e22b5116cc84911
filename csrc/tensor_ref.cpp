#include "tensor_ref.h"

#include <sstream>

namespace samfast {

DType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "float") return DType::Float32;
  if (name == "float16" || name == "half") return DType::Float16;
  if (name == "bfloat16") return DType::BFloat16;
  if (name == "float64" || name == "double") return DType::Float64;
  if (name == "int32" || name == "int") return DType::Int32;
  if (name == "int64" || name == "long") return DType::Int64;
  if (name == "uint8") return DType::UInt8;
  if (name == "bool") return DType::Bool;
  throw DTypeError("unsupported dtype '" + name + "'");
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float64: return "float64";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::Bool: return "bool";
  }
  return "?";
}

int64_t dtype_size(DType d) {
  switch (d) {
    case DType::Float64: case DType::Int64: return 8;
    case DType::Float32: case DType::Int32: return 4;
    case DType::Float16: case DType::BFloat16: return 2;
    default: return 1;
  }
}

int64_t TensorRef::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

bool TensorRef::is_contiguous() const {
  if (strides.size() != shape.size()) return false;
  for (int64_t s : shape)
    if (s == 0) return true;  // no elements: any strides (torch's for [B, 0, 2] are [2, 2, 1])
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) os << ", ";
    if (shape[i] < 0) os << "*"; else os << shape[i];
  }
  os << "]";
  return os.str();
}

void check_tensor(const TensorRef& t, const char* name, const std::vector<int64_t>& expected_shape,
                  const std::vector<DType>& dtypes, bool require_contiguous) {
  bool ok_dtype = false;
  for (DType d : dtypes) ok_dtype |= (d == t.dtype);
  if (!ok_dtype) {
    std::string want;
    for (size_t i = 0; i < dtypes.size(); ++i) want += (i ? " or " : "") + std::string(dtype_name(dtypes[i]));
    throw DTypeError(std::string(name) + ": expected dtype " + want + ", got " + dtype_name(t.dtype));
  }
  bool ok_shape = t.shape.size() == expected_shape.size();
  for (size_t i = 0; ok_shape && i < expected_shape.size(); ++i)
    ok_shape = expected_shape[i] < 0 || expected_shape[i] == t.shape[i];
  if (!ok_shape)
    throw ShapeError(std::string(name) + ": expected shape " + shape_str(expected_shape) + ", got " +
                     shape_str(t.shape));
  for (int64_t s : t.shape)
    if (s < 0) throw ShapeError(std::string(name) + ": negative size in " + shape_str(t.shape));
  if (t.numel() > 0 && t.ptr == 0) throw ShapeError(std::string(name) + ": null data pointer");
  if (require_contiguous && !t.is_contiguous())
    throw ShapeError(std::string(name) + ": must be contiguous (call .contiguous()), got strides " +
                     shape_str(t.strides));
}

void check_device(const TensorRef& t, const char* name, bool want_cuda) {
  if (t.is_cuda() != want_cuda)
    throw ShapeError(std::string(name) + ": expected a " + (want_cuda ? "CUDA" : "CPU") + " tensor");
}

void check_same_device(const std::vector<std::pair<const TensorRef*, const char*>>& tensors) {
  if (tensors.empty()) return;
  const TensorRef* first = tensors[0].first;
  for (auto& [t, name] : tensors)
    if (t->device != first->device)
      throw ShapeError(std::string(name) + ": on device " + std::to_string(t->device) + " but " +
                       tensors[0].second + " is on device " + std::to_string(first->device));
}

}  // namespace samfast
