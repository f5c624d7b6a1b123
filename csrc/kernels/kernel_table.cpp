// Fills this SIMD path's row of the kernel table.
#include "isa_kernels.hpp"

namespace fastnn {
namespace FASTNN_ISA {

#define FASTNN_STR2(x) #x
#define FASTNN_STR(x) FASTNN_STR2(x)

template <typename T>
static void fill_typed(TypedKernels<T>& k) {
  // Each assignment picks the overload for T.
  k.gemm = gemm;
  k.gemm_pack_b = gemm_pack_b;
  if constexpr (sizeof(T) == 4) k.gemm_packed_b_size = gemm_packed_b_size_f32;
  else k.gemm_packed_b_size = gemm_packed_b_size_f64;
  k.act_forward = act_forward;
  k.act_backward = act_backward;
  k.activation_stats = activation_stats;
  k.dense_backward = dense_backward;
  k.batchnorm_forward = batchnorm_forward;
  k.batchnorm_backward = batchnorm_backward;
  k.dropout_forward = dropout_forward;
  k.dropout_backward = dropout_backward;
  k.sum_squares = sum_squares;
  k.scale = scale;
  k.clip_value = clip_value;
  k.loss = loss;
  k.optimizer_step = optimizer_step;
  fill_scaler_kernels(k.scaler);
}

void fill_kernel_table(KernelTable& t) {
  t.name = FASTNN_STR(FASTNN_ISA);
  t.gemm_mr = kGemmMrF32;
  t.gemm_nr = kGemmNvF32 * f32v::W;
  fill_typed(t.f32);
  fill_typed(t.f64);
}

}  // namespace FASTNN_ISA
}  // namespace fastnn
