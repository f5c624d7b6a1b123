// Gradient clipping helpers of one SIMD path over flat buffers.
#include <algorithm>

#include "isa_kernels.hpp"
#include "reduce.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

constexpr index_t kChunk = 16384;  // elements per reduction chunk and per parallel task

// Squares summed in float64: float32 values near 1e20 square to 1e40, past float32's range.
// Each chunk keeps kLanes partial sums, lane l taking the chunk's elements i = l (mod kLanes)
// in order, and adds the lanes in order at the end: the vectors below compute exactly that.
// One lane chain advances by one add per kLanes elements, so a single chunk is bound by the
// add latency; kChunksAtOnce full chunks are therefore summed side by side (each still its
// own lanes, its own partial), which keeps the result bitwise the same for any grouping.
constexpr int kLanes = 16;
constexpr int kChunksAtOnce = 4;  // chunk_squares<K> is instantiated for K = 1..4
static_assert(kLanes % f64v::W == 0, "a chunk's lanes fill whole f64 vectors");

// acc + x * x with x widened to double. A float's square is exact in double, so the fused
// multiply-add rounds exactly as the separate multiply and add would; a double's is not, so
// doubles keep the two roundings.
inline typename f64v::R add_square(typename f64v::R acc, typename f64v::R x, const float*) {
  return f64v::fmadd(x, x, acc);
}
inline typename f64v::R add_square(typename f64v::R acc, typename f64v::R x, const double*) {
  return f64v::add(acc, f64v::mul(x, x));
}

// partial[k] = the lane-ordered sum of squares of chunk k, k < K; chunk k holds the `len`
// elements from x + k * kChunk (len == kChunk whenever K > 1).
template <int K, typename T>
void chunk_squares(const T* x, index_t len, double* partial) {
  using V = f64v;
  constexpr int NV = kLanes / V::W;
  typename V::R acc[K][NV];
  for (int k = 0; k < K; ++k)
    for (int v = 0; v < NV; ++v) acc[k][v] = V::zero();
  index_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int k = 0; k < K; ++k)
      for (int v = 0; v < NV; ++v) acc[k][v] = add_square(acc[k][v], V::widen(x + k * kChunk + i + v * V::W), x);
  // The short tail (K == 1 only) starts at lane 0; absent elements add 0 * 0, which leaves
  // a sum of squares (never -0) unchanged.
  for (int v = 0; v < NV && i + v * V::W < len; ++v)
    acc[0][v] = add_square(acc[0][v], V::widen_n(x + i + v * V::W, len - i - v * V::W), x);
  for (int k = 0; k < K; ++k) {
    double lane[kLanes];
    for (int v = 0; v < NV; ++v) V::store(lane + v * V::W, acc[k][v]);
    double s = 0.0;
    for (int l = 0; l < kLanes; ++l) s += lane[l];
    partial[k] = s;
  }
}

template <typename T>
double sum_squares_impl(const T* x, index_t n, int nthreads) {
  if (n <= 0) return 0.0;
  const index_t chunks = (n + kChunk - 1) / kChunk;
  const index_t groups = (chunks + kChunksAtOnce - 1) / kChunksAtOnce;
  double* partial = static_cast<double*>(thread_scratch(ScratchSlot::reduction, size_t(chunks) * sizeof(double)));
  parallel_for(groups, nthreads, [&](index_t g) {
    const index_t first = g * kChunksAtOnce;
    const index_t full = std::min<index_t>(kChunksAtOnce, n / kChunk - first);  // full chunks in this group
    const T* xg = x + first * kChunk;
    if (full == 4) chunk_squares<4>(xg, kChunk, partial + first);
    else if (full == 3) chunk_squares<3>(xg, kChunk, partial + first);
    else if (full == 2) chunk_squares<2>(xg, kChunk, partial + first);
    else if (full == 1) chunk_squares<1>(xg, kChunk, partial + first);
    const index_t short_chunk = std::max<index_t>(full, 0);
    if (short_chunk < kChunksAtOnce && first + short_chunk < chunks)  // the last, short chunk
      chunk_squares<1>(xg + short_chunk * kChunk, n - (first + short_chunk) * kChunk, partial + first + short_chunk);
  });
  double total = 0.0;
  for (index_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

template <typename T, class F>
void for_chunks(index_t n, int nthreads, F f) {
  const index_t chunks = (n + kChunk - 1) / kChunk;
  parallel_for(chunks, nthreads, [&](index_t c) { f(c * kChunk, std::min(n, (c + 1) * kChunk)); });
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
