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

constexpr index_t kGroup = 64;           // elements per mask word (8 Philox blocks)
constexpr index_t kTaskElements = 16384;  // elements per parallel task (a multiple of kGroup)

std::uint32_t drop_threshold(double rate) {
  return std::uint32_t(rate * 65536.0);  // P(u16 < t) = t / 65536 <= rate; rate < 1 keeps t <= 65535
}

#if defined(FASTNN_ISA_IS_avx512)
// 16 blocks in the 16 lanes of a zmm register; unsigned 16-bit compares give mask bits
// directly, and pdep (fast on every CPU with AVX-512) interleaves them into element order.
constexpr index_t kGroup512 = 128;

inline void mulhilo16(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

// Keep bits of the 128 elements from element `first` (a multiple of 128) into bits[0..1].
inline void keep_bits128(index_t first, std::uint64_t step, std::uint64_t seed, std::uint32_t threshold,
                         std::uint64_t bits[2]) {
  const std::uint64_t block = std::uint64_t(first) / 8;
  const __m512i base_lo = _mm512_set1_epi32(int(std::uint32_t(block)));
  __m512i c0 = _mm512_add_epi32(base_lo, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  const __mmask16 wrapped = _mm512_cmplt_epu32_mask(c0, base_lo);  // the low word wrapped: carry
  __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32(int(std::uint32_t(block >> 32))), wrapped,
                                     _mm512_set1_epi32(int(std::uint32_t(block >> 32))), _mm512_set1_epi32(1));
  __m512i c2 = _mm512_set1_epi32(int(std::uint32_t(step)));
  __m512i c3 = _mm512_set1_epi32(int(std::uint32_t(step >> 32)));
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  const __m512i m0 = _mm512_set1_epi32(int(kPhiloxM0)), m1 = _mm512_set1_epi32(int(kPhiloxM1));
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    __m512i hi0, lo0, hi1, lo1;
    mulhilo16(c0, m0, hi0, lo0);
    mulhilo16(c2, m1, hi1, lo1);
    c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32(int(k0)), 0x96);  // three-way xor
    c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32(int(k1)), 0x96);
    c1 = lo1;
    c3 = lo0;
  }
  // Word w of block b holds elements 8b + 2w + h (h = 16-bit half): its compare mask has bit
  // 2b + h; spread those bit pairs to positions 8b + 2w + h.
  const __m512i thr = _mm512_set1_epi16(short(threshold));
  const __m512i words[4] = {c0, c1, c2, c3};
  bits[0] = bits[1] = 0;
  for (int w = 0; w < 4; ++w) {
    const std::uint32_t m = _mm512_cmpge_epu16_mask(words[w], thr);
    const std::uint64_t spread = 0x0303030303030303ull << (2 * w);
    bits[0] |= _pdep_u64(m & 0xFFFFu, spread);
    bits[1] |= _pdep_u64(m >> 16, spread);
  }
}
#endif

#if defined(FASTNN_ISA_IS_avx2) || defined(FASTNN_ISA_IS_avx512)
// 8 blocks in the 8 lanes of AVX2 registers. 32x32->64-bit products come from
// _mm256_mul_epu32 on the even lanes and on the odd lanes shifted down.
inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// Keep bits of the 64 elements from element `first` (a multiple of 64): bit e = element first + e.
inline std::uint64_t keep_bits64(index_t first, std::uint64_t step, std::uint64_t seed, std::uint32_t threshold) {
  const std::uint64_t block = std::uint64_t(first) / 8;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i sign = _mm256_set1_epi32(INT32_MIN);
  // 64-bit block numbers block + lane: where the low word wraps, carry into the high word.
  const __m256i base_lo = _mm256_set1_epi32(int(std::uint32_t(block)));
  __m256i c0 = _mm256_add_epi32(base_lo, lane);
  const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(base_lo, sign), _mm256_xor_si256(c0, sign));
  __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32(int(std::uint32_t(block >> 32))), wrapped);
  __m256i c2 = _mm256_set1_epi32(int(std::uint32_t(step)));
  __m256i c3 = _mm256_set1_epi32(int(std::uint32_t(step >> 32)));
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  const __m256i m0 = _mm256_set1_epi32(int(kPhiloxM0)), m1 = _mm256_set1_epi32(int(kPhiloxM1));
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    __m256i hi0, lo0, hi1, lo1;
    mulhilo8(c0, m0, hi0, lo0);
    mulhilo8(c2, m1, hi1, lo1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(int(k0)));
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(int(k1)));
    c1 = lo1;
    c3 = lo0;
  }
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

// y[0:64] = x[0:64] * (bit ? scale : 0) for a full group of floats.
inline void apply_group(const float* x, float* y, std::uint64_t bits, float scale) {
  const __m256i select = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 s = _mm256_set1_ps(scale);
  for (int v = 0; v < 8; ++v) {
    const __m256i byte = _mm256_set1_epi32(int((bits >> (8 * v)) & 0xFFu));
    const __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(byte, select), select);
    _mm256_storeu_ps(y + 8 * v, _mm256_mul_ps(_mm256_loadu_ps(x + 8 * v), _mm256_and_ps(_mm256_castsi256_ps(on), s)));
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
  if constexpr (sizeof(T) == 4) {
    if (m == kGroup) {
      apply_group(a.x + e0, a.y + e0, bits, scale);
      return;
    }
  }
  for (index_t e = 0; e < m; ++e) a.y[e0 + e] = a.x[e0 + e] * (((bits >> e) & 1u) ? scale : T(0));
}

template <typename T>
void run(const DropoutArgs<T>& a) {
  const index_t n = a.n;
  const std::uint32_t threshold = drop_threshold(a.rate);
  const T scale = T(1.0 / (1.0 - a.rate));
  const index_t tasks = (n + kTaskElements - 1) / kTaskElements;
#pragma omp parallel for schedule(static) num_threads(a.nthreads) if (a.nthreads > 1)
  for (index_t t = 0; t < tasks; ++t) {
    const index_t end = std::min(n, (t + 1) * kTaskElements);
    for (index_t e0 = t * kTaskElements; e0 < end; e0 += kGroup) {
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
  }
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
