// fastmlp._C: the pybind11 glue over the CPU kernel library. Glue only: check arguments
// (array_checks.h), release the GIL, call the kernel. Each family registers itself from its own
// cpu_*.cpp file; this one holds the module, the configuration queries and the core ops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <stdexcept>
#include <utility>
#include <string>

#include "array_checks.h"
#include "fastmlp/cpu_features.h"
#include "fastmlp/elementwise.h"
#include "fastmlp/mlp.h"
#include "fastmlp/gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef FASTMLP_VERSION
#define FASTMLP_VERSION "dev"
#endif
#ifndef FASTMLP_CXX_COMPILER
#define FASTMLP_CXX_COMPILER "unknown"
#endif

namespace py = pybind11;
using namespace fastmlp;
using namespace fastmlp::bind;

namespace fastmlp::bind {
// Other families register from their own files (declared here, defined there).
void register_mlp(py::module_& m);
void register_mlp_fit(py::module_& m);  // cpu_mlp_fit.cpp
void register_layers(py::module_& m);
void register_gemm_fast(py::module_& m);  // cpu_gemm_fast.cpp
void register_losses(py::module_& m);     // cpu_losses.cpp
void register_optimizers(py::module_& m);  // cpu_optimizers.cpp
void register_activations(py::module_& m);  // cpu_activations.cpp
void register_infer(py::module_& m);  // cpu_infer.cpp
}  // namespace fastmlp::bind

namespace {

// ---- gemm --------------------------------------------------------------------------------
// out (M,N) = alpha * a (M,K) @ b (K,N) + beta * out, + bias (N), relu.
// a and b are logical views: a transposed view (w.T) becomes a transpose flag, not a copy.
py::array gemm(py::handle a_obj, py::handle b_obj, py::handle out_obj, float alpha, float beta,
               py::handle bias_obj, bool relu, bool reference, const std::string& a_name,
               const std::string& b_name) {
    // Every check runs on the arguments as given, before an input is copied (input_matrix copies
    // odd layouts): a bad call must not first materialise a huge broadcast view.
    const char *an = a_name.c_str(), *bn = b_name.c_str();
    py::array ra = as_f32_array(a_obj, an), rb = as_f32_array(b_obj, bn);
    for (auto [arr, nm] : {std::pair<const py::array&, const char*>{ra, an}, {rb, bn}})
        if (arr.ndim() != 2)
            throw py::value_error(std::string("argument '") + nm + "' must be 2-D, got shape " +
                                  shape_str(arr));
    if (ra.shape(1) != rb.shape(0))
        throw py::value_error("matmul: shapes (" + std::to_string(ra.shape(0)) + ", " +
                              std::to_string(ra.shape(1)) + ") and (" + std::to_string(rb.shape(0)) +
                              ", " + std::to_string(rb.shape(1)) + ") are not aligned: " +
                              std::to_string(ra.shape(1)) + " (dim 1) != " +
                              std::to_string(rb.shape(0)) + " (dim 0)");
    const int64_t M = ra.shape(0), N = rb.shape(1), K = ra.shape(1);
    py::array out;
    if (out_obj.is_none()) {
        if (beta != 0.0f)
            throw py::value_error("gemm: beta != 0 needs an 'out' array to accumulate into");
        out = py::array_t<float>({M, N});
    } else {
        out = py::reinterpret_borrow<py::array>(out_obj);
    }
    OutMatrix c = output_matrix(out, "out");
    if (c.rows != M || c.cols != N)
        throw py::value_error("gemm: 'out' has shape " + shape_str(c.arr) + ", expected (" +
                              std::to_string(M) + ", " + std::to_string(N) + ")");
    if (!bias_obj.is_none()) {
        py::array rbias = as_f32_array(bias_obj, "bias");
        if (rbias.ndim() != 1 || rbias.shape(0) != N)
            throw py::value_error("gemm: 'bias' must have shape (" + std::to_string(N) +
                                  ",), got " + shape_str(rbias));
    }
    Matrix a = input_matrix(ra, an);
    Matrix b = input_matrix(rb, bn);
    check_no_overlap(c.arr, "out", py::reinterpret_borrow<py::array>(a.keep), an, false);
    check_no_overlap(c.arr, "out", py::reinterpret_borrow<py::array>(b.keep), bn, false);
    GemmEpilogue epi;
    epi.relu = relu;
    py::array bias;
    if (!bias_obj.is_none()) {
        bias = input_contiguous(bias_obj, "bias");
        if (bias.ndim() != 1 || bias.shape(0) != N)
            throw py::value_error("gemm: 'bias' must have shape (" + std::to_string(N) +
                                  ",), got " + shape_str(bias));
        check_no_overlap(c.arr, "out", bias, "bias", false);
        epi.bias = static_cast<const float*>(bias.data());
    }
    {
        py::gil_scoped_release nogil;
        if (reference)
            sgemm_reference(a.trans, b.trans, M, N, K, alpha, a.ptr, a.ld, b.ptr, b.ld, beta, c.ptr,
                            c.ld, epi);
        else
            sgemm(a.trans, b.trans, M, N, K, alpha, a.ptr, a.ld, b.ptr, b.ld, beta, c.ptr, c.ld, epi);
    }
    return out;
}

// Checks a given `out` against the argument as passed (before that argument is copied to
// contiguous memory): writable, C-contiguous float32, same shape.
void check_out_like(py::handle out_obj, const py::array& like, const char* like_name) {
    if (out_obj.is_none()) return;
    check_same_shape(output_contiguous(out_obj, "out"), "out", like, like_name);
}

// Returns `out` if given (checked: writable, C-contiguous float32, same shape as `like`, and
// overlapping `like` only as an exact alias), else a fresh array shaped like `like`.
py::array out_like(py::handle out_obj, const py::array& like, const char* like_name) {
    if (out_obj.is_none()) {
        std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
        return py::array_t<float>(shape);
    }
    py::array out = output_contiguous(out_obj, "out");
    check_same_shape(out, "out", like, like_name);
    check_no_overlap(out, "out", like, like_name, true);
    return out;
}

py::array relu_forward_py(py::handle x_obj, py::handle out_obj) {
    check_out_like(out_obj, as_f32_array(x_obj, "x"), "x");
    py::array x = input_contiguous(x_obj, "x");
    py::array out = out_like(out_obj, x, "x");
    const float* xp = static_cast<const float*>(x.data());
    float* op = static_cast<float*>(out.mutable_data());
    const int64_t n = x.size();
    py::gil_scoped_release nogil;
    relu_forward(op, xp, n);
    return out;
}

py::array relu_backward_py(py::handle grad_obj, py::handle y_obj, py::handle out_obj) {
    check_same_shape(as_f32_array(grad_obj, "grad"), "grad", as_f32_array(y_obj, "y"), "y");
    check_out_like(out_obj, as_f32_array(grad_obj, "grad"), "grad");
    py::array g = input_contiguous(grad_obj, "grad");
    py::array y = input_contiguous(y_obj, "y");
    py::array out = out_like(out_obj, g, "grad");
    check_no_overlap(out, "out", y, "y", true);
    const float *gp = static_cast<const float*>(g.data()), *yp = static_cast<const float*>(y.data());
    float* op = static_cast<float*>(out.mutable_data());
    const int64_t n = g.size();
    py::gil_scoped_release nogil;
    relu_backward(op, gp, yp, n);
    return out;
}

py::array bias_forward_py(py::handle x_obj, py::handle bias_obj, py::handle out_obj) {
    py::array x = as_f32_array(x_obj, "x");
    py::array bias = as_f32_array(bias_obj, "bias");
    if (x.ndim() != 2)
        throw py::value_error("bias_add: 'x' must be 2-D (batch, features), got shape " + shape_str(x));
    if (bias.ndim() != 1 || bias.shape(0) != x.shape(1))
        throw py::value_error("bias_add: 'bias' must have shape (" + std::to_string(x.shape(1)) +
                              ",) to match x of shape " + shape_str(x) + ", got " + shape_str(bias));
    check_out_like(out_obj, x, "x");
    x = input_contiguous(x, "x");
    bias = input_contiguous(bias, "bias");
    py::array out = out_like(out_obj, x, "x");
    check_no_overlap(out, "out", bias, "bias", false);
    const float *xp = static_cast<const float*>(x.data()), *bp = static_cast<const float*>(bias.data());
    float* op = static_cast<float*>(out.mutable_data());
    const int64_t B = x.shape(0), C = x.shape(1);
    py::gil_scoped_release nogil;
    bias_forward(op, xp, bp, B, C);
    return out;
}

py::array bias_backward_py(py::handle grad_obj, py::handle out_obj, bool accumulate) {
    py::array g = as_f32_array(grad_obj, "grad");
    if (g.ndim() != 2)
        throw py::value_error("bias_grad: 'grad' must be 2-D (batch, features), got shape " + shape_str(g));
    const int64_t B = g.shape(0), C = g.shape(1);
    py::array out;
    if (out_obj.is_none()) {
        if (accumulate) throw py::value_error("bias_grad: accumulate=True needs an 'out' array");
        out = py::array_t<float>({C});
    } else {
        out = output_contiguous(out_obj, "out");
        if (out.ndim() != 1 || out.shape(0) != C)
            throw py::value_error("bias_grad: 'out' must have shape (" + std::to_string(C) +
                                  ",), got " + shape_str(out));
    }
    g = input_contiguous(g, "grad");
    if (!out_obj.is_none()) check_no_overlap(out, "out", g, "grad", false);
    const float* gp = static_cast<const float*>(g.data());
    float* op = static_cast<float*>(out.mutable_data());
    py::gil_scoped_release nogil;
    bias_backward(op, gp, B, C, accumulate);
    return out;
}

double mse_forward_py(py::handle pred_obj, py::handle target_obj) {
    check_same_shape(as_f32_array(pred_obj, "input"), "input", as_f32_array(target_obj, "target"),
                     "target");
    py::array p = input_contiguous(pred_obj, "input");
    py::array t = input_contiguous(target_obj, "target");
    check_same_shape(p, "input", t, "target");
    const float *pp = static_cast<const float*>(p.data()), *tp = static_cast<const float*>(t.data());
    const int64_t n = p.size();
    py::gil_scoped_release nogil;
    return mse_forward(pp, tp, n);
}

py::array mse_backward_py(py::handle pred_obj, py::handle target_obj, float scale, py::handle out_obj) {
    check_same_shape(as_f32_array(pred_obj, "input"), "input", as_f32_array(target_obj, "target"),
                     "target");
    check_out_like(out_obj, as_f32_array(pred_obj, "input"), "input");
    py::array p = input_contiguous(pred_obj, "input");
    py::array t = input_contiguous(target_obj, "target");
    check_same_shape(p, "input", t, "target");
    py::array out = out_like(out_obj, p, "input");
    check_no_overlap(out, "out", t, "target", true);
    const float *pp = static_cast<const float*>(p.data()), *tp = static_cast<const float*>(t.data());
    float* op = static_cast<float*>(out.mutable_data());
    const int64_t n = p.size();
    py::gil_scoped_release nogil;
    mse_backward(op, pp, tp, n, scale);
    return out;
}

void sgd_step_py(py::handle param_obj, py::handle grad_obj, py::handle buf_obj, float lr,
                 float momentum, float dampening, float weight_decay, bool nesterov, bool maximize,
                 bool first_step) {
    py::array p = output_contiguous(param_obj, "param");
    check_same_shape(p, "param", as_f32_array(grad_obj, "grad"), "grad");
    if (momentum < 0.0f || std::isnan(momentum))
        throw py::value_error("sgd_step: invalid momentum value: " + std::to_string(momentum));
    if (weight_decay < 0.0f || std::isnan(weight_decay))
        throw py::value_error("sgd_step: invalid weight_decay value: " + std::to_string(weight_decay));
    py::array g = input_contiguous(grad_obj, "grad");
    check_no_overlap(p, "param", g, "grad", false);
    float* bp = nullptr;
    py::array b;
    if (momentum != 0.0f) {
        if (buf_obj.is_none())
            throw py::value_error("sgd_step: momentum != 0 needs a 'momentum_buffer' array");
        b = output_contiguous(buf_obj, "momentum_buffer");
        check_same_shape(p, "param", b, "momentum_buffer");
        check_no_overlap(b, "momentum_buffer", p, "param", false);
        check_no_overlap(b, "momentum_buffer", g, "grad", false);
        bp = static_cast<float*>(b.mutable_data());
    }
    if (nesterov && (momentum <= 0.0f || dampening != 0.0f))
        throw py::value_error("sgd_step: nesterov momentum requires a momentum and zero dampening");
    SgdOptions o;
    o.lr = lr;
    o.momentum = momentum;
    o.dampening = dampening;
    o.weight_decay = weight_decay;
    o.nesterov = nesterov;
    o.maximize = maximize;
    float* pp = static_cast<float*>(p.mutable_data());
    const float* gp = static_cast<const float*>(g.data());
    const int64_t n = p.size();
    py::gil_scoped_release nogil;
    sgd_step(pp, gp, bp, n, o, first_step);
}

py::dict build_info() {
    py::dict d;
    d["version"] = FASTMLP_VERSION;
    d["compiler"] = FASTMLP_CXX_COMPILER;
#ifdef _OPENMP
    d["openmp"] = std::to_string(_OPENMP);
#else
    d["openmp"] = py::none();
#endif
#ifdef FASTMLP_HAVE_X86_KERNELS
    d["x86_kernels"] = true;
#else
    d["x86_kernels"] = false;
#endif
    return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "fastmlp CPU kernels (pybind11 glue; see fastmlp.ops for the Python API)";

    m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
          py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("bias") = py::none(),
          py::arg("relu") = false, py::arg("reference") = false, py::arg("a_name") = "a",
          py::arg("b_name") = "b",
          "out = alpha * a @ b + beta * out (+ bias per column, then ReLU). a, b: 2-D float32; "
          "transposed views are read in place.");
    // The binding above stays reachable as _gemm_checked (its name, and so its messages, still
    // say gemm); _C.gemm becomes the CPython fast path that takes the common case and hands
    // everything else to it.
    m.attr("_gemm_checked") = m.attr("gemm");
    register_gemm_fast(m);
    m.def("relu_forward", &relu_forward_py, py::arg("x"), py::arg("out") = py::none());
    m.def("relu_backward", &relu_backward_py, py::arg("grad"), py::arg("y"), py::arg("out") = py::none());
    m.def("bias_forward", &bias_forward_py, py::arg("x"), py::arg("bias"), py::arg("out") = py::none());
    m.def("bias_backward", &bias_backward_py, py::arg("grad"), py::arg("out") = py::none(),
          py::arg("accumulate") = false);
    m.def("mse_forward", &mse_forward_py, py::arg("input"), py::arg("target"));
    m.def("mse_backward", &mse_backward_py, py::arg("input"), py::arg("target"), py::arg("scale"),
          py::arg("out") = py::none());
    m.def("sgd_step", &sgd_step_py, py::arg("param"), py::arg("grad"),
          py::arg("momentum_buffer") = py::none(), py::arg("lr") = 0.01f, py::arg("momentum") = 0.0f,
          py::arg("dampening") = 0.0f, py::arg("weight_decay") = 0.0f, py::arg("nesterov") = false,
          py::arg("maximize") = false, py::arg("first_step") = false);

    m.def("build_info", &build_info);
    m.def("scratch_cached_bytes", [] { return mlp_scratch_cached_bytes(); },
          "Bytes of scratch the calling thread keeps for its next fit call (at most 64 MiB).");
    m.def("current_isa", [] { return std::string(isa_name(current_isa())); });
    m.def("supported_isas", [] {
        std::vector<std::string> v;
        for (Isa i : supported_isas()) v.push_back(isa_name(i));
        return v;
    });
    m.def("set_isa", [](const std::string& name) {
        Isa isa;
        try {
            isa = isa_from_name(name);
        } catch (const std::invalid_argument& e) {
            throw py::value_error(e.what());
        }
        set_isa(isa);
    }, py::arg("name"));
    m.def("get_num_threads", &get_num_threads);
    m.def("max_threads", &max_threads);
    m.def("in_forked_child", &in_forked_child);
    m.def("set_num_threads", [](int64_t n) {
        if (n < 1 || n > max_threads())
            throw py::value_error("set_num_threads: n must be between 1 and " +
                                  std::to_string(max_threads()) + " (4 per CPU), got " +
                                  std::to_string(n));
        set_num_threads(int(n));
    }, py::arg("n"));

    register_mlp(m);
    register_mlp_fit(m);
    register_layers(m);
    register_losses(m);
    register_optimizers(m);
    register_activations(m);
    register_infer(m);
}
