// Gradient clipping helpers of one SIMD path over flat buffers.
#include <algorithm>

#include "isa_kernels.hpp"
#include "reduce.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

constexpr index_t kChunk = 16384;  // elements per reduction chunk and per parallel task

// Squares summed in float64: float32 values near 1e20 square to 1e40, past float32's range.
// Each chunk keeps kLanes independent partial sums (combined in a fixed order), so the adds
// vectorize and do not wait on one another.
template <typename T>
double sum_squares_impl(const T* x, index_t n, int nthreads) {
  constexpr int kLanes = 16;
  return ordered_sum(n, kChunk, nthreads, [x](index_t b, index_t e) {
    double lane[kLanes] = {};
    index_t i = b;
    for (; i + kLanes <= e; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] += double(x[i + l]) * double(x[i + l]);
    for (int l = 0; i < e; ++i, ++l) lane[l] += double(x[i]) * double(x[i]);
    double s = 0.0;
    for (int l = 0; l < kLanes; ++l) s += lane[l];
    return s;
  });
}

template <typename T, class F>
void for_chunks(index_t n, int nthreads, F f) {
  const index_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
  for (index_t c = 0; c < chunks; ++c) f(c * kChunk, std::min(n, (c + 1) * kChunk));
}

template <typename T>
void scale_impl(T* x, index_t n, T factor, int nthreads) {
  for_chunks<T>(n, nthreads, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) x[i] *= factor;
  });
}

template <typename T>
void clip_value_impl(T* x, index_t n, T lo, T hi, int nthreads) {
  for_chunks<T>(n, nthreads, [=](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      const T v = x[i];
      x[i] = v < lo ? lo : (v > hi ? hi : v);  // comparisons are false for NaN: it stays
    }
  });
}

}  // namespace

double sum_squares(const float* x, index_t n, int nthreads) { return sum_squares_impl(x, n, nthreads); }
double sum_squares(const double* x, index_t n, int nthreads) { return sum_squares_impl(x, n, nthreads); }

void scale(float* x, index_t n, float factor, int nthreads) { scale_impl(x, n, factor, nthreads); }
void scale(double* x, index_t n, double factor, int nthreads) { scale_impl(x, n, factor, nthreads); }

void clip_value(float* x, index_t n, float lo, float hi, int nthreads) { clip_value_impl(x, n, lo, hi, nthreads); }
void clip_value(double* x, index_t n, double lo, double hi, int nthreads) { clip_value_impl(x, n, lo, hi, nthreads); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
