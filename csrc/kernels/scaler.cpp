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

// Columns per tile: a block of 256 rows x 256 columns of doubles is 512 KiB, so the second
// (deviation) pass over a tile reads from L2, not memory, however wide x is.
constexpr index_t kStatsCols = 256;

// Rows [r0, r1) x columns [j0, j1) of x: the first pass accumulates sum, min and max; the
// second (deviations from the block mean, for m2) re-reads the block from cache. Both run
// as plain loops that vectorize (a NaN just propagates into the sum); only the columns whose
// sum came out NaN are then redone with NaN skipped, element by element.
template <typename T, bool Moments, bool Extrema>
void stats_block(const T* __restrict x, index_t c, index_t r0, index_t r1, index_t j0, index_t j1,
                 double* __restrict cnt, double* __restrict mean, double* __restrict m2, double* __restrict mn,
                 double* __restrict mx) {
  const double inf = std::numeric_limits<double>::infinity();
  const double rows = double(r1 - r0);
  for (index_t j = j0; j < j1; ++j) {
    mean[j] = 0.0;  // the sum, first
    if (Extrema) { mn[j] = inf; mx[j] = -inf; }
  }
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * c;
    for (index_t j = j0; j < j1; ++j) {
      const double v = double(xr[j]);
      mean[j] += v;
      if (Extrema) {
        mn[j] = v < mn[j] ? v : mn[j];  // comparisons with NaN are false: it is skipped
        mx[j] = v > mx[j] ? v : mx[j];
      }
    }
  }
  for (index_t j = j0; j < j1; ++j) {
    cnt[j] = rows;
    if (mean[j] != mean[j]) {  // a NaN in this column (or inf - inf): recount without NaN
      double n_ok = 0.0, sum = 0.0;
      for (index_t r = r0; r < r1; ++r) {
        const double v = double(x[r * c + j]);
        if (v == v) {
          n_ok += 1.0;
          sum += v;
        }
      }
      cnt[j] = n_ok;
      mean[j] = sum;
    }
  }
  if (!Moments) return;
  for (index_t j = j0; j < j1; ++j) {
    mean[j] = cnt[j] > 0.0 ? mean[j] / cnt[j] : 0.0;
    m2[j] = 0.0;
  }
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * c;
    for (index_t j = j0; j < j1; ++j) {
      const double d = double(xr[j]) - mean[j];
      m2[j] += d * d;
    }
  }
  for (index_t j = j0; j < j1; ++j) {
    if (cnt[j] == rows) continue;  // no NaN: the plain sum above is right
    double sum = 0.0;
    for (index_t r = r0; r < r1; ++r) {
      const double v = double(x[r * c + j]);
      if (v == v) sum += (v - mean[j]) * (v - mean[j]);
    }
    m2[j] = sum;
  }
}

template <typename T, bool Moments, bool Extrema>
void column_stats_impl(const ColumnStatsArgs<T>& a) {
  const index_t n = a.n, c = a.c;
  if (c <= 0) return;
  const index_t chunks = std::max<index_t>(1, (n + kScalerChunkRows - 1) / kScalerChunkRows);
  const index_t width = chunks * c;
  double* part = static_cast<double*>(thread_scratch(ScratchSlot::reduction, size_t(5 * width) * sizeof(double)));
  double* p_cnt = part;
  double* p_mean = part + width;
  double* p_m2 = part + 2 * width;
  double* p_min = part + 3 * width;
  double* p_max = part + 4 * width;
  const double inf = std::numeric_limits<double>::infinity();
#pragma omp parallel num_threads(a.nthreads) if (a.nthreads > 1)
  {
#pragma omp for schedule(static)
    for (index_t ch = 0; ch < chunks; ++ch) {
      const index_t r0 = ch * kScalerChunkRows, r1 = std::min(n, r0 + kScalerChunkRows);
      const index_t off = ch * c;
      for (index_t j0 = 0; j0 < c; j0 += kStatsCols)
        stats_block<T, Moments, Extrema>(a.x, c, r0, r1, j0, std::min(c, j0 + kStatsCols), p_cnt + off,
                                         p_mean + off, p_m2 + off, p_min + off, p_max + off);
    }
#pragma omp for schedule(static)
    for (index_t j = 0; j < c; ++j) {
      double count = 0.0, mean = 0.0, m2 = 0.0, mn = inf, mx = -inf;
      for (index_t ch = 0; ch < chunks; ++ch) {
        const index_t i = ch * c + j;
        const double nb = p_cnt[i];
        if (Extrema) {
          mn = p_min[i] < mn ? p_min[i] : mn;
          mx = p_max[i] > mx ? p_max[i] : mx;
        }
        if (!Moments || nb == 0.0) {
          count += nb;
          continue;
        }
        if (count == 0.0) {
          count = nb;
          mean = p_mean[i];
          m2 = p_m2[i];
          continue;
        }
        // Chan, Golub and LeVeque: merge (count, mean, m2) with the block's
        const double total = count + nb;
        const double delta = p_mean[i] - mean;
        mean += delta * (nb / total);
        m2 += p_m2[i] + delta * delta * (count * nb / total);
        count = total;
      }
      a.count[j] = count;
      if (Moments) { a.mean[j] = mean; a.m2[j] = m2; }
      if (Extrema) { a.min[j] = mn; a.max[j] = mx; }
    }
  }
}

template <typename T>
void column_stats(const ColumnStatsArgs<T>& a) {
  if (a.moments && a.extrema) column_stats_impl<T, true, true>(a);
  else if (a.moments) column_stats_impl<T, true, false>(a);
  else if (a.extrema) column_stats_impl<T, false, true>(a);
  else column_stats_impl<T, false, false>(a);
}

template <typename T, bool Clip>
bool affine_rows(const AffineArgs<T>& a, const double* s, const double* m, const double* o) {
  const index_t n = a.n, c = a.c;
  const double* lo = a.lo;
  const double* hi = a.hi;
  const double inf = std::numeric_limits<double>::infinity();
  bool any_inf = false;  // a logical OR: the same for any thread count
#pragma omp parallel for schedule(static) num_threads(a.nthreads) if (a.nthreads > 1) reduction(|| : any_inf)
  for (index_t r = 0; r < n; ++r) {
    const T* xr = a.x + r * c;
    T* yr = a.y + r * c;
    int row_inf = 0;
    for (index_t j = 0; j < c; ++j) {
      const double xv = double(xr[j]);
      row_inf |= int(std::fabs(xv) == inf);
      double v = (xv - s[j]) * m[j] + o[j];
      if (Clip) v = v < lo[j] ? lo[j] : (v > hi[j] ? hi[j] : v);  // NaN stays NaN
      yr[j] = T(v);
    }
    any_inf = any_inf || row_inf != 0;
  }
  return any_inf;
}

template <typename T>
bool affine(const AffineArgs<T>& a) {
  const index_t c = a.c;
  if (c <= 0 || a.n <= 0) return false;
  // Null vectors become explicit defaults, so the row loop has one shape.
  double* work = static_cast<double*>(thread_scratch(ScratchSlot::reduction_result, size_t(3 * c) * sizeof(double)));
  const double* s = a.shift;
  const double* m = a.scale;
  const double* o = a.offset;
  if (!s) { std::fill(work, work + c, 0.0); s = work; }
  if (!m) { std::fill(work + c, work + 2 * c, 1.0); m = work + c; }
  if (!o) { std::fill(work + 2 * c, work + 3 * c, 0.0); o = work + 2 * c; }
  return a.lo && a.hi ? affine_rows<T, true>(a, s, m, o) : affine_rows<T, false>(a, s, m, o);
}

template <typename T>
index_t log_offset(const LogArgs<T>& a) {
  const index_t n = a.n, c = a.c;
  if (c <= 0 || n <= 0) return -1;
  const index_t chunks = (n + kScalerChunkRows - 1) / kScalerChunkRows;
  index_t* first_bad = static_cast<index_t*>(thread_scratch(ScratchSlot::reduction, size_t(chunks) * sizeof(index_t)));
  const double offset = a.offset;
#pragma omp parallel for schedule(static) num_threads(a.nthreads) if (a.nthreads > 1)
  for (index_t ch = 0; ch < chunks; ++ch) {
    const index_t b = ch * kScalerChunkRows * c, e = std::min(n, (ch + 1) * kScalerChunkRows) * c;
    index_t bad = -1;
    for (index_t i = b; i < e; ++i) {
      const double v = double(a.x[i]) + offset;
      if (v <= 0.0 && bad < 0) bad = i;
      a.y[i] = T(std::log(v));
    }
    first_bad[ch] = bad;
  }
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
