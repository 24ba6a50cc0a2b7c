// fastmlp._C: bindings of the activation kernels (activations.h): act_forward, act_backward,
// softmax_forward, softmax_backward. Glue only: check arrays (array_checks.h), release the GIL,
// call the kernel. The activation is given as its fastmlp::Act kind (an int) and two parameters.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "array_checks.h"
#include "fastmlp/activations.h"

namespace py = pybind11;

namespace fastmlp::bind {

ActParams act_params(int kind, float p0, float p1, const char* what);  // cpu_layers.cpp

namespace {

std::vector<py::ssize_t> shape_of(const py::array& a) {
    return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// `out` given: same shape as `like`, writable contiguous float32; may be exactly one of `ins`
// (in place) but not overlap it otherwise. Not given: a new array.
py::array output_like(py::handle out_obj, const py::array& like, const char* what,
                      std::initializer_list<std::pair<const py::array*, const char*>> ins) {
    if (out_obj.is_none()) return py::array_t<float>(shape_of(like));
    py::array out = output_contiguous(out_obj, "out");
    if (out.ndim() != like.ndim() || !std::equal(out.shape(), out.shape() + out.ndim(), like.shape()))
        throw py::value_error(std::string(what) + ": 'out' must have shape " + shape_str(like) +
                              ", got " + shape_str(out));
    for (auto& [a, name] : ins)
        if (a && a->ptr()) check_no_overlap(out, "out", *a, name, true);
    return out;
}

const float* cptr(const py::array& a) { return static_cast<const float*>(a.data()); }

py::array act_forward_py(py::handle z_obj, int kind, float p0, float p1, py::handle out_obj) {
    const ActParams p = act_params(kind, p0, p1, "act_forward");
    py::array z = input_contiguous(z_obj, "input");
    py::array out = output_like(out_obj, z, "act_forward", {{&z, "input"}});
    float* op = static_cast<float*>(out.mutable_data());
    const float* zp = cptr(z);
    const int64_t n = z.size();
    {
        py::gil_scoped_release nogil;
        act_forward(op, zp, n, p);
    }
    return out;
}

// dz = grad * f'(z): `input` (z) is read by the kinds whose gradient needs it, `output` (y)
// by the others (identity, relu, tanh, sigmoid); the unread one may be None.
py::array act_backward_py(py::handle g_obj, py::handle z_obj, py::handle y_obj, int kind, float p0,
                          float p1, py::handle out_obj) {
    const char* what = "act_backward";
    const ActParams p = act_params(kind, p0, p1, what);
    const bool need_z = act_backward_needs_input(p.kind);
    py::array g = input_contiguous(g_obj, "grad");
    py::array v;
    const char* vname = need_z ? "input" : "output";
    py::handle vh = need_z ? z_obj : y_obj;
    if (p.kind != Act::identity) {
        if (vh.is_none())
            throw py::value_error(std::string(what) + ": this activation's gradient needs '" +
                                  vname + "', got None");
        v = input_contiguous(vh, vname);
        check_same_shape(g, "grad", v, vname);
    }
    py::array out = output_like(out_obj, g, what, {{&g, "grad"}, {v ? &v : nullptr, vname}});
    float* op = static_cast<float*>(out.mutable_data());
    const float* gp = cptr(g);
    const float* vp = v ? cptr(v) : nullptr;
    const int64_t n = g.size();
    {
        py::gil_scoped_release nogil;
        act_backward(op, gp, need_z ? vp : nullptr, need_z ? nullptr : vp, n, p);
    }
    return out;
}

// rows x cols with cols the last dimension (a 0-d array is one row of one)
void rows_cols(const py::array& a, int64_t& rows, int64_t& cols) {
    cols = a.ndim() == 0 ? 1 : a.shape(a.ndim() - 1);
    rows = cols == 0 ? 0 : a.size() / cols;
    if (cols == 0) {
        rows = 1;
        for (py::ssize_t d = 0; d + 1 < a.ndim(); ++d) rows *= a.shape(d);
    }
}

py::array softmax_forward_py(py::handle x_obj, bool log, py::handle out_obj) {
    py::array x = input_contiguous(x_obj, "input");
    py::array out = output_like(out_obj, x, "softmax_forward", {{&x, "input"}});
    int64_t rows, cols;
    rows_cols(x, rows, cols);
    float* op = static_cast<float*>(out.mutable_data());
    const float* xp = cptr(x);
    {
        py::gil_scoped_release nogil;
        if (cols > 0) softmax_forward(op, xp, rows, cols, log);
    }
    return out;
}

py::array softmax_backward_py(py::handle g_obj, py::handle y_obj, bool log, py::handle out_obj) {
    py::array g = input_contiguous(g_obj, "grad");
    py::array y = input_contiguous(y_obj, "output");
    check_same_shape(g, "grad", y, "output");
    py::array out = output_like(out_obj, g, "softmax_backward", {{&g, "grad"}, {&y, "output"}});
    int64_t rows, cols;
    rows_cols(g, rows, cols);
    float* op = static_cast<float*>(out.mutable_data());
    const float* gp = cptr(g);
    const float* yp = cptr(y);
    {
        py::gil_scoped_release nogil;
        if (cols > 0) softmax_backward(op, gp, yp, rows, cols, log);
    }
    return out;
}

}  // namespace

void register_activations(py::module_& m) {
    m.def("act_forward", &act_forward_py, py::arg("input"), py::arg("act"), py::arg("p0") = 0.0f,
          py::arg("p1") = 0.0f, py::arg("out") = py::none(),
          "out = f(input) element-wise for the activation kind `act` (fastmlp::Act) with "
          "parameters p0, p1; out may be input (in place).");
    m.def("act_backward", &act_backward_py, py::arg("grad"), py::arg("input"), py::arg("output"),
          py::arg("act"), py::arg("p0") = 0.0f, py::arg("p1") = 0.0f, py::arg("out") = py::none(),
          "grad * f'(input): reads `input` (pre-activation) or `output` (f(input)) as the kind "
          "needs; the other may be None. out may be grad (in place).");
    m.def("softmax_forward", &softmax_forward_py, py::arg("input"), py::arg("log") = false,
          py::arg("out") = py::none(),
          "softmax (log=False) or log_softmax (log=True) over the last dimension.");
    m.def("softmax_backward", &softmax_backward_py, py::arg("grad"), py::arg("output"),
          py::arg("log") = false, py::arg("out") = py::none(),
          "Gradient of softmax / log_softmax over the last dimension from its output.");
    py::tuple names(kActCount);
    for (int32_t k = 0; k < kActCount; ++k) names[size_t(k)] = py::str(kActNames[k]);
    m.attr("ACT_KINDS") = names;
}

}  // namespace fastmlp::bind
