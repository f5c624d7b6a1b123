// Elementwise activation kernels of one SIMD path.
#pragma once
#include "kernels.hpp"
#include "simd.hpp"

namespace fastnn {
namespace FASTNN_ISA {

// The backward row pass shared by activation_backward and dense_backward:
//   dz = dy * act'(y | z)                      (skipped when act == linear: dz is dy)
//   db[j]     (+)= sum_rows dz[:, j]           (when db != null)
//   dslope[j] (+)= sum_rows dy * min(z, 0)     (prelu, when dslope != null)
// Sums go through `partials` (2 * reduce_chunks(rows) * cols doubles) in fixed row chunks
// added in chunk order: bitwise identical for any thread count.
template <typename T>
struct BackwardRows {
  index_t rows = 0, cols = 0;
  const T* dy = nullptr;
  const T* y = nullptr;
  const T* z = nullptr;
  const T* slope = nullptr;
  Activation act = Activation::linear;
  T alpha = T(0);
  T* dz = nullptr;
  T* db = nullptr;
  T* dslope = nullptr;
  bool accumulate = false;
  double* partials = nullptr;
  int nthreads = 1;
};

void backward_rows(const BackwardRows<float>& args);
void backward_rows(const BackwardRows<double>& args);

void act_forward_f32(const ActArgs<float>& args);
void act_forward_f64(const ActArgs<double>& args);
void act_backward_f32(const ActArgs<float>& args);
void act_backward_f64(const ActArgs<double>& args);

}  // namespace FASTNN_ISA
}  // namespace fastnn
