// Scaler kernels of one SIMD path.
#include "isa_kernels.hpp"

namespace fastnn {
namespace FASTNN_ISA {

void fill_scaler_kernels(ScalerKernels<float>& k) { (void)k; }
void fill_scaler_kernels(ScalerKernels<double>& k) { (void)k; }

}  // namespace FASTNN_ISA
}  // namespace fastnn
