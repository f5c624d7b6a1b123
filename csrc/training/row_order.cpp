// Keyed row orders without per-row storage (row_order.hpp).
#include "row_order.hpp"

#include <algorithm>
#include <string>

namespace fastnn {

namespace {

// SplitMix64's finalizer (Steele, Lea and Flood, OOPSLA 2014): a 64-bit bijection in which
// every input bit affects every output bit. The Feistel round function.
inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

KeyedPermutation::KeyedPermutation(std::uint64_t key, index_t n) : n_(n) {
  int bits = 0;
  while (bits < 63 && (index_t(1) << bits) < n) ++bits;
  low_bits_ = (bits + 1) / 2;
  low_mask_ = (std::uint64_t(1) << low_bits_) - 1;
  high_mask_ = (std::uint64_t(1) << (bits - low_bits_)) - 1;
  std::uint64_t state = key;
  for (auto& k : round_key_) k = mix64(state += 0x9E3779B97F4A7C15ULL);  // SplitMix64's sequence
}

// A Feistel network on the two halves of x: each round XORs one half with a keyed function
// of the other, which can be undone, so the whole is a bijection of [0, 2^bits) even when
// the halves differ in width by a bit.
std::uint64_t KeyedPermutation::encrypt(std::uint64_t x) const {
  std::uint64_t low = x & low_mask_, high = x >> low_bits_;
  for (int r = 0; r < kRounds; r += 2) {
    high ^= mix64(low ^ round_key_[r]) & high_mask_;
    low ^= mix64(high ^ round_key_[r + 1]) & low_mask_;
  }
  return (high << low_bits_) | low;
}

// Cycle walking: the domain is below 2n, so on average fewer than two encryptions land in
// [0, n), and the walk ends because i's own cycle returns into [0, n).
index_t KeyedPermutation::operator()(index_t i) const {
  std::uint64_t y = encrypt(std::uint64_t(i));
  while (y >= std::uint64_t(n_)) y = encrypt(y);
  return index_t(y);
}

RowSplit::RowSplit(index_t n) : n_(n) {}

RowSplit::RowSplit(index_t n, std::uint64_t key, std::vector<index_t> held, std::function<index_t(index_t)> class_of)
    : n_(n), shuffled_(true), perm_(key, n), end_(held.size(), 0), class_of_(std::move(class_of)) {
  std::vector<index_t> left = held;
  index_t remaining = 0;
  for (index_t h : held) {
    if (h < 0) throw_invalid("a held-out count is negative");
    remaining += h;
  }
  held_total_ = remaining;
  if (remaining > n) throw_invalid("more rows held out than there are");
  const index_t classes = index_t(held.size());
  if (classes == 1) {  // one class (regression): the first held[0] positions, no scan
    end_[0] = remaining;
  } else {
    for (index_t position = 0; remaining > 0; ++position) {
      if (position == n) throw_invalid("a class has fewer rows than it should hold out");
      const index_t c = class_of_(row_at(position));
      if (c < 0 || c >= classes) throw_invalid("a row's class is out of range");
      if (left[size_t(c)] > 0) {
        --left[size_t(c)];
        --remaining;
        end_[size_t(c)] = position + 1;
      }
    }
  }
  all_held_end_ = end_.empty() ? 0 : *std::min_element(end_.begin(), end_.end());
  mixed_end_ = end_.empty() ? 0 : *std::max_element(end_.begin(), end_.end());
}

bool RowSplit::held_at(index_t position) const {
  if (position < all_held_end_) return true;
  if (position >= mixed_end_) return false;
  return position < end_[size_t(class_of_(row_at(position)))];
}

index_t RowSplit::held_out_rows(index_t position, index_t count, std::int64_t* rows, index_t* written) const {
  index_t w = 0;
  for (; position < mixed_end_ && w < count; ++position)
    if (held_at(position)) rows[w++] = row_at(position);
  *written = w;
  return position;
}

RowCursor::RowCursor(const RowSplit& split, std::uint64_t key)
    : split_(&split), epoch_(key, split.rows() - split.training_begin()) {}

void RowCursor::next(index_t count, std::int64_t* rows) {
  if (count < 0 || count > size() - emitted_) throw_invalid("the epoch has fewer rows left than asked for");
  emitted_ += count;
  if (!split_) {
    std::copy(order_ + cursor_, order_ + cursor_ + count, rows);
    cursor_ += count;
    return;
  }
  const index_t begin = split_->training_begin(), mixed_end = split_->mixed_end();
  for (index_t w = 0; w < count; ++cursor_) {
    const index_t position = begin + epoch_(cursor_);
    if (position < mixed_end && split_->held_at(position)) continue;
    rows[w++] = split_->row_at(position);
  }
}

}  // namespace fastnn
