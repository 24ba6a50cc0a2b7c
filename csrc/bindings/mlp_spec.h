// The fused trainer's chain contract, parsed and validated in one place for _C and _cuda.
//
// Python (fastmlp.trainer) describes a training run as plain data:
//   layers: [ {"weight": (out, in) f32, "bias": (out,) f32 | None, "act": (kind, p0, p1),
//              "dropout": p, "frozen_weight": bool, "frozen_bias": bool,
//              "wstate": [arr | None] * 3, "bstate": [arr | None] * 3,
//              "norm": None | {"kind": Norm (1 layer, 2 batch), "before_act": bool, "eps": float,
//                       "weight": (out,) | None, "bias": (out,) | None, "frozen_weight",
//                       "frozen_bias", "wstate", "bstate" (as the layer's), and for BatchNorm1d
//                       "batch_stats": bool, "running_mean": (out,) | None, "running_var",
//                       "momentum": float, "cumulative": bool, "count": int}}, ... ]
//   loss:   {"kind": Loss, "p0": float, "ignore_index": int, "label_smoothing": float}
//   optim:  {"kind": Optim, "lr", "weight_decay", "momentum", "dampening", "beta1", "beta2",
//            "eps", "alpha", "lr_decay", "nesterov", "amsgrad", "centered", "maximize"}
// Both modules turn that into the same FitLayer / FitOptions structs (mlp_fit.h) through these
// functions; only how an array is accepted differs (host numpy vs device pointers), which the
// caller passes as `Arrays`.
#pragma once
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fastmlp/mlp_fit.h"

namespace fastmlp::bind {

namespace py = pybind11;

// How one module accepts an array: writable (the trainer updates it) or read-only; returns the
// float pointer and its shape, keeping whatever owns it alive.
struct Arrays {
    virtual ~Arrays() = default;
    virtual float* f32(py::handle obj, const std::string& name, bool writable,
                       std::vector<int64_t>& shape) = 0;
};

inline std::string spec_item(const char* what, size_t i, const char* field) {
    return std::string(what) + "[" + std::to_string(i) + "]['" + field + "']";
}

inline py::object spec_get(py::dict d, const char* key, const std::string& where) {
    if (!d.contains(key)) throw py::value_error("mlp_fit: " + where + " has no '" + key + "'");
    return d[key];
}

template <typename T>
T spec_num(py::dict d, const char* key, T dflt) {
    return d.contains(key) ? d[key].cast<T>() : dflt;
}

inline ActParams parse_act(py::handle h, const std::string& where) {
    py::tuple t = py::reinterpret_borrow<py::object>(h).cast<py::tuple>();
    if (t.size() != 3) throw py::value_error("mlp_fit: " + where + " must be (kind, p0, p1)");
    const int k = t[0].cast<int>();
    if (k < 0 || k >= kActCount)
        throw py::value_error("mlp_fit: " + where + " has activation kind " + std::to_string(k) +
                              ", expected 0.." + std::to_string(kActCount - 1));
    ActParams a;
    a.kind = Act(k);
    a.p0 = t[1].cast<float>();
    a.p1 = t[2].cast<float>();
    return a;
}

// Optimizer state [s0, s1, s2] of a parameter with `want` elements into st (None entries null).
inline void parse_state(py::dict d, const char* key, const std::string& where, int64_t want,
                        Arrays& arrays, float** st_out) {
    if (!d.contains(key) || d[key].is_none()) return;
    py::list st = d[key].cast<py::list>();
    if (st.size() != 3)
        throw py::value_error("mlp_fit: " + where + " must hold 3 entries (array or None)");
    std::vector<int64_t> shape;
    for (size_t k = 0; k < 3; ++k) {
        if (st[k].is_none()) continue;
        const std::string sn = where + "[" + std::to_string(k) + "]";
        float* p = arrays.f32(st[k], sn, true, shape);
        int64_t have = 1;
        for (int64_t s : shape) have *= s;
        if (have != want)
            throw py::value_error("mlp_fit: '" + sn + "' must have the parameter's " +
                                  std::to_string(want) + " elements, got " + std::to_string(have));
        st_out[k] = p;
    }
}

inline const char* norm_name(Norm k) { return k == Norm::layer ? "LayerNorm" : "BatchNorm1d"; }

// A layer's "norm" dict (see the header comment); `inference`: nothing is written (predict).
inline void parse_norm(py::dict nd, const std::string& where, int64_t C, bool inference,
                       Arrays& arrays, FitNorm& nm) {
    const int k = spec_get(nd, "kind", where).cast<int>();
    if (k < 1 || k >= kNormCount)
        throw py::value_error("mlp_fit: " + where + "['kind'] is " + std::to_string(k) +
                              ", expected 1 (LayerNorm) or 2 (BatchNorm1d)");
    nm.kind = Norm(k);
    const std::string nn = norm_name(nm.kind);
    nm.before_act = spec_num<bool>(nd, "before_act", true);
    nm.eps = spec_num<float>(nd, "eps", 1e-5f);
    if (!(nm.eps >= 0.0f) || !std::isfinite(nm.eps))
        throw py::value_error("mlp_fit: " + where + " (" + nn + ") eps must be a finite number >= 0, "
                              "got " + std::to_string(nm.eps));
    nm.frozen_weight = inference || spec_num<bool>(nd, "frozen_weight", false);
    nm.frozen_bias = inference || spec_num<bool>(nd, "frozen_bias", false);
    std::vector<int64_t> shape;
    auto vec = [&](const char* key, bool writable) -> float* {
        if (!nd.contains(key) || nd[key].is_none()) return nullptr;
        const std::string an = where + "['" + key + "']";
        float* p = arrays.f32(nd[key], an, writable, shape);
        if (shape.size() != 1 || shape[0] != C)
            throw py::value_error("mlp_fit: '" + an + "' (" + nn + ") must have shape (" +
                                  std::to_string(C) + ",) (the layer's " + std::to_string(C) +
                                  " features), got " + std::to_string(shape.size()) + "-D");
        return p;
    };
    nm.weight = vec("weight", !nm.frozen_weight);
    nm.bias = vec("bias", !nm.frozen_bias);
    if (!inference) {
        parse_state(nd, "wstate", where + "['wstate']", C, arrays, nm.wstate);
        parse_state(nd, "bstate", where + "['bstate']", C, arrays, nm.bstate);
    }
    if (nm.kind == Norm::batch) {
        nm.batch_stats = spec_num<bool>(nd, "batch_stats", true);
        const bool update = !inference && nm.batch_stats;
        nm.running_mean = vec("running_mean", update);
        nm.running_var = vec("running_var", update);
        if (bool(nm.running_mean) != bool(nm.running_var))
            throw py::value_error("mlp_fit: " + where + " (BatchNorm1d) needs both running_mean "
                                  "and running_var, or neither");
        if (!nm.batch_stats && !nm.running_mean)
            throw py::value_error("mlp_fit: " + where + " (BatchNorm1d) normalises with running "
                                  "statistics (batch_stats=False) but has none");
        nm.momentum = spec_num<double>(nd, "momentum", 0.1);
        if (!std::isfinite(nm.momentum))
            throw py::value_error("mlp_fit: " + where + " (BatchNorm1d) momentum must be finite");
        nm.cumulative = spec_num<bool>(nd, "cumulative", false);
        nm.count0 = spec_num<int64_t>(nd, "count", 0);
        if (nm.count0 < 0)
            throw py::value_error("mlp_fit: " + where + " (BatchNorm1d) count must be >= 0");
    }
}

// Parses the layer list: shapes chained, states shaped like their parameter; `inference`
// (mlp_fit_forward): every array is read-only, frozen and states ignored.
inline std::vector<FitLayer> parse_layers(py::list layers, Arrays& arrays, bool inference = false) {
    const size_t L = layers.size();
    if (L == 0) throw py::value_error("mlp_fit: 'layers' must hold at least one layer");
    std::vector<FitLayer> out(L);
    for (size_t l = 0; l < L; ++l) {
        py::dict d = layers[l].cast<py::dict>();
        FitLayer& ly = out[l];
        std::vector<int64_t> shape;
        const std::string wn = spec_item("layers", l, "weight");
        ly.frozen_weight = inference || spec_num<bool>(d, "frozen_weight", false);
        ly.frozen_bias = inference || spec_num<bool>(d, "frozen_bias", false);
        ly.weight = arrays.f32(spec_get(d, "weight", "layers[" + std::to_string(l) + "]"), wn,
                               !ly.frozen_weight, shape);
        if (shape.size() != 2 || shape[0] < 1 || shape[1] < 1)
            throw py::value_error("mlp_fit: '" + wn + "' must be a non-empty 2-D (out, in) matrix");
        ly.out = shape[0];
        ly.in = shape[1];
        if (l > 0 && ly.in != out[l - 1].out)
            throw py::value_error("mlp_fit: '" + wn + "' takes " + std::to_string(ly.in) +
                                  " features but layer " + std::to_string(l - 1) + " outputs " +
                                  std::to_string(out[l - 1].out));
        if (d.contains("bias") && !d["bias"].is_none()) {
            const std::string bn = spec_item("layers", l, "bias");
            ly.bias = arrays.f32(d["bias"], bn, !ly.frozen_bias, shape);
            if (shape.size() != 1 || shape[0] != ly.out)
                throw py::value_error("mlp_fit: '" + bn + "' must have shape (" +
                                      std::to_string(ly.out) + ",)");
        }
        ly.act = d.contains("act") ? parse_act(d["act"], spec_item("layers", l, "act")) : ActParams{};
        ly.dropout = spec_num<float>(d, "dropout", 0.0f);
        if (!(ly.dropout >= 0.0f && ly.dropout <= 1.0f))
            throw py::value_error("mlp_fit: " + spec_item("layers", l, "dropout") +
                                  " must be in [0, 1], got " + std::to_string(ly.dropout));
        if (!inference) {
            parse_state(d, "wstate", spec_item("layers", l, "wstate"), ly.in * ly.out, arrays,
                        ly.wstate);
            parse_state(d, "bstate", spec_item("layers", l, "bstate"), ly.out, arrays, ly.bstate);
        }
        if (d.contains("norm") && !d["norm"].is_none())
            parse_norm(d["norm"].cast<py::dict>(), spec_item("layers", l, "norm"), ly.out,
                       inference, arrays, ly.norm);
    }
    return out;
}

// A BatchNorm1d normalising with the batch's statistics needs batches of more than one sample
// (PyTorch: "Expected more than 1 value per channel when training"): refused before training.
inline void check_norm_batches(const std::vector<FitLayer>& ls, int64_t n, int64_t batch_size,
                               bool drop_last) {
    const int64_t full = std::min(batch_size, n), last = n % batch_size;
    const bool one = full == 1 || (!drop_last && last == 1);
    if (!one) return;
    for (size_t l = 0; l < ls.size(); ++l)
        if (ls[l].norm.kind == Norm::batch && ls[l].norm.batch_stats)
            throw py::value_error(
                "mlp_fit: layer " + std::to_string(l) + "'s BatchNorm1d normalises with the "
                "batch's statistics, but batch_size=" + std::to_string(batch_size) + " with " +
                std::to_string(n) + " samples" + (drop_last ? "" : " (drop_last=False)") +
                " gives a batch of 1 sample (Expected more than 1 value per channel when "
                "training); choose another batch_size or drop_last=True");
}

// Inference of n rows: PyTorch's eval-mode BatchNorm1d without running statistics uses the
// batch's, which one row cannot give.
inline void check_forward_norm_rows(const std::vector<FitLayer>& ls, int64_t n) {
    if (n != 1) return;
    for (size_t l = 0; l < ls.size(); ++l)
        if (ls[l].norm.kind == Norm::batch && !ls[l].norm.running_mean)
            throw py::value_error("mlp_fit_forward: layer " + std::to_string(l) +
                                  "'s BatchNorm1d has no running statistics "
                                  "(track_running_stats=False), so it normalises with the "
                                  "batch's: Expected more than 1 value per channel, got 1 row");
}

// The run's scalar keywords, shared by _C.mlp_fit and _cuda.mlp_fit: checked, and with the
// scikit-learn conventions dict set on `o` (set_run_options).
struct RunArgs {
    int64_t epochs = 1, batch_size = 64, epoch_offset = 0, step0 = 0;
    bool drop_last = false, shuffle = true, allow_nonfinite = false;
    uint64_t seed = 0, dropout_seed = 0;
};

inline void check_run_args(const RunArgs& r) {
    if (r.epochs < 0)
        throw py::value_error("mlp_fit: epochs must be >= 0, got " + std::to_string(r.epochs));
    if (r.batch_size < 1)
        throw py::value_error("mlp_fit: batch_size must be >= 1, got " + std::to_string(r.batch_size));
    if (r.step0 < 0) throw py::value_error("mlp_fit: step0 must be >= 0");
}

inline void set_run_options(FitOptions& o, const RunArgs& r, py::dict sklearn) {
    o.batch_size = r.batch_size;
    o.drop_last = r.drop_last;
    o.shuffle = r.shuffle;
    o.seed = r.seed;
    o.epoch_offset = r.epoch_offset;
    o.step0 = r.step0;
    o.dropout_seed = r.dropout_seed;
    o.allow_nonfinite = r.allow_nonfinite;
    o.loss_sum_outputs = spec_num<bool>(sklearn, "loss_sum_outputs", false);
    o.loss_scale = spec_num<float>(sklearn, "loss_scale", 1.0f);
    o.l2_weights = spec_num<float>(sklearn, "l2_weights", 0.0f);
    o.adam_eps_before_correction = spec_num<bool>(sklearn, "adam_eps_before_correction", false);
    if (!(o.loss_scale > 0.0f) || !(o.l2_weights >= 0.0f))
        throw py::value_error("mlp_fit: sklearn loss_scale must be > 0 and l2_weights >= 0");
}

// class_weight goes with cross_entropy, pos_weight with bce_with_logits (whether each was given).
inline void check_weight_kinds(const FitOptions& o, bool class_weight, bool pos_weight) {
    if (class_weight && o.loss.kind != Loss::cross_entropy)
        throw py::value_error("mlp_fit: 'class_weight' applies to cross_entropy only");
    if (pos_weight && o.loss.kind != Loss::bce_with_logits)
        throw py::value_error("mlp_fit: 'pos_weight' applies to bce_with_logits only");
}

// Class-index targets y (n) in [0, classes) or ignore_index (PyTorch's message otherwise).
inline void check_class_targets(const int64_t* y, int64_t n, int64_t classes, int64_t ignore_index) {
    for (int64_t i = 0; i < n; ++i)
        if ((y[i] < 0 || y[i] >= classes) && y[i] != ignore_index)
            throw py::value_error("mlp_fit: Target " + std::to_string(y[i]) +
                                  " is out of bounds (the model has " + std::to_string(classes) +
                                  " classes)");
}

// X and float targets Y have the same number of rows.
inline void check_same_rows(int64_t nx, int64_t ny) {
    if (nx != ny)
        throw py::value_error("mlp_fit: 'X' has " + std::to_string(nx) + " rows but 'Y' has " +
                              std::to_string(ny));
}

inline void parse_loss(py::dict d, FitOptions& o) {
    const int k = spec_get(d, "kind", "loss").cast<int>();
    if (k < 0 || k >= kLossCount)
        throw py::value_error("mlp_fit: loss kind " + std::to_string(k) + " is not one of 0.." +
                              std::to_string(kLossCount - 1));
    o.loss.kind = Loss(k);
    o.loss.p0 = spec_num<float>(d, "p0", 1.0f);
    o.ignore_index = spec_num<int64_t>(d, "ignore_index", -100);
    o.label_smoothing = spec_num<float>(d, "label_smoothing", 0.0f);
    if (!(o.label_smoothing >= 0.0f && o.label_smoothing <= 1.0f))
        throw py::value_error("mlp_fit: label_smoothing must be in [0, 1]");
}

inline void parse_optim(py::dict d, FitOptions& o) {
    const int k = spec_get(d, "kind", "optim").cast<int>();
    if (k < 0 || k >= kOptimCount)
        throw py::value_error("mlp_fit: optimizer kind " + std::to_string(k) + " is not one of 0.." +
                              std::to_string(kOptimCount - 1));
    OptimOptions& p = o.optim;
    p.kind = Optim(k);
    p.lr = spec_num<double>(d, "lr", p.lr);
    p.weight_decay = spec_num<double>(d, "weight_decay", 0.0);
    p.momentum = spec_num<double>(d, "momentum", 0.0);
    p.dampening = spec_num<double>(d, "dampening", 0.0);
    p.beta1 = spec_num<double>(d, "beta1", p.beta1);
    p.beta2 = spec_num<double>(d, "beta2", p.beta2);
    p.eps = spec_num<double>(d, "eps", p.eps);
    p.alpha = spec_num<double>(d, "alpha", p.alpha);
    p.lr_decay = spec_num<double>(d, "lr_decay", 0.0);
    p.nesterov = spec_num<bool>(d, "nesterov", false);
    p.amsgrad = spec_num<bool>(d, "amsgrad", false);
    p.centered = spec_num<bool>(d, "centered", false);
    p.maximize = spec_num<bool>(d, "maximize", false);
}

}  // namespace fastmlp::bind
