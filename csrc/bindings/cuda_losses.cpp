// fastmlp._cuda: bindings of the CUDA loss kernels (cuda_losses.h). Glue only: metadata checks
// (dtype, shape, contiguity, writability, aliasing, device) before any launch; outputs are passed
// in (allocated by fastmlp.ops_cuda with CuPy). Class indices are not range-checked here (that
// would need a device round trip; fastmlp.ops_cuda checks them): the kernels turn an out-of-range
// class into NaN instead of reading out of bounds.
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "cuda_array_checks.h"
#include "fastmlp/cuda_losses.h"

namespace py = pybind11;
using namespace fastmlp::bind::cu;

namespace fastmlp::bind {
void register_cuda_losses(py::module_& m);
}

namespace {

struct CeShape {
    int64_t N = 0, C = 0, D = 1;
};
CeShape ce_shape(const CudaArray& x) {
    if (x.shape.size() < 2)
        throw py::value_error("cross_entropy: 'input' must have shape (N, C) or (N, C, d1, ...), "
                              "got " + shape_str(x.shape));
    CeShape s;
    s.N = x.shape[0];
    s.C = x.shape[1];
    for (size_t i = 2; i < x.shape.size(); ++i) s.D *= x.shape[i];
    return s;
}

std::vector<int64_t> rows_shape(const CudaArray& x) {
    std::vector<int64_t> r;
    for (size_t i = 0; i < x.shape.size(); ++i)
        if (i != 1) r.push_back(x.shape[i]);
    return r;
}

void require_shape(const CudaArray& a, const std::vector<int64_t>& want, const char* what) {
    if (a.shape != want)
        throw py::value_error(std::string(what) + ": '" + a.name + "' must have shape " +
                              shape_str(want) + ", got " + shape_str(a.shape));
}

// Optional float32 input (None -> not used), C-contiguous.
bool opt_in(py::handle obj, const char* name, CudaArray& a, std::vector<const CudaArray*>& all) {
    if (obj.is_none()) return false;
    a = cuda_array(obj, name);
    require_contiguous(a);
    all.push_back(&a);
    return true;
}

// Optional float32 output shaped `want` (None -> not written).
bool opt_out(py::handle obj, const char* name, CudaArray& a, const std::vector<int64_t>& want,
             std::vector<const CudaArray*>& all, const char* what) {
    if (obj.is_none()) return false;
    a = cuda_array(obj, name);
    require_writable(a);
    require_contiguous(a);
    require_shape(a, want, what);
    for (const CudaArray* other : all) check_no_overlap(a, *other, false);
    all.push_back(&a);
    return true;
}

// sums: a writable float64 device array of `n` elements.
CudaArray sums_array(py::handle obj, int64_t n, const char* what) {
    CudaArray s = cuda_array_of(obj, "sums", CudaDtype::f64);
    require_writable(s);
    require_contiguous(s);
    if (s.size != n)
        throw py::value_error(std::string(what) + ": 'sums' must be a float64 array of " +
                              std::to_string(n) + " elements, got shape " + shape_str(s.shape));
    return s;
}

void check_smoothing(float s) {
    if (!(s >= 0.0f && s <= 1.0f))
        throw py::value_error("cross_entropy: label_smoothing must be between 0.0 and 1.0, got " +
                              std::to_string(s));
}

// What both cross-entropy forms check after 'input' and 'target', in this order: weight (C,),
// grad_rows (one element per row), sums (n_sums float64), the optional outputs rows and dinput,
// then the stream and the device (0 when every array is empty).
struct CeArgs {
    CudaArray w, dr, sums, rows, dx;
    bool has_w = false, has_dr = false, has_rows = false, has_dx = false;
    uintptr_t stream = 0;
    int dev = 0;
};
void ce_check_rest(CeArgs& a, const CudaArray& x, const CudaArray& t, const CeShape& s,
                   py::handle w_obj, py::handle drow_obj, py::handle sums_obj, int64_t n_sums,
                   py::handle rows_obj, py::handle dx_obj, py::handle stream_obj) {
    const char* what = "cross_entropy";
    std::vector<const CudaArray*> all{&x, &t};
    a.has_w = opt_in(w_obj, "weight", a.w, all);
    if (a.has_w) require_shape(a.w, {s.C}, what);
    a.has_dr = opt_in(drow_obj, "grad_rows", a.dr, all);
    if (a.has_dr && a.dr.size != s.N * s.D)
        throw py::value_error("cross_entropy: 'grad_rows' must have one element per row (" +
                              std::to_string(s.N * s.D) + "), got shape " + shape_str(a.dr.shape));
    a.sums = sums_array(sums_obj, n_sums, what);
    for (const CudaArray* other : all) check_no_overlap(a.sums, *other, false);
    all.push_back(&a.sums);
    a.has_rows = opt_out(rows_obj, "rows", a.rows, rows_shape(x), all, what);
    a.has_dx = opt_out(dx_obj, "dinput", a.dx, x.shape, all, what);
    a.stream = resolve_stream(stream_obj, x);
    const int dev = common_device(all);
    a.dev = dev < 0 ? 0 : dev;
}

// sums (2,) float64 <- (loss_sum, weight_sum); rows (N, d...) and dinput (input's shape) optional.
void ce_forward_backward_py(py::handle x_obj, py::handle t_obj, py::handle w_obj,
                            py::handle drow_obj, double scale, bool divide_by_weight_sum,
                            int64_t ignore_index, float ls, py::handle sums_obj,
                            py::handle rows_obj, py::handle dx_obj, py::handle stream_obj) {
    const char* what = "cross_entropy";
    check_smoothing(ls);
    CudaArray x = cuda_array(x_obj, "input");
    require_contiguous(x);
    const CeShape s = ce_shape(x);
    CudaArray t = cuda_array_of(t_obj, "target", CudaDtype::i64);
    require_contiguous(t);
    require_shape(t, rows_shape(x), what);
    CeArgs a;
    ce_check_rest(a, x, t, s, w_obj, drow_obj, sums_obj, 2, rows_obj, dx_obj, stream_obj);
    double* sp = reinterpret_cast<double*>(a.sums.ptr);
    run_on(a.dev, [&] {
        fastmlp::cuda::cross_entropy_forward_backward(
            a.has_dx ? a.dx.data() : nullptr, a.has_rows ? a.rows.data() : nullptr, sp, sp + 1,
            x.data(), reinterpret_cast<const int64_t*>(t.ptr), a.has_w ? a.w.data() : nullptr,
            a.has_dr ? a.dr.data() : nullptr, scale, divide_by_weight_sum, s.N, s.C, s.D,
            ignore_index, ls, as_stream(a.stream));
    });
}

void ce_prob_forward_backward_py(py::handle x_obj, py::handle t_obj, py::handle w_obj,
                                 py::handle drow_obj, double scale, float ls, py::handle sums_obj,
                                 py::handle rows_obj, py::handle dx_obj, py::handle stream_obj) {
    const char* what = "cross_entropy";
    check_smoothing(ls);
    CudaArray x = cuda_array(x_obj, "input");
    require_contiguous(x);
    const CeShape s = ce_shape(x);
    CudaArray t = cuda_array(t_obj, "target");
    require_contiguous(t);
    require_shape(t, x.shape, what);
    CeArgs a;
    ce_check_rest(a, x, t, s, w_obj, drow_obj, sums_obj, 1, rows_obj, dx_obj, stream_obj);
    run_on(a.dev, [&] {
        fastmlp::cuda::cross_entropy_prob_forward_backward(
            a.has_dx ? a.dx.data() : nullptr, a.has_rows ? a.rows.data() : nullptr,
            reinterpret_cast<double*>(a.sums.ptr), x.data(), t.data(),
            a.has_w ? a.w.data() : nullptr, a.has_dr ? a.dr.data() : nullptr, scale, s.N, s.C,
            s.D, ls, as_stream(a.stream));
    });
}

fastmlp::LossParams elem_params(int kind, float p0) {
    if (kind < 0 || kind >= fastmlp::kLossCount || kind == int(fastmlp::Loss::cross_entropy))
        throw py::value_error("loss_elementwise: 'kind' must be an element-wise loss code, got " +
                              std::to_string(kind));
    fastmlp::LossParams p;
    p.kind = fastmlp::Loss(kind);
    p.p0 = p0;
    return p;
}

struct Elem {
    CudaArray x, t, w, pw, dout;
    bool has_w = false, has_pw = false, has_dout = false;
    int64_t P = 1;
    std::vector<const CudaArray*> all;
};

void elem_inputs(Elem& e, py::handle x_obj, py::handle t_obj, py::handle w_obj, py::handle pw_obj,
                 py::handle dout_obj) {
    e.x = cuda_array(x_obj, "input");
    e.t = cuda_array(t_obj, "target");
    require_contiguous(e.x);
    require_contiguous(e.t);
    check_same_shape(e.x, e.t);
    e.all = {&e.x, &e.t};
    e.has_w = opt_in(w_obj, "weight", e.w, e.all);
    if (e.has_w) check_same_shape(e.x, e.w);
    e.has_dout = opt_in(dout_obj, "grad_output", e.dout, e.all);
    if (e.has_dout) check_same_shape(e.x, e.dout);
    e.has_pw = opt_in(pw_obj, "pos_weight", e.pw, e.all);
    if (e.has_pw) {
        const int64_t last = e.x.shape.empty() ? 1 : e.x.shape.back();
        if (e.pw.shape == e.x.shape) {
            e.P = std::max<int64_t>(e.x.size, 1);
        } else if (e.pw.shape.size() == 1 && e.pw.shape[0] == last) {
            e.P = std::max<int64_t>(last, 1);
        } else {
            throw py::value_error("loss_elementwise: 'pos_weight' must have shape (" +
                                  std::to_string(last) + ",) or the input's shape " +
                                  shape_str(e.x.shape) + ", got " + shape_str(e.pw.shape));
        }
    }
}

void elem_forward_py(int kind, py::handle x_obj, py::handle t_obj, py::handle w_obj,
                     py::handle pw_obj, float p0, py::handle sums_obj, py::handle out_obj,
                     py::handle stream_obj) {
    const fastmlp::LossParams p = elem_params(kind, p0);
    Elem e;
    elem_inputs(e, x_obj, t_obj, w_obj, pw_obj, py::none());
    CudaArray sums = sums_array(sums_obj, 1, "loss_elementwise");
    for (const CudaArray* other : e.all) check_no_overlap(sums, *other, false);
    e.all.push_back(&sums);
    CudaArray out;
    const bool has_out = opt_out(out_obj, "out", out, e.x.shape, e.all, "loss_elementwise");
    const uintptr_t stream = resolve_stream(stream_obj, e.x);
    const int dev = common_device(e.all);
    run_on(dev < 0 ? 0 : dev, [&] {
        fastmlp::cuda::loss_elementwise_forward(
            has_out ? out.data() : nullptr, reinterpret_cast<double*>(sums.ptr), e.x.data(),
            e.t.data(), e.has_w ? e.w.data() : nullptr, e.has_pw ? e.pw.data() : nullptr, e.x.size,
            e.P, p, as_stream(stream));
    });
}

void elem_backward_py(int kind, py::handle x_obj, py::handle t_obj, py::handle w_obj,
                      py::handle pw_obj, py::handle dout_obj, float p0, float scale,
                      py::handle dx_obj, py::handle stream_obj) {
    const fastmlp::LossParams p = elem_params(kind, p0);
    Elem e;
    elem_inputs(e, x_obj, t_obj, w_obj, pw_obj, dout_obj);
    CudaArray dx = cuda_array(dx_obj, "dinput");
    require_writable(dx);
    require_contiguous(dx);
    check_same_shape(dx, e.x);
    check_no_overlap(dx, e.x, true);
    check_no_overlap(dx, e.t, false);
    e.all.push_back(&dx);
    const uintptr_t stream = resolve_stream(stream_obj, e.x);
    if (e.x.size == 0) return;
    const int dev = common_device(e.all);
    run_on(dev, [&] {
        fastmlp::cuda::loss_elementwise_backward(
            dx.data(), e.x.data(), e.t.data(), e.has_w ? e.w.data() : nullptr,
            e.has_pw ? e.pw.data() : nullptr, e.has_dout ? e.dout.data() : nullptr, e.x.size, e.P,
            p, scale, as_stream(stream));
    });
}

}  // namespace

namespace fastmlp::bind {

void register_cuda_losses(py::module_& m) {
    const py::object none = py::none();
    m.attr("LOSS_KINDS") = py::dict(py::arg("mse") = int(Loss::mse),
                                    py::arg("cross_entropy") = int(Loss::cross_entropy),
                                    py::arg("bce_with_logits") = int(Loss::bce_with_logits),
                                    py::arg("l1") = int(Loss::l1), py::arg("huber") = int(Loss::huber),
                                    py::arg("smooth_l1") = int(Loss::smooth_l1));
    m.def("cross_entropy_forward_backward", &ce_forward_backward_py, py::arg("input"),
          py::arg("target"), py::arg("weight"), py::arg("grad_rows"), py::arg("scale"),
          py::arg("divide_by_weight_sum"), py::arg("ignore_index"), py::arg("label_smoothing"),
          py::arg("sums"), py::arg("rows"), py::arg("dinput"), py::arg("stream") = none);
    m.def("cross_entropy_prob_forward_backward", &ce_prob_forward_backward_py, py::arg("input"),
          py::arg("target"), py::arg("weight"), py::arg("grad_rows"), py::arg("scale"),
          py::arg("label_smoothing"), py::arg("sums"), py::arg("rows"), py::arg("dinput"),
          py::arg("stream") = none);
    m.def("loss_elementwise_forward", &elem_forward_py, py::arg("kind"), py::arg("input"),
          py::arg("target"), py::arg("weight"), py::arg("pos_weight"), py::arg("p0"),
          py::arg("sums"), py::arg("out"), py::arg("stream") = none);
    m.def("loss_elementwise_backward", &elem_backward_py, py::arg("kind"), py::arg("input"),
          py::arg("target"), py::arg("weight"), py::arg("pos_weight"), py::arg("grad_output"),
          py::arg("p0"), py::arg("scale"), py::arg("dinput"), py::arg("stream") = none);
}

}  // namespace fastmlp::bind
