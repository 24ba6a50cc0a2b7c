// fastmlp._cuda: bindings of the CUDA activation kernels (cuda_activations.h) and of Linear + an
// activation in the GEMM epilogue. The same functions and argument order as _C's
// (cpu_activations.cpp), with `out` passed in (fastmlp.ops_cuda allocates it with CuPy) and a
// trailing `stream`. Glue only: parse and check every __cuda_array_interface__, release the GIL,
// launch. Nothing here synchronises the device.
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "cuda_array_checks.h"
#include "fastmlp/activation.h"
#include "fastmlp/cuda_activations.h"
#include "fastmlp/cuda_gemm.h"

namespace py = pybind11;
using namespace fastmlp::bind::cu;

namespace fastmlp::bind {
void register_cuda_activations(py::module_& m);
}

namespace {

fastmlp::ActParams act_params(int kind, float p0, float p1, const char* what) {
    if (kind < 0 || kind >= fastmlp::kActCount)
        throw py::value_error(std::string(what) + ": 'act' must be an activation kind in [0, " +
                              std::to_string(fastmlp::kActCount) + "), got " + std::to_string(kind));
    return fastmlp::ActParams{static_cast<fastmlp::Act>(kind), p0, p1};
}

void check_out_like(const CudaArray& out, const CudaArray& like) {
    require_writable(out);
    require_contiguous(out);
    check_same_shape(out, like);
    check_no_overlap(out, like, true);
}

py::object act_forward_py(py::handle z_obj, int kind, float p0, float p1, py::handle out_obj,
                          py::handle stream_obj) {
    const fastmlp::ActParams p = act_params(kind, p0, p1, "act_forward");
    CudaArray z = cuda_array(z_obj, "input"), out = cuda_array(out_obj, "out");
    require_contiguous(z);
    check_out_like(out, z);
    const uintptr_t stream = resolve_stream(stream_obj, z);
    const int dev = common_device({&z, &out});
    run_on(dev, [&] { fastmlp::cuda::act_forward(out.data(), z.data(), z.size, p, as_stream(stream)); });
    return py::reinterpret_borrow<py::object>(out_obj);
}

py::object act_backward_py(py::handle g_obj, py::handle z_obj, py::handle y_obj, int kind, float p0,
                           float p1, py::handle out_obj, py::handle stream_obj) {
    const char* what = "act_backward";
    const fastmlp::ActParams p = act_params(kind, p0, p1, what);
    const bool need_z = fastmlp::act_backward_needs_input(p.kind);
    const char* vname = need_z ? "input" : "output";
    py::handle vh = need_z ? z_obj : y_obj;
    if (p.kind != fastmlp::Act::identity && vh.is_none())
        throw py::value_error(std::string(what) + ": this activation's gradient needs '" + vname +
                              "', got None");
    CudaArray g = cuda_array(g_obj, "grad"), out = cuda_array(out_obj, "out");
    require_contiguous(g);
    check_out_like(out, g);
    std::vector<const CudaArray*> arrays{&g, &out};
    CudaArray v;
    if (!vh.is_none()) {
        v = cuda_array(vh, vname);
        require_contiguous(v);
        check_same_shape(g, v);
        check_no_overlap(out, v, true);
        arrays.push_back(&v);
    }
    const float* vp = vh.is_none() ? nullptr : v.data();
    const uintptr_t stream = resolve_stream(stream_obj, g);
    const int dev = common_device(arrays);
    run_on(dev, [&] {
        fastmlp::cuda::act_backward(out.data(), g.data(), need_z ? vp : nullptr,
                                    need_z ? nullptr : vp, g.size, p, as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

void rows_cols(const CudaArray& a, int64_t& rows, int64_t& cols) {
    cols = a.shape.empty() ? 1 : a.shape.back();
    rows = 1;
    for (size_t d = 0; d + 1 < a.shape.size(); ++d) rows *= a.shape[d];
}

py::object softmax_forward_py(py::handle x_obj, bool log, py::handle out_obj, py::handle stream_obj) {
    CudaArray x = cuda_array(x_obj, "input"), out = cuda_array(out_obj, "out");
    require_contiguous(x);
    check_out_like(out, x);
    int64_t rows, cols;
    rows_cols(x, rows, cols);
    const uintptr_t stream = resolve_stream(stream_obj, x);
    const int dev = common_device({&x, &out});
    run_on(dev, [&] {
        fastmlp::cuda::softmax_forward(out.data(), x.data(), rows, cols, log, as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

py::object softmax_backward_py(py::handle g_obj, py::handle y_obj, bool log, py::handle out_obj,
                               py::handle stream_obj) {
    CudaArray g = cuda_array(g_obj, "grad"), y = cuda_array(y_obj, "output"),
              out = cuda_array(out_obj, "out");
    require_contiguous(g);
    require_contiguous(y);
    check_same_shape(g, y);
    check_out_like(out, g);
    check_no_overlap(out, y, true);
    int64_t rows, cols;
    rows_cols(g, rows, cols);
    const uintptr_t stream = resolve_stream(stream_obj, g);
    const int dev = common_device({&g, &y, &out});
    run_on(dev, [&] {
        fastmlp::cuda::softmax_backward(out.data(), g.data(), y.data(), rows, cols, log,
                                        as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

// out (B,OC) = act(z), z = x (B,C) @ weight (OC,C)^T + bias, in one GEMM (epilogue); pre_act
// (B,OC) or None receives z from the same pass.
py::object linear_act_forward_py(py::handle x_obj, py::handle w_obj, py::handle b_obj,
                                 py::handle out_obj, int kind, float p0, float p1,
                                 py::handle pre_obj, py::handle stream_obj) {
    const char* what = "linear_forward";
    fastmlp::ActParams p = act_params(kind, p0, p1, what);
    CudaArray x = cuda_array(x_obj, "x"), w = cuda_array(w_obj, "weight"), out = cuda_array(out_obj, "out");
    require_ndim(x, 2, "(batch, in_features)");
    require_ndim(w, 2, "(out_features, in_features)");
    require_contiguous(x);
    require_contiguous(w);
    const int64_t B = x.shape[0], C = x.shape[1], OC = w.shape[0];
    if (w.shape[1] != C)
        throw py::value_error("linear_forward: 'x' must have shape (batch, " + std::to_string(w.shape[1]) +
                              ") to match weight of shape " + shape_str(w.shape) + ", got " +
                              shape_str(x.shape));
    require_writable(out);
    require_contiguous(out);
    if (out.shape != std::vector<int64_t>{B, OC})
        throw py::value_error("linear_forward: 'out' must have shape (" + std::to_string(B) + ", " +
                              std::to_string(OC) + "), got " + shape_str(out.shape));
    check_no_overlap(out, x, false);
    check_no_overlap(out, w, false);
    std::vector<const CudaArray*> arrays{&x, &w, &out};
    fastmlp::GemmEpilogue epi;
    epi.act = p;
    CudaArray b, pre;
    if (!b_obj.is_none()) {
        b = cuda_array(b_obj, "bias");
        if (b.shape.size() != 1 || b.shape[0] != OC)
            throw py::value_error("linear_forward: 'bias' must have shape (" + std::to_string(OC) +
                                  ",), got " + shape_str(b.shape));
        require_contiguous(b);
        check_no_overlap(out, b, false);
        epi.bias = b.data();
        arrays.push_back(&b);
    }
    if (!pre_obj.is_none()) {
        pre = cuda_array(pre_obj, "pre_act");
        require_writable(pre);
        require_contiguous(pre);
        check_same_shape(pre, out);
        check_no_overlap(pre, out, false);
        check_no_overlap(pre, x, false);
        check_no_overlap(pre, w, false);
        epi.pre_act = pre.data();
        arrays.push_back(&pre);
    }
    const uintptr_t stream = resolve_stream(stream_obj, x);
    if (B == 0 || OC == 0) return py::reinterpret_borrow<py::object>(out_obj);
    const int dev = common_device(arrays);
    run_on(dev, [&] {
        fastmlp::cuda::sgemm(false, true, B, OC, C, 1.0f, x.data(), C, w.data(), C, 0.0f, out.data(),
                             OC, epi, as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

}  // namespace

namespace fastmlp::bind {

void register_cuda_activations(py::module_& m) {
    const py::object none = py::none();
    m.def("act_forward", &act_forward_py, py::arg("input"), py::arg("act"), py::arg("p0"),
          py::arg("p1"), py::arg("out"), py::arg("stream") = none);
    m.def("act_backward", &act_backward_py, py::arg("grad"), py::arg("input"), py::arg("output"),
          py::arg("act"), py::arg("p0"), py::arg("p1"), py::arg("out"), py::arg("stream") = none);
    m.def("softmax_forward", &softmax_forward_py, py::arg("input"), py::arg("log"), py::arg("out"),
          py::arg("stream") = none);
    m.def("softmax_backward", &softmax_backward_py, py::arg("grad"), py::arg("output"),
          py::arg("log"), py::arg("out"), py::arg("stream") = none);
    m.def("linear_act_forward", &linear_act_forward_py, py::arg("x"), py::arg("weight"),
          py::arg("bias"), py::arg("out"), py::arg("act"), py::arg("p0"), py::arg("p1"),
          py::arg("pre_act") = none, py::arg("stream") = none);
}

}  // namespace fastmlp::bind
