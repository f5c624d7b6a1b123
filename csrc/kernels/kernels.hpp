// The kernel table: one set of function pointers per SIMD path, filled once.
// Operators ask the table; they never name a kernel (XNNPACK's xnn_params idea).
#pragma once

#include <algorithm>
#include "common.hpp"
#include "scaler.hpp"

namespace fastnn {

// C(M, Nn) = [C +] A(M, K) * B(K, Nn), then an optional fused epilogue on the last K block:
//   z = C + bias;  preact <- z (if requested);  C <- act(z)
// A is read either row-wise (csa == 1, any rsa) or column-wise (rsa == 1, any csa);
// B is read with any strides (packed per call, or read in place when row-major and small),
// or from b_packed. C is row-major with row stride ldc.
//
// Prepacked B (weights reused by many calls, e.g. every row shard of a training step):
// allocate TypedKernels::gemm_packed_b_size(k, n) elements, fill them once with
// gemm_pack_b(args, dst) (reads k, n, b, rsb, csb), then set b_packed = dst in any number
// of gemm calls with the same k and n, on any thread. The layout belongs to the kernel
// table that packed it: pack and multiply through the same table. Results are bitwise
// those of the unpacked call.
template <typename T>
struct GemmArgs {
  index_t m = 0, n = 0, k = 0;
  const T* a = nullptr;
  index_t rsa = 0, csa = 1;
  const T* b = nullptr;
  index_t rsb = 0, csb = 1;
  const T* b_packed = nullptr;  // gemm_pack_b's layout of op(B), or null (then b is read)
  T* c = nullptr;
  index_t ldc = 0;
  bool accumulate = false;  // C += A*B (the epilogue, if any, sees the sum)
  // Depth (K) block, 0 for the default: each block's sum is added to C in block order. A
  // dense layer's weight gradient sums the batch in shards of kShardRows rows this way.
  // b_packed holds the default blocks, so a call with b_packed keeps the default.
  index_t depth_block = 0;
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
// chunks of kShardRows added in chunk order: bitwise identical for any thread count. Chunk
// c's column sums sit at partials[2c * cols] (db) and partials[(2c + 1) * cols] (dslope).
template <typename T>
struct ActBackwardArgs {
  index_t rows = 0, cols = 0;
  index_t ld = 0;            // row stride of dy, y, z and dz (0: cols); a column block of a wider matrix
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
  // Leave the chunk sums in partials for add_chunk_sums (a team's threads each make the
  // sums of their own chunks; rows then starts at a chunk and partials points at its sums).
  bool sums_pending = false;
  int nthreads = 1;
};

// Dense layer backward:  dz = dy * act'(.);  dw = x^T dz;  db = sum_rows dz;  dx = dz w^T
template <typename T>
struct DenseBackwardArgs {
  index_t n = 0, ic = 0, oc = 0;
  const T* dy = nullptr;     // (N, OC)
  const T* x = nullptr;      // (N, IC)
  const T* w = nullptr;      // (IC, OC)
  const T* w_packed = nullptr;  // gemm_pack_b of W^T (k = OC, n = IC) for dx, or null
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
  T* dz_workspace = nullptr;         // (N, OC) unless act == linear; may be dy (dz replaces it)
  double* partials_workspace = nullptr;  // dense_backward_partials(N, OC) doubles
  int nthreads = 1;
};

// One thread's part of a team's training call split by rows (BatchNorm*Args::part): the
// call's matrices and n are the thread's rows, which start at a chunk of kShardRows rows.
// With `gather` the call only leaves those rows' per-chunk statistics in `sums` (the
// forward's moments, the backward's column sums); then, once every thread's are there, a
// call with gather unset finishes the statistics from all of them (the same on every
// thread) and makes its rows. Only the thread with `publish` writes the per-column results
// (mean, invstd, running statistics; dgamma, dbeta).
template <typename T>
struct BatchNormPart {
  index_t rows = 0;              // the batch's rows
  index_t first_chunk = 0;       // the chunk of the call's first row
  double* sums = nullptr;        // (chunks, 2 C) every chunk's statistics
  bool gather = false;
  bool publish = false;
};

// Batch normalization over the rows of x (N, C), per feature (column).
// Training: batch mean and biased variance (float64 moments of fixed row chunks merged in
// chunk order), normalize with eps, scale and shift; write mean and inverse std (C) for the
// backward; update the running statistics (when given) as running = momentum * running +
// (1 - momentum) * batch, with the unbiased variance. Inference: the running statistics, no batch dependence.
// Each column's results depend only on that column (no sum mixes columns), so the columns
// of one matrix can be cut into ranges and normalized by separate calls: x, y (and dy, dx
// below) then point at the range's first column and ld is the matrix's row stride.
template <typename T>
struct BatchNormForwardArgs {
  index_t n = 0, c = 0;
  index_t ld = 0;              // row stride of x and y (0: c)
  const T* x = nullptr;        // (N, C)
  const T* gamma = nullptr;    // (C)
  const T* beta = nullptr;     // (C)
  T* y = nullptr;              // (N, C)
  bool training = true;
  T* mean = nullptr;           // (C) out, training
  T* invstd = nullptr;         // (C) out, training
  T* running_mean = nullptr;   // (C) in/out (training: updated when non-null)
  T* running_var = nullptr;    // (C) in/out
  double eps = 1e-3, momentum = 0.99;
  const BatchNormPart<T>* part = nullptr;  // training on a team's rows (null: the whole batch)
  int nthreads = 1;
};

// dx = gamma * invstd / N * (N * dy - sum(dy) - xhat * sum(dy * xhat)),
// dgamma (+)= sum(dy * xhat), dbeta (+)= sum(dy), with xhat = (x - mean) * invstd.
template <typename T>
struct BatchNormBackwardArgs {
  index_t n = 0, c = 0;
  index_t ld = 0;              // row stride of dy, x and dx (0: c)
  const T* dy = nullptr;       // (N, C)
  const T* x = nullptr;        // (N, C)
  const T* gamma = nullptr;    // (C)
  const T* mean = nullptr;     // (C) from the training forward
  const T* invstd = nullptr;   // (C)
  T* dx = nullptr;             // (N, C)
  T* dgamma = nullptr;         // (C)
  T* dbeta = nullptr;          // (C)
  bool accumulate = false;     // dgamma, dbeta +=
  const BatchNormPart<T>* part = nullptr;  // a team's rows (null: the whole batch)
  int nthreads = 1;
};

// Inverted dropout with a counter-based mask: element e is dropped when the 16-bit uniform
// (e % 2)-th half of word (e / 2) % 4 of Philox4x32-10(counter = (e / 8 as 64 bits, step as
// 64 bits), key = seed) is below floor(rate * 65536). Kept elements are scaled by
// 1 / (1 - rate). The mask depends only on (seed, step, e): identical for any thread count
// and SIMD path, and for any cut of the elements into ranges handled by separate calls.
constexpr index_t kDropoutGroup = 64;  // elements per mask word; a call's first element starts one
template <typename T>
struct DropoutArgs {
  index_t n = 0;
  index_t first = 0;               // only elements [first, n); first % kDropoutGroup == 0
                                   // (x, y and the masks still start at element 0)
  const T* x = nullptr;            // forward: x; backward: dy. Null: only write mask_bits.
  T* y = nullptr;                  // forward: y; backward: dx
  std::uint8_t* mask_bits = nullptr;       // out: bit i (little order) = element i kept
  const std::uint8_t* mask_in = nullptr;   // in: a stored mask (else regenerated from seed, step)
  double rate = 0.0;
  std::uint64_t seed = 0, step = 0;
  int nthreads = 1;
};

enum class LossKind : int { mse = 0, huber = 1, bce_logits = 2, softmax_ce = 3 };

// Weighted mean loss L = sum_i w_i l_i / sum_i w_i over rows i, with l_i the mean over the
// row's K elements (softmax_ce: the row's cross-entropy), and its gradient w.r.t. pred.
template <typename T>
struct LossArgs {
  LossKind kind = LossKind::mse;
  index_t n = 0, k = 0;
  const T* pred = nullptr;               // (N, K) predictions or logits
  const T* target = nullptr;             // (N, K) targets (or class probabilities)
  const std::int64_t* labels = nullptr;  // (N) class indices (softmax_ce instead of target)
  const T* weights = nullptr;            // (N) or null
  double weight_sum = 0.0;               // sum of weights (N when unweighted), > 0
  double delta = 1.0;                    // huber
  T* grad = nullptr;                     // (N, K) or null
  // When given: each kShardRows rows' weighted loss sum (a team's threads each make their
  // own shards' sums, which sum_in_order then finishes; the return value is then partial).
  double* chunk_sums = nullptr;
  int nthreads = 1;
};

enum class OptimizerKind : int { sgd = 0, adagrad = 1, adam = 2, rmsprop = 3 };

// One fused in-place update over a flat buffer. Regularization adds l1 * sign(p) + 2 * l2 * p
// to the gradient of the entries `weight_mask` marks (all entries when it is null).
//   sgd:     v = momentum * v + g;  p -= lr * (nesterov ? g + momentum * v : v)   (state0 = v)
//   adagrad: a += g^2;  p -= lr * g / (sqrt(a) + eps)                              (state0 = a)
//   adam:    p -= lr * weight_decay * p (AdamW, masked);  m, v moments;
//            p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)          (state0 = m, state1 = v)
//   rmsprop: s = rho * s + (1 - rho) g^2;  [centered: ga = rho * ga + (1 - rho) g, s - ga^2];
//            d = g / (sqrt(.) + eps);  [momentum: b = momentum * b + d, d = b];  p -= lr * d
//            (state0 = s, state1 = momentum buffer, state2 = ga)
template <typename T>
struct OptimizerArgs {
  OptimizerKind kind = OptimizerKind::sgd;
  index_t n = 0;
  T* params = nullptr;
  const T* grads = nullptr;
  T* state0 = nullptr;
  T* state1 = nullptr;
  T* state2 = nullptr;
  const std::uint8_t* weight_mask = nullptr;
  double lr = 0.01, momentum = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-7, rho = 0.9;
  double weight_decay = 0.0, l1 = 0.0, l2 = 0.0;
  bool nesterov = false, centered = false;
  std::int64_t step = 1;  // adam: 1 for the first update
  int nthreads = 1;
};

// Work each thread must get before a parallel region pays for itself, even on a busy
// machine: about 40 us of GEMM (flops) or 15 us of a memory-bound pass (elements). Results
// never depend on the thread count these choose.
constexpr double kGemmFlopsPerThread = 4.0e6;
constexpr double kElementsPerThread = 65536;

// Reductions over a batch's rows sum it in shards (chunks) of this many rows: each shard's
// sum starts from zero and the shards' sums are added in shard order (GEMM depth blocks for
// a dense layer's dW, act_backward's column sums for db and PReLU's slopes, the loss, batch
// norm's statistics). So the result is bitwise identical for any thread count
// (RELIABILITY.md section 5), and a team can give each thread whole shards of its own rows.
constexpr index_t kShardRows = 64;
inline index_t shard_count(index_t rows) { return (rows + kShardRows - 1) / kShardRows; }
// doubles needed by DenseBackwardArgs::partials_workspace / ActBackwardArgs::partials
inline index_t dense_backward_partials(index_t rows, index_t cols) { return 2 * shard_count(rows) * cols; }

// partial[0] + partial[1] + ... in that order: how chunked sums are finished.
inline double sum_in_order(const double* partial, index_t chunks) {
  double total = partial[0];
  for (index_t c = 1; c < chunks; ++c) total += partial[c];
  return total;
}

// Columns [j0, j1) of db (and of dslope, when not null) from act_backward's partials of
// `chunks` chunks: each column's chunk sums added in chunk order, onto the old value with
// accumulate. Chunks run outer and a block of columns inner, so that the adds vectorize.
constexpr index_t kSumBlock = 256;  // columns per block
template <typename T>
void add_chunk_sums(const double* partials, index_t chunks, index_t cols, bool accumulate, T* db, T* dslope,
                    index_t j0, index_t j1) {
  double acc[kSumBlock];
  for (index_t b = j0; b < j1; b += kSumBlock) {
    const index_t n = std::min(kSumBlock, j1 - b);
    for (int which = 0; which < 2; ++which) {
      T* out = which == 0 ? db : dslope;
      if (out == nullptr) continue;
      for (index_t j = 0; j < n; ++j) acc[j] = accumulate ? double(out[b + j]) : 0.0;
      for (index_t c = 0; c < chunks; ++c) {
        const double* p = partials + (2 * c + which) * cols + b;
        for (index_t j = 0; j < n; ++j) acc[j] += p[j];
      }
      for (index_t j = 0; j < n; ++j) out[b + j] = T(acc[j]);
    }
  }
}

// One SIMD path's kernels for one float type.
template <typename T>
struct TypedKernels {
  void (*gemm)(const GemmArgs<T>&) = nullptr;
  void (*gemm_pack_b)(const GemmArgs<T>&, T* dst) = nullptr;  // see GemmArgs: prepacked B
  index_t (*gemm_packed_b_size)(index_t k, index_t n) = nullptr;  // elements gemm_pack_b writes
  void (*act_forward)(const ActArgs<T>&) = nullptr;
  void (*act_backward)(const ActBackwardArgs<T>&) = nullptr;
  void (*dense_backward)(const DenseBackwardArgs<T>&) = nullptr;
  void (*batchnorm_forward)(const BatchNormForwardArgs<T>&) = nullptr;
  void (*batchnorm_backward)(const BatchNormBackwardArgs<T>&) = nullptr;
  void (*dropout_forward)(const DropoutArgs<T>&) = nullptr;
  void (*dropout_backward)(const DropoutArgs<T>&) = nullptr;
  index_t (*activation_stats)(const T* y, index_t rows, index_t cols, T* colmax) = nullptr;
  double (*sum_squares)(const T* x, index_t n, int nthreads) = nullptr;
  void (*scale)(T* x, index_t n, T factor, int nthreads) = nullptr;
  void (*clip_value)(T* x, index_t n, T lo, T hi, int nthreads) = nullptr;
  double (*loss)(const LossArgs<T>&) = nullptr;
  void (*optimizer_step)(const OptimizerArgs<T>&) = nullptr;
  ScalerKernels<T> scaler;  // fastnn.preprocessing (scaler.hpp)
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

namespace generic {
void fill_kernel_table(KernelTable& table);
// The Philox4x32-10 block function (integer math, identical on every path).
void philox4x32_10(const std::uint32_t counter[4], const std::uint32_t key[2], std::uint32_t out[4]);
}  // namespace generic
namespace avx2 { void fill_kernel_table(KernelTable& table); }
namespace avx512 { void fill_kernel_table(KernelTable& table); }

}  // namespace fastnn
