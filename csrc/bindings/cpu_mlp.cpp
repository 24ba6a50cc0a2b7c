// fastmlp._C: the fused MLP trainer's bindings (mlp_train, mlp_forward, mlp_shuffle_order).
// Glue only: validate the parameter chain, data, buffers and options, release the GIL, call
// fastmlp::mlp_train / mlp_forward.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "array_checks.h"
#include "perm_check.h"
#include "train_guard.h"
#include "train_result_dict.h"
#include "fastmlp/mlp.h"

namespace py = pybind11;

namespace fastmlp::bind {

namespace {

std::string item(const char* what, size_t i) { return std::string(what) + "[" + std::to_string(i) + "]"; }

// The parameter chain: weights (out, in) C-contiguous float32 writable, chained widths, biases
// (out) or None, ReLU flags, optional momentum buffers shaped like the parameters.
struct Chain {
    std::vector<MlpLayer> layers;
    std::vector<py::array> keep;  // every array the kernel writes or reads
};

Chain make_chain(py::list weights, py::list biases, py::list relu, py::object weight_bufs,
                 py::object bias_bufs, bool need_bufs, bool writable) {
    const size_t L = weights.size();
    if (L == 0) throw py::value_error("mlp: 'weights' must hold at least one (out, in) matrix");
    if (biases.size() != L)
        throw py::value_error("mlp: 'biases' must have one entry (array or None) per weight, got " +
                              std::to_string(biases.size()) + " for " + std::to_string(L) + " weights");
    if (relu.size() != L)
        throw py::value_error("mlp: 'relu' must have one flag per layer, got " +
                              std::to_string(relu.size()) + " for " + std::to_string(L) + " layers");
    py::list wb, bb;
    if (need_bufs) {
        if (weight_bufs.is_none() || bias_bufs.is_none())
            throw py::value_error("mlp_train: momentum != 0 needs 'weight_bufs' and 'bias_bufs'");
        wb = weight_bufs.cast<py::list>();
        bb = bias_bufs.cast<py::list>();
        if (wb.size() != L || bb.size() != L)
            throw py::value_error("mlp_train: 'weight_bufs' and 'bias_bufs' need one entry per layer");
    }
    Chain c;
    c.layers.resize(L);
    for (size_t l = 0; l < L; ++l) {
        MlpLayer& ly = c.layers[l];
        const std::string wn = item("weights", l);
        py::array w = writable ? output_contiguous(weights[l], wn.c_str())
                               : input_contiguous(weights[l], wn.c_str());
        if (w.ndim() != 2 || w.shape(0) < 1 || w.shape(1) < 1)
            throw py::value_error("mlp: '" + wn + "' must be a non-empty 2-D (out, in) matrix, got shape " +
                                  shape_str(w));
        ly.out = w.shape(0);
        ly.in = w.shape(1);
        if (l > 0 && ly.in != c.layers[l - 1].out)
            throw py::value_error("mlp: '" + wn + "' has shape " + shape_str(w) + " but layer " +
                                  std::to_string(l - 1) + " outputs " +
                                  std::to_string(c.layers[l - 1].out) + " features");
        ly.weight = const_cast<float*>(static_cast<const float*>(w.data()));  // written only when writable
        c.keep.push_back(w);
        if (!biases[l].is_none()) {
            const std::string bn = item("biases", l);
            py::array b = writable ? output_contiguous(biases[l], bn.c_str())
                                   : input_contiguous(biases[l], bn.c_str());
            if (b.ndim() != 1 || b.shape(0) != ly.out)
                throw py::value_error("mlp: '" + bn + "' must have shape (" + std::to_string(ly.out) +
                                      ",), got " + shape_str(b));
            ly.bias = const_cast<float*>(static_cast<const float*>(b.data()));
            c.keep.push_back(b);
        }
        ly.relu = relu[l].cast<bool>();
        if (need_bufs) {
            const std::string wbn = item("weight_bufs", l);
            py::array wbuf = output_contiguous(wb[l], wbn.c_str());
            check_same_shape(wbuf, wbn.c_str(), w, wn.c_str());
            ly.weight_buf = static_cast<float*>(wbuf.mutable_data());
            c.keep.push_back(wbuf);
            if (ly.bias) {
                const std::string bbn = item("bias_bufs", l);
                if (bb[l].is_none())
                    throw py::value_error("mlp_train: '" + bbn + "' is None but layer " +
                                          std::to_string(l) + " has a bias");
                py::array bbuf = output_contiguous(bb[l], bbn.c_str());
                check_same_shape(bbuf, bbn.c_str(), c.keep[c.keep.size() - 2], item("biases", l).c_str());
                ly.bias_buf = static_cast<float*>(bbuf.mutable_data());
                c.keep.push_back(bbuf);
            }
        }
    }
    if (writable)  // every written array must be separate from every other one
        for (size_t i = 0; i < c.keep.size(); ++i)
            for (size_t j = i + 1; j < c.keep.size(); ++j)
                check_no_overlap(c.keep[i], "parameter or buffer", c.keep[j], "another parameter or buffer", false);
    return c;
}

py::array data_matrix(py::handle obj, const char* name, int64_t cols) {
    py::array a = as_f32_array(obj, name);  // checked before input_contiguous may copy it
    if (a.ndim() != 2 || a.shape(1) != cols)
        throw py::value_error(std::string("mlp: '") + name + "' must have shape (n, " +
                              std::to_string(cols) + "), got " + shape_str(a));
    return input_contiguous(a, name);
}

// The data-parallel step's all-reduce: a Python callable (fastmlp.distributed), called with the
// GIL re-taken once per step. A Python exception propagates out of mlp_train as it is.
void call_python_allreduce(float*, int64_t, void* ctx) {
    py::gil_scoped_acquire gil;
    (*static_cast<py::object*>(ctx))();
}

py::dict mlp_train_py(py::list weights, py::list biases, py::list relu, py::handle X_obj,
                      py::handle Y_obj, int64_t epochs, int64_t batch_size, bool drop_last,
                      bool shuffle, uint64_t seed, int64_t epoch_offset, py::object perm_obj,
                      const std::string& mode, float lr, float momentum, float dampening,
                      float weight_decay, bool nesterov, float alpha, py::object weight_bufs,
                      py::object bias_bufs, bool first_step, bool allow_nonfinite,
                      const std::string& path, py::object frozen, bool interruptible,
                      py::object grad_allreduce, py::object grad_buffer, int64_t rank,
                      int64_t world_size) {
    MlpTrainOptions o;
    if (mode == "torch") o.mode = MlpMode::torch;
    else if (mode == "sklearn") o.mode = MlpMode::sklearn;
    else throw py::value_error("mlp_train: mode must be 'torch' or 'sklearn', got '" + mode + "'");
    if (path == "auto") o.path = MlpPath::automatic;
    else if (path == "small") o.path = MlpPath::small;
    else if (path == "gemm") o.path = MlpPath::gemm;
    else throw py::value_error("mlp_train: path must be 'auto', 'small' or 'gemm', got '" + path + "'");
    if (epochs < 0) throw py::value_error("mlp_train: epochs must be >= 0, got " + std::to_string(epochs));
    if (batch_size < 1)
        throw py::value_error("mlp_train: batch_size must be >= 1, got " + std::to_string(batch_size));
    if (!(lr >= 0.0f)) throw py::value_error("mlp_train: lr must be >= 0, got " + std::to_string(lr));
    if (!(momentum >= 0.0f)) throw py::value_error("mlp_train: momentum must be >= 0");
    if (!(weight_decay >= 0.0f) || !(alpha >= 0.0f))
        throw py::value_error("mlp_train: weight_decay and alpha must be >= 0");
    if (o.mode == MlpMode::torch && nesterov && (momentum <= 0.0f || dampening != 0.0f))
        throw py::value_error("mlp_train: nesterov momentum requires a momentum and zero dampening");
    Chain c = make_chain(weights, biases, relu, weight_bufs, bias_bufs, momentum != 0.0f, true);
    apply_frozen(c.layers, frozen);
    bool any_trained = false;
    for (const MlpLayer& ly : c.layers)
        any_trained = any_trained || !ly.frozen_weight || (ly.bias && !ly.frozen_bias);
    if (!any_trained) throw py::value_error("mlp_train: every parameter is frozen");
    py::array X = data_matrix(X_obj, "X", c.layers.front().in);
    py::array Y = data_matrix(Y_obj, "Y", c.layers.back().out);
    const int64_t n = X.shape(0);
    if (Y.shape(0) != n)
        throw py::value_error("mlp_train: 'X' has " + std::to_string(n) + " rows but 'Y' has " +
                              std::to_string(Y.shape(0)));
    if (n < 1) throw py::value_error("mlp_train: no samples (X has 0 rows)");
    for (const py::array& p : c.keep) {
        check_no_overlap(p, "parameter or buffer", X, "X", false);
        check_no_overlap(p, "parameter or buffer", Y, "Y", false);
    }
    PermArray perm;
    if (!perm_obj.is_none()) {
        bool per_epoch = false;
        perm = check_perm(perm_obj, n, epochs, per_epoch);
        o.perm = perm.data();
        o.perm_per_epoch = per_epoch;
    }
    o.batch_size = batch_size;
    o.drop_last = drop_last;
    o.shuffle = shuffle;
    o.seed = seed;
    o.epoch_offset = epoch_offset;
    o.lr = lr;
    o.momentum = momentum;
    o.dampening = dampening;
    o.weight_decay = weight_decay;
    o.alpha = alpha;
    o.nesterov = nesterov;
    o.first_step = first_step;
    o.allow_nonfinite = allow_nonfinite;
    py::array gbuf;
    if (!grad_allreduce.is_none()) {
        if (!PyCallable_Check(grad_allreduce.ptr()))
            throw py::type_error("mlp_train: 'grad_allreduce' must be callable");
        if (o.mode != MlpMode::torch)
            throw py::value_error("mlp_train: data-parallel training (grad_allreduce) needs mode='torch'");
        if (world_size < 1 || rank < 0 || rank >= world_size)
            throw py::value_error("mlp_train: need 0 <= rank < world_size, got rank " +
                                  std::to_string(rank) + " of " + std::to_string(world_size));
        if (grad_buffer.is_none())
            throw py::value_error("mlp_train: 'grad_allreduce' needs a 'grad_buffer'");
        gbuf = output_contiguous(grad_buffer, "grad_buffer");
        const int64_t want = mlp_grad_buffer_size(c.layers);
        if (gbuf.ndim() != 1 || gbuf.shape(0) != want)
            throw py::value_error("mlp_train: 'grad_buffer' must have shape (" + std::to_string(want) +
                                  ",) (every weight and bias, and the loss), got " + shape_str(gbuf));
        for (const py::array& p : c.keep) check_no_overlap(gbuf, "grad_buffer", p, "a parameter or buffer", false);
        o.grad_allreduce = call_python_allreduce;
        o.grad_allreduce_ctx = &grad_allreduce;
        o.grad_buffer = static_cast<float*>(gbuf.mutable_data());
        o.rank = rank;
        o.world = world_size;
    }
    const float* xp = static_cast<const float*>(X.data());
    const float* yp = static_cast<const float*>(Y.data());
    StopWatch watch(interruptible);
    watch.attach(o);
    MlpTrainResult r;
    run_without_gil([&] { r = mlp_train(c.layers, xp, yp, n, epochs, o); }, watch.watch_finalizing);
    if (r.interrupted) raise_interrupt();  // Ctrl-C: the parameters hold the last completed step
    return train_result_dict(r, [&](py::dict& d) { d["small_path"] = r.used_small_path; });
}

py::array mlp_forward_py(py::list weights, py::list biases, py::list relu, py::handle X_obj,
                         py::object out_obj) {
    Chain c = make_chain(weights, biases, relu, py::none(), py::none(), false, false);
    py::array X = data_matrix(X_obj, "X", c.layers.front().in);
    const int64_t n = X.shape(0), d_out = c.layers.back().out;
    py::array out;
    if (out_obj.is_none()) {
        out = py::array_t<float>({n, d_out});
    } else {
        out = output_contiguous(out_obj, "out");
        if (out.ndim() != 2 || out.shape(0) != n || out.shape(1) != d_out)
            throw py::value_error("mlp_forward: 'out' must have shape (" + std::to_string(n) + ", " +
                                  std::to_string(d_out) + "), got " + shape_str(out));
        check_no_overlap(out, "out", X, "X", false);
        for (const py::array& p : c.keep) check_no_overlap(out, "out", p, "a parameter", false);
    }
    float* op = static_cast<float*>(out.mutable_data());
    const float* xp = static_cast<const float*>(X.data());
    if (n > 0) run_without_gil([&] { mlp_forward(op, c.layers, xp, n); }, !on_main_thread());
    return out;
}

}  // namespace

void register_mlp(py::module_& m) {
    m.def("mlp_train", &mlp_train_py, py::arg("weights"), py::arg("biases"), py::arg("relu"),
          py::arg("X"), py::arg("Y"), py::kw_only(), py::arg("epochs") = 1,
          py::arg("batch_size") = 64, py::arg("drop_last") = false, py::arg("shuffle") = true,
          py::arg("seed") = 0, py::arg("epoch_offset") = 0, py::arg("perm") = py::none(),
          py::arg("mode") = "torch", py::arg("lr") = 0.01f, py::arg("momentum") = 0.0f,
          py::arg("dampening") = 0.0f, py::arg("weight_decay") = 0.0f, py::arg("nesterov") = false,
          py::arg("alpha") = 0.0f, py::arg("weight_bufs") = py::none(),
          py::arg("bias_bufs") = py::none(), py::arg("first_step") = true,
          py::arg("allow_nonfinite") = false, py::arg("path") = "auto",
          py::arg("frozen") = py::none(), py::arg("interruptible") = false,
          py::arg("grad_allreduce") = py::none(), py::arg("grad_buffer") = py::none(),
          py::arg("rank") = 0, py::arg("world_size") = 1,
          "Fused minibatch SGD on a Linear(+ReLU) chain with MSE loss; updates the weights, biases "
          "and momentum buffers in place (except those marked in frozen: one (weight, bias) pair "
          "of bools per layer). interruptible (main thread, default SIGINT handler): Ctrl-C stops "
          "at the next batch boundary and raises KeyboardInterrupt. Data-parallel: with "
          "grad_allreduce (a callable) and grad_buffer (float32, every weight and bias then the "
          "loss), each step computes rank's share of the global batch into grad_buffer, calls "
          "grad_allreduce() (which sums the buffer across ranks in place) and updates from the "
          "sums. Returns {'losses': per-epoch mean loss, 'steps', "
          "'small_path', 'nonfinite': None or (epoch, batch, loss)}.");
    m.def("mlp_forward", &mlp_forward_py, py::arg("weights"), py::arg("biases"), py::arg("relu"),
          py::arg("X"), py::arg("out") = py::none(),
          "Inference through a Linear(+ReLU) chain: (n, out) float32.");
    m.def("mlp_shuffle_order", [](int64_t n, uint64_t seed, int64_t epoch) {
        if (n < 0) throw py::value_error("mlp_shuffle_order: n must be >= 0");
        py::array_t<int64_t> out(n);
        mlp_shuffle_order(out.mutable_data(), n, seed, epoch);
        return out;
    }, py::arg("n"), py::arg("seed"), py::arg("epoch"),
          "The sample order the trainer uses for global epoch `epoch` of a seeded shuffle.");
}

}  // namespace fastmlp::bind
