#include "threading.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastnn {
namespace {

std::atomic<int> g_threads{0};
thread_local int t_threads = 0;
// Set in a forked child when the OpenMP pool could not be released before the fork:
// libgomp's pool is not fork-safe (GCC bug 60035), so the child then runs serially.
std::atomic<bool> g_serial_after_fork{false};
std::atomic<bool> g_pause_failed{false};

void before_fork() {
#ifdef FASTNN_HAVE_OMP_PAUSE
  // OpenMP 5.0: release the thread pool so the child starts clean (OpenBLAS PR #4080).
  g_pause_failed.store(omp_pause_resource_all(omp_pause_hard) != 0);
#else
  g_pause_failed.store(true);
#endif
}

void in_child_after_fork() {
  if (g_pause_failed.load()) g_serial_after_fork.store(true);
}

}  // namespace

int max_threads() {
#ifdef _OPENMP
  if (g_serial_after_fork.load(std::memory_order_relaxed)) return 1;
  if (t_threads > 0) return t_threads;
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : std::max(1, omp_get_max_threads());
#else
  return 1;  // built without OpenMP: the setting is kept (and restored) but every kernel runs serially
#endif
}

void set_max_threads(int n) { g_threads.store(n < 0 ? 0 : n); }

int explicit_threads() { return g_threads.load(); }

void set_calling_thread_threads(int n) { t_threads = n < 0 ? 0 : n; }

int calling_thread_threads() { return t_threads; }

int threads_for(double work, double min_per_thread, int cap) {
  const int limit = cap > 0 ? std::min(cap, max_threads()) : max_threads();
  if (limit <= 1 || !(work > 0)) return 1;
  const double useful = work / min_per_thread;
  if (useful < 2.0) return 1;
  return useful >= double(limit) ? limit : int(useful);
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

const char* fork_guard_mode() {
#ifdef FASTNN_HAVE_OMP_PAUSE
  return g_pause_failed.load() ? "serial-after-fork" : "omp_pause_resource_all";
#elif defined(_OPENMP)
  return "serial-after-fork";
#else
  return "not needed (no OpenMP)";
#endif
}

void install_fork_guard() {
  static std::atomic<bool> installed{false};
  if (!installed.exchange(true)) pthread_atfork(before_fork, nullptr, in_child_after_fork);
}

}  // namespace fastnn
