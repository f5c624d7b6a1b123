// fastnn._core: marshalling only. Check dtype, shape, layout and writability with the GIL
// held (naming the argument), take raw pointers, release the GIL, call the kernel table.
// The Python layer (fastnn.ops) converts and validates first; these checks are the last
// line of defence for anyone calling _core directly.
#include <dlfcn.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
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
#include "train.hpp"
#include "workspace.hpp"

namespace py = pybind11;

namespace fastnn {

void throw_invalid(const std::string& message) { throw std::invalid_argument(message); }

void bind_preprocessing(py::module_& m);  // bind_preprocessing.cpp

#ifdef FASTNN_SANITIZER_CANARIES
// canaries.cpp: deliberate bugs that prove a sanitizer is wired in (RELIABILITY M2).
int canary_heap_oob();
int canary_int_overflow();
void canary_leak();
long canary_data_race();
#endif

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

index_t dim(const py::handle& obj, int axis) { return py::reinterpret_borrow<py::array>(obj).shape(axis); }

bool is_f64(const py::handle& obj) { return py::isinstance<py::array_t<double>>(obj); }

void require_1d(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj) || py::reinterpret_borrow<py::array>(obj).ndim() != 1)
    throw py::value_error(std::string(name) + " must be a 1-D numpy array");
}

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

// ---------------------------------------------------------------- batch normalization

template <typename T>
void batchnorm_forward_typed(const py::object& x, const py::object& gamma, const py::object& beta, const py::object& y,
                             const py::object& mean, const py::object& invstd, const py::object& running_mean,
                             const py::object& running_var, bool training, double eps, double momentum) {
  BatchNormForwardArgs<T> a;
  a.n = dim(x, 0);
  a.c = dim(x, 1);
  a.x = checked<T>(x, "x", {a.n, a.c}, false);
  a.gamma = checked<T>(gamma, "gamma", {a.c}, false);
  a.beta = checked<T>(beta, "beta", {a.c}, false);
  a.y = checked<T>(y, "out", {a.n, a.c}, true);
  a.training = training;
  a.running_mean = optional_checked<T>(running_mean, "running_mean", {a.c}, training);
  a.running_var = optional_checked<T>(running_var, "running_var", {a.c}, training);
  if (training) {
    if (a.n < 2) throw py::value_error("batch norm training needs at least 2 rows (one row has zero variance), got " + std::to_string(a.n));
    a.mean = checked<T>(mean, "mean_out", {a.c}, true);
    a.invstd = checked<T>(invstd, "invstd_out", {a.c}, true);
    if (!a.running_mean != !a.running_var) throw py::value_error("pass both running_mean and running_var, or neither");
  } else if (!a.running_mean || !a.running_var) {
    throw py::value_error("batch norm inference needs running_mean and running_var");
  }
  a.eps = eps;
  a.momentum = momentum;
  a.nthreads = threads_for(double(a.n) * double(a.c), kElementsPerThread);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  k.batchnorm_forward(a);
}

void batchnorm_forward(const py::object& x, const py::object& gamma, const py::object& beta, const py::object& y,
                       const py::object& mean, const py::object& invstd, const py::object& running_mean,
                       const py::object& running_var, bool training, double eps, double momentum) {
  require_2d(x, "x");
  if (is_f64(x)) batchnorm_forward_typed<double>(x, gamma, beta, y, mean, invstd, running_mean, running_var, training, eps, momentum);
  else batchnorm_forward_typed<float>(x, gamma, beta, y, mean, invstd, running_mean, running_var, training, eps, momentum);
}

template <typename T>
void batchnorm_backward_typed(const py::object& dy, const py::object& x, const py::object& gamma,
                              const py::object& mean, const py::object& invstd, const py::object& dx,
                              const py::object& dgamma, const py::object& dbeta, bool accumulate) {
  BatchNormBackwardArgs<T> a;
  a.n = dim(x, 0);
  a.c = dim(x, 1);
  a.x = checked<T>(x, "x", {a.n, a.c}, false);
  a.dy = checked<T>(dy, "grad_out", {a.n, a.c}, false);
  a.gamma = checked<T>(gamma, "gamma", {a.c}, false);
  a.mean = checked<T>(mean, "mean", {a.c}, false);
  a.invstd = checked<T>(invstd, "invstd", {a.c}, false);
  a.dx = optional_checked<T>(dx, "grad_x", {a.n, a.c}, true);
  a.dgamma = optional_checked<T>(dgamma, "grad_gamma", {a.c}, true);
  a.dbeta = optional_checked<T>(dbeta, "grad_beta", {a.c}, true);
  if (a.n < 1) throw py::value_error("batch norm backward needs at least one row");
  a.accumulate = accumulate;
  a.nthreads = threads_for(double(a.n) * double(a.c), kElementsPerThread);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  k.batchnorm_backward(a);
}

void batchnorm_backward(const py::object& dy, const py::object& x, const py::object& gamma, const py::object& mean,
                        const py::object& invstd, const py::object& dx, const py::object& dgamma,
                        const py::object& dbeta, bool accumulate) {
  require_2d(x, "x");
  if (is_f64(x)) batchnorm_backward_typed<double>(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, accumulate);
  else batchnorm_backward_typed<float>(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, accumulate);
}

// ---------------------------------------------------------------- dropout

void check_rate(double rate) {
  if (!(rate >= 0.0 && rate < 1.0)) throw py::value_error("rate must be in [0, 1), got " + std::to_string(rate));
  if (rate > 0.0 && rate < 1.0 / 65536.0)  // the mask resolution: a smaller rate would drop nothing
    throw py::value_error("rate must be 0 or at least 2**-16, got " + std::to_string(rate));
}

index_t mask_bytes(index_t n) { return (n + 7) / 8; }

template <typename T>
void dropout_typed(const py::object& x, const py::object& y, const py::object& mask_out, const py::object& mask_in,
                   index_t n, double rate, std::uint64_t seed, std::uint64_t step, bool backward) {
  DropoutArgs<T> a;
  a.n = n;
  a.x = optional_checked<T>(x, backward ? "grad_out" : "x", {n}, false);
  a.y = optional_checked<T>(y, backward ? "grad_in" : "out", {n}, true);
  a.mask_bits = optional_checked<std::uint8_t>(mask_out, "mask_out", {mask_bytes(n)}, true);
  a.mask_in = optional_checked<std::uint8_t>(mask_in, "mask", {mask_bytes(n)}, false);
  if (!a.x != !a.y) throw py::value_error("pass both the input and the output array, or neither");
  a.rate = rate;
  a.seed = seed;
  a.step = step;
  a.nthreads = threads_for(double(n), kElementsPerThread);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  if (backward) k.dropout_backward(a); else k.dropout_forward(a);
}

void dropout(const py::object& x, const py::object& y, const py::object& mask_out, const py::object& mask_in,
             index_t n, double rate, std::uint64_t seed, std::uint64_t step, bool backward) {
  check_rate(rate);
  if (n < 0) throw py::value_error("n must be >= 0");
  if (!x.is_none() && is_f64(x)) dropout_typed<double>(x, y, mask_out, mask_in, n, rate, seed, step, backward);
  else dropout_typed<float>(x, y, mask_out, mask_in, n, rate, seed, step, backward);
}

py::tuple philox(std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key) {
  std::uint32_t out[4];
  generic::philox4x32_10(counter.data(), key.data(), out);
  return py::make_tuple(out[0], out[1], out[2], out[3]);
}

// ---------------------------------------------------------------- clipping

template <typename T>
double sum_squares_typed(const py::object& x) {
  const index_t n = dim(x, 0);
  const T* p = checked<T>(x, "x", {n}, false);
  const auto& k = kernels().of<T>();
  const int nt = threads_for(double(n), kElementsPerThread);
  py::gil_scoped_release release;
  return k.sum_squares(p, n, nt);
}

double sum_squares(const py::object& x) {
  require_1d(x, "x");
  return is_f64(x) ? sum_squares_typed<double>(x) : sum_squares_typed<float>(x);
}

template <typename T>
void scale_typed(const py::object& x, double factor) {
  const index_t n = dim(x, 0);
  T* p = checked<T>(x, "x", {n}, true);
  const auto& k = kernels().of<T>();
  const int nt = threads_for(double(n), kElementsPerThread);
  py::gil_scoped_release release;
  k.scale(p, n, T(factor), nt);
}

void scale(const py::object& x, double factor) {
  require_1d(x, "x");
  if (is_f64(x)) scale_typed<double>(x, factor); else scale_typed<float>(x, factor);
}

template <typename T>
void clip_value_typed(const py::object& x, double lo, double hi) {
  const index_t n = dim(x, 0);
  T* p = checked<T>(x, "x", {n}, true);
  const auto& k = kernels().of<T>();
  const int nt = threads_for(double(n), kElementsPerThread);
  py::gil_scoped_release release;
  k.clip_value(p, n, T(lo), T(hi), nt);
}

void clip_value(const py::object& x, double lo, double hi) {
  require_1d(x, "x");
  if (!(lo <= hi)) throw py::value_error("clip_value needs lo <= hi");
  if (is_f64(x)) clip_value_typed<double>(x, lo, hi); else clip_value_typed<float>(x, lo, hi);
}

// ---------------------------------------------------------------- losses

template <typename T>
double loss_typed(LossKind kind, const py::object& pred, const py::object& target, const py::object& labels,
                  const py::object& weights, const py::object& grad, double weight_sum, double delta) {
  LossArgs<T> a;
  a.kind = kind;
  a.n = dim(pred, 0);
  a.k = dim(pred, 1);
  a.pred = checked<T>(pred, "pred", {a.n, a.k}, false);
  a.target = optional_checked<T>(target, "target", {a.n, a.k}, false);
  a.labels = optional_checked<std::int64_t>(labels, "labels", {a.n}, false);
  a.weights = optional_checked<T>(weights, "sample_weight", {a.n}, false);
  a.grad = optional_checked<T>(grad, "grad_out", {a.n, a.k}, true);
  if (a.labels) {
    if (kind != LossKind::softmax_ce) throw py::value_error("class labels are only for the softmax cross-entropy");
    for (index_t i = 0; i < a.n; ++i)  // an index past K would read outside the row
      if (a.labels[i] < 0 || a.labels[i] >= a.k)
        throw py::value_error("labels must be in [0, " + std::to_string(a.k) + "), got " + std::to_string(a.labels[i]) +
                              " at row " + std::to_string(i));
  } else if (!a.target) {
    throw py::value_error("pass target (or labels for the softmax cross-entropy)");
  }
  if (!(weight_sum > 0.0)) throw py::value_error("the sample weights must sum to a positive number");
  a.weight_sum = weight_sum;
  a.delta = delta;
  a.nthreads = threads_for(double(a.n) * double(a.k) * 8.0, kElementsPerThread);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  return k.loss(a);
}

double loss(LossKind kind, const py::object& pred, const py::object& target, const py::object& labels,
            const py::object& weights, const py::object& grad, double weight_sum, double delta) {
  require_2d(pred, "pred");
  return is_f64(pred) ? loss_typed<double>(kind, pred, target, labels, weights, grad, weight_sum, delta)
                      : loss_typed<float>(kind, pred, target, labels, weights, grad, weight_sum, delta);
}

// ---------------------------------------------------------------- optimizer updates

// Optimizer hyperparameters from the dict fastnn.ops / fastnn.optim build (absent keys
// keep their defaults).
template <typename T>
void read_hyper(OptimizerArgs<T>& a, const py::dict& h) {
  auto get = [&](const char* key, double fallback) { return h.contains(key) ? h[key].cast<double>() : fallback; };
  a.lr = get("lr", a.lr);
  a.momentum = get("momentum", a.momentum);
  a.beta1 = get("beta1", a.beta1);
  a.beta2 = get("beta2", a.beta2);
  a.eps = get("eps", a.eps);
  a.rho = get("rho", a.rho);
  a.weight_decay = get("weight_decay", a.weight_decay);
  a.l1 = get("l1", a.l1);
  a.l2 = get("l2", a.l2);
  a.nesterov = get("nesterov", 0.0) != 0.0;
  a.centered = get("centered", 0.0) != 0.0;
  // An int, never through double: a double near 2**63 does not fit int64 (UB on the cast).
  a.step = h.contains("step") ? h["step"].cast<std::int64_t>() : 1;
}

template <typename T>
void optimizer_step_typed(OptimizerKind kind, const py::object& params, const py::object& grads,
                          const py::object& state0, const py::object& state1, const py::object& state2,
                          const py::object& mask, const py::dict& h) {
  OptimizerArgs<T> a;
  a.kind = kind;
  a.n = dim(params, 0);
  a.params = checked<T>(params, "params", {a.n}, true);
  a.grads = checked<T>(grads, "grads", {a.n}, false);
  a.state0 = optional_checked<T>(state0, "state0", {a.n}, true);
  a.state1 = optional_checked<T>(state1, "state1", {a.n}, true);
  a.state2 = optional_checked<T>(state2, "state2", {a.n}, true);
  a.weight_mask = optional_checked<std::uint8_t>(mask, "weight_mask", {a.n}, false);
  const bool needs0 = kind != OptimizerKind::sgd, needs1 = kind == OptimizerKind::adam;
  if ((needs0 && !a.state0) || (needs1 && !a.state1))
    throw py::value_error("this optimizer needs its state buffers");
  read_hyper(a, h);
  if (kind == OptimizerKind::adam && a.step < 1) throw py::value_error("adam step must be >= 1");
  if (kind == OptimizerKind::rmsprop && a.centered && !a.state2) throw py::value_error("centered rmsprop needs grad_avg");
  a.nthreads = threads_for(double(a.n), kElementsPerThread);
  const auto& k = kernels().of<T>();
  py::gil_scoped_release release;
  k.optimizer_step(a);
}

void optimizer_step(OptimizerKind kind, const py::object& params, const py::object& grads, const py::object& state0,
                    const py::object& state1, const py::object& state2, const py::object& mask, const py::dict& h) {
  require_1d(params, "params");
  if (is_f64(params)) optimizer_step_typed<double>(kind, params, grads, state0, state1, state2, mask, h);
  else optimizer_step_typed<float>(kind, params, grads, state0, state1, state2, mask, h);
}

// ---------------------------------------------------------------- a whole training epoch

template <typename T>
py::dict train_epoch_typed(const py::object& params, const py::object& grads, const py::object& buffers,
                           const py::list& layers, const py::object& x, const py::object& y, const py::object& labels,
                           const py::object& weights, const py::object& order, index_t batch_size, LossKind loss,
                           double delta, OptimizerKind opt_kind, const py::object& state0, const py::object& state1,
                           const py::object& state2, const py::object& weight_mask, const py::dict& hyper,
                           const py::tuple& schedule, std::int64_t iteration, std::uint64_t step, double clip_norm,
                           bool drop_single_row_batch, bool skip_nonfinite, index_t max_batches, bool statistics) {
  EpochArgs<T> a;
  a.n_params = dim(params, 0);
  a.params = checked<T>(params, "params", {a.n_params}, true);
  a.grads = checked<T>(grads, "grads", {a.n_params}, true);
  const index_t n_buffers = dim(buffers, 0);
  a.buffers = checked<T>(buffers, "buffers", {n_buffers}, true);
  a.n = dim(x, 0);
  a.in_features = dim(x, 1);
  a.x = checked<T>(x, "x", {a.n, a.in_features}, false);
  if (!y.is_none()) {
    a.k = dim(y, 1);
    a.y = checked<T>(y, "y", {a.n, a.k}, false);
  }
  a.labels = optional_checked<std::int64_t>(labels, "labels", {a.n}, false);
  a.weights = optional_checked<T>(weights, "weights", {a.n}, false);
  a.order = checked<std::int64_t>(order, "order", {a.n}, false);
  for (index_t i = 0; i < a.n; ++i)
    if (a.order[i] < 0 || a.order[i] >= a.n) throw py::value_error("order must be a permutation of the rows");
  if (batch_size < 1) throw py::value_error("batch_size must be >= 1");
  a.batch_size = batch_size;
  a.loss = loss;
  a.delta = delta;
  index_t width = a.in_features;
  for (const auto& item : layers) {
    const auto t = item.cast<py::tuple>();
    LayerSpec l;
    l.kind = LayerKind(t[0].cast<int>());
    l.in = t[1].cast<index_t>();
    l.out = t[2].cast<index_t>();
    l.act = Activation(t[3].cast<int>());
    l.alpha = t[4].cast<double>();
    l.weight = t[5].cast<index_t>();
    l.bias = t[6].cast<index_t>();
    l.slope = t[7].cast<index_t>();
    l.gamma = t[8].cast<index_t>();
    l.beta = t[9].cast<index_t>();
    l.running_mean = t[10].cast<index_t>();
    l.running_var = t[11].cast<index_t>();
    l.momentum = t[12].cast<double>();
    l.eps = t[13].cast<double>();
    l.rate = t[14].cast<double>();
    l.seed = t[15].cast<std::uint64_t>();
    l.param_begin = t[16].cast<index_t>();
    l.param_size = t[17].cast<index_t>();
    // every offset must stay inside its buffer: the loop trusts them
    const index_t in = l.kind == LayerKind::dense ? l.in : width;
    if (in != width || l.out < 1 || (l.kind != LayerKind::dense && l.out != width))
      throw py::value_error("layer widths do not chain");
    auto inside = [](index_t off, index_t count, index_t size) { return off >= 0 && off + count <= size; };
    bool ok = inside(l.param_begin, l.param_size, a.n_params);
    if (l.kind == LayerKind::dense) {
      ok = ok && inside(l.weight, l.in * l.out, a.n_params) && (l.bias < 0 || inside(l.bias, l.out, a.n_params)) &&
           (l.slope < 0 || inside(l.slope, l.out, a.n_params)) && (l.act != Activation::prelu || l.slope >= 0);
    }
    if (l.kind == LayerKind::batchnorm)
      ok = ok && inside(l.gamma, l.out, a.n_params) && inside(l.beta, l.out, a.n_params) &&
           inside(l.running_mean, l.out, n_buffers) && inside(l.running_var, l.out, n_buffers);
    if (!ok) throw py::value_error("a layer's parameter offsets fall outside the model's buffers");
    width = l.out;
    a.layers.push_back(l);
  }
  if (a.layers.empty()) throw py::value_error("the model has no layers");
  if (a.y && a.k != width) throw py::value_error("y must have one column per model output");
  if (a.labels)
    for (index_t i = 0; i < a.n; ++i)
      if (a.labels[i] < 0 || a.labels[i] >= width) throw py::value_error("labels must be class indices of the output");
  if (!a.y && !a.labels) throw py::value_error("pass y or labels");
  a.optimizer.kind = opt_kind;
  a.optimizer.state0 = optional_checked<T>(state0, "state0", {a.n_params}, true);
  a.optimizer.state1 = optional_checked<T>(state1, "state1", {a.n_params}, true);
  a.optimizer.state2 = optional_checked<T>(state2, "state2", {a.n_params}, true);
  a.optimizer.weight_mask = optional_checked<std::uint8_t>(weight_mask, "weight_mask", {a.n_params}, false);
  read_hyper(a.optimizer, hyper);
  a.schedule.kind = ScheduleKind(schedule[0].cast<int>());
  a.schedule.lr = schedule[1].cast<double>();
  a.schedule.a = schedule[2].cast<double>();
  a.schedule.b = schedule[3].cast<double>();
  a.schedule.staircase = schedule[4].cast<bool>();
  a.iteration = iteration;
  a.step = step;
  a.clip_norm = clip_norm;
  a.drop_single_row_batch = drop_single_row_batch;
  a.skip_nonfinite = skip_nonfinite;
  a.max_batches = max_batches;
  a.statistics = statistics;
  EpochResult r;
  {
    py::gil_scoped_release release;
    r = train_epoch(a);
  }
  py::dict d;
  d["loss_sum"] = r.loss_sum;
  d["rows"] = r.rows;
  d["steps"] = r.steps;
  d["skipped"] = r.skipped;
  d["diverged"] = r.diverged;
  d["bad_step"] = r.bad_step;
  d["bad_layer"] = r.bad_layer;
  d["zero_fraction"] = r.zero_fraction;
  d["grad_norm"] = r.grad_norm;
  d["weight_norm"] = r.weight_norm;
  d["update_ratio"] = r.update_ratio;
  py::list fired;
  for (size_t i = 0; i + 1 < r.fired_offset.size(); ++i) {
    py::array_t<bool> f(r.fired_offset[i + 1] - r.fired_offset[i]);
    for (index_t j = 0; j < f.size(); ++j) f.mutable_data()[j] = r.fired[size_t(r.fired_offset[i] + j)] != 0;
    fired.append(f);
  }
  d["fired"] = fired;
  return d;
}

py::dict train_epoch_any(const py::object& params, const py::object& grads, const py::object& buffers,
                         const py::list& layers, const py::object& x, const py::object& y, const py::object& labels,
                         const py::object& weights, const py::object& order, index_t batch_size, LossKind loss,
                         double delta, OptimizerKind opt_kind, const py::object& state0, const py::object& state1,
                         const py::object& state2, const py::object& weight_mask, const py::dict& hyper,
                         const py::tuple& schedule, std::int64_t iteration, std::uint64_t step, double clip_norm,
                         bool drop_single_row_batch, bool skip_nonfinite, index_t max_batches, bool statistics) {
  require_1d(params, "params");
  require_2d(x, "x");
  if (!y.is_none()) require_2d(y, "y");
  auto call = [&](auto tag) {
    using T = decltype(tag);
    return train_epoch_typed<T>(params, grads, buffers, layers, x, y, labels, weights, order, batch_size, loss, delta,
                                opt_kind, state0, state1, state2, weight_mask, hyper, schedule, iteration, step,
                                clip_norm, drop_single_row_batch, skip_nonfinite, max_batches, statistics);
  };
  return is_f64(params) ? call(double()) : call(float());
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
  m.def("set_calling_thread_num_threads", &set_calling_thread_threads, py::arg("n"));
  m.def("calling_thread_num_threads", &calling_thread_threads);
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
  py::enum_<LossKind>(m, "LossKind")
      .value("mse", LossKind::mse)
      .value("huber", LossKind::huber)
      .value("bce_logits", LossKind::bce_logits)
      .value("softmax_ce", LossKind::softmax_ce);
  py::enum_<OptimizerKind>(m, "OptimizerKind")
      .value("sgd", OptimizerKind::sgd)
      .value("adagrad", OptimizerKind::adagrad)
      .value("adam", OptimizerKind::adam)
      .value("rmsprop", OptimizerKind::rmsprop);
  m.def("batchnorm_forward", &batchnorm_forward, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("out"),
        py::arg("mean_out"), py::arg("invstd_out"), py::arg("running_mean"), py::arg("running_var"),
        py::arg("training"), py::arg("eps"), py::arg("momentum"));
  m.def("batchnorm_backward", &batchnorm_backward, py::arg("grad_out"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("invstd"), py::arg("grad_x"), py::arg("grad_gamma"), py::arg("grad_beta"),
        py::arg("accumulate"));
  m.def("dropout", &dropout, py::arg("x"), py::arg("out"), py::arg("mask_out"), py::arg("mask"), py::arg("n"),
        py::arg("rate"), py::arg("seed"), py::arg("step"), py::arg("backward"),
        "Flat dropout: out = x * (keep ? 1 / (1 - rate) : 0); mask bits packed little-endian.");
  m.def("philox4x32_10", &philox, py::arg("counter"), py::arg("key"));
  m.def("sum_squares", &sum_squares, py::arg("x"));
  m.def("scale_", &scale, py::arg("x"), py::arg("factor"));
  m.def("clip_value_", &clip_value, py::arg("x"), py::arg("lo"), py::arg("hi"));
  m.def("loss", &loss, py::arg("kind"), py::arg("pred"), py::arg("target"), py::arg("labels"), py::arg("sample_weight"),
        py::arg("grad_out"), py::arg("weight_sum"), py::arg("delta"));
  m.def("optimizer_step", &optimizer_step, py::arg("kind"), py::arg("params"), py::arg("grads"), py::arg("state0"),
        py::arg("state1"), py::arg("state2"), py::arg("weight_mask"), py::arg("hyper"));
  bind_preprocessing(m);
#ifdef FASTNN_SANITIZER_CANARIES
  // Deliberate bugs (sanitizer builds only): each must be reported by the sanitizer in use.
  m.def("_canary_heap_oob", &canary_heap_oob, "Reads one past the end of a heap block.");
  m.def("_canary_int_overflow", &canary_int_overflow, "Computes INT_MAX + 1.");
  m.def("_canary_leak", &canary_leak, "Leaks 10 blocks of 4000 bytes.");
  m.def("_canary_data_race", &canary_data_race, "Two threads write one plain long.");
#endif
  m.def("train_epoch", &train_epoch_any, py::arg("params"), py::arg("grads"), py::arg("buffers"), py::arg("layers"),
        py::arg("x"), py::arg("y"), py::arg("labels"), py::arg("weights"), py::arg("order"), py::arg("batch_size"),
        py::arg("loss"), py::arg("delta"), py::arg("optimizer"), py::arg("state0"), py::arg("state1"),
        py::arg("state2"), py::arg("weight_mask"), py::arg("hyper"), py::arg("schedule"), py::arg("iteration"),
        py::arg("step"), py::arg("clip_norm"), py::arg("drop_single_row_batch"), py::arg("skip_nonfinite"),
        py::arg("max_batches"), py::arg("statistics"));
  m.def("activation_forward", &activation_forward, py::arg("x"), py::arg("out"), py::arg("activation"),
        py::arg("alpha"), py::arg("slope"));
  m.def("activation_backward", &activation_backward, py::arg("grad_out"), py::arg("out"), py::arg("preact"),
        py::arg("slope"), py::arg("grad_in"), py::arg("grad_slope"), py::arg("activation"), py::arg("alpha"),
        py::arg("accumulate"));
}
