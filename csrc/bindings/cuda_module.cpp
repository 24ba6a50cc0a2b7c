// fastmlp._cuda: pybind11 glue over the CUDA kernel library: device queries here, the ops in
// cuda_ops.cpp. Importing it needs no GPU (the CUDA runtime is linked statically; the driver is
// loaded on first use), so `fastmlp.cuda.is_available()` can answer False cleanly.
#include <pybind11/pybind11.h>

#include "fastmlp/cuda_device.h"

namespace py = pybind11;

namespace fastmlp::bind {
void register_cuda_ops(py::module_& m);
void register_cuda_mlp(py::module_& m);
void register_cuda_activations(py::module_& m);  // cuda_activations.cpp
void register_cuda_optimizers(py::module_& m);  // cuda_optimizers.cpp
void register_cuda_losses(py::module_& m);  // cuda_losses.cpp
void register_cuda_mlp_fit(py::module_& m);     // cuda_mlp_fit.cpp
}

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "fastmlp CUDA kernels (pybind11 glue; see fastmlp.ops / fastmlp.ops_cuda)";
    m.def("device_count", &fastmlp::cuda::device_count);
    m.def("status", &fastmlp::cuda::status);
    m.def("device_name", &fastmlp::cuda::device_name, py::arg("device") = 0);
    m.def("synchronize", [] {
        py::gil_scoped_release nogil;
        fastmlp::cuda::synchronize();
    });
    m.def("current_device", &fastmlp::cuda::current_device);
    m.def("set_device", &fastmlp::cuda::set_device, py::arg("device"));
    m.def("sm_count", &fastmlp::cuda::sm_count, py::arg("device") = 0);
    m.def("runtime_version", &fastmlp::cuda::runtime_version);
    m.def("driver_version", &fastmlp::cuda::driver_version);
    fastmlp::bind::register_cuda_ops(m);
    fastmlp::bind::register_cuda_mlp(m);
    fastmlp::bind::register_cuda_activations(m);
    fastmlp::bind::register_cuda_optimizers(m);
    fastmlp::bind::register_cuda_losses(m);
    fastmlp::bind::register_cuda_mlp_fit(m);
}
