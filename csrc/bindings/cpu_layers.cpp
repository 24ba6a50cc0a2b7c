// fastmlp._C: bindings of the layer-level kernels (layers.h): linear_forward, linear_backward and
// sgd_step_many. Glue only. These run once per layer per training step, so the common case (a
// native, aligned, C-contiguous float32 ndarray) is recognised with a few C-level checks; anything
// else goes through the array_checks.h helpers, which copy strided inputs and raise the errors.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "array_checks.h"
#include "fastmlp/activation.h"
#include "fastmlp/layers.h"

namespace py = pybind11;

namespace fastmlp::bind {
namespace {

// fast_f32 / in_arr / out_arr / raw_arr: array_checks.h
inline py::array new_f32(int64_t r, int64_t c) { return py::array_t<float>({r, c}); }

void check_2d(const py::array& a, const char* name, int64_t rows, int64_t cols, const char* what) {
    if (a.ndim() != 2 || (rows >= 0 && a.shape(0) != rows) || (cols >= 0 && a.shape(1) != cols)) {
        std::string want = "(" + (rows >= 0 ? std::to_string(rows) : std::string("*")) + ", " +
                           (cols >= 0 ? std::to_string(cols) : std::string("*")) + ")";
        throw py::value_error(std::string(what) + ": '" + name + "' must have shape " + want +
                              ", got " + shape_str(a));
    }
}
void check_1d(const py::array& a, const char* name, int64_t n, const char* what) {
    if (a.ndim() != 1 || a.shape(0) != n)
        throw py::value_error(std::string(what) + ": '" + name + "' must have shape (" +
                              std::to_string(n) + ",), got " + shape_str(a));
}

}  // namespace

// The activation argument of linear_forward/linear_backward and the act_* kernels: its kind as
// the int of fastmlp::Act (ValueError when out of range) and its two parameters.
ActParams act_params(int kind, float p0, float p1, const char* what) {
    if (kind < 0 || kind >= kActCount)
        throw py::value_error(std::string(what) + ": 'act' must be an activation kind in [0, " +
                              std::to_string(kActCount) + "), got " + std::to_string(kind));
    ActParams p;
    p.kind = static_cast<Act>(kind);
    p.p0 = p0;
    p.p1 = p1;
    return p;
}

namespace {

// out (B,OC) = act(x (B,C) @ weight (OC,C)^T + bias (OC)); relu=True is act=relu.
py::object linear_forward_py(py::handle x_obj, py::handle w_obj, py::handle b_obj, bool relu,
                            py::handle out_obj, int act_kind, float p0, float p1,
                            bool want_pre) {
    const char* what = "linear_forward";
    ActParams act = act_params(act_kind, p0, p1, what);
    if (relu) {
        if (act.kind != Act::identity && act.kind != Act::relu)
            throw py::value_error("linear_forward: pass either relu=True or an 'act', not both");
        act.kind = Act::relu;
    }
    py::array x = raw_arr(x_obj, "x");
    py::array w = raw_arr(w_obj, "weight");
    if (w.ndim() != 2)
        throw py::value_error("linear_forward: 'weight' must be 2-D (out_features, in_features), got "
                              "shape " + shape_str(w));
    const int64_t OC = w.shape(0), C = w.shape(1);
    if (x.ndim() != 2 || x.shape(1) != C)
        throw py::value_error("linear_forward: 'x' must have shape (batch, " + std::to_string(C) +
                              ") to match weight of shape " + shape_str(w) + ", got " + shape_str(x));
    const int64_t B = x.shape(0);
    const float* bp = nullptr;
    py::array b;
    if (!b_obj.is_none()) {
        b = raw_arr(b_obj, "bias");
        check_1d(b, "bias", OC, what);
        b = in_arr(b, "bias");
        bp = static_cast<const float*>(b.data());
    }
    if (!out_obj.is_none()) check_2d(out_arr(out_obj, "out"), "out", B, OC, what);
    x = in_arr(x, "x");
    w = in_arr(w, "weight");
    py::array out;
    if (out_obj.is_none()) {
        out = new_f32(B, OC);
    } else {
        out = out_arr(out_obj, "out");
        check_no_overlap(out, "out", x, "x", false);
        check_no_overlap(out, "out", w, "weight", false);
        if (bp) check_no_overlap(out, "out", b, "bias", false);
    }
    const float* xp = static_cast<const float*>(x.data());
    const float* wp = static_cast<const float*>(w.data());
    float* op = static_cast<float*>(out.mutable_data());
    // want_act_input: also return z (the pre-activation) when the kind's backward needs it
    const bool pre = want_pre && act_backward_needs_input(act.kind) && act.kind != Act::identity;
    py::array z;
    float* zp = nullptr;
    if (pre) {
        z = new_f32(B, OC);
        zp = static_cast<float*>(z.mutable_data());
    }
    {
        py::gil_scoped_release nogil;
        linear_forward(op, zp, xp, wp, bp, B, C, OC, act);
    }
    if (want_pre) return py::make_tuple(out, pre ? py::object(z) : py::object(py::none()));
    return out;
}

// Returns (dinput, dweight, dbias); each is None when not wanted. A given d* array is filled
// (dweight/dbias accumulated into when accumulate_*), else a new one is allocated.
py::tuple linear_backward_py(py::handle g_obj, py::handle x_obj, py::handle w_obj,
                             py::handle y_obj, py::handle dx_obj, py::handle dw_obj,
                             py::handle db_obj, bool want_dx, bool want_dw, bool want_db,
                             bool acc_w, bool acc_b, int act_kind, float p0, float p1,
                             py::handle z_obj) {
    const char* what = "linear_backward";
    ActParams act = act_params(act_kind, p0, p1, what);
    if (act.kind == Act::identity && !y_obj.is_none()) act.kind = Act::relu;  // relu_out alone
    const bool need_z = act_backward_needs_input(act.kind);
    if (need_z && z_obj.is_none())
        throw py::value_error("linear_backward: this activation's gradient needs 'act_input' (the "
                              "pre-activation), got None");
    if (!need_z && act.kind != Act::identity && y_obj.is_none())
        throw py::value_error("linear_backward: this activation's gradient needs 'relu_out' (the "
                              "activation's output), got None");
    py::array g = raw_arr(g_obj, "grad");
    py::array x = raw_arr(x_obj, "x");
    py::array w = raw_arr(w_obj, "weight");
    check_2d(w, "weight", -1, -1, what);
    const int64_t OC = w.shape(0), C = w.shape(1);
    check_2d(x, "x", -1, C, what);
    const int64_t B = x.shape(0);
    check_2d(g, "grad", B, OC, what);
    const float* yp = nullptr;
    py::array y;
    if (!y_obj.is_none()) {
        y = raw_arr(y_obj, "relu_out");
        check_2d(y, "relu_out", B, OC, what);
        y = in_arr(y, "relu_out");
        yp = static_cast<const float*>(y.data());
    }
    const float* zp = nullptr;
    py::array z;
    if (need_z) {
        z = raw_arr(z_obj, "act_input");
        check_2d(z, "act_input", B, OC, what);
        z = in_arr(z, "act_input");
        zp = static_cast<const float*>(z.data());
        yp = nullptr;  // not read
    }
    g = in_arr(g, "grad");
    x = in_arr(x, "x");
    w = in_arr(w, "weight");
    auto check_out = [&](py::array& o, const char* name) {
        check_no_overlap(o, name, g, "grad", false);
        check_no_overlap(o, name, x, "x", false);
        check_no_overlap(o, name, w, "weight", false);
        if (yp) check_no_overlap(o, name, y, "relu_out", false);
        if (zp) check_no_overlap(o, name, z, "act_input", false);
    };
    py::object dx = py::none(), dw = py::none(), db = py::none();
    float *dxp = nullptr, *dwp = nullptr, *dbp = nullptr;
    py::array dxa, dwa, dba;
    if (want_dx || !dx_obj.is_none()) {
        if (dx_obj.is_none()) {
            dxa = new_f32(B, C);
        } else {
            dxa = out_arr(dx_obj, "dinput");
            check_2d(dxa, "dinput", B, C, what);
            check_out(dxa, "dinput");
        }
        dxp = static_cast<float*>(dxa.mutable_data());
        dx = dxa;
    }
    if (want_dw || !dw_obj.is_none()) {
        if (dw_obj.is_none()) {
            if (acc_w) throw py::value_error("linear_backward: accumulate_weight=True needs a 'dweight' array");
            dwa = new_f32(OC, C);
        } else {
            dwa = out_arr(dw_obj, "dweight");
            check_2d(dwa, "dweight", OC, C, what);
            check_out(dwa, "dweight");
            if (dxp) check_no_overlap(dwa, "dweight", dxa, "dinput", false);
        }
        dwp = static_cast<float*>(dwa.mutable_data());
        dw = dwa;
    }
    if (want_db || !db_obj.is_none()) {
        if (db_obj.is_none()) {
            if (acc_b) throw py::value_error("linear_backward: accumulate_bias=True needs a 'dbias' array");
            dba = py::array_t<float>({OC});
        } else {
            dba = out_arr(db_obj, "dbias");
            check_1d(dba, "dbias", OC, what);
            check_out(dba, "dbias");
            if (dxp) check_no_overlap(dba, "dbias", dxa, "dinput", false);
            if (dwp) check_no_overlap(dba, "dbias", dwa, "dweight", false);
        }
        dbp = static_cast<float*>(dba.mutable_data());
        db = dba;
    }
    const float* gp = static_cast<const float*>(g.data());
    const float* xp = static_cast<const float*>(x.data());
    const float* wp = static_cast<const float*>(w.data());
    {
        py::gil_scoped_release nogil;
        linear_backward(dxp, dwp, dbp, gp, xp, wp, zp, yp, B, C, OC, act, acc_w, acc_b);
    }
    return py::make_tuple(dx, dw, db);
}

// (loss, dinput): the mean squared error and scale * (input - target), in one call.
py::tuple mse_forward_backward_py(py::handle p_obj, py::handle t_obj, float scale) {
    py::array p = in_arr(p_obj, "input");
    py::array t = in_arr(t_obj, "target");
    check_same_shape(p, "input", t, "target");
    std::vector<py::ssize_t> shape(p.shape(), p.shape() + p.ndim());
    py::array d = py::array_t<float>(shape);
    const float* pp = static_cast<const float*>(p.data());
    const float* tp = static_cast<const float*>(t.data());
    float* dp = static_cast<float*>(d.mutable_data());
    const int64_t n = p.size();
    double loss;
    {
        py::gil_scoped_release nogil;
        loss = mse_forward_backward(dp, pp, tp, n, scale);
    }
    return py::make_tuple(loss, d);
}

// One SGD step over lists of parameters: params[i] -= lr * update(grads[i], bufs[i]).
void sgd_step_many_py(py::list params, py::list grads, py::handle bufs_obj, py::list first_step,
                      float lr, float momentum, float dampening, float weight_decay, bool nesterov,
                      bool maximize) {
    const size_t n = params.size();
    if (grads.size() != n || first_step.size() != n)
        throw py::value_error("sgd_step_many: 'params', 'grads' and 'first_step' must have the same "
                              "length, got " + std::to_string(n) + ", " + std::to_string(grads.size()) +
                              ", " + std::to_string(first_step.size()));
    if (nesterov && (momentum <= 0.0f || dampening != 0.0f))
        throw py::value_error("sgd_step_many: nesterov momentum requires a momentum and zero dampening");
    const bool use_mom = momentum != 0.0f;
    py::list bufs;
    if (use_mom) {
        if (bufs_obj.is_none())
            throw py::value_error("sgd_step_many: momentum != 0 needs a list of 'momentum_buffers'");
        bufs = py::reinterpret_borrow<py::list>(bufs_obj);
        if (bufs.size() != n)
            throw py::value_error("sgd_step_many: 'momentum_buffers' must have one array per parameter");
    }
    std::vector<py::array> keep;
    keep.reserve(3 * n);
    std::vector<float*> pp(n), bp(n, nullptr);
    std::vector<const float*> gp(n);
    std::vector<int64_t> sizes(n);
    std::unique_ptr<bool[]> first(new bool[n]);
    for (size_t i = 0; i < n; ++i) {
        py::array p = out_arr(params[i], "param");
        check_same_shape(p, "param", raw_arr(grads[i], "grad"), "grad");
        py::array g = in_arr(grads[i], "grad");
        check_no_overlap(p, "param", g, "grad", false);
        pp[i] = static_cast<float*>(p.mutable_data());
        gp[i] = static_cast<const float*>(g.data());
        sizes[i] = p.size();
        first[i] = first_step[i].cast<bool>();
        if (use_mom) {
            py::array b = out_arr(bufs[i], "momentum_buffer");
            check_same_shape(p, "param", b, "momentum_buffer");
            check_no_overlap(b, "momentum_buffer", p, "param", false);
            check_no_overlap(b, "momentum_buffer", g, "grad", false);
            bp[i] = static_cast<float*>(b.mutable_data());
            keep.push_back(b);
        }
        keep.push_back(p);
        keep.push_back(g);
    }
    SgdOptions o;
    o.lr = lr;
    o.momentum = momentum;
    o.dampening = dampening;
    o.weight_decay = weight_decay;
    o.nesterov = nesterov;
    o.maximize = maximize;
    py::gil_scoped_release nogil;
    sgd_step_many(pp.data(), gp.data(), bp.data(), sizes.data(), first.get(), int64_t(n), o);
}

}  // namespace

void register_layers(py::module_& m) {
    m.def("linear_forward", &linear_forward_py, py::arg("x"), py::arg("weight"),
          py::arg("bias") = py::none(), py::arg("relu") = false, py::arg("out") = py::none(),
          py::arg("act") = 0, py::arg("act_p0") = 0.0f, py::arg("act_p1") = 0.0f,
          py::arg("want_act_input") = false,
          "out (B,OC) = act(x (B,C) @ weight (OC,C)^T + bias (OC)); act is a fastmlp::Act kind "
          "(0 identity; relu=True is act=1) with parameters act_p0, act_p1. want_act_input=True "
          "returns (out, z) with z the pre-activation from the same pass (None for the kinds "
          "whose gradient reads only out).");
    m.def("linear_backward", &linear_backward_py, py::arg("grad"), py::arg("x"), py::arg("weight"),
          py::arg("relu_out") = py::none(), py::arg("dinput") = py::none(),
          py::arg("dweight") = py::none(), py::arg("dbias") = py::none(),
          py::arg("want_dinput") = true, py::arg("want_dweight") = true, py::arg("want_dbias") = true,
          py::arg("accumulate_weight") = false, py::arg("accumulate_bias") = false,
          py::arg("act") = 0, py::arg("act_p0") = 0.0f, py::arg("act_p1") = 0.0f,
          py::arg("act_input") = py::none(),
          "Backward of linear_forward (and its activation) in one call; returns (dinput, dweight, "
          "dbias). The activation's gradient reads relu_out (its output) or act_input (its input, "
          "for the kinds whose gradient needs it); relu_out alone with act=0 means ReLU.");
    m.def("mse_forward_backward", &mse_forward_backward_py, py::arg("input"), py::arg("target"),
          py::arg("scale"),
          "(loss, dinput): mean of (input - target)^2 and scale * (input - target), in one call.");
    m.def("sgd_step_many", &sgd_step_many_py, py::arg("params"), py::arg("grads"),
          py::arg("momentum_buffers"), py::arg("first_step"), py::arg("lr"),
          py::arg("momentum") = 0.0f, py::arg("dampening") = 0.0f, py::arg("weight_decay") = 0.0f,
          py::arg("nesterov") = false, py::arg("maximize") = false,
          "torch.optim.SGD's update over lists of parameters, gradients and momentum buffers.");
}

}  // namespace fastmlp::bind
