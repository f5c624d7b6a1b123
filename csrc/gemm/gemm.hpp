// GEMM entry points of one SIMD path (called by this path's dense and table code).
#pragma once
#include "kernels.hpp"
#include "simd.hpp"

namespace fastnn {
namespace FASTNN_ISA {

void gemm_f32(const GemmArgs<float>& args);
void gemm_f64(const GemmArgs<double>& args);
inline void gemm(const GemmArgs<float>& args) { gemm_f32(args); }
inline void gemm(const GemmArgs<double>& args) { gemm_f64(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
