// Dropout with a counter-based mask (Philox4x32-10, Salmon et al., "Parallel Random Numbers:
// As Easy as 1, 2, 3", SC11; constants from the paper). Element i belongs to Philox block
// i / 4 with counter (block lo, block hi, step lo, step hi) and key (seed lo, seed hi), and
// uses that block's word i % 4: the mask is a pure function of (seed, step, i).
#include <algorithm>
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

// kLanes blocks at once in structure-of-arrays form, so each round's lane loops vectorize
// (32x32->64-bit multiplies) on whatever SIMD the translation unit is compiled for.
constexpr int kLanes = 16;
constexpr index_t kBlockElements = 4 * kLanes;  // elements per batch of blocks (a multiple of 8)
constexpr index_t kTaskElements = 16384;        // elements per parallel task

inline void philox_lanes(std::uint64_t first_block, std::uint64_t step, std::uint64_t seed,
                         std::uint32_t out[4][kLanes]) {
  std::uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const std::uint64_t b = first_block + std::uint64_t(l);
    c0[l] = std::uint32_t(b);
    c1[l] = std::uint32_t(b >> 32);
    c2[l] = std::uint32_t(step);
    c3[l] = std::uint32_t(step >> 32);
  }
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    for (int l = 0; l < kLanes; ++l) philox_round(c0[l], c1[l], c2[l], c3[l], k0, k1);
  }
  for (int l = 0; l < kLanes; ++l) {
    out[0][l] = c0[l];
    out[1][l] = c1[l];
    out[2][l] = c2[l];
    out[3][l] = c3[l];
  }
}

std::uint32_t drop_threshold(double rate) {
  const double t = rate * 4294967296.0;  // P(word < t) = rate
  return t >= 4294967295.0 ? 0xFFFFFFFFu : std::uint32_t(t);
}

// keep[e] for the kBlockElements elements starting at element `first` (a multiple of 4).
inline void keep_flags(index_t first, std::uint64_t step, std::uint64_t seed, std::uint32_t threshold,
                       std::uint8_t keep[kBlockElements]) {
  std::uint32_t words[4][kLanes];
  philox_lanes(std::uint64_t(first) / 4, step, seed, words);
  for (int l = 0; l < kLanes; ++l)
    for (int w = 0; w < 4; ++w) keep[4 * l + w] = words[w][l] >= threshold;
}

template <typename T>
void run(const DropoutArgs<T>& a) {
  const index_t n = a.n;
  const std::uint32_t threshold = drop_threshold(a.rate);
  const T scale = T(1.0 / (1.0 - a.rate));
  const index_t tasks = (n + kTaskElements - 1) / kTaskElements;
#pragma omp parallel for schedule(static) num_threads(a.nthreads) if (a.nthreads > 1)
  for (index_t t = 0; t < tasks; ++t) {
    alignas(64) std::uint8_t keep[kBlockElements];
    const index_t end = std::min(n, (t + 1) * kTaskElements);
    for (index_t e0 = t * kTaskElements; e0 < end; e0 += kBlockElements) {
      const index_t m = std::min(kBlockElements, end - e0);
      if (a.mask_in) {
        for (index_t e = 0; e < m; ++e) keep[e] = (a.mask_in[(e0 + e) >> 3] >> ((e0 + e) & 7)) & 1u;
      } else {
        keep_flags(e0, a.step, a.seed, threshold, keep);
      }
      if (a.mask_bits) {  // e0 is a multiple of 8: whole bytes
        for (index_t byte = 0; byte < (m + 7) / 8; ++byte) {
          std::uint8_t bits = 0;
          for (int b = 0; b < 8 && byte * 8 + b < m; ++b) bits |= std::uint8_t(keep[byte * 8 + b] << b);
          a.mask_bits[(e0 >> 3) + byte] = bits;
        }
      }
      if (a.x) {
        // x * 0 for dropped elements (not a select), so a NaN or Inf input still shows.
        for (index_t e = 0; e < m; ++e) a.y[e0 + e] = a.x[e0 + e] * (keep[e] ? scale : T(0));
      }
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
