// The process-wide thread setting and the choice of thread count by work size.
#pragma once

namespace fastnn {

// The fastnn setting if one was made (process-wide, seen by every Python thread), else
// OpenMP's default for the calling thread (honours OMP_NUM_THREADS and threadpoolctl).
int max_threads();
// n >= 1 sets the process-wide count; n == 0 returns to OpenMP's default.
void set_max_threads(int n);
// The explicit setting, 0 when none.
int explicit_threads();
// A setting for the calling OS thread only (0: none), checked before the process-wide one:
// an estimator's num_threads, so concurrent fits in different Python threads cannot undo
// each other's setting.
void set_calling_thread_threads(int n);
int calling_thread_threads();

// Threads worth waking for `work` units when each thread needs at least `min_per_thread`
// units to pay for its wake-up, capped at `cap` (or max_threads() when cap <= 0).
// Results never depend on it: every kernel's arithmetic is independent of the thread count.
int threads_for(double work, double min_per_thread, int cap = 0);

bool openmp_enabled();
// "pause" (omp_pause_resource_all before fork) or "serial-after-fork" (the fallback).
const char* fork_guard_mode();
void install_fork_guard();

}  // namespace fastnn
