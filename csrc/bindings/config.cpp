// fastnn._core, how fastnn was built and what it runs on (fastnn.show_config), the SIMD
// path switch and the thread settings.
#include <dlfcn.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "build_config.hpp"
#include "marshal.hpp"
#include "cpu.hpp"
#include "dispatch.hpp"
#include "threading.hpp"

namespace fastnn {

void bind_config(py::module_& m);

namespace {

// ---------------------------------------------------------------- configuration

std::string openmp_library() {
#ifdef _OPENMP
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&omp_get_max_threads), &info) && info.dli_fname) return info.dli_fname;
  return "unknown";
#else
  return "";
#endif
}

py::dict build_info() {
  py::dict d;
  d["version"] = FASTNN_VERSION;
  d["build_type"] = FASTNN_BUILD_TYPE;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  d["cxx_flags"] = FASTNN_CXX_FLAGS;
  d["isa_flags"] = py::dict(py::arg("generic") = "", py::arg("avx2") = FASTNN_ISA_FLAGS_AVX2,
                            py::arg("avx512") = FASTNN_ISA_FLAGS_AVX512);
  d["compiled_paths"] = compiled_paths();
  d["openmp"] = openmp_enabled();
#ifdef _OPENMP
  d["openmp_version"] = int(_OPENMP);
#else
  d["openmp_version"] = py::none();
#endif
  d["openmp_library"] = openmp_library();
#ifdef FASTNN_SANITIZER_CANARIES
  d["sanitizer_canaries"] = true;
#else
  d["sanitizer_canaries"] = false;
#endif
  return d;
}

py::dict cpu_info() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["brand"] = cpu_brand();
  d["x86"] = f.x86;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512dq"] = f.avx512dq;
  d["avx512vl"] = f.avx512vl;
  d["available_paths"] = available_paths();
  return d;
}

}  // namespace

void bind_config(py::module_& m) {
  m.def("simd_path", [] { return std::string(kernels().name); }, "The SIMD path in use.");
  m.def("gemm_tile", [] { return py::make_tuple(kernels().gemm_mr, kernels().gemm_nr); },
        "(MR, NR) of the float32 GEMM register tile of the path in use.");
  m.def("available_paths", &available_paths);
  m.def("_select_path", &select_path, py::arg("name"),
        "Test hook: switch the kernel table (the FASTNN_SIMD rules apply).");
  m.def("build_info", &build_info);
  m.def("cpu_info", &cpu_info);
  m.def("get_num_threads", &max_threads);
  m.def("explicit_num_threads", &explicit_threads);
  m.def("set_calling_thread_num_threads", &set_calling_thread_threads, py::arg("n"));
  m.def("calling_thread_num_threads", &calling_thread_threads);
  m.def("set_num_threads", &set_max_threads, py::arg("n"));
  m.def("fork_guard_mode", [] { return std::string(fork_guard_mode()); });
}

}  // namespace fastnn
