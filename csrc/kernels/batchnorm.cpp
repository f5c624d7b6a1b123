// Batch normalization of one SIMD path. Shapes: x, y, dy, dx (N, C) with row stride ld;
// per-feature vectors (C).
// Statistics are float64 moments of fixed row chunks (each square added with one FMA) merged
// in chunk order, so they are bitwise identical for any thread count; the per-element passes
// then apply a per-column affine map in T (normalize_row, dx_row).
#include <cmath>

#include "isa_kernels.hpp"
#include "reduce.hpp"
#include "threading.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

// Calls op(j, m) over the columns [0, c) of a row, W at a time (m = W) and then the last
// m < W columns once: the elementwise passes below use full vectors and one masked tail.
template <typename V, class Op>
inline void for_row_vectors(index_t c, Op op) {
  index_t j = 0;
  for (; j + V::W <= c; j += V::W) op(j, index_t(V::W));
  if (j < c) op(j, c - j);
}

// The row stride of a batch-norm call's matrices (ld, or c when unset).
template <class Args>
inline index_t row_stride(const Args& a) {
  return a.ld > 0 ? a.ld : a.c;
}

template <typename V>
inline typename V::R load_part(const typename V::T* p, index_t m) {
  return m == V::W ? V::load(p) : V::load_n(p, m);
}

template <typename V>
inline void store_part(typename V::T* p, typename V::R v, index_t m) {
  if (m == V::W) V::store(p, v);
  else V::store_n(p, v, m);
}

// One row of y = ((x - hi) - lo) * scale + shift. The row loops take their pointers as
// arguments: a lambda's captured references are reloaded after every store (the compiler
// cannot rule out that the store changed them), an extra load per pointer per vector.
template <typename T>
void normalize_row(index_t c, const T* x, const T* hi, const T* lo, const T* scale, const T* shift, T* y) {
  using V = vec_of<T>;
  for_row_vectors<V>(c, [&](index_t j, index_t m) {
    const auto centered = V::sub(V::sub(load_part<V>(x + j, m), load_part<V>(hi + j, m)), load_part<V>(lo + j, m));
    store_part<V>(y + j, V::add(V::mul(centered, load_part<V>(scale + j, m)), load_part<V>(shift + j, m)), m);
  });
}

// One row of dx = k_dy * dy + (k_xc * (x - mean) + k_0).
template <typename T>
void dx_row(index_t c, const T* dy, const T* x, const T* mean, const T* k_dy, const T* k_xc, const T* k_0, T* dx) {
  using V = vec_of<T>;
  for_row_vectors<V>(c, [&](index_t j, index_t m) {
    const auto xc = V::sub(load_part<V>(x + j, m), load_part<V>(mean + j, m));
    const auto rest = V::add(V::mul(load_part<V>(k_xc + j, m), xc), load_part<V>(k_0 + j, m));
    store_part<V>(dx + j, V::add(V::mul(load_part<V>(k_dy + j, m), load_part<V>(dy + j, m)), rest), m);
  });
}

// y = ((x - center_hi) - center_lo) * scale + shift, per column, parallel over rows (x and y
// rows ld apart). The float64 center is split into two T parts so that x - center keeps T's
// relative accuracy even when |mean| >> std (x * scale - mean * scale would cancel).
template <typename T>
void normalize_rows(index_t n, index_t c, index_t ld, const T* x, const double* center, const double* scale,
                    const T* shift, T* y, int nthreads, T* work) {
  T* hi = work;
  T* lo = work + c;
  T* scale_t = work + 2 * c;
  for (index_t j = 0; j < c; ++j) {
    hi[j] = T(center[j]);
    lo[j] = T(center[j] - double(hi[j]));
    scale_t[j] = T(scale[j]);
  }
  parallel_for(n, nthreads, [&](index_t r) { normalize_row(c, x + r * ld, hi, lo, scale_t, shift, y + r * ld); });
}

// Rows [r0, r1) of one strip of columns added into acc: acc[j] += d, acc[c + j] += d * d with
// d = x - first (a row of the same columns) in float64; x's rows are ld apart.
template <int NV, bool Partial, typename T>
void shifted_sums_strip(const T* x, const T* first, index_t c, index_t ld, index_t r0, index_t r1, index_t j0,
                        index_t last, double* acc) {
  using V = f64v;
  constexpr index_t W = V::W;
  typename V::R x0[NV], s1[NV], s2[NV];
  for (int v = 0; v < NV; ++v) {
    x0[v] = wide_load<Partial>(first + j0 + v * W, last);
    s1[v] = wide_load<Partial>(acc + j0 + v * W, last);
    s2[v] = wide_load<Partial>(acc + c + j0 + v * W, last);
  }
  for (index_t r = r0; r < r1; ++r) {
    const T* xr = x + r * ld + j0;
    for (int v = 0; v < NV; ++v) {
      const typename V::R d = V::sub(wide_load<Partial>(xr + v * W, last), x0[v]);
      s1[v] = V::add(s1[v], d);
      s2[v] = V::fmadd(d, d, s2[v]);
    }
  }
  for (int v = 0; v < NV; ++v) {
    wide_store<Partial>(acc + j0 + v * W, s1[v], last);
    wide_store<Partial>(acc + c + j0 + v * W, s2[v], last);
  }
}

// Rows [r0, r1) of one strip added into acc: acc[j] += dy, acc[c + j] += dy * (x - mean), in
// float64 (the caller multiplies the second by invstd once per column).
template <int NV, bool Partial, typename T>
void backward_sums_strip(const BatchNormBackwardArgs<T>& a, index_t r0, index_t r1, index_t j0, index_t last,
                         double* acc) {
  using V = f64v;
  constexpr index_t W = V::W;
  const index_t c = a.c, ld = row_stride(a);
  typename V::R mean[NV], s1[NV], s2[NV];
  for (int v = 0; v < NV; ++v) {
    mean[v] = wide_load<Partial>(a.mean + j0 + v * W, last);
    s1[v] = wide_load<Partial>(acc + j0 + v * W, last);
    s2[v] = wide_load<Partial>(acc + c + j0 + v * W, last);
  }
  for (index_t r = r0; r < r1; ++r) {
    const T* dyr = a.dy + r * ld + j0;
    const T* xr = a.x + r * ld + j0;
    for (int v = 0; v < NV; ++v) {
      const typename V::R dy = wide_load<Partial>(dyr + v * W, last);
      const typename V::R xc = V::sub(wide_load<Partial>(xr + v * W, last), mean[v]);
      s1[v] = V::add(s1[v], dy);
      s2[v] = V::fmadd(dy, xc, s2[v]);
    }
  }
  for (int v = 0; v < NV; ++v) {
    wide_store<Partial>(acc + j0 + v * W, s1[v], last);
    wide_store<Partial>(acc + c + j0 + v * W, s2[v], last);
  }
}

// A training call's 2 C per-column results (sums) from per-chunk results: chunk_sums(r0, r1,
// acc) makes a chunk's into acc, and finish(partials, chunks, rows, out) combines every
// chunk's in chunk order. The chunks are the call's rows, or, on a team, every thread's.
// False for a team's gathering call, which only leaves its chunks' in the part's buffer.
template <typename T, class ChunkSums, class Finish>
bool batch_sums(const BatchNormPart<T>* part, index_t n, index_t c, int nthreads, double* sums,
                ChunkSums chunk_sums, Finish finish) {
  if (part == nullptr) {
    const index_t chunks = shard_count(n);
    const size_t bytes = size_t(std::max<index_t>(1, chunks) * 2 * c) * sizeof(double);
    double* partial = static_cast<double*>(thread_scratch(ScratchSlot::reduction, bytes));
    column_chunk_sums(n, 2 * c, nthreads, partial, chunk_sums);
    finish(partial, chunks, n, sums);
    return true;
  }
  if (part->gather) {
    column_chunk_sums(n, 2 * c, nthreads, part->sums + part->first_chunk * 2 * c, chunk_sums);
    return false;
  }
  finish(part->sums, shard_count(part->rows), part->rows, sums);
  return true;
}

// Every chunk's (mean, M2) of each column (M2: the sum of squared deviations from the mean)
// merged in chunk order, as Chan, Golub and LeVeque combine two samples' statistics:
// out[j] = the mean, out[c + j] = M2 of all rows.
inline void merge_chunk_moments(const double* partial, index_t chunks, index_t rows, index_t c, double* out) {
  if (chunks == 0) {
    std::fill(out, out + 2 * c, 0.0);
    return;
  }
  double* mean = out;
  double* m2 = out + c;
  std::copy(partial, partial + 2 * c, out);
  double count = double(std::min(rows, kShardRows));
  for (index_t k = 1; k < chunks; ++k) {
    const double more = double(std::min(rows - k * kShardRows, kShardRows));
    const double total = count + more;
    const double step = more / total, spread = count * more / total;
    const double* chunk = partial + k * 2 * c;
    for (index_t j = 0; j < c; ++j) {
      const double delta = chunk[j] - mean[j];
      mean[j] += delta * step;
      m2[j] += chunk[c + j] + delta * delta * spread;
    }
    count = total;
  }
}

template <typename T>
void forward(const BatchNormForwardArgs<T>& a) {
  const index_t n = a.n, c = a.c, ld = row_stride(a);
  // doubles: the per-column center and scale, then 3 x C values of T for normalize_rows
  double* work = static_cast<double*>(thread_scratch(ScratchSlot::reduction_result, size_t(5 * c) * sizeof(double)));
  double* center = work;
  double* scale = work + c;
  T* row_work = reinterpret_cast<T*>(work + 2 * c);
  if (!a.training) {
    for (index_t j = 0; j < c; ++j) {
      center[j] = double(a.running_mean[j]);
      scale[j] = double(a.gamma[j]) / std::sqrt(double(a.running_var[j]) + a.eps);
    }
    normalize_rows(n, c, ld, a.x, center, scale, a.beta, a.y, a.nthreads, row_work);
    return;
  }
  // One pass per chunk: sums of d = x - f and of d^2 per column, f the chunk's first row
  // (which keeps S2 - S1^2 / n free of cancellation when |mean| >> std), made into the
  // chunk's mean and M2; the chunks' then merged in chunk order.
  double* moments =
      static_cast<double*>(thread_scratch(ScratchSlot::reduction_result2, size_t(2 * c) * sizeof(double)));
  const auto chunk_moments = [&](index_t r0, index_t r1, double* acc) {
    const T* first = a.x + r0 * ld;
    for_column_strips(c, [&](auto nv, auto partial, index_t j0, index_t last) {
      shifted_sums_strip<decltype(nv)::value, decltype(partial)::value>(a.x, first, c, ld, r0, r1, j0, last, acc);
    });
    const double count = double(r1 - r0);
    for (index_t j = 0; j < c; ++j) {
      const double m1 = acc[j] / count;
      acc[c + j] = std::max(0.0, acc[c + j] - m1 * acc[j]);
      acc[j] = double(first[j]) + m1;
    }
  };
  const auto merge = [&](const double* partial, index_t chunks, index_t rows, double* out) {
    merge_chunk_moments(partial, chunks, rows, c, out);
  };
  if (!batch_sums(a.part, n, c, a.nthreads, moments, chunk_moments, merge)) return;
  const index_t rows = a.part ? a.part->rows : n;
  const bool publish = !a.part || a.part->publish;
  for (index_t j = 0; j < c; ++j) {
    center[j] = moments[j];
    scale[j] = moments[c + j];  // rows * biased variance
  }
  for (index_t j = 0; j < c; ++j) {
    const double mean = center[j];
    const double var = scale[j] / double(rows);  // biased, as PyTorch and Keras normalize
    const double invstd = 1.0 / std::sqrt(var + a.eps);
    scale[j] = double(a.gamma[j]) * invstd;
    if (!publish) continue;
    a.mean[j] = T(mean);
    a.invstd[j] = T(invstd);
    if (a.running_mean) {
      const double unbiased = rows > 1 ? var * double(rows) / double(rows - 1) : var;
      a.running_mean[j] = T(a.momentum * double(a.running_mean[j]) + (1.0 - a.momentum) * mean);
      a.running_var[j] = T(a.momentum * double(a.running_var[j]) + (1.0 - a.momentum) * unbiased);
    }
  }
  normalize_rows(n, c, ld, a.x, center, scale, a.beta, a.y, a.nthreads, row_work);
}

template <typename T>
void backward(const BatchNormBackwardArgs<T>& a) {
  const index_t n = a.n, c = a.c, ld = row_stride(a);
  double* sums = static_cast<double*>(thread_scratch(ScratchSlot::reduction_result, size_t(5 * c) * sizeof(double)));
  // sums[0:c] = sum dy, sums[c:2c] = sum dy * (x - mean)
  const auto rows_sum = [&](index_t r0, index_t r1, double* acc) {
    for_column_strips(c, [&](auto nv, auto partial, index_t j0, index_t last) {
      backward_sums_strip<decltype(nv)::value, decltype(partial)::value>(a, r0, r1, j0, last, acc);
    });
  };
  const auto add = [&](const double* partial, index_t chunks, index_t, double* out) {
    finish_column_sums(partial, chunks, 2 * c, a.nthreads, out);
  };
  if (!batch_sums(a.part, n, c, a.nthreads, sums, rows_sum, add)) return;
  const index_t rows = a.part ? a.part->rows : n;
  const bool publish = !a.part || a.part->publish;
  // dx = k_dy * dy + k_xc * (x - mean) + k_0, per column
  T* k_dy = reinterpret_cast<T*>(sums + 2 * c);
  T* k_xc = k_dy + c;
  T* k_0 = k_xc + c;
  for (index_t j = 0; j < c; ++j) {
    const double s = double(a.invstd[j]);
    const double sum_dy = sums[j], sum_dy_xhat = sums[c + j] * s;
    if (a.dbeta && publish) a.dbeta[j] = T((a.accumulate ? double(a.dbeta[j]) : 0.0) + sum_dy);
    if (a.dgamma && publish) a.dgamma[j] = T((a.accumulate ? double(a.dgamma[j]) : 0.0) + sum_dy_xhat);
    const double coef = double(a.gamma[j]) * s / double(rows);
    k_dy[j] = T(coef * double(rows));
    k_xc[j] = T(-coef * s * sum_dy_xhat);
    k_0[j] = T(-coef * sum_dy);
  }
  if (!a.dx) return;
  parallel_for(n, a.nthreads, [&](index_t r) {
    dx_row(c, a.dy + r * ld, a.x + r * ld, a.mean, k_dy, k_xc, k_0, a.dx + r * ld);
  });
}

}  // namespace

void batchnorm_forward(const BatchNormForwardArgs<float>& args) { forward(args); }
void batchnorm_forward(const BatchNormForwardArgs<double>& args) { forward(args); }
void batchnorm_backward(const BatchNormBackwardArgs<float>& args) { backward(args); }
void batchnorm_backward(const BatchNormBackwardArgs<double>& args) { backward(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
