// Column statistics and fused transforms for fastnn.preprocessing (one SIMD path's copy of
// the kernels is filled into KernelTable::f32/f64.scaler; definitions in scaler.cpp).
//
// Shapes: x, y (N, C) row-major; per-column vectors (C); quantiles (Q, C). NaN is ignored by
// every statistic and kept by every transform. Statistics accumulate in float64 over fixed
// blocks of kScalerChunkRows rows, merged in block order: bitwise identical for any thread
// count. Per-column parameters are float64 whatever T is; transforms compute in float64
// and round once to T.
#pragma once
#include "common.hpp"

namespace fastnn {

// Rows per statistics block (the same fixed chunking as reduce.hpp's reductions).
constexpr index_t kScalerChunkRows = 256;

// Per-column statistics of x, NaN ignored, in one call (each block of rows is read from
// memory once; its second pass, for m2, re-reads it from cache).
//
// Moments are taken about a per-column shift k (the "shifted data" algorithm): sum holds
// sum(w * (x - k)), m2 the sum of w * (x - mean)^2 (block two-pass, blocks merged in order by
// Chan, Golub and LeVeque's formula), so the caller's mean k + sum / count is exact to
// rounding for data far from 0 (x - k is exact when x is within a factor 2 of k), and a
// column whose values all equal k gets sum == 0 and m2 == 0 exactly. Entries of shift that
// are NaN on input are set to the column's first non-NaN value (they stay NaN for a column
// without one, whose moments are then taken about 0).
//   count (C) weight (or number) of the non-NaN values   when moments
//   sum (C), m2 (C)                                      when moments
//   min (C), max (C) (+inf / -inf without values)        when extrema
// Infinite x (or an overflow) shows as a non-finite sum or m2, or as an infinite min/max.
template <typename T>
struct ColumnStatsArgs {
  index_t n = 0, c = 0;
  const T* x = nullptr;        // (N, C)
  const double* w = nullptr;   // (N) sample weights (finite, >= 0) or null: all 1
  bool moments = true;
  bool extrema = true;
  double* shift = nullptr;     // (C) in/out, moments
  double* count = nullptr;     // (C) out, moments
  double* sum = nullptr;       // (C) out, moments
  double* m2 = nullptr;        // (C) out, moments
  double* min = nullptr;       // (C) out, extrema
  double* max = nullptr;       // (C) out, extrema
  int nthreads = 1;
};

// y = (x - shift) * scale + offset in float64, then clamped to [lo, hi] when lo and hi are
// given (NaN stays NaN), rounded once to T. Null vectors mean shift 0, scale 1, offset 0.
// Returns -1, or the flat index r * C + j (the first in row-major order) of an element whose
// result is infinite in T: an infinite x, or a finite one whose result overflows T. y may
// be x (in place): x is then checked in a read-only pass first, so that an error leaves it
// untouched. Otherwise y is only partly written on error.
template <typename T>
struct AffineArgs {
  index_t n = 0, c = 0;
  const T* x = nullptr;          // (N, C)
  T* y = nullptr;                // (N, C)
  const double* shift = nullptr;   // (C) or null
  const double* scale = nullptr;   // (C) or null
  const double* offset = nullptr;  // (C) or null
  const double* lo = nullptr;      // (C) or null (then hi is null too)
  const double* hi = nullptr;      // (C) or null
  int nthreads = 1;
};

// y = log(x + offset). Returns -1, or the flat index r * C + j of the first element (in
// row-major order) with x + offset <= 0 (y is then only partly written). NaN stays NaN.
template <typename T>
struct LogArgs {
  index_t n = 0, c = 0;
  const T* x = nullptr;   // (N, C)
  T* y = nullptr;         // (N, C)
  double offset = 1.0;
  int nthreads = 1;
};

// Exact per-column quantiles of the non-NaN values by selection (nth_element), with
// NumPy's default "linear" interpolation (numpy.percentile / nanpercentile): virtual index
// v = (m - 1) * q over the m sorted values. NaN for a column without values.
// `work` holds nthreads * N doubles (one gather buffer per thread).
template <typename T>
struct QuantileArgs {
  index_t n = 0, c = 0;
  const T* x = nullptr;       // (N, C)
  index_t nq = 0;
  const double* q = nullptr;  // (Q) in [0, 1]
  double* out = nullptr;      // (Q, C)
  double* work = nullptr;     // (nthreads * N)
  int nthreads = 1;
};

template <typename T>
struct ScalerKernels {
  void (*column_stats)(const ColumnStatsArgs<T>&) = nullptr;
  index_t (*affine)(const AffineArgs<T>&) = nullptr;
  index_t (*log_offset)(const LogArgs<T>&) = nullptr;
  void (*column_quantiles)(const QuantileArgs<T>&) = nullptr;
};

}  // namespace fastnn
