// The fused trainer's chain contract, parsed and validated in one place for _C and _cuda.
//
// Python (fastmlp.trainer) describes a training run as plain data:
//   layers: [ {"weight": (out, in) f32, "bias": (out,) f32 | None, "act": (kind, p0, p1),
//              "dropout": p, "frozen_weight": bool, "frozen_bias": bool,
//              "wstate": [arr | None] * 3, "bstate": [arr | None] * 3}, ... ]
//   loss:   {"kind": Loss, "p0": float, "ignore_index": int, "label_smoothing": float}
//   optim:  {"kind": Optim, "lr", "weight_decay", "momentum", "dampening", "beta1", "beta2",
//            "eps", "alpha", "lr_decay", "nesterov", "amsgrad", "centered", "maximize"}
// Both modules turn that into the same FitLayer / FitOptions structs (mlp_fit.h) through these
// functions; only how an array is accepted differs (host numpy vs device pointers), which the
// caller passes as `Arrays`.
#pragma once
#include <pybind11/pybind11.h>

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

// Parses the layer list: shapes chained, states shaped like their parameter.
inline std::vector<FitLayer> parse_layers(py::list layers, Arrays& arrays) {
    const size_t L = layers.size();
    if (L == 0) throw py::value_error("mlp_fit: 'layers' must hold at least one layer");
    std::vector<FitLayer> out(L);
    for (size_t l = 0; l < L; ++l) {
        py::dict d = layers[l].cast<py::dict>();
        FitLayer& ly = out[l];
        std::vector<int64_t> shape;
        const std::string wn = spec_item("layers", l, "weight");
        ly.frozen_weight = spec_num<bool>(d, "frozen_weight", false);
        ly.frozen_bias = spec_num<bool>(d, "frozen_bias", false);
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
        for (int which = 0; which < 2; ++which) {
            const char* key = which == 0 ? "wstate" : "bstate";
            if (!d.contains(key) || d[key].is_none()) continue;
            py::list st = d[key].cast<py::list>();
            if (st.size() != 3) throw py::value_error("mlp_fit: " + spec_item("layers", l, key) +
                                                      " must hold 3 entries (array or None)");
            for (size_t k = 0; k < 3; ++k) {
                if (st[k].is_none()) continue;
                const std::string sn = spec_item("layers", l, key) + "[" + std::to_string(k) + "]";
                float* p = arrays.f32(st[k], sn, true, shape);
                const int64_t want = which == 0 ? ly.in * ly.out : ly.out;
                int64_t have = 1;
                for (int64_t s : shape) have *= s;
                if (have != want)
                    throw py::value_error("mlp_fit: '" + sn + "' must have the parameter's " +
                                          std::to_string(want) + " elements, got " + std::to_string(have));
                (which == 0 ? ly.wstate : ly.bstate)[k] = p;
            }
        }
    }
    return out;
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
