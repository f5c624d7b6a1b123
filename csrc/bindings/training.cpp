// fastnn._core, the training engine's typed boundary: the layer list, schedules, optimizer
// hyperparameters and epoch settings are classes with named fields (no positional tuples,
// no dicts with silent defaults), and the model is one object, built once by
// nn.Sequential where its views are made and validated once here.
#include <array>
#include <string>

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "marshal.hpp"
#include "threading.hpp"
#include "train.hpp"

namespace fastnn {

void bind_training(py::module_& m);
void bind_training_types(py::module_& m);

namespace {

// A RowSplit as Python holds it: with the array its classes are read from, kept alive here.
class BoundRowSplit {
 public:
  BoundRowSplit(index_t n, const py::object& key, std::vector<index_t> held, const py::object& classes)
      : classes_(classes), split_(n) {
    if (n < 1) throw py::value_error("n must be >= 1");
    if (key.is_none()) {
      if (!held.empty() || !classes.is_none()) throw py::value_error("held and classes need a key");
      return;
    }
    if (held.empty()) throw py::value_error("held must name at least one class");
    std::function<index_t(index_t)> class_of = [](index_t) { return index_t(0); };
    if (!classes.is_none()) {
      class_of = class_reader(classes, n, index_t(held.size()));
    } else if (held.size() != 1) {
      throw py::value_error("several classes need the classes array");
    }
    split_ = RowSplit(n, key.cast<std::uint64_t>(), std::move(held), std::move(class_of));
  }

  const RowSplit& split() const { return split_; }

  // Up to `count` held-out rows from `position` on; the rows and the position to go on from.
  py::tuple held_out_rows(index_t position, index_t count) const {
    if (position < 0 || count < 0) throw py::value_error("position and count must be >= 0");
    py::array_t<std::int64_t> rows(count);
    index_t written = 0;
    const index_t next = split_.held_out_rows(position, count, rows.mutable_data(), &written);
    return py::make_tuple(rows[py::slice(0, written, 1)], next);
  }

  // The first `count` training rows of the epoch keyed by `key` (what train_epoch visits).
  py::array_t<std::int64_t> epoch_rows(std::uint64_t key, index_t count) const {
    RowCursor cursor(split_, key);
    if (count < 0 || count > cursor.size()) throw py::value_error("count must be in [0, training rows]");
    py::array_t<std::int64_t> rows(count);
    cursor.next(count, rows.mutable_data());
    return rows;
  }

 private:
  // class_of for a 1-D array of class codes, int64, uint8 or float32 (a binary target); a code
  // outside [0, classes), NaN included, reads as -1, which RowSplit refuses.
  static std::function<index_t(index_t)> class_reader(const py::object& classes, index_t n, index_t count) {
    if (py::isinstance<py::array_t<std::int64_t>>(classes)) {
      const std::int64_t* c = checked<std::int64_t>(classes, "classes", {n}, false);
      return [c, count](index_t row) { return c[row] >= 0 && c[row] < count ? index_t(c[row]) : index_t(-1); };
    }
    if (py::isinstance<py::array_t<std::uint8_t>>(classes)) {
      const std::uint8_t* c = checked<std::uint8_t>(classes, "classes", {n}, false);
      return [c, count](index_t row) { return c[row] < count ? index_t(c[row]) : index_t(-1); };
    }
    const float* c = checked<float>(classes, "classes", {n}, false);
    return [c, count](index_t row) {
      return c[row] >= 0.0f && c[row] < float(count) ? index_t(c[row]) : index_t(-1);
    };
  }

  py::object classes_;
  RowSplit split_;
};

// The model object: its layers and the three flat arrays it trains in place (kept alive
// here, so the pointers stay valid for as long as the object exists).
class Model {
 public:
  Model(std::vector<LayerSpec> layers, py::array params, py::array grads, py::array buffers, index_t in_features)
      : params_(std::move(params)), grads_(std::move(grads)), buffers_(std::move(buffers)) {
    require_1d(params_, "params");
    with_float_type(params_, [&](auto tag) {
      auto v = view<decltype(tag)>(std::move(layers), in_features);
      validate_model(v);
      layers_ = std::move(v.layers);
      return 0;
    });
    in_features_ = in_features;
  }

  // Inference over x (N, in_features) into out (N, out_features), with the GIL released.
  void predict(const py::object& x, const py::object& out) {
    with_float_type(params_, [&](auto tag) {
      using T = decltype(tag);
      ModelView<T> model = view<T>(layers_, in_features_);
      require_2d(x, "x");
      const index_t n = dim(x, 0);
      const T* xp = checked<T>(x, "x", {n, in_features_}, false);
      T* yp = checked<T>(out, "out", {n, model.out_features()}, true);
      if (n == 0) return 0;
      py::gil_scoped_release release;
      fastnn::predict(model, xp, n, yp);
      return 0;
    });
  }

  index_t in_features() const { return in_features_; }
  index_t out_features() const { return layers_.back().out; }
  const std::vector<LayerSpec>& layers() const { return layers_; }

  EpochResult train_epoch(const py::object& x, const py::object& y, const py::object& labels, const py::object& weights,
                          const py::object& order, OptimizerKind kind, const OptimizerHyper& hyper,
                          const py::object& state0, const py::object& state1, const py::object& state2,
                          const py::object& weight_mask, const EpochConfig& config, const py::object& reduce, int rank,
                          int ranks, std::uint64_t order_key) {
    return with_float_type(params_, [&](auto tag) {
      using T = decltype(tag);
      ModelView<T> model = view<T>(layers_, in_features_);
      EpochData<T> data = epoch_data<T>(x, y, labels, weights, order, model.out_features(), config.loss);
      data.order_key = order_key;
      OptimizerState<T> opt;
      opt.kind = kind;
      opt.hyper = hyper;
      opt.state0 = optional_checked<T>(state0, "state0", {model.n_params}, true);
      opt.state1 = optional_checked<T>(state1, "state1", {model.n_params}, true);
      opt.state2 = optional_checked<T>(state2, "state2", {model.n_params}, true);
      opt.weight_mask = optional_checked<std::uint8_t>(weight_mask, "weight_mask", {model.n_params}, false);
      if (config.batch_size < 1) throw py::value_error("batch_size must be >= 1");
      if (ranks < 1 || rank < 0 || rank >= ranks) throw py::value_error("rank must be in [0, ranks)");
      Reduction reduction;
      reduction.rank = rank;
      reduction.ranks = ranks;
      if (!reduce.is_none()) {
        const py::object* fn = &reduce;  // lives (GIL-owned) in this frame beyond the call
        reduction.sum = [fn] {
          py::gil_scoped_acquire gil;
          (*fn)();
        };
      }
      py::gil_scoped_release release;
      return fastnn::train_epoch(model, data, opt, config, reduction);
    });
  }

 private:
  template <typename T>
  ModelView<T> view(std::vector<LayerSpec> layers, index_t in_features) const {
    ModelView<T> v;
    v.layers = std::move(layers);
    v.n_params = dim(params_, 0);
    v.params = checked<T>(params_, "params", {v.n_params}, true);
    v.grads = checked<T>(grads_, "grads", {v.n_params}, true);
    v.n_buffers = dim(buffers_, 0);
    v.buffers = checked<T>(buffers_, "buffers", {v.n_buffers}, true);
    v.in_features = in_features;
    return v;
  }

  template <typename T>
  EpochData<T> epoch_data(const py::object& x, const py::object& y, const py::object& labels,
                          const py::object& weights, const py::object& order, index_t outputs, LossKind loss) const {
    EpochData<T> d;
    require_2d(x, "x");
    d.n = dim(x, 0);
    d.x = checked<T>(x, "x", {d.n, in_features_}, false);
    if (!y.is_none()) {
      d.k = outputs;
      d.y = checked<T>(y, "y", {d.n, outputs}, false);
    }
    if (py::isinstance<py::array_t<std::uint8_t>>(labels))
      d.labels8 = checked<std::uint8_t>(labels, "labels", {d.n}, false);
    else
      d.labels = optional_checked<std::int64_t>(labels, "labels", {d.n}, false);
    // bce takes 0/1 labels as its targets: the engine makes each batch's float targets of them
    const bool label_targets = d.has_labels() && loss == LossKind::bce_logits;
    if (label_targets) {
      if (outputs != 1) throw py::value_error("0/1 labels as bce targets need a model with one output");
      d.k = 1;
    }
    d.weights = optional_checked<T>(weights, "weights", {d.n}, false);
    if (py::isinstance<BoundRowSplit>(order)) {
      d.split = &order.cast<const BoundRowSplit&>().split();
      if (d.split->rows() != d.n) throw py::value_error("order (a RowSplit) must split the rows of x");
    } else {
      d.order = checked<std::int64_t>(order, "order", {d.n}, false);
      for (index_t i = 0; i < d.n; ++i)
        if (d.order[i] < 0 || d.order[i] >= d.n) throw py::value_error("order must be a permutation of the rows");
    }
    if (!d.y == !d.has_labels()) throw py::value_error("pass exactly one of y and labels");
    const index_t classes = label_targets ? 2 : outputs;
    if (d.has_labels())
      for (index_t i = 0; i < d.n; ++i)
        if (d.label(i) < 0 || d.label(i) >= classes)
          throw py::value_error(label_targets ? "labels as bce targets must be 0 or 1"
                                              : "labels must be class indices of the output");
    return d;
  }

  py::array params_, grads_, buffers_;
  std::vector<LayerSpec> layers_;
  index_t in_features_ = 0;
};

py::list fired_arrays(const EpochResult& r) {
  py::list fired;
  for (size_t i = 0; i + 1 < r.fired_offset.size(); ++i) {
    py::array_t<bool> f(r.fired_offset[i + 1] - r.fired_offset[i]);
    for (index_t j = 0; j < f.size(); ++j) f.mutable_data()[j] = r.fired[size_t(r.fired_offset[i] + j)] != 0;
    fired.append(f);
  }
  return fired;
}

void bind_layers(py::module_& m) {
  py::enum_<LayerKind>(m, "LayerKind")
      .value("dense", LayerKind::dense)
      .value("activation", LayerKind::activation)
      .value("batchnorm", LayerKind::batchnorm)
      .value("dropout", LayerKind::dropout);
  py::class_<LayerSpec>(m, "LayerSpec", "One layer as offsets into the model's flat buffers (-1: absent).")
      .def(py::init<>())
      .def_readwrite("kind", &LayerSpec::kind)
      .def_readwrite("in_features", &LayerSpec::in)
      .def_readwrite("out_features", &LayerSpec::out)
      .def_readwrite("activation", &LayerSpec::act)
      .def_readwrite("alpha", &LayerSpec::alpha)
      .def_readwrite("weight", &LayerSpec::weight)
      .def_readwrite("bias", &LayerSpec::bias)
      .def_readwrite("slope", &LayerSpec::slope)
      .def_readwrite("gamma", &LayerSpec::gamma)
      .def_readwrite("beta", &LayerSpec::beta)
      .def_readwrite("running_mean", &LayerSpec::running_mean)
      .def_readwrite("running_var", &LayerSpec::running_var)
      .def_readwrite("momentum", &LayerSpec::momentum)
      .def_readwrite("eps", &LayerSpec::eps)
      .def_readwrite("rate", &LayerSpec::rate)
      .def_readwrite("seed", &LayerSpec::seed)
      .def_readwrite("param_begin", &LayerSpec::param_begin)
      .def_readwrite("param_size", &LayerSpec::param_size);
}

void bind_schedule_and_hyper(py::module_& m) {
  py::enum_<ScheduleKind>(m, "ScheduleKind")
      .value("constant", ScheduleKind::constant)
      .value("exponential", ScheduleKind::exponential)
      .value("step", ScheduleKind::step)
      .value("cosine", ScheduleKind::cosine);
  py::class_<Schedule>(m, "Schedule", "A built-in learning-rate schedule; at(i) is the rate of update i (from 0).")
      .def(py::init([](ScheduleKind kind, double lr, double a, double b, bool staircase) {
             Schedule s;
             s.kind = kind;
             s.lr = lr;
             s.a = a;
             s.b = b;
             s.staircase = staircase;
             return s;
           }),
           py::arg("kind"), py::arg("lr"), py::arg("a") = 0.0, py::arg("b") = 0.0, py::arg("staircase") = false)
      .def_readonly("kind", &Schedule::kind)
      .def_readonly("lr", &Schedule::lr)
      .def("at", &Schedule::at, py::arg("iteration"));
  py::class_<OptimizerHyper>(m, "OptimizerHyper", "An optimizer's hyperparameters, by name.")
      .def(py::init([](double lr, double momentum, double beta1, double beta2, double eps, double rho,
                       double weight_decay, double l1, double l2, bool nesterov, bool centered) {
             return OptimizerHyper{lr, momentum, beta1, beta2, eps, rho, weight_decay, l1, l2, nesterov, centered};
           }),
           py::kw_only(), py::arg("lr"), py::arg("momentum") = 0.0, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
           py::arg("eps") = 1e-7, py::arg("rho") = 0.9, py::arg("weight_decay") = 0.0, py::arg("l1") = 0.0,
           py::arg("l2") = 0.0, py::arg("nesterov") = false, py::arg("centered") = false)
      .def_readwrite("lr", &OptimizerHyper::lr)
      .def_readonly("momentum", &OptimizerHyper::momentum)
      .def_readonly("beta1", &OptimizerHyper::beta1)
      .def_readonly("beta2", &OptimizerHyper::beta2)
      .def_readonly("eps", &OptimizerHyper::eps)
      .def_readonly("rho", &OptimizerHyper::rho)
      .def_readonly("weight_decay", &OptimizerHyper::weight_decay)
      .def_readonly("l1", &OptimizerHyper::l1)
      .def_readonly("l2", &OptimizerHyper::l2)
      .def_readonly("nesterov", &OptimizerHyper::nesterov)
      .def_readonly("centered", &OptimizerHyper::centered);
}

void bind_epoch(py::module_& m) {
  py::class_<EpochConfig>(m, "EpochConfig", "The settings of one train_epoch call, by name.")
      .def(py::init<>())
      .def_readwrite("batch_size", &EpochConfig::batch_size)
      .def_readwrite("loss", &EpochConfig::loss)
      .def_readwrite("delta", &EpochConfig::delta)
      .def_readwrite("schedule", &EpochConfig::schedule)
      .def_readwrite("iteration", &EpochConfig::iteration)
      .def_readwrite("step", &EpochConfig::step)
      .def_readwrite("clip_norm", &EpochConfig::clip_norm)
      .def_readwrite("skip_nonfinite", &EpochConfig::skip_nonfinite)
      .def_readwrite("max_batches", &EpochConfig::max_batches)
      .def_readwrite("statistics", &EpochConfig::statistics);
  py::class_<EpochResult>(m, "EpochResult", "What one epoch did (train.hpp documents every field).")
      .def_readonly("loss_sum", &EpochResult::loss_sum)
      .def_readonly("rows", &EpochResult::rows)
      .def_readonly("steps", &EpochResult::steps)
      .def_readonly("skipped", &EpochResult::skipped)
      .def_readonly("diverged", &EpochResult::diverged)
      .def_readonly("bad_step", &EpochResult::bad_step)
      .def_readonly("bad_layer", &EpochResult::bad_layer)
      .def_readonly("zero_fraction", &EpochResult::zero_fraction)
      .def_readonly("grad_norm", &EpochResult::grad_norm)
      .def_readonly("weight_norm", &EpochResult::weight_norm)
      .def_readonly("update_ratio", &EpochResult::update_ratio)
      .def_readonly("zeros", &EpochResult::zeros)
      .def_readonly("seen", &EpochResult::seen)
      .def_property_readonly("fired", &fired_arrays);
}

void bind_row_split(py::module_& m) {
  py::class_<BoundRowSplit>(m, "RowSplit",
                            "Which of n rows train and which are held out, with no per-row storage: of each class c, "
                            "the first held[c] rows in the order of a permutation of [0, n) keyed by key (class "
                            "codes in classes, int64, uint8 or float32; None: one class). key=None: every row trains. "
                            "train_epoch visits the training rows in the order keyed by its order_key.")
      .def(py::init<index_t, const py::object&, std::vector<index_t>, const py::object&>(), py::arg("n"),
           py::arg("key") = py::none(), py::arg("held") = std::vector<index_t>{}, py::arg("classes") = py::none())
      .def_property_readonly("rows", [](const BoundRowSplit& s) { return s.split().rows(); })
      .def_property_readonly("held_out", [](const BoundRowSplit& s) { return s.split().held_out(); })
      .def_property_readonly("training", [](const BoundRowSplit& s) { return s.split().training(); })
      .def("held_out_rows", &BoundRowSplit::held_out_rows, py::arg("position"), py::arg("count"),
           "Up to count held-out rows, searching from position: (rows, the position to continue from).")
      .def("epoch_rows", &BoundRowSplit::epoch_rows, py::arg("key"), py::arg("count"),
           "The first count training rows in the order of the epoch keyed by key.");
}

void bind_model(py::module_& m) {
  py::class_<Model>(m, "Model",
                    "A Sequential model as the engine sees it: its layers and its flat params, grads and buffers "
                    "(float32 or float64), validated once.")
      .def(py::init<std::vector<LayerSpec>, py::array, py::array, py::array, index_t>(), py::arg("layers"),
           py::arg("params"), py::arg("grads"), py::arg("buffers"), py::arg("in_features"))
      .def_property_readonly("in_features", &Model::in_features)
      .def_property_readonly("out_features", &Model::out_features)
      .def_property_readonly("layers", &Model::layers)
      .def("predict", &Model::predict, py::arg("x"), py::arg("out"),
           "Inference (dropout off, batch norm on running statistics) into out, GIL released.")
      .def("train_epoch", &Model::train_epoch, py::arg("x"), py::arg("y"), py::arg("labels"), py::arg("weights"),
           py::arg("order"), py::arg("optimizer"), py::arg("hyper"), py::arg("state0"), py::arg("state1"),
           py::arg("state2"), py::arg("weight_mask"), py::arg("config"), py::kw_only(), py::arg("reduce") = py::none(),
           py::arg("rank") = 0, py::arg("ranks") = 1, py::arg("order_key") = 0,
           "One epoch with the GIL released. labels (int64 or uint8) are class indices, or with the bce loss "
           "0/1 targets. order is a permutation of the rows (int64), or a RowSplit whose "
           "training rows are visited in the order keyed by order_key. reduce (optional) is called after every "
           "backward pass to sum the flat grads over the processes sharing each batch, in place (rank of ranks "
           "takes its part of every batch).");
}

}  // namespace

// The schedule and optimizer-hyperparameter classes, which the per-kernel bindings
// (ops.cpp: optimizer_step) take too: bound first, so signatures name them.
void bind_training_types(py::module_& m) { bind_schedule_and_hyper(m); }

// TeamPolicy's values in order, as Python names them.
const std::array<std::string, 3> team_policy_names = {"auto", "team", "alternate"};

void bind_training(py::module_& m) {
  bind_layers(m);
  bind_epoch(m);
  bind_row_split(m);
  bind_model(m);
  m.def("_team_flops_per_thread", &team_flops_per_thread,
        "The arithmetic per training step (flops) worth one more thread of the engine's team.");
  m.def("_set_team_flops_per_thread", &set_team_flops_per_thread, py::arg("flops"),
        "Set it (tests: small models on a team; results never depend on it).");
  m.def(
      "_team_policy", [] { return team_policy_names[size_t(team_policy())]; },
      "How the engine picks each step's team: 'auto', 'team' or 'alternate' (see _set_team_policy).");
  m.def(
      "_set_team_policy",
      [](const std::string& name) {
        for (size_t i = 0; i < team_policy_names.size(); ++i)
          if (name == team_policy_names[i]) return set_team_policy(TeamPolicy(int(i)));
        throw py::value_error("policy must be 'auto', 'team' or 'alternate', got '" + name + "'");
      },
      py::arg("policy"),
      "'auto' (time one thread against the team now and then, keep the faster), 'team' (always "
      "the team the bar allows) or 'alternate' (team and one thread in turn, every step): tests.");
}

}  // namespace fastnn
