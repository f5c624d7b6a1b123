// CPU feature detection (x86: CPUID plus the OS's XSAVE state, so a kernel that hides
// AVX-512 state, or valgrind, is honoured).
#pragma once
#include <string>

namespace fastnn {

struct CpuFeatures {
  bool x86 = false;
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool has_avx2_path() const { return avx2 && fma; }
  bool has_avx512_path() const { return avx512f && avx512bw && avx512dq && avx512vl && has_avx2_path(); }
};

const CpuFeatures& cpu_features();
std::string cpu_brand();

}  // namespace fastnn
