// Portable "vectors": small fixed arrays the compiler may map to whatever SIMD the baseline
// target has (SSE2 on x86-64, NEON on aarch64). Semantics match the x86 paths lane by lane:
// max(a, b) = a > b ? a : b, comparisons are ordered (false on NaN). No FMA: a*b + c rounds twice.
#pragma once

template <typename Tp, int Wp>
struct gvec {
  using T = Tp;
  static constexpr int W = Wp;
  struct R { T v[W]; };
  struct M { bool v[W]; };
  static R zero() { R r; for (int i = 0; i < W; ++i) r.v[i] = T(0); return r; }
  static R set1(T x) { R r; for (int i = 0; i < W; ++i) r.v[i] = x; return r; }
  static R load(const T* p) { R r; for (int i = 0; i < W; ++i) r.v[i] = p[i]; return r; }
  static void store(T* p, R a) { for (int i = 0; i < W; ++i) p[i] = a.v[i]; }
  static R load_n(const T* p, index_t n) { R r = zero(); for (int i = 0; i < W && i < n; ++i) r.v[i] = p[i]; return r; }
  static void store_n(T* p, R a, index_t n) { for (int i = 0; i < W && i < n; ++i) p[i] = a.v[i]; }
  static R add(R a, R b) { for (int i = 0; i < W; ++i) a.v[i] += b.v[i]; return a; }
  static R sub(R a, R b) { for (int i = 0; i < W; ++i) a.v[i] -= b.v[i]; return a; }
  static R mul(R a, R b) { for (int i = 0; i < W; ++i) a.v[i] *= b.v[i]; return a; }
  static R div(R a, R b) { for (int i = 0; i < W; ++i) a.v[i] /= b.v[i]; return a; }
  static R fmadd(R a, R b, R c) { for (int i = 0; i < W; ++i) c.v[i] += a.v[i] * b.v[i]; return c; }
  static R max(R a, R b) { for (int i = 0; i < W; ++i) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i]; return a; }
  static R min(R a, R b) { for (int i = 0; i < W; ++i) a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i]; return a; }
  static R abs(R a) { for (int i = 0; i < W; ++i) a.v[i] = std::fabs(a.v[i]); return a; }
  static M gt(R a, R b) { M m; for (int i = 0; i < W; ++i) m.v[i] = a.v[i] > b.v[i]; return m; }
  static M lt(R a, R b) { M m; for (int i = 0; i < W; ++i) m.v[i] = a.v[i] < b.v[i]; return m; }
  static M eq(R a, R b) { M m; for (int i = 0; i < W; ++i) m.v[i] = a.v[i] == b.v[i]; return m; }
  static R select(M m, R t, R f) { for (int i = 0; i < W; ++i) f.v[i] = m.v[i] ? t.v[i] : f.v[i]; return f; }
  static R round(R a) { for (int i = 0; i < W; ++i) a.v[i] = std::nearbyint(a.v[i]); return a; }
  static R pow2i(R n) { for (int i = 0; i < W; ++i) n.v[i] = std::ldexp(T(1), int(n.v[i])); return n; }
  // W values of type S (or the first n, the rest 0) converted exactly to T.
  template <typename S>
  static R widen(const S* p) { R r; for (int i = 0; i < W; ++i) r.v[i] = T(p[i]); return r; }
  template <typename S>
  static R widen_n(const S* p, index_t n) { R r = zero(); for (int i = 0; i < W && i < n; ++i) r.v[i] = T(p[i]); return r; }
};

using f32v = gvec<float, 4>;
using f64v = gvec<double, 2>;

constexpr int kGemmMrF32 = 4, kGemmNvF32 = 2;
constexpr int kGemmMrF64 = 4, kGemmNvF64 = 2;
