// fastmlp._C.gemm: a CPython-level entry point in front of the pybind11 gemm binding.
//
// pybind11's dispatcher (argument casters, keyword matching, py::array wrappers, a Python-level
// dtype.isnative lookup per argument) costs ~2 us per call, more than a 64x10x20 product itself.
// This METH_FASTCALL function takes the common case straight from the argument vector: float32
// numpy arrays (exact ndarray, native byte order, aligned), 2-D inputs stored row-major or
// column-major (a transposed view), a writable row-contiguous `out` or none, an optional
// contiguous bias, plain float/int alpha and beta, plain bool flags. Every other call, and every
// call that would fail a check, is handed unchanged to the pybind11 function (registered as
// `_C._gemm_checked`), so conversions, copies, error types and messages stay exactly those of
// the checked binding. The layout rules below mirror input_matrix / output_matrix
// (cpu_array_checks.cpp); whatever they do not accept here is decided there.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>

#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>

#include "fastmlp/gemm.h"
#include "numpy_head.h"

namespace py = pybind11;

namespace fastmlp::bind {

namespace {

// numpy arrays read through numpy_head.h (no numpy C API headers)
using npy::ArrayHead;
using npy::kCContiguous;
using npy::kWriteable;
npy::Types g_np;  // numpy.ndarray, dtype(float32)

// Below this many flops the product lasts a few microseconds: keep the GIL (numpy does the same
// for small operations); releasing and retaking it costs more than such a call's work.
constexpr double kReleaseGilFlops = 1.0e5;

PyObject* g_checked = nullptr;      // _C._gemm_checked, one reference held

inline ArrayHead* as_f32(PyObject* o) { return g_np.as_f32(o); }

struct View {
    const float* ptr;
    int64_t rows, cols, ld;
    bool trans;
};

// input_matrix's no-copy layouts of a non-empty 2-D array with dims (rows, cols) and byte strides
// (s0, s1): row-major (rows may be padded) or column-major (a transposed view). False: let the
// checked binding decide (it may copy).
inline bool input_view(const char* data, int64_t rows, int64_t cols, int64_t s0, int64_t s1, View& v) {
    if (rows == 0 || cols == 0) return false;
    v.ptr = reinterpret_cast<const float*>(data);
    v.rows = rows;
    v.cols = cols;
    if ((cols == 1 || s1 == 4) && (rows == 1 || (s0 % 4 == 0 && s0 >= 4 * cols))) {
        v.ld = rows == 1 ? cols : s0 / 4;
        v.trans = false;
        return true;
    }
    if (s0 == 4 && s1 % 4 == 0 && s1 >= 4 * rows) {
        v.ld = s1 / 4;
        v.trans = true;
        return true;
    }
    return false;
}
inline bool input_view(ArrayHead* a, View& v) {
    return a->nd == 2 && input_view(a->data, a->dims[0], a->dims[1], a->strides[0], a->strides[1], v);
}
// The view of a.T (what `weight.T` would give), for linear.
inline bool input_view_transposed(ArrayHead* a, View& v) {
    return a->nd == 2 && input_view(a->data, a->dims[1], a->dims[0], a->strides[1], a->strides[0], v);
}

// Byte range [lo, hi) an array's elements can touch (extent_of for a non-empty array).
inline void extent(ArrayHead* a, uintptr_t& lo, uintptr_t& hi) {
    intptr_t l = 0, h = 0;
    for (int i = 0; i < a->nd; ++i) {
        const intptr_t span = intptr_t(a->dims[i] - 1) * intptr_t(a->strides[i]);
        if (span < 0) l += span; else h += span;
    }
    lo = uintptr_t(intptr_t(a->data) + l);
    hi = uintptr_t(intptr_t(a->data) + h + 4);
}
inline bool overlaps(ArrayHead* x, ArrayHead* y) {
    uintptr_t xl, xh, yl, yh;
    extent(x, xl, xh);
    extent(y, yl, yh);
    return !(xh <= yl || yh <= xl);
}

inline bool as_float(PyObject* o, float& out) {
    if (PyFloat_CheckExact(o)) {
        out = static_cast<float>(PyFloat_AS_DOUBLE(o));
        return true;
    }
    if (PyLong_CheckExact(o)) {
        const double d = PyLong_AsDouble(o);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return false;
        }
        out = static_cast<float>(d);
        return true;
    }
    return false;
}

inline bool as_bool(PyObject* o, bool& out) {
    if (o == Py_True) out = true;
    else if (o == Py_False) out = false;
    else return false;
    return true;
}

// A name the std::string caster would accept (str with a UTF-8 form); only used in messages.
inline bool is_name(PyObject* o) {
    if (!PyUnicode_Check(o)) return false;
    if (PyUnicode_AsUTF8AndSize(o, nullptr)) return true;
    PyErr_Clear();
    return false;
}

// The same translation pybind11 applies to exceptions out of a bound function.
void set_python_error() {
    try {
        throw;
    } catch (const std::bad_alloc& e) {
        PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const std::domain_error& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::invalid_argument& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::length_error& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::out_of_range& e) {
        PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const std::range_error& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::overflow_error& e) {
        PyErr_SetString(PyExc_OverflowError, e.what());
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
        PyErr_SetString(PyExc_RuntimeError, "Caught an unknown exception!");
    }
}

PyObject* run(ArrayHead* ra, const View& a, ArrayHead* rb, const View& b, PyObject* out_obj,
              PyObject* bias_obj, float alpha, float beta, bool relu);

enum Arg { A, B, OUT, ALPHA, BETA, BIAS, RELU, REFERENCE, A_NAME, B_NAME, NARGS };
const char* const kArgNames[NARGS] = {"a", "b", "out", "alpha", "beta", "bias", "relu",
                                       "reference", "a_name", "b_name"};

// The fast path. Returns the result (new reference), or null with no Python error set when the
// call is not one it takes (the checked binding then runs), or null with an error set when the
// kernel itself failed.
PyObject* try_fast(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    if (nargs > NARGS) return nullptr;
    PyObject* v[NARGS] = {};
    for (Py_ssize_t i = 0; i < nargs; ++i) v[i] = args[i];
    if (kwnames) {
        const Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t j = 0; j < nk; ++j) {
            PyObject* key = PyTuple_GET_ITEM(kwnames, j);
            const char* s = PyUnicode_AsUTF8(key);
            if (!s) {
                PyErr_Clear();
                return nullptr;
            }
            int k = 0;
            while (k < NARGS && std::strcmp(s, kArgNames[k]) != 0) ++k;
            if (k == NARGS || v[k]) return nullptr;  // unknown or repeated: pybind11's TypeError
            v[k] = args[nargs + j];
        }
    }
    if (!v[A] || !v[B]) return nullptr;
    float alpha = 1.0f, beta = 0.0f;
    bool relu = false, reference = false;
    if (v[ALPHA] && !as_float(v[ALPHA], alpha)) return nullptr;
    if (v[BETA] && !as_float(v[BETA], beta)) return nullptr;
    if (v[RELU] && !as_bool(v[RELU], relu)) return nullptr;
    if (v[REFERENCE] && (!as_bool(v[REFERENCE], reference) || reference)) return nullptr;
    if (v[A_NAME] && !is_name(v[A_NAME])) return nullptr;
    if (v[B_NAME] && !is_name(v[B_NAME])) return nullptr;

    ArrayHead *ra = as_f32(v[A]), *rb = as_f32(v[B]);
    View a, b;
    if (!ra || !rb || !input_view(ra, a) || !input_view(rb, b)) return nullptr;
    return run(ra, a, rb, b, v[OUT], v[BIAS], alpha, beta, relu);
}

// The checks that need the shapes, then the kernel. Same return convention as try_fast.
PyObject* run(ArrayHead* ra, const View& a, ArrayHead* rb, const View& b, PyObject* out_obj,
              PyObject* bias_obj, float alpha, float beta, bool relu) {
    if (a.cols != b.rows) return nullptr;
    const int64_t M = a.rows, N = b.cols, K = a.cols;

    ArrayHead* rc = nullptr;
    float* c = nullptr;
    int64_t ldc = 0;
    if (out_obj && out_obj != Py_None) {
        rc = as_f32(out_obj);
        if (!rc || rc->nd != 2 || !(rc->flags & kWriteable) || rc->dims[0] != M || rc->dims[1] != N)
            return nullptr;
        const int64_t s0 = rc->strides[0], s1 = rc->strides[1];
        const bool rows_ok = M <= 1 || (s0 >= 4 * N && s0 % 4 == 0);
        const bool cols_ok = N <= 1 || s1 == 4;
        if (!rows_ok || !cols_ok || overlaps(rc, ra) || overlaps(rc, rb)) return nullptr;
        c = reinterpret_cast<float*>(rc->data);
        ldc = M <= 1 ? N : s0 / 4;
    } else if (beta != 0.0f) {
        return nullptr;  // the checked binding says why
    }
    GemmEpilogue epi;
    epi.relu = relu;
    if (bias_obj && bias_obj != Py_None) {
        ArrayHead* rbias = as_f32(bias_obj);
        if (!rbias || rbias->nd != 1 || rbias->dims[0] != N || !(rbias->flags & kCContiguous) ||
            (rc && overlaps(rc, rbias)))
            return nullptr;
        epi.bias = reinterpret_cast<const float*>(rbias->data);
    }

    PyObject* result;
    if (rc) {
        result = out_obj;
        Py_INCREF(result);
    } else {
        result = g_np.new_f32(Py_ssize_t(M), Py_ssize_t(N));
        if (!result) return nullptr;  // MemoryError set
        c = reinterpret_cast<float*>(reinterpret_cast<ArrayHead*>(result)->data);
        ldc = N;
    }

    const bool release = 2.0 * double(M) * double(N) * double(K) >= kReleaseGilFlops;
    PyThreadState* ts = release ? PyEval_SaveThread() : nullptr;
    try {
        sgemm(a.trans, b.trans, M, N, K, alpha, a.ptr, a.ld, b.ptr, b.ld, beta, c, ldc, epi);
    } catch (...) {
        if (ts) PyEval_RestoreThread(ts);
        Py_DECREF(result);
        set_python_error();
        return nullptr;
    }
    if (ts) PyEval_RestoreThread(ts);
    return result;
}

PyObject* gemm_fast(PyObject*, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (PyObject* r = try_fast(args, nargs, kwnames)) return r;
    if (PyErr_Occurred()) return nullptr;
    return PyObject_Vectorcall(g_checked, args, nargs, kwnames);
}

// _C.linear_fast(x, weight, bias, relu, out): ops.linear's common case, x @ weight.T (+ bias)
// (relu) with weight [out, in]; None when not taken (ops.linear then runs its checked path).
PyObject* linear_fast(PyObject*, PyObject* const* args, Py_ssize_t nargsf) {
    if (PyVectorcall_NARGS(nargsf) != 5) {
        PyErr_SetString(PyExc_TypeError, "linear_fast(x, weight, bias, relu, out) takes 5 arguments");
        return nullptr;
    }
    ArrayHead *rx = as_f32(args[0]), *rw = as_f32(args[1]);
    View a, b;
    bool relu;
    PyObject* r = nullptr;
    if (rx && rw && as_bool(args[3], relu) && input_view(rx, a) && input_view_transposed(rw, b))
        r = run(rx, a, rw, b, args[4], args[2], 1.0f, 0.0f, relu);
    if (r || PyErr_Occurred()) return r;
    Py_RETURN_NONE;
}

PyMethodDef g_linear_def = {
    "linear_fast", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&linear_fast)),
    METH_FASTCALL,
    "linear_fast(x, weight, bias, relu, out): x @ weight.T (+ bias) (ReLU) for float32 numpy "
    "arrays in the layouts _C.gemm reads in place, or None when the call needs fastmlp.ops.linear's "
    "checks (conversions, copies, errors)."};

PyMethodDef g_gemm_def = {
    "gemm", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&gemm_fast)),
    METH_FASTCALL | METH_KEYWORDS,
    "gemm(a, b, out=None, alpha=1.0, beta=0.0, bias=None, relu=False, reference=False, "
    "a_name='a', b_name='b')\n\n"
    "out = alpha * a @ b + beta * out (+ bias per column, then ReLU). a, b: 2-D float32; "
    "transposed views are read in place. The common case runs here directly; anything else "
    "(conversions, copies, errors) is handled by _gemm_checked."};

}  // namespace

// Registers _C.gemm in front of _C._gemm_checked (which must already be defined on m).
void register_gemm_fast(py::module_& m) {
    g_np.init();
    g_checked = py::object(m.attr("_gemm_checked")).release().ptr();
    py::object fn = py::reinterpret_steal<py::object>(
        PyCFunction_NewEx(&g_gemm_def, nullptr, m.attr("__name__").ptr()));
    if (!fn) throw py::error_already_set();
    m.attr("gemm") = fn;
    py::object lin = py::reinterpret_steal<py::object>(
        PyCFunction_NewEx(&g_linear_def, nullptr, m.attr("__name__").ptr()));
    if (!lin) throw py::error_already_set();
    m.attr("linear_fast") = lin;
}

}  // namespace fastmlp::bind
