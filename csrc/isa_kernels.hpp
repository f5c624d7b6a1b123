// Every kernel of one SIMD path, declared once. Each is overloaded for float and double;
// the definitions live in the per-path copies of gemm.cpp, activation.cpp, dense.cpp ...
#pragma once
#include "kernels.hpp"
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

#undef FASTNN_DECLARE_KERNEL

}  // namespace FASTNN_ISA
}  // namespace fastnn
