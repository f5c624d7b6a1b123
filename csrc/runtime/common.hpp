// fastnn: shared definitions for every translation unit.
//
// Dimension letters used in every kernel comment:
//   N  rows of a batch          IC  input features (in_features)
//   OC output features          M, K, Nn  the GEMM's own C(M,Nn) = A(M,K) * B(K,Nn)
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastnn {

// Every size and offset is 64-bit signed: no element index may wrap at 2^31.
using index_t = std::int64_t;

enum class Activation : int {
  linear = 0,
  relu = 1,
  leaky_relu = 2,  // y = z > 0 ? z : alpha * z   (alpha = negative_slope >= 0)
  prelu = 3,       // y = z > 0 ? z : slope[j] * z (slope learned per output unit)
  elu = 4,         // y = z > 0 ? z : alpha * (exp(z) - 1)   (alpha > 0)
  sigmoid = 5,
  tanh = 6,
};
constexpr int kNumActivations = 7;

// C++ errors are standard exceptions; pybind11 maps std::invalid_argument to ValueError.
[[noreturn]] void throw_invalid(const std::string& message);

}  // namespace fastnn
