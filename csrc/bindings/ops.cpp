// fastnn._core, the kernels one by one (fastnn.ops): marshalling only. Check dtype, shape,
// layout and writability with the GIL held (naming the argument), take raw pointers,
// release the GIL, call the kernel table. The Python layer (fastnn.ops) converts and
// validates first; these checks are the last line of defence for anyone calling _core
// directly.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>
#include <vector>

#include "marshal.hpp"
#include "dispatch.hpp"
#include "threading.hpp"
#include "train.hpp"

namespace fastnn {

void bind_ops(py::module_& m);

namespace {

// ---------------------------------------------------------------- GEMM (tests and benchmarks)

void gemm(const py::object& a, const py::object& b, const py::object& c, bool trans_a, bool trans_b,
          bool accumulate, int nthreads, bool prepack_b) {
  require_2d(a, "a");
  require_2d(b, "b");
  return with_float_type(a, [&](auto tag) {
    using T = decltype(tag);
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
    std::vector<T> packed;
    if (prepack_b) {  // the training engine's way: B packed once, then multiplied from the packing
      packed.resize(size_t(k.gemm_packed_b_size(g.k, g.n)));
      k.gemm_pack_b(g, packed.data());
      g.b_packed = packed.data();
    }
    k.gemm(g);
  });
}

// ---------------------------------------------------------------- dense layer

void dense_forward(const py::object& x, const py::object& w, const py::object& b, const py::object& y,
                   const py::object& z, Activation act, double alpha, const py::object& slope) {
  require_2d(x, "x");
  require_2d(w, "w");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
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
  });
}

// dense_forward for inputs the kernel reads in place (same float dtype, C-contiguous
// ndarrays, matching shapes, no PReLU slope) into `out` (the same, writeable, sharing no
// memory with an input) or a new array; None for anything else: the Python wrapper then
// takes its general path, which converts or explains. Skipping that path's checks and copies
// is what makes a small GEMM through fastnn.ops as fast as x @ w.
template <typename T>
py::object dense_forward_plain_as(const py::object& x, const py::object& w, const py::object& b,
                                  const py::object& out, Activation act, double alpha) {
  const T* xp = plain<T>(x, 2);
  const T* wp = plain<T>(w, 2);
  const T* bp = b.is_none() ? nullptr : plain<T>(b, 1);
  if (!xp || !wp || (!b.is_none() && !bp) || act == Activation::prelu) return py::none();
  const index_t m = dim(x, 0), k = dim(x, 1), n = dim(w, 1);
  if (dim(w, 0) != k || (bp && dim(b, 0) != n) || m == 0 || k == 0 || n == 0) return py::none();
  py::array_t<T> y;
  if (out.is_none()) {
    y = py::array_t<T>({m, n});
  } else {
    const T* op = plain<T>(out, 2);
    if (!op || dim(out, 0) != m || dim(out, 1) != n || !py::reinterpret_borrow<py::array>(out).writeable())
      return py::none();
    const T* oe = op + m * n;  // contiguous: these ranges are exactly the arrays' bytes
    auto overlaps = [&](const T* p, index_t count) { return p && p < oe && op < p + count; };
    if (overlaps(xp, m * k) || overlaps(wp, k * n) || overlaps(bp, n)) return py::none();
    y = py::reinterpret_borrow<py::array_t<T>>(out);
  }
  GemmArgs<T> g;
  g.m = m;
  g.k = k;
  g.n = n;
  g.a = xp;
  g.b = wp;
  g.bias = bp;
  g.c = y.mutable_data();
  g.rsa = k;
  g.rsb = n;
  g.ldc = n;
  g.ldz = n;
  g.act = act;
  g.alpha = T(alpha);
  g.nthreads = threads_for(2.0 * m * n * k, kGemmFlopsPerThread);
  const auto& kern = kernels().of<T>();
  // A one-thread GEMM under 1 Mflop (under ~10 us) keeps the GIL: releasing and taking it
  // back cost 0.07 us of a 64^3 call's 6 us.
  if (g.nthreads <= 1 && 2.0 * double(m) * double(n) * double(k) < 1e6) {
    kern.gemm(g);
  } else {
    py::gil_scoped_release release;
    kern.gemm(g);
  }
  return std::move(y);
}

py::object dense_forward_plain(const py::object& x, const py::object& w, const py::object& b, const py::object& out,
                               Activation act, double alpha) {
  return is_f64(x) ? dense_forward_plain_as<double>(x, w, b, out, act, alpha)
                   : dense_forward_plain_as<float>(x, w, b, out, act, alpha);
}

void dense_backward(const py::object& dy, const py::object& x, const py::object& w, const py::object& y,
                    const py::object& z, const py::object& slope, const py::object& dx, const py::object& dw,
                    const py::object& db, const py::object& dslope, Activation act, double alpha, bool accumulate) {
  require_2d(x, "x");
  require_2d(w, "w");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
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
  });
}

// ---------------------------------------------------------------- elementwise activations

void activation_forward(const py::object& x, const py::object& y, Activation act, double alpha,
                        const py::object& slope) {
  require_2d(x, "x");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
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
  });
}

void activation_backward(const py::object& dy, const py::object& y, const py::object& z, const py::object& slope,
                         const py::object& dx, const py::object& dslope, Activation act, double alpha,
                         bool accumulate) {
  require_2d(dy, "grad_out");
  return with_float_type(dy, [&](auto tag) {
    using T = decltype(tag);
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
  });
}

// ---------------------------------------------------------------- batch normalization

void batchnorm_forward(const py::object& x, const py::object& gamma, const py::object& beta, const py::object& y,
                       const py::object& mean, const py::object& invstd, const py::object& running_mean,
                       const py::object& running_var, bool training, double eps, double momentum) {
  require_2d(x, "x");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
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
  });
}

void batchnorm_backward(const py::object& dy, const py::object& x, const py::object& gamma, const py::object& mean,
                        const py::object& invstd, const py::object& dx, const py::object& dgamma,
                        const py::object& dbeta, bool accumulate) {
  require_2d(x, "x");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
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
  });
}

// ---------------------------------------------------------------- dropout

void check_rate(double rate) {
  if (!(rate >= 0.0 && rate < 1.0)) throw py::value_error("rate must be in [0, 1), got " + std::to_string(rate));
  if (rate > 0.0 && rate < 1.0 / 65536.0)  // the mask resolution: a smaller rate would drop nothing
    throw py::value_error("rate must be 0 or at least 2**-16, got " + std::to_string(rate));
}

index_t mask_bytes(index_t n) { return (n + 7) / 8; }

void dropout(const py::object& x, const py::object& y, const py::object& mask_out, const py::object& mask_in,
             index_t n, double rate, std::uint64_t seed, std::uint64_t step, bool backward) {
  check_rate(rate);
  if (n < 0) throw py::value_error("n must be >= 0");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
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
  });
}

py::tuple philox(std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key) {
  std::uint32_t out[4];
  generic::philox4x32_10(counter.data(), key.data(), out);
  return py::make_tuple(out[0], out[1], out[2], out[3]);
}

// ---------------------------------------------------------------- clipping

double sum_squares(const py::object& x) {
  require_1d(x, "x");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
    const index_t n = dim(x, 0);
    const T* p = checked<T>(x, "x", {n}, false);
    const auto& k = kernels().of<T>();
    const int nt = threads_for(double(n), kElementsPerThread);
    py::gil_scoped_release release;
    return k.sum_squares(p, n, nt);
  });
}

void scale(const py::object& x, double factor) {
  require_1d(x, "x");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
    const index_t n = dim(x, 0);
    T* p = checked<T>(x, "x", {n}, true);
    const auto& k = kernels().of<T>();
    const int nt = threads_for(double(n), kElementsPerThread);
    py::gil_scoped_release release;
    k.scale(p, n, T(factor), nt);
  });
}

void clip_value(const py::object& x, double lo, double hi) {
  require_1d(x, "x");
  if (!(lo <= hi)) throw py::value_error("clip_value needs lo <= hi");
  return with_float_type(x, [&](auto tag) {
    using T = decltype(tag);
    const index_t n = dim(x, 0);
    T* p = checked<T>(x, "x", {n}, true);
    const auto& k = kernels().of<T>();
    const int nt = threads_for(double(n), kElementsPerThread);
    py::gil_scoped_release release;
    k.clip_value(p, n, T(lo), T(hi), nt);
  });
}

// ---------------------------------------------------------------- losses

double loss(LossKind kind, const py::object& pred, const py::object& target, const py::object& labels,
            const py::object& weights, const py::object& grad, double weight_sum, double delta) {
  require_2d(pred, "pred");
  return with_float_type(pred, [&](auto tag) {
    using T = decltype(tag);
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
  });
}

// ---------------------------------------------------------------- optimizer updates

// Optimizer hyperparameters from the dict fastnn.ops / fastnn.optim build (absent keys
// keep their defaults).
void optimizer_step(OptimizerKind kind, const py::object& params, const py::object& grads, const py::object& state0,
                    const py::object& state1, const py::object& state2, const py::object& mask,
                    const OptimizerHyper& hyper, std::int64_t step) {
  require_1d(params, "params");
  with_float_type(params, [&](auto tag) {
    using T = decltype(tag);
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
    set_hyper(a, hyper);
    // An int, never through double: a double near 2**63 does not fit int64 (UB on the cast).
    a.step = step;
    if (kind == OptimizerKind::adam && a.step < 1) throw py::value_error("adam step must be >= 1");
    if (kind == OptimizerKind::rmsprop && a.centered && !a.state2)
      throw py::value_error("centered rmsprop needs grad_avg");
    a.nthreads = threads_for(double(a.n), kElementsPerThread);
    const auto& k = kernels().of<T>();
    py::gil_scoped_release release;
    k.optimizer_step(a);
    return 0;
  });
}

}  // namespace

void bind_ops(py::module_& m) {
  py::enum_<Activation>(m, "Activation")
      .value("linear", Activation::linear)
      .value("relu", Activation::relu)
      .value("leaky_relu", Activation::leaky_relu)
      .value("prelu", Activation::prelu)
      .value("elu", Activation::elu)
      .value("sigmoid", Activation::sigmoid)
      .value("tanh", Activation::tanh);

  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::kw_only(), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("accumulate") = false, py::arg("nthreads") = 0,
        py::arg("prepack_b") = false,
        "c (=|+=) op(a) @ op(b); nthreads=0 chooses by work size; prepack_b packs op(b) once "
        "(gemm_pack_b) and multiplies from the packing.");
  m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("out"),
        py::arg("preact_out"), py::arg("activation"), py::arg("alpha"), py::arg("slope"));
  m.def("dense_forward_plain", &dense_forward_plain, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("out"),
        py::arg("activation"), py::arg("alpha"),
        "dense_forward into out (or a new array), or None where the arguments need the general path.");
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
        py::arg("state1"), py::arg("state2"), py::arg("weight_mask"), py::arg("hyper"), py::arg("step") = 1);
  m.def("activation_forward", &activation_forward, py::arg("x"), py::arg("out"), py::arg("activation"),
        py::arg("alpha"), py::arg("slope"));
  m.def("activation_backward", &activation_backward, py::arg("grad_out"), py::arg("out"), py::arg("preact"),
        py::arg("slope"), py::arg("grad_in"), py::arg("grad_slope"), py::arg("activation"), py::arg("alpha"),
        py::arg("accumulate"));
}

}  // namespace fastnn
