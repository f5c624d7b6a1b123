// The active kernel table: chosen once at import from the CPU (or FASTNN_SIMD).
#pragma once
#include <string>
#include <vector>

#include "kernels.hpp"

namespace fastnn {

const KernelTable& kernels();
// Paths this build has AND this CPU can run, best last ("generic", "avx2", "avx512").
std::vector<std::string> available_paths();
// Paths compiled into this build.
std::vector<std::string> compiled_paths();
// "auto" picks the best available path. Throws std::invalid_argument for an unknown name
// and std::runtime_error for a path this build or CPU cannot run.
void select_path(const std::string& name);
// Reads FASTNN_SIMD (unset or empty means "auto") and selects; called once at import.
void select_path_from_environment();

}  // namespace fastnn
