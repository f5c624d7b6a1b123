#include "isa_kernels.hpp"

#include <algorithm>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "activation_math.hpp"
#include "reduce.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

constexpr index_t kColBlock = 256;  // columns handled per stack buffer in the backward pass

template <class D, Activation kAct>
void act_forward_as(const ActArgs<typename D::T>& a) {
  using T = typename D::T;
  constexpr int W = D::W;
  const auto alpha = D::set1(a.alpha);
  const index_t rows = a.rows, cols = a.cols;
  parallel_for(rows, a.nthreads, [&](index_t r) {
    const T* x = a.x + r * cols;
    T* y = a.out + r * cols;
    for (index_t j = 0; j < cols; j += W) {
      const index_t n = std::min<index_t>(W, cols - j);
      const auto slope = a.slope ? load_part<D>(a.slope + j, n) : D::zero();
      store_part<D>(y + j, act_forward<D>(kAct, load_part<D>(x + j, n), alpha, slope), n);
    }
  });
}

template <class D>
void act_forward_impl(const ActArgs<typename D::T>& a) {
  with_activation(a.act, [&](auto act) { act_forward_as<D, decltype(act)::value>(a); });
}

// dz and the column sums for one activation (a template parameter: no branch per vector).
// Chunk c (the kShardRows rows from c * kShardRows) sums to its own partials, each column in
// row order, and the partials are then added in chunk order: the same sums for any number of
// threads.
template <class D, Activation kAct>
void act_backward_as(const ActBackwardArgs<typename D::T>& a) {
  using T = typename D::T;
  constexpr int W = D::W;
  const index_t rows = a.rows, cols = a.cols, ld = a.ld > 0 ? a.ld : a.cols;
  const index_t chunks = shard_count(rows);
  const bool want_db = a.db != nullptr;
  const bool want_dslope = kAct == Activation::prelu && a.dslope != nullptr;
  const auto alpha = D::set1(a.alpha);

  parallel_for(chunks, a.nthreads, [&](index_t c) {
    const index_t r0 = c * kShardRows, r1 = std::min(rows, r0 + kShardRows);
    double* pdb = want_db || want_dslope ? a.partials + 2 * c * cols : nullptr;
    double* pds = want_dslope ? pdb + cols : nullptr;
    if (want_dslope) std::fill(pds, pds + cols, 0.0);
    alignas(64) T contrib[kColBlock];
    for (index_t r = r0; r < r1; ++r) {
      const T* dy = a.dy + r * ld;
      if constexpr (kAct == Activation::linear) {
        if (a.dz) std::copy(dy, dy + cols, a.dz + r * ld);
        continue;
      }
      T* out = a.dz + r * ld;
      const T* y = a.y ? a.y + r * ld : nullptr;
      const T* z = a.z ? a.z + r * ld : nullptr;
      for (index_t j0 = 0; j0 < cols; j0 += kColBlock) {
        const index_t jn = std::min(kColBlock, cols - j0);
        for (index_t j = j0; j < j0 + jn; j += W) {
          const index_t n = std::min<index_t>(W, j0 + jn - j);
          // Masked moves only on the tail: a masked store is microcoded (slow) on AMD.
          const auto vdy = load_part<D>(dy + j, n);
          const auto vy = y ? load_part<D>(y + j, n) : D::zero();
          const auto vz = z ? load_part<D>(z + j, n) : D::zero();
          const auto slope = a.slope ? load_part<D>(a.slope + j, n) : D::zero();
          store_part<D>(out + j, act_backward<D>(kAct, vdy, vy, vz, alpha, slope), n);
          if (want_dslope) {  // d slope = dy * z where z <= 0
            const auto g = D::select(D::gt(vz, D::zero()), D::zero(), D::mul(vdy, vz));
            D::store(contrib + (j - j0), g);
          }
        }
        if (want_dslope)
          for (index_t j = 0; j < jn; ++j) pds[j0 + j] += double(contrib[j]);
      }
    }
    if (want_db) {
      std::fill(pdb, pdb + cols, 0.0);
      add_column_sums(kAct == Activation::linear ? a.dy : a.dz, ld, cols, r0, r1, pdb);
    }
  });
  if (a.sums_pending || !(want_db || want_dslope)) return;
  parallel_for((cols + kSumBlock - 1) / kSumBlock, a.nthreads, [&](index_t block) {
    const index_t j0 = block * kSumBlock;
    add_chunk_sums(a.partials, chunks, cols, a.accumulate, a.db, want_dslope ? a.dslope : nullptr, j0,
                   std::min(cols, j0 + kSumBlock));
  });
}

template <class D>
void act_backward_impl(const ActBackwardArgs<typename D::T>& a) {
  with_activation(a.act, [&](auto act) { act_backward_as<D, decltype(act)::value>(a); });
}

// Rows [0, rows) of the NV vectors of columns from j0: their exact-zero count, and colmax
// raised to each column's running maximum (a unit has fired once its maximum is > 0; a NaN
// leaves it, as `y > max ? y : max` would). The maxima and counts stay in registers over
// the rows: the plain loop that loaded and stored colmax for every row ran at the
// store-to-load forwarding latency (5% of a W1R epoch on one thread). Counts are float
// lanes, turned into an integer every kCountRows rows, while they are still exact.
template <class V, int NV>
index_t activation_stats_strip(const typename V::T* y, index_t rows, index_t cols, index_t j0,
                               typename V::T* colmax) {
  using T = typename V::T;
  constexpr index_t kCountRows = index_t(1) << 16;
  const typename V::R zero = V::zero(), one = V::set1(T(1));
  typename V::R top[NV], count[NV];
  for (int v = 0; v < NV; ++v) top[v] = V::load(colmax + j0 + v * V::W);
  index_t zeros = 0;
  for (index_t r0 = 0; r0 < rows; r0 += kCountRows) {
    for (int v = 0; v < NV; ++v) count[v] = zero;
    for (index_t r = r0; r < std::min(rows, r0 + kCountRows); ++r) {
      const T* yr = y + r * cols + j0;
      for (int v = 0; v < NV; ++v) {
        const typename V::R x = V::load(yr + v * V::W);
        top[v] = V::max(x, top[v]);
        count[v] = V::add(count[v], V::select(V::eq(x, zero), one, zero));
      }
    }
    T lanes[V::W];
    for (int v = 0; v < NV; ++v) {
      V::store(lanes, count[v]);
      for (int l = 0; l < V::W; ++l) zeros += index_t(lanes[l]);
    }
  }
  for (int v = 0; v < NV; ++v) V::store(colmax + j0 + v * V::W, top[v]);
  return zeros;
}

// The same for the last `last` columns from j0 (fewer than one vector), as a scalar loop.
template <typename T>
index_t activation_stats_tail(const T* y, index_t rows, index_t cols, index_t j0, index_t last, T* colmax) {
  index_t zeros = 0;
  for (index_t j = j0; j < j0 + last; ++j) {
    T top = colmax[j];
    for (index_t r = 0; r < rows; ++r) {
      const T v = y[r * cols + j];
      zeros += v == T(0) ? 1 : 0;
      top = v > top ? v : top;
    }
    colmax[j] = top;
  }
  return zeros;
}

template <typename T>
index_t activation_stats_impl(const T* y, index_t rows, index_t cols, T* colmax) {
  using V = vec_of<T>;
  index_t zeros = 0;
  for_column_strips<V>(cols, [&](auto nv, auto partial, index_t j0, index_t last) {
    if constexpr (decltype(partial)::value) zeros += activation_stats_tail(y, rows, cols, j0, last, colmax);
    else zeros += activation_stats_strip<V, decltype(nv)::value>(y, rows, cols, j0, colmax);
  });
  return zeros;
}

}  // namespace

index_t activation_stats(const float* y, index_t rows, index_t cols, float* colmax) {
  return activation_stats_impl(y, rows, cols, colmax);
}
index_t activation_stats(const double* y, index_t rows, index_t cols, double* colmax) {
  return activation_stats_impl(y, rows, cols, colmax);
}

void act_forward(const ActArgs<float>& args) { act_forward_impl<f32v>(args); }
void act_forward(const ActArgs<double>& args) { act_forward_impl<f64v>(args); }
void act_backward(const ActBackwardArgs<float>& args) { act_backward_impl<f32v>(args); }
void act_backward(const ActBackwardArgs<double>& args) { act_backward_impl<f64v>(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
