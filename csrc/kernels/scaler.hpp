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

// One pass over x per call: per column, the count of non-NaN values, their mean and sum of
// squared deviations from it (m2: each block's two passes run while the block is in cache,
// then blocks merge by Chan et al.'s formula), and their minimum and maximum.
//   count (C), mean (C) (0 when count == 0), m2 (C)     when moments
//   min (C), max (C) (+inf / -inf when count == 0)      when extrema
template <typename T>
struct ColumnStatsArgs {
  index_t n = 0, c = 0;
  const T* x = nullptr;      // (N, C)
  bool moments = true;
  bool extrema = true;
  double* count = nullptr;   // (C) out
  double* mean = nullptr;    // (C) out, moments
  double* m2 = nullptr;      // (C) out, moments
  double* min = nullptr;     // (C) out, extrema
  double* max = nullptr;     // (C) out, extrema
  int nthreads = 1;
};

// y = (x - shift) * scale + offset, then clamped to [lo, hi] when lo and hi are given (NaN
// stays NaN). Null vectors mean shift 0, scale 1, offset 0. y may be x (in place).
// Returns whether x held an infinity (so callers need no separate finiteness pass).
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
  bool (*affine)(const AffineArgs<T>&) = nullptr;
  index_t (*log_offset)(const LogArgs<T>&) = nullptr;
  void (*column_quantiles)(const QuantileArgs<T>&) = nullptr;
};

}  // namespace fastnn
