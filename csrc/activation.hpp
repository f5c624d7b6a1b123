// Elementwise activation kernels of one SIMD path.
#pragma once
#include "kernels.hpp"
#include "simd.hpp"

namespace fastnn {
namespace FASTNN_ISA {

void act_forward_f32(const ActArgs<float>& args);
void act_forward_f64(const ActArgs<double>& args);
void act_backward_f32(const ActBackwardArgs<float>& args);
void act_backward_f64(const ActBackwardArgs<double>& args);
inline void act_backward(const ActBackwardArgs<float>& args) { act_backward_f32(args); }
inline void act_backward(const ActBackwardArgs<double>& args) { act_backward_f64(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
