// Fused optimizer updates of one SIMD path: one in-place pass over a flat parameter buffer
// (every tensor of a model is a view into it, so one call updates the whole model).
// Elementwise, hence trivially identical for any thread count.
#include <algorithm>
#include <cmath>

#include "isa_kernels.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

constexpr index_t kChunk = 16384;

// The gradient with L1/L2 regularization of the entries the mask marks as weights: the
// penalty l1 * sum|w| + l2 * sum w^2 adds l1 * sign(w) + 2 * l2 * w.
template <typename T, bool kRegularized>
inline T regularized(const OptimizerArgs<T>& a, index_t i, T l1, T l2x2) {
  const T g = a.grads[i];
  if constexpr (!kRegularized) {
    return g;
  } else {
    const T p = a.params[i];
    const T sign = T(p > T(0)) - T(p < T(0));
    const T reg = l1 * sign + l2x2 * p;
    return a.weight_mask && !a.weight_mask[i] ? g : g + reg;
  }
}

// Adam without regularization or decay, the same expressions as the general loop in the same
// order (so the same roundings), over restrict pointers so that it vectorizes.
template <typename T>
void adam_plain(const T* __restrict g, T* __restrict m, T* __restrict v, T* __restrict p, index_t n, T b1, T b2,
                T one_minus_b1, T one_minus_b2, T step_size, T inv_sqrt_bc2, T eps) {
  for (index_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + one_minus_b1 * g[i];
    v[i] = b2 * v[i] + one_minus_b2 * g[i] * g[i];
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
  }
}

template <typename T, bool kReg>
void update_range(const OptimizerArgs<T>& a, index_t b, index_t e) {
  const T lr = T(a.lr), l1 = T(a.l1), l2x2 = T(2.0 * a.l2), eps = T(a.eps);
  T* p = a.params;
  switch (a.kind) {
    case OptimizerKind::sgd: {
      const T mu = T(a.momentum);
      if (a.state0 == nullptr) {
        for (index_t i = b; i < e; ++i) p[i] -= lr * regularized<T, kReg>(a, i, l1, l2x2);
      } else {
        T* v = a.state0;
        for (index_t i = b; i < e; ++i) {
          const T g = regularized<T, kReg>(a, i, l1, l2x2);
          v[i] = mu * v[i] + g;
          p[i] -= lr * (a.nesterov ? g + mu * v[i] : v[i]);
        }
      }
      return;
    }
    case OptimizerKind::adagrad: {
      T* acc = a.state0;
      for (index_t i = b; i < e; ++i) {
        const T g = regularized<T, kReg>(a, i, l1, l2x2);
        acc[i] += g * g;
        p[i] -= lr * g / (std::sqrt(acc[i]) + eps);
      }
      return;
    }
    case OptimizerKind::adam: {
      const double t = double(a.step);
      // 1 - beta formed in double, then rounded once: T(1) - T(beta2) would carry beta2's
      // float32 rounding error amplified by beta2 / (1 - beta2) (~150 ulp at 0.999), which
      // the double-precision bias correction below does not cancel.
      const T b1 = T(a.beta1), b2 = T(a.beta2);
      const T one_minus_b1 = T(1.0 - a.beta1), one_minus_b2 = T(1.0 - a.beta2);
      const T step_size = T(a.lr / (1.0 - std::pow(a.beta1, t)));
      const T inv_sqrt_bc2 = T(1.0 / std::sqrt(1.0 - std::pow(a.beta2, t)));
      const T decay = T(a.lr * a.weight_decay);
      if (!kReg && decay == T(0)) {  // the default: a branch-free loop the compiler vectorizes
        adam_plain(a.grads + b, a.state0 + b, a.state1 + b, p + b, e - b, b1, b2, one_minus_b1, one_minus_b2,
                   step_size, inv_sqrt_bc2, eps);
        return;
      }
      T* m = a.state0;
      T* v = a.state1;
      for (index_t i = b; i < e; ++i) {
        const T g = regularized<T, kReg>(a, i, l1, l2x2);
        if (decay != T(0) && !(a.weight_mask && !a.weight_mask[i])) p[i] -= decay * p[i];  // AdamW
        m[i] = b1 * m[i] + one_minus_b1 * g;
        v[i] = b2 * v[i] + one_minus_b2 * g * g;
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
      }
      return;
    }
    case OptimizerKind::rmsprop: {
      const T rho = T(a.rho), mu = T(a.momentum);
      const T one_minus_rho = T(1.0 - a.rho);  // in double, as for Adam's betas
      T* sq = a.state0;
      T* buf = a.state1;
      T* gavg = a.state2;
      for (index_t i = b; i < e; ++i) {
        const T g = regularized<T, kReg>(a, i, l1, l2x2);
        sq[i] = rho * sq[i] + one_minus_rho * g * g;
        T avg = sq[i];
        if (a.centered) {
          gavg[i] = rho * gavg[i] + one_minus_rho * g;
          avg -= gavg[i] * gavg[i];
        }
        T d = g / (std::sqrt(avg) + eps);
        if (buf) {
          buf[i] = mu * buf[i] + d;
          d = buf[i];
        }
        p[i] -= lr * d;
      }
      return;
    }
  }
}

template <typename T>
void step_impl(const OptimizerArgs<T>& a) {
  const bool reg = a.l1 != 0.0 || a.l2 != 0.0;
  const index_t chunks = (a.n + kChunk - 1) / kChunk;
  parallel_for(chunks, a.nthreads, [&](index_t c) {
    const index_t b = c * kChunk, e = std::min(a.n, (c + 1) * kChunk);
    if (reg) update_range<T, true>(a, b, e); else update_range<T, false>(a, b, e);
  });
}

}  // namespace

void optimizer_step(const OptimizerArgs<float>& args) { step_impl(args); }
void optimizer_step(const OptimizerArgs<double>& args) { step_impl(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
