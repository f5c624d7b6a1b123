// Fills this SIMD path's row of the kernel table.
#include "activation.hpp"
#include "gemm/gemm.hpp"

namespace fastnn {
namespace FASTNN_ISA {

void dense_backward_f32(const DenseBackwardArgs<float>& args);
void dense_backward_f64(const DenseBackwardArgs<double>& args);

#define FASTNN_STR2(x) #x
#define FASTNN_STR(x) FASTNN_STR2(x)

void fill_kernel_table(KernelTable& t) {
  t.name = FASTNN_STR(FASTNN_ISA);
  t.gemm_mr = kGemmMrF32;
  t.gemm_nr = kGemmNvF32 * f32v::W;
  t.gemm_f32 = gemm_f32;
  t.gemm_f64 = gemm_f64;
  t.act_forward_f32 = act_forward_f32;
  t.act_forward_f64 = act_forward_f64;
  t.act_backward_f32 = act_backward_f32;
  t.act_backward_f64 = act_backward_f64;
  t.dense_backward_f32 = dense_backward_f32;
  t.dense_backward_f64 = dense_backward_f64;
}

}  // namespace FASTNN_ISA
}  // namespace fastnn
