// Marshalling helpers shared by the binding files: check a NumPy array's dtype, shape,
// layout and writability with the GIL held (naming the argument), then hand out a raw
// pointer; and one float/double dispatcher for the typed entry points.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "common.hpp"

namespace fastnn {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline std::string shape_str(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The array behind `obj` as a T pointer, after checking it is an ndarray of exactly T,
// C-contiguous, of the given shape (-1 = any), and writeable when written to.
template <typename T>
T* checked(const py::handle& obj, const char* name, const std::vector<index_t>& shape, bool writes) {
  if (!py::isinstance<py::array_t<T>>(obj))
    throw py::type_error(std::string(name) + " must be a numpy array of dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))) +
                         (py::isinstance<py::array>(obj) ? " of dtype " + std::string(py::str(obj.attr("dtype"))) : ""));
  auto a = py::reinterpret_borrow<py::array>(obj);
  bool ok = a.ndim() == py::ssize_t(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(py::ssize_t(i)) == shape[i];
  if (!ok)
    throw py::value_error(std::string(name) + " must have shape " + shape_str(shape) + ", got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  if (writes && !a.writeable()) throw py::value_error(std::string(name) + " is read-only but is written to");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <typename T>
T* optional_checked(const py::object& obj, const char* name, const std::vector<index_t>& shape, bool writes) {
  return obj.is_none() ? nullptr : checked<T>(obj, name, shape, writes);
}

// The data of `obj` when it is exactly what a kernel reads in place (an ndarray, not a
// subclass, of dtype T, C-contiguous and aligned, with `ndim` dimensions), else null: the
// ops' fast paths take it and leave every other input to the Python path that converts it
// or names what is wrong with it.
template <typename T>
const T* plain(const py::handle& obj, int ndim) {
  if (!py::array::check_(obj) || Py_TYPE(obj.ptr()) != py::detail::npy_api::get().PyArray_Type_) return nullptr;
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (a.ndim() != ndim || !py::isinstance<py::array_t<T>>(obj)) return nullptr;
  constexpr int kNeeded = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if ((a.flags() & kNeeded) != kNeeded) return nullptr;
  return static_cast<const T*>(a.data());
}

inline index_t dim(const py::handle& obj, int axis) { return py::reinterpret_borrow<py::array>(obj).shape(axis); }

inline bool is_f64(const py::handle& obj) { return py::isinstance<py::array_t<double>>(obj); }

inline void require_1d(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj) || py::reinterpret_borrow<py::array>(obj).ndim() != 1)
    throw py::value_error(std::string(name) + " must be a 1-D numpy array");
}

inline void require_2d(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj) || py::reinterpret_borrow<py::array>(obj).ndim() != 2)
    throw py::value_error(std::string(name) + " must be a 2-D numpy array");
}

// ``f(float())`` or ``f(double())`` by the dtype of ``like``: one typed body for both.
template <typename F>
decltype(auto) with_float_type(const py::handle& like, F&& f) {
  return is_f64(like) ? f(double()) : f(float());
}

}  // namespace fastnn
