// Dropout with a counter-based mask (Philox4x32-10, Salmon et al., "Parallel Random Numbers:
// As Easy as 1, 2, 3", SC11; constants from the paper). Each Philox block (counter = block
// number as 64 bits, step as 64 bits; key = seed) yields 4 x 32 random bits, used as 8
// 16-bit uniforms: element e takes the (e % 2)-th 16-bit half of word (e / 2) % 4 of block
// e / 8, and is dropped when it is below floor(rate * 65536). The mask is a pure function
// of (seed, step, e); the drop probability is rate rounded down to a multiple of 2^-16.
#include <algorithm>
#include <climits>
#include <cstring>

#include "isa_kernels.hpp"

namespace fastnn {
namespace FASTNN_ISA {
namespace {

constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

// One Philox round on a counter (c0, c1, c2, c3) with round key (k0, k1).
inline void philox_round(std::uint32_t& c0, std::uint32_t& c1, std::uint32_t& c2, std::uint32_t& c3, std::uint32_t k0,
                         std::uint32_t k1) {
  const std::uint64_t p0 = std::uint64_t(kPhiloxM0) * c0;
  const std::uint64_t p1 = std::uint64_t(kPhiloxM1) * c2;
  const std::uint32_t n0 = std::uint32_t(p1 >> 32) ^ c1 ^ k0;
  const std::uint32_t n2 = std::uint32_t(p0 >> 32) ^ c3 ^ k1;
  c1 = std::uint32_t(p1);
  c3 = std::uint32_t(p0);
  c0 = n0;
  c2 = n2;
}

constexpr index_t kGroup = kDropoutGroup;  // elements per mask word (8 Philox blocks)
constexpr index_t kTaskElements = 16384;  // elements per parallel task (a multiple of kGroup)

std::uint32_t drop_threshold(double rate) {
  return std::uint32_t(rate * 65536.0);  // P(u16 < t) = t / 65536 <= rate; rate < 1 keeps t <= 65535
}

#if defined(FASTNN_ISA_IS_avx512)
// 16 blocks in two zmm registers, one block per 64-bit lane with its 32-bit counter word in
// the low half: _mm512_mul_epu32 then gives the full 64-bit product in place, its low half
// is the next c1/c3 and a 64-bit shift brings the high half down. The high halves of the
// lanes carry garbage that nothing reads (mul_epu32 ignores them, the output takes low
// halves only). Register `a` holds blocks 0,1, 4,5, 8,9, 12,13 and `b` blocks 2,3, 6,7,
// 10,11, 14,15, so one shuffle_ps per word puts blocks 0..15 in the 16 dword lanes.
constexpr index_t kGroup512 = 128;

struct PhiloxLanes512 {
  __m512i c0, c1, c2, c3;
};

inline PhiloxLanes512 philox_start512(std::uint64_t block, const __m512i lane_blocks, std::uint64_t step) {
  const __m512i b = _mm512_add_epi64(_mm512_set1_epi64(std::int64_t(block)), lane_blocks);
  return {b, _mm512_srli_epi64(b, 32), _mm512_set1_epi64(std::int64_t(step)),
          _mm512_set1_epi64(std::int64_t(step >> 32))};
}

inline void philox_round512(PhiloxLanes512& s, __m512i m0, __m512i m1, __m512i k0, __m512i k1) {
  const __m512i p0 = _mm512_mul_epu32(s.c0, m0);
  const __m512i p1 = _mm512_mul_epu32(s.c2, m1);
  s.c0 = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p1, 32), s.c1, k0, 0x96);  // three-way xor
  s.c2 = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p0, 32), s.c3, k1, 0x96);
  s.c1 = p1;
  s.c3 = p0;
}

// The low dwords of a (blocks 4k, 4k+1 in 128-bit lane k) and b (blocks 4k+2, 4k+3): blocks
// 0..15 in dword order.
inline __m512i low_dwords512(__m512i a, __m512i b) {
  return _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), 0x88));
}

// Keep bits of the 128 elements from element `first` (a multiple of 128) into bits[0..1].
inline void keep_bits128(index_t first, std::uint64_t step, std::uint64_t seed, std::uint32_t threshold,
                         std::uint64_t bits[2]) {
  const std::uint64_t block = std::uint64_t(first) / 8;
  PhiloxLanes512 a = philox_start512(block, _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13), step);
  PhiloxLanes512 b = philox_start512(block, _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15), step);
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    const __m512i key0 = _mm512_set1_epi32(int(k0)), key1 = _mm512_set1_epi32(int(k1));
    philox_round512(a, m0, m1, key0, key1);
    philox_round512(b, m0, m1, key0, key1);
  }
  // Word w of block b holds elements 8b + 2w + h (h = 16-bit half): its compare mask has bit
  // 2b + h; spread those bit pairs to positions 8b + 2w + h.
  const __m512i thr = _mm512_set1_epi16(short(threshold));
  const __m512i words[4] = {low_dwords512(a.c0, b.c0), low_dwords512(a.c1, b.c1), low_dwords512(a.c2, b.c2),
                            low_dwords512(a.c3, b.c3)};
  bits[0] = bits[1] = 0;
  for (int w = 0; w < 4; ++w) {
    const std::uint32_t m = _mm512_cmpge_epu16_mask(words[w], thr);
    const std::uint64_t spread = 0x0303030303030303ull << (2 * w);
    bits[0] |= _pdep_u64(m & 0xFFFFu, spread);
    bits[1] |= _pdep_u64(m >> 16, spread);
  }
}

// y[0:64] = x[0:64] * (bit ? scale : 0): the mask bits select scale or +0 directly.
inline void apply_group512(const float* x, float* y, std::uint64_t bits, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int v = 0; v < 4; ++v) {
    const __m512 factor = _mm512_maskz_mov_ps(__mmask16(bits >> (16 * v)), s);
    _mm512_storeu_ps(y + 16 * v, _mm512_mul_ps(_mm512_loadu_ps(x + 16 * v), factor));
  }
}

inline void apply_group512(const double* x, double* y, std::uint64_t bits, double scale) {
  const __m512d s = _mm512_set1_pd(scale);
  for (int v = 0; v < 8; ++v) {
    const __m512d factor = _mm512_maskz_mov_pd(__mmask8(bits >> (8 * v)), s);
    _mm512_storeu_pd(y + 8 * v, _mm512_mul_pd(_mm512_loadu_pd(x + 8 * v), factor));
  }
}
#endif

#if defined(FASTNN_ISA_IS_avx2) || defined(FASTNN_ISA_IS_avx512)
// 8 blocks in two ymm registers, one block per 64-bit lane (as the AVX-512 code above):
// `a` holds blocks 0,1, 4,5 and `b` blocks 2,3, 6,7, so one shuffle_ps per word puts blocks
// 0..7 in the 8 dword lanes.
struct PhiloxLanes256 {
  __m256i c0, c1, c2, c3;
};

inline PhiloxLanes256 philox_start256(std::uint64_t block, const __m256i lane_blocks, std::uint64_t step) {
  const __m256i b = _mm256_add_epi64(_mm256_set1_epi64x(std::int64_t(block)), lane_blocks);
  return {b, _mm256_srli_epi64(b, 32), _mm256_set1_epi64x(std::int64_t(step)),
          _mm256_set1_epi64x(std::int64_t(step >> 32))};
}

inline void philox_round256(PhiloxLanes256& s, __m256i m0, __m256i m1, __m256i k0, __m256i k1) {
  const __m256i p0 = _mm256_mul_epu32(s.c0, m0);
  const __m256i p1 = _mm256_mul_epu32(s.c2, m1);
  s.c0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), s.c1), k0);
  s.c2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), s.c3), k1);
  s.c1 = p1;
  s.c3 = p0;
}

inline __m256i low_dwords256(__m256i a, __m256i b) {
  return _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), 0x88));
}

// Keep bits of the 64 elements from element `first` (a multiple of 64): bit e = element first + e.
inline std::uint64_t keep_bits64(index_t first, std::uint64_t step, std::uint64_t seed, std::uint32_t threshold) {
  const std::uint64_t block = std::uint64_t(first) / 8;
  PhiloxLanes256 a = philox_start256(block, _mm256_setr_epi64x(0, 1, 4, 5), step);
  PhiloxLanes256 b = philox_start256(block, _mm256_setr_epi64x(2, 3, 6, 7), step);
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    const __m256i key0 = _mm256_set1_epi32(int(k0)), key1 = _mm256_set1_epi32(int(k1));
    philox_round256(a, m0, m1, key0, key1);
    philox_round256(b, m0, m1, key0, key1);
  }
  const __m256i c0 = low_dwords256(a.c0, b.c0), c1 = low_dwords256(a.c1, b.c1);
  const __m256i c2 = low_dwords256(a.c2, b.c2), c3 = low_dwords256(a.c3, b.c3);
  // Transpose (word, block) into (block, word) order: e[v] holds words of blocks v, v + 4
  // arranged so that, read as 16-bit lanes, they are elements in order (see below).
  const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
  const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  // blocks 0,1 | 2,3 | 4,5 | 6,7: 16 elements each
  const __m256i e[4] = {_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u2, u3, 0x20),
                        _mm256_permute2x128_si256(u0, u1, 0x31), _mm256_permute2x128_si256(u2, u3, 0x31)};
  const __m256i thr = _mm256_set1_epi16(short(threshold));
  std::uint64_t bits = 0;
  for (int v = 0; v < 4; v += 2) {  // keep when u16 >= threshold (unsigned: max(u, thr) == u)
    const __m256i keep_a = _mm256_cmpeq_epi16(_mm256_max_epu16(e[v], thr), e[v]);
    const __m256i keep_b = _mm256_cmpeq_epi16(_mm256_max_epu16(e[v + 1], thr), e[v + 1]);
    // packs works per 128-bit lane: restore element order with a 64-bit permute
    const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packs_epi16(keep_a, keep_b), 0xD8);
    bits |= std::uint64_t(std::uint32_t(_mm256_movemask_epi8(bytes))) << (16 * v);
  }
  return bits;
}

// y[0:64] = x[0:64] * (bit ? scale : 0) for a full group of floats: a variable shift moves
// each lane's mask bit to its sign, which blendv reads.
inline void apply_group(const float* x, float* y, std::uint64_t bits, float scale) {
  const __m256 s = _mm256_set1_ps(scale), zero = _mm256_setzero_ps();
  for (int half = 0; half < 2; ++half) {
    const __m256i word = _mm256_set1_epi32(int(std::uint32_t(bits >> (32 * half))));
    for (int v = 0; v < 4; ++v) {
      const __m256i to_sign = _mm256_setr_epi32(31 - 8 * v, 30 - 8 * v, 29 - 8 * v, 28 - 8 * v, 27 - 8 * v,
                                                26 - 8 * v, 25 - 8 * v, 24 - 8 * v);
      const __m256 factor = _mm256_blendv_ps(zero, s, _mm256_castsi256_ps(_mm256_sllv_epi32(word, to_sign)));
      const index_t e = 32 * half + 8 * v;
      _mm256_storeu_ps(y + e, _mm256_mul_ps(_mm256_loadu_ps(x + e), factor));
    }
  }
}
#else
inline std::uint64_t keep_bits64(index_t first, std::uint64_t step, std::uint64_t seed, std::uint32_t threshold) {
  std::uint64_t bits = 0;
  for (int b = 0; b < 8; ++b) {
    const std::uint64_t block = std::uint64_t(first) / 8 + std::uint64_t(b);
    std::uint32_t c0 = std::uint32_t(block), c1 = std::uint32_t(block >> 32);
    std::uint32_t c2 = std::uint32_t(step), c3 = std::uint32_t(step >> 32);
    std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        k0 += kPhiloxW0;
        k1 += kPhiloxW1;
      }
      philox_round(c0, c1, c2, c3, k0, k1);
    }
    const std::uint32_t words[4] = {c0, c1, c2, c3};
    for (int h = 0; h < 8; ++h) {
      const std::uint32_t u = (words[h / 2] >> (16 * (h % 2))) & 0xFFFFu;
      bits |= std::uint64_t(u >= threshold) << (8 * b + h);
    }
  }
  return bits;
}

inline void apply_group(const float* x, float* y, std::uint64_t bits, float scale) {
  for (int e = 0; e < 64; ++e) y[e] = x[e] * (((bits >> e) & 1u) ? scale : 0.0f);
}
#endif

// Stores the m (<= 64) mask bits of elements [e0, e0 + m) and applies them: y = x * 0 for
// dropped elements (not a select, so a NaN or Inf input still shows), x * scale for kept ones.
template <typename T>
inline void apply_bits(const DropoutArgs<T>& a, index_t e0, index_t m, std::uint64_t bits, T scale) {
  if (a.mask_bits)
    for (index_t b = 0; b < (m + 7) / 8; ++b) a.mask_bits[e0 / 8 + b] = std::uint8_t(bits >> (8 * b));
  if (!a.x) return;
#if defined(FASTNN_ISA_IS_avx512)
  if (m == kGroup) {
    apply_group512(a.x + e0, a.y + e0, bits, scale);
    return;
  }
#else
  if constexpr (sizeof(T) == 4) {
    if (m == kGroup) {
      apply_group(a.x + e0, a.y + e0, bits, scale);
      return;
    }
  }
#endif
  for (index_t e = 0; e < m; ++e) a.y[e0 + e] = a.x[e0 + e] * (((bits >> e) & 1u) ? scale : T(0));
}

template <typename T>
void run(const DropoutArgs<T>& a) {
  const index_t n = a.n, first = a.first;  // first % kGroup == 0: whole mask words, whole Philox blocks
  const std::uint32_t threshold = drop_threshold(a.rate);
  const T scale = T(1.0 / (1.0 - a.rate));
  const index_t tasks = (n - first + kTaskElements - 1) / kTaskElements;
  parallel_for(tasks, a.nthreads, [&](index_t t) {
    const index_t begin = first + t * kTaskElements, end = std::min(n, begin + kTaskElements);
    for (index_t e0 = begin; e0 < end; e0 += kGroup) {
      const index_t m = std::min(kGroup, end - e0);
#if defined(FASTNN_ISA_IS_avx512)
      if (!a.mask_in && e0 % kGroup512 == 0 && end - e0 >= kGroup512) {  // two groups at once
        std::uint64_t pair[2];
        keep_bits128(e0, a.step, a.seed, threshold, pair);
        for (int g = 0; g < 2; ++g) apply_bits(a, e0 + g * kGroup, kGroup, pair[g], scale);
        e0 += kGroup;
        continue;
      }
#endif
      std::uint64_t bits = 0;
      if (a.mask_in) {
        for (index_t b = 0; b < (m + 7) / 8; ++b) bits |= std::uint64_t(a.mask_in[e0 / 8 + b]) << (8 * b);
      } else {
        bits = keep_bits64(e0, a.step, a.seed, threshold);
      }
      if (m < kGroup) bits &= (std::uint64_t(1) << m) - 1u;  // no stray bits past the last element
      apply_bits(a, e0, m, bits, scale);
    }
  });
}

}  // namespace

void philox4x32_10(const std::uint32_t counter[4], const std::uint32_t key[2], std::uint32_t out[4]) {
  std::uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
  std::uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    philox_round(c[0], c[1], c[2], c[3], k0, k1);
  }
  std::memcpy(out, c, sizeof(c));
}

void dropout_forward(const DropoutArgs<float>& args) { run(args); }
void dropout_forward(const DropoutArgs<double>& args) { run(args); }
// Backward is the same masked scaling of dy, from the stored mask or the regenerated one.
void dropout_backward(const DropoutArgs<float>& args) { run(args); }
void dropout_backward(const DropoutArgs<double>& args) { run(args); }

}  // namespace FASTNN_ISA
}  // namespace fastnn
