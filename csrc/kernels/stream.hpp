// Non-temporal (cache-bypassing) copies for outputs too large to stay in cache. Writing a
// line with ordinary stores first reads it into the cache (read for ownership); a streamed
// store does not, which saves a third of the memory traffic of a read-x, write-y pass and
// most of the cost of writing into freshly mapped pages (np.empty of a large array).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "simd.hpp"

namespace fastnn {
namespace FASTNN_ISA {

#if defined(FASTNN_ISA_IS_avx512) || defined(FASTNN_ISA_IS_avx2)
constexpr bool kHasStreamingStores = true;
#else
constexpr bool kHasStreamingStores = false;  // the portable path keeps ordinary stores
#endif

// Outputs of at least this many bytes are streamed (a fraction of a shared L3).
constexpr std::size_t kStreamMinBytes = std::size_t(8) << 20;

// dst[0:n] = src[0:n]: whole 64-byte lines of dst are streamed, the partial lines at either
// end stored normally. dst must be aligned to sizeof(T). Call stream_fence() before the
// data is read by another thread.
template <typename T>
void stream_copy(T* dst, const T* src, index_t n) {
#if defined(FASTNN_ISA_IS_avx512) || defined(FASTNN_ISA_IS_avx2)
  constexpr index_t kLine = 64 / index_t(sizeof(T));
  const std::uintptr_t misaligned = reinterpret_cast<std::uintptr_t>(dst) % 64;
  const index_t head = std::min<index_t>(n, misaligned ? index_t((64 - misaligned) / sizeof(T)) : 0);
  index_t i = 0;
  for (; i < head; ++i) dst[i] = src[i];
  for (; i + kLine <= n; i += kLine) {
#if defined(FASTNN_ISA_IS_avx512)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), _mm512_loadu_si512(src + i));
#else
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + kLine / 2),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + kLine / 2)));
#endif
  }
  for (; i < n; ++i) dst[i] = src[i];
#else
  std::memcpy(dst, src, size_t(n) * sizeof(T));
#endif
}

// Orders this thread's streamed stores before its later stores (and the end of a parallel
// region), as non-temporal stores are weakly ordered.
inline void stream_fence() {
#if defined(FASTNN_ISA_IS_avx512) || defined(FASTNN_ISA_IS_avx2)
  _mm_sfence();
#endif
}

}  // namespace FASTNN_ISA
}  // namespace fastnn
