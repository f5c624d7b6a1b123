// A C interface to the thread setting for threadpoolctl's fastnn controller
// (python/fastnn/_threadpool.py). threadpoolctl finds this library among the loaded ones by
// its file name and these exported symbols, then calls them through ctypes on the thread
// whose limit it sets: the setting they change is the calling thread's, like OpenMP's own
// omp_set_num_threads.
#include "threading.hpp"

#define FASTNN_EXPORT extern "C" __attribute__((visibility("default")))

// Threads fastnn kernels called from this thread may use (its own setting, else the
// process-wide one, else OpenMP's default).
FASTNN_EXPORT int fastnn_threadpool_get_num_threads() { return fastnn::max_threads(); }

// This thread's own setting, 0 when it has none.
FASTNN_EXPORT int fastnn_threadpool_get_calling_thread_num_threads() { return fastnn::calling_thread_threads(); }

// n >= 1: this thread's setting; 0: none (the process-wide setting applies again).
FASTNN_EXPORT void fastnn_threadpool_set_calling_thread_num_threads(int n) {
  fastnn::set_calling_thread_threads(n);
}
