// Picks this translation unit's SIMD types. Every kernel file includes this first and
// then writes its code inside `namespace fastnn::FASTNN_ISA`, so the generic, AVX2 and
// AVX-512 copies of the same template get different symbols and never mix at link time.
// The sub-headers include nothing themselves: every system header is included above.
#pragma once
#include <cmath>
#include <type_traits>

#include "common.hpp"
#if defined(FASTNN_ISA_IS_avx512) || defined(FASTNN_ISA_IS_avx2)
#include <immintrin.h>
#endif

#ifndef FASTNN_ISA
#error "kernel sources are compiled once per SIMD path with -DFASTNN_ISA=<path>"
#endif

namespace fastnn {
namespace FASTNN_ISA {
#if defined(FASTNN_ISA_IS_avx512)
#include "simd/simd_avx512.hpp"
#elif defined(FASTNN_ISA_IS_avx2)
#include "simd/simd_avx2.hpp"
#else
#include "simd/simd_generic.hpp"
#endif
// The vector type of element type T (float or double).
template <typename T>
using vec_of = std::conditional_t<sizeof(T) == sizeof(float), f32v, f64v>;
}  // namespace FASTNN_ISA
}  // namespace fastnn
