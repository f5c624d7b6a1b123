// Activation functions and their derivatives on one SIMD register, shared by the fused
// GEMM epilogue and the standalone elementwise kernels (one place for each formula).
// float: vector polynomials (Cephes coefficients for exp and tanh, cited below);
// double: the C library, lane by lane (double is the correctness path, not the fast one).
#pragma once
#include <type_traits>

#include "simd.hpp"

namespace fastnn {
namespace FASTNN_ISA {

template <class D>
using reg_t = typename D::R;

// n (<= W) lanes from memory, full-width moves when n == W: masked moves are slow on some
// CPUs (a masked store is microcoded on AMD Zen), so they are kept for row tails.
template <class D>
inline reg_t<D> load_part(const typename D::T* p, index_t n) {
  return n >= D::W ? D::load(p) : D::load_n(p, n);
}
template <class D>
inline void store_part(typename D::T* p, reg_t<D> v, index_t n) {
  if (n >= D::W) D::store(p, v); else D::store_n(p, v, n);
}

// Apply f lane by lane through memory (used for double, where libm is accurate and simple).
template <class D, class F>
inline reg_t<D> per_lane(reg_t<D> x, F f) {
  alignas(64) typename D::T lanes[D::W];
  D::store(lanes, x);
  for (int i = 0; i < D::W; ++i) lanes[i] = f(lanes[i]);
  return D::load(lanes);
}

// exp(x) for float lanes. Range reduction x = n ln2 + r with ln2 split in two (Cephes expf),
// degree-6 polynomial for e^r. Results below FLT_MIN flush to 0, above FLT_MAX give +inf,
// NaN stays NaN (the clamps are written so that x86 max/min return a NaN operand).
template <class D>
inline reg_t<D> v_exp(reg_t<D> x) {
  if constexpr (std::is_same_v<typename D::T, double>) {
    return per_lane<D>(x, [](double v) { return std::exp(v); });
  } else {
    const auto hi = D::set1(88.3762626647949f), lo = D::set1(-87.3365478515625f);
    auto xc = D::min(hi, D::max(lo, x));
    auto n = D::round(D::mul(xc, D::set1(1.44269504088896341f)));
    auto r = D::fmadd(n, D::set1(-0.693359375f), xc);
    r = D::fmadd(n, D::set1(2.12194440e-4f), r);
    auto p = D::set1(1.9875691500e-4f);
    p = D::fmadd(p, r, D::set1(1.3981999507e-3f));
    p = D::fmadd(p, r, D::set1(8.3334519073e-3f));
    p = D::fmadd(p, r, D::set1(4.1665795894e-2f));
    p = D::fmadd(p, r, D::set1(1.6666665459e-1f));
    p = D::fmadd(p, r, D::set1(5.0000001201e-1f));
    p = D::fmadd(D::mul(p, r), r, D::add(r, D::set1(1.0f)));
    auto y = D::mul(p, D::pow2i(n));
    y = D::select(D::gt(x, hi), D::set1(INFINITY), y);
    return D::select(D::lt(x, lo), D::zero(), y);
  }
}

// exp(x) - 1 without the cancellation of exp(x) - 1 near 0: Taylor series to x^8 for
// |x| < 0.5 (truncation < 2e-8 relative), exp(x) - 1 elsewhere.
template <class D>
inline reg_t<D> v_expm1(reg_t<D> x) {
  if constexpr (std::is_same_v<typename D::T, double>) {
    return per_lane<D>(x, [](double v) { return std::expm1(v); });
  } else {
    auto p = D::set1(1.0f / 40320.0f);
    p = D::fmadd(p, x, D::set1(1.0f / 5040.0f));
    p = D::fmadd(p, x, D::set1(1.0f / 720.0f));
    p = D::fmadd(p, x, D::set1(1.0f / 120.0f));
    p = D::fmadd(p, x, D::set1(1.0f / 24.0f));
    p = D::fmadd(p, x, D::set1(1.0f / 6.0f));
    p = D::fmadd(p, x, D::set1(0.5f));
    p = D::fmadd(p, x, D::set1(1.0f));
    auto small = D::mul(p, x);
    auto large = D::sub(v_exp<D>(x), D::set1(1.0f));
    return D::select(D::lt(D::abs(x), D::set1(0.5f)), small, large);
  }
}

// Logistic sigmoid, accurate in both tails: with e = exp(-|x|) (never overflows),
// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0.
template <class D>
inline reg_t<D> v_sigmoid(reg_t<D> x) {
  using T = typename D::T;
  auto e = v_exp<D>(D::sub(D::zero(), D::abs(x)));
  auto s = D::div(D::set1(T(1)), D::add(D::set1(T(1)), e));
  return D::select(D::lt(x, D::zero()), D::mul(e, s), s);
}

// tanh: Cephes tanhf's odd polynomial for |x| < 0.625, 1 - 2 / (exp(2|x|) + 1) beyond,
// with the sign restored.
template <class D>
inline reg_t<D> v_tanh(reg_t<D> x) {
  if constexpr (std::is_same_v<typename D::T, double>) {
    return per_lane<D>(x, [](double v) { return std::tanh(v); });
  } else {
    auto ax = D::abs(x);
    auto z = D::mul(x, x);
    auto p = D::set1(-5.70498872745e-3f);
    p = D::fmadd(p, z, D::set1(2.06390887954e-2f));
    p = D::fmadd(p, z, D::set1(-5.37397155531e-2f));
    p = D::fmadd(p, z, D::set1(1.33314422036e-1f));
    p = D::fmadd(p, z, D::set1(-3.33332819422e-1f));
    auto small = D::fmadd(D::mul(p, z), x, x);
    auto e = v_exp<D>(D::add(ax, ax));
    auto big = D::sub(D::set1(1.0f), D::div(D::set1(2.0f), D::add(e, D::set1(1.0f))));
    big = D::select(D::lt(x, D::zero()), D::sub(D::zero(), big), big);
    return D::select(D::lt(ax, D::set1(0.625f)), small, big);
  }
}

// f(std::integral_constant<Activation, act>()): one instantiation of f per activation, so
// that the per-vector work inside it has no branch on the activation.
template <class F>
inline decltype(auto) with_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::relu: return f(std::integral_constant<Activation, Activation::relu>());
    case Activation::leaky_relu: return f(std::integral_constant<Activation, Activation::leaky_relu>());
    case Activation::prelu: return f(std::integral_constant<Activation, Activation::prelu>());
    case Activation::elu: return f(std::integral_constant<Activation, Activation::elu>());
    case Activation::sigmoid: return f(std::integral_constant<Activation, Activation::sigmoid>());
    case Activation::tanh: return f(std::integral_constant<Activation, Activation::tanh>());
    case Activation::linear: break;
  }
  return f(std::integral_constant<Activation, Activation::linear>());
}

// y = act(z). `alpha` is the leaky slope or the ELU alpha; `slope` the PReLU slopes.
template <class D>
inline reg_t<D> act_forward(Activation act, reg_t<D> z, reg_t<D> alpha, reg_t<D> slope) {
  const auto zero = D::zero();
  switch (act) {
    case Activation::linear: return z;
    case Activation::relu: return D::max(zero, z);  // operand order keeps NaN
    case Activation::leaky_relu: return D::select(D::gt(z, zero), z, D::mul(alpha, z));
    case Activation::prelu: return D::select(D::gt(z, zero), z, D::mul(slope, z));
    case Activation::elu: return D::select(D::gt(z, zero), z, D::mul(alpha, v_expm1<D>(z)));
    case Activation::sigmoid: return v_sigmoid<D>(z);
    case Activation::tanh: return v_tanh<D>(z);
  }
  return z;
}

// dz = dy * act'(.), from the forward output y (every activation but prelu) or from the
// pre-activation z (prelu, whose learned slope may be negative so y's sign says nothing).
template <class D>
inline reg_t<D> act_backward(Activation act, reg_t<D> dy, reg_t<D> y, reg_t<D> z, reg_t<D> alpha,
                             reg_t<D> slope) {
  using T = typename D::T;
  const auto zero = D::zero();
  const auto one = D::set1(T(1));
  switch (act) {
    case Activation::linear: return dy;
    case Activation::relu: return D::select(D::gt(y, zero), dy, zero);
    case Activation::leaky_relu: return D::select(D::gt(y, zero), dy, D::mul(alpha, dy));
    case Activation::prelu: return D::select(D::gt(z, zero), dy, D::mul(slope, dy));
    case Activation::elu: return D::select(D::gt(y, zero), dy, D::mul(dy, D::add(y, alpha)));
    case Activation::sigmoid: return D::mul(dy, D::mul(y, D::sub(one, y)));
    case Activation::tanh: return D::mul(dy, D::sub(one, D::mul(y, y)));
  }
  return dy;
}

}  // namespace FASTNN_ISA
}  // namespace fastnn
