// Losses of one SIMD path: the weighted mean loss and its gradient, in one pass over the
// rows. Per-element math is float64 (losses are O(N K), far from the hot GEMMs); the loss
// sum runs in fixed row chunks added in order (bitwise identical for any thread count).
#include <cmath>

#include "isa_kernels.hpp"
#include "reduce.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

// log(1 + exp(-|z|)) + max(z, 0) - z t: binary cross-entropy with logits, stable for any z.
inline double bce_logits(double z, double t) { return std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::fabs(z))); }

inline double sigmoid(double z) {
  const double e = std::exp(-std::fabs(z));
  return z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

// Loss of row i (mean over its K elements, or its cross-entropy); writes d l_i / d pred * g
// into grad when given.
template <typename T>
double row_loss(const LossArgs<T>& a, index_t i, double g) {
  const index_t k = a.k;
  const T* p = a.pred + i * k;
  const T* t = a.target ? a.target + i * k : nullptr;
  T* d = a.grad ? a.grad + i * k : nullptr;
  double l = 0.0;
  switch (a.kind) {
    case LossKind::mse:
      for (index_t j = 0; j < k; ++j) {
        const double r = double(p[j]) - double(t[j]);
        l += r * r;
        if (d) d[j] = T(2.0 * r * g / double(k));
      }
      return l / double(k);
    case LossKind::huber:
      for (index_t j = 0; j < k; ++j) {
        const double r = double(p[j]) - double(t[j]), ar = std::fabs(r);
        const bool quadratic = ar <= a.delta;
        l += quadratic ? 0.5 * r * r : a.delta * (ar - 0.5 * a.delta);
        if (d) d[j] = T((quadratic ? r : std::copysign(a.delta, r)) * g / double(k));
      }
      return l / double(k);
    case LossKind::bce_logits:
      for (index_t j = 0; j < k; ++j) {
        const double z = double(p[j]), y = double(t[j]);
        l += bce_logits(z, y);
        if (d) d[j] = T((sigmoid(z) - y) * g / double(k));
      }
      return l / double(k);
    case LossKind::softmax_ce: {
      double m = -INFINITY;
      for (index_t j = 0; j < k; ++j) m = std::max(m, double(p[j]));
      double s = 0.0;
      for (index_t j = 0; j < k; ++j) s += std::exp(double(p[j]) - m);
      const double lse = m + std::log(s);
      double mass = 1.0;  // total target probability
      if (a.labels) {
        l = lse - double(p[a.labels[i]]);
      } else {
        mass = 0.0;
        for (index_t j = 0; j < k; ++j) {
          l += double(t[j]) * (lse - double(p[j]));
          mass += double(t[j]);
        }
      }
      if (d) {
        for (index_t j = 0; j < k; ++j) {
          const double target = a.labels ? (a.labels[i] == j ? 1.0 : 0.0) : double(t[j]);
          d[j] = T((mass * std::exp(double(p[j]) - lse) - target) * g);
        }
      }
      return l;
    }
  }
  return l;
}

template <typename T>
double loss_impl(const LossArgs<T>& a) {
  const auto rows_sum = [&](index_t b, index_t e) {
    double s = 0.0;
    for (index_t i = b; i < e; ++i) {
      const double w = a.weights ? double(a.weights[i]) : 1.0;
      s += w * row_loss(a, i, w / a.weight_sum);
    }
    return s;
  };
  const double total = ordered_sum(a.n, kShardRows, a.nthreads, rows_sum, a.chunk_sums);
  return total / a.weight_sum;
}

}  // namespace

double loss(const LossArgs<float>& args) { return loss_impl(args); }
double loss(const LossArgs<double>& args) { return loss_impl(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
