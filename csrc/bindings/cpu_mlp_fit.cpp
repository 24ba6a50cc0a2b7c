// fastmlp._C: the general fused trainer's bindings (mlp_fit, mlp_fit_forward). Glue only: the
// chain, loss and optimizer are parsed by mlp_spec.h (shared with _cuda), the data checked here,
// the GIL released around fastmlp::mlp_fit.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "array_checks.h"
#include "mlp_spec.h"
#include "perm_check.h"
#include "train_result_dict.h"
#include "fastmlp/mlp_fit.h"

namespace py = pybind11;

namespace fastmlp::bind {

namespace {

struct HostArrays : Arrays {
    std::vector<py::array> keep;
    float* f32(py::handle obj, const std::string& name, bool writable,
               std::vector<int64_t>& shape) override {
        py::array a = writable ? output_contiguous(obj, name.c_str()) : input_contiguous(obj, name.c_str());
        shape.assign(a.shape(), a.shape() + a.ndim());
        keep.push_back(a);
        return const_cast<float*>(static_cast<const float*>(a.data()));
    }
};

py::array f32_matrix(py::handle obj, const char* name, int64_t cols) {
    py::array a = as_f32_array(obj, name);
    if (a.ndim() != 2 || a.shape(1) != cols)
        throw py::value_error(std::string("mlp_fit: '") + name + "' must have shape (n, " +
                              std::to_string(cols) + "), got " + shape_str(a));
    return input_contiguous(a, name);
}

py::array f32_vector(py::handle obj, const char* name, int64_t len) {
    py::array a = input_contiguous(obj, name);
    if (a.ndim() != 1 || a.shape(0) != len)
        throw py::value_error(std::string("mlp_fit: '") + name + "' must have shape (" +
                              std::to_string(len) + ",), got " + shape_str(a));
    return a;
}

void check_apart(const HostArrays& params, const std::vector<py::array>& data) {
    for (size_t i = 0; i < params.keep.size(); ++i) {
        for (const py::array& d : data) check_no_overlap(params.keep[i], "a parameter or state", d, "the data", false);
        for (size_t j = i + 1; j < params.keep.size(); ++j)
            check_no_overlap(params.keep[i], "a parameter or state", params.keep[j],
                             "another parameter or state", false);
    }
}

// fit(distributed=True)'s all-reduce: the Python callable, called once per step with the GIL
// re-taken, on a float32 numpy view of the native gradient buffer (no copy; valid only during the
// call), which it must sum across the ranks in place. A Python exception leaves mlp_fit as it is.
struct PyAllreduce {
    py::object fn;
    py::object view;  // built on the first call: the buffer does not move during mlp_fit
    float* ptr = nullptr;
};

void call_python_allreduce(float* buf, int64_t n, void* ctx) {
    py::gil_scoped_acquire gil;
    PyAllreduce& h = *static_cast<PyAllreduce*>(ctx);
    if (!h.view || h.ptr != buf) {
        h.view = py::array_t<float>({n}, {int64_t(sizeof(float))}, buf,
                                    py::capsule(buf, [](void*) {}));
        h.ptr = buf;
    }
    h.fn(h.view);
}

py::dict mlp_fit_py(py::list layers, py::handle X_obj, py::handle Y_obj, py::dict loss,
                    py::dict optim, int64_t epochs, int64_t batch_size, bool drop_last,
                    bool shuffle, uint64_t seed, int64_t epoch_offset, py::object perm_obj,
                    int64_t step0, py::object lr_schedule, py::object momentum_schedule,
                    uint64_t dropout_seed,
                    py::object sample_weight, py::object class_weight, py::object pos_weight,
                    bool allow_nonfinite, py::dict sklearn, py::object grad_allreduce,
                    int64_t rank, int64_t world_size, const std::string& path) {
    const RunArgs run{epochs,  batch_size,      epoch_offset, step0,       drop_last,
                      shuffle, allow_nonfinite, seed,         dropout_seed};
    check_run_args(run);
    HostArrays arrays;
    std::vector<FitLayer> ls = parse_layers(layers, arrays);
    FitOptions o;
    if (path == "auto") o.path = FitPath::automatic;
    else if (path == "small") o.path = FitPath::small;
    else if (path == "gemm") o.path = FitPath::gemm;
    else throw py::value_error("mlp_fit: path must be 'auto', 'small' or 'gemm', got '" + path + "'");
    parse_loss(loss, o);
    parse_optim(optim, o);
    const int64_t d_in = ls.front().in, d_out = ls.back().out;
    py::array X = f32_matrix(X_obj, "X", d_in);
    const int64_t n = X.shape(0);
    if (n < 1) throw py::value_error("mlp_fit: no samples (X has 0 rows)");
    FitData data;
    data.n = n;
    data.X = static_cast<const float*>(X.data());
    std::vector<py::array> held{X};
    py::array Y;
    py::array_t<int64_t, py::array::c_style> Yi;
    if (o.loss.kind == Loss::cross_entropy) {
        py::array y = py::reinterpret_borrow<py::array>(py::array::ensure(Y_obj));
        if (!y || std::string("iu").find(y.dtype().kind()) == std::string::npos)
            throw py::type_error("mlp_fit: cross_entropy needs class-index targets 'Y' of an integer "
                                 "dtype (int64), got " + std::string(py::str(y ? py::str(y.dtype()) : py::str("a non-array"))));
        Yi = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(y);
        if (Yi.ndim() != 1 || Yi.shape(0) != n)
            throw py::value_error("mlp_fit: class targets 'Y' must have shape (" + std::to_string(n) +
                                  ",), got " + shape_str(Yi));
        const int64_t* yp = Yi.data();
        check_class_targets(yp, n, d_out, o.ignore_index);
        data.Yi = yp;
        held.push_back(Yi);
    } else {
        Y = f32_matrix(Y_obj, "Y", d_out);
        check_same_rows(n, Y.shape(0));
        data.Y = static_cast<const float*>(Y.data());
        held.push_back(Y);
    }
    py::array sw, cw, pw, lrs;
    check_weight_kinds(o, !class_weight.is_none(), !pos_weight.is_none());
    if (!sample_weight.is_none()) {
        sw = f32_vector(sample_weight, "sample_weight", n);
        data.sample_weight = static_cast<const float*>(sw.data());
        held.push_back(sw);
    }
    if (!class_weight.is_none()) {
        cw = f32_vector(class_weight, "class_weight", d_out);
        o.class_weight = static_cast<const float*>(cw.data());
        held.push_back(cw);
    }
    if (!pos_weight.is_none()) {
        pw = f32_vector(pos_weight, "pos_weight", d_out);
        o.pos_weight = static_cast<const float*>(pw.data());
        held.push_back(pw);
    }
    if (!lr_schedule.is_none()) {
        lrs = input_contiguous(lr_schedule, "lr_schedule");
        if (lrs.ndim() != 1) throw py::value_error("mlp_fit: 'lr_schedule' must be 1-D");
        o.lr_schedule = static_cast<const float*>(lrs.data());
        o.lr_schedule_len = lrs.shape(0);
    }
    py::array ms;
    if (!momentum_schedule.is_none()) {
        ms = input_contiguous(momentum_schedule, "momentum_schedule");
        if (ms.ndim() != 1) throw py::value_error("mlp_fit: 'momentum_schedule' must be 1-D");
        o.momentum_schedule = static_cast<const float*>(ms.data());
        o.momentum_schedule_len = ms.shape(0);
    }
    check_apart(arrays, held);
    PermArray perm;
    if (!perm_obj.is_none()) {
        bool per_epoch = false;
        perm = check_perm(perm_obj, n, epochs, per_epoch);
        o.perm = perm.data();
        o.perm_per_epoch = per_epoch;
    }
    check_norm_batches(ls, n, batch_size, drop_last);
    set_run_options(o, run, sklearn);
    PyAllreduce hook;
    if (!grad_allreduce.is_none()) {
        if (!PyCallable_Check(grad_allreduce.ptr()))
            throw py::type_error("mlp_fit: 'grad_allreduce' must be callable (buffer -> None, summing "
                                 "it across the ranks in place)");
        if (world_size < 1 || rank < 0 || rank >= world_size)
            throw py::value_error("mlp_fit: need 0 <= rank < world_size, got rank " +
                                  std::to_string(rank) + " of " + std::to_string(world_size));
        hook.fn = grad_allreduce;
        o.grad_allreduce = call_python_allreduce;
        o.grad_allreduce_ctx = &hook;
        o.rank = rank;
        o.world = world_size;
    }
    FitResult r;
    {
        py::gil_scoped_release nogil;
        r = mlp_fit(ls, data, epochs, o);
    }
    hook.view = py::object();  // the buffer is gone with mlp_fit
    return train_result_dict(r);
}

py::array mlp_fit_forward_py(py::list layers, py::handle X_obj) {
    HostArrays arrays;
    // read-only: inference writes no parameter
    std::vector<FitLayer> ls = parse_layers(layers, arrays, /*inference=*/true);
    py::array X = f32_matrix(X_obj, "X", ls.front().in);
    const int64_t n = X.shape(0);
    check_forward_norm_rows(ls, n);
    py::array_t<float> out({n, ls.back().out});
    if (n > 0) {
        float* op = out.mutable_data();
        const float* xp = static_cast<const float*>(X.data());
        py::gil_scoped_release nogil;
        mlp_fit_forward(op, ls, xp, n);
    }
    return out;
}

}  // namespace

void register_mlp_fit(py::module_& m) {
    m.def("mlp_fit", &mlp_fit_py, py::arg("layers"), py::arg("X"), py::arg("Y"), py::kw_only(),
          py::arg("loss"), py::arg("optim"), py::arg("epochs") = 1, py::arg("batch_size") = 64,
          py::arg("drop_last") = false, py::arg("shuffle") = true, py::arg("seed") = 0,
          py::arg("epoch_offset") = 0, py::arg("perm") = py::none(), py::arg("step0") = 0,
          py::arg("lr_schedule") = py::none(), py::arg("momentum_schedule") = py::none(),
          py::arg("dropout_seed") = 0,
          py::arg("sample_weight") = py::none(), py::arg("class_weight") = py::none(),
          py::arg("pos_weight") = py::none(), py::arg("allow_nonfinite") = false,
          py::arg("sklearn") = py::dict(), py::arg("grad_allreduce") = py::none(),
          py::arg("rank") = 0, py::arg("world_size") = 1, py::arg("path") = "auto",
          "Fused training of a Linear/activation/norm/dropout chain with any loss and optimizer of "
          "fastmlp (see csrc/bindings/mlp_spec.h for the layer/loss/optim dicts); updates "
          "parameters and optimizer state in place. Returns {'losses', 'steps', 'nonfinite'}. "
          "path: 'auto' (the small-matrix path for small chains without norm layers, sgemm "
          "otherwise), 'small' or 'gemm'. "
          "Data-parallel (fit(distributed=True)): with grad_allreduce (a callable), rank computes "
          "its rows [B*rank/world_size, B*(rank+1)/world_size) of every global batch of B rows "
          "(every rank passes the same data and order), normalised by the global batch, and each "
          "step calls grad_allreduce(buf) on a float32 view of the flat gradient buffer (every "
          "trainable parameter's gradient, then the rank's share of the loss), which must sum "
          "it across the ranks in place; the update uses the sums.");
    m.def("mlp_fit_forward", &mlp_fit_forward_py, py::arg("layers"), py::arg("X"),
          "Inference through the same chain (no dropout): (n, out) float32.");
}

}  // namespace fastmlp::bind
