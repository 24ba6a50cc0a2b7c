// fastmlp._C: bindings of the loss kernels (losses.h): softmax cross-entropy (class indices and
// class probabilities) and the element-wise losses. Glue only: the checks below (dtype, shapes,
// class range) establish what the kernels assume; outputs are fresh arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "array_checks.h"
#include "fastmlp/losses.h"

namespace py = pybind11;

namespace fastmlp::bind {
namespace {

const float* fptr(const py::array& a) { return static_cast<const float*>(a.data()); }
float* mptr(py::array& a) { return static_cast<float*>(a.mutable_data()); }

py::array new_like(const py::array& a) {
    std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
    return py::array_t<float>(shape);
}

// Logits of shape (N, C, d1, ...): N, C and D = d1 * ... (1 when there are none).
struct CeShape {
    int64_t N = 0, C = 0, D = 1;
};
CeShape ce_shape(const py::array& x, const char* what) {
    if (x.ndim() < 2)
        throw py::value_error(std::string(what) + ": 'input' must have shape (N, C) or (N, C, d1, "
                              "...), got " + shape_str(x));
    CeShape s;
    s.N = x.shape(0);
    s.C = x.shape(1);
    for (py::ssize_t i = 2; i < x.ndim(); ++i) s.D *= x.shape(i);
    return s;
}

std::string target_shape_want(const py::array& x) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < x.ndim(); ++i) {
        if (i == 1) continue;
        s += (s.size() > 1 ? ", " : "") + std::to_string(x.shape(i));
    }
    if (x.ndim() == 2) s += ",";
    return s + ")";
}

// Class-index targets: int64, shape (N, d1, ...), every value in [0, C) or ignore_index.
py::array class_targets(py::handle obj, const py::array& x, const CeShape& s, int64_t ignore_index,
                        const char* what) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(what) + ": 'target' must be a numpy.ndarray of int64 class "
                             "indices, got " + std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    py::array t = py::reinterpret_borrow<py::array>(obj);
    if (t.dtype().kind() != 'i' || t.itemsize() != 8 || !t.dtype().attr("isnative").cast<bool>())
        throw py::type_error(std::string(what) + ": 'target' must hold int64 class indices "
                             "(torch.long), got dtype " + std::string(py::str(t.dtype())) +
                             "; convert with target.long() (or pass class probabilities as a "
                             "float tensor shaped like the input)");
    bool ok = t.ndim() == x.ndim() - 1;
    for (py::ssize_t i = 0; ok && i < t.ndim(); ++i) ok = t.shape(i) == x.shape(i == 0 ? 0 : i + 1);
    if (!ok)
        throw py::value_error(std::string(what) + ": 'target' of class indices must have shape " +
                              target_shape_want(x) + " for input of shape " + shape_str(x) +
                              ", got " + shape_str(t));
    t = py::array_t<int64_t, py::array::c_style>::ensure(t);
    const int64_t* tp = static_cast<const int64_t*>(t.data());
    const int64_t R = s.N * s.D;
    for (int64_t r = 0; r < R; ++r) {
        const int64_t y = tp[r];
        if ((y < 0 || y >= s.C) && y != ignore_index)
            throw py::index_error("Target " + std::to_string(y) + " is out of bounds. (" + what +
                                  ": class indices must be in [0, " + std::to_string(s.C) +
                                  ") for input with " + std::to_string(s.C) + " classes" +
                                  ", or equal ignore_index=" + std::to_string(ignore_index) + ")");
    }
    return t;
}

// Class weights: None, or float32 of shape (C,).
py::array class_weight(py::handle obj, int64_t C, const char* what) {
    if (obj.is_none()) return py::array();
    py::array w = as_f32_array(obj, "weight");
    if (w.ndim() != 1 || w.shape(0) != C)
        throw py::value_error(std::string(what) + ": 'weight' must have shape (" + std::to_string(C) +
                              ",) (one weight per class), got " + shape_str(w));
    return input_contiguous(w, "weight");
}

// A per-row array (upstream gradient of reduction='none'): None or float32 shaped like target.
py::array row_array(py::handle obj, const CeShape& s, const char* name, const char* what) {
    if (obj.is_none()) return py::array();
    py::array a = as_f32_array(obj, name);
    if (a.size() != s.N * s.D)
        throw py::value_error(std::string(what) + ": '" + name + "' must have " +
                              std::to_string(s.N * s.D) + " elements (one per row), got shape " +
                              shape_str(a));
    return input_contiguous(a, name);
}

void check_smoothing(float s, const char* what) {
    if (!(s >= 0.0f && s <= 1.0f))
        throw py::value_error(std::string(what) + ": label_smoothing must be between 0.0 and 1.0, got " +
                              std::to_string(s));
}

py::array rows_out(const py::array& x) {
    std::vector<py::ssize_t> shape;
    for (py::ssize_t i = 0; i < x.ndim(); ++i)
        if (i != 1) shape.push_back(x.shape(i));
    return py::array_t<float>(shape);
}

Reduction parse_reduction(const std::string& r) {
    if (r == "mean") return Reduction::mean;
    if (r == "sum") return Reduction::sum;
    if (r == "none") return Reduction::none;
    throw py::value_error(r + " is not a valid value for reduction (use 'mean', 'sum' or 'none')");
}

py::array prob_target(py::handle t_obj, const py::array& x, const char* what) {
    py::array t = as_f32_array(t_obj, "target");
    bool same = t.ndim() == x.ndim();
    for (py::ssize_t i = 0; same && i < t.ndim(); ++i) same = t.shape(i) == x.shape(i);
    if (!same)
        throw py::value_error(std::string(what) + ": a target of class probabilities must have the "
                              "input's shape " + shape_str(x) + ", got " + shape_str(t));
    return input_contiguous(t, "target");
}

// The checked arguments of a cross-entropy binding, their errors raised in this order: input,
// label_smoothing (unless check_ls is false), target (class indices, or class probabilities
// shaped like the input when probs), weight, grad_rows (None where the binding takes none); then
// the input made contiguous.
struct CeArgs {
    py::array x, t, w, dr;
    CeShape s;
    const float* wp = nullptr;  // weight or null
    const float* dp = nullptr;  // grad_rows or null
    const int64_t* ti() const { return static_cast<const int64_t*>(t.data()); }
};

CeArgs ce_args(const char* what, py::handle x_obj, py::handle t_obj, py::handle w_obj, bool probs,
               int64_t ignore_index, float ls, bool check_ls = true,
               py::handle drow_obj = py::none()) {
    CeArgs a;
    py::array x = as_f32_array(x_obj, "input");
    a.s = ce_shape(x, what);
    if (check_ls) check_smoothing(ls, what);
    a.t = probs ? prob_target(t_obj, x, what) : class_targets(t_obj, x, a.s, ignore_index, what);
    a.w = class_weight(w_obj, a.s.C, what);
    a.dr = row_array(drow_obj, a.s, "grad_rows", what);
    a.x = input_contiguous(x, "input");
    a.wp = w_obj.is_none() ? nullptr : fptr(a.w);
    a.dp = drow_obj.is_none() ? nullptr : fptr(a.dr);
    return a;
}

// (loss_sum, weight_sum, row_losses or None)
py::tuple ce_forward_py(py::handle x_obj, py::handle t_obj, py::handle w_obj, int64_t ignore_index,
                        float ls, bool want_rows) {
    const CeArgs a = ce_args("cross_entropy", x_obj, t_obj, w_obj, false, ignore_index, ls);
    const CeShape& s = a.s;
    py::array rows = want_rows ? rows_out(a.x) : py::array();
    float* rp = want_rows ? mptr(rows) : nullptr;
    CeSums r;
    {
        py::gil_scoped_release nogil;
        r = cross_entropy_forward(rp, fptr(a.x), a.ti(), a.wp, s.N, s.C, s.D, ignore_index, ls);
    }
    return py::make_tuple(r.loss, r.weight, want_rows ? py::object(rows) : py::object(py::none()));
}

py::array ce_backward_py(py::handle x_obj, py::handle t_obj, py::handle w_obj, py::handle drow_obj,
                         double scale, int64_t ignore_index, float ls) {
    const CeArgs a = ce_args("cross_entropy_backward", x_obj, t_obj, w_obj, false, ignore_index,
                             ls, true, drow_obj);
    const CeShape& s = a.s;
    py::array dx = new_like(a.x);
    {
        py::gil_scoped_release nogil;
        cross_entropy_backward(mptr(dx), fptr(a.x), a.ti(), a.wp, a.dp, scale, s.N, s.C, s.D,
                               ignore_index, ls);
    }
    return dx;
}

// (loss_sum, weight_sum, dinput, row_losses or None): the gradient of the 'mean' or 'sum' loss.
py::tuple ce_forward_backward_py(py::handle x_obj, py::handle t_obj, py::handle w_obj,
                                 int64_t ignore_index, float ls, const std::string& reduction,
                                 bool want_rows) {
    Reduction red = parse_reduction(reduction);
    const CeArgs a = ce_args("cross_entropy", x_obj, t_obj, w_obj, false, ignore_index, ls);
    const CeShape& s = a.s;
    py::array dx = new_like(a.x);
    py::array rows = want_rows ? rows_out(a.x) : py::array();
    float* rp = want_rows ? mptr(rows) : nullptr;
    CeSums r;
    {
        py::gil_scoped_release nogil;
        r = cross_entropy_forward_backward(mptr(dx), rp, fptr(a.x), a.ti(), a.wp, s.N, s.C, s.D,
                                           ignore_index, ls, red);
    }
    return py::make_tuple(r.loss, r.weight, dx,
                          want_rows ? py::object(rows) : py::object(py::none()));
}

py::tuple ce_prob_forward_py(py::handle x_obj, py::handle t_obj, py::handle w_obj, float ls,
                             bool want_rows) {
    const CeArgs a = ce_args("cross_entropy", x_obj, t_obj, w_obj, true, 0, ls);
    const CeShape& s = a.s;
    py::array rows = want_rows ? rows_out(a.x) : py::array();
    float* rp = want_rows ? mptr(rows) : nullptr;
    double sum;
    {
        py::gil_scoped_release nogil;
        sum = cross_entropy_prob_forward(rp, fptr(a.x), fptr(a.t), a.wp, s.N, s.C, s.D, ls);
    }
    return py::make_tuple(sum, want_rows ? py::object(rows) : py::object(py::none()));
}

py::array ce_prob_backward_py(py::handle x_obj, py::handle t_obj, py::handle w_obj,
                              py::handle drow_obj, double scale, float ls) {
    const CeArgs a = ce_args("cross_entropy_backward", x_obj, t_obj, w_obj, true, 0, ls, true,
                             drow_obj);
    const CeShape& s = a.s;
    py::array dx = new_like(a.x);
    {
        py::gil_scoped_release nogil;
        cross_entropy_prob_backward(mptr(dx), fptr(a.x), fptr(a.t), a.wp, a.dp, scale, s.N, s.C,
                                    s.D, ls);
    }
    return dx;
}

// ---- element-wise losses ----
LossParams elem_params(int kind, float p0) {
    if (kind < 0 || kind >= kLossCount || kind == int(Loss::cross_entropy))
        throw py::value_error("loss_elementwise: 'kind' must be an element-wise loss code "
                              "(mse 0, bce_with_logits 2, l1 3, huber 4, smooth_l1 5), got " +
                              std::to_string(kind));
    LossParams p;
    p.kind = Loss(kind);
    p.p0 = p0;
    return p;
}

struct ElemArgs {
    py::array x, t, w, pw, dout;
    const float *wp = nullptr, *pwp = nullptr, *dp = nullptr;
    int64_t n = 0, P = 1;
};

ElemArgs elem_args(py::handle x_obj, py::handle t_obj, py::handle w_obj, py::handle pw_obj,
                   py::handle dout_obj) {
    ElemArgs a;
    py::array x = as_f32_array(x_obj, "input");
    py::array t = as_f32_array(t_obj, "target");
    check_same_shape(x, "input", t, "target");
    if (!w_obj.is_none()) {
        py::array w = as_f32_array(w_obj, "weight");
        check_same_shape(x, "input", w, "weight");
        a.w = input_contiguous(w, "weight");
        a.wp = fptr(a.w);
    }
    if (!dout_obj.is_none()) {
        py::array d = as_f32_array(dout_obj, "grad_output");
        check_same_shape(x, "input", d, "grad_output");
        a.dout = input_contiguous(d, "grad_output");
        a.dp = fptr(a.dout);
    }
    a.n = x.size();
    if (!pw_obj.is_none()) {
        py::array pw = as_f32_array(pw_obj, "pos_weight");
        const int64_t last = x.ndim() ? x.shape(x.ndim() - 1) : 1;
        if (pw.size() == a.n && pw.ndim() == x.ndim()) {
            check_same_shape(x, "input", pw, "pos_weight");
            a.P = a.n;
        } else if (pw.ndim() == 1 && pw.shape(0) == last) {
            a.P = last;
        } else {
            throw py::value_error("loss_elementwise: 'pos_weight' must have shape (" +
                                  std::to_string(last) + ",) (one per class, the input's last "
                                  "dimension) or the input's shape " + shape_str(x) + ", got " +
                                  shape_str(pw));
        }
        a.pw = input_contiguous(pw, "pos_weight");
        a.pwp = fptr(a.pw);
        if (a.P == 0) a.P = 1;
    }
    a.x = input_contiguous(x, "input");
    a.t = input_contiguous(t, "target");
    return a;
}

py::tuple elem_forward_py(int kind, py::handle x_obj, py::handle t_obj, py::handle w_obj,
                          py::handle pw_obj, float p0, bool want_out) {
    LossParams p = elem_params(kind, p0);
    ElemArgs a = elem_args(x_obj, t_obj, w_obj, pw_obj, py::none());
    py::array out = want_out ? new_like(a.x) : py::array();
    float* op = want_out ? mptr(out) : nullptr;
    double sum;
    {
        py::gil_scoped_release nogil;
        sum = loss_elementwise_forward(op, fptr(a.x), fptr(a.t), a.wp, a.pwp, a.n, a.P, p);
    }
    return py::make_tuple(sum, want_out ? py::object(out) : py::object(py::none()));
}

py::array elem_backward_py(int kind, py::handle x_obj, py::handle t_obj, py::handle w_obj,
                           py::handle pw_obj, py::handle dout_obj, float p0, float scale) {
    LossParams p = elem_params(kind, p0);
    ElemArgs a = elem_args(x_obj, t_obj, w_obj, pw_obj, dout_obj);
    py::array dx = new_like(a.x);
    {
        py::gil_scoped_release nogil;
        loss_elementwise_backward(mptr(dx), fptr(a.x), fptr(a.t), a.wp, a.pwp, a.dp, a.n, a.P, p,
                                  scale);
    }
    return dx;
}

py::tuple elem_forward_backward_py(int kind, py::handle x_obj, py::handle t_obj, py::handle w_obj,
                                   py::handle pw_obj, float p0, float scale) {
    LossParams p = elem_params(kind, p0);
    ElemArgs a = elem_args(x_obj, t_obj, w_obj, pw_obj, py::none());
    py::array dx = new_like(a.x);
    double sum;
    {
        py::gil_scoped_release nogil;
        sum = loss_elementwise_forward_backward(mptr(dx), fptr(a.x), fptr(a.t), a.wp, a.pwp, a.n,
                                                a.P, p, scale);
    }
    return py::make_tuple(sum, dx);
}

py::tuple ce_forward_reference_py(py::handle x_obj, py::handle t_obj, py::handle w_obj,
                                  int64_t ignore_index, float ls) {
    const CeArgs a = ce_args("cross_entropy", x_obj, t_obj, w_obj, false, ignore_index, ls, false);
    const CeShape& s = a.s;
    py::array rows = rows_out(a.x);
    CeSums r = cross_entropy_forward_reference(mptr(rows), fptr(a.x), a.ti(), a.wp, s.N, s.C, s.D,
                                               ignore_index, ls);
    return py::make_tuple(r.loss, r.weight, rows);
}

}  // namespace

void register_losses(py::module_& m) {
    m.attr("LOSS_KINDS") = py::dict(py::arg("mse") = int(Loss::mse),
                                    py::arg("cross_entropy") = int(Loss::cross_entropy),
                                    py::arg("bce_with_logits") = int(Loss::bce_with_logits),
                                    py::arg("l1") = int(Loss::l1), py::arg("huber") = int(Loss::huber),
                                    py::arg("smooth_l1") = int(Loss::smooth_l1));
    m.def("cross_entropy_forward", &ce_forward_py, py::arg("input"), py::arg("target"),
          py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
          py::arg("label_smoothing") = 0.0f, py::arg("want_rows") = false,
          "(loss_sum, weight_sum, row_losses or None) of softmax cross-entropy, class-index targets");
    m.def("cross_entropy_backward", &ce_backward_py, py::arg("input"), py::arg("target"),
          py::arg("weight"), py::arg("grad_rows"), py::arg("scale"), py::arg("ignore_index") = -100,
          py::arg("label_smoothing") = 0.0f);
    m.def("cross_entropy_forward_backward", &ce_forward_backward_py, py::arg("input"),
          py::arg("target"), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
          py::arg("label_smoothing") = 0.0f, py::arg("reduction") = "mean",
          py::arg("want_rows") = false,
          "(loss_sum, weight_sum, dinput, row_losses or None): forward and the reduced loss's "
          "gradient in one sweep");
    m.def("cross_entropy_prob_forward", &ce_prob_forward_py, py::arg("input"), py::arg("target"),
          py::arg("weight") = py::none(), py::arg("label_smoothing") = 0.0f,
          py::arg("want_rows") = false);
    m.def("cross_entropy_prob_backward", &ce_prob_backward_py, py::arg("input"), py::arg("target"),
          py::arg("weight"), py::arg("grad_rows"), py::arg("scale"),
          py::arg("label_smoothing") = 0.0f);
    m.def("loss_elementwise_forward", &elem_forward_py, py::arg("kind"), py::arg("input"),
          py::arg("target"), py::arg("weight") = py::none(), py::arg("pos_weight") = py::none(),
          py::arg("p0") = 1.0f, py::arg("want_out") = false);
    m.def("loss_elementwise_backward", &elem_backward_py, py::arg("kind"), py::arg("input"),
          py::arg("target"), py::arg("weight"), py::arg("pos_weight"), py::arg("grad_output"),
          py::arg("p0"), py::arg("scale"));
    m.def("loss_elementwise_forward_backward", &elem_forward_backward_py, py::arg("kind"),
          py::arg("input"), py::arg("target"), py::arg("weight") = py::none(),
          py::arg("pos_weight") = py::none(), py::arg("p0") = 1.0f, py::arg("scale") = 1.0f);
    m.def("cross_entropy_forward_reference", &ce_forward_reference_py, py::arg("input"),
          py::arg("target"), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
          py::arg("label_smoothing") = 0.0f);
}

}  // namespace fastmlp::bind
