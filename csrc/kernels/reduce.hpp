// Deterministic reductions: work is cut into fixed chunks (never by thread count), each
// chunk's float64 partial is computed by one thread, and partials are added in chunk order.
// The result is therefore bitwise identical for any number of threads (RELIABILITY.md 5).
#pragma once
#include <algorithm>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "simd.hpp"
#include "workspace.hpp"

namespace fastnn {
namespace FASTNN_ISA {

// sum over [0, n) of chunk_sum(begin, end), chunks of `chunk` items.
template <class ChunkSum>
double ordered_sum(index_t n, index_t chunk, int nthreads, ChunkSum chunk_sum) {
  if (n <= 0) return 0.0;
  const index_t chunks = (n + chunk - 1) / chunk;
  if (chunks == 1) return chunk_sum(index_t(0), n);
  double* partial = static_cast<double*>(thread_scratch(ScratchSlot::reduction, size_t(chunks) * sizeof(double)));
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
  for (index_t c = 0; c < chunks; ++c) partial[c] = chunk_sum(c * chunk, std::min(n, (c + 1) * chunk));
  double total = 0.0;
  for (index_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

// out[j] = sum over rows of a row block's contributions, for `sums` interleaved column sums:
// rows_sum(r0, r1, acc) adds rows [r0, r1) into acc[s * cols + j] (acc is zeroed). Rows
// go in chunks of kReduceChunkRows; out must hold sums * cols doubles.
template <class RowsSum>
void ordered_column_sums(index_t rows, index_t cols, int sums, int nthreads, double* out, RowsSum rows_sum) {
  const index_t width = index_t(sums) * cols;
  const index_t chunks = std::max<index_t>(1, reduce_chunks(rows));
  double* partial = static_cast<double*>(thread_scratch(ScratchSlot::reduction, size_t(chunks * width) * sizeof(double)));
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
#pragma omp for schedule(static)
    for (index_t c = 0; c < chunks; ++c) {
      double* acc = partial + c * width;
      std::fill(acc, acc + width, 0.0);
      rows_sum(c * kReduceChunkRows, std::min(rows, (c + 1) * kReduceChunkRows), acc);
    }
#pragma omp for schedule(static)
    for (index_t j = 0; j < width; ++j) {
      double s = 0.0;
      for (index_t c = 0; c < chunks; ++c) s += partial[c * width + j];
      out[j] = s;
    }
  }
}

}  // namespace FASTNN_ISA
}  // namespace fastnn
