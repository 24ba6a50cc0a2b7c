// fastmlp._cuda: the GPU fused trainer's bindings (mlp_train, mlp_forward). Glue only: parse every
// array's __cuda_array_interface__ and check the parameter chain, data, buffers, the host sample
// order and the options (all metadata first, then the devices), then release the GIL and call
// fastmlp::cuda::mlp_train / mlp_forward on the given stream. Nothing is launched before every
// check has passed.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "cuda_array_checks.h"
#include "perm_check.h"
#include "train_guard.h"
#include "train_result_dict.h"
#include "fastmlp/cuda_mlp.h"

namespace py = pybind11;
using namespace fastmlp::bind::cu;
using fastmlp::bind::check_perm;
using fastmlp::bind::PermArray;

namespace fastmlp::bind {
void register_cuda_mlp(py::module_& m);
}

namespace {

std::string item(const char* what, size_t i) { return std::string(what) + "[" + std::to_string(i) + "]"; }

// The parameter chain on the device. `arrays` holds every parsed array (the kernel reads or
// writes them all); `written` indexes the ones it writes.
struct Chain {
    std::vector<fastmlp::MlpLayer> layers;
    std::vector<CudaArray> arrays;
    std::vector<size_t> written;
};

CudaArray param(py::handle obj, const std::string& name, bool writable) {
    CudaArray a = cuda_array(obj, name.c_str());
    require_contiguous(a);
    if (writable) require_writable(a);
    return a;
}

Chain make_chain(py::sequence weights, py::sequence biases, py::sequence relu,
                 py::object weight_bufs, py::object bias_bufs, bool need_bufs, bool writable) {
    const size_t L = py::len(weights);
    if (L == 0) throw py::value_error("mlp: 'weights' must hold at least one (out, in) matrix");
    if (py::len(biases) != L)
        throw py::value_error("mlp: 'biases' must have one entry (array or None) per weight, got " +
                              std::to_string(py::len(biases)) + " for " + std::to_string(L) + " weights");
    if (py::len(relu) != L)
        throw py::value_error("mlp: 'relu' must have one flag per layer, got " +
                              std::to_string(py::len(relu)) + " for " + std::to_string(L) + " layers");
    py::sequence wb, bb;
    if (need_bufs) {
        if (weight_bufs.is_none() || bias_bufs.is_none())
            throw py::value_error("mlp_train: momentum != 0 needs 'weight_bufs' and 'bias_bufs'");
        wb = weight_bufs.cast<py::sequence>();
        bb = bias_bufs.cast<py::sequence>();
        if (py::len(wb) != L || py::len(bb) != L)
            throw py::value_error("mlp_train: 'weight_bufs' and 'bias_bufs' need one entry per layer");
    }
    Chain c;
    c.layers.resize(L);
    c.arrays.reserve(4 * L);
    auto keep = [&](CudaArray a, bool w) {
        c.arrays.push_back(std::move(a));
        if (w) c.written.push_back(c.arrays.size() - 1);
        return &c.arrays.back();
    };
    for (size_t l = 0; l < L; ++l) {
        fastmlp::MlpLayer& ly = c.layers[l];
        const std::string wn = item("weights", l);
        const CudaArray* w = keep(param(weights[l], wn, writable), writable);
        if (w->shape.size() != 2 || w->shape[0] < 1 || w->shape[1] < 1)
            throw py::value_error("mlp: '" + wn + "' must be a non-empty 2-D (out, in) matrix, got shape " +
                                  shape_str(w->shape));
        ly.out = w->shape[0];
        ly.in = w->shape[1];
        if (l > 0 && ly.in != c.layers[l - 1].out)
            throw py::value_error("mlp: '" + wn + "' has shape " + shape_str(w->shape) + " but layer " +
                                  std::to_string(l - 1) + " outputs " +
                                  std::to_string(c.layers[l - 1].out) + " features");
        ly.weight = w->data();
        const std::vector<int64_t> wshape = w->shape;
        std::vector<int64_t> bshape;
        if (!py::object(biases[l]).is_none()) {
            const std::string bn = item("biases", l);
            const CudaArray* b = keep(param(biases[l], bn, writable), writable);
            if (b->shape.size() != 1 || b->shape[0] != ly.out)
                throw py::value_error("mlp: '" + bn + "' must have shape (" + std::to_string(ly.out) +
                                      ",), got " + shape_str(b->shape));
            ly.bias = b->data();
            bshape = b->shape;
        }
        ly.relu = py::object(relu[l]).cast<bool>();
        if (need_bufs) {
            const std::string wbn = item("weight_bufs", l);
            const CudaArray* wbuf = keep(param(wb[l], wbn, true), true);
            if (wbuf->shape != wshape)
                throw py::value_error("mlp_train: '" + wbn + "' must have the shape of '" + wn +
                                      "' " + shape_str(wshape) + ", got " + shape_str(wbuf->shape));
            ly.weight_buf = wbuf->data();
            if (ly.bias) {
                const std::string bbn = item("bias_bufs", l);
                if (py::object(bb[l]).is_none())
                    throw py::value_error("mlp_train: '" + bbn + "' is None but layer " +
                                          std::to_string(l) + " has a bias");
                const CudaArray* bbuf = keep(param(bb[l], bbn, true), true);
                if (bbuf->shape != bshape)
                    throw py::value_error("mlp_train: '" + bbn + "' must have shape " +
                                          shape_str(bshape) + ", got " + shape_str(bbuf->shape));
                ly.bias_buf = bbuf->data();
            }
        }
    }
    // Every written array is separate from every other array of the chain.
    for (size_t i : c.written)
        for (size_t j = 0; j < c.arrays.size(); ++j)
            if (j != i) check_no_overlap(c.arrays[i], c.arrays[j], false);
    return c;
}

CudaArray data_matrix(py::handle obj, const char* name, int64_t cols) {
    CudaArray a = cuda_array(obj, name);
    if (a.shape.size() != 2 || a.shape[1] != cols)
        throw py::value_error(std::string("mlp: '") + name + "' must have shape (n, " +
                              std::to_string(cols) + "), got " + shape_str(a.shape));
    require_contiguous(a);
    return a;
}

std::vector<const CudaArray*> pointers(const std::vector<CudaArray>& v) {
    std::vector<const CudaArray*> out;
    for (const CudaArray& a : v) out.push_back(&a);
    return out;
}

py::dict mlp_train_py(py::sequence weights, py::sequence biases, py::sequence relu, py::handle X_obj,
                      py::handle Y_obj, int64_t epochs, int64_t batch_size, bool drop_last,
                      py::object perm_obj, float lr, float momentum, float dampening,
                      float weight_decay, bool nesterov, py::object weight_bufs,
                      py::object bias_bufs, bool first_step, bool allow_nonfinite,
                      py::handle stream_obj, py::object frozen, bool interruptible) {
    if (epochs < 0) throw py::value_error("mlp_train: epochs must be >= 0, got " + std::to_string(epochs));
    if (batch_size < 1)
        throw py::value_error("mlp_train: batch_size must be >= 1, got " + std::to_string(batch_size));
    if (!(lr >= 0.0f)) throw py::value_error("mlp_train: lr must be >= 0, got " + std::to_string(lr));
    if (!(momentum >= 0.0f)) throw py::value_error("mlp_train: momentum must be >= 0");
    if (!(weight_decay >= 0.0f)) throw py::value_error("mlp_train: weight_decay must be >= 0");
    if (nesterov && (momentum <= 0.0f || dampening != 0.0f))
        throw py::value_error("mlp_train: nesterov momentum requires a momentum and zero dampening");
    Chain c = make_chain(weights, biases, relu, weight_bufs, bias_bufs, momentum != 0.0f, true);
    fastmlp::bind::apply_frozen(c.layers, frozen);
    bool any_trained = false;
    for (const fastmlp::MlpLayer& ly : c.layers)
        any_trained = any_trained || !ly.frozen_weight || (ly.bias && !ly.frozen_bias);
    if (!any_trained) throw py::value_error("mlp_train: every parameter is frozen");
    CudaArray X = data_matrix(X_obj, "X", c.layers.front().in);
    CudaArray Y = data_matrix(Y_obj, "Y", c.layers.back().out);
    const int64_t n = X.shape[0];
    if (Y.shape[0] != n)
        throw py::value_error("mlp_train: 'X' has " + std::to_string(n) + " rows but 'Y' has " +
                              std::to_string(Y.shape[0]));
    if (n < 1) throw py::value_error("mlp_train: no samples (X has 0 rows)");
    for (size_t i : c.written) {
        check_no_overlap(c.arrays[i], X, false);
        check_no_overlap(c.arrays[i], Y, false);
    }
    fastmlp::cuda::CudaMlpTrainOptions o;
    PermArray perm;
    if (!perm_obj.is_none()) {
        // The order is made on the host (fastmlp._C.mlp_shuffle_order, or the caller's own) and
        // copied to the device once per call. Integers only: forcecast would truncate 1.7 to 1.
        if (hasattr(perm_obj, "__cuda_array_interface__") && !py::isinstance<py::array>(perm_obj))
            throw py::type_error("mlp_train: 'perm' must be a numpy array of integers in host "
                                 "memory (it is copied to the GPU once per call), got a GPU array; "
                                 "pass cupy.asnumpy(perm)");
        bool per_epoch = false;
        perm = check_perm(perm_obj, n, epochs, per_epoch);
        o.perm = perm.data();
        o.perm_per_epoch = per_epoch;
    }
    o.batch_size = batch_size;
    o.drop_last = drop_last;
    o.sgd.lr = lr;
    o.sgd.momentum = momentum;
    o.sgd.dampening = dampening;
    o.sgd.weight_decay = weight_decay;
    o.sgd.nesterov = nesterov;
    o.first_step = first_step;
    o.allow_nonfinite = allow_nonfinite;
    const uintptr_t stream = resolve_stream(stream_obj, X);
    std::vector<const CudaArray*> all = pointers(c.arrays);
    all.push_back(&X);
    all.push_back(&Y);
    const int dev = common_device(all);
    fastmlp::MlpTrainResult r;
    fastmlp::bind::StopWatch watch(interruptible);
    watch.attach(o);
    fastmlp::bind::run_without_gil([&] {  // parks instead of re-taking the GIL when finalizing
        DeviceGuard guard(dev);
        r = fastmlp::cuda::mlp_train(c.layers, X.data(), Y.data(), n, epochs, o,
                                     reinterpret_cast<cudaStream_t>(stream));
    }, watch.watch_finalizing);
    if (r.interrupted) fastmlp::bind::raise_interrupt();  // Ctrl-C: the queued steps finished
    return fastmlp::bind::train_result_dict(r, [](py::dict& d) { d["small_path"] = false; });
}

py::object mlp_forward_py(py::sequence weights, py::sequence biases, py::sequence relu,
                          py::handle X_obj, py::handle out_obj, py::handle stream_obj) {
    Chain c = make_chain(weights, biases, relu, py::none(), py::none(), false, false);
    CudaArray X = data_matrix(X_obj, "X", c.layers.front().in);
    const int64_t n = X.shape[0], d_out = c.layers.back().out;
    CudaArray out = cuda_array(out_obj, "out");
    require_writable(out);
    require_contiguous(out);
    if (out.shape.size() != 2 || out.shape[0] != n || out.shape[1] != d_out)
        throw py::value_error("mlp_forward: 'out' must have shape (" + std::to_string(n) + ", " +
                              std::to_string(d_out) + "), got " + shape_str(out.shape));
    check_no_overlap(out, X, false);
    for (const CudaArray& p : c.arrays) check_no_overlap(out, p, false);
    const uintptr_t stream = resolve_stream(stream_obj, X);
    if (n == 0) return py::reinterpret_borrow<py::object>(out_obj);
    std::vector<const CudaArray*> all = pointers(c.arrays);
    all.push_back(&X);
    all.push_back(&out);
    const int dev = common_device(all);
    {
        py::gil_scoped_release nogil;
        DeviceGuard guard(dev);
        fastmlp::cuda::mlp_forward(out.data(), c.layers, X.data(), n,
                                   reinterpret_cast<cudaStream_t>(stream));
    }
    return py::reinterpret_borrow<py::object>(out_obj);
}

}  // namespace

namespace fastmlp::bind {

void register_cuda_mlp(py::module_& m) {
    const auto none = py::none();
    m.def("mlp_train", &mlp_train_py, py::arg("weights"), py::arg("biases"), py::arg("relu"),
          py::arg("X"), py::arg("Y"), py::kw_only(), py::arg("epochs") = 1,
          py::arg("batch_size") = 64, py::arg("drop_last") = false, py::arg("perm") = none,
          py::arg("lr") = 0.01f, py::arg("momentum") = 0.0f, py::arg("dampening") = 0.0f,
          py::arg("weight_decay") = 0.0f, py::arg("nesterov") = false,
          py::arg("weight_bufs") = none, py::arg("bias_bufs") = none, py::arg("first_step") = true,
          py::arg("allow_nonfinite") = false, py::arg("stream") = none,
          py::arg("frozen") = none, py::arg("interruptible") = false,
          "Fused minibatch SGD (torch.optim.SGD semantics) on a Linear(+ReLU) chain with MSE loss, "
          "on the GPU: weights, biases, buffers, X and Y are float32 GPU arrays updated in place; "
          "'perm' is a host integer array, (n,) or (epochs, n), or None for the samples in order. "
          "The batch loop runs on the stream without waiting; the call returns after one "
          "synchronise with {'losses': per-epoch mean loss, 'steps', 'small_path': False, "
          "'nonfinite': None or (epoch, batch, loss)}. 'frozen': None or one (weight, bias) pair of "
          "bools per layer: those parameters are not updated (requires_grad=False).");
    m.def("mlp_forward", &mlp_forward_py, py::arg("weights"), py::arg("biases"), py::arg("relu"),
          py::arg("X"), py::arg("out"), py::arg("stream") = none,
          "Inference through a Linear(+ReLU) chain on the GPU into 'out' (n, out). Returns out.");
}

}  // namespace fastmlp::bind
