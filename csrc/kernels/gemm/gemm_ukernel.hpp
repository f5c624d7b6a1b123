// The GEMM microkernel: one MR x (NV*W) register tile of C from an A block and a B
// micro-panel of kc rows, ldb apart: either packed (ldb = NR) or read in place from a
// row-major B (ldb = B's row stride; a last panel narrower than NR is read with masked
// loads, as XNNPACK's and libxsmm's small-GEMM kernels read an unpadded B), with the
// dense layer's epilogue fused into the store. A is read in one of two layouts, both produced by the driver's packing:
// "row" mode a[i*lda + p] (rows of the A block, lda = kc) and "column" mode a[p*lda + i]
// (k-major panels of MR values, lda = MR, from A = X^T for dW). Each step broadcasts MR
// values of A against NV vectors of B, as the BLIS and XNNPACK microkernels do.
#pragma once
#include "activation_math.hpp"

namespace fastnn {
namespace FASTNN_ISA {

// Epilogue pointers already offset to this tile's first row and column.
template <typename T>
struct TileEpilogue {
  const T* bias = nullptr;   // (NR) or null
  const T* slope = nullptr;  // (NR) prelu
  T* preact = nullptr;       // z copy, row stride ldz
  index_t ldz = 0;
  Activation act = Activation::linear;
  T alpha = T(0);
};

// C <- act([C +] tile [+ bias]) for mv rows and nv (<= NR) columns; preact <- the z.
// One instantiation per activation so the per-vector work has no branches.
template <class D, int NR, Activation kAct>
inline void store_tile_as(const typename D::T* tile, typename D::T* c, index_t ldc, index_t mv, index_t nv,
                          bool load_c, const TileEpilogue<typename D::T>* ep) {
  using T = typename D::T;
  using R = typename D::R;
  constexpr int W = D::W;
  const R alpha = D::set1(ep ? ep->alpha : T(0));
  for (index_t j0 = 0; j0 < nv; j0 += W) {
    const index_t cols = nv - j0 < W ? nv - j0 : W;
    const R bias = (ep && ep->bias) ? load_part<D>(ep->bias + j0, cols) : D::zero();
    const R slope = (ep && ep->slope) ? load_part<D>(ep->slope + j0, cols) : D::zero();
    for (index_t i = 0; i < mv; ++i) {
      R v = D::load(tile + i * NR + j0);
      T* ci = c + i * ldc + j0;
      if (load_c) v = D::add(load_part<D>(ci, cols), v);
      if (ep) {
        if (ep->bias) v = D::add(v, bias);
        if (ep->preact) store_part<D>(ep->preact + i * ep->ldz + j0, v, cols);
        v = act_forward<D>(kAct, v, alpha, slope);
      }
      store_part<D>(ci, v, cols);
    }
  }
}

template <class D, int NR>
inline void store_tile(const typename D::T* tile, typename D::T* c, index_t ldc, index_t mv, index_t nv,
                       bool load_c, const TileEpilogue<typename D::T>* ep) {
  with_activation(ep ? ep->act : Activation::linear, [&](auto act) {
    store_tile_as<D, NR, decltype(act)::value>(tile, c, ldc, mv, nv, load_c, ep);
  });
}

// How the microkernel reads its B micro-panel: packed (rows kPanelNR apart, a compile-time
// stride), in place from a row-major B (rows ldb apart), or in place for a last panel
// narrower than NR: lanes past nv load as zero (masked, so no read leaves B's row) and are
// computed but never stored.
enum class BLayout : int { packed, in_place, in_place_partial };

template <class D, int MR, int NV, bool kColumnA, BLayout kB, int kPanelNR>
inline void gemm_ukernel(index_t kc, const typename D::T* a, index_t lda, const typename D::T* bp, index_t ldb,
                         typename D::T* c, index_t ldc, index_t mv, index_t nv, bool load_c,
                         const TileEpilogue<typename D::T>* ep) {
  using T = typename D::T;
  using R = typename D::R;
  constexpr int W = D::W;
  constexpr int NR = NV * W;
  const index_t b_stride = kB == BLayout::packed ? index_t(kPanelNR) : ldb;

  R acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = D::zero();

  // Row mode: rows past mv re-read the last valid row (computed, never stored), so no
  // read leaves the packed block.
  index_t row_offset[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) row_offset[i] = kColumnA ? i : (i < mv ? i : mv - 1) * lda;
  index_t b_cols[NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) b_cols[j] = nv - j * W < 0 ? 0 : (nv - j * W > W ? W : nv - j * W);
  for (index_t p = 0; p < kc; ++p) {
    const T* ap = a + (kColumnA ? p * lda : p);
    const T* bk = bp + p * b_stride;
    R b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      b[j] = kB == BLayout::in_place_partial ? D::load_n(bk + j * W, b_cols[j]) : D::load(bk + j * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const R ai = D::set1(ap[row_offset[i]]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = D::fmadd(ai, b[j], acc[i][j]);
    }
  }

  // Fast path, straight from registers: full-width tile, linear or relu, optional bias.
  const Activation act = ep ? ep->act : Activation::linear;
  if (nv == NR && !(ep && ep->preact) && (act == Activation::linear || act == Activation::relu)) {
    R bias[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) bias[j] = (ep && ep->bias) ? D::load(ep->bias + j * W) : D::zero();
    const bool add_bias = ep && ep->bias;
    const bool relu = act == Activation::relu;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if (i >= mv) break;
      T* ci = c + i * ldc;
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) {
        R v = acc[i][j];
        if (load_c) v = D::add(D::load(ci + j * W), v);
        if (add_bias) v = D::add(v, bias[j]);
        if (relu) v = D::max(D::zero(), v);
        D::store(ci + j * W, v);
      }
    }
    return;
  }
  // Otherwise spill the tile once (constant indices keep acc in registers), then store it.
  alignas(64) T tile[MR * NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) D::store(tile + i * NR + j * W, acc[i][j]);
  store_tile<D, NR>(tile, c, ldc, mv < MR ? mv : MR, nv, load_c, ep);
}

// One output column, A read by columns: c[i * ldc] (=|+=) sum_p a[i + p * lda] * b[p * ldb]
// over one depth block, for rows [0, m). This is the dW of a one-output layer (X^T dz):
// W consecutive rows of A lie side by side at each depth step, so the rows go in the
// lanes and each lane runs the same fma chain over p, from zero, as a tile kernel's
// accumulator would (bitwise identical), with 1/NR of the tile kernel's work.
template <class D>
inline void gemv_column_a(index_t m, index_t kc, const typename D::T* a, index_t lda, const typename D::T* b,
                          index_t ldb, typename D::T* c, index_t ldc, bool load_c) {
  using T = typename D::T;
  using R = typename D::R;
  constexpr int W = D::W;
  constexpr int kVectors = 4;  // independent chains to hide the FMA latency
  for (index_t i0 = 0; i0 < m; i0 += kVectors * W) {
    R acc[kVectors];
    index_t lanes[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      acc[v] = D::zero();
      const index_t left = m - i0 - v * W;
      lanes[v] = left < 0 ? 0 : (left > W ? W : left);
    }
    for (index_t p = 0; p < kc; ++p) {
      const R bp = D::set1(b[p * ldb]);
      const T* ap = a + p * lda + i0;
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) acc[v] = D::fmadd(load_part<D>(ap + v * W, lanes[v]), bp, acc[v]);
    }
    alignas(64) T sums[kVectors * W];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) D::store(sums + v * W, acc[v]);
    const index_t rows = m - i0 < kVectors * W ? m - i0 : kVectors * W;
    for (index_t i = 0; i < rows; ++i) {
      T* ci = c + (i0 + i) * ldc;
      *ci = load_c ? *ci + sums[i] : sums[i];
    }
  }
}

}  // namespace FASTNN_ISA
}  // namespace fastnn
