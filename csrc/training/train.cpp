// The training engine behind Sequential.train_epoch (train.hpp). ISA-independent: every step
// calls the active kernel table, exactly the kernels (and arguments) the per-call Python
// path uses, so an epoch equals a Python loop of train_step over the same batches, bitwise.
// One class, Epoch, holds the workspace; each stage of a step is one member function.
#include "train.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>

#include "dense_parts.hpp"
#include "dispatch.hpp"
#include "threading.hpp"

#ifdef _OPENMP
#include <omp.h>
#else
inline int omp_get_thread_num() { return 0; }
inline int omp_get_num_threads() { return 1; }
#endif

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
GemmArgs<T> dense_args(const LayerSpec& l, const T* params, index_t rows, const T* h, T* y, T* preact,
                       int thread_cap = 0) {
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
  g.nthreads = threads_for(2.0 * double(rows) * double(l.in) * double(l.out), kGemmFlopsPerThread, thread_cap);
  return g;
}

// An activation layer's elementwise pass over rows x w.
template <typename T>
ActArgs<T> activation_args(const LayerSpec& l, index_t rows, index_t w, const T* h, T* y, int thread_cap = 0) {
  ActArgs<T> f;
  f.rows = rows;
  f.cols = w;
  f.x = h;
  f.out = y;
  f.act = l.act;
  f.alpha = T(l.alpha);
  f.nthreads = threads_for(double(rows) * double(w), kElementsPerThread, thread_cap);
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

// Threads within a step. On a team the threads of one OpenMP region run the step's stages
// in order, with a barrier between stages where one reads what others wrote, each thread on
// its own range of a stage's work: rows of the batch (gather, forward GEMM and activation,
// input gradients), columns (dz with the bias and slope gradients, batch norm), rows of a
// weight gradient, ranges of elements (dropout).
// Every element is computed the same way whatever the ranges: rows are independent, a
// column's sums run over all rows in fixed chunks, a GEMM element sums over K in a fixed
// order (dense_parts.hpp). So the result is bitwise the same for any number of threads, and
// one thread runs exactly the kernels of the unthreaded step. Batch norm's statistics are
// per column over all rows, and dropout's mask is keyed by element.
// Split by rows alone, a weight gradient's threads would each read every row of the layer's
// input and dz, rows the other threads just wrote (and will write again next step: each
// such line moves between the cores twice a step). So when the batch part's row shards
// (kShardRows: dense layers sum their dW, db and PReLU slopes shard by shard, in shard order)
// share out evenly, each thread takes whole shards for the whole step and makes its shards'
// dW and column sums from its own rows alone: the first thread into the gradient itself,
// the others into per-shard scratch, added in shard order after one barrier at the end
// (reduce_shards): the same additions as one thread's shard-by-shard sums. The loss sums
// shard by shard too, and batch norm by rows: each thread makes its shards' statistics,
// then, after one barrier, every thread merges all of them in shard order.
constexpr index_t kRowAlign = 4;               // ranges of rows start at multiples of this
constexpr index_t kColumnAlign = 16;           // ranges of columns: whole vectors
constexpr index_t kLineElements = 16;          // ranges of a flat buffer: whole cache lines (float)
constexpr index_t kMaskElements = 512;         // ranges of a dropout's elements: whole 64-byte lines of its mask
// The largest per-shard dW scratch a team keeps; beyond it (a large batch of a large model),
// weight gradients split by their elements instead.
constexpr double kShardScratchBytes = 16.0 * 1024 * 1024;

// The stages of a step; each runs on a team's ranges or on the whole batch part.
enum class OpKind {
  pack_weights,
  gather,
  forward_sums,  // batch norm by rows: each thread's shard statistics, before its forward
  forward,
  loss,
  backward_sums,  // batch norm by rows: each thread's shard sums, before its backward
  backward,
  backward_dz,
  backward_weights,
  reduce_shards
};
// What a stage reads of the stage before: only its own thread's rows, or all of it; a
// serial stage runs on one thread. A stage that reads its own rows needs no barrier after a
// stage that wrote by rows (every row-split stage cuts the rows the same way); any other
// pair of stages has one between them.
enum class Reads { own_rows, everything, serial };
struct Op {
  OpKind kind;
  index_t layer;
  Reads reads;
  bool writes_rows;  // its threads write the rows of Epoch::rows_of
};

// What one thread of the team keeps: its sums workspace and its share of the statistics.
template <typename T>
struct Lane {
  Buffer<double> partials;     // act_backward's column-sum workspace for this thread's columns
  std::vector<double> zeros;   // per layer: exact zero outputs counted (whole numbers)
  std::vector<T> colmax;       // per tracked unit: its largest output so far
};

// [begin, end) of thread tid's share of n items, cut at multiples of align.
inline void thread_range(index_t n, index_t align, int tid, int nth, index_t& begin, index_t& end) {
  const index_t units = (n + align - 1) / align;
  begin = std::min(n, units * tid / nth * align);
  end = std::min(n, units * (tid + 1) / nth * align);
}

// Whether a layer's stages split the batch by rows on a team (by_shards: a step whose
// threads take whole shards). Batch norm's statistics run over all rows: it splits by rows
// only by shards (each thread sums its own shards, then every thread finishes the same
// statistics from all of them), else by columns; dropout by rows when every range of rows
// starts a whole mask word, else by ranges of kMaskElements elements.
inline bool splits_by_rows(const LayerSpec& l, bool by_shards) {
  if (l.kind == LayerKind::batchnorm) return by_shards;
  if (l.kind == LayerKind::dropout) return ((by_shards ? kShardRows : kRowAlign) * l.out) % kDropoutGroup == 0;
  return true;
}

// Narrows a batch-norm call on a matrix of c columns to thread tid's columns (whole
// vectors), on one thread; false when it has none. No result of a column depends on another
// column (see BatchNormForwardArgs): the row stride stays c, and every per-element or
// per-column pointer (null ones stay null) moves on to the thread's first column.
template <class Args, class... Pointers>
bool narrow_to_columns(Args& a, int tid, int nth, Pointers... pointers) {
  index_t j0, j1;
  thread_range(a.c, kColumnAlign, tid, nth, j0, j1);
  a.ld = a.c;
  a.c = j1 - j0;
  a.nthreads = 1;
  ((a.*pointers = a.*pointers ? a.*pointers + j0 : nullptr), ...);
  return j1 > j0;
}

template <typename T>
bool narrow_columns(BatchNormForwardArgs<T>& f, int tid, int nth) {
  using A = BatchNormForwardArgs<T>;
  return narrow_to_columns(f, tid, nth, &A::x, &A::y, &A::gamma, &A::beta, &A::mean, &A::invstd, &A::running_mean,
                           &A::running_var);
}

template <typename T>
bool narrow_columns(BatchNormBackwardArgs<T>& d, int tid, int nth) {
  using A = BatchNormBackwardArgs<T>;
  return narrow_to_columns(d, tid, nth, &A::dy, &A::x, &A::gamma, &A::mean, &A::invstd, &A::dx, &A::dgamma, &A::dbeta);
}

// Narrows a dropout call on layer l to thread tid's elements (its rows [r0, r1) where the
// layer splits by rows), on one thread; false when it has none.
template <typename T>
bool narrow_elements(DropoutArgs<T>& d, const LayerSpec& l, bool by_shards, index_t r0, index_t r1, int tid,
                     int nth) {
  index_t b, e;
  if (splits_by_rows(l, by_shards)) {
    b = r0 * l.out;
    e = r1 * l.out;
  } else {
    thread_range(d.n, kMaskElements, tid, nth, b, e);
  }
  d.first = b;
  d.n = e;
  d.nthreads = 1;
  return e > b;
}

// While it lives, kernels called from this OS thread use at most `limit` threads (0: no
// limit of its own: the setting it found stays).
class CallingThreadLimit {
 public:
  explicit CallingThreadLimit(int limit) : before_(calling_thread_threads()), active_(limit > 0) {
    if (active_) set_calling_thread_threads(limit);
  }
  ~CallingThreadLimit() {
    if (active_) set_calling_thread_threads(before_);
  }
  CallingThreadLimit(const CallingThreadLimit&) = delete;
  CallingThreadLimit& operator=(const CallingThreadLimit&) = delete;

 private:
  int before_;
  bool active_;
};

// Picks the team size step by step. Every element of a step is computed the same way by
// whichever thread computes it, so the choice can follow the machine: a probe times kProbe
// whole steps on one thread (kernels included), then kProbe on the team, and the one whose
// fastest step was faster runs until the next probe, a gap of full batches later (the
// fastest step, so that one interrupted step does not decide; the team's part stops at
// once when one of its steps takes kCollapse times one thread's fastest). Each probe that
// confirms the side already running doubles the gap (up to kMaxGap), one that switches
// sides resets it: a probe's solo steps cost a team that keeps winning (W1 on 2 threads: 4
// steps at 1.6x the team's time every 128 cost ~1.7% of the epoch). The state carries
// over to the next epoch of the same model size on the same OS thread. A team loses to one
// thread when its steps are too short for its barriers (W2 here: a 2-thread team measured
// 0.79x) and collapses when the machine is oversubscribed: a descheduled thread stalls
// every barrier (with two busy processes on these 2 cores, a 2-thread W1 step took ~31 ms
// instead of 0.25 ms).
class TeamTuner {
 public:
  TeamTuner() = default;
  // `team` threads for steps of `step_flops`.
  TeamTuner(int team, double step_flops)
      : team_(team), step_flops_(step_flops), policy_(team > 1 ? team_policy() : TeamPolicy::team) {
    const TeamTuner& last = last_on_this_thread();
    if (policy_ == TeamPolicy::automatic && last.team_ == team_ && last.step_flops_ == step_flops_) {
      probed_ = last.probed_;
      left_ = last.left_;
      gap_ = last.gap_;
      use_team_ = last.use_team_;
      solo_ = last.solo_;
      teamed_ = last.teamed_;
    }
  }
  ~TeamTuner() {
    if (policy_ == TeamPolicy::automatic) last_on_this_thread() = *this;
  }
  TeamTuner(const TeamTuner&) = default;
  TeamTuner& operator=(const TeamTuner&) = default;

  // The team size for the next step.
  int next() const {
    switch (policy_) {
      case TeamPolicy::team: return team_;
      case TeamPolicy::alternate: return steps_ % 2 == 0 ? team_ : 1;
      case TeamPolicy::automatic: break;
    }
    if (probed_ < kProbe) return 1;
    if (probed_ < 2 * kProbe) return team_;
    return use_team_ ? team_ : 1;
  }
  // The time of the step just taken on next()'s team; only full batches count.
  void record(double seconds, bool full_batch) {
    if (!full_batch) return;
    ++steps_;
    if (policy_ != TeamPolicy::automatic) return;
    if (probed_ >= 2 * kProbe) {
      if (--left_ == 0) probed_ = 0;
      return;
    }
    double& fastest = probed_ < kProbe ? solo_ : teamed_;
    fastest = std::min(fastest, seconds);
    ++probed_;
    const bool collapsed = probed_ > kProbe && seconds > kCollapse * solo_;
    if (probed_ == 2 * kProbe || collapsed) {
      const bool team_wins = !collapsed && teamed_ < solo_;
      gap_ = team_wins == use_team_ ? std::min(2 * gap_, kMaxGap) : kGap;
      use_team_ = team_wins;
      left_ = gap_;
      probed_ = 2 * kProbe;
      solo_ = teamed_ = kNever;
    }
  }

 private:
  static constexpr index_t kProbe = 4, kGap = 128, kMaxGap = 128 * 32;
  static constexpr double kCollapse = 4.0, kNever = 1e300;
  static TeamTuner& last_on_this_thread() {
    thread_local TeamTuner last;
    return last;
  }
  int team_ = 1;
  double step_flops_ = 0.0;
  TeamPolicy policy_ = TeamPolicy::team;
  index_t steps_ = 0, probed_ = 0, left_ = 0, gap_ = kGap;
  double solo_ = kNever, teamed_ = kNever;  // the fastest step of each side of the probe so far
  bool use_team_ = true;
};

// The workspace of one epoch, sized once for the largest batch, and the stages of a step.
template <typename T>
class Epoch {
 public:
  Epoch(const ModelView<T>& model, const EpochData<T>& data, const OptimizerState<T>& optimizer,
        const EpochConfig& config, const Reduction& reduction);
  EpochResult run();

 private:
  void plan();
  double step_flops() const;
  int team_size() const;
  double forward_backward(index_t m, std::uint64_t step);
  void run_ops(std::uint64_t step);
  void run_op(const Op& op, int tid, int nth, std::uint64_t step);
  void gather(index_t r0, index_t r1);
  void forward(index_t i, int tid, int nth, std::uint64_t step);
  void loss(int tid, int nth);
  DenseBackwardArgs<T> dense_backward_args(const LayerSpec& l, index_t i, Lane<T>& lane) const;
  void backward_dz(index_t i, int tid, int nth);
  void backward_weights(index_t i, int tid, int nth);
  void backward(index_t i, int tid, int nth, std::uint64_t step);
  void shard_weights(const DenseBackwardArgs<T>& d, index_t i, index_t r0, index_t r1, int tid);
  void reduce_shards(int tid, int nth);
  BatchNormBackwardArgs<T> batchnorm_backward_args(index_t i, index_t r0, index_t r1) const;
  void batchnorm_rows(index_t i, int tid, int nth, bool backward, bool gather);
  void rows_of(int tid, int nth, index_t& r0, index_t& r1) const;
  void pack_weights(int tid, int nth);
  void reduce(index_t rows, index_t total, bool finite_loss);
  index_t gradient_norms();
  void clip();
  void update(index_t rows, double batch_loss, bool last);
  bool reject(index_t layer, index_t batch);
  index_t part_rows(index_t m, int rank) const;
  void finish();

  const ModelView<T>& a_;
  const EpochData<T>& d_;
  const OptimizerState<T>& o_;
  const EpochConfig& c_;
  const Reduction& red_;
  const TypedKernels<T>& k_;
  const index_t L_, B_;
  index_t width_;
  bool single_row_batches_;  // batch norm cannot train on a batch (part) of one row
  bool label_targets_;       // bce targets made from 0/1 labels (d_.y is null)
  int team_max_ = 1;         // the team this model's steps pay for (buffers are sized for it)
  int team_ = 1;             // the current step's team (tuner_'s pick)
  EpochResult r_;
  std::vector<Op> ops_;  // a step's stages in order
  std::vector<Op> shard_ops_;  // the same, when the team splits by whole shards
  bool by_shards_ = false;     // the current step's team splits by whole shards
  // The shards of a full batch part when a team can split by shards (0: it never does: one
  // shard, or scratch past kShardScratchBytes). Per dense layer then: dW of the shards after
  // the first thread's (shard s at slot s - 1), and every shard's column-sum partials
  // (act_backward's layout).
  index_t team_shards_ = 0;
  std::vector<Buffer<T>> shard_dw_;
  std::vector<Buffer<double>> shard_sums_;
  Buffer<double> loss_sums_;  // each shard's loss sum
  std::vector<Buffer<double>> bn_sums_;  // per batch norm: its forward's, then its backward's chunk sums
  std::vector<Lane<T>> lanes_;  // one per team thread
  std::vector<Buffer<T>> out_, preact_, stat_mean_, stat_invstd_;
  // With a team: each dense layer's W^T packed once per step for every thread's input
  // gradient (the forward reads a small W in place: see gemm.cpp).
  std::vector<Buffer<T>> packed_wt_;
  std::vector<index_t> pack_order_;  // the layers with a packed_wt_, largest W first
  std::vector<Buffer<std::uint8_t>> mask_;
  std::vector<double> grad_norm_sum_, step_norm_;
  Buffer<T> xb_, yb_, wb_, buffers_before_, params_before_, g0_, g1_;
  std::vector<Buffer<T>> layer_grads_;  // per layer: its input gradient, when the team splits by shards
  Buffer<std::int64_t> lb_;
  RowCursor cursor_;                 // the epoch's rows in order, read batch by batch
  Buffer<std::int64_t> batch_rows_;  // the rows of the current batch
  // Per layer: where its input and output rows live, and its incoming / outgoing gradient
  // (an identity dropout passes its input and gradient through).
  std::vector<T*> in_, outp_, gin_, gout_;
  std::vector<index_t> in_width_;
  double batch_loss_ = 0.0;
  index_t part_begin_ = 0, part_rows_ = 0;  // this process's rows of the current batch
  double squared_total_ = 0.0;  // without statistics: the squared global gradient norm
  index_t batches_ = 0;
  TeamTuner tuner_;
};

template <typename T>
Epoch<T>::Epoch(const ModelView<T>& model, const EpochData<T>& data, const OptimizerState<T>& optimizer,
                const EpochConfig& config, const Reduction& reduction)
    : a_(model), d_(data), o_(optimizer), c_(config), red_(reduction), k_(kernels().of<T>()),
      L_(index_t(model.layers.size())), B_(config.batch_size), width_(model.in_features),
      single_row_batches_(model.has_batchnorm()), label_targets_(data.has_labels() && config.loss == LossKind::bce_logits),
      cursor_(data.rows()) {
  for (const auto& l : a_.layers) width_ = std::max(width_, l.out);
  out_.resize(size_t(L_));
  preact_.resize(size_t(L_));
  stat_mean_.resize(size_t(L_));
  stat_invstd_.resize(size_t(L_));
  mask_.resize(size_t(L_));
  packed_wt_.resize(size_t(L_));
  r_.zero_fraction.assign(size_t(L_), NAN);
  r_.grad_norm.assign(size_t(L_), NAN);
  r_.weight_norm.assign(size_t(L_), NAN);
  r_.update_ratio.assign(size_t(L_), NAN);
  r_.zeros.assign(size_t(L_), 0.0);
  r_.seen.assign(size_t(L_), 0.0);
  grad_norm_sum_.assign(size_t(L_), 0.0);
  step_norm_.assign(size_t(L_), 0.0);
  r_.fired_offset.assign(size_t(L_) + 1, 0);
  team_max_ = team_ = team_size();
  tuner_ = TeamTuner(team_max_, step_flops());
  for (index_t i = 0; i < L_; ++i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    out_[size_t(i)] = buffer<T>(B_ * l.out);
    if (l.kind == LayerKind::dense && l.act == Activation::prelu) preact_[size_t(i)] = buffer<T>(B_ * l.out);
    if (l.kind == LayerKind::dense && i > 0 && team_max_ > 1)
      packed_wt_[size_t(i)] = buffer<T>(k_.gemm_packed_b_size(l.out, l.in));
    if (l.kind == LayerKind::batchnorm) {
      stat_mean_[size_t(i)] = buffer<T>(l.out);
      stat_invstd_[size_t(i)] = buffer<T>(l.out);
    }
    if (l.kind == LayerKind::dropout) mask_[size_t(i)] = buffer<std::uint8_t>((B_ * l.out + 7) / 8);
    const bool tracked = l.kind == LayerKind::dense || l.kind == LayerKind::activation;
    r_.fired_offset[size_t(i) + 1] = r_.fired_offset[size_t(i)] + (tracked ? l.out : 0);
  }
  r_.fired.assign(size_t(r_.fired_offset.back()), 0);
  for (index_t i = 0; i < L_; ++i)
    if (packed_wt_[size_t(i)]) pack_order_.push_back(i);
  const auto weights = [&](index_t i) { return a_.layers[size_t(i)].in * a_.layers[size_t(i)].out; };
  std::stable_sort(pack_order_.begin(), pack_order_.end(),
                   [&](index_t x, index_t y) { return weights(x) > weights(y); });
  xb_ = buffer<T>(B_ * a_.in_features);
  yb_ = buffer<T>(d_.y || label_targets_ ? B_ * d_.k : 0);
  lb_ = buffer<std::int64_t>(d_.has_labels() && !label_targets_ ? B_ : 0);
  batch_rows_ = buffer<std::int64_t>(B_);
  wb_ = buffer<T>(d_.weights ? B_ : 0);
  // Running statistics before each batch: a batch that is not trained on (non-finite loss or
  // gradient) must leave no trace in them either.
  buffers_before_ = buffer<T>(a_.n_buffers);
  // The parameters before the epoch's last update, for the update-to-weight ratio.
  params_before_ = buffer<T>(a_.n_params);
  if (team_max_ > 1) {
    const index_t shards = shard_count((B_ + red_.ranks - 1) / red_.ranks);
    double dense_weights = 0.0;
    for (const LayerSpec& l : a_.layers)
      if (l.kind == LayerKind::dense) dense_weights += double(l.in) * double(l.out);
    if (shards > 1 && double(shards - 1) * dense_weights * double(sizeof(T)) <= kShardScratchBytes)
      team_shards_ = shards;
  }
  shard_dw_.resize(size_t(L_));
  shard_sums_.resize(size_t(L_));
  bn_sums_.resize(size_t(L_));
  loss_sums_ = buffer<double>(team_shards_);
  for (index_t i = 0; i < L_ && team_shards_ > 0; ++i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    if (l.kind == LayerKind::dense) {
      shard_dw_[size_t(i)] = buffer<T>((team_shards_ - 1) * l.in * l.out);
      shard_sums_[size_t(i)] = buffer<double>(dense_backward_partials(team_shards_ * kShardRows, l.out));
    } else if (l.kind == LayerKind::batchnorm) {
      bn_sums_[size_t(i)] = buffer<double>(2 * team_shards_ * 2 * l.out);
    }
  }
  g0_ = buffer<T>(B_ * width_);
  g1_ = buffer<T>(team_shards_ > 0 ? 0 : B_ * width_);  // see plan()
  lanes_.resize(size_t(team_max_));
  for (Lane<T>& lane : lanes_) {
    lane.partials = buffer<double>(dense_backward_partials(B_, width_));
    lane.zeros.assign(size_t(L_), 0.0);
    lane.colmax.assign(size_t(r_.fired_offset.back()), -std::numeric_limits<T>::infinity());
  }
  plan();
}

// The arithmetic of one step of this model on this process's part of a full batch.
template <typename T>
double Epoch<T>::step_flops() const {
  double flops = 0.0;
  for (const LayerSpec& l : a_.layers)
    flops += l.kind == LayerKind::dense ? 6.0 * double(l.in) * double(l.out) : 8.0 * double(l.out);
  const index_t part = (B_ + red_.ranks - 1) / red_.ranks;
  return flops * double(part);
}

// Threads worth waking for a step of this model: by its arithmetic.
template <typename T>
int Epoch<T>::team_size() const {
  return threads_for(step_flops(), team_flops_per_thread());
}

// The step's ops in order, and the buffers each layer reads and writes.
template <typename T>
void Epoch<T>::plan() {
  in_.assign(size_t(L_), nullptr);
  outp_.assign(size_t(L_), nullptr);
  gin_.assign(size_t(L_), nullptr);
  gout_.assign(size_t(L_), nullptr);
  in_width_.assign(size_t(L_), 0);
  T* h = xb_.get();
  index_t w = a_.in_features;
  for (index_t i = 0; i < L_; ++i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    const bool identity = l.kind == LayerKind::dropout && l.rate == 0.0;
    in_[size_t(i)] = h;
    in_width_[size_t(i)] = l.kind == LayerKind::dense ? l.in : w;
    outp_[size_t(i)] = identity ? h : out_[size_t(i)].get();
    h = outp_[size_t(i)];
    w = l.out;
  }
  // The input gradients take turns in two buffers, each layer's dx going where the layer
  // above read its dy. A team that splits by shards has no barrier between the stages of
  // consecutive layers, so one thread may write its rows of layer i's dx (in_i wide) while
  // another still reads its rows of layer i + 1's dy (out_{i+1} wide), bytes that overlap
  // where the widths differ: there every layer's input gradient has a buffer of its own
  // (together no larger than the forward's outputs).
  T* g = g0_.get();
  T* spare = g1_.get();
  layer_grads_.clear();
  if (team_shards_ > 0) {
    layer_grads_.resize(size_t(L_));  // the loss's gradient stays in g0_
  }
  for (index_t i = L_ - 1; i >= 0; --i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    gin_[size_t(i)] = g;
    if (l.kind == LayerKind::dropout && l.rate == 0.0) {
      gout_[size_t(i)] = g;
    } else if (team_shards_ > 0) {
      layer_grads_[size_t(i)] = buffer<T>(B_ * in_width_[size_t(i)]);
      gout_[size_t(i)] = g = layer_grads_[size_t(i)].get();
    } else {
      gout_[size_t(i)] = spare;
      std::swap(g, spare);
    }
  }
  // An identity dropout has no stage: its input and gradient pass through (above).
  const auto passes_through = [](const LayerSpec& l) { return l.kind == LayerKind::dropout && l.rate == 0.0; };
  const auto build = [&](std::vector<Op>& ops, bool by_shards) {
    ops.clear();
    // Packs W^T for the input gradients while the forward runs (it writes no rows; a barrier
    // comes before any thread reads what it packed: the serial loss's, or, split by shards,
    // one before the first stage that makes an input gradient with it).
    if (team_max_ > 1) ops.push_back({OpKind::pack_weights, -1, Reads::own_rows, true});
    bool packed_read = false;
    ops.push_back({OpKind::gather, -1, Reads::own_rows, true});
    for (index_t i = 0; i < L_; ++i) {
      const LayerSpec& l = a_.layers[size_t(i)];
      if (passes_through(l)) continue;
      const bool by_rows = splits_by_rows(l, by_shards);
      if (by_rows && l.kind == LayerKind::batchnorm) {  // every thread's sums, then its rows
        ops.push_back({OpKind::forward_sums, i, Reads::own_rows, false});
        ops.push_back({OpKind::forward, i, Reads::everything, true});
        continue;
      }
      ops.push_back({OpKind::forward, i, by_rows ? Reads::own_rows : Reads::everything, by_rows});
    }
    if (by_shards) ops.push_back({OpKind::loss, -1, Reads::own_rows, true});
    else ops.push_back({OpKind::loss, -1, Reads::serial, false});
    for (index_t i = L_ - 1; i >= 0; --i) {
      const LayerSpec& l = a_.layers[size_t(i)];
      if (passes_through(l)) continue;
      if (l.kind == LayerKind::dense && by_shards) {  // every read is of the thread's own shards
        ops.push_back({OpKind::backward_dz, i, Reads::own_rows, true});
        const bool first_packed_read = i > 0 && !packed_read;
        packed_read = packed_read || i > 0;
        ops.push_back({OpKind::backward_weights, i, first_packed_read ? Reads::everything : Reads::own_rows, true});
      } else if (l.kind == LayerKind::dense) {
        // PReLU's slope gradient needs z and dy, so its dz is made with the column sums.
        const bool prelu = l.act == Activation::prelu;
        ops.push_back({OpKind::backward_dz, i, prelu ? Reads::everything : Reads::own_rows, !prelu});
        ops.push_back({OpKind::backward_weights, i, Reads::everything, true});
      } else {  // its dx may overwrite the dy that a linear dense layer above still reads as dz
        const bool by_rows = splits_by_rows(l, by_shards);
        if (by_rows && l.kind == LayerKind::batchnorm)
          ops.push_back({OpKind::backward_sums, i, Reads::own_rows, false});
        ops.push_back({OpKind::backward, i, Reads::everything, by_rows});
      }
    }
    if (by_shards) ops.push_back({OpKind::reduce_shards, -1, Reads::everything, false});
  };
  build(ops_, false);
  build(shard_ops_, true);
}

// [r0, r1): thread tid's rows of the batch part, for every stage that splits by rows (whole
// shards when the step splits by shards).
template <typename T>
void Epoch<T>::rows_of(int tid, int nth, index_t& r0, index_t& r1) const {
  thread_range(part_rows_, by_shards_ ? kShardRows : kRowAlign, tid, nth, r0, r1);
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

// Copy rows [r0, r1) of this process's part of the batch into the workspace.
template <typename T>
void Epoch<T>::gather(index_t r0, index_t r1) {
  const index_t ic = a_.in_features;
  // The rows are scattered over X: ask for all of their cache lines first, so that the
  // misses overlap instead of stalling one copy after another.
  const size_t row_bytes = size_t(ic) * sizeof(T);
  for (index_t r = r0; r < r1; ++r) {
    const char* row = reinterpret_cast<const char*>(d_.x + batch_rows_[size_t(part_begin_ + r)] * ic);
    for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(row + b);
    __builtin_prefetch(row + row_bytes - 1);
  }
  for (index_t r = r0; r < r1; ++r) {
    const index_t src = batch_rows_[size_t(part_begin_ + r)];
    std::memcpy(xb_.get() + r * ic, d_.x + src * ic, size_t(ic) * sizeof(T));
    if (d_.y) std::memcpy(yb_.get() + r * d_.k, d_.y + src * d_.k, size_t(d_.k) * sizeof(T));
    if (label_targets_) yb_[size_t(r)] = T(d_.label(src));
    else if (d_.has_labels()) lb_[size_t(r)] = d_.label(src);
    if (d_.weights) wb_[size_t(r)] = d_.weights[src];
  }
}

// Stage 1a: layer i forward in training mode on this thread's rows (its columns for batch
// norm, its elements for dropout), with the zero/fired statistics measured before any dropout.
template <typename T>
void Epoch<T>::forward(index_t i, int tid, int nth, std::uint64_t step) {
  const LayerSpec& l = a_.layers[size_t(i)];
  const index_t w = in_width_[size_t(i)];
  index_t r0 = 0, r1 = part_rows_;
  if (splits_by_rows(l, by_shards_)) rows_of(tid, nth, r0, r1);
  if (r1 <= r0) return;
  const int cap = nth > 1 ? 1 : 0;
  const T* h = in_[size_t(i)] + r0 * w;
  T* y = outp_[size_t(i)] + r0 * l.out;
  switch (l.kind) {
    case LayerKind::dense: {
      T* z = preact_[size_t(i)] ? preact_[size_t(i)].get() + r0 * l.out : nullptr;
      k_.gemm(dense_args(l, a_.params, r1 - r0, h, y, z, cap));
      break;
    }
    case LayerKind::activation: k_.act_forward(activation_args(l, r1 - r0, w, h, y, cap)); break;
    case LayerKind::batchnorm: {
      if (by_shards_) {
        batchnorm_rows(i, tid, nth, false, false);
        break;
      }
      BatchNormForwardArgs<T> f = batchnorm_args(l, a_.params, a_.buffers, part_rows_, w, h, y,
                                                 stat_mean_[size_t(i)].get(), stat_invstd_[size_t(i)].get());
      if (nth == 1 || narrow_columns(f, tid, nth)) k_.batchnorm_forward(f);
      break;
    }
    case LayerKind::dropout: {
      if (l.rate == 0.0) break;  // identity: the output is the input
      DropoutArgs<T> f = dropout_args(l, part_rows_ * w, step, in_[size_t(i)], outp_[size_t(i)]);
      f.mask_bits = mask_[size_t(i)].get();
      if (nth == 1 || narrow_elements(f, l, by_shards_, r0, r1, tid, nth)) k_.dropout_forward(f);
      break;
    }
  }
  if (c_.statistics && (l.kind == LayerKind::dense || l.kind == LayerKind::activation)) {
    Lane<T>& lane = lanes_[size_t(tid)];
    lane.zeros[size_t(i)] += double(k_.activation_stats(y, r1 - r0, l.out, lane.colmax.data() + r_.fired_offset[size_t(i)]));
  }
}

// Stage 1b: the batch part's mean loss and its gradient: on one thread (it is small), or
// split by shards, each thread on its own rows, the loss then finished by reduce_shards.
template <typename T>
void Epoch<T>::loss(int tid, int nth) {
  const index_t k = a_.out_features();
  LossArgs<T> la;
  la.kind = c_.loss;
  la.n = part_rows_;
  la.k = k;
  la.pred = outp_[size_t(L_ - 1)];
  la.target = d_.y || label_targets_ ? yb_.get() : nullptr;
  la.labels = d_.has_labels() && !label_targets_ ? lb_.get() : nullptr;
  la.weights = d_.weights ? wb_.get() : nullptr;
  la.weight_sum = double(part_rows_);  // weights have mean 1 over the data: a batch's loss stays a mean
  la.delta = c_.delta;
  la.grad = gin_[size_t(L_ - 1)];
  if (by_shards_) {
    index_t r0, r1;
    rows_of(tid, nth, r0, r1);
    la.n = r1 - r0;
    la.pred += r0 * k;
    if (la.target) la.target += r0 * k;
    if (la.labels) la.labels += r0;
    if (la.weights) la.weights += r0;
    la.grad += r0 * k;
    la.chunk_sums = loss_sums_.get() + r0 / kShardRows;
    k_.loss(la);
    return;
  }
  la.nthreads = threads_for(double(part_rows_) * double(k) * 8.0, kElementsPerThread, nth > 1 ? 1 : 0);
  batch_loss_ = k_.loss(la);
}

template <typename T>
DenseBackwardArgs<T> Epoch<T>::dense_backward_args(const LayerSpec& l, index_t i, Lane<T>& lane) const {
  DenseBackwardArgs<T> d;
  d.n = part_rows_;
  d.ic = l.in;
  d.oc = l.out;
  d.dy = gin_[size_t(i)];
  d.x = in_[size_t(i)];
  d.w = a_.params + l.weight;
  d.w_packed = team_ > 1 ? packed_wt_[size_t(i)].get() : nullptr;  // packed for this step only on a team
  d.y = outp_[size_t(i)];
  d.z = preact_[size_t(i)].get();
  d.slope = l.slope >= 0 ? a_.params + l.slope : nullptr;
  d.act = l.act;
  d.alpha = T(l.alpha);
  d.dx = i > 0 ? gout_[size_t(i)] : nullptr;
  d.dw = a_.grads + l.weight;
  d.db = l.bias >= 0 ? a_.grads + l.bias : nullptr;
  d.dslope = l.slope >= 0 ? a_.grads + l.slope : nullptr;
  // dz replaces dy (elementwise, in place): nothing reads dy after dz is made.
  d.dz_workspace = gin_[size_t(i)];
  d.partials_workspace = lane.partials.get();
  return d;
}

// Stage 1c, dense layers: dz = dy * act'(.). With one thread, or for PReLU (whose slope
// gradient needs z), with the bias and slope gradients in the same pass, on this thread's
// columns; else on this thread's rows, right after it made their dy, and the bias gradient
// follows from dz in backward_weights.
template <typename T>
void Epoch<T>::backward_dz(index_t i, int tid, int nth) {
  const LayerSpec& l = a_.layers[size_t(i)];
  const DenseBackwardArgs<T> d = dense_backward_args(l, i, lanes_[size_t(tid)]);
  if (by_shards_) {  // dz and its shards' column sums on this thread's shards; reduce_shards adds the sums
    if (d.act == Activation::linear && !d.db) return;
    index_t r0, r1;
    rows_of(tid, nth, r0, r1);
    ActBackwardArgs<T> a = dense_dz_args(d, r0, r1, 0, l.out);
    a.partials = shard_sums_[size_t(i)].get() + 2 * (r0 / kShardRows) * l.out;
    a.sums_pending = true;
    a.nthreads = 1;
    k_.act_backward(a);
    return;
  }
  const bool with_sums = nth == 1 || d.act == Activation::prelu;
  if (d.act == Activation::linear && !(with_sums && (d.db || d.dslope))) return;  // dz is dy itself
  index_t b, e;
  thread_range(with_sums ? l.out : part_rows_, with_sums ? kColumnAlign : kRowAlign, tid, nth, b, e);
  if (e <= b) return;
  ActBackwardArgs<T> a = with_sums ? dense_dz_args(d, 0, d.n, b, e) : dense_dz_args(d, b, e, 0, l.out);
  if (!with_sums) a.db = a.dslope = nullptr;  // rows [b, e): dz only
  a.nthreads = threads_for(double(a.rows) * double(a.cols), kElementsPerThread, nth > 1 ? 1 : 0);
  k_.act_backward(a);
}

// Stage 1d, dense layers: this thread's columns of the bias gradient (when backward_dz did
// not make it: the same fixed-chunk column sums, of dz as stored), rows of the weight
// gradient and rows of the input gradient.
template <typename T>
void Epoch<T>::backward_weights(index_t i, int tid, int nth) {
  const LayerSpec& l = a_.layers[size_t(i)];
  const DenseBackwardArgs<T> d = dense_backward_args(l, i, lanes_[size_t(tid)]);
  const int cap = nth > 1 ? 1 : 0;
  index_t b, e;
  if (by_shards_) {
    rows_of(tid, nth, b, e);
    shard_weights(d, i, b, e, tid);
    if (d.dx) k_.gemm(dense_dx_args(d, b, e));
    return;
  }
  if (nth > 1 && d.act != Activation::prelu && d.db) {
    thread_range(l.out, kColumnAlign, tid, nth, b, e);
    if (e > b) {
      ActBackwardArgs<T> sums;  // linear: the column sums of dz itself
      sums.rows = d.n;
      sums.cols = e - b;
      sums.ld = l.out;
      sums.dy = dense_dz(d) + b;
      sums.db = d.db + b;
      sums.accumulate = d.accumulate;
      sums.partials = d.partials_workspace;
      k_.act_backward(sums);
    }
  }
  const int threads = threads_for(2.0 * double(d.n) * double(d.ic) * double(d.oc), kGemmFlopsPerThread, cap);
  const bool by_columns = d.oc > d.ic;  // split dw along its longer side: whole register tiles each
  thread_range(by_columns ? d.oc : d.ic, by_columns ? kColumnAlign : kRowAlign, tid, nth, b, e);
  if (e > b) {
    GemmArgs<T> g = by_columns ? dense_dw_args(d, 0, d.ic, b, e) : dense_dw_args(d, b, e, 0, d.oc);
    g.nthreads = threads;
    k_.gemm(g);
  }
  if (!d.dx) return;
  thread_range(d.n, kRowAlign, tid, nth, b, e);
  if (e > b) {
    GemmArgs<T> h = dense_dx_args(d, b, e);
    h.nthreads = threads;
    k_.gemm(h);
  }
}

// The weight gradient of the shards in this thread's rows [r0, r1): the first thread's into
// dW itself (shard by shard, as one thread sums the whole batch), every other thread's
// shard by shard into the scratch, for reduce_shards.
template <typename T>
void Epoch<T>::shard_weights(const DenseBackwardArgs<T>& d, index_t i, index_t r0, index_t r1, int tid) {
  const auto rows = [&](index_t b, index_t e) {
    GemmArgs<T> g = dense_dw_args(d, 0, d.ic, 0, d.oc);  // depth blocks of kShardRows
    g.k = e - b;
    g.a += b * d.ic;
    g.b += b * d.oc;
    return g;
  };
  if (tid == 0) {
    k_.gemm(rows(r0, r1));
    return;
  }
  for (index_t b = r0; b < r1; b += kShardRows) {
    GemmArgs<T> g = rows(b, std::min(r1, b + kShardRows));
    g.c = shard_dw_[size_t(i)].get() + (b / kShardRows - 1) * d.ic * d.oc;
    g.accumulate = false;
    k_.gemm(g);
  }
}

// The last stage of a step split by shards: each dense layer's dW plus the other threads'
// shards in shard order, and its bias and slope gradients from every shard's column sums.
// Each thread takes the gradients of the parameters it updates next (update's slices), so
// that its update reads what it just wrote.
template <typename T>
void Epoch<T>::reduce_shards(int tid, int nth) {
  const index_t shards = shard_count(part_rows_);
  const index_t first = shards / nth;  // the first thread's shards are in dW already
  if (tid == 0) batch_loss_ = sum_in_order(loss_sums_.get(), shards) / double(part_rows_);  // as the loss kernel
  index_t p0, p1;
  thread_range(a_.n_params, kLineElements, tid, nth, p0, p1);
  // [b, e): this thread's part of the parameter block [offset, offset + size), from offset.
  const auto mine = [&](index_t offset, index_t size, index_t& b, index_t& e) {
    b = std::max(p0, offset) - offset;
    e = std::min(p1, offset + size) - offset;
    return offset >= 0 && e > b;
  };
  for (index_t i = 0; i < L_; ++i) {
    const LayerSpec& l = a_.layers[size_t(i)];
    if (l.kind != LayerKind::dense) continue;
    const index_t n = l.in * l.out;
    T* dw = a_.grads + l.weight;
    index_t b, e;
    if (mine(l.weight, n, b, e))
      for (index_t s = first; s < shards; ++s) {
        const T* part = shard_dw_[size_t(i)].get() + (s - 1) * n;
        for (index_t k = b; k < e; ++k) dw[k] += part[k];
      }
    const double* sums = shard_sums_[size_t(i)].get();
    if (mine(l.bias, l.out, b, e)) add_chunk_sums<T>(sums, shards, l.out, false, a_.grads + l.bias, nullptr, b, e);
    if (mine(l.slope, l.out, b, e)) add_chunk_sums<T>(sums, shards, l.out, false, nullptr, a_.grads + l.slope, b, e);
  }
}

// Batch norm's backward on rows [r0, r1) of the batch part.
template <typename T>
BatchNormBackwardArgs<T> Epoch<T>::batchnorm_backward_args(index_t i, index_t r0, index_t r1) const {
  const LayerSpec& l = a_.layers[size_t(i)];
  const index_t w = l.out;
  BatchNormBackwardArgs<T> d;
  d.n = r1 - r0;
  d.c = w;
  d.dy = gin_[size_t(i)] + r0 * w;
  d.x = in_[size_t(i)] + r0 * w;
  d.gamma = a_.params + l.gamma;
  d.mean = stat_mean_[size_t(i)].get();
  d.invstd = stat_invstd_[size_t(i)].get();
  d.dx = gout_[size_t(i)] + r0 * w;
  d.dgamma = a_.grads + l.gamma;
  d.dbeta = a_.grads + l.beta;
  d.nthreads = threads_for(double(d.n) * double(w), kElementsPerThread);
  return d;
}

// Batch norm (forward or backward) on this thread's shards of a step split by shards:
// `gather` leaves their chunk sums for the team; else, after every thread's, the statistics
// from all of them (the same on every thread; thread 0 writes the per-column results), then
// the thread's rows.
template <typename T>
void Epoch<T>::batchnorm_rows(index_t i, int tid, int nth, bool backward, bool gather) {
  const LayerSpec& l = a_.layers[size_t(i)];
  const index_t w = l.out;
  index_t r0, r1;
  rows_of(tid, nth, r0, r1);
  if (r1 <= r0) return;
  BatchNormPart<T> part;
  part.rows = part_rows_;
  part.first_chunk = r0 / kShardRows;
  part.sums = bn_sums_[size_t(i)].get() + (backward ? 2 * w * team_shards_ : 0);
  part.gather = gather;
  part.publish = tid == 0;
  if (backward) {
    BatchNormBackwardArgs<T> d = batchnorm_backward_args(i, r0, r1);
    d.part = &part;
    d.nthreads = 1;
    k_.batchnorm_backward(d);
    return;
  }
  BatchNormForwardArgs<T> f = batchnorm_args(l, a_.params, a_.buffers, r1 - r0, w, in_[size_t(i)] + r0 * w,
                                             outp_[size_t(i)] + r0 * w, stat_mean_[size_t(i)].get(),
                                             stat_invstd_[size_t(i)].get());
  f.part = &part;
  f.nthreads = 1;
  k_.batchnorm_forward(f);
}

// Stage 1c, other layers: the input gradient (and batch norm's parameter gradient), on this
// thread's rows (its columns for batch norm, its elements for dropout).
template <typename T>
void Epoch<T>::backward(index_t i, int tid, int nth, std::uint64_t step) {
  const LayerSpec& l = a_.layers[size_t(i)];
  const index_t w = l.out;
  switch (l.kind) {
    case LayerKind::dense: break;  // backward_dz and backward_weights
    case LayerKind::activation: {
      index_t r0, r1;
      rows_of(tid, nth, r0, r1);
      if (r1 <= r0) return;
      ActBackwardArgs<T> d;
      d.rows = r1 - r0;
      d.cols = w;
      d.dy = gin_[size_t(i)] + r0 * w;
      d.y = outp_[size_t(i)] + r0 * w;
      d.act = l.act;
      d.alpha = T(l.alpha);
      d.dz = gout_[size_t(i)] + r0 * w;
      d.nthreads = threads_for(double(r1 - r0) * double(w), kElementsPerThread, nth > 1 ? 1 : 0);
      k_.act_backward(d);
      break;
    }
    case LayerKind::batchnorm: {
      if (by_shards_) {
        batchnorm_rows(i, tid, nth, true, false);
        break;
      }
      BatchNormBackwardArgs<T> d = batchnorm_backward_args(i, 0, part_rows_);
      if (nth == 1 || narrow_columns(d, tid, nth)) k_.batchnorm_backward(d);
      break;
    }
    case LayerKind::dropout: {
      if (l.rate == 0.0) break;  // identity
      DropoutArgs<T> d = dropout_args(l, part_rows_ * w, step, gin_[size_t(i)], gout_[size_t(i)]);
      d.mask_in = mask_[size_t(i)].get();
      index_t r0, r1;
      rows_of(tid, nth, r0, r1);
      if (nth == 1 || narrow_elements(d, l, by_shards_, r0, r1, tid, nth)) k_.dropout_backward(d);
      break;
    }
  }
}

template <typename T>
void Epoch<T>::run_op(const Op& op, int tid, int nth, std::uint64_t step) {
  switch (op.kind) {
    case OpKind::pack_weights:
      if (nth > 1) pack_weights(tid, nth);  // only team steps read packed weights
      break;
    case OpKind::gather: {
      index_t r0, r1;
      rows_of(tid, nth, r0, r1);
      gather(r0, r1);
      break;
    }
    case OpKind::forward: forward(op.layer, tid, nth, step); break;
    case OpKind::loss:
      if (by_shards_ || tid == 0) loss(tid, nth);
      break;
    case OpKind::backward_dz: backward_dz(op.layer, tid, nth); break;
    case OpKind::backward_weights: backward_weights(op.layer, tid, nth); break;
    case OpKind::backward: backward(op.layer, tid, nth, step); break;
    case OpKind::reduce_shards: reduce_shards(tid, nth); break;
    case OpKind::forward_sums: batchnorm_rows(op.layer, tid, nth, false, true); break;
    case OpKind::backward_sums: batchnorm_rows(op.layer, tid, nth, true, true); break;
  }
}

// The step's ops in order: on this thread (each kernel with its own threads), or in one
// parallel region on the team, with the barriers that Reads asks for (which thread takes
// which range never changes a result).
template <typename T>
void Epoch<T>::run_ops(std::uint64_t step) {
  by_shards_ = team_ > 1 && team_shards_ > 0 && shard_count(part_rows_) % team_ == 0;
  if (team_ <= 1) {
    for (const Op& op : ops_) run_op(op, 0, 1, step);
    return;
  }
  const std::vector<Op>& ops = by_shards_ ? shard_ops_ : ops_;
  std::exception_ptr error;
#pragma omp parallel num_threads(team_)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    for (size_t k = 0; k < ops.size(); ++k) {
      if (k > 0 && (ops[k].reads != Reads::own_rows || !ops[k - 1].writes_rows)) {
#pragma omp barrier
      }
      try {  // every thread reaches every barrier, even after an error
        if (!error) run_op(ops[k], tid, nth, step);
      } catch (...) {
#pragma omp critical(fastnn_team_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

// W^T as every thread's input-gradient GEMM reads it, packed once per step (the weights
// change only at the update) instead of gathered by columns by each thread. Thread tid of
// nth packs every nth layer of pack_order_ (largest first), starting at its own position.
template <typename T>
void Epoch<T>::pack_weights(int tid, int nth) {
  for (size_t k = size_t(tid); k < pack_order_.size(); k += size_t(nth)) {
    const index_t i = pack_order_[k];
    const LayerSpec& l = a_.layers[size_t(i)];
    GemmArgs<T> wt;  // W^T (OC, IC): W (IC, OC) read by columns
    wt.k = l.out;
    wt.n = l.in;
    wt.b = a_.params + l.weight;
    wt.rsb = 1;
    wt.csb = l.out;
    k_.gemm_pack_b(wt, packed_wt_[size_t(i)].get());
  }
}

// Stage 1 for the next batch (m rows): this process's part of them through every phase;
// the part's mean loss (0 when the part sits the step out).
template <typename T>
double Epoch<T>::forward_backward(index_t m, std::uint64_t step) {
  index_t end;
  shard_bounds(m, red_.ranks, red_.rank, part_begin_, end);
  cursor_.next(m, batch_rows_.get());  // every process reads the whole batch's rows: the order goes on
  part_rows_ = part_rows(m, red_.rank);
  batch_loss_ = 0.0;
  if (part_rows_ == 0) return 0.0;
  run_ops(step);
  if (c_.statistics)
    for (index_t i = 0; i < L_; ++i) {
      const LayerSpec& l = a_.layers[size_t(i)];
      if (l.kind == LayerKind::dense || l.kind == LayerKind::activation)
        r_.seen[size_t(i)] += double(part_rows_) * double(l.out);
    }
  return batch_loss_;
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
    // A large layer's norm on the update's threads (the same bits on any number): on one
    // thread it read a 4.7 M-parameter model's gradients at one core's bandwidth, between
    // updates that run on all of them.
    const double s = k_.sum_squares(a_.grads + l.param_begin, l.param_size,
                                    threads_for(double(l.param_size), kElementsPerThread));
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

// Elements [b, e) of an update: every per-element pointer offset, one thread.
template <typename T>
OptimizerArgs<T> optimizer_slice(OptimizerArgs<T> o, index_t b, index_t e) {
  o.n = e - b;
  o.params += b;
  o.grads += b;
  if (o.state0) o.state0 += b;
  if (o.state1) o.state1 += b;
  if (o.state2) o.state2 += b;
  if (o.weight_mask) o.weight_mask += b;
  o.nthreads = 1;
  return o;
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
  if (team_ > 1) {
    // On a team each thread updates its own slice (whole cache lines): the gradients were
    // written across the team's caches, and one thread pulling them all over cost more than
    // the update (a W1 step's update and norms took 14 us on 2 threads, 5 us on one). A step
    // split by shards made each thread's slice of the gradients last (reduce_shards).
    // Elementwise, so the same bits as one call.
#pragma omp parallel num_threads(team_)
    {
      index_t b, e;
      thread_range(o.n, kLineElements, omp_get_thread_num(), omp_get_num_threads(), b, e);
      if (e > b) k_.optimizer_step(optimizer_slice(o, b, e));
    }
  } else {
    o.nthreads = threads_for(double(a_.n_params), kElementsPerThread);
    k_.optimizer_step(o);
  }
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
  const index_t n = cursor_.size();
  for (index_t b0 = 0; b0 < n; b0 += B_) {
    const index_t m = std::min(B_, n - b0);
    index_t total = 0;
    for (int rank = 0; rank < red_.ranks; ++rank) total += part_rows(m, rank);
    if (total == 0) break;  // a last batch of one row with batch norm: not trained on this epoch
    if (c_.max_batches >= 0 && batches_ >= c_.max_batches) break;
    const index_t rest = n - (b0 + m);
    const bool last = rest == 0 || (rest == 1 && single_row_batches_) ||
                      (c_.max_batches >= 0 && batches_ + 1 == c_.max_batches);
    const index_t batch = batches_++;
    const std::uint64_t step = c_.step + std::uint64_t(batches_);
    if (a_.n_buffers > 0) std::memcpy(buffers_before_.get(), a_.buffers, size_t(a_.n_buffers) * sizeof(T));
    team_ = tuner_.next();
    // Off the team, the whole step runs on this thread, kernels included: under
    // oversubscription any parallel region stalls, not just the team's.
    const CallingThreadLimit solo(team_ < team_max_ ? 1 : 0);
    const auto started = std::chrono::steady_clock::now();
    const double batch_loss = forward_backward(m, step);
    const index_t rows = part_rows_;
    if (rows > 0 && !std::isfinite(batch_loss) && !sharded) {
      if (reject(-1, batch)) break;
      continue;
    }
    if (sharded) reduce(rows, total, std::isfinite(batch_loss));
    const index_t bad = gradient_norms();
    if (bad != -2) {
      if (reject(bad, batch)) break;
      continue;
    }
    clip();
    update(rows, batch_loss, last);
    tuner_.record(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), m == B_);
  }
  finish();
  return std::move(r_);
}

template <typename T>
void Epoch<T>::finish() {
  for (const Lane<T>& lane : lanes_) {
    for (index_t i = 0; i < L_; ++i) r_.zeros[size_t(i)] += lane.zeros[size_t(i)];  // whole numbers: exact in any order
    for (size_t j = 0; j < lane.colmax.size(); ++j) r_.fired[j] = r_.fired[j] || lane.colmax[j] > T(0);
  }
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

namespace {
std::atomic<double> g_team_flops_per_thread{1.0e6};  // W2 (6e5 per step) stays on one thread: a team made it slower
std::atomic<int> g_team_policy{int(TeamPolicy::automatic)};
}  // namespace

TeamPolicy team_policy() { return TeamPolicy(g_team_policy.load(std::memory_order_relaxed)); }
void set_team_policy(TeamPolicy policy) { g_team_policy.store(int(policy), std::memory_order_relaxed); }

double team_flops_per_thread() { return g_team_flops_per_thread.load(std::memory_order_relaxed); }
void set_team_flops_per_thread(double flops) {
  if (!(flops > 0.0)) throw_invalid("flops must be positive");
  g_team_flops_per_thread.store(flops, std::memory_order_relaxed);
}

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
