// fastnn._core: the compiled module. Its functions are bound by family, one file each:
// ops.cpp (the kernels fastnn.ops calls), training.cpp (the training engine), config.cpp
// (build facts, SIMD path, threads) and preprocessing.cpp (scaler statistics).
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "marshal.hpp"
#include "dispatch.hpp"
#include "threading.hpp"

namespace fastnn {

void throw_invalid(const std::string& message) { throw std::invalid_argument(message); }

void bind_ops(py::module_& m);            // ops.cpp
void bind_config(py::module_& m);         // config.cpp
void bind_preprocessing(py::module_& m);  // preprocessing.cpp
void bind_training(py::module_& m);       // training.cpp
void bind_training_types(py::module_& m); // training.cpp: Schedule, OptimizerHyper

#ifdef FASTNN_SANITIZER_CANARIES
// testing/canaries.cpp: deliberate bugs that prove a sanitizer is wired in (RELIABILITY M2).
int canary_heap_oob();
int canary_int_overflow();
void canary_leak();
long canary_data_race();
#endif

}  // namespace fastnn

PYBIND11_MODULE(_core, m) {
  using namespace fastnn;
  m.doc() = "fastnn's compiled kernels (private; use fastnn.ops)";
  install_fork_guard();
  // Raises (ValueError or RuntimeError) at import for a FASTNN_SIMD this CPU cannot run.
  select_path_from_environment();
  bind_config(m);
  bind_training_types(m);
  bind_ops(m);
  bind_preprocessing(m);
  bind_training(m);
#ifdef FASTNN_SANITIZER_CANARIES
  // Deliberate bugs (sanitizer builds only): each must be reported by the sanitizer in use.
  m.def("_canary_heap_oob", &canary_heap_oob, "Reads one past the end of a heap block.");
  m.def("_canary_int_overflow", &canary_int_overflow, "Computes INT_MAX + 1.");
  m.def("_canary_leak", &canary_leak, "Leaks 10 blocks of 4000 bytes.");
  m.def("_canary_data_race", &canary_data_race, "Two threads write one plain long.");
#endif
}
