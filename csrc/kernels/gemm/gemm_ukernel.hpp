// The GEMM microkernel: one MR x (NV*W) register tile of C from an A block and a packed
// B micro-panel (kc rows of NR contiguous values), with the dense layer's epilogue fused
// into the store. A is read in one of two layouts, both produced by the driver's packing:
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
  switch (ep ? ep->act : Activation::linear) {
    case Activation::linear: return store_tile_as<D, NR, Activation::linear>(tile, c, ldc, mv, nv, load_c, ep);
    case Activation::relu: return store_tile_as<D, NR, Activation::relu>(tile, c, ldc, mv, nv, load_c, ep);
    case Activation::leaky_relu: return store_tile_as<D, NR, Activation::leaky_relu>(tile, c, ldc, mv, nv, load_c, ep);
    case Activation::prelu: return store_tile_as<D, NR, Activation::prelu>(tile, c, ldc, mv, nv, load_c, ep);
    case Activation::elu: return store_tile_as<D, NR, Activation::elu>(tile, c, ldc, mv, nv, load_c, ep);
    case Activation::sigmoid: return store_tile_as<D, NR, Activation::sigmoid>(tile, c, ldc, mv, nv, load_c, ep);
    case Activation::tanh: return store_tile_as<D, NR, Activation::tanh>(tile, c, ldc, mv, nv, load_c, ep);
  }
}

template <class D, int MR, int NV, bool kColumnA>
inline void gemm_ukernel(index_t kc, const typename D::T* a, index_t lda, const typename D::T* bp,
                         typename D::T* c, index_t ldc, index_t mv, index_t nv, bool load_c,
                         const TileEpilogue<typename D::T>* ep) {
  using T = typename D::T;
  using R = typename D::R;
  constexpr int W = D::W;
  constexpr int NR = NV * W;

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
  for (index_t p = 0; p < kc; ++p) {
    const T* ap = a + (kColumnA ? p * lda : p);
    const T* bk = bp + p * NR;
    R b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) b[j] = D::load(bk + j * W);
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

}  // namespace FASTNN_ISA
}  // namespace fastnn
