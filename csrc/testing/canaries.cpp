// Deliberate bugs that prove a sanitizer is really wired in (RELIABILITY M2, after PyTorch's
// .ci/pytorch/test.sh: "expected to crash; if they don't, ASAN/UBSAN is misconfigured").
// Compiled into _core only with -DFASTNN_SANITIZER_CANARIES=ON; never in a release wheel.
// tests/test_sanitizer_canaries.py runs each one in a subprocess and expects the report.
//
// Every canary goes through a volatile global: at -O3 the compiler may fold a constant
// overflow, drop a dead load, or elide a `new` whose result is never observed (C++14 allows
// that; it happened to the first leak canary in RELIABILITY §8.3).
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

namespace fastnn {
namespace {

constexpr std::size_t kOobElements = 10;
constexpr std::size_t kLeakBlocks = 10;
constexpr std::size_t kLeakBytes = 4000;

int* volatile g_heap_block = nullptr;
volatile int g_int_max = std::numeric_limits<int>::max();
char* volatile g_leaked = nullptr;
volatile long g_racy_counter = 0;

void race_body() {
  for (int i = 0; i < 1000; ++i) g_racy_counter = g_racy_counter + 1;  // unsynchronised on purpose
}

}  // namespace

// One-past-the-end read of a 10-int heap block: ASan "heap-buffer-overflow",
// memcheck "Invalid read of size 4".
int canary_heap_oob() {
  g_heap_block = new int[kOobElements]();
  const int value = g_heap_block[kOobElements];
  delete[] g_heap_block;
  g_heap_block = nullptr;
  return value;
}

// INT_MAX + 1 on a value read at run time: UBSan "runtime error: signed integer overflow".
int canary_int_overflow() {
  const int x = g_int_max;
  return x + 1;
}

// 10 blocks of 4000 bytes whose last pointer is overwritten: LeakSanitizer
// "detected memory leaks" (40000 bytes in 10 allocations), memcheck "definitely lost".
// malloc, not new: with clang's runtime (fuzz mode) operator new is libstdc++'s, built
// without frame pointers, and LSan's fast unwinder then drops this frame from the stack.
void canary_leak() {
  for (std::size_t i = 0; i < kLeakBlocks; ++i) {
    g_leaked = static_cast<char*>(std::malloc(kLeakBytes));
    if (g_leaked) std::memset(g_leaked, int(i), kLeakBytes);
  }
  g_leaked = nullptr;
}

// Two threads increment one plain long with no synchronisation:
// ThreadSanitizer "data race".
long canary_data_race() {
  std::thread a(race_body), b(race_body);
  a.join();
  b.join();
  return g_racy_counter;
}

}  // namespace fastnn
