// fastnn._core: marshalling only. Check dtype, shape, layout and writability with the GIL
// held (naming the argument), take raw pointers, release the GIL, call the kernel table.
// The Python layer (fastnn.ops) converts and validates first; these checks are the last
// line of defence for anyone calling _core directly.
#include <dlfcn.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "build_config.hpp"
#include "cpu.hpp"
#include "dispatch.hpp"
#include "threading.hpp"
#include "workspace.hpp"

namespace py = pybind11;

namespace fastnn {

void throw_invalid(const std::string& message) { throw std::invalid_argument(message); }

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string shape_str(const std::vector<index_t>& shape) {
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
                         (sizeof(T) == 4 ? "float32" : "float64") + ", got " +
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

index_t dim(const py::handle& obj, int axis) { return py::reinterpret_borrow<py::array>(obj).shape(axis); }

bool is_f64(const py::handle& obj) { return py::isinstance<py::array_t<double>>(obj); }

void require_2d(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj) || py::reinterpret_borrow<py::array>(obj).ndim() != 2)
    throw py::value_error(std::string(name) + " must be a 2-D numpy array");
}

// ---------------------------------------------------------------- GEMM (tests and benchmarks)

template <typename T>
void gemm_typed(const py::array& a, const py::array& b, const py::array& c, bool trans_a, bool trans_b,
                bool accumulate, int nthreads) {
  GemmArgs<T> g;
  const index_t a0 = dim(a, 0), a1 = dim(a, 1), b0 = dim(b, 0), b1 = dim(b, 1);
  g.m = trans_a ? a1 : a0;
  g.k = trans_a ? a0 : a1;
  g.n = trans_b ? b0 : b1;
  if ((trans_b ? b1 : b0) != g.k)
    throw py::value_error("gemm: inner dimensions differ: op(a) is " + shape_str({g.m, g.k}) + ", op(b) is " +
                          shape_str({trans_b ? b1 : b0, g.n}));
  g.a = checked<T>(a, "a", {a0, a1}, false);
  g.b = checked<T>(b, "b", {b0, b1}, false);
  g.c = checked<T>(c, "c", {g.m, g.n}, true);
  g.rsa = trans_a ? 1 : a1;
  g.csa = trans_a ? a1 : 1;
  g.rsb = trans_b ? 1 : b1;
  g.csb = trans_b ? b1 : 1;
  g.ldc = g.n;
  g.accumulate = accumulate;
  g.nthreads = nthreads > 0 ? nthreads : threads_for(2.0 * g.m * g.n * g.k, kGemmFlopsPerThread);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  k.gemm(g);
}

void gemm(const py::object& a, const py::object& b, const py::object& c, bool trans_a, bool trans_b,
          bool accumulate, int nthreads) {
  require_2d(a, "a");
  require_2d(b, "b");
  if (is_f64(a)) gemm_typed<double>(a, b, c, trans_a, trans_b, accumulate, nthreads);
  else gemm_typed<float>(a, b, c, trans_a, trans_b, accumulate, nthreads);
}

// ---------------------------------------------------------------- dense layer

template <typename T>
void dense_forward_typed(const py::object& x, const py::object& w, const py::object& b, const py::object& y,
                         const py::object& z, Activation act, double alpha, const py::object& slope) {
  GemmArgs<T> g;
  g.m = dim(x, 0);
  g.k = dim(x, 1);
  g.n = dim(w, 1);
  g.a = checked<T>(x, "x", {g.m, g.k}, false);
  g.b = checked<T>(w, "w", {g.k, g.n}, false);
  g.bias = optional_checked<T>(b, "b", {g.n}, false);
  g.c = checked<T>(y, "out", {g.m, g.n}, true);
  g.preact = optional_checked<T>(z, "preact_out", {g.m, g.n}, true);
  g.slope = optional_checked<T>(slope, "slope", {g.n}, false);
  if (act == Activation::prelu && !g.slope) throw py::value_error("activation='prelu' needs slope (out_features,)");
  g.rsa = g.k;
  g.rsb = g.n;
  g.ldc = g.n;
  g.ldz = g.n;
  g.act = act;
  g.alpha = T(alpha);
  g.nthreads = threads_for(2.0 * g.m * g.n * g.k, kGemmFlopsPerThread);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  k.gemm(g);
}

void dense_forward(const py::object& x, const py::object& w, const py::object& b, const py::object& y,
                   const py::object& z, Activation act, double alpha, const py::object& slope) {
  require_2d(x, "x");
  require_2d(w, "w");
  if (is_f64(x)) dense_forward_typed<double>(x, w, b, y, z, act, alpha, slope);
  else dense_forward_typed<float>(x, w, b, y, z, act, alpha, slope);
}

template <typename T>
void dense_backward_typed(const py::object& dy, const py::object& x, const py::object& w, const py::object& y,
                          const py::object& z, const py::object& slope, const py::object& dx, const py::object& dw,
                          const py::object& db, const py::object& dslope, Activation act, double alpha,
                          bool accumulate) {
  DenseBackwardArgs<T> d;
  d.n = dim(x, 0);
  d.ic = dim(x, 1);
  d.oc = dim(w, 1);
  d.x = checked<T>(x, "x", {d.n, d.ic}, false);
  d.w = checked<T>(w, "w", {d.ic, d.oc}, false);
  d.dy = checked<T>(dy, "grad_out", {d.n, d.oc}, false);
  d.y = optional_checked<T>(y, "out", {d.n, d.oc}, false);
  d.z = optional_checked<T>(z, "preact", {d.n, d.oc}, false);
  d.slope = optional_checked<T>(slope, "slope", {d.oc}, false);
  d.dx = optional_checked<T>(dx, "grad_x", {d.n, d.ic}, true);
  d.dw = checked<T>(dw, "grad_w", {d.ic, d.oc}, true);
  d.db = optional_checked<T>(db, "grad_b", {d.oc}, true);
  d.dslope = optional_checked<T>(dslope, "grad_slope", {d.oc}, true);
  if (act == Activation::prelu && (!d.z || !d.slope || !d.dslope))
    throw py::value_error("activation='prelu' backward needs preact, slope and grad_slope");
  if (act != Activation::linear && act != Activation::prelu && !d.y)
    throw py::value_error("the backward of this activation needs the forward output `out`");
  d.act = act;
  d.alpha = T(alpha);
  d.accumulate = accumulate;
  d.nthreads = max_threads();
  // Scratch is left uninitialised: every element is written before it is read.
  std::unique_ptr<T[]> dz(act == Activation::linear ? nullptr : new T[size_t(d.n * d.oc)]);
  std::unique_ptr<double[]> partials(new double[size_t(dense_backward_partials(d.n, d.oc))]);
  d.dz_workspace = dz.get();
  d.partials_workspace = partials.get();
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  k.dense_backward(d);
}

void dense_backward(const py::object& dy, const py::object& x, const py::object& w, const py::object& y,
                    const py::object& z, const py::object& slope, const py::object& dx, const py::object& dw,
                    const py::object& db, const py::object& dslope, Activation act, double alpha, bool accumulate) {
  require_2d(x, "x");
  require_2d(w, "w");
  if (is_f64(x)) dense_backward_typed<double>(dy, x, w, y, z, slope, dx, dw, db, dslope, act, alpha, accumulate);
  else dense_backward_typed<float>(dy, x, w, y, z, slope, dx, dw, db, dslope, act, alpha, accumulate);
}

// ---------------------------------------------------------------- elementwise activations

template <typename T>
void activation_forward_typed(const py::object& x, const py::object& y, Activation act, double alpha,
                              const py::object& slope) {
  ActArgs<T> a;
  a.rows = dim(x, 0);
  a.cols = dim(x, 1);
  a.x = checked<T>(x, "x", {a.rows, a.cols}, false);
  a.out = checked<T>(y, "out", {a.rows, a.cols}, true);
  a.slope = optional_checked<T>(slope, "slope", {a.cols}, false);
  if (act == Activation::prelu && !a.slope) throw py::value_error("activation='prelu' needs slope");
  a.act = act;
  a.alpha = T(alpha);
  a.nthreads = threads_for(double(a.rows) * double(a.cols), kElementsPerThread);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  k.act_forward(a);
}

void activation_forward(const py::object& x, const py::object& y, Activation act, double alpha,
                        const py::object& slope) {
  require_2d(x, "x");
  if (is_f64(x)) activation_forward_typed<double>(x, y, act, alpha, slope);
  else activation_forward_typed<float>(x, y, act, alpha, slope);
}

template <typename T>
void activation_backward_typed(const py::object& dy, const py::object& y, const py::object& z,
                               const py::object& slope, const py::object& dx, const py::object& dslope,
                               Activation act, double alpha, bool accumulate) {
  ActBackwardArgs<T> a;
  a.rows = dim(dy, 0);
  a.cols = dim(dy, 1);
  a.dy = checked<T>(dy, "grad_out", {a.rows, a.cols}, false);
  a.y = optional_checked<T>(y, "out", {a.rows, a.cols}, false);
  a.z = optional_checked<T>(z, "preact", {a.rows, a.cols}, false);
  a.slope = optional_checked<T>(slope, "slope", {a.cols}, false);
  a.dz = checked<T>(dx, "grad_in", {a.rows, a.cols}, true);
  a.dslope = optional_checked<T>(dslope, "grad_slope", {a.cols}, true);
  if (act == Activation::prelu && (!a.z || !a.slope))
    throw py::value_error("activation='prelu' backward needs preact and slope");
  if (act != Activation::linear && act != Activation::prelu && !a.y)
    throw py::value_error("the backward of this activation needs the forward output `out`");
  a.act = act;
  a.alpha = T(alpha);
  a.accumulate = accumulate;
  a.nthreads = threads_for(double(a.rows) * double(a.cols), kElementsPerThread);
  std::unique_ptr<double[]> partials(a.dslope ? new double[size_t(dense_backward_partials(a.rows, a.cols))] : nullptr);
  a.partials = partials.get();
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  k.act_backward(a);
}

void activation_backward(const py::object& dy, const py::object& y, const py::object& z, const py::object& slope,
                         const py::object& dx, const py::object& dslope, Activation act, double alpha,
                         bool accumulate) {
  require_2d(dy, "grad_out");
  if (is_f64(dy)) activation_backward_typed<double>(dy, y, z, slope, dx, dslope, act, alpha, accumulate);
  else activation_backward_typed<float>(dy, y, z, slope, dx, dslope, act, alpha, accumulate);
}

// ---------------------------------------------------------------- configuration

std::string openmp_library() {
#ifdef _OPENMP
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&omp_get_max_threads), &info) && info.dli_fname) return info.dli_fname;
  return "unknown";
#else
  return "";
#endif
}

py::dict build_info() {
  py::dict d;
  d["version"] = FASTNN_VERSION;
  d["build_type"] = FASTNN_BUILD_TYPE;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  d["cxx_flags"] = FASTNN_CXX_FLAGS;
  d["isa_flags"] = py::dict(py::arg("generic") = "", py::arg("avx2") = FASTNN_ISA_FLAGS_AVX2,
                            py::arg("avx512") = FASTNN_ISA_FLAGS_AVX512);
  d["compiled_paths"] = compiled_paths();
  d["openmp"] = openmp_enabled();
#ifdef _OPENMP
  d["openmp_version"] = int(_OPENMP);
#else
  d["openmp_version"] = py::none();
#endif
  d["openmp_library"] = openmp_library();
#ifdef FASTNN_SANITIZER_CANARIES
  d["sanitizer_canaries"] = true;
#else
  d["sanitizer_canaries"] = false;
#endif
  return d;
}

py::dict cpu_info() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["brand"] = cpu_brand();
  d["x86"] = f.x86;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512dq"] = f.avx512dq;
  d["avx512vl"] = f.avx512vl;
  d["available_paths"] = available_paths();
  return d;
}

}  // namespace
}  // namespace fastnn

PYBIND11_MODULE(_core, m) {
  using namespace fastnn;
  m.doc() = "fastnn's compiled kernels (private; use fastnn.ops)";
  install_fork_guard();
  // Raises (ValueError or RuntimeError) at import for a FASTNN_SIMD this CPU cannot run.
  select_path_from_environment();

  py::enum_<Activation>(m, "Activation")
      .value("linear", Activation::linear)
      .value("relu", Activation::relu)
      .value("leaky_relu", Activation::leaky_relu)
      .value("prelu", Activation::prelu)
      .value("elu", Activation::elu)
      .value("sigmoid", Activation::sigmoid)
      .value("tanh", Activation::tanh);

  m.def("simd_path", [] { return std::string(kernels().name); }, "The SIMD path in use.");
  m.def("gemm_tile", [] { return py::make_tuple(kernels().gemm_mr, kernels().gemm_nr); },
        "(MR, NR) of the float32 GEMM register tile of the path in use.");
  m.def("available_paths", &available_paths);
  m.def("_select_path", &select_path, py::arg("name"),
        "Test hook: switch the kernel table (the FASTNN_SIMD rules apply).");
  m.def("build_info", &build_info);
  m.def("cpu_info", &cpu_info);
  m.def("get_num_threads", &max_threads);
  m.def("explicit_num_threads", &explicit_threads);
  m.def("set_num_threads", &set_max_threads, py::arg("n"));
  m.def("fork_guard_mode", [] { return std::string(fork_guard_mode()); });

  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::kw_only(), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("accumulate") = false, py::arg("nthreads") = 0,
        "c (=|+=) op(a) @ op(b); nthreads=0 chooses by work size.");
  m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("out"),
        py::arg("preact_out"), py::arg("activation"), py::arg("alpha"), py::arg("slope"));
  m.def("dense_backward", &dense_backward, py::arg("grad_out"), py::arg("x"), py::arg("w"), py::arg("out"),
        py::arg("preact"), py::arg("slope"), py::arg("grad_x"), py::arg("grad_w"), py::arg("grad_b"),
        py::arg("grad_slope"), py::arg("activation"), py::arg("alpha"), py::arg("accumulate"));
  m.def("activation_forward", &activation_forward, py::arg("x"), py::arg("out"), py::arg("activation"),
        py::arg("alpha"), py::arg("slope"));
  m.def("activation_backward", &activation_backward, py::arg("grad_out"), py::arg("out"), py::arg("preact"),
        py::arg("slope"), py::arg("grad_in"), py::arg("grad_slope"), py::arg("activation"), py::arg("alpha"),
        py::arg("accumulate"));
}
