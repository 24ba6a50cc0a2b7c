// Reading numpy arrays without the numpy C API headers, for the METH_FASTCALL entries
// (cpu_gemm_fast.cpp, cpu_infer.cpp) whose per-call cost must stay under a microsecond: the
// leading fields of PyArrayObject / PyArray_Descr (stable in the numpy 1.x and 2.x ABI; numpy 2
// kept the old char flags slot as padding so type_num did not move), the flag bits they test,
// and numpy.ndarray / dtype(float32) looked up once through pybind11's npy_api.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace fastmlp::bind::npy {

struct ArrayHead {
    PyObject_HEAD
    char* data;
    int nd;
    Py_ssize_t* dims;
    Py_ssize_t* strides;
    PyObject* base;
    PyObject* descr;
    int flags;
};
struct DescrHead {
    PyObject_HEAD
    PyObject* typeobj;
    char kind, type, byteorder, former_flags;
    int type_num;
};
constexpr int kNpyFloat = 11;            // NPY_FLOAT
constexpr int kCContiguous = 0x0001;     // NPY_ARRAY_C_CONTIGUOUS
constexpr int kAligned = 0x0100;         // NPY_ARRAY_ALIGNED
constexpr int kWriteable = 0x0400;       // NPY_ARRAY_WRITEABLE
#if PY_LITTLE_ENDIAN
constexpr char kSwapped = '>';
#else
constexpr char kSwapped = '<';
#endif

// numpy.ndarray and dtype(float32) (one reference held), set by init() at module import.
struct Types {
    PyTypeObject* ndarray = nullptr;
    PyObject* f32_descr = nullptr;
    void init() {
        auto& api = pybind11::detail::npy_api::get();
        ndarray = api.PyArray_Type_;
        f32_descr = api.PyArray_DescrFromType_(kNpyFloat);
        if (!f32_descr) throw pybind11::error_already_set();
    }
    // An exact float32 numpy array in native byte order and aligned storage, else null.
    ArrayHead* as_f32(PyObject* o) const {
        if (Py_TYPE(o) != ndarray) return nullptr;
        auto* a = reinterpret_cast<ArrayHead*>(o);
        auto* d = reinterpret_cast<DescrHead*>(a->descr);
        if (d->type_num != kNpyFloat || d->byteorder == kSwapped || !(a->flags & kAligned))
            return nullptr;
        return a;
    }
    // A new C-contiguous float32 (d0, d1) array, or null with a Python error set.
    PyObject* new_f32(Py_ssize_t d0, Py_ssize_t d1) const {
        Py_ssize_t dims[2] = {d0, d1};
        Py_INCREF(f32_descr);  // stolen by NewFromDescr
        return pybind11::detail::npy_api::get().PyArray_NewFromDescr_(ndarray, f32_descr, 2, dims,
                                                                      nullptr, nullptr, 0, nullptr);
    }
};

}  // namespace fastmlp::bind::npy
