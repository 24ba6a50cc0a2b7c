#include "array_checks.h"

#include <algorithm>
#include <sstream>

namespace fastmlp::bind {

namespace {
using npy = py::detail::npy_api;

bool is_f32(const py::array& a) {
    return a.dtype().kind() == 'f' && a.itemsize() == 4 &&
           a.dtype().attr("isnative").cast<bool>();
}
bool aligned(const py::array& a) { return (a.flags() & npy::NPY_ARRAY_ALIGNED_) != 0; }
bool writable(const py::array& a) { return (a.flags() & npy::NPY_ARRAY_WRITEABLE_) != 0; }
}  // namespace

std::string shape_str(const py::array& a) {
    std::ostringstream s;
    s << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
    if (a.ndim() == 1) s << ",";
    s << ")";
    return s.str();
}

py::array as_f32_array(py::handle obj, const char* name) {
    if (!py::isinstance<py::array>(obj)) {
        std::string tn = py::str(py::type::handle_of(obj).attr("__name__"));
        if (py::isinstance(obj, py::module_::import("numpy").attr("generic")))
            tn = "a numpy scalar (" + tn + ")";
        if (py::hasattr(obj, "__cuda_array_interface__"))
            throw py::type_error(std::string("argument '") + name + "' is a GPU array (" + tn +
                                 "), but this is a CPU kernel that needs a numpy.ndarray: copy it "
                                 "to the host (e.g. cupy.asnumpy(x)) or run the op on the GPU");
        if (py::hasattr(obj, "device") && py::hasattr(obj, "numpy") && py::hasattr(obj, "shape"))
            throw py::type_error(std::string("argument '") + name + "' is a " + tn +
                                 ", but fastmlp.ops needs a numpy.ndarray of float32 (use " + name +
                                 ".numpy(), or the Tensor API)");
        throw py::type_error(std::string("argument '") + name +
                             "' must be a numpy.ndarray of float32, got " + tn +
                             " (use numpy.asarray(x, dtype=numpy.float32))");
    }
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!is_f32(a)) {
        std::string dt = py::str(a.dtype());
        throw py::type_error(std::string("argument '") + name + "' has dtype " + dt +
                             ", but fastmlp kernels need float32; convert with " + name +
                             ".astype(numpy.float32)");
    }
    return a;
}

Matrix input_matrix(py::handle obj, const char* name) {
    py::array a = as_f32_array(obj, name);
    if (a.ndim() != 2)
        throw py::value_error(std::string("argument '") + name + "' must be 2-D, got shape " +
                              shape_str(a));
    Matrix m;
    m.rows = a.shape(0);
    m.cols = a.shape(1);
    const int64_t s0 = a.strides(0), s1 = a.strides(1);
    const bool al = aligned(a);
    if (m.rows == 0 || m.cols == 0) {
        m.ld = std::max<int64_t>(m.cols, 1);  // nothing is read
    } else if (al && (m.cols == 1 || s1 == 4) &&
               (m.rows == 1 || (s0 % 4 == 0 && s0 >= 4 * m.cols))) {
        m.ld = m.rows == 1 ? m.cols : s0 / 4;  // row-major, rows may be padded
    } else if (al && s0 == 4 && s1 % 4 == 0 && s1 >= 4 * m.rows) {
        m.ld = s1 / 4;  // column-major (a transposed view such as w.T): stored as (cols, rows)
        m.trans = true;
    } else {
        // Any other layout (negative or arbitrary strides, misaligned): an input may be copied.
        a = py::reinterpret_steal<py::array>(npy::get().PyArray_FromAny_(
            a.ptr(), nullptr, 0, 0, npy::NPY_ARRAY_C_CONTIGUOUS_ | npy::NPY_ARRAY_ALIGNED_, nullptr));
        if (!a) throw py::error_already_set();
        m.ld = m.cols;
    }
    m.ptr = static_cast<const float*>(a.data());
    m.keep = a;
    return m;
}

OutMatrix output_matrix(py::handle obj, const char* name) {
    py::array a = as_f32_array(obj, name);
    if (a.ndim() != 2)
        throw py::value_error(std::string("argument '") + name + "' must be 2-D, got shape " +
                              shape_str(a));
    if (!writable(a))
        throw py::value_error(std::string("argument '") + name + "' is read-only; pass a writable array");
    const int64_t rows = a.shape(0), cols = a.shape(1);
    const int64_t s0 = a.strides(0), s1 = a.strides(1);
    const bool rows_ok = rows <= 1 || cols == 0 || (s0 >= 4 * cols && s0 % 4 == 0);
    const bool cols_ok = cols <= 1 || s1 == 4;
    if (a.size() != 0 && (!aligned(a) || !rows_ok || !cols_ok))
        throw py::value_error(std::string("argument '") + name +
                              "' must be a C-contiguous (row-major) float32 array; got strides (" +
                              std::to_string(s0) + ", " + std::to_string(s1) +
                              "). Results are written in place, so a copy would lose them: pass "
                              "numpy.ascontiguousarray(...) and use that array");
    OutMatrix m;
    m.rows = rows;
    m.cols = cols;
    m.ld = rows <= 1 ? std::max<int64_t>(cols, 1) : s0 / 4;
    m.ptr = static_cast<float*>(a.mutable_data());
    m.arr = a;
    return m;
}

py::array input_contiguous(py::handle obj, const char* name) {
    py::array a = as_f32_array(obj, name);
    if ((a.flags() & npy::NPY_ARRAY_C_CONTIGUOUS_) && aligned(a)) return a;
    py::array c = py::reinterpret_steal<py::array>(npy::get().PyArray_FromAny_(
        a.ptr(), nullptr, 0, 0, npy::NPY_ARRAY_C_CONTIGUOUS_ | npy::NPY_ARRAY_ALIGNED_, nullptr));
    if (!c) throw py::error_already_set();
    return c;
}

py::array output_contiguous(py::handle obj, const char* name) {
    py::array a = as_f32_array(obj, name);
    if (!writable(a))
        throw py::value_error(std::string("argument '") + name + "' is read-only; pass a writable array");
    if (!(a.flags() & npy::NPY_ARRAY_C_CONTIGUOUS_) || !aligned(a))
        throw py::value_error(std::string("argument '") + name +
                              "' must be a C-contiguous float32 array (it is written in place, so a "
                              "copy would lose the result); pass numpy.ascontiguousarray(...) and use that array");
    return a;
}

Extent extent_of(const py::array& a) {
    Extent e;
    e.lo = e.hi = reinterpret_cast<uintptr_t>(a.data());
    if (a.size() == 0) return e;
    intptr_t lo = 0, hi = 0;
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        const intptr_t span = intptr_t(a.shape(i) - 1) * intptr_t(a.strides(i));
        if (span < 0) lo += span; else hi += span;
    }
    e.lo = uintptr_t(intptr_t(e.lo) + lo);
    e.hi = uintptr_t(intptr_t(e.hi) + hi + a.itemsize());
    return e;
}

void check_no_overlap(const py::array& out, const char* out_name, const py::array& in,
                      const char* in_name, bool allow_same) {
    if (out.size() == 0 || in.size() == 0) return;
    const Extent eo = extent_of(out), ei = extent_of(in);
    if (eo.hi <= ei.lo || ei.hi <= eo.lo) return;
    if (allow_same && out.data() == in.data() && out.ndim() == in.ndim()) {
        bool same = true;
        for (py::ssize_t i = 0; i < out.ndim(); ++i)
            same = same && out.shape(i) == in.shape(i) && out.strides(i) == in.strides(i);
        if (same) return;
    }
    throw py::value_error(std::string("argument '") + out_name + "' overlaps argument '" + in_name +
                          "' in memory" +
                          (allow_same ? " (only an exact in-place alias is allowed)" : "") +
                          "; pass a separate output array");
}

void check_same_shape(const py::array& a, const char* an, const py::array& b, const char* bn) {
    bool same = a.ndim() == b.ndim();
    for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
    if (!same)
        throw py::value_error(std::string("arguments '") + an + "' and '" + bn +
                              "' must have the same shape, got " + shape_str(a) + " and " +
                              shape_str(b));
}

}  // namespace fastmlp::bind
