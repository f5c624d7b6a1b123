// Column statistics and fused transforms for fastnn.preprocessing (one SIMD path's copy of
// the kernels is filled into KernelTable::f32/f64.scaler).
#pragma once
#include "common.hpp"

namespace fastnn {

template <typename T>
struct ScalerKernels {
  // filled by the preprocessing work; empty until then
  void* reserved = nullptr;
};

}  // namespace fastnn
