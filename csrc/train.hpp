// A whole training epoch in one call: shuffle-gather each mini-batch, forward, loss,
// backward, clipping and the optimizer update, for a Sequential model whose parameters,
// gradients and running statistics live in three flat buffers. Runs with the GIL released
// and allocates its workspace once per call, never per step.
#pragma once
#include <string>
#include <vector>

#include "kernels.hpp"

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

struct Schedule {
  ScheduleKind kind = ScheduleKind::constant;
  double lr = 0.01, a = 0.0, b = 0.0;  // exponential: decay_steps, decay_rate; step: step_size, factor;
  bool staircase = false;              // cosine: decay_steps, alpha
  double at(std::int64_t iteration) const;
};

template <typename T>
struct EpochArgs {
  std::vector<LayerSpec> layers;
  T* params = nullptr;
  T* grads = nullptr;
  T* buffers = nullptr;
  index_t n_params = 0;
  const T* x = nullptr;                  // (N, IC)
  const T* y = nullptr;                  // (N, K) targets, or null with labels
  const std::int64_t* labels = nullptr;  // (N) class indices (softmax cross-entropy)
  const T* weights = nullptr;            // (N) sample weights (scaled by the caller to mean 1), or null
  const std::int64_t* order = nullptr;   // (N) the row order of this epoch
  index_t n = 0, in_features = 0, k = 0, batch_size = 32;
  LossKind loss = LossKind::mse;
  double delta = 1.0;
  OptimizerArgs<T> optimizer;            // kind, hyperparameters, state buffers, weight mask (params/grads/n set here)
  Schedule schedule;
  std::int64_t iteration = 0;            // optimizer updates before this epoch
  std::uint64_t step = 0;                // model training steps before this epoch (dropout masks)
  double clip_norm = -1.0;               // < 0: no clipping
  bool drop_single_row_batch = false;    // a last batch of one row is skipped (batch norm cannot train on it)
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
};

template <typename T>
EpochResult train_epoch(const EpochArgs<T>& args);

}  // namespace fastnn
