// The estimators' row order, generated batch by batch so that nothing of size N is stored:
// an int64 permutation of N rows would cost 8 bytes per row, an eighth of a 16-feature
// float32 X (fastnn issue 14, item 7).
//
//   KeyedPermutation  a keyed pseudo-random bijection of [0, n): a Feistel network on the
//                     smallest power-of-two domain that holds n, cycle-walked back into
//                     [0, n) (Black & Rogaway, "Ciphers with arbitrary finite domains",
//                     CT-RSA 2002). O(1) memory, a few multiplies per row.
//   RowSplit          which rows train and which are held out for validation, fixed for a
//                     fit: of each class c, the first held[c] rows in the order of a keyed
//                     permutation of [0, n) (one class for regression). Per class it keeps
//                     only the position of its last held-out row.
//   RowCursor         one epoch's training rows in order: an explicit permutation (what
//                     Sequential.train_epoch builds) or a keyed permutation of the split's
//                     training positions, read batch by batch.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "common.hpp"

namespace fastnn {

class KeyedPermutation {
 public:
  KeyedPermutation() = default;
  KeyedPermutation(std::uint64_t key, index_t n);
  index_t size() const { return n_; }
  // The image of i, for 0 <= i < n.
  index_t operator()(index_t i) const;

 private:
  std::uint64_t encrypt(std::uint64_t x) const;
  static constexpr int kRounds = 6;
  index_t n_ = 0;
  int low_bits_ = 0;
  std::uint64_t low_mask_ = 0, high_mask_ = 0;
  std::uint64_t round_key_[kRounds] = {};
};

class RowSplit {
 public:
  // Every row trains; none is held out.
  explicit RowSplit(index_t n);
  // Of each class c (class_of(row) in [0, held.size())), the first held[c] rows in the
  // order of the permutation keyed by `key` are held out. Throws std::invalid_argument when
  // a class has fewer rows than it should hold out, or class_of leaves the range.
  RowSplit(index_t n, std::uint64_t key, std::vector<index_t> held, std::function<index_t(index_t)> class_of);

  index_t rows() const { return n_; }
  index_t held_out() const { return held_total_; }
  index_t training() const { return n_ - held_total_; }
  // The row at a position of the split's permutation, and whether it is held out.
  index_t row_at(index_t position) const { return shuffled_ ? perm_(position) : position; }
  bool held_at(index_t position) const;
  // Positions below this hold only held-out rows; at or above `mixed_end` only training rows.
  index_t training_begin() const { return all_held_end_; }
  index_t mixed_end() const { return mixed_end_; }
  // Writes up to `count` held-out rows, in position order, starting the search at
  // `position`; returns the position after the last one written (mixed_end when done).
  index_t held_out_rows(index_t position, index_t count, std::int64_t* rows, index_t* written) const;

 private:
  index_t n_ = 0, held_total_ = 0, all_held_end_ = 0, mixed_end_ = 0;
  bool shuffled_ = false;
  KeyedPermutation perm_;
  std::vector<index_t> end_;  // per class: the position after its last held-out row
  std::function<index_t(index_t)> class_of_;
};

// One epoch's training rows in order, read batch by batch (next() continues where the last
// call ended).
class RowCursor {
 public:
  // An explicit order: a permutation of [0, n).
  RowCursor(const std::int64_t* order, index_t n) : order_(order), n_(n) {}
  // The split's training rows, in the order keyed by `key`.
  RowCursor(const RowSplit& split, std::uint64_t key);
  index_t size() const { return split_ ? split_->training() : n_; }
  // Writes the next `count` rows; throws std::invalid_argument past the end of the epoch.
  void next(index_t count, std::int64_t* rows);

 private:
  const std::int64_t* order_ = nullptr;
  const RowSplit* split_ = nullptr;
  KeyedPermutation epoch_;  // over the split's positions from training_begin()
  index_t n_ = 0;
  index_t cursor_ = 0;      // the next position of epoch_ (or of order_)
  index_t emitted_ = 0;     // rows written so far
};

}  // namespace fastnn
