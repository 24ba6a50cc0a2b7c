// fastmlp._C: bindings of the multi-tensor optimizer steps (optimizers.h): adam_step_many,
// rmsprop_step_many, adagrad_step_many and the generic optim_step_many (with its plain reference,
// for tests). Glue only: each parameter's arrays are checked (float32, C-contiguous, writable
// where updated, same shape as the parameter, no overlap), then one kernel call steps them all
// without the GIL. Hyper-parameters are validated once in Python (fastmlp.optim); the kernels
// assume valid options.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "array_checks.h"
#include "fastmlp/optimizers.h"
#include "optim_options.h"

namespace py = pybind11;

namespace fastmlp::bind {
namespace {

// fast_f32 / in_arr / out_arr / raw_arr: array_checks.h

Optim kind_from_name(const std::string& s) {
    if (s == "sgd") return Optim::sgd;
    if (s == "adam") return Optim::adam;
    if (s == "adamw") return Optim::adamw;
    if (s == "rmsprop") return Optim::rmsprop;
    if (s == "adagrad") return Optim::adagrad;
    throw py::value_error("optim_step_many: 'kind' must be one of 'sgd', 'adam', 'adamw', "
                          "'rmsprop', 'adagrad', got '" + s + "'");
}

// A state list: needed (a list with one array per parameter) or unused (ignored, may be None).
struct StateList {
    const char* name;
    bool needed;
    py::list list;
};

void step_many(const char* what, const OptimOptions& o, py::list params, py::list grads,
               StateList* states, int nstates, py::handle steps_obj, bool reference) {
    const size_t n = params.size();
    if (grads.size() != n)
        throw py::value_error(std::string(what) + ": 'params' and 'grads' must have the same "
                              "length, got " + std::to_string(n) + " and " +
                              std::to_string(grads.size()));
    py::list steps = py::reinterpret_borrow<py::list>(steps_obj);
    if (!py::isinstance<py::list>(steps_obj) || steps.size() != n)
        throw py::value_error(std::string(what) + ": 'steps' must be a list of one step count per "
                              "parameter (" + std::to_string(n) + ")");
    for (int s = 0; s < nstates; ++s)
        if (states[s].needed && states[s].list.size() != n)
            throw py::value_error(std::string(what) + ": '" + states[s].name + "' must have one "
                                  "array per parameter (" + std::to_string(n) + "), got " +
                                  std::to_string(states[s].list.size()));
    std::vector<py::array> keep;
    keep.reserve((2 + nstates) * n);
    std::vector<float*> pp(n);
    std::vector<const float*> gp(n);
    std::vector<std::vector<float*>> sp(3, std::vector<float*>(n, nullptr));
    std::vector<int64_t> sizes(n), st(n);
    for (size_t i = 0; i < n; ++i) {
        py::array p = out_arr(params[i], "param");
        check_same_shape(p, "param", raw_arr(grads[i], "grad"), "grad");
        py::array g = in_arr(grads[i], "grad");
        check_no_overlap(p, "param", g, "grad", false);
        pp[i] = static_cast<float*>(p.mutable_data());
        gp[i] = static_cast<const float*>(g.data());
        sizes[i] = p.size();
        const int64_t t = steps[i].cast<int64_t>();
        if (t < 1)
            throw py::value_error(std::string(what) + ": step counts must be >= 1 (the count after "
                                  "this step), got " + std::to_string(t));
        st[i] = t;
        keep.push_back(p);
        keep.push_back(g);
        py::array cur[3];
        for (int s = 0; s < nstates; ++s) {
            if (!states[s].needed) continue;
            py::array a = out_arr(states[s].list[i], states[s].name);
            check_same_shape(p, "param", a, states[s].name);
            check_no_overlap(a, states[s].name, p, "param", false);
            check_no_overlap(a, states[s].name, g, "grad", false);
            for (int r = 0; r < s; ++r)
                if (states[r].needed) check_no_overlap(a, states[s].name, cur[r], states[r].name, false);
            sp[s][i] = static_cast<float*>(a.mutable_data());
            cur[s] = a;
            keep.push_back(a);
        }
    }
    float* const* s0 = nstates > 0 && states[0].needed ? sp[0].data() : nullptr;
    float* const* s1 = nstates > 1 && states[1].needed ? sp[1].data() : nullptr;
    float* const* s2 = nstates > 2 && states[2].needed ? sp[2].data() : nullptr;
    py::gil_scoped_release nogil;
    if (reference)
        optim_step_many_reference(pp.data(), gp.data(), s0, s1, s2, sizes.data(), st.data(),
                                  int64_t(n), o);
    else
        optim_step_many(pp.data(), gp.data(), s0, s1, s2, sizes.data(), st.data(), int64_t(n), o);
}

py::list as_list(py::handle h, const char* what, const char* name, bool needed) {
    if (!needed) return py::list();
    if (!py::isinstance<py::list>(h))
        throw py::value_error(std::string(what) + ": these options need '" + name +
                              "' (a list of one array per parameter), got " +
                              std::string(py::str(py::type::handle_of(h).attr("__name__"))));
    return py::reinterpret_borrow<py::list>(h);
}

void adam_step_many_py(py::list params, py::list grads, py::handle exp_avgs,
                       py::handle exp_avg_sqs, py::handle max_exp_avg_sqs, py::handle steps,
                       double lr, double beta1, double beta2, double eps, double weight_decay,
                       bool amsgrad, bool maximize, bool decoupled_weight_decay) {
    const char* what = "adam_step_many";
    const OptimOptions o = adam_options(lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
                                      decoupled_weight_decay);
    StateList s[3] = {{"exp_avgs", true, as_list(exp_avgs, what, "exp_avgs", true)},
                      {"exp_avg_sqs", true, as_list(exp_avg_sqs, what, "exp_avg_sqs", true)},
                      {"max_exp_avg_sqs", amsgrad,
                       as_list(max_exp_avg_sqs, what, "max_exp_avg_sqs", amsgrad)}};
    step_many(what, o, params, grads, s, 3, steps, false);
}

void rmsprop_step_many_py(py::list params, py::list grads, py::handle square_avgs,
                          py::handle momentum_buffers, py::handle grad_avgs, py::handle steps,
                          double lr, double alpha, double eps, double weight_decay,
                          double momentum, bool centered, bool maximize) {
    const char* what = "rmsprop_step_many";
    const OptimOptions o =
        rmsprop_options(lr, alpha, eps, weight_decay, momentum, centered, maximize);
    const bool mom = momentum > 0.0;
    StateList s[3] = {{"square_avgs", true, as_list(square_avgs, what, "square_avgs", true)},
                      {"momentum_buffers", mom,
                       as_list(momentum_buffers, what, "momentum_buffers", mom)},
                      {"grad_avgs", centered, as_list(grad_avgs, what, "grad_avgs", centered)}};
    step_many(what, o, params, grads, s, 3, steps, false);
}

void adagrad_step_many_py(py::list params, py::list grads, py::handle state_sums,
                          py::handle steps, double lr, double lr_decay, double eps,
                          double weight_decay, bool maximize) {
    const char* what = "adagrad_step_many";
    const OptimOptions o = adagrad_options(lr, lr_decay, eps, weight_decay, maximize);
    StateList s[1] = {{"state_sums", true, as_list(state_sums, what, "state_sums", true)}};
    step_many(what, o, params, grads, s, 1, steps, false);
}

// Every kind through one door, with the serial scalar reference on request (tests).
void optim_step_many_py(const std::string& kind, py::list params, py::list grads,
                        py::handle state0, py::handle state1, py::handle state2, py::handle steps,
                        double lr, double weight_decay, double momentum, double dampening,
                        double beta1, double beta2, double eps, double alpha, double lr_decay,
                        bool nesterov, bool amsgrad, bool centered, bool maximize,
                        bool reference) {
    const char* what = "optim_step_many";
    OptimOptions o;
    o.kind = kind_from_name(kind);
    o.lr = lr;
    o.weight_decay = weight_decay;
    o.momentum = momentum;
    o.dampening = dampening;
    o.beta1 = beta1;
    o.beta2 = beta2;
    o.eps = eps;
    o.alpha = alpha;
    o.lr_decay = lr_decay;
    o.nesterov = nesterov;
    o.amsgrad = amsgrad;
    o.centered = centered;
    o.maximize = maximize;
    bool need[3] = {false, false, false};
    switch (o.kind) {
        case Optim::sgd: need[0] = momentum != 0.0; break;
        case Optim::adam:
        case Optim::adamw: need[0] = need[1] = true; need[2] = amsgrad; break;
        case Optim::rmsprop: need[0] = true; need[1] = momentum > 0.0; need[2] = centered; break;
        case Optim::adagrad: need[0] = true; break;
    }
    StateList s[3] = {{"state0", need[0], as_list(state0, what, "state0", need[0])},
                      {"state1", need[1], as_list(state1, what, "state1", need[1])},
                      {"state2", need[2], as_list(state2, what, "state2", need[2])}};
    step_many(what, o, params, grads, s, 3, steps, reference);
}

}  // namespace

void register_optimizers(py::module_& m) {
    m.def("adam_step_many", &adam_step_many_py, py::arg("params"), py::arg("grads"),
          py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
          py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
          py::arg("weight_decay"), py::arg("amsgrad"), py::arg("maximize"),
          py::arg("decoupled_weight_decay"),
          "torch.optim.Adam (AdamW when decoupled_weight_decay) over lists of parameters; steps "
          "are the per-parameter step counts after this step.");
    m.def("rmsprop_step_many", &rmsprop_step_many_py, py::arg("params"), py::arg("grads"),
          py::arg("square_avgs"), py::arg("momentum_buffers"), py::arg("grad_avgs"),
          py::arg("steps"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
          py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"), py::arg("maximize"),
          "torch.optim.RMSprop over lists of parameters.");
    m.def("adagrad_step_many", &adagrad_step_many_py, py::arg("params"), py::arg("grads"),
          py::arg("state_sums"), py::arg("steps"), py::arg("lr"), py::arg("lr_decay"),
          py::arg("eps"), py::arg("weight_decay"), py::arg("maximize"),
          "torch.optim.Adagrad over lists of parameters.");
    m.def("optim_step_many", &optim_step_many_py, py::arg("kind"), py::arg("params"),
          py::arg("grads"), py::arg("state0"), py::arg("state1"), py::arg("state2"),
          py::arg("steps"), py::arg("lr"), py::arg("weight_decay") = 0.0,
          py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("beta1") = 0.9,
          py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("alpha") = 0.99,
          py::arg("lr_decay") = 0.0, py::arg("nesterov") = false, py::arg("amsgrad") = false,
          py::arg("centered") = false, py::arg("maximize") = false, py::arg("reference") = false,
          "Any optimizer kind ('sgd', 'adam', 'adamw', 'rmsprop', 'adagrad') with state slots "
          "state0..2 as optimizer.h lists; reference=True runs the serial scalar reference.");
}

}  // namespace fastmlp::bind
