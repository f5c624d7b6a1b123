// Per-thread scratch memory that grows and is then reused, so steady-state kernel calls
// allocate nothing. Compiled without ISA flags (not part of the per-path kernel copies).
#pragma once
#include <cstddef>

namespace fastnn {

enum class ScratchSlot : int { gemm_packed_b = 0, gemm_packed_a = 1, reduction = 2, reduction_result = 3, reduction_result2 = 4, count = 5 };

// At least `bytes` bytes, 64-byte aligned, owned by the calling thread; valid until the
// next call for the same slot on the same thread. Throws std::bad_alloc on failure.
void* thread_scratch(ScratchSlot slot, std::size_t bytes);

}  // namespace fastnn
