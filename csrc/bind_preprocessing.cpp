// fastnn._core bindings for the preprocessing kernels (marshalling only).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace fastnn {

void bind_preprocessing(py::module_& m) { (void)m; }

}  // namespace fastnn
