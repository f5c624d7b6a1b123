// fastnn._core bindings for the preprocessing kernels (marshalling only): check dtype,
// shape and layout with the GIL held, naming the argument; release the GIL around the
// kernel. fastnn.preprocessing validates and converts first; these checks are the last
// line of defence for anyone calling _core directly.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "dispatch.hpp"
#include "threading.hpp"
#include "workspace.hpp"

namespace py = pybind11;

namespace fastnn {
namespace {

bool is_f64(const py::handle& obj) { return py::isinstance<py::array_t<double>>(obj); }

// x as a C-contiguous 2-D array of exactly T (the caller dispatches on the dtype).
template <typename T>
py::array checked_2d(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array_t<T>>(obj))
    throw py::type_error(std::string(name) + " must be a numpy array of dtype float32 or float64");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D (n_samples, n_features)");
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  return a;
}

// An input read through a T*: a C-contiguous array may still sit at an address that is not
// a multiple of sizeof(T) (a view into a byte buffer, as dask/pickle-5 deserialisation
// hands over), and reading it through a T* is undefined behaviour (UBSan: "load of
// misaligned address"). Such an input is read from an aligned copy instead.
template <typename T>
py::array checked_input_2d(const py::handle& obj, const char* name) {
  auto a = checked_2d<T>(obj, name);
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    a = py::array_t<T, py::array::c_style>(std::vector<py::ssize_t>{a.shape(0), a.shape(1)},
                                            static_cast<const T*>(a.data()));  // copies the bytes
  return a;
}

// An optional per-column float64 vector of length c (None -> null).
const double* column_vector(const py::object& obj, const char* name, index_t c) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<py::array_t<double>>(obj))
    throw py::type_error(std::string(name) + " must be a float64 numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (a.ndim() != 1 || a.shape(0) != c || !(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be a C-contiguous array of shape (" + std::to_string(c) + ",)");
  return static_cast<const double*>(a.data());
}

template <typename T>
T* checked_out(const py::handle& obj, const char* name, index_t n, index_t c) {
  auto a = checked_2d<T>(obj, name);
  if (a.shape(0) != n || a.shape(1) != c)
    throw py::value_error(std::string(name) + " must have the shape of x");
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only but is written to");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))  // written in place: cannot copy
    throw py::value_error(std::string(name) + " must be aligned to its dtype (it is written in place)");
  return static_cast<T*>(a.mutable_data());
}

int elementwise_threads(index_t n, index_t c) { return threads_for(double(n) * double(c), kElementsPerThread); }

// The result of scaler_column_stats: named fields, None where not computed.
struct ColumnStats {
  py::object count, sum, m2, min, max, shift;
};

// An optional float64 vector of length len that the kernel writes (in/out).
double* inout_vector(const py::object& obj, const char* name, index_t len) {
  if (!py::isinstance<py::array_t<double>>(obj))
    throw py::type_error(std::string(name) + " must be a float64 numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (a.ndim() != 1 || a.shape(0) != len || !(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be a C-contiguous array of shape (" + std::to_string(len) + ",)");
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only but is written to");
  return static_cast<double*>(a.mutable_data());
}

template <typename T>
ColumnStats column_stats_typed(const py::handle& x, bool moments, bool extrema, const py::object& shift,
                               const py::object& weights) {
  auto a = checked_input_2d<T>(x, "x");
  ColumnStatsArgs<T> s;
  s.n = a.shape(0);
  s.c = a.shape(1);
  s.x = static_cast<const T*>(a.data());
  s.moments = moments;
  s.extrema = extrema;
  ColumnStats r;
  r.count = r.sum = r.m2 = r.min = r.max = r.shift = py::none();
  if (!weights.is_none()) {
    if (!moments) throw py::value_error("weights need moments=True");
    s.w = column_vector(weights, "weights", s.n);
  }
  if (moments) {
    if (shift.is_none()) {
      py::array_t<double> k(s.c);
      std::fill(k.mutable_data(), k.mutable_data() + s.c, std::numeric_limits<double>::quiet_NaN());
      r.shift = k;
    } else {
      r.shift = shift;
    }
    s.shift = inout_vector(r.shift, "shift", s.c);
    py::array_t<double> count(s.c), sum(s.c), m2(s.c);
    s.count = count.mutable_data();
    s.sum = sum.mutable_data();
    s.m2 = m2.mutable_data();
    r.count = count;
    r.sum = sum;
    r.m2 = m2;
  }
  if (extrema) {
    py::array_t<double> mn(s.c), mx(s.c);
    s.min = mn.mutable_data();
    s.max = mx.mutable_data();
    r.min = mn;
    r.max = mx;
  }
  s.nthreads = elementwise_threads(s.n, s.c);
  const auto& k = kernels().of<T>();
  {
    py::gil_scoped_release release;
    k.scaler.column_stats(s);
  }
  return r;
}

ColumnStats column_stats(const py::object& x, bool moments, bool extrema, const py::object& shift,
                         const py::object& weights) {
  return is_f64(x) ? column_stats_typed<double>(x, moments, extrema, shift, weights)
                   : column_stats_typed<float>(x, moments, extrema, shift, weights);
}

template <typename T>
index_t affine_typed(const py::handle& x, const py::handle& out, const py::object& shift, const py::object& scale,
                     const py::object& offset, const py::object& lo, const py::object& hi) {
  auto a = checked_input_2d<T>(x, "x");
  AffineArgs<T> t;
  t.n = a.shape(0);
  t.c = a.shape(1);
  t.x = static_cast<const T*>(a.data());
  t.y = checked_out<T>(out, "out", t.n, t.c);
  t.shift = column_vector(shift, "shift", t.c);
  t.scale = column_vector(scale, "scale", t.c);
  t.offset = column_vector(offset, "offset", t.c);
  t.lo = column_vector(lo, "lo", t.c);
  t.hi = column_vector(hi, "hi", t.c);
  if (!t.lo != !t.hi) throw py::value_error("pass both lo and hi, or neither");
  const auto x0 = reinterpret_cast<std::uintptr_t>(t.x), y0 = reinterpret_cast<std::uintptr_t>(t.y);
  const auto bytes = std::uintptr_t(t.n * t.c) * sizeof(T);
  if (x0 != y0 && x0 < y0 + bytes && y0 < x0 + bytes)
    throw py::value_error("out overlaps x without being x: pass x itself (in place) or a separate array");
  t.nthreads = elementwise_threads(t.n, t.c);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  return k.scaler.affine(t);
}

index_t affine(const py::object& x, const py::object& out, const py::object& shift, const py::object& scale,
               const py::object& offset, const py::object& lo, const py::object& hi) {
  return is_f64(x) ? affine_typed<double>(x, out, shift, scale, offset, lo, hi)
                   : affine_typed<float>(x, out, shift, scale, offset, lo, hi);
}

template <typename T>
index_t log_offset_typed(const py::handle& x, const py::handle& out, double offset) {
  auto a = checked_input_2d<T>(x, "x");
  LogArgs<T> t;
  t.n = a.shape(0);
  t.c = a.shape(1);
  t.x = static_cast<const T*>(a.data());
  t.y = checked_out<T>(out, "out", t.n, t.c);
  t.offset = offset;
  t.nthreads = threads_for(double(t.n) * double(t.c) * 8.0, kElementsPerThread);  // log costs ~8 flops
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  return k.scaler.log_offset(t);
}

index_t log_offset(const py::object& x, const py::object& out, double offset) {
  return is_f64(x) ? log_offset_typed<double>(x, out, offset) : log_offset_typed<float>(x, out, offset);
}

template <typename T>
py::array_t<double> column_quantiles_typed(const py::handle& x, const py::object& q) {
  auto a = checked_input_2d<T>(x, "x");
  QuantileArgs<T> t;
  t.n = a.shape(0);
  t.c = a.shape(1);
  t.x = static_cast<const T*>(a.data());
  if (!py::isinstance<py::array_t<double>>(q)) throw py::type_error("q must be a float64 numpy array");
  auto qa = py::reinterpret_borrow<py::array>(q);
  if (qa.ndim() != 1 || !(qa.flags() & py::array::c_style)) throw py::value_error("q must be a C-contiguous 1-D array");
  t.nq = qa.shape(0);
  t.q = static_cast<const double*>(qa.data());
  for (index_t i = 0; i < t.nq; ++i)
    if (!(t.q[i] >= 0.0 && t.q[i] <= 1.0)) throw py::value_error("q must lie in [0, 1]");
  py::array_t<double> out({t.nq, t.c});
  t.out = out.mutable_data();
  t.nthreads = std::max(1, std::min<int>(threads_for(double(t.n) * double(t.c) * 4.0, kElementsPerThread),
                                         int(std::max<index_t>(1, t.c))));
  std::unique_ptr<double[]> work(new double[size_t(std::max<index_t>(1, t.n * t.nthreads))]);
  t.work = work.get();
  const auto& k = kernels().of<T>();
  {
    py::gil_scoped_release release;
    k.scaler.column_quantiles(t);
  }
  return out;
}

py::array_t<double> column_quantiles(const py::object& x, const py::object& q) {
  return is_f64(x) ? column_quantiles_typed<double>(x, q) : column_quantiles_typed<float>(x, q);
}

}  // namespace

void bind_preprocessing(py::module_& m) {
  py::class_<ColumnStats>(m, "ColumnStats", "Per-column statistics of scaler_column_stats (float64 arrays or None).")
      .def_readonly("count", &ColumnStats::count, "(C) weight of the non-NaN values (moments)")
      .def_readonly("sum", &ColumnStats::sum, "(C) sum of w * (x - shift) over the non-NaN values (moments)")
      .def_readonly("m2", &ColumnStats::m2, "(C) sum of w * (x - mean)^2 (moments)")
      .def_readonly("min", &ColumnStats::min, "(C) minimum, +inf without values (extrema)")
      .def_readonly("max", &ColumnStats::max, "(C) maximum, -inf without values (extrema)")
      .def_readonly("shift", &ColumnStats::shift, "(C) the shifts used (moments): the array passed in, filled");
  m.def("scaler_column_stats", &column_stats, py::arg("x"), py::arg("moments") = true, py::arg("extrema") = true,
        py::arg("shift") = py::none(), py::arg("weights") = py::none(),
        "ColumnStats of x (N, C), NaN ignored, float64; identical for any thread count. Moments are taken "
        "about shift (C), whose NaN entries (all of them when None) become the column's first non-NaN value; "
        "the mean is shift + sum / count. weights (N): sample weights (finite, >= 0).");
  m.def("scaler_affine", &affine, py::arg("x"), py::arg("out"), py::arg("shift") = py::none(),
        py::arg("scale") = py::none(), py::arg("offset") = py::none(), py::arg("lo") = py::none(),
        py::arg("hi") = py::none(),
        "out = (x - shift) * scale + offset per column (float64 vectors, None = identity), then clipped to "
        "[lo, hi] when given; out may be x (then x is untouched on error). Returns -1, or the flat index of the "
        "first element whose result is infinite in x's dtype (an infinite x, or an overflow).");
  m.def("scaler_log", &log_offset, py::arg("x"), py::arg("out"), py::arg("offset"),
        "out = log(x + offset); returns -1 or the flat index of the first x with x + offset <= 0.");
  m.def("scaler_quantiles", &column_quantiles, py::arg("x"), py::arg("q"),
        "Exact per-column quantiles (Q, C) of the non-NaN values of x, q in [0, 1], NumPy's linear method.");
}

}  // namespace fastnn
