// A dense layer's backward in its three parts, each as kernel arguments over a range:
//   dz = dy * act'(.), db, dslope   over a block of columns (and rows) (act_backward)
//   dw = x^T dz                     over a block of dw (gemm, A read by columns)
//   dx = dz w^T                     over rows [r0, r1) of dx (gemm, B read by columns)
// dense_backward runs them over the whole ranges; the training engine gives each thread of
// a step its own ranges. Every element of every part is computed the same way whatever the
// range (a column's sums run over all rows in fixed chunks; a GEMM element's sum over K in
// a fixed order), so any split gives the bitwise result of the whole.
#pragma once
#include "kernels.hpp"

namespace fastnn {

// Rows [r0, r1) and columns [j0, j1) of dz; the bias and slope gradients of those columns
// are sums over the rows given, so only a block of all rows yields them.
template <typename T>
ActBackwardArgs<T> dense_dz_args(const DenseBackwardArgs<T>& a, index_t r0, index_t r1, index_t j0, index_t j1) {
  const index_t at = r0 * a.oc + j0;
  ActBackwardArgs<T> r;
  r.rows = r1 - r0;
  r.cols = j1 - j0;
  r.ld = a.oc;
  r.dy = a.dy + at;
  r.y = a.y ? a.y + at : nullptr;
  r.z = a.z ? a.z + at : nullptr;
  r.slope = a.slope ? a.slope + j0 : nullptr;
  r.act = a.act;
  r.alpha = a.alpha;
  r.dz = a.act == Activation::linear ? nullptr : a.dz_workspace + at;
  r.db = a.db ? a.db + j0 : nullptr;
  r.dslope = a.dslope ? a.dslope + j0 : nullptr;
  r.accumulate = a.accumulate;
  r.partials = a.partials_workspace;
  return r;
}

// Where dz lives: dy itself for a linear layer, else the workspace.
template <typename T>
const T* dense_dz(const DenseBackwardArgs<T>& a) {
  return a.act == Activation::linear ? a.dy : a.dz_workspace;
}

// Rows [i0, i1) and columns [j0, j1) of dw.
template <typename T>
GemmArgs<T> dense_dw_args(const DenseBackwardArgs<T>& a, index_t i0, index_t i1, index_t j0, index_t j1) {
  GemmArgs<T> g;  // dw (IC, OC) = x^T (IC, N) * dz (N, OC)
  g.m = i1 - i0;
  g.n = j1 - j0;
  g.k = a.n;
  g.a = a.x + i0;
  g.rsa = 1;
  g.csa = a.ic;
  g.b = dense_dz(a) + j0;
  g.rsb = a.oc;
  g.csb = 1;
  g.c = a.dw + i0 * a.oc + j0;
  g.ldc = a.oc;
  g.accumulate = a.accumulate;
  g.depth_block = kShardRows;
  return g;
}

template <typename T>
GemmArgs<T> dense_dx_args(const DenseBackwardArgs<T>& a, index_t r0, index_t r1) {
  GemmArgs<T> h;  // dx (N, IC) = dz (N, OC) * w^T (OC, IC)
  h.m = r1 - r0;
  h.n = a.ic;
  h.k = a.oc;
  h.a = dense_dz(a) + r0 * a.oc;
  h.rsa = a.oc;
  h.csa = 1;
  h.b = a.w;
  h.rsb = 1;
  h.csb = a.oc;
  h.b_packed = a.w_packed;
  h.c = a.dx + r0 * a.ic;
  h.ldc = a.ic;
  return h;
}

}  // namespace fastnn
