// The training engine: a whole epoch in one call, for a Sequential model whose parameters,
// gradients and running statistics live in three flat buffers. Runs with the GIL released
// and allocates its workspace once per call, never per step.
//
// One training step is four stages, in this order:
//   1. forward and backward over this process's rows of the mini-batch   (per-layer kernels)
//   2. gradient reduction: the flat gradient is summed over the processes that share the
//      batch (Reduction::sum, e.g. an MPI Allreduce). Without a reduction nothing runs.
//   3. the finiteness check and clipping by global norm, on the reduced gradient
//   4. the optimizer update (one fused pass over the flat buffer)
// Every process of a data-parallel run then applies the same update to the same gradient.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "kernels.hpp"
#include "row_order.hpp"

namespace fastnn {

enum class LayerKind : int { dense = 0, activation = 1, batchnorm = 2, dropout = 3 };

// One layer, as offsets into the model's flat buffers (-1: absent).
struct LayerSpec {
  LayerKind kind = LayerKind::dense;
  index_t in = 0, out = 0;
  Activation act = Activation::linear;
  double alpha = 0.0;                          // leaky slope / elu alpha
  index_t weight = -1, bias = -1, slope = -1;  // dense (params)
  index_t gamma = -1, beta = -1;               // batchnorm (params)
  index_t running_mean = -1, running_var = -1; // batchnorm (buffers)
  double momentum = 0.99, eps = 1e-3;          // batchnorm
  double rate = 0.0;                           // dropout
  std::uint64_t seed = 0;                      // dropout key of this layer
  index_t param_begin = 0, param_size = 0;     // this layer's contiguous range of params
};

enum class ScheduleKind : int { constant = 0, exponential = 1, step = 2, cosine = 3 };

// The learning rate as a function of the update count: the one implementation of the
// built-in schedules (fastnn.optim evaluates them here too).
struct Schedule {
  ScheduleKind kind = ScheduleKind::constant;
  double lr = 0.01;
  double a = 0.0;          // exponential, cosine: decay_steps; step: step_size
  double b = 0.0;          // exponential: decay_rate; step: factor; cosine: alpha
  bool staircase = false;  // exponential: floor the exponent
  double at(std::int64_t iteration) const;
};

// An optimizer's hyperparameters by name (what each kind reads: optim.cpp).
struct OptimizerHyper {
  double lr = 0.01, momentum = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-7, rho = 0.9;
  double weight_decay = 0.0, l1 = 0.0, l2 = 0.0;
  bool nesterov = false, centered = false;
};

template <typename T>
void set_hyper(OptimizerArgs<T>& a, const OptimizerHyper& h) {
  a.lr = h.lr;
  a.momentum = h.momentum;
  a.beta1 = h.beta1;
  a.beta2 = h.beta2;
  a.eps = h.eps;
  a.rho = h.rho;
  a.weight_decay = h.weight_decay;
  a.l1 = h.l1;
  a.l2 = h.l2;
  a.nesterov = h.nesterov;
  a.centered = h.centered;
}

// The optimizer as the update stage sees it: kind, hyperparameters and its state buffers
// (each sized like the params, or null where the kind needs none).
template <typename T>
struct OptimizerState {
  OptimizerKind kind = OptimizerKind::sgd;
  OptimizerHyper hyper;
  T* state0 = nullptr;
  T* state1 = nullptr;
  T* state2 = nullptr;
  const std::uint8_t* weight_mask = nullptr;  // (n_params) 1 = a weight (regularized)
};

// The model: its layers and its three flat buffers, checked once (validate_model).
template <typename T>
struct ModelView {
  std::vector<LayerSpec> layers;
  T* params = nullptr;   // (n_params)
  T* grads = nullptr;    // (n_params)
  T* buffers = nullptr;  // (n_buffers) batch-norm running statistics
  index_t n_params = 0, n_buffers = 0, in_features = 0;
  index_t out_features() const { return layers.empty() ? in_features : layers.back().out; }
  bool has_batchnorm() const;
};

// Throws std::invalid_argument unless the layer widths chain from in_features and every
// offset lies inside its buffer: the engine trusts them afterwards.
template <typename T>
void validate_model(const ModelView<T>& model);

// One epoch's data.
template <typename T>
struct EpochData {
  const T* x = nullptr;                  // (N, IC)
  const T* y = nullptr;                  // (N, K) targets, or null with labels
  const std::int64_t* labels = nullptr;  // (N) class indices (softmax cross-entropy)
  const std::uint8_t* labels8 = nullptr; // or the same as one byte each (fewer than 256 classes); with
                                         // the bce loss, 0/1 labels that the batch's targets are made of
  const T* weights = nullptr;            // (N) sample weights (scaled by the caller to mean 1), or null
  const std::int64_t* order = nullptr;   // (N) the row order of this epoch: a permutation
  // or instead of order: the split's training rows in the order keyed by order_key
  const RowSplit* split = nullptr;
  std::uint64_t order_key = 0;
  index_t n = 0, k = 0;
  RowCursor rows() const { return split ? RowCursor(*split, order_key) : RowCursor(order, n); }
  bool has_labels() const { return labels || labels8; }
  std::int64_t label(index_t row) const { return labels ? labels[row] : std::int64_t(labels8[row]); }
};

// The gradient reduction stage (between backward and clipping). ``ranks`` processes share
// every mini-batch: this one (``rank``) takes its contiguous part of each (shard_bounds),
// scales its gradient by its share of the batch's rows, ``sum`` adds the gradients of all
// processes in place, and the sum is divided by ``ranks``: the gradient of the mean loss
// over the whole batch. A process whose loss is not finite poisons its gradient with NaN,
// so every process rejects the step together. Default: one process, nothing runs.
struct Reduction {
  std::function<void()> sum;  // called with the engine's threads idle; may run Python (the GIL is taken)
  int rank = 0, ranks = 1;
  bool active() const { return bool(sum) || ranks > 1; }
};

// [begin, end) of the rows of a batch of ``rows`` that ``rank`` of ``ranks`` takes: contiguous
// parts in rank order, the first ``rows % ranks`` one row longer.
inline void shard_bounds(index_t rows, int ranks, int rank, index_t& begin, index_t& end) {
  const index_t base = rows / ranks, extra = rows % ranks;
  begin = rank * base + std::min<index_t>(rank, extra);
  end = begin + base + (rank < extra ? 1 : 0);
}

// The arithmetic per step (flops) worth waking one more thread of a step's team: the team
// is the thread count the training engine uses (train.cpp). Tests lower it so that small
// models train on a team; results never depend on it.
double team_flops_per_thread();
void set_team_flops_per_thread(double flops);

// How the engine picks each step's team (results never depend on it): `automatic` times
// some steps on one thread and on the team now and then and keeps the faster (see
// TeamTuner in train.cpp); `team` always uses the team the bar allows; `alternate` switches
// between the team and one thread every step. The last two are for tests.
enum class TeamPolicy : int { automatic = 0, team = 1, alternate = 2 };
TeamPolicy team_policy();
void set_team_policy(TeamPolicy policy);

struct EpochConfig {
  index_t batch_size = 32;
  LossKind loss = LossKind::mse;
  double delta = 1.0;                    // huber
  Schedule schedule;
  std::int64_t iteration = 0;            // optimizer updates before this epoch
  std::uint64_t step = 0;                // model training steps before this epoch (dropout masks)
  double clip_norm = -1.0;               // < 0: no clipping
  bool skip_nonfinite = false;           // a batch with a non-finite loss or gradient is skipped (else: stop)
  index_t max_batches = -1;              // stop after this many batches (< 0: the whole epoch); replays
  bool statistics = true;                // per-layer zero fraction, fired units and gradient norms
};

struct EpochResult {
  double loss_sum = 0.0;   // sum of the batch losses weighted by batch rows (updated batches only)
  index_t rows = 0, steps = 0;  // rows and batches that were trained on (optimizer updates)
  // steps + skipped batches consumed a dropout key each; a stopping batch did not.
  index_t skipped = 0;     // batches skipped for a non-finite loss or gradient (skip_nonfinite)
  bool diverged = false;   // a non-finite loss or gradient stopped the epoch before its update
  index_t bad_step = -1, bad_layer = -1;  // first bad batch within the epoch, its layer (-1: the loss)
  // Per layer (NaN where not applicable): zero_fraction of Dense/Activation outputs over the
  // epoch; grad_norm the mean over the updates of the layer's gradient norm (before
  // clipping); weight_norm at the end; update_ratio = |last update| / |weights before it|.
  std::vector<double> zero_fraction, grad_norm, weight_norm, update_ratio;
  std::vector<std::uint8_t> fired;  // per layer, per unit: output > 0 at least once (dense/activation)
  std::vector<index_t> fired_offset;
  // the raw counts behind zero_fraction, so that processes can add theirs
  std::vector<double> zeros, seen;
};

template <typename T>
EpochResult train_epoch(const ModelView<T>& model, const EpochData<T>& data, const OptimizerState<T>& optimizer,
                        const EpochConfig& config, const Reduction& reduction);

// Inference: every layer in inference mode (dropout off, batch norm on its running
// statistics), rows (N, IC) -> out (N, OC), in chunks with one workspace. The same
// kernels and arguments as the layer-by-layer path, and every row computed independently
// of the others, so the result is bitwise that path's.
template <typename T>
void predict(const ModelView<T>& model, const T* x, index_t n, T* out);

}  // namespace fastnn
