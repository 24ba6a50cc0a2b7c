// Argument checks for the fastmlp._cuda glue. GPU arrays arrive as any object carrying
// __cuda_array_interface__ (CuPy, PyTorch CUDA tensors, Numba, ...): no CuPy is needed to build
// or import the module. Everything is validated before a launch: first the pure metadata (type,
// typestr, shape, strides, read-only flag, aliasing) without touching the CUDA driver, then the
// device every pointer lives on (cudaPointerGetAttributes). Errors: TypeError for the wrong kind
// of object or dtype, ValueError for shape / layout / writability / aliasing / device mismatches.
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fastmlp::bind::cu {

namespace py = pybind11;

// The parsed __cuda_array_interface__ of one argument.
struct CudaArray {
    std::string name;
    uintptr_t ptr = 0;
    std::vector<int64_t> shape;
    std::vector<int64_t> strides;  // in bytes, filled in for C-contiguous (strides None) arrays
    bool readonly = false;
    bool c_contiguous = true;
    int64_t size = 0;
    py::object stream;  // the interface's "stream" entry (None or an int), None when absent
    py::object owner;   // keeps the object alive while its pointer is in use
    float* data() const { return reinterpret_cast<float*>(ptr); }
};

std::string shape_str(const std::vector<int64_t>& shape);

// Parses and checks obj.__cuda_array_interface__: float32 ('<f4'), a valid shape and strides,
// no mask, 4-byte aligned. A numpy array, a CPU tensor or any object without the interface is a
// TypeError telling to move the data to the GPU (cupy.asarray(x) / .cuda()).
CudaArray cuda_array(py::handle obj, const char* name);
// The same for another element type (int64 class indices, float64 sums); data() is then only a
// raw pointer to reinterpret.
enum class CudaDtype { f32, f64, i64 };
CudaArray cuda_array_of(py::handle obj, const char* name, CudaDtype dtype);

// A 2-D input as the GEMM sees it: row-major (strides (ld*4, 4)) gives trans = false, a
// column-major view such as w.T (strides (4, ld*4)) gives trans = true; other layouts: ValueError
// (fastmlp.ops copies such inputs with cupy.ascontiguousarray before calling).
struct CudaMatrix {
    const float* ptr = nullptr;
    int64_t rows = 0, cols = 0, ld = 1;
    bool trans = false;
};
CudaMatrix input_matrix(const CudaArray& a);

// A 2-D output: writable, rows contiguous (strides (ld*4, 4), ld >= cols), else ValueError.
struct CudaOutMatrix {
    float* ptr = nullptr;
    int64_t rows = 0, cols = 0, ld = 1;
};
CudaOutMatrix output_matrix(const CudaArray& a);

void require_ndim(const CudaArray& a, size_t ndim, const char* what);
void require_contiguous(const CudaArray& a);  // C-contiguous, else ValueError
void require_writable(const CudaArray& a);    // not read-only, else ValueError
void check_same_shape(const CudaArray& a, const CudaArray& b);
// ValueError when out's bytes overlap in's (an exact alias is allowed only when allow_same).
void check_no_overlap(const CudaArray& out, const CudaArray& in, bool allow_same);

// The stream to launch on: the explicit `stream` argument when not None (an int handle; 0 = the
// legacy default stream, 1 = cudaStreamLegacy, 2 = cudaStreamPerThread), else the first array's
// interface "stream" entry, else 0.
uintptr_t resolve_stream(py::handle stream, const CudaArray& first);

// After all metadata checks: the device all non-empty arrays live on (TypeError for host memory,
// ValueError for different devices; RuntimeError when the driver cannot answer). Returns -1 when
// every array is empty (nothing will be launched).
int common_device(const std::vector<const CudaArray*>& arrays);

// Makes `device` current for the scope of a launch and restores the previous one after.
class DeviceGuard {
public:
    explicit DeviceGuard(int device);
    ~DeviceGuard();
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int prev_ = -1;
};

// The `stream` argument of every _cuda function (a cudaStream_t passed as an integer).
inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Runs `launch` on `device` with the GIL released (the glue's last step, after every check).
template <class F>
void run_on(int device, F&& launch) {
    py::gil_scoped_release nogil;
    DeviceGuard guard(device);
    launch();
}

}  // namespace fastmlp::bind::cu
