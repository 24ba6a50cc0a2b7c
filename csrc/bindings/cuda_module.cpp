// fastmlp._cuda: pybind11 glue over the CUDA kernel library (device queries for now).
#include <pybind11/pybind11.h>

#include "fastmlp/cuda_device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "fastmlp CUDA kernels (pybind11 glue)";
    m.def("device_count", &fastmlp::cuda::device_count);
    m.def("status", &fastmlp::cuda::status);
    m.def("device_name", &fastmlp::cuda::device_name, py::arg("device") = 0);
    m.def("synchronize", [] {
        py::gil_scoped_release nogil;
        fastmlp::cuda::synchronize();
    });
    m.def("runtime_version", &fastmlp::cuda::runtime_version);
    m.def("driver_version", &fastmlp::cuda::driver_version);
}
