// Deterministic reductions: work is cut into fixed chunks (never by thread count), each
// chunk's float64 partial is computed by one thread, and partials are added in chunk order.
// The result is therefore bitwise identical for any number of threads (RELIABILITY.md 5).
#pragma once
#include <algorithm>
#include <type_traits>

#include "parallel.hpp"
#include "simd.hpp"
#include "workspace.hpp"

namespace fastnn {
namespace FASTNN_ISA {

// sum over [0, n) of chunk_sum(begin, end), chunks of `chunk` items. With `partials`, each
// chunk's sum also stays there (calls on consecutive runs of whole chunks can then be added
// together by sum_in_order, to the same bits as one call).
template <class ChunkSum>
double ordered_sum(index_t n, index_t chunk, int nthreads, ChunkSum chunk_sum, double* partials = nullptr) {
  if (n <= 0) return 0.0;
  const index_t chunks = (n + chunk - 1) / chunk;
  double one = 0.0;
  double* partial = partials;
  if (partial == nullptr && chunks == 1) partial = &one;
  if (partial == nullptr)
    partial = static_cast<double*>(thread_scratch(ScratchSlot::reduction, size_t(chunks) * sizeof(double)));
  parallel_for(chunks, nthreads, [&](index_t c) { partial[c] = chunk_sum(c * chunk, std::min(n, (c + 1) * chunk)); });
  return sum_in_order(partial, chunks);
}

// The per-chunk column sums of rows: rows_sum(r0, r1, acc) adds rows [r0, r1) into acc
// (width doubles, zeroed first); chunk c (kShardRows rows) goes to partial + c * width.
template <class RowsSum>
void column_chunk_sums(index_t rows, index_t width, int nthreads, double* partial, RowsSum rows_sum) {
  parallel_for(shard_count(rows), nthreads, [&](index_t c) {
    double* acc = partial + c * width;
    std::fill(acc, acc + width, 0.0);
    rows_sum(c * kShardRows, std::min(rows, (c + 1) * kShardRows), acc);
  });
}

// out[j] = column j's chunk sums added in chunk order (chunks outer, blocks of kSumBlock
// columns inner, so that the adds vectorize).
inline void finish_column_sums(const double* partial, index_t chunks, index_t width, int nthreads, double* out) {
  parallel_for((width + kSumBlock - 1) / kSumBlock, nthreads, [&](index_t block) {
    const index_t b = block * kSumBlock, e = std::min(width, b + kSumBlock);
    std::fill(out + b, out + e, 0.0);
    for (index_t c = 0; c < chunks; ++c)
      for (index_t j = b; j < e; ++j) out[j] += partial[c * width + j];
  });
}


// Register-blocked column sums walk the columns in strips of V vectors (f64 unless
// given): strip(nv, partial, j0, last) gets nv (a std::integral_constant) vectors from
// column j0; partial (a std::bool_constant, only with nv == 1) says the one vector holds
// just the `last` remaining columns. A strip's accumulators stay in registers over a block
// of rows, and each column still adds its rows one after another, in row order, as a
// scalar loop would.
constexpr int kStripVectors = 4;

template <class V = f64v, class Strip>
void for_column_strips(index_t c, Strip&& strip) {
  constexpr index_t W = V::W;
  index_t j0 = 0;
  for (; j0 + kStripVectors * W <= c; j0 += kStripVectors * W)
    strip(std::integral_constant<int, kStripVectors>(), std::false_type(), j0, W);
  for (; j0 + W <= c; j0 += W) strip(std::integral_constant<int, 1>(), std::false_type(), j0, W);
  if (j0 < c) strip(std::integral_constant<int, 1>(), std::true_type(), j0, c - j0);
}

// f64v::W values from p (only the first n when Partial, the rest 0), widened to double.
template <bool Partial, typename S>
inline typename f64v::R wide_load(const S* p, index_t n) {
  if constexpr (Partial) return f64v::widen_n(p, n);
  else return f64v::widen(p);
}

template <bool Partial>
inline void wide_store(double* p, typename f64v::R v, index_t n) {
  if constexpr (Partial) f64v::store_n(p, v, n);
  else f64v::store(p, v);
}

// acc[j] += the sum of x[r * ld + j] over rows [r0, r1), for j < cols: in float64, each
// column's rows added one after another in row order (as a scalar loop would add them), a
// strip's sums held in registers rather than loaded and stored for every row.
template <typename S>
void add_column_sums(const S* x, index_t ld, index_t cols, index_t r0, index_t r1, double* acc) {
  constexpr index_t W = f64v::W;
  for_column_strips(cols, [&](auto nv, auto partial, index_t j0, index_t last) {
    constexpr int NV = decltype(nv)::value;
    constexpr bool kPartial = decltype(partial)::value;
    typename f64v::R sum[NV];
    for (int v = 0; v < NV; ++v) sum[v] = wide_load<kPartial>(acc + j0 + v * W, last);
    for (index_t r = r0; r < r1; ++r)
      for (int v = 0; v < NV; ++v) sum[v] = f64v::add(sum[v], wide_load<kPartial>(x + r * ld + j0 + v * W, last));
    for (int v = 0; v < NV; ++v) wide_store<kPartial>(acc + j0 + v * W, sum[v], last);
  });
}

}  // namespace FASTNN_ISA
}  // namespace fastnn
