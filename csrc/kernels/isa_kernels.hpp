// Every kernel of one SIMD path, declared once. Each is overloaded for float and double;
// the definitions live in the per-path copies of gemm.cpp, activation.cpp, dense.cpp ...
#pragma once
#include "kernels.hpp"
#include "parallel.hpp"
#include "simd.hpp"

namespace fastnn {
namespace FASTNN_ISA {

#define FASTNN_DECLARE_KERNEL(name, Args) \
  void name(const Args<float>& args);     \
  void name(const Args<double>& args);

FASTNN_DECLARE_KERNEL(gemm, GemmArgs)
FASTNN_DECLARE_KERNEL(act_forward, ActArgs)
FASTNN_DECLARE_KERNEL(act_backward, ActBackwardArgs)
FASTNN_DECLARE_KERNEL(dense_backward, DenseBackwardArgs)
FASTNN_DECLARE_KERNEL(batchnorm_forward, BatchNormForwardArgs)
FASTNN_DECLARE_KERNEL(batchnorm_backward, BatchNormBackwardArgs)
FASTNN_DECLARE_KERNEL(dropout_forward, DropoutArgs)
FASTNN_DECLARE_KERNEL(dropout_backward, DropoutArgs)
FASTNN_DECLARE_KERNEL(optimizer_step, OptimizerArgs)
double loss(const LossArgs<float>& args);
double loss(const LossArgs<double>& args);

// Prepacked GEMM operand B (see GemmArgs): the packing and its size in elements.
void gemm_pack_b(const GemmArgs<float>& args, float* dst);
void gemm_pack_b(const GemmArgs<double>& args, double* dst);
index_t gemm_packed_b_size_f32(index_t k, index_t n);
index_t gemm_packed_b_size_f64(index_t k, index_t n);

// Training statistics of a (rows, cols) activation block: returns its number of exact
// zeros and raises colmax[j] to the largest value of column j.
index_t activation_stats(const float* y, index_t rows, index_t cols, float* colmax);
index_t activation_stats(const double* y, index_t rows, index_t cols, double* colmax);

// Clipping helpers over a flat buffer: sum of squares in float64 (fixed chunks, ordered),
// in-place scaling, and clamping to [lo, hi] (NaN stays NaN).
double sum_squares(const float* x, index_t n, int nthreads);
double sum_squares(const double* x, index_t n, int nthreads);
void scale(float* x, index_t n, float factor, int nthreads);
void scale(double* x, index_t n, double factor, int nthreads);
void clip_value(float* x, index_t n, float lo, float hi, int nthreads);
void clip_value(double* x, index_t n, double lo, double hi, int nthreads);

// Fills the preprocessing kernels of this path (scaler.cpp).
void fill_scaler_kernels(ScalerKernels<float>& k);
void fill_scaler_kernels(ScalerKernels<double>& k);

// Philox4x32-10 (Salmon et al., SC11): out = philox(counter, key). Exposed for the
// known-answer tests.
void philox4x32_10(const std::uint32_t counter[4], const std::uint32_t key[2], std::uint32_t out[4]);

#undef FASTNN_DECLARE_KERNEL

}  // namespace FASTNN_ISA
}  // namespace fastnn
