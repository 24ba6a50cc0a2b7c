// Argument checks for the pybind11 glue: everything that crosses into a kernel is validated here
// and turned into a Python exception (TypeError for the wrong type or dtype, ValueError for the
// wrong shape, layout, writability or aliasing). Kernels assume what these checks establish.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fastmlp::bind {

namespace py = pybind11;

std::string shape_str(const py::array& a);

// A float32 numpy array or a TypeError naming `name`, what it got and how to convert.
py::array as_f32_array(py::handle obj, const char* name);

// A 2-D float32 matrix as the kernels see it: pointer, logical (rows, cols), and a leading
// dimension with a transpose flag. Row-major storage (strides (ld,1)) gives trans = false;
// column-major storage such as `w.T` (strides (1,ld)) gives trans = true. Other layouts (and
// misaligned data) are copied for inputs; `keep` holds whatever owns the memory.
struct Matrix {
    const float* ptr = nullptr;
    int64_t rows = 0, cols = 0, ld = 0;
    bool trans = false;
    py::object keep;
};
Matrix input_matrix(py::handle obj, const char* name);

// An output or in-place array: float32, writable, aligned, rows contiguous (strides (ld, 1) with
// ld >= cols, which includes C-contiguous). Anything else is an error, never a silent copy.
struct OutMatrix {
    float* ptr = nullptr;
    int64_t rows = 0, cols = 0, ld = 0;
    py::array arr;
};
OutMatrix output_matrix(py::handle obj, const char* name);

// A C-contiguous float32 input of any shape (copied to contiguous if it is a strided view).
py::array input_contiguous(py::handle obj, const char* name);
// A writable, aligned, C-contiguous float32 output / in-place array of any shape, else an error.
py::array output_contiguous(py::handle obj, const char* name);

// The same two with a fast path for the common case (already an aligned C-contiguous float32
// numpy array, writable for outputs: returned as is, no call into the checks).
inline bool fast_f32(py::handle h, int flags) {
    return py::isinstance<py::array_t<float>>(h) &&
           (py::detail::array_proxy(h.ptr())->flags & flags) == flags;
}
constexpr int kContigAligned =
    py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
// A C-contiguous float32 input (copied when strided), or TypeError naming `name`.
inline py::array in_arr(py::handle h, const char* name) {
    if (fast_f32(h, kContigAligned)) return py::reinterpret_borrow<py::array>(h);
    return input_contiguous(h, name);
}
// A writable C-contiguous float32 output, or an error (never a copy).
inline py::array out_arr(py::handle h, const char* name) {
    if (fast_f32(h, kContigAligned | py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
        return py::reinterpret_borrow<py::array>(h);
    return output_contiguous(h, name);
}
// The argument as a float32 array without copying it (TypeError otherwise, as as_f32_array):
// shapes can be checked on this before in_arr() may copy, so that a bad call never first
// materialises a huge strided or broadcast view.
inline py::array raw_arr(py::handle h, const char* name) {
    if (py::isinstance<py::array_t<float>>(h)) return py::reinterpret_borrow<py::array>(h);
    return as_f32_array(h, name);
}

// The byte range [lo, hi) an array's elements can touch.
struct Extent {
    uintptr_t lo = 0, hi = 0;
};
Extent extent_of(const py::array& a);
// ValueError when `out` overlaps `in` (an exact alias is allowed only when allow_same).
void check_no_overlap(const py::array& out, const char* out_name, const py::array& in,
                      const char* in_name, bool allow_same);

void check_same_shape(const py::array& a, const char* an, const py::array& b, const char* bn);

}  // namespace fastmlp::bind
