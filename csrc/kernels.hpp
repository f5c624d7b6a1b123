// The kernel table: one set of function pointers per SIMD path, filled once.
// Operators ask the table; they never name a kernel (XNNPACK's xnn_params idea).
#pragma once

#include "common.hpp"

namespace fastnn {

// C(M, Nn) = [C +] A(M, K) * B(K, Nn), then an optional fused epilogue on the last K block:
//   z = C + bias;  preact <- z (if requested);  C <- act(z)
// A is read either row-wise (csa == 1, any rsa) or column-wise (rsa == 1, any csa);
// B is read with any strides (it is packed). C is row-major with row stride ldc.
template <typename T>
struct GemmArgs {
  index_t m = 0, n = 0, k = 0;
  const T* a = nullptr;
  index_t rsa = 0, csa = 1;
  const T* b = nullptr;
  index_t rsb = 0, csb = 1;
  T* c = nullptr;
  index_t ldc = 0;
  bool accumulate = false;  // C += A*B (the epilogue, if any, sees the sum)
  // epilogue
  const T* bias = nullptr;   // (Nn) or null
  Activation act = Activation::linear;
  T alpha = T(0);            // leaky_relu slope or elu alpha
  const T* slope = nullptr;  // prelu slopes (Nn)
  T* preact = nullptr;       // optional (M, Nn) copy of z before the activation
  index_t ldz = 0;
  int nthreads = 1;
};

// Elementwise activation forward over a (rows, cols) row-major block: out = act(x), with
// one PReLU slope per column.
template <typename T>
struct ActArgs {
  index_t rows = 0, cols = 0;
  const T* x = nullptr;
  T* out = nullptr;
  Activation act = Activation::linear;
  T alpha = T(0);            // leaky_relu slope or elu alpha
  const T* slope = nullptr;  // prelu (cols)
  int nthreads = 1;
};

// The backward row pass, shared by activation_backward and dense_backward:
//   dz = dy * act'(y | z)                      (dz == null with linear: dz is dy itself)
//   db[j]     (+)= sum_rows dz[:, j]           (when db != null)
//   dslope[j] (+)= sum_rows dy * min(z, 0)     (prelu, when dslope != null)
// Sums go through `partials` (dense_backward_partials(rows, cols) doubles) in fixed row
// chunks added in chunk order: bitwise identical for any thread count.
template <typename T>
struct ActBackwardArgs {
  index_t rows = 0, cols = 0;
  const T* dy = nullptr;
  const T* y = nullptr;      // forward output (all but prelu)
  const T* z = nullptr;      // pre-activation (prelu)
  const T* slope = nullptr;  // prelu (cols)
  Activation act = Activation::linear;
  T alpha = T(0);
  T* dz = nullptr;
  T* db = nullptr;
  T* dslope = nullptr;
  bool accumulate = false;   // db, dslope +=
  double* partials = nullptr;
  int nthreads = 1;
};

// Dense layer backward:  dz = dy * act'(.);  dw = x^T dz;  db = sum_rows dz;  dx = dz w^T
template <typename T>
struct DenseBackwardArgs {
  index_t n = 0, ic = 0, oc = 0;
  const T* dy = nullptr;     // (N, OC)
  const T* x = nullptr;      // (N, IC)
  const T* w = nullptr;      // (IC, OC)
  const T* y = nullptr;      // (N, OC) forward output (activation != linear, prelu)
  const T* z = nullptr;      // (N, OC) pre-activation (prelu)
  const T* slope = nullptr;  // (OC) prelu slopes
  Activation act = Activation::linear;
  T alpha = T(0);
  T* dx = nullptr;           // (N, IC) or null
  T* dw = nullptr;           // (IC, OC)
  T* db = nullptr;           // (OC) or null
  T* dslope = nullptr;       // (OC) prelu
  bool accumulate = false;   // dw, db, dslope += (dx is always overwritten)
  T* dz_workspace = nullptr;         // (N, OC) unless act == linear
  double* partials_workspace = nullptr;  // dense_backward_partials(N, OC) doubles
  int nthreads = 1;
};

// Work below which a second thread costs more than it saves: flops for GEMMs, elements
// for memory-bound passes. Tuned on the benchmarks; results never depend on them.
constexpr double kGemmFlopsPerThread = 2.0e6;
constexpr double kElementsPerThread = 32768;

// Reductions over rows use fixed chunks of this many rows, summed in chunk order, so the
// result is bitwise identical for any thread count (RELIABILITY.md section 5).
constexpr index_t kReduceChunkRows = 256;
inline index_t reduce_chunks(index_t rows) { return (rows + kReduceChunkRows - 1) / kReduceChunkRows; }
// doubles needed by DenseBackwardArgs::partials_workspace / ActBackwardArgs::partials
inline index_t dense_backward_partials(index_t rows, index_t cols) { return 2 * reduce_chunks(rows) * cols; }

// One SIMD path's kernels for one float type.
template <typename T>
struct TypedKernels {
  void (*gemm)(const GemmArgs<T>&) = nullptr;
  void (*act_forward)(const ActArgs<T>&) = nullptr;
  void (*act_backward)(const ActBackwardArgs<T>&) = nullptr;
  void (*dense_backward)(const DenseBackwardArgs<T>&) = nullptr;
};

struct KernelTable {
  const char* name = nullptr;
  int gemm_mr = 0, gemm_nr = 0;  // f32 register tile, for show_config and the edge tests
  TypedKernels<float> f32;
  TypedKernels<double> f64;
  template <typename T>
  const TypedKernels<T>& of() const {
    if constexpr (sizeof(T) == 4) return f32; else return f64;
  }
};

namespace generic { void fill_kernel_table(KernelTable& table); }
namespace avx2 { void fill_kernel_table(KernelTable& table); }
namespace avx512 { void fill_kernel_table(KernelTable& table); }

}  // namespace fastnn
