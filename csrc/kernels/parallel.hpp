// The kernels' one way into OpenMP. With one thread the loop runs on the caller with no
// parallel region at all: `#pragma omp parallel if (false)` still enters libgomp, which
// allocates a team, frees it and wakes a futex on every call (perf: ~10% of a W2 epoch, whose
// steps each make a dozen kernel calls). Kernel bodies hold no orphaned `omp for` or
// `omp barrier`: called on one thread from inside the training engine's team, those would
// bind to the engine's team instead (and deadlock).
#pragma once

#include "common.hpp"

namespace fastnn {
namespace FASTNN_ISA {

// f(i) for i in [0, n), statically split among nthreads threads; in order on the caller
// when nthreads <= 1 or n <= 1. A kernel's result never depends on the split.
template <class F>
inline void parallel_for(index_t n, int nthreads, F&& f) {
#ifdef _OPENMP
  if (nthreads > 1 && n > 1) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (index_t i = 0; i < n; ++i) f(i);
    return;
  }
#else
  (void)nthreads;
#endif
  for (index_t i = 0; i < n; ++i) f(i);
}

}  // namespace FASTNN_ISA
}  // namespace fastnn
