// The epoch loop behind Sequential.train_epoch (train.hpp). ISA-independent: every step
// calls the active kernel table, exactly the kernels (and arguments) the per-call Python
// path uses, so an epoch equals a Python loop of train_step over the same batches, bitwise.
#include "train.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

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

template <typename T>
std::unique_ptr<T[]> buffer(index_t count) {
  return std::unique_ptr<T[]>(new T[size_t(std::max<index_t>(count, 1))]);
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

index_t buffer_count(const std::vector<LayerSpec>& layers) {
  index_t end = 0;
  for (const auto& l : layers)
    if (l.kind == LayerKind::batchnorm) end = std::max({end, l.running_mean + l.out, l.running_var + l.out});
  return end;
}

// The first layer whose gradient is not finite (-1 when none is: cannot happen when the
// total is not finite, but keeps the caller honest).
template <typename T>
index_t first_nonfinite_layer(const TypedKernels<T>& k, const EpochArgs<T>& a) {
  for (index_t i = 0; i < index_t(a.layers.size()); ++i) {
    const LayerSpec& l = a.layers[size_t(i)];
    if (l.param_size > 0 && !std::isfinite(k.sum_squares(a.grads + l.param_begin, l.param_size, 1))) return i;
  }
  return -1;
}

// Per layer: |params - before| / |before| over the layer's parameters (once per epoch, so a
// plain float64 loop).
template <typename T>
void update_ratios(const EpochArgs<T>& a, const T* before, std::vector<double>& ratio) {
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

}  // namespace

template <typename T>
EpochResult train_epoch(const EpochArgs<T>& a) {
  const auto& k = kernels().of<T>();
  const index_t L = index_t(a.layers.size());
  const index_t B = a.batch_size;
  index_t width = a.in_features;
  for (const auto& l : a.layers) width = std::max(width, l.out);

  // Workspace, sized once for the largest batch.
  std::vector<std::unique_ptr<T[]>> out(L), preact(L), stat_mean(L), stat_invstd(L);
  std::vector<std::unique_ptr<std::uint8_t[]>> mask(L);
  EpochResult r;
  r.zero_fraction.assign(size_t(L), NAN);
  r.grad_norm.assign(size_t(L), NAN);
  r.weight_norm.assign(size_t(L), NAN);
  r.update_ratio.assign(size_t(L), NAN);
  std::vector<double> grad_norm_sum(size_t(L), 0.0), step_norm(size_t(L), 0.0);
  r.fired_offset.assign(size_t(L) + 1, 0);
  std::vector<double> zeros(size_t(L), 0.0), seen(size_t(L), 0.0);
  for (index_t i = 0; i < L; ++i) {
    const LayerSpec& l = a.layers[size_t(i)];
    out[size_t(i)] = buffer<T>(B * l.out);
    if (l.kind == LayerKind::dense && l.act == Activation::prelu) preact[size_t(i)] = buffer<T>(B * l.out);
    if (l.kind == LayerKind::batchnorm) {
      stat_mean[size_t(i)] = buffer<T>(l.out);
      stat_invstd[size_t(i)] = buffer<T>(l.out);
    }
    if (l.kind == LayerKind::dropout) mask[size_t(i)] = buffer<std::uint8_t>((B * l.out + 7) / 8);
    const bool tracked = l.kind == LayerKind::dense || l.kind == LayerKind::activation;
    r.fired_offset[size_t(i) + 1] = r.fired_offset[size_t(i)] + (tracked ? l.out : 0);
  }
  r.fired.assign(size_t(r.fired_offset.back()), 0);
  // per tracked unit, its largest output so far (fired = it exceeded 0 once)
  std::vector<T> colmax(size_t(r.fired_offset.back()), -std::numeric_limits<T>::infinity());
  auto xb = buffer<T>(B * a.in_features);
  auto yb = buffer<T>(a.y ? B * a.k : 0);
  auto lb = buffer<std::int64_t>(a.labels ? B : 0);
  auto wb = buffer<T>(a.weights ? B : 0);
  // Running statistics before each batch: a batch that is not trained on (non-finite loss or
  // gradient) must leave no trace in them either.
  const index_t n_buffers = buffer_count(a.layers);
  auto buffers_before = buffer<T>(n_buffers);
  // The parameters before the epoch's last update, for the update-to-weight ratio.
  auto params_before = buffer<T>(a.n_params);
  auto g0 = buffer<T>(B * width), g1 = buffer<T>(B * width), dz = buffer<T>(B * width);
  auto partials = buffer<double>(dense_backward_partials(B, width));
  std::vector<const T*> input(static_cast<size_t>(L), nullptr), output(static_cast<size_t>(L), nullptr);

  index_t batches = 0;
  for (index_t b0 = 0; b0 < a.n; b0 += B) {
    const index_t m = std::min(B, a.n - b0);
    if (m == 1 && a.drop_single_row_batch) break;
    if (a.max_batches >= 0 && batches >= a.max_batches) break;
    const index_t rest = a.n - (b0 + m);
    const bool last = rest == 0 || (rest == 1 && a.drop_single_row_batch) ||
                      (a.max_batches >= 0 && batches + 1 == a.max_batches);
    ++batches;
    // gather the batch
    for (index_t r0 = 0; r0 < m; ++r0) {
      const index_t src = a.order[b0 + r0];
      std::memcpy(xb.get() + r0 * a.in_features, a.x + src * a.in_features, size_t(a.in_features) * sizeof(T));
      if (a.y) std::memcpy(yb.get() + r0 * a.k, a.y + src * a.k, size_t(a.k) * sizeof(T));
      if (a.labels) lb[size_t(r0)] = a.labels[src];
      if (a.weights) wb[size_t(r0)] = a.weights[src];
    }
    const std::uint64_t step = a.step + std::uint64_t(batches);
    if (n_buffers > 0) std::memcpy(buffers_before.get(), a.buffers, size_t(n_buffers) * sizeof(T));
    // A batch that is not trained on: undo its running-statistics update, then stop or skip.
    auto reject = [&](index_t layer) {
      if (n_buffers > 0) std::memcpy(a.buffers, buffers_before.get(), size_t(n_buffers) * sizeof(T));
      if (r.bad_step < 0) {
        r.bad_step = batches - 1;
        r.bad_layer = layer;
      }
      if (a.skip_nonfinite) {
        ++r.skipped;
        return false;
      }
      r.diverged = true;
      return true;
    };
    // forward
    const T* h = xb.get();
    index_t w = a.in_features;
    for (index_t i = 0; i < L; ++i) {
      const LayerSpec& l = a.layers[size_t(i)];
      T* y = out[size_t(i)].get();
      input[size_t(i)] = h;
      switch (l.kind) {
        case LayerKind::dense: {
          GemmArgs<T> g;
          g.m = m;
          g.k = l.in;
          g.n = l.out;
          g.a = h;
          g.rsa = l.in;
          g.b = a.params + l.weight;
          g.rsb = l.out;
          g.c = y;
          g.ldc = l.out;
          g.bias = l.bias >= 0 ? a.params + l.bias : nullptr;
          g.act = l.act;
          g.alpha = T(l.alpha);
          g.slope = l.slope >= 0 ? a.params + l.slope : nullptr;
          g.preact = preact[size_t(i)].get();
          g.ldz = l.out;
          g.nthreads = threads_for(2.0 * double(m) * double(l.in) * double(l.out), kGemmFlopsPerThread);
          k.gemm(g);
          break;
        }
        case LayerKind::activation: {
          ActArgs<T> f;
          f.rows = m;
          f.cols = w;
          f.x = h;
          f.out = y;
          f.act = l.act;
          f.alpha = T(l.alpha);
          f.nthreads = threads_for(double(m) * double(w), kElementsPerThread);
          k.act_forward(f);
          break;
        }
        case LayerKind::batchnorm: {
          BatchNormForwardArgs<T> f;
          f.n = m;
          f.c = w;
          f.x = h;
          f.gamma = a.params + l.gamma;
          f.beta = a.params + l.beta;
          f.y = y;
          f.training = true;
          f.mean = stat_mean[size_t(i)].get();
          f.invstd = stat_invstd[size_t(i)].get();
          f.running_mean = a.buffers + l.running_mean;
          f.running_var = a.buffers + l.running_var;
          f.eps = l.eps;
          f.momentum = l.momentum;
          f.nthreads = threads_for(double(m) * double(w), kElementsPerThread);
          k.batchnorm_forward(f);
          break;
        }
        case LayerKind::dropout: {
          if (l.rate == 0.0) {
            y = const_cast<T*>(h);  // identity: pass the input through
            break;
          }
          DropoutArgs<T> f = dropout_args(l, m * w, step, h, y);
          f.mask_bits = mask[size_t(i)].get();
          k.dropout_forward(f);
          break;
        }
      }
      if (a.statistics && (l.kind == LayerKind::dense || l.kind == LayerKind::activation)) {  // before any dropout
        zeros[size_t(i)] += double(k.activation_stats(y, m, l.out, colmax.data() + r.fired_offset[size_t(i)]));
        seen[size_t(i)] += double(m) * double(l.out);
      }
      output[size_t(i)] = y;
      h = y;
      w = l.kind == LayerKind::dense ? l.out : w;
    }
    // loss and its gradient
    LossArgs<T> la;
    la.kind = a.loss;
    la.n = m;
    la.k = w;
    la.pred = h;
    la.target = a.y ? yb.get() : nullptr;
    la.labels = a.labels ? lb.get() : nullptr;
    la.weights = a.weights ? wb.get() : nullptr;
    la.weight_sum = double(m);  // weights have mean 1 over the data: a batch's loss stays a mean
    la.delta = a.delta;
    la.grad = g0.get();
    la.nthreads = threads_for(double(m) * double(w) * 8.0, kElementsPerThread);
    const double loss = k.loss(la);
    if (!std::isfinite(loss)) {
      if (reject(-1)) break;
      continue;
    }
    // backward
    T* g = g0.get();
    T* spare = g1.get();
    for (index_t i = L - 1; i >= 0; --i) {
      const LayerSpec& l = a.layers[size_t(i)];
      const index_t wi = l.kind == LayerKind::dense ? l.in : l.out;
      T* next = spare;
      switch (l.kind) {
        case LayerKind::dense: {
          DenseBackwardArgs<T> d;
          d.n = m;
          d.ic = l.in;
          d.oc = l.out;
          d.dy = g;
          d.x = input[size_t(i)];
          d.w = a.params + l.weight;
          d.y = output[size_t(i)];
          d.z = preact[size_t(i)].get();
          d.slope = l.slope >= 0 ? a.params + l.slope : nullptr;
          d.act = l.act;
          d.alpha = T(l.alpha);
          d.dx = i > 0 ? next : nullptr;
          d.dw = a.grads + l.weight;
          d.db = l.bias >= 0 ? a.grads + l.bias : nullptr;
          d.dslope = l.slope >= 0 ? a.grads + l.slope : nullptr;
          d.dz_workspace = dz.get();
          d.partials_workspace = partials.get();
          d.nthreads = max_threads();
          k.dense_backward(d);
          break;
        }
        case LayerKind::activation: {
          ActBackwardArgs<T> d;
          d.rows = m;
          d.cols = wi;
          d.dy = g;
          d.y = output[size_t(i)];
          d.act = l.act;
          d.alpha = T(l.alpha);
          d.dz = next;
          d.nthreads = threads_for(double(m) * double(wi), kElementsPerThread);
          k.act_backward(d);
          break;
        }
        case LayerKind::batchnorm: {
          BatchNormBackwardArgs<T> d;
          d.n = m;
          d.c = wi;
          d.dy = g;
          d.x = input[size_t(i)];
          d.gamma = a.params + l.gamma;
          d.mean = stat_mean[size_t(i)].get();
          d.invstd = stat_invstd[size_t(i)].get();
          d.dx = next;
          d.dgamma = a.grads + l.gamma;
          d.dbeta = a.grads + l.beta;
          d.nthreads = threads_for(double(m) * double(wi), kElementsPerThread);
          k.batchnorm_backward(d);
          break;
        }
        case LayerKind::dropout: {
          if (l.rate == 0.0) {
            next = g;  // identity
            break;
          }
          DropoutArgs<T> d = dropout_args(l, m * wi, step, g, next);
          d.mask_in = mask[size_t(i)].get();
          k.dropout_backward(d);
          break;
        }
      }
      if (next != g) {
        spare = g;
        g = next;
      }
    }
    // Gradient norms (per layer with statistics, else one global pass): a non-finite one
    // means this batch is not trained on.
    const int flat_threads = threads_for(double(a.n_params), kElementsPerThread);
    double total = 0.0;
    index_t bad_layer = -2;
    if (a.statistics) {
      for (index_t i = 0; i < L; ++i) {
        const LayerSpec& l = a.layers[size_t(i)];
        if (l.param_size == 0) continue;
        const double s = k.sum_squares(a.grads + l.param_begin, l.param_size, 1);
        step_norm[size_t(i)] = std::sqrt(s);
        if (!std::isfinite(s) && bad_layer == -2) bad_layer = i;
        total += s;
      }
    } else {
      total = k.sum_squares(a.grads, a.n_params, flat_threads);
      if (!std::isfinite(total)) bad_layer = first_nonfinite_layer(k, a);
    }
    if (bad_layer != -2) {
      if (reject(bad_layer)) break;
      continue;
    }
    for (index_t i = 0; i < L && a.statistics; ++i) grad_norm_sum[size_t(i)] += step_norm[size_t(i)];
    if (a.clip_norm >= 0.0) {  // as optim.clip_by_global_norm: one exact factor for all
      const double norm = a.statistics ? std::sqrt(k.sum_squares(a.grads, a.n_params, flat_threads)) : std::sqrt(total);
      if (norm > a.clip_norm) k.scale(a.grads, a.n_params, T(a.clip_norm / norm), flat_threads);
    }
    if (last && a.statistics) std::memcpy(params_before.get(), a.params, size_t(a.n_params) * sizeof(T));
    OptimizerArgs<T> o = a.optimizer;
    o.n = a.n_params;
    o.params = a.params;
    o.grads = a.grads;
    o.lr = a.schedule.at(a.iteration + r.steps);
    o.step = a.iteration + r.steps + 1;
    o.nthreads = threads_for(double(a.n_params), kElementsPerThread);
    k.optimizer_step(o);
    r.loss_sum += loss * double(m);
    r.rows += m;
    r.steps += 1;
    if (last && a.statistics) update_ratios(a, params_before.get(), r.update_ratio);
  }
  for (size_t j = 0; j < colmax.size(); ++j) r.fired[j] = colmax[j] > T(0);
  for (index_t i = 0; i < L; ++i) {
    const LayerSpec& l = a.layers[size_t(i)];
    if (seen[size_t(i)] > 0) r.zero_fraction[size_t(i)] = zeros[size_t(i)] / seen[size_t(i)];
    if (l.param_size > 0) {
      r.weight_norm[size_t(i)] = std::sqrt(k.sum_squares(a.params + l.param_begin, l.param_size, 1));
      if (a.statistics && r.steps > 0) r.grad_norm[size_t(i)] = grad_norm_sum[size_t(i)] / double(r.steps);
    }
  }
  return r;
}

template EpochResult train_epoch<float>(const EpochArgs<float>&);
template EpochResult train_epoch<double>(const EpochArgs<double>&);

}  // namespace fastnn
