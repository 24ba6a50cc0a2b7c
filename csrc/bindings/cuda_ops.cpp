// fastmlp._cuda ops: the glue over the CUDA kernels (csrc/include/fastmlp/cuda_*.h). Glue only:
// parse and check every array's __cuda_array_interface__ (metadata first, then devices), pick the
// stream, release the GIL, launch. Outputs are always passed in (fastmlp.ops_cuda allocates them
// with CuPy); each function returns its output object. Nothing here synchronises the device.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "cuda_array_checks.h"
#include "fastmlp/cuda_elementwise.h"
#include "fastmlp/cuda_gemm.h"

namespace py = pybind11;
using namespace fastmlp::bind::cu;

namespace fastmlp::bind {
void register_cuda_ops(py::module_& m);
}

namespace {

std::string dims(int64_t r, int64_t c) {
    return "(" + std::to_string(r) + ", " + std::to_string(c) + ")";
}

// out (M,N) = alpha * a (M,K) @ b (K,N) + beta * out (+ bias (N)), ReLU.
py::object gemm_py(py::handle a_obj, py::handle b_obj, py::handle out_obj, float alpha, float beta,
                py::handle bias_obj, bool relu, bool reference, py::handle stream_obj) {
    CudaArray a = cuda_array(a_obj, "a"), b = cuda_array(b_obj, "b"), out = cuda_array(out_obj, "out");
    const CudaMatrix ma = input_matrix(a), mb = input_matrix(b);
    if (ma.cols != mb.rows)
        throw py::value_error("matmul: shapes " + dims(ma.rows, ma.cols) + " and " +
                              dims(mb.rows, mb.cols) + " are not aligned: " +
                              std::to_string(ma.cols) + " (dim 1) != " + std::to_string(mb.rows) +
                              " (dim 0)");
    const int64_t M = ma.rows, N = mb.cols, K = ma.cols;
    const CudaOutMatrix mc = output_matrix(out);
    if (mc.rows != M || mc.cols != N)
        throw py::value_error("gemm: 'out' has shape " + shape_str(out.shape) + ", expected " +
                              dims(M, N));
    check_no_overlap(out, a, false);
    check_no_overlap(out, b, false);
    std::vector<const CudaArray*> arrays{&a, &b, &out};
    CudaArray bias;
    fastmlp::GemmEpilogue epi;
    epi.relu = relu;
    if (!bias_obj.is_none()) {
        bias = cuda_array(bias_obj, "bias");
        if (bias.shape.size() != 1 || bias.shape[0] != N)
            throw py::value_error("gemm: 'bias' must have shape (" + std::to_string(N) + ",), got " +
                                  shape_str(bias.shape));
        require_contiguous(bias);
        check_no_overlap(out, bias, false);
        epi.bias = bias.data();
        arrays.push_back(&bias);
    }
    const uintptr_t stream = resolve_stream(stream_obj, a);
    if (M == 0 || N == 0) return py::reinterpret_borrow<py::object>(out_obj);  // nothing to write
    const int dev = common_device(arrays);
    run_on(dev, [&] {
        auto f = reference ? &fastmlp::cuda::sgemm_reference : &fastmlp::cuda::sgemm;
        f(ma.trans, mb.trans, M, N, K, alpha, ma.ptr, ma.ld, mb.ptr, mb.ld, beta, mc.ptr, mc.ld, epi,
          as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

// Checks an elementwise output: writable, C-contiguous, shaped like `like`, overlapping it only as
// an exact alias.
void check_out_like(const CudaArray& out, const CudaArray& like) {
    require_writable(out);
    require_contiguous(out);
    check_same_shape(out, like);
    check_no_overlap(out, like, true);
}

py::object relu_forward_py(py::handle x_obj, py::handle out_obj, py::handle stream_obj) {
    CudaArray x = cuda_array(x_obj, "x"), out = cuda_array(out_obj, "out");
    require_contiguous(x);
    check_out_like(out, x);
    const uintptr_t stream = resolve_stream(stream_obj, x);
    const int dev = common_device({&x, &out});
    run_on(dev, [&] { fastmlp::cuda::relu_forward(out.data(), x.data(), x.size, as_stream(stream)); });
    return py::reinterpret_borrow<py::object>(out_obj);
}

py::object relu_backward_py(py::handle g_obj, py::handle y_obj, py::handle out_obj, py::handle stream_obj) {
    CudaArray g = cuda_array(g_obj, "grad"), y = cuda_array(y_obj, "y"), out = cuda_array(out_obj, "out");
    require_contiguous(g);
    require_contiguous(y);
    check_same_shape(g, y);
    check_out_like(out, g);
    check_no_overlap(out, y, true);
    const uintptr_t stream = resolve_stream(stream_obj, g);
    const int dev = common_device({&g, &y, &out});
    run_on(dev, [&] {
        fastmlp::cuda::relu_backward(out.data(), g.data(), y.data(), g.size, as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

py::object bias_forward_py(py::handle x_obj, py::handle bias_obj, py::handle out_obj, py::handle stream_obj) {
    CudaArray x = cuda_array(x_obj, "x"), bias = cuda_array(bias_obj, "bias"),
              out = cuda_array(out_obj, "out");
    require_ndim(x, 2, "(batch, features)");
    require_contiguous(x);
    require_contiguous(bias);
    if (bias.shape.size() != 1 || bias.shape[0] != x.shape[1])
        throw py::value_error("bias_add: 'bias' must have shape (" + std::to_string(x.shape[1]) +
                              ",) to match x of shape " + shape_str(x.shape) + ", got " +
                              shape_str(bias.shape));
    check_out_like(out, x);
    check_no_overlap(out, bias, false);
    const uintptr_t stream = resolve_stream(stream_obj, x);
    const int dev = common_device({&x, &bias, &out});
    run_on(dev, [&] {
        fastmlp::cuda::bias_forward(out.data(), x.data(), bias.data(), x.shape[0], x.shape[1],
                                    as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

py::object bias_backward_py(py::handle g_obj, py::handle out_obj, bool accumulate, py::handle stream_obj) {
    CudaArray g = cuda_array(g_obj, "grad"), out = cuda_array(out_obj, "out");
    require_ndim(g, 2, "(batch, features)");
    require_contiguous(g);
    require_writable(out);
    require_contiguous(out);
    if (out.shape.size() != 1 || out.shape[0] != g.shape[1])
        throw py::value_error("bias_grad: 'out' must have shape (" + std::to_string(g.shape[1]) +
                              ",), got " + shape_str(out.shape));
    check_no_overlap(out, g, false);
    const uintptr_t stream = resolve_stream(stream_obj, g);
    const int dev = common_device({&g, &out});
    run_on(dev, [&] {
        fastmlp::cuda::bias_backward(out.data(), g.data(), g.shape[0], g.shape[1], accumulate,
                                     as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

// out: a float32 device scalar (shape () or (1,)) receiving the mean squared error.
py::object mse_forward_py(py::handle p_obj, py::handle t_obj, py::handle out_obj, py::handle stream_obj) {
    CudaArray p = cuda_array(p_obj, "input"), t = cuda_array(t_obj, "target"),
              out = cuda_array(out_obj, "out");
    require_contiguous(p);
    require_contiguous(t);
    check_same_shape(p, t);
    require_writable(out);
    if (out.size != 1)
        throw py::value_error("mse_forward: 'out' must be a float32 scalar (shape () or (1,)), got "
                              "shape " + shape_str(out.shape));
    check_no_overlap(out, p, false);
    check_no_overlap(out, t, false);
    const uintptr_t stream = resolve_stream(stream_obj, p);
    const int dev = common_device({&p, &t, &out});
    run_on(dev, [&] {
        fastmlp::cuda::mse_forward(out.data(), nullptr, p.data(), t.data(), p.size, as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

py::object mse_backward_py(py::handle p_obj, py::handle t_obj, float scale, py::handle out_obj,
                        py::handle stream_obj) {
    CudaArray p = cuda_array(p_obj, "input"), t = cuda_array(t_obj, "target"),
              out = cuda_array(out_obj, "out");
    require_contiguous(p);
    require_contiguous(t);
    check_same_shape(p, t);
    check_out_like(out, p);
    check_no_overlap(out, t, true);
    const uintptr_t stream = resolve_stream(stream_obj, p);
    const int dev = common_device({&p, &t, &out});
    run_on(dev, [&] {
        fastmlp::cuda::mse_backward(out.data(), p.data(), t.data(), p.size, scale, as_stream(stream));
    });
    return py::reinterpret_borrow<py::object>(out_obj);
}

fastmlp::SgdOptions sgd_options(float lr, float momentum, float dampening, float weight_decay,
                                bool nesterov, bool maximize) {
    if (nesterov && (momentum <= 0.0f || dampening != 0.0f))
        throw py::value_error("sgd_step: nesterov momentum requires a momentum and zero dampening");
    fastmlp::SgdOptions o;
    o.lr = lr;
    o.momentum = momentum;
    o.dampening = dampening;
    o.weight_decay = weight_decay;
    o.nesterov = nesterov;
    o.maximize = maximize;
    return o;
}

// Checks one (param, grad, buf) triple; buf.size stays 0 (unused) when momentum == 0.
void check_sgd_triple(const CudaArray& p, const CudaArray& g, const CudaArray* b) {
    require_writable(p);
    require_contiguous(p);
    require_contiguous(g);
    check_same_shape(p, g);
    check_no_overlap(p, g, false);
    if (b) {
        require_writable(*b);
        require_contiguous(*b);
        check_same_shape(p, *b);
        check_no_overlap(*b, p, false);
        check_no_overlap(*b, g, false);
    }
}

void sgd_step_py(py::handle p_obj, py::handle g_obj, py::handle b_obj, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool maximize, bool first_step,
              py::handle stream_obj) {
    CudaArray p = cuda_array(p_obj, "param"), g = cuda_array(g_obj, "grad"), b;
    const bool use_buf = momentum != 0.0f;
    if (use_buf) {
        if (b_obj.is_none())
            throw py::value_error("sgd_step: momentum != 0 needs a 'momentum_buffer' array");
        b = cuda_array(b_obj, "momentum_buffer");
    }
    check_sgd_triple(p, g, use_buf ? &b : nullptr);
    const fastmlp::SgdOptions o = sgd_options(lr, momentum, dampening, weight_decay, nesterov, maximize);
    const uintptr_t stream = resolve_stream(stream_obj, p);
    std::vector<const CudaArray*> arrays{&p, &g};
    if (use_buf) arrays.push_back(&b);
    const int dev = common_device(arrays);
    run_on(dev, [&] {
        fastmlp::cuda::sgd_step(p.data(), g.data(), use_buf ? b.data() : nullptr, p.size, o,
                                first_step, as_stream(stream));
    });
}

// One launch for every parameter: params[i] -= lr * step(grads[i], momentum_buffers[i]).
void sgd_step_many_py(py::sequence params, py::sequence grads, py::object bufs_obj, float lr,
                   float momentum, float dampening, float weight_decay, bool nesterov,
                   bool maximize, bool first_step, py::handle stream_obj) {
    const size_t n = py::len(params);
    if (py::len(grads) != n)
        throw py::value_error("sgd_step_many: got " + std::to_string(n) + " params but " +
                              std::to_string(py::len(grads)) + " grads");
    const bool use_buf = momentum != 0.0f;
    py::sequence bufs;
    if (use_buf) {
        if (bufs_obj.is_none())
            throw py::value_error("sgd_step_many: momentum != 0 needs 'momentum_buffers'");
        bufs = py::reinterpret_borrow<py::sequence>(bufs_obj);
        if (py::len(bufs) != n)
            throw py::value_error("sgd_step_many: got " + std::to_string(n) + " params but " +
                                  std::to_string(py::len(bufs)) + " momentum_buffers");
    }
    const fastmlp::SgdOptions o = sgd_options(lr, momentum, dampening, weight_decay, nesterov, maximize);
    std::vector<CudaArray> ps(n), gs(n), bs(use_buf ? n : 0);
    std::vector<std::string> names;
    for (size_t i = 0; i < n; ++i) {
        const std::string idx = "[" + std::to_string(i) + "]";
        ps[i] = cuda_array(params[i], ("params" + idx).c_str());
        gs[i] = cuda_array(grads[i], ("grads" + idx).c_str());
        if (use_buf) bs[i] = cuda_array(bufs[i], ("momentum_buffers" + idx).c_str());
        check_sgd_triple(ps[i], gs[i], use_buf ? &bs[i] : nullptr);
    }
    // Parameters must not overlap each other either (each is updated independently).
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j) {
            check_no_overlap(ps[i], ps[j], false);
            check_no_overlap(ps[i], gs[j], false);
            check_no_overlap(ps[j], gs[i], false);
            if (use_buf) {
                check_no_overlap(bs[i], bs[j], false);
                check_no_overlap(bs[i], ps[j], false);
                check_no_overlap(bs[j], ps[i], false);
            }
        }
    if (n == 0) return;
    if (n > size_t(1) << 30) throw py::value_error("sgd_step_many: too many parameters");
    std::vector<const CudaArray*> arrays;
    std::vector<fastmlp::cuda::SgdParam> table(n);
    for (size_t i = 0; i < n; ++i) {
        arrays.push_back(&ps[i]);
        arrays.push_back(&gs[i]);
        if (use_buf) arrays.push_back(&bs[i]);
        table[i] = {ps[i].data(), gs[i].data(), use_buf ? bs[i].data() : nullptr, ps[i].size};
    }
    const uintptr_t stream = resolve_stream(stream_obj, ps[0]);
    const int dev = common_device(arrays);
    run_on(dev, [&] {
        fastmlp::cuda::sgd_step_list(table.data(), int(n), o, first_step, as_stream(stream));
    });
}

}  // namespace

namespace fastmlp::bind {

void register_cuda_ops(py::module_& m) {
    const auto none = py::none();
    m.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha") = 1.0f,
          py::arg("beta") = 0.0f, py::arg("bias") = none, py::arg("relu") = false,
          py::arg("reference") = false, py::arg("stream") = none,
          "out = alpha * a @ b + beta * out (+ bias per column, then ReLU), on the GPU. a, b: 2-D "
          "float32 GPU arrays; transposed views are read in place. Returns out.");
    m.def("relu_forward", &relu_forward_py, py::arg("x"), py::arg("out"), py::arg("stream") = none);
    m.def("relu_backward", &relu_backward_py, py::arg("grad"), py::arg("y"), py::arg("out"),
          py::arg("stream") = none);
    m.def("bias_forward", &bias_forward_py, py::arg("x"), py::arg("bias"), py::arg("out"),
          py::arg("stream") = none);
    m.def("bias_backward", &bias_backward_py, py::arg("grad"), py::arg("out"),
          py::arg("accumulate") = false, py::arg("stream") = none);
    m.def("mse_forward", &mse_forward_py, py::arg("input"), py::arg("target"), py::arg("out"),
          py::arg("stream") = none);
    m.def("mse_backward", &mse_backward_py, py::arg("input"), py::arg("target"), py::arg("scale"),
          py::arg("out"), py::arg("stream") = none);
    m.def("sgd_step", &sgd_step_py, py::arg("param"), py::arg("grad"),
          py::arg("momentum_buffer") = none, py::arg("lr") = 0.01f, py::arg("momentum") = 0.0f,
          py::arg("dampening") = 0.0f, py::arg("weight_decay") = 0.0f, py::arg("nesterov") = false,
          py::arg("maximize") = false, py::arg("first_step") = false, py::arg("stream") = none);
    m.def("sgd_step_many", &sgd_step_many_py, py::arg("params"), py::arg("grads"),
          py::arg("momentum_buffers") = none, py::arg("lr") = 0.01f, py::arg("momentum") = 0.0f,
          py::arg("dampening") = 0.0f, py::arg("weight_decay") = 0.0f, py::arg("nesterov") = false,
          py::arg("maximize") = false, py::arg("first_step") = false, py::arg("stream") = none,
          "One torch.optim.SGD step for every parameter in a single kernel launch.");
    m.def("sgemm_plan", [](int64_t M, int64_t N, int64_t K) {
        return std::string(fastmlp::cuda::sgemm_plan(M, N, K));
    }, py::arg("M"), py::arg("N"), py::arg("K"), "The SGEMM tiling chosen for this shape on the current device.");
}

}  // namespace fastmlp::bind
