// fastmlp._cuda: bindings of the multi-tensor optimizer steps (cuda_optimizers.h) with the same
// signatures as _C's (cpu_optimizers.cpp) plus a trailing `stream`: adam_step_many,
// rmsprop_step_many, adagrad_step_many. Glue only: parse and check every array's
// __cuda_array_interface__ (float32, C-contiguous, writable where updated, the parameter's shape,
// no overlap within a parameter's arrays or between parameters), compute each parameter's
// per-step scalars (optim_coeffs) on the host, then ONE launch on the stream.
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "cuda_array_checks.h"
#include "fastmlp/cuda_optimizers.h"
#include "optim_options.h"

namespace py = pybind11;
using namespace fastmlp::bind::cu;

namespace fastmlp::bind {
void register_cuda_optimizers(py::module_& m);
}

namespace {

using fastmlp::Optim;
using fastmlp::OptimOptions;

struct Slot {
    const char* name;
    bool needed;
    py::object list;
};

void step_many(const char* what, const OptimOptions& o, py::sequence params, py::sequence grads,
               Slot* slots, int nslots, py::sequence steps, py::handle stream_obj) {
    const size_t n = py::len(params);
    if (py::len(grads) != n)
        throw py::value_error(std::string(what) + ": 'params' and 'grads' must have the same "
                              "length, got " + std::to_string(n) + " and " +
                              std::to_string(py::len(grads)));
    if (py::len(steps) != n)
        throw py::value_error(std::string(what) + ": 'steps' must be a list of one step count per "
                              "parameter (" + std::to_string(n) + ")");
    std::vector<py::sequence> lists(nslots);
    for (int s = 0; s < nslots; ++s) {
        if (!slots[s].needed) continue;
        if (slots[s].list.is_none() || !py::isinstance<py::sequence>(slots[s].list))
            throw py::value_error(std::string(what) + ": these options need '" + slots[s].name +
                                  "' (a list of one array per parameter)");
        lists[s] = py::reinterpret_borrow<py::sequence>(slots[s].list);
        if (py::len(lists[s]) != n)
            throw py::value_error(std::string(what) + ": '" + slots[s].name + "' must have one "
                                  "array per parameter (" + std::to_string(n) + "), got " +
                                  std::to_string(py::len(lists[s])));
    }
    std::vector<CudaArray> arrs;  // per parameter: param, grad, then the needed slots
    arrs.reserve(n * (2 + nslots));
    std::vector<fastmlp::cuda::OptimParam> table(n);
    for (size_t i = 0; i < n; ++i) {
        const std::string idx = "[" + std::to_string(i) + "]";
        const size_t base = arrs.size();
        arrs.push_back(cuda_array(params[i], ("params" + idx).c_str()));
        arrs.push_back(cuda_array(grads[i], ("grads" + idx).c_str()));
        CudaArray& p = arrs[base];
        CudaArray& g = arrs[base + 1];
        require_writable(p);
        require_contiguous(p);
        require_contiguous(g);
        check_same_shape(p, g);
        check_no_overlap(p, g, false);
        float* sp[3] = {nullptr, nullptr, nullptr};
        for (int s = 0; s < nslots; ++s) {
            if (!slots[s].needed) continue;
            arrs.push_back(cuda_array(lists[s][i], (std::string(slots[s].name) + idx).c_str()));
            CudaArray& a = arrs.back();
            require_writable(a);
            require_contiguous(a);
            check_same_shape(arrs[base], a);
            for (size_t r = base; r + 1 < arrs.size(); ++r) check_no_overlap(a, arrs[r], false);
            sp[s] = a.data();
        }
        const int64_t t = steps[i].cast<int64_t>();
        if (t < 1)
            throw py::value_error(std::string(what) + ": step counts must be >= 1 (the count after "
                                  "this step), got " + std::to_string(t));
        table[i] = {arrs[base].data(), arrs[base + 1].data(), sp[0], sp[1], sp[2],
                    arrs[base].size, fastmlp::optim_coeffs(o, t)};
    }
    // Parameters (and their states) must not overlap each other either: each is updated alone.
    std::vector<size_t> starts;
    for (size_t k = 0, i = 0; i < n; ++i) {
        starts.push_back(k);
        k += 2;
        for (int s = 0; s < nslots; ++s) k += slots[s].needed ? 1 : 0;
    }
    starts.push_back(arrs.size());
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j)
            for (size_t a = starts[i]; a < starts[i + 1]; ++a)
                for (size_t b = starts[j]; b < starts[j + 1]; ++b)
                    if ((a - starts[i]) != 1 || (b - starts[j]) != 1)  // two grads may alias
                        check_no_overlap(arrs[a], arrs[b], false);
    if (n == 0) return;
    if (n > size_t(1) << 30) throw py::value_error(std::string(what) + ": too many parameters");
    std::vector<const CudaArray*> ptrs;
    for (auto& a : arrs) ptrs.push_back(&a);
    const uintptr_t stream = resolve_stream(stream_obj, arrs[0]);
    const int dev = common_device(ptrs);
    py::gil_scoped_release nogil;
    DeviceGuard guard(dev);
    fastmlp::cuda::optim_step_list(table.data(), int(n), o.kind,
                                   reinterpret_cast<cudaStream_t>(stream));
}

void adam_step_many_py(py::sequence params, py::sequence grads, py::object exp_avgs,
                       py::object exp_avg_sqs, py::object max_exp_avg_sqs, py::sequence steps,
                       double lr, double beta1, double beta2, double eps, double weight_decay,
                       bool amsgrad, bool maximize, bool decoupled_weight_decay,
                       py::handle stream) {
    const OptimOptions o = fastmlp::bind::adam_options(lr, beta1, beta2, eps, weight_decay,
                                                       amsgrad, maximize, decoupled_weight_decay);
    Slot s[3] = {{"exp_avgs", true, exp_avgs}, {"exp_avg_sqs", true, exp_avg_sqs},
                 {"max_exp_avg_sqs", amsgrad, max_exp_avg_sqs}};
    step_many("adam_step_many", o, params, grads, s, 3, steps, stream);
}

void rmsprop_step_many_py(py::sequence params, py::sequence grads, py::object square_avgs,
                          py::object momentum_buffers, py::object grad_avgs, py::sequence steps,
                          double lr, double alpha, double eps, double weight_decay,
                          double momentum, bool centered, bool maximize, py::handle stream) {
    const OptimOptions o =
        fastmlp::bind::rmsprop_options(lr, alpha, eps, weight_decay, momentum, centered, maximize);
    Slot s[3] = {{"square_avgs", true, square_avgs},
                 {"momentum_buffers", momentum > 0.0, momentum_buffers},
                 {"grad_avgs", centered, grad_avgs}};
    step_many("rmsprop_step_many", o, params, grads, s, 3, steps, stream);
}

void adagrad_step_many_py(py::sequence params, py::sequence grads, py::object state_sums,
                          py::sequence steps, double lr, double lr_decay, double eps,
                          double weight_decay, bool maximize, py::handle stream) {
    const OptimOptions o = fastmlp::bind::adagrad_options(lr, lr_decay, eps, weight_decay, maximize);
    Slot s[1] = {{"state_sums", true, state_sums}};
    step_many("adagrad_step_many", o, params, grads, s, 1, steps, stream);
}

}  // namespace

namespace fastmlp::bind {

void register_cuda_optimizers(py::module_& m) {
    const auto none = py::none();
    m.def("adam_step_many", &adam_step_many_py, py::arg("params"), py::arg("grads"),
          py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
          py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
          py::arg("weight_decay"), py::arg("amsgrad"), py::arg("maximize"),
          py::arg("decoupled_weight_decay"), py::arg("stream") = none,
          "torch.optim.Adam (AdamW when decoupled_weight_decay) over lists, in ONE launch.");
    m.def("rmsprop_step_many", &rmsprop_step_many_py, py::arg("params"), py::arg("grads"),
          py::arg("square_avgs"), py::arg("momentum_buffers"), py::arg("grad_avgs"),
          py::arg("steps"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
          py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"), py::arg("maximize"),
          py::arg("stream") = none, "torch.optim.RMSprop over lists, in ONE launch.");
    m.def("adagrad_step_many", &adagrad_step_many_py, py::arg("params"), py::arg("grads"),
          py::arg("state_sums"), py::arg("steps"), py::arg("lr"), py::arg("lr_decay"),
          py::arg("eps"), py::arg("weight_decay"), py::arg("maximize"), py::arg("stream") = none,
          "torch.optim.Adagrad over lists, in ONE launch.");
}

}  // namespace fastmlp::bind
