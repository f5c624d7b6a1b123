// Dense layer backward of one SIMD path (the forward is the GEMM with its fused epilogue).
#include "isa_kernels.hpp"
#include "threading.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

template <typename T>
void dense_backward_impl(const DenseBackwardArgs<T>& a) {
  // x (N, IC)  w (IC, OC)  dy, y, z, dz (N, OC)  dx (N, IC)  dw (IC, OC)  db (OC)
  const bool linear = a.act == Activation::linear;
  ActBackwardArgs<T> rows;
  rows.rows = a.n;
  rows.cols = a.oc;
  rows.dy = a.dy;
  rows.y = a.y;
  rows.z = a.z;
  rows.slope = a.slope;
  rows.act = a.act;
  rows.alpha = a.alpha;
  rows.dz = linear ? nullptr : a.dz_workspace;
  rows.db = a.db;
  rows.dslope = a.dslope;
  rows.accumulate = a.accumulate;
  rows.partials = a.partials_workspace;
  rows.nthreads = threads_for(double(a.n) * double(a.oc), kElementsPerThread, a.nthreads);
  if (!linear || a.db || a.dslope) act_backward(rows);
  const T* dz = linear ? a.dy : a.dz_workspace;

  const double flops = 2.0 * double(a.n) * double(a.ic) * double(a.oc);
  GemmArgs<T> g;  // dw (IC, OC) = x^T (IC, N) * dz (N, OC): A read by columns
  g.m = a.ic;
  g.n = a.oc;
  g.k = a.n;
  g.a = a.x;
  g.rsa = 1;
  g.csa = a.ic;
  g.b = dz;
  g.rsb = a.oc;
  g.csb = 1;
  g.c = a.dw;
  g.ldc = a.oc;
  g.accumulate = a.accumulate;
  g.nthreads = threads_for(flops, kGemmFlopsPerThread, a.nthreads);
  gemm(g);

  if (a.dx) {  // dx (N, IC) = dz (N, OC) * w^T (OC, IC): B read by columns
    GemmArgs<T> h;
    h.m = a.n;
    h.n = a.ic;
    h.k = a.oc;
    h.a = dz;
    h.rsa = a.oc;
    h.csa = 1;
    h.b = a.wt ? a.wt : a.w;  // the same values either way: W^T row-major packs without a gather
    h.rsb = a.wt ? a.ic : 1;
    h.csb = a.wt ? 1 : a.oc;
    h.c = a.dx;
    h.ldc = a.ic;
    h.nthreads = g.nthreads;
    gemm(h);
  }
}

}  // namespace

void dense_backward(const DenseBackwardArgs<float>& args) { dense_backward_impl(args); }
void dense_backward(const DenseBackwardArgs<double>& args) { dense_backward_impl(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
