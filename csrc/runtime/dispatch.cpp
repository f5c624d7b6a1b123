#include "dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "cpu.hpp"

namespace fastnn {
namespace {

bool cpu_runs(const std::string& name);

// Each path's table is filled only when the CPU can run that path: fill_kernel_table is
// itself compiled with the path's flags (the compiler may use its wide registers to write
// the struct), so calling the AVX-512 one on an AVX2 CPU would be an illegal instruction.
struct Tables {
  KernelTable generic_table, avx2_table, avx512_table;
  Tables() {
    generic::fill_kernel_table(generic_table);
#ifdef FASTNN_HAVE_avx2
    if (cpu_runs("avx2")) avx2::fill_kernel_table(avx2_table);
#endif
#ifdef FASTNN_HAVE_avx512
    if (cpu_runs("avx512")) avx512::fill_kernel_table(avx512_table);
#endif
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

std::atomic<const KernelTable*> g_active{nullptr};

bool compiled(const std::string& name) {
  if (name == "generic") return true;
#ifdef FASTNN_HAVE_avx2
  if (name == "avx2") return true;
#endif
#ifdef FASTNN_HAVE_avx512
  if (name == "avx512") return true;
#endif
  return false;
}

bool cpu_runs(const std::string& name) {
  const CpuFeatures& f = cpu_features();
  if (name == "avx2") return f.has_avx2_path();
  if (name == "avx512") return f.has_avx512_path();
  return name == "generic";
}

const KernelTable* table_for(const std::string& name) {
  if (name == "avx512") return &tables().avx512_table;
  if (name == "avx2") return &tables().avx2_table;
  return &tables().generic_table;
}

}  // namespace

std::vector<std::string> compiled_paths() {
  std::vector<std::string> out;
  for (const char* name : {"generic", "avx2", "avx512"})
    if (compiled(name)) out.emplace_back(name);
  return out;
}

std::vector<std::string> available_paths() {
  std::vector<std::string> out;
  for (const auto& name : compiled_paths())
    if (cpu_runs(name)) out.push_back(name);
  return out;
}

void select_path(const std::string& requested) {
  std::string name = requested;
  if (name.empty() || name == "auto") name = available_paths().back();
  if (name != "generic" && name != "avx2" && name != "avx512")
    throw std::invalid_argument("FASTNN_SIMD must be one of 'generic', 'avx2', 'avx512' or 'auto', got '" +
                                requested + "'");
  if (!compiled(name))
    throw std::runtime_error("FASTNN_SIMD='" + name + "': this build of fastnn has no " + name +
                             " kernels (non-x86 build)");
  if (!cpu_runs(name))
    throw std::runtime_error("FASTNN_SIMD='" + name + "': this CPU lacks the instructions the " + name +
                             " kernels need; use one of the available paths instead");
  g_active.store(table_for(name));
}

void select_path_from_environment() {
  const char* env = std::getenv("FASTNN_SIMD");
  select_path(env ? std::string(env) : std::string());
}

const KernelTable& kernels() {
  const KernelTable* t = g_active.load(std::memory_order_acquire);
  if (t == nullptr) throw std::runtime_error("fastnn kernels used before a SIMD path was selected");
  return *t;
}

}  // namespace fastnn
