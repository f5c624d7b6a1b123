// Batch normalization of one SIMD path. Shapes: x, y, dy, dx (N, C); per-feature vectors (C).
// Statistics are float64 sums in fixed row chunks (reduce.hpp), so they are bitwise
// identical for any thread count; the per-element passes then apply one FMA per element.
#include <cmath>

#include "isa_kernels.hpp"
#include "reduce.hpp"
#include "threading.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

// y = ((x - center_hi) - center_lo) * scale + shift, per column, parallel over rows. The
// float64 center is split into two T parts so that x - center keeps T's relative accuracy
// even when |mean| >> std (x * scale - mean * scale would cancel).
template <typename T>
void normalize_rows(index_t n, index_t c, const T* x, const double* center, const double* scale, const T* shift, T* y,
                    int nthreads, T* work) {
  T* hi = work;
  T* lo = work + c;
  T* scale_t = work + 2 * c;
  for (index_t j = 0; j < c; ++j) {
    hi[j] = T(center[j]);
    lo[j] = T(center[j] - double(hi[j]));
    scale_t[j] = T(scale[j]);
  }
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
  for (index_t r = 0; r < n; ++r) {
    const T* xr = x + r * c;
    T* yr = y + r * c;
    for (index_t j = 0; j < c; ++j) yr[j] = ((xr[j] - hi[j]) - lo[j]) * scale_t[j] + shift[j];
  }
}

template <typename T>
void forward(const BatchNormForwardArgs<T>& a) {
  const index_t n = a.n, c = a.c;
  // doubles: mean/var or the per-column scale and shift, then their T copies
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
    normalize_rows(n, c, a.x, center, scale, a.beta, a.y, a.nthreads, row_work);
    return;
  }
  // Two passes for accuracy: the mean, then the sum of squared deviations from it.
  // One pass: sums of d = x - x[0] and of d^2 per column. Shifting by the first row keeps
  // the variance S2/n - (S1/n)^2 free of cancellation when |mean| >> std.
  double* sums = static_cast<double*>(thread_scratch(ScratchSlot::reduction_result2, size_t(2 * c) * sizeof(double)));
  const T* x0 = a.x;
  ordered_column_sums(n, c, 2, a.nthreads, sums, [&](index_t r0, index_t r1, double* acc) {
    for (index_t r = r0; r < r1; ++r) {
      const T* xr = a.x + r * c;
      for (index_t j = 0; j < c; ++j) {
        const double d = double(xr[j]) - double(x0[j]);
        acc[j] += d;
        acc[c + j] += d * d;
      }
    }
  });
  for (index_t j = 0; j < c; ++j) {
    const double m1 = sums[j] / double(n);
    center[j] = double(x0[j]) + m1;
    scale[j] = std::max(0.0, sums[c + j] - m1 * sums[j]);  // n * biased variance
  }
  for (index_t j = 0; j < c; ++j) {
    const double mean = center[j];
    const double var = scale[j] / double(n);  // biased, as PyTorch and Keras normalize
    const double invstd = 1.0 / std::sqrt(var + a.eps);
    a.mean[j] = T(mean);
    a.invstd[j] = T(invstd);
    if (a.running_mean) {
      const double unbiased = n > 1 ? var * double(n) / double(n - 1) : var;
      a.running_mean[j] = T(a.momentum * double(a.running_mean[j]) + (1.0 - a.momentum) * mean);
      a.running_var[j] = T(a.momentum * double(a.running_var[j]) + (1.0 - a.momentum) * unbiased);
    }
    scale[j] = double(a.gamma[j]) * invstd;
  }
  normalize_rows(n, c, a.x, center, scale, a.beta, a.y, a.nthreads, row_work);
}

template <typename T>
void backward(const BatchNormBackwardArgs<T>& a) {
  const index_t n = a.n, c = a.c;
  double* sums = static_cast<double*>(thread_scratch(ScratchSlot::reduction_result, size_t(5 * c) * sizeof(double)));
  // sums[0:c] = sum dy, sums[c:2c] = sum dy * xhat
  ordered_column_sums(n, c, 2, a.nthreads, sums, [&](index_t r0, index_t r1, double* acc) {
    for (index_t r = r0; r < r1; ++r) {
      const T* dyr = a.dy + r * c;
      const T* xr = a.x + r * c;
      for (index_t j = 0; j < c; ++j) {
        const double dy = double(dyr[j]);
        acc[j] += dy;
        acc[c + j] += dy * (double(xr[j]) - double(a.mean[j])) * double(a.invstd[j]);
      }
    }
  });
  // dx = k_dy * dy + k_xc * (x - mean) + k_0, per column
  T* k_dy = reinterpret_cast<T*>(sums + 2 * c);
  T* k_xc = k_dy + c;
  T* k_0 = k_xc + c;
  for (index_t j = 0; j < c; ++j) {
    const double sum_dy = sums[j], sum_dy_xhat = sums[c + j];
    if (a.dbeta) a.dbeta[j] = T((a.accumulate ? double(a.dbeta[j]) : 0.0) + sum_dy);
    if (a.dgamma) a.dgamma[j] = T((a.accumulate ? double(a.dgamma[j]) : 0.0) + sum_dy_xhat);
    const double s = double(a.invstd[j]);
    const double coef = double(a.gamma[j]) * s / double(n);
    k_dy[j] = T(coef * double(n));
    k_xc[j] = T(-coef * s * sum_dy_xhat);
    k_0[j] = T(-coef * sum_dy);
  }
  if (!a.dx) return;
  const T* mean = a.mean;
#pragma omp parallel for schedule(static) num_threads(a.nthreads) if (a.nthreads > 1)
  for (index_t r = 0; r < n; ++r) {
    const T* dyr = a.dy + r * c;
    const T* xr = a.x + r * c;
    T* dxr = a.dx + r * c;
    for (index_t j = 0; j < c; ++j) dxr[j] = k_dy[j] * dyr[j] + (k_xc[j] * (xr[j] - mean[j]) + k_0[j]);
  }
}

}  // namespace

void batchnorm_forward(const BatchNormForwardArgs<float>& args) { forward(args); }
void batchnorm_forward(const BatchNormForwardArgs<double>& args) { forward(args); }
void batchnorm_backward(const BatchNormBackwardArgs<float>& args) { backward(args); }
void batchnorm_backward(const BatchNormBackwardArgs<double>& args) { backward(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
