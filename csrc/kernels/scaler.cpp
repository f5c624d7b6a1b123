// Scaler kernels of one SIMD path (scaler.hpp). Shapes: x, y (N, C); per-column vectors (C).
// Statistics: fixed blocks of kScalerChunkRows rows, each block's partial written by one
// thread, then merged per column in block order (bitwise identical for any thread count).
#include <algorithm>
#include <cmath>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "isa_kernels.hpp"
#include "workspace.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

// Columns per register tile: the block loops keep one tile's accumulators (sum, min, max)
// in registers; four vectors of doubles per statistic.
constexpr index_t kTileCols = 4 * f64v::W;

// Where one block of rows of one tile of columns reads and writes: rows [r0, r1) x columns
// [j0, j0 + nj) of x; the per-column outputs are this block's partials.
template <typename T>
struct TileJob {
  const T* x;          // (N, C)
  index_t c, r0, r1, j0;
  const double* w;     // (N) or null
  const double* k;     // (C) shifts (NaN replaced by 0)
  double* cnt;         // (C) block partials, indexed by column
  double* sum;
  double* m2;
  double* mn;
  double* mx;
};

// The first pass of stats_tile over a full tile, kTileCols columns in f64 vectors kept in
// registers: s += w * (x - k) (or x - k), lo = min(x, lo), hi = max(x, hi), each column
// adding its rows in order exactly as the scalar loop does (min/max keep lo/hi on NaN).
// Unweighted, s + d is taken as fma(d, 1, s): the same single rounding (d * 1 is exact), on
// the FMA pipes, which this pass otherwise leaves idle while its conversions and
// subtractions keep the add pipes busy (a float32 1M x 32 fit: 7.1 -> 6.4 ms from cache,
// 8.3 -> 8.1 ms from memory).
template <typename T, bool Weighted, bool Moments, bool Extrema>
void first_pass_vectors(const TileJob<T>& t, const double* k, double* s, double* lo, double* hi) {
  using V = f64v;
  constexpr int NV = kTileCols / V::W;
  const typename V::R one = V::set1(1.0);
  typename V::R vs[NV], vlo[NV], vhi[NV], vk[NV];
  for (int v = 0; v < NV; ++v) {
    vs[v] = V::load(s + v * V::W);
    vlo[v] = V::load(lo + v * V::W);
    vhi[v] = V::load(hi + v * V::W);
    vk[v] = V::load(k + v * V::W);
  }
  for (index_t r = t.r0; r < t.r1; ++r) {
    const T* xr = t.x + r * t.c + t.j0;
    const typename V::R wr = V::set1(Weighted ? t.w[r] : 1.0);
    for (int v = 0; v < NV; ++v) {
      const typename V::R x = V::widen(xr + v * V::W);
      if (Moments) {
        const typename V::R d = V::sub(x, vk[v]);
        vs[v] = Weighted ? V::add(vs[v], V::mul(wr, d)) : V::fmadd(d, one, vs[v]);
      }
      if (Extrema) {
        vlo[v] = V::min(x, vlo[v]);
        vhi[v] = V::max(x, vhi[v]);
      }
    }
  }
  for (int v = 0; v < NV; ++v) {
    V::store(s + v * V::W, vs[v]);
    V::store(lo + v * V::W, vlo[v]);
    V::store(hi + v * V::W, vhi[v]);
  }
}

// The second pass of stats_tile over a full tile: q += w * (d * d) (or d * d), d = x - center,
// the add fused into one FMA (one rounding, and the FMA pipes share the work that kept the
// add pipes busy: 9.8 -> 8.9 ms for a float32 1M x 32 fit).
template <typename T, bool Weighted>
void second_pass_vectors(const TileJob<T>& t, const double* center, double* q) {
  using V = f64v;
  constexpr int NV = kTileCols / V::W;
  typename V::R vq[NV], vc[NV];
  for (int v = 0; v < NV; ++v) {
    vq[v] = V::load(q + v * V::W);
    vc[v] = V::load(center + v * V::W);
  }
  for (index_t r = t.r0; r < t.r1; ++r) {
    const T* xr = t.x + r * t.c + t.j0;
    const typename V::R wr = V::set1(Weighted ? t.w[r] : 1.0);
    for (int v = 0; v < NV; ++v) {
      const typename V::R d = V::sub(V::widen(xr + v * V::W), vc[v]);
      vq[v] = Weighted ? V::fmadd(wr, V::mul(d, d), vq[v]) : V::fmadd(d, d, vq[v]);
    }
  }
  for (int v = 0; v < NV; ++v) V::store(q + v * V::W, vq[v]);
}

// One tile of columns over one block of rows. Width > 0: exactly Width columns (a
// compile-time trip count, so the accumulators live in registers); Width == 0: nj columns.
// The first pass accumulates w * (x - k), min and max as plain loops (a NaN just propagates
// into the sum); the columns whose sum came out NaN are then redone with NaN skipped. The
// second pass (m2 about the block mean) re-reads the block from cache.
template <typename T, bool Weighted, bool Moments, bool Extrema, index_t Width>
void stats_tile(const TileJob<T>& t, index_t nj) {
  const index_t m = Width > 0 ? Width : nj;
  const double inf = std::numeric_limits<double>::infinity();
  double s[kTileCols], lo[kTileCols], hi[kTileCols], k[kTileCols], mean[kTileCols];
  for (index_t j = 0; j < m; ++j) {
    s[j] = 0.0;
    lo[j] = inf;
    hi[j] = -inf;
    k[j] = Moments ? t.k[t.j0 + j] : 0.0;
  }
  double wsum = 0.0;
  if constexpr (Width > 0) {
    first_pass_vectors<T, Weighted, Moments, Extrema>(t, k, s, lo, hi);
    if (Weighted)
      for (index_t r = t.r0; r < t.r1; ++r) wsum += t.w[r];
  } else {
    for (index_t r = t.r0; r < t.r1; ++r) {
      const T* __restrict xr = t.x + r * t.c + t.j0;
      const double wr = Weighted ? t.w[r] : 1.0;
      if (Weighted) wsum += wr;
      for (index_t j = 0; j < m; ++j) {
        const double v = double(xr[j]);
        if (Moments) s[j] += Weighted ? wr * (v - k[j]) : v - k[j];
        if (Extrema) {
          lo[j] = v < lo[j] ? v : lo[j];  // comparisons with NaN are false: it is skipped
          hi[j] = v > hi[j] ? v : hi[j];
        }
      }
    }
  }
  const double rows = Weighted ? wsum : double(t.r1 - t.r0);
  for (index_t j = 0; j < m; ++j) {
    if (Extrema) { t.mn[t.j0 + j] = lo[j]; t.mx[t.j0 + j] = hi[j]; }
  }
  if (!Moments) return;
  double cnt[kTileCols];
  bool any_nan = false;
  for (index_t j = 0; j < m; ++j) {
    cnt[j] = rows;
    if (s[j] != s[j]) {  // a NaN in this column (or inf - inf): recount without NaN
      any_nan = true;
      double n_ok = 0.0, sum = 0.0;
      for (index_t r = t.r0; r < t.r1; ++r) {
        const double v = double(t.x[r * t.c + t.j0 + j]);
        const double wr = Weighted ? t.w[r] : 1.0;
        if (v == v) {
          n_ok += wr;
          sum += wr * (v - k[j]);
        }
      }
      cnt[j] = n_ok;
      s[j] = sum;
    }
    mean[j] = cnt[j] > 0.0 ? s[j] / cnt[j] : 0.0;  // the block mean of x - k
  }
  // Deviations from the block mean C = k + mean, taken as x - c with c = C rounded (one
  // subtraction per value) and e = C - c exactly (Knuth's TwoSum): sum (x - C)^2 =
  // sum (x - c)^2 - 2 e sum (x - c) + n e^2, and sum (x - c) = n e up to the rounding of
  // mean, so m2 = sum (x - c)^2 - n e^2.
  double center[kTileCols], err[kTileCols];
  for (index_t j = 0; j < m; ++j) {
    center[j] = k[j] + mean[j];
    const double kv = center[j] - mean[j];
    err[j] = (k[j] - kv) + (mean[j] - (center[j] - kv));
  }
  double q[kTileCols];
  for (index_t j = 0; j < m; ++j) q[j] = 0.0;
  if constexpr (Width > 0) {
    second_pass_vectors<T, Weighted>(t, center, q);
  } else {
    for (index_t r = t.r0; r < t.r1; ++r) {
      const T* __restrict xr = t.x + r * t.c + t.j0;
      const double wr = Weighted ? t.w[r] : 1.0;
      for (index_t j = 0; j < m; ++j) {
        const double d = double(xr[j]) - center[j];
        q[j] += Weighted ? wr * (d * d) : d * d;
      }
    }
  }
  for (index_t j = 0; j < m; ++j) {
    const double v = q[j] - cnt[j] * err[j] * err[j];
    q[j] = v < 0.0 ? 0.0 : v;  // rounding; a NaN stays NaN
  }
  if (any_nan) {
    for (index_t j = 0; j < m; ++j) {
      if (cnt[j] == rows && q[j] == q[j]) continue;  // no NaN: the plain sum above is right
      double acc = 0.0;
      for (index_t r = t.r0; r < t.r1; ++r) {
        const double v = double(t.x[r * t.c + t.j0 + j]);
        const double wr = Weighted ? t.w[r] : 1.0;
        const double d = v - center[j];
        if (v == v) acc += wr * (d * d);
      }
      const double v = acc - cnt[j] * err[j] * err[j];
      q[j] = v < 0.0 ? 0.0 : v;
    }
  }
  for (index_t j = 0; j < m; ++j) {
    t.cnt[t.j0 + j] = cnt[j];
    t.sum[t.j0 + j] = s[j];
    t.m2[t.j0 + j] = q[j];
  }
}

template <typename T, bool Weighted, bool Moments, bool Extrema>
void stats_block(const TileJob<T>& t, index_t c) {
  TileJob<T> u = t;
  index_t j0 = 0;
  for (; j0 + kTileCols <= c; j0 += kTileCols) {
    u.j0 = j0;
    stats_tile<T, Weighted, Moments, Extrema, kTileCols>(u, kTileCols);
  }
  if (j0 < c) {
    u.j0 = j0;
    stats_tile<T, Weighted, Moments, Extrema, 0>(u, c - j0);
  }
}

// The NaN entries of shift become their column's first non-NaN value (rows in order).
template <typename T>
void pick_shifts(const T* x, index_t n, index_t c, double* shift) {
  index_t open = 0;
  for (index_t j = 0; j < c; ++j) open += shift[j] != shift[j];
  for (index_t r = 0; r < n && open > 0; ++r) {
    const T* xr = x + r * c;
    for (index_t j = 0; j < c; ++j) {
      const double v = double(xr[j]);
      if (shift[j] != shift[j] && v == v) {
        shift[j] = v;
        --open;
      }
    }
  }
}

template <typename T, bool Weighted, bool Moments, bool Extrema>
void column_stats_impl(const ColumnStatsArgs<T>& a) {
  const index_t n = a.n, c = a.c;
  if (c <= 0) return;
  const index_t chunks = std::max<index_t>(1, (n + kScalerChunkRows - 1) / kScalerChunkRows);
  const index_t width = chunks * c;
  double* part = static_cast<double*>(
      thread_scratch(ScratchSlot::reduction, size_t(5 * width + c) * sizeof(double)));
  double* p_cnt = part;
  double* p_sum = part + width;
  double* p_m2 = part + 2 * width;
  double* p_min = part + 3 * width;
  double* p_max = part + 4 * width;
  double* k = part + 5 * width;
  if (Moments) {
    pick_shifts(a.x, n, c, a.shift);
    for (index_t j = 0; j < c; ++j) k[j] = a.shift[j] == a.shift[j] ? a.shift[j] : 0.0;
  }
  const double inf = std::numeric_limits<double>::infinity();
  parallel_for(chunks, a.nthreads, [&](index_t ch) {
    const index_t off = ch * c;
    TileJob<T> t{a.x, c, ch * kScalerChunkRows, std::min(n, (ch + 1) * kScalerChunkRows), 0, a.w, k,
                 p_cnt + off, p_sum + off, p_m2 + off, p_min + off, p_max + off};
    stats_block<T, Weighted, Moments, Extrema>(t, c);
  });
  parallel_for(c, a.nthreads, [&](index_t j) {
    double count = 0.0, sum = 0.0, comp = 0.0, m2 = 0.0, mn = inf, mx = -inf;
    for (index_t ch = 0; ch < chunks; ++ch) {
      const index_t i = ch * c + j;
      if (Extrema) {
        mn = p_min[i] < mn ? p_min[i] : mn;
        mx = p_max[i] > mx ? p_max[i] : mx;
      }
      const double nb = Moments ? p_cnt[i] : 0.0;
      if (!Moments || nb == 0.0) continue;
      const double sb = p_sum[i];
      if (count > 0.0) {
        // Chan, Golub and LeVeque: m2 of the union, from the two means' difference
        const double delta = sb / nb - (sum + comp) / count;
        m2 += p_m2[i] + delta * delta * (count * nb / (count + nb));
      } else {
        m2 = p_m2[i];
      }
      // Neumaier's compensated sum of the block sums
      const double s2 = sum + sb;
      comp += std::fabs(sum) >= std::fabs(sb) ? (sum - s2) + sb : (sb - s2) + sum;
      sum = s2;
      count += nb;
    }
    if (Moments) { a.count[j] = count; a.sum[j] = sum + comp; a.m2[j] = m2; }
    if (Extrema) { a.min[j] = mn; a.max[j] = mx; }
  });
}

template <typename T>
void column_stats(const ColumnStatsArgs<T>& a) {
  const bool wt = a.w != nullptr && a.moments;
  if (wt && a.extrema) column_stats_impl<T, true, true, true>(a);
  else if (wt) column_stats_impl<T, true, true, false>(a);
  else if (a.moments && a.extrema) column_stats_impl<T, false, true, true>(a);
  else if (a.moments) column_stats_impl<T, false, true, false>(a);
  else if (a.extrema) column_stats_impl<T, false, false, true>(a);
}

// Rows [r0, r1): y = T(((x - s) * m + o) clamped); returns the flat index of the first element
// whose result is infinite in T, or -1. Store == false only checks.
template <typename T, bool Clip, bool Store>
index_t affine_block(const AffineArgs<T>& a, index_t r0, index_t r1, const double* s, const double* m,
                     const double* o) {
  const index_t c = a.c;
  const double* lo = a.lo;
  const double* hi = a.hi;
  const T tinf = std::numeric_limits<T>::infinity();
  for (index_t r = r0; r < r1; ++r) {
    const T* xr = a.x + r * c;
    T* yr = a.y + r * c;
    int row_inf = 0;
    for (index_t j = 0; j < c; ++j) {
      double v = (double(xr[j]) - s[j]) * m[j] + o[j];
      if (Clip) v = v < lo[j] ? lo[j] : (v > hi[j] ? hi[j] : v);  // NaN stays NaN
      const T out = T(v);
      row_inf |= int(std::fabs(out) == tinf);
      if (Store) yr[j] = out;
    }
    if (row_inf) {
      for (index_t j = 0; j < c; ++j) {
        double v = (double(xr[j]) - s[j]) * m[j] + o[j];
        if (Clip) v = v < lo[j] ? lo[j] : (v > hi[j] ? hi[j] : v);
        if (std::fabs(T(v)) == tinf) return r * c + j;
      }
    }
  }
  return -1;
}

template <typename T, bool Clip, bool Store>
index_t affine_rows(const AffineArgs<T>& a, const double* s, const double* m, const double* o) {
  const index_t n = a.n;
  const index_t chunks = (n + kScalerChunkRows - 1) / kScalerChunkRows;
  index_t* first_bad = static_cast<index_t*>(thread_scratch(ScratchSlot::reduction, size_t(chunks) * sizeof(index_t)));
  parallel_for(chunks, a.nthreads, [&](index_t ch) {
    const index_t r0 = ch * kScalerChunkRows, r1 = std::min(n, r0 + kScalerChunkRows);
    first_bad[ch] = affine_block<T, Clip, Store>(a, r0, r1, s, m, o);
  });
  for (index_t ch = 0; ch < chunks; ++ch)
    if (first_bad[ch] >= 0) return first_bad[ch];
  return -1;
}

template <typename T, bool Clip>
index_t affine_checked(const AffineArgs<T>& a, const double* s, const double* m, const double* o) {
  if (a.y == a.x) {  // in place: nothing is written unless every element is fine
    const index_t bad = affine_rows<T, Clip, false>(a, s, m, o);
    if (bad >= 0) return bad;
  }
  return affine_rows<T, Clip, true>(a, s, m, o);
}

template <typename T>
index_t affine(const AffineArgs<T>& a) {
  const index_t c = a.c;
  if (c <= 0 || a.n <= 0) return -1;
  // Null vectors become explicit defaults, so the row loop has one shape.
  double* work = static_cast<double*>(thread_scratch(ScratchSlot::reduction_result, size_t(3 * c) * sizeof(double)));
  const double* s = a.shift;
  const double* m = a.scale;
  const double* o = a.offset;
  if (!s) { std::fill(work, work + c, 0.0); s = work; }
  if (!m) { std::fill(work + c, work + 2 * c, 1.0); m = work + c; }
  if (!o) { std::fill(work + 2 * c, work + 3 * c, 0.0); o = work + 2 * c; }
  return a.lo && a.hi ? affine_checked<T, true>(a, s, m, o) : affine_checked<T, false>(a, s, m, o);
}

template <typename T>
index_t log_offset(const LogArgs<T>& a) {
  const index_t n = a.n, c = a.c;
  if (c <= 0 || n <= 0) return -1;
  const index_t chunks = (n + kScalerChunkRows - 1) / kScalerChunkRows;
  index_t* first_bad = static_cast<index_t*>(thread_scratch(ScratchSlot::reduction, size_t(chunks) * sizeof(index_t)));
  const double offset = a.offset;
  parallel_for(chunks, a.nthreads, [&](index_t ch) {
    const index_t b = ch * kScalerChunkRows * c, e = std::min(n, (ch + 1) * kScalerChunkRows) * c;
    index_t bad = -1;
    for (index_t i = b; i < e; ++i) {
      const double v = double(a.x[i]) + offset;
      if (v <= 0.0 && bad < 0) bad = i;
      a.y[i] = T(std::log(v));
    }
    first_bad[ch] = bad;
  });
  for (index_t ch = 0; ch < chunks; ++ch)
    if (first_bad[ch] >= 0) return first_bad[ch];
  return -1;
}

template <typename T>
void column_quantiles(const QuantileArgs<T>& a) {
  const index_t n = a.n, c = a.c;
  const double nan = std::numeric_limits<double>::quiet_NaN();
#pragma omp parallel for schedule(dynamic, 1) num_threads(a.nthreads) if (a.nthreads > 1)
  for (index_t j = 0; j < c; ++j) {
#ifdef _OPENMP
    double* buf = a.work + index_t(omp_get_thread_num()) * n;
#else
    double* buf = a.work;
#endif
    index_t m = 0;
    for (index_t r = 0; r < n; ++r) {
      const double v = double(a.x[r * c + j]);
      if (v == v) buf[m++] = v;
    }
    for (index_t k = 0; k < a.nq; ++k) {
      if (m == 0) {
        a.out[k * c + j] = nan;
        continue;
      }
      const double q = a.q[k];
      const double vi = double(m - 1) * q;  // NumPy's linear method
      index_t lo, hi;
      double g = 0.0;
      if (vi < 0.0) {
        lo = hi = 0;
      } else if (vi >= double(m - 1)) {
        lo = hi = m - 1;
      } else {
        lo = index_t(std::floor(vi));
        hi = lo + 1;
        g = vi - double(lo);
      }
      std::nth_element(buf, buf + lo, buf + m);
      const double va = buf[lo];
      const double vb = hi == lo ? va : *std::min_element(buf + lo + 1, buf + m);
      const double diff = vb - va;  // NumPy's _lerp: from the nearer end
      a.out[k * c + j] = g >= 0.5 ? vb - diff * (1.0 - g) : va + diff * g;
    }
  }
}

template <typename T>
void fill(ScalerKernels<T>& k) {
  k.column_stats = column_stats<T>;
  k.affine = affine<T>;
  k.log_offset = log_offset<T>;
  k.column_quantiles = column_quantiles<T>;
}

}  // namespace

void fill_scaler_kernels(ScalerKernels<float>& k) { fill(k); }
void fill_scaler_kernels(ScalerKernels<double>& k) { fill(k); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
