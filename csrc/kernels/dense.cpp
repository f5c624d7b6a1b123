// Dense layer backward of one SIMD path (the forward is the GEMM with its fused epilogue).
#include "isa_kernels.hpp"
#include "dense_parts.hpp"
#include "threading.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

template <typename T>
void dense_backward_impl(const DenseBackwardArgs<T>& a) {
  // x (N, IC)  w (IC, OC)  dy, y, z, dz (N, OC)  dx (N, IC)  dw (IC, OC)  db (OC)
  if (a.act != Activation::linear || a.db || a.dslope) {
    ActBackwardArgs<T> rows = dense_dz_args(a, 0, a.n, 0, a.oc);
    rows.nthreads = threads_for(double(a.n) * double(a.oc), kElementsPerThread, a.nthreads);
    act_backward(rows);
  }
  const double flops = 2.0 * double(a.n) * double(a.ic) * double(a.oc);
  GemmArgs<T> g = dense_dw_args(a, 0, a.ic, 0, a.oc);
  g.nthreads = threads_for(flops, kGemmFlopsPerThread, a.nthreads);
  gemm(g);
  if (a.dx) {
    GemmArgs<T> h = dense_dx_args(a, 0, a.n);
    h.nthreads = g.nthreads;
    gemm(h);
  }
}

}  // namespace

void dense_backward(const DenseBackwardArgs<float>& args) { dense_backward_impl(args); }
void dense_backward(const DenseBackwardArgs<double>& args) { dense_backward_impl(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
