#include "cuda_array_checks.h"

#include <algorithm>
#include <sstream>

#include "fastmlp/cuda_device.h"

namespace fastmlp::bind::cu {

namespace {

std::string type_name(py::handle obj) {
    return py::str(py::type::handle_of(obj).attr("__qualname__"));
}

[[noreturn]] void value_error(const CudaArray& a, const std::string& msg) {
    throw py::value_error("argument '" + a.name + "' " + msg);
}

int64_t as_int(py::handle h, const std::string& name, const char* field) {
    if (!py::isinstance<py::int_>(h) || py::isinstance<py::bool_>(h))
        throw py::type_error("argument '" + name + "': __cuda_array_interface__['" + field +
                             "'] must hold ints, got " + type_name(h));
    return h.cast<int64_t>();
}

}  // namespace

std::string shape_str(const std::vector<int64_t>& shape) {
    std::ostringstream s;
    s << "(";
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    if (shape.size() == 1) s << ",";
    s << ")";
    return s.str();
}

CudaArray cuda_array(py::handle obj, const char* name) {
    return cuda_array_of(obj, name, CudaDtype::f32);
}

CudaArray cuda_array_of(py::handle obj, const char* name, CudaDtype want) {
    const char kind = want == CudaDtype::i64 ? 'i' : 'f';
    const int64_t item = want == CudaDtype::f32 ? 4 : 8;
    const std::string tname = want == CudaDtype::f32 ? "float32" : (want == CudaDtype::f64 ? "float64" : "int64");
    const std::string ts_le = std::string("<") + kind + std::to_string(item);
    const std::string ts_na = std::string("=") + kind + std::to_string(item);
    CudaArray a;
    a.name = name;
    const std::string n = name;
    // numpy.ndarray, looked up once and kept for the life of the process (never released, so
    // nothing runs at interpreter shutdown).
    static PyObject* ndarray = py::object(py::module_::import("numpy").attr("ndarray")).release().ptr();
    if (PyObject_IsInstance(obj.ptr(), ndarray) == 1)
        throw py::type_error("argument '" + n +
                             "' is a numpy.ndarray in host memory, but this CUDA kernel needs a GPU "
                             "array: use cupy.asarray(" + n + ") (or Tensor.cuda() / .to('cuda'))");
    if (obj.is_none())
        throw py::type_error("argument '" + n + "' must be a GPU float32 array (e.g. a cupy.ndarray), got None");
    py::object cai;
    try {
        cai = obj.attr("__cuda_array_interface__");
    } catch (py::error_already_set& e) {
        if (!e.matches(PyExc_AttributeError)) throw;
        throw py::type_error("argument '" + n + "' must be a GPU float32 array (an object with "
                             "__cuda_array_interface__, such as a cupy.ndarray), got " +
                             type_name(obj) + ": move it to the GPU with cupy.asarray(" + n +
                             ") or .cuda()");
    }
    if (!py::isinstance<py::dict>(cai))
        throw py::type_error("argument '" + n + "': __cuda_array_interface__ must be a dict, got " +
                             type_name(cai));
    py::dict d = py::reinterpret_borrow<py::dict>(cai);
    for (const char* key : {"shape", "typestr", "data"})
        if (!d.contains(key))
            throw py::type_error("argument '" + n + "': __cuda_array_interface__ lacks '" + key + "'");

    // dtype
    py::object ts = d["typestr"];
    const std::string typestr = py::isinstance<py::str>(ts) ? ts.cast<std::string>() : "";
    if (typestr != ts_le && typestr != ts_na)
        throw py::type_error("argument '" + n + "' has typestr " + std::string(py::repr(ts)) +
                             ", but this fastmlp kernel needs " + tname + " ('" + ts_le +
                             "'); convert with " + n + ".astype(cupy." + tname + ")");
    // shape
    py::object sh = d["shape"];
    if (!py::isinstance<py::tuple>(sh) && !py::isinstance<py::list>(sh))
        throw py::type_error("argument '" + n + "': __cuda_array_interface__['shape'] must be a tuple");
    a.size = 1;
    for (py::handle h : sh) {
        const int64_t v = as_int(h, n, "shape");
        if (v < 0) throw py::value_error("argument '" + n + "' has a negative dimension");
        a.shape.push_back(v);
        a.size *= v;
    }
    // data
    py::object data = d["data"];
    if (!py::isinstance<py::tuple>(data) || py::len(data) != 2)
        throw py::type_error("argument '" + n + "': __cuda_array_interface__['data'] must be a "
                             "(pointer, read_only) tuple");
    py::tuple dt = py::reinterpret_borrow<py::tuple>(data);
    a.ptr = uintptr_t(as_int(dt[0], n, "data"));
    a.readonly = py::bool_(dt[1]).cast<bool>();
    // mask
    if (d.contains("mask") && !py::object(d["mask"]).is_none())
        throw py::value_error("argument '" + n + "' is a masked array; fastmlp kernels take plain arrays");
    // strides (bytes); None means C-contiguous
    const size_t nd = a.shape.size();
    std::vector<int64_t> cstrides(nd);
    {
        int64_t s = item;
        for (size_t i = nd; i-- > 0;) {
            cstrides[i] = s;
            s *= std::max<int64_t>(a.shape[i], 1);
        }
    }
    py::object st = d.contains("strides") ? py::object(d["strides"]) : py::object(py::none());
    if (st.is_none()) {
        a.strides = cstrides;
    } else {
        if (!py::isinstance<py::tuple>(st) && !py::isinstance<py::list>(st))
            throw py::type_error("argument '" + n + "': __cuda_array_interface__['strides'] must be "
                                 "None or a tuple");
        for (py::handle h : st) a.strides.push_back(as_int(h, n, "strides"));
        if (a.strides.size() != nd)
            throw py::value_error("argument '" + n + "': __cuda_array_interface__ has " +
                                  std::to_string(a.strides.size()) + " strides for " +
                                  std::to_string(nd) + " dimensions");
        for (int64_t s : a.strides)
            if (a.size > 0 && s % item != 0)
                value_error(a, "has a stride of " + std::to_string(s) + " bytes, not a multiple of "
                                   "the " + tname + " size; pass a contiguous copy");
    }
    a.c_contiguous = true;
    for (size_t i = 0; i < nd; ++i)
        if (a.shape[i] > 1 && a.strides[i] != cstrides[i]) a.c_contiguous = false;
    if (a.size > 0 && a.ptr == 0) value_error(a, "has a null data pointer");
    if (a.size > 0 && a.ptr % uintptr_t(item) != 0)
        value_error(a, "is not " + std::to_string(item) + "-byte aligned; pass a contiguous copy");
    a.stream = d.contains("stream") ? py::object(d["stream"]) : py::object(py::none());
    a.owner = py::reinterpret_borrow<py::object>(obj);
    return a;
}

void require_ndim(const CudaArray& a, size_t ndim, const char* what) {
    if (a.shape.size() != ndim)
        value_error(a, std::string("must be ") + std::to_string(ndim) + "-D" +
                           (what && *what ? std::string(" ") + what : std::string()) +
                           ", got shape " + shape_str(a.shape));
}

void require_contiguous(const CudaArray& a) {
    if (!a.c_contiguous)
        value_error(a, "must be C-contiguous, got shape " + shape_str(a.shape) + " with strides " +
                           shape_str(a.strides) + "; pass cupy.ascontiguousarray(...)" +
                           " (for an output: use that array, a copy would lose the result)");
}

void require_writable(const CudaArray& a) {
    if (a.readonly) value_error(a, "is read-only; pass a writable array");
}

CudaMatrix input_matrix(const CudaArray& a) {
    require_ndim(a, 2, "");
    CudaMatrix m;
    m.rows = a.shape[0];
    m.cols = a.shape[1];
    m.ptr = a.data();
    const int64_t s0 = a.strides[0], s1 = a.strides[1];
    if (m.rows == 0 || m.cols == 0) {
        m.ld = std::max<int64_t>(m.cols, 1);  // nothing is read
    } else if ((m.cols == 1 || s1 == 4) && (m.rows == 1 || (s0 % 4 == 0 && s0 >= 4 * m.cols))) {
        m.ld = m.rows == 1 ? m.cols : s0 / 4;  // row-major, rows may be padded
    } else if (s0 == 4 && s1 % 4 == 0 && s1 >= 4 * m.rows) {
        m.ld = s1 / 4;  // column-major (a transposed view such as w.T): stored as (cols, rows)
        m.trans = true;
    } else {
        value_error(a, "has strides " + shape_str(a.strides) + " for shape " + shape_str(a.shape) +
                           ": neither row- nor column-major; pass cupy.ascontiguousarray(...)");
    }
    return m;
}

CudaOutMatrix output_matrix(const CudaArray& a) {
    require_ndim(a, 2, "");
    require_writable(a);
    CudaOutMatrix m;
    m.rows = a.shape[0];
    m.cols = a.shape[1];
    const int64_t s0 = a.strides[0], s1 = a.strides[1];
    const bool rows_ok = m.rows <= 1 || m.cols == 0 || (s0 >= 4 * m.cols && s0 % 4 == 0);
    const bool cols_ok = m.cols <= 1 || s1 == 4;
    if (!rows_ok || !cols_ok)
        value_error(a, "must be a row-major (C-contiguous) float32 array; got strides " +
                           shape_str(a.strides) + ". Results are written in place, so a copy would "
                           "lose them: pass cupy.ascontiguousarray(...) and use that array");
    m.ld = m.rows <= 1 ? std::max<int64_t>(m.cols, 1) : s0 / 4;
    m.ptr = a.data();
    return m;
}

void check_same_shape(const CudaArray& a, const CudaArray& b) {
    if (a.shape != b.shape)
        throw py::value_error("arguments '" + a.name + "' and '" + b.name +
                              "' must have the same shape, got " + shape_str(a.shape) + " and " +
                              shape_str(b.shape));
}

namespace {
struct Extent {
    uintptr_t lo, hi;
};
Extent extent_of(const CudaArray& a) {
    intptr_t lo = 0, hi = 0;
    for (size_t i = 0; i < a.shape.size(); ++i) {
        const intptr_t span = intptr_t(a.shape[i] - 1) * intptr_t(a.strides[i]);
        if (span < 0) lo += span; else hi += span;
    }
    return {uintptr_t(intptr_t(a.ptr) + lo), uintptr_t(intptr_t(a.ptr) + hi + 4)};
}
}  // namespace

void check_no_overlap(const CudaArray& out, const CudaArray& in, bool allow_same) {
    if (out.size == 0 || in.size == 0) return;
    const Extent eo = extent_of(out), ei = extent_of(in);
    if (eo.hi <= ei.lo || ei.hi <= eo.lo) return;
    if (allow_same && out.ptr == in.ptr && out.shape == in.shape && out.strides == in.strides) return;
    throw py::value_error("argument '" + out.name + "' overlaps argument '" + in.name +
                          "' in GPU memory" +
                          (allow_same ? " (only an exact in-place alias is allowed)" : "") +
                          "; pass a separate output array");
}

uintptr_t resolve_stream(py::handle stream, const CudaArray& first) {
    py::handle s = stream.is_none() ? py::handle(first.stream) : stream;
    if (s.is_none()) return 0;
    if (!py::isinstance<py::int_>(s) || py::isinstance<py::bool_>(s))
        throw py::type_error("argument 'stream' must be an int CUDA stream handle (e.g. "
                             "cupy.cuda.get_current_stream().ptr) or None, got " + type_name(s));
    const long long v = s.cast<long long>();
    if (v < 0) throw py::value_error("argument 'stream' must be >= 0, got " + std::to_string(v));
    return uintptr_t(v);
}

int common_device(const std::vector<const CudaArray*>& arrays) {
    int device = -1;
    const CudaArray* first = nullptr;
    for (const CudaArray* a : arrays) {
        if (a->size == 0) continue;
        const int d = fastmlp::cuda::pointer_device(reinterpret_cast<const void*>(a->ptr));
        if (d < 0)
            throw py::type_error("argument '" + a->name + "' points to host memory, but this CUDA "
                                 "kernel needs device memory: use cupy.asarray(...) / .cuda()");
        if (first && d != device)
            throw py::value_error("arguments '" + first->name + "' (cuda:" + std::to_string(device) +
                                  ") and '" + a->name + "' (cuda:" + std::to_string(d) +
                                  ") are on different devices; move them to one device");
        if (!first) {
            first = a;
            device = d;
        }
    }
    return device;
}

DeviceGuard::DeviceGuard(int device) {
    if (device < 0) return;
    const int cur = fastmlp::cuda::current_device();
    if (cur != device) {
        fastmlp::cuda::set_device(device);
        prev_ = cur;
    }
}

DeviceGuard::~DeviceGuard() {
    if (prev_ >= 0) {
        try {
            fastmlp::cuda::set_device(prev_);
        } catch (...) {
        }
    }
}

}  // namespace fastmlp::bind::cu
