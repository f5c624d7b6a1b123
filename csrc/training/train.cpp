// The training engine behind Sequential.train_epoch (train.hpp). ISA-independent: every step
// calls the active kernel table, exactly the kernels (and arguments) the per-call Python
// path uses, so an epoch equals a Python loop of train_step over the same batches, bitwise.
// One class, Epoch, holds the workspace; each stage of a step is one member function.
#include "train.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>

#include "dispatch.hpp"
#include "threading.hpp"

namespace fastnn {

double Schedule::at(std::int64_t iteration) const {
  const double t = double(iteration);
  switch (kind) {
    case ScheduleKind::constant: return lr;
    case ScheduleKind::exponential: {
      const double p = t / a;
      return lr * std::pow(b, staircase ? std::floor(p) : p);
    }
    case ScheduleKind::step: return lr * std::pow(b, std::floor(t / a));
    case ScheduleKind::cosine: {
      const double u = std::min(t, a) / a;
      return lr * ((1.0 - b) * 0.5 * (1.0 + std::cos(M_PI * u)) + b);
    }
  }
  return lr;
}

namespace {

// Workspace buffers start on a 64-byte boundary (a cache line, an AVX-512 vector), so where
// a buffer begins never depends on what was allocated before it.
constexpr std::align_val_t kWorkspaceAlign{64};

struct AlignedDelete {
  template <typename T>
  void operator()(T* p) const { ::operator delete[](p, kWorkspaceAlign); }
};

template <typename T>
using Buffer = std::unique_ptr<T[], AlignedDelete>;

template <typename T>
Buffer<T> buffer(index_t count) {
  static_assert(std::is_trivial<T>::value, "workspace buffers hold plain numbers");
  const size_t n = size_t(std::max<index_t>(count, 1));
  return Buffer<T>(static_cast<T*>(::operator new[](n * sizeof(T), kWorkspaceAlign)));
}

// A dropout layer's kernel arguments for n elements at one training step (forward: x -> y;
// backward: dy -> dx, same mask key).
template <typename T>
DropoutArgs<T> dropout_args(const LayerSpec& l, index_t n, std::uint64_t step, const T* in, T* out) {
  DropoutArgs<T> a;
  a.n = n;
  a.x = in;
  a.y = out;
  a.rate = l.rate;
  a.seed = l.seed;
  a.step = step;
  a.nthreads = threads_for(double(n), kElementsPerThread);
  return a;
}

// A dense layer's fused GEMM (y = act(h @ weight + bias)) for `rows` rows; preact receives
// the pre-activation (PReLU's backward needs it), or null.
template <typename T>
GemmArgs<T> dense_args(const LayerSpec& l, const T* params, index_t rows, const T* h, T* y, T* preact) {
  GemmArgs<T> g;
  g.m = rows;
  g.k = l.in;
  g.n = l.out;
  g.a = h;
  g.rsa = l.in;
  g.b = params + l.weight;
  g.rsb = l.out;
  g.c = y;
  g.ldc = l.out;
  g.bias = l.bias >= 0 ? params + l.bias : nullptr;
  g.act = l.act;
  g.alpha = T(l.alpha);
  g.slope = l.slope >= 0 ? params + l.slope : nullptr;
  g.preact = preact;
  g.ldz = l.out;
  g.nthreads = threads_for(2.0 * double(rows) * double(l.in) * double(l.out), kGemmFlopsPerThread);
  return g;
}

// An activation layer's elementwise pass over rows x w.
template <typename T>
ActArgs<T> activation_args(const LayerSpec& l, index_t rows, index_t w, const T* h, T* y) {
  ActArgs<T> f;
  f.rows = rows;
  f.cols = w;
  f.x = h;
  f.out = y;
  f.act = l.act;
  f.alpha = T(l.alpha);
  f.nthreads = threads_for(double(rows) * double(w), kElementsPerThread);
  return f;
}

// A batch-norm layer's forward over rows x w: training (batch statistics into mean and
// invstd, running statistics updated) or inference (running statistics).
template <typename T>
BatchNormForwardArgs<T> batchnorm_args(const LayerSpec& l, T* params, T* buffers, index_t rows, index_t w,
                                       const T* h, T* y, T* mean, T* invstd) {
  BatchNormForwardArgs<T> f;
  f.n = rows;
  f.c = w;
  f.x = h;
  f.gamma = params + l.gamma;
  f.beta = params + l.beta;
  f.y = y;
  f.training = mean != nullptr;
  f.mean = mean;
  f.invstd = invstd;
  f.running_mean = buffers + l.running_mean;
  f.running_var = buffers + l.running_var;
  f.eps = l.eps;
  f.momentum = l.momentum;
  f.nthreads = threads_for(double(rows) * double(w), kElementsPerThread);
  return f;
}

// The first layer whose gradient is not finite (-1 when none is: cannot happen when the
// total is not finite, but keeps the caller honest).
template <typename T>
index_t first_nonfinite_layer(const TypedKernels<T>& k, const ModelView<T>& a) {
  for (index_t i = 0; i < index_t(a.layers.size()); ++i) {
    const LayerSpec& l = a.layers[size_t(i)];
    if (l.param_size > 0 && !std::isfinite(k.sum_squares(a.grads + l.param_begin, l.param_size, 1))) return i;
  }
  return -1;
}

// Per layer: |params - before| / |before| over the layer's parameters (once per epoch, so a
// plain float64 loop).
template <typename T>
void update_ratios(const ModelView<T>& a, const T* before, std::vector<double>& ratio) {
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerSpec& l = a.layers[i];
    if (l.param_size == 0) continue;
    double delta = 0.0, base = 0.0;
    for (index_t j = l.param_begin; j < l.param_begin + l.param_size; ++j) {
      const double d = double(a.params[j]) - double(before[j]);
      delta += d * d;
      base += double(before[j]) * double(before[j]);
    }
    ratio[i] = base > 0.0 ? std::sqrt(delta / base) : NAN;
  }
}

// The workspace of one epoch, sized once for the largest batch, and the stages of a step.
template <typename T>
class Epoch {
 public:
  Epoch(const ModelView<T>& model, const EpochData<T>& data, const OptimizerState<T>& optimizer,
        const EpochConfig& config, const Reduction& reduction);
  EpochResult run();

 private:
  index_t gather(index_t b0, index_t m);
  void forward(index_t rows, std::uint64_t step);
  double loss(index_t rows);
  void backward(index_t rows, std::uint64_t step);
  void reduce(index_t rows, index_t total, bool finite_loss);
  index_t gradient_norms();
  void clip();
  void update(index_t rows, double batch_loss, bool last);
  bool reject(index_t layer, index_t batch);
  index_t part_rows(index_t m, int rank) const;
  void finish();

  T* backward_layer(const LayerSpec& l, index_t i, index_t rows, std::uint64_t step, T* g, T* next);

  const ModelView<T>& a_;
  const EpochData<T>& d_;
  const OptimizerState<T>& o_;
  const EpochConfig& c_;
  const Reduction& red_;
  const TypedKernels<T>& k_;
  const index_t L_, B_;
  index_t width_;
  bool single_row_batches_;  // batch norm cannot train on a batch (part) of one row
  EpochResult r_;
  std::vector<Buffer<T>> out_, preact_, stat_mean_, stat_invstd_;
  std::vector<Buffer<std::uint8_t>> mask_;
  std::vector<double> grad_norm_sum_, step_norm_;
  std::vector<T> colmax_;  // per tracked unit, its largest output so far (fired = it exceeded 0 once)
  Buffer<T> xb_, yb_, wb_, buffers_before_, params_before_, g0_, g1_, dz_;
  Buffer<std::int64_t> lb_;
  Buffer<double> partials_;
  std::vector<const T*> input_, output_;
  const T* result_ = nullptr;  // the last layer's output of the current batch
  double squared_total_ = 0.0;  // without statistics: the squared global gradient norm
  index_t batches_ = 0;
};

template <typename T>
Epoch<T>::Epoch(const ModelView<T>& model, const EpochData<T>& data, const OptimizerState<T>& optimizer,
                const EpochConfig& config, const Reduction& reduction)
    : a_(model), d_(data), o_(optimizer), c_(config), red_(reduction), k_(kernels().of<T>()),
      L_(index_t(model.layers.size())), B_(config.batch_size), width_(model.in_features),
      single_row_batches_(model.has_batchnorm()) {
  for (const auto& l : a_.layers) width_ = std::max(width_, l.out);
  out_.resize(size_t(L_));
  preact_.resize(size_t(L_));
  stat_mean_.resize(size_t(L_));
  stat_invstd_.resize(size_t(L_));
  mask_.resize(size_t(L_));
  r_.zero_fraction.assign(size_t(L_), NAN);
  r_.grad_norm.assign(size_t(L_), NAN);
  r_.weight_norm.assign(size_t(L_), NAN);
  r_.update_ratio.assign(size_t(L_), NAN);
  r_.zeros.assign(size_t(L_), 0.0);
  r_.seen.assign(size_t(L_), 0.0);
  grad_norm_sum_.assign(size_t(L_), 0.0);
  step_norm_.assign(size_t(L_), 0.0);
  r_.fired_offset.assign(size_t(L_) + 1, 0);
  for (index_t i = 0; i < L_; ++i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    out_[size_t(i)] = buffer<T>(B_ * l.out);
    if (l.kind == LayerKind::dense && l.act == Activation::prelu) preact_[size_t(i)] = buffer<T>(B_ * l.out);
    if (l.kind == LayerKind::batchnorm) {
      stat_mean_[size_t(i)] = buffer<T>(l.out);
      stat_invstd_[size_t(i)] = buffer<T>(l.out);
    }
    if (l.kind == LayerKind::dropout) mask_[size_t(i)] = buffer<std::uint8_t>((B_ * l.out + 7) / 8);
    const bool tracked = l.kind == LayerKind::dense || l.kind == LayerKind::activation;
    r_.fired_offset[size_t(i) + 1] = r_.fired_offset[size_t(i)] + (tracked ? l.out : 0);
  }
  r_.fired.assign(size_t(r_.fired_offset.back()), 0);
  colmax_.assign(size_t(r_.fired_offset.back()), -std::numeric_limits<T>::infinity());
  xb_ = buffer<T>(B_ * a_.in_features);
  yb_ = buffer<T>(d_.y ? B_ * d_.k : 0);
  lb_ = buffer<std::int64_t>(d_.labels ? B_ : 0);
  wb_ = buffer<T>(d_.weights ? B_ : 0);
  // Running statistics before each batch: a batch that is not trained on (non-finite loss or
  // gradient) must leave no trace in them either.
  buffers_before_ = buffer<T>(a_.n_buffers);
  // The parameters before the epoch's last update, for the update-to-weight ratio.
  params_before_ = buffer<T>(a_.n_params);
  g0_ = buffer<T>(B_ * width_);
  g1_ = buffer<T>(B_ * width_);
  dz_ = buffer<T>(B_ * width_);
  partials_ = buffer<double>(dense_backward_partials(B_, width_));
  input_.assign(size_t(L_), nullptr);
  output_.assign(size_t(L_), nullptr);
}

// The rows of this process's part of a batch of m rows (0 when the part sits the step out:
// batch norm cannot normalize one row).
template <typename T>
index_t Epoch<T>::part_rows(index_t m, int rank) const {
  index_t begin, end;
  shard_bounds(m, red_.ranks, rank, begin, end);
  const index_t rows = end - begin;
  return rows == 1 && single_row_batches_ ? 0 : rows;
}

// Copy this process's rows of the batch starting at b0 into the workspace; their count.
template <typename T>
index_t Epoch<T>::gather(index_t b0, index_t m) {
  index_t begin, end;
  shard_bounds(m, red_.ranks, red_.rank, begin, end);
  const index_t rows = part_rows(m, red_.rank);
  for (index_t r0 = 0; r0 < rows; ++r0) {
    const index_t src = d_.order[b0 + begin + r0];
    std::memcpy(xb_.get() + r0 * a_.in_features, d_.x + src * a_.in_features, size_t(a_.in_features) * sizeof(T));
    if (d_.y) std::memcpy(yb_.get() + r0 * d_.k, d_.y + src * d_.k, size_t(d_.k) * sizeof(T));
    if (d_.labels) lb_[size_t(r0)] = d_.labels[src];
    if (d_.weights) wb_[size_t(r0)] = d_.weights[src];
  }
  return rows;
}

// Stage 1a: every layer forward in training mode, with the zero/fired statistics measured
// before any dropout.
template <typename T>
void Epoch<T>::forward(index_t rows, std::uint64_t step) {
  const T* h = xb_.get();
  index_t w = a_.in_features;
  for (index_t i = 0; i < L_; ++i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    T* y = out_[size_t(i)].get();
    input_[size_t(i)] = h;
    switch (l.kind) {
      case LayerKind::dense: k_.gemm(dense_args(l, a_.params, rows, h, y, preact_[size_t(i)].get())); break;
      case LayerKind::activation: k_.act_forward(activation_args(l, rows, w, h, y)); break;
      case LayerKind::batchnorm:
        k_.batchnorm_forward(batchnorm_args(l, a_.params, a_.buffers, rows, w, h, y, stat_mean_[size_t(i)].get(),
                                            stat_invstd_[size_t(i)].get()));
        break;
      case LayerKind::dropout: {
        if (l.rate == 0.0) {
          y = const_cast<T*>(h);  // identity: pass the input through
          break;
        }
        DropoutArgs<T> f = dropout_args(l, rows * w, step, h, y);
        f.mask_bits = mask_[size_t(i)].get();
        k_.dropout_forward(f);
        break;
      }
    }
    if (c_.statistics && (l.kind == LayerKind::dense || l.kind == LayerKind::activation)) {
      r_.zeros[size_t(i)] += double(k_.activation_stats(y, rows, l.out, colmax_.data() + r_.fired_offset[size_t(i)]));
      r_.seen[size_t(i)] += double(rows) * double(l.out);
    }
    output_[size_t(i)] = y;
    h = y;
    w = l.kind == LayerKind::dense ? l.out : w;
  }
  result_ = h;
}

// Stage 1b: the loss of the batch part and its gradient (into g0).
template <typename T>
double Epoch<T>::loss(index_t rows) {
  LossArgs<T> la;
  la.kind = c_.loss;
  la.n = rows;
  la.k = a_.out_features();
  la.pred = result_;
  la.target = d_.y ? yb_.get() : nullptr;
  la.labels = d_.labels ? lb_.get() : nullptr;
  la.weights = d_.weights ? wb_.get() : nullptr;
  la.weight_sum = double(rows);  // weights have mean 1 over the data: a batch's loss stays a mean
  la.delta = c_.delta;
  la.grad = g0_.get();
  la.nthreads = threads_for(double(rows) * double(la.k) * 8.0, kElementsPerThread);
  return k_.loss(la);
}

template <typename T>
T* Epoch<T>::backward_layer(const LayerSpec& l, index_t i, index_t rows, std::uint64_t step, T* g, T* next) {
  const index_t wi = l.kind == LayerKind::dense ? l.in : l.out;
  switch (l.kind) {
    case LayerKind::dense: {
      DenseBackwardArgs<T> d;
      d.n = rows;
      d.ic = l.in;
      d.oc = l.out;
      d.dy = g;
      d.x = input_[size_t(i)];
      d.w = a_.params + l.weight;
      d.y = output_[size_t(i)];
      d.z = preact_[size_t(i)].get();
      d.slope = l.slope >= 0 ? a_.params + l.slope : nullptr;
      d.act = l.act;
      d.alpha = T(l.alpha);
      d.dx = i > 0 ? next : nullptr;
      d.dw = a_.grads + l.weight;
      d.db = l.bias >= 0 ? a_.grads + l.bias : nullptr;
      d.dslope = l.slope >= 0 ? a_.grads + l.slope : nullptr;
      d.dz_workspace = dz_.get();
      d.partials_workspace = partials_.get();
      d.nthreads = max_threads();
      k_.dense_backward(d);
      return next;
    }
    case LayerKind::activation: {
      ActBackwardArgs<T> d;
      d.rows = rows;
      d.cols = wi;
      d.dy = g;
      d.y = output_[size_t(i)];
      d.act = l.act;
      d.alpha = T(l.alpha);
      d.dz = next;
      d.nthreads = threads_for(double(rows) * double(wi), kElementsPerThread);
      k_.act_backward(d);
      return next;
    }
    case LayerKind::batchnorm: {
      BatchNormBackwardArgs<T> d;
      d.n = rows;
      d.c = wi;
      d.dy = g;
      d.x = input_[size_t(i)];
      d.gamma = a_.params + l.gamma;
      d.mean = stat_mean_[size_t(i)].get();
      d.invstd = stat_invstd_[size_t(i)].get();
      d.dx = next;
      d.dgamma = a_.grads + l.gamma;
      d.dbeta = a_.grads + l.beta;
      d.nthreads = threads_for(double(rows) * double(wi), kElementsPerThread);
      k_.batchnorm_backward(d);
      return next;
    }
    case LayerKind::dropout: {
      if (l.rate == 0.0) return g;  // identity
      DropoutArgs<T> d = dropout_args(l, rows * wi, step, g, next);
      d.mask_in = mask_[size_t(i)].get();
      k_.dropout_backward(d);
      return next;
    }
  }
  return next;
}

// Stage 1c: every layer backward, writing the flat gradient.
template <typename T>
void Epoch<T>::backward(index_t rows, std::uint64_t step) {
  T* g = g0_.get();
  T* spare = g1_.get();
  for (index_t i = L_ - 1; i >= 0; --i) {
    T* next = backward_layer(a_.layers[size_t(i)], i, rows, step, g, spare);
    if (next != g) {
      spare = g;
      g = next;
    }
  }
}

// Stage 2: the gradient reduction (see Reduction). ``rows`` of the batch's ``total`` are
// this process's; a part of 0 rows contributes zeros, a non-finite loss NaN.
template <typename T>
void Epoch<T>::reduce(index_t rows, index_t total, bool finite_loss) {
  const int threads = threads_for(double(a_.n_params), kElementsPerThread);
  if (rows == 0) {
    std::fill(a_.grads, a_.grads + a_.n_params, T(0));
  } else if (!finite_loss) {
    std::fill(a_.grads, a_.grads + a_.n_params, std::numeric_limits<T>::quiet_NaN());
  } else if (rows * red_.ranks != total) {  // parts of unequal size: weight by their rows
    k_.scale(a_.grads, a_.n_params, T(double(rows) * red_.ranks / double(total)), threads);
  }
  if (red_.sum) red_.sum();
  if (red_.ranks > 1) k_.scale(a_.grads, a_.n_params, T(1.0 / red_.ranks), threads);
}

// Stage 3a: gradient norms (per layer with statistics, else one global pass). Returns -2
// when every gradient is finite, else the first layer whose gradient is not.
template <typename T>
index_t Epoch<T>::gradient_norms() {
  if (!c_.statistics) {
    const double total = k_.sum_squares(a_.grads, a_.n_params, threads_for(double(a_.n_params), kElementsPerThread));
    squared_total_ = total;  // the squared global norm, for clip()
    return std::isfinite(total) ? -2 : first_nonfinite_layer(k_, a_);
  }
  index_t bad = -2;
  for (index_t i = 0; i < L_; ++i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    if (l.param_size == 0) continue;
    const double s = k_.sum_squares(a_.grads + l.param_begin, l.param_size, 1);
    step_norm_[size_t(i)] = std::sqrt(s);
    if (!std::isfinite(s) && bad == -2) bad = i;
  }
  if (bad == -2)
    for (index_t i = 0; i < L_; ++i) grad_norm_sum_[size_t(i)] += step_norm_[size_t(i)];
  return bad;
}

// Stage 3b: clipping by global norm, as optim.clip_by_global_norm: one exact factor for all.
template <typename T>
void Epoch<T>::clip() {
  if (c_.clip_norm < 0.0) return;
  const int threads = threads_for(double(a_.n_params), kElementsPerThread);
  const double norm = c_.statistics ? std::sqrt(k_.sum_squares(a_.grads, a_.n_params, threads))
                                    : std::sqrt(squared_total_);
  if (norm > c_.clip_norm) k_.scale(a_.grads, a_.n_params, T(c_.clip_norm / norm), threads);
}

// Stage 4: the optimizer update, and the epoch's tallies.
template <typename T>
void Epoch<T>::update(index_t rows, double batch_loss, bool last) {
  if (last && c_.statistics) std::memcpy(params_before_.get(), a_.params, size_t(a_.n_params) * sizeof(T));
  OptimizerArgs<T> o;
  o.kind = o_.kind;
  set_hyper(o, o_.hyper);
  o.state0 = o_.state0;
  o.state1 = o_.state1;
  o.state2 = o_.state2;
  o.weight_mask = o_.weight_mask;
  o.n = a_.n_params;
  o.params = a_.params;
  o.grads = a_.grads;
  o.lr = c_.schedule.at(c_.iteration + r_.steps);
  o.step = c_.iteration + r_.steps + 1;
  o.nthreads = threads_for(double(a_.n_params), kElementsPerThread);
  k_.optimizer_step(o);
  r_.loss_sum += batch_loss * double(rows);
  r_.rows += rows;
  r_.steps += 1;
  if (last && c_.statistics) update_ratios(a_, params_before_.get(), r_.update_ratio);
}

// A batch that is not trained on: undo its running-statistics update, then stop (true) or
// skip it (false).
template <typename T>
bool Epoch<T>::reject(index_t layer, index_t batch) {
  if (a_.n_buffers > 0) std::memcpy(a_.buffers, buffers_before_.get(), size_t(a_.n_buffers) * sizeof(T));
  if (r_.bad_step < 0) {
    r_.bad_step = batch;
    r_.bad_layer = layer;
  }
  if (c_.skip_nonfinite) {
    ++r_.skipped;
    return false;
  }
  r_.diverged = true;
  return true;
}

template <typename T>
EpochResult Epoch<T>::run() {
  const bool sharded = red_.active();
  for (index_t b0 = 0; b0 < d_.n; b0 += B_) {
    const index_t m = std::min(B_, d_.n - b0);
    index_t total = 0;
    for (int rank = 0; rank < red_.ranks; ++rank) total += part_rows(m, rank);
    if (total == 0) break;  // a last batch of one row with batch norm: not trained on this epoch
    if (c_.max_batches >= 0 && batches_ >= c_.max_batches) break;
    const index_t rest = d_.n - (b0 + m);
    const bool last = rest == 0 || (rest == 1 && single_row_batches_) ||
                      (c_.max_batches >= 0 && batches_ + 1 == c_.max_batches);
    const index_t batch = batches_++;
    const index_t rows = gather(b0, m);
    const std::uint64_t step = c_.step + std::uint64_t(batches_);
    if (a_.n_buffers > 0) std::memcpy(buffers_before_.get(), a_.buffers, size_t(a_.n_buffers) * sizeof(T));
    double batch_loss = 0.0;
    if (rows > 0) {
      forward(rows, step);
      batch_loss = loss(rows);
      if (!std::isfinite(batch_loss) && !sharded) {
        if (reject(-1, batch)) break;
        continue;
      }
      if (std::isfinite(batch_loss)) backward(rows, step);
    }
    if (sharded) reduce(rows, total, std::isfinite(batch_loss));
    const index_t bad = gradient_norms();
    if (bad != -2) {
      if (reject(bad, batch)) break;
      continue;
    }
    clip();
    update(rows, batch_loss, last);
  }
  finish();
  return std::move(r_);
}

template <typename T>
void Epoch<T>::finish() {
  for (size_t j = 0; j < colmax_.size(); ++j) r_.fired[j] = colmax_[j] > T(0);
  for (index_t i = 0; i < L_; ++i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    if (r_.seen[size_t(i)] > 0) r_.zero_fraction[size_t(i)] = r_.zeros[size_t(i)] / r_.seen[size_t(i)];
    if (l.param_size > 0) {
      r_.weight_norm[size_t(i)] = std::sqrt(k_.sum_squares(a_.params + l.param_begin, l.param_size, 1));
      if (c_.statistics && r_.steps > 0) r_.grad_norm[size_t(i)] = grad_norm_sum_[size_t(i)] / double(r_.steps);
    }
  }
}

}  // namespace

template <typename T>
bool ModelView<T>::has_batchnorm() const {
  return std::any_of(layers.begin(), layers.end(), [](const LayerSpec& l) { return l.kind == LayerKind::batchnorm; });
}

template <typename T>
void validate_model(const ModelView<T>& a) {
  if (a.layers.empty()) throw_invalid("the model has no layers");
  auto inside = [](index_t off, index_t count, index_t size) { return off >= 0 && count >= 0 && off + count <= size; };
  index_t width = a.in_features;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerSpec& l = a.layers[i];
    const std::string where = "layers[" + std::to_string(i) + "]: ";
    const index_t in = l.kind == LayerKind::dense ? l.in : width;
    if (in != width || l.out < 1 || (l.kind != LayerKind::dense && l.out != width))
      throw_invalid(where + "its width does not chain from the layer before (" + std::to_string(width) + " units)");
    bool ok = inside(l.param_begin, l.param_size, a.n_params);
    if (l.kind == LayerKind::dense)
      ok = ok && inside(l.weight, l.in * l.out, a.n_params) && (l.bias < 0 || inside(l.bias, l.out, a.n_params)) &&
           (l.slope < 0 || inside(l.slope, l.out, a.n_params)) && (l.act != Activation::prelu || l.slope >= 0);
    if (l.kind == LayerKind::batchnorm)
      ok = ok && inside(l.gamma, l.out, a.n_params) && inside(l.beta, l.out, a.n_params) &&
           inside(l.running_mean, l.out, a.n_buffers) && inside(l.running_var, l.out, a.n_buffers) &&
           l.eps > 0.0 && l.momentum >= 0.0 && l.momentum <= 1.0;
    if (l.kind == LayerKind::dropout) ok = ok && l.rate >= 0.0 && l.rate < 1.0;
    if (!ok) throw_invalid(where + "an offset falls outside the model's buffers, or a rate is out of range");
    width = l.out;
  }
}

template <typename T>
EpochResult train_epoch(const ModelView<T>& model, const EpochData<T>& data, const OptimizerState<T>& optimizer,
                        const EpochConfig& config, const Reduction& reduction) {
  return Epoch<T>(model, data, optimizer, config, reduction).run();
}

template <typename T>
void predict(const ModelView<T>& a, const T* x, index_t n, T* out) {
  const auto& k = kernels().of<T>();
  index_t width = a.in_features;
  bool prelu = false;
  for (const auto& l : a.layers) {
    width = std::max(width, l.out);
    prelu = prelu || (l.kind == LayerKind::dense && l.act == Activation::prelu);
  }
  constexpr index_t kChunk = 1024;  // rows per pass: the workspace stays in cache
  const index_t rows_max = std::min(n, kChunk);
  auto ping = buffer<T>(rows_max * width), pong = buffer<T>(rows_max * width);
  auto preact = buffer<T>(prelu ? rows_max * width : 0);
  const index_t L = index_t(a.layers.size());
  for (index_t r0 = 0; r0 < n; r0 += kChunk) {
    const index_t rows = std::min(kChunk, n - r0);
    const T* h = x + r0 * a.in_features;
    index_t w = a.in_features;
    for (index_t i = 0; i < L; ++i) {
      const LayerSpec& l = a.layers[size_t(i)];
      T* y = i == L - 1 ? out + r0 * a.out_features() : (h == ping.get() ? pong.get() : ping.get());
      if (l.kind == LayerKind::dense) {
        k.gemm(dense_args(l, a.params, rows, h, y, l.act == Activation::prelu ? preact.get() : nullptr));
      } else if (l.kind == LayerKind::activation) {
        k.act_forward(activation_args(l, rows, w, h, y));
      } else if (l.kind == LayerKind::batchnorm) {
        k.batchnorm_forward(batchnorm_args<T>(l, a.params, a.buffers, rows, w, h, y, nullptr, nullptr));
      } else {  // dropout: the identity at inference
        std::memcpy(y, h, size_t(rows * w) * sizeof(T));
      }
      h = y;
      w = l.out;
    }
  }
}

template struct ModelView<float>;
template struct ModelView<double>;
template void validate_model<float>(const ModelView<float>&);
template void validate_model<double>(const ModelView<double>&);
template void predict<float>(const ModelView<float>&, const float*, index_t, float*);
template void predict<double>(const ModelView<double>&, const double*, index_t, double*);
template EpochResult train_epoch<float>(const ModelView<float>&, const EpochData<float>&,
                                        const OptimizerState<float>&, const EpochConfig&, const Reduction&);
template EpochResult train_epoch<double>(const ModelView<double>&, const EpochData<double>&,
                                         const OptimizerState<double>&, const EpochConfig&, const Reduction&);

}  // namespace fastnn
