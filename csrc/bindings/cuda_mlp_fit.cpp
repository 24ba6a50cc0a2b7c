// fastmlp._cuda: the general fused trainer's bindings (mlp_fit, mlp_fit_forward), the GPU twins of
// _C.mlp_fit / _C.mlp_fit_forward (cpu_mlp_fit.cpp) with the same arguments plus `stream`. Glue
// only: the chain, loss and optimizer are parsed by mlp_spec.h (the contract shared with _C) with
// a device-array `Arrays` (every parameter and state a float32 GPU array, checked as
// cuda_array_checks.h does); the data are GPU arrays (X, Y float32 or class targets int64,
// sample/class/pos weights float32); the order (perm, or the seeded shuffle made here on the host
// with _C.mlp_shuffle_order) and the schedules are host arrays, uploaded once. Everything is
// checked (metadata, aliasing, then devices) before anything is launched.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <deque>
#include <string>
#include <vector>

#include "cuda_array_checks.h"
#include "mlp_spec.h"
#include "perm_check.h"
#include "train_result_dict.h"
#include "fastmlp/cuda_mlp_fit.h"

namespace py = pybind11;
using namespace fastmlp::bind::cu;

namespace fastmlp::bind {

namespace {

// Parameters and optimizer state as GPU arrays: float32, C-contiguous, writable when the trainer
// updates them. Every array parsed is kept (stable addresses) for the aliasing and device checks.
struct DeviceArrays : Arrays {
    std::deque<CudaArray> all;
    std::vector<const CudaArray*> written;
    float* f32(py::handle obj, const std::string& name, bool writable,
               std::vector<int64_t>& shape) override {
        CudaArray a = cuda_array(obj, name.c_str());
        require_contiguous(a);
        if (writable) require_writable(a);
        all.push_back(std::move(a));
        if (writable) written.push_back(&all.back());
        shape = all.back().shape;
        return all.back().data();
    }
};

CudaArray data_array(py::handle obj, const char* name, std::vector<int64_t> want) {
    CudaArray a = cuda_array(obj, name);
    if (a.shape != want)
        throw py::value_error(std::string("mlp_fit: '") + name + "' must have shape " +
                              shape_str(want) + ", got " + shape_str(a.shape));
    require_contiguous(a);
    return a;
}

// Class-index targets: a 1-D int64 GPU array of n elements (its __cuda_array_interface__).
CudaArray index_targets(py::handle obj, int64_t n) {
    if (!py::hasattr(obj, "__cuda_array_interface__"))
        throw py::type_error("mlp_fit: cross_entropy needs class-index targets 'Y' as an int64 GPU "
                             "array (cupy.asarray(y, dtype=cupy.int64)), got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    py::dict iface = obj.attr("__cuda_array_interface__");
    const std::string ts = iface["typestr"].cast<std::string>();
    if (ts != "<i8")
        throw py::type_error("mlp_fit: cross_entropy needs class-index targets 'Y' of dtype int64 "
                             "('<i8'), got typestr '" + ts + "'");
    std::vector<int64_t> shape = iface["shape"].cast<std::vector<int64_t>>();
    if (shape.size() != 1 || shape[0] != n)
        throw py::value_error("mlp_fit: class targets 'Y' must have shape (" + std::to_string(n) +
                              ",), got " + shape_str(shape));
    if (iface.contains("strides") && !iface["strides"].is_none()) {
        std::vector<int64_t> st = iface["strides"].cast<std::vector<int64_t>>();
        if (n > 1 && st[0] != 8) throw py::value_error("mlp_fit: class targets 'Y' must be contiguous");
    }
    if (iface.contains("mask") && !iface["mask"].is_none())
        throw py::value_error("mlp_fit: masked arrays are not supported ('Y')");
    CudaArray a;
    a.name = "Y";
    py::tuple data = iface["data"];
    a.ptr = data[0].cast<uintptr_t>();
    a.readonly = data[1].cast<bool>();
    a.shape = shape;
    a.strides = {8};
    a.size = n;
    a.owner = py::reinterpret_borrow<py::object>(obj);
    if (a.ptr % 8 != 0) throw py::value_error("mlp_fit: class targets 'Y' must be 8-byte aligned");
    return a;
}

// Byte ranges of two arrays (float32 or int64 elements) overlap.
bool overlaps(const CudaArray& a, const CudaArray& b, size_t ea, size_t eb) {
    if (a.size == 0 || b.size == 0) return false;
    const uintptr_t a1 = a.ptr + size_t(a.size) * ea, b1 = b.ptr + size_t(b.size) * eb;
    return a.ptr < b1 && b.ptr < a1;
}

template <class T>
py::array_t<T, py::array::c_style | py::array::forcecast> host_vector(py::handle obj, const char* name) {
    if (py::hasattr(obj, "__cuda_array_interface__") && !py::isinstance<py::array>(obj))
        throw py::type_error(std::string("mlp_fit: '") + name + "' must be a host (numpy) array: it "
                             "is read on the host; pass cupy.asnumpy(...)");
    auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(obj);
    if (!a || a.ndim() != 1) throw py::value_error(std::string("mlp_fit: '") + name + "' must be 1-D");
    return a;
}

py::dict mlp_fit_py(py::list layers, py::handle X_obj, py::handle Y_obj, py::dict loss,
                    py::dict optim, int64_t epochs, int64_t batch_size, bool drop_last,
                    bool shuffle, uint64_t seed, int64_t epoch_offset, py::object perm_obj,
                    int64_t step0, py::object lr_schedule, py::object momentum_schedule,
                    uint64_t dropout_seed, py::object sample_weight, py::object class_weight,
                    py::object pos_weight, bool allow_nonfinite, py::dict sklearn,
                    py::handle stream_obj) {
    const RunArgs run{epochs,  batch_size,      epoch_offset, step0,       drop_last,
                      shuffle, allow_nonfinite, seed,         dropout_seed};
    check_run_args(run);
    DeviceArrays arrays;
    std::vector<FitLayer> ls = parse_layers(layers, arrays);
    FitOptions o;
    parse_loss(loss, o);
    parse_optim(optim, o);
    const int64_t d_in = ls.front().in, d_out = ls.back().out;
    CudaArray X = cuda_array(X_obj, "X");
    if (X.shape.size() != 2 || X.shape[1] != d_in)
        throw py::value_error("mlp_fit: 'X' must have shape (n, " + std::to_string(d_in) + "), got " +
                              shape_str(X.shape));
    require_contiguous(X);
    const int64_t n = X.shape[0];
    if (n < 1) throw py::value_error("mlp_fit: no samples (X has 0 rows)");
    std::vector<CudaArray> data{X};  // read-only inputs (float32 unless noted)
    std::vector<size_t> elem{4};
    FitData fd;
    fd.n = n;
    fd.X = X.data();
    const bool ce = o.loss.kind == Loss::cross_entropy;
    if (ce) {
        data.push_back(index_targets(Y_obj, n));
        elem.push_back(8);
    } else {
        CudaArray Y = cuda_array(Y_obj, "Y");
        if (Y.shape.size() != 2 || Y.shape[1] != d_out)
            throw py::value_error("mlp_fit: 'Y' must have shape (n, " + std::to_string(d_out) +
                                  "), got " + shape_str(Y.shape));
        check_same_rows(n, Y.shape[0]);
        require_contiguous(Y);
        data.push_back(Y);
        elem.push_back(4);
    }
    const size_t iY = 1;
    size_t iSW = 0, iCW = 0, iPW = 0;
    check_weight_kinds(o, !class_weight.is_none(), !pos_weight.is_none());
    if (!sample_weight.is_none()) {
        iSW = data.size();
        data.push_back(data_array(sample_weight, "sample_weight", {n}));
        elem.push_back(4);
    }
    if (!class_weight.is_none()) {
        iCW = data.size();
        data.push_back(data_array(class_weight, "class_weight", {d_out}));
        elem.push_back(4);
    }
    if (!pos_weight.is_none()) {
        iPW = data.size();
        data.push_back(data_array(pos_weight, "pos_weight", {d_out}));
        elem.push_back(4);
    }
    // Every written parameter / state is apart from every other array of the call.
    for (const CudaArray* w : arrays.written) {
        for (size_t j = 0; j < data.size(); ++j)
            if (overlaps(*w, data[j], 4, elem[j]))
                throw py::value_error("mlp_fit: '" + w->name + "' overlaps the data '" + data[j].name + "'");
        for (const CudaArray& a : arrays.all)
            if (&a != w && overlaps(*w, a, 4, 4))
                throw py::value_error("mlp_fit: '" + w->name + "' overlaps '" + a.name + "'");
    }
    py::array_t<float, py::array::c_style | py::array::forcecast> lrs, ms;
    if (!lr_schedule.is_none()) {
        lrs = host_vector<float>(lr_schedule, "lr_schedule");
        o.lr_schedule = lrs.data();
        o.lr_schedule_len = lrs.shape(0);
    }
    if (!momentum_schedule.is_none()) {
        ms = host_vector<float>(momentum_schedule, "momentum_schedule");
        o.momentum_schedule = ms.data();
        o.momentum_schedule_len = ms.shape(0);
    }
    check_norm_batches(ls, n, batch_size, drop_last);
    PermArray perm;
    if (!perm_obj.is_none()) {
        if (py::hasattr(perm_obj, "__cuda_array_interface__") && !py::isinstance<py::array>(perm_obj))
            throw py::type_error("mlp_fit: 'perm' must be a numpy array of integers in host memory "
                                 "(it is copied to the GPU once per call), got a GPU array; pass "
                                 "cupy.asnumpy(perm)");
        bool per_epoch = false;
        perm = check_perm(perm_obj, n, epochs, per_epoch);
        o.perm = perm.data();
        o.perm_per_epoch = per_epoch;
    } else if (shuffle && epochs > 0) {  // the CPU trainer's seeded shuffle, made on the host
        py::object order = py::module_::import("fastmlp._C").attr("mlp_shuffle_order");
        perm = PermArray({epochs, n});
        int64_t* dst = perm.mutable_data();
        for (int64_t e = 0; e < epochs; ++e) {
            PermArray p = PermArray::ensure(order(n, seed, epoch_offset + e));
            std::copy(p.data(), p.data() + n, dst + e * n);
        }
        o.perm = perm.data();
        o.perm_per_epoch = true;
    }
    set_run_options(o, run, sklearn);
    if (ce) fd.Yi = reinterpret_cast<const int64_t*>(data[iY].ptr);
    else fd.Y = data[iY].data();
    if (iSW) fd.sample_weight = data[iSW].data();
    if (iCW) o.class_weight = data[iCW].data();
    if (iPW) o.pos_weight = data[iPW].data();

    const uintptr_t stream = resolve_stream(stream_obj, X);
    std::vector<const CudaArray*> all;
    for (const CudaArray& a : arrays.all) all.push_back(&a);
    for (const CudaArray& a : data) all.push_back(&a);
    const int dev = common_device(all);
    cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    if (ce) {  // the targets are indices the kernels read through: check them first (one copy)
        std::vector<int64_t> yi(static_cast<size_t>(n));
        DeviceGuard guard(dev);
        cudaError_t e = cudaMemcpyAsync(yi.data(), fd.Yi, size_t(n) * sizeof(int64_t),
                                        cudaMemcpyDeviceToHost, s);
        if (e == cudaSuccess) e = cudaStreamSynchronize(s);
        if (e != cudaSuccess)
            throw std::runtime_error(std::string("mlp_fit: reading the class targets: ") +
                                     cudaGetErrorString(e));
        check_class_targets(yi.data(), n, d_out, o.ignore_index);
    }
    FitResult r;
    {
        py::gil_scoped_release nogil;
        DeviceGuard guard(dev);
        r = fastmlp::cuda::mlp_fit(ls, fd, epochs, o, s);
    }
    return train_result_dict(r);
}

py::object mlp_fit_forward_py(py::list layers, py::handle X_obj, py::handle out_obj,
                              py::handle stream_obj) {
    DeviceArrays arrays;
    // read-only: inference writes no parameter
    std::vector<FitLayer> ls = parse_layers(layers, arrays, /*inference=*/true);
    CudaArray X = cuda_array(X_obj, "X");
    if (X.shape.size() != 2 || X.shape[1] != ls.front().in)
        throw py::value_error("mlp_fit_forward: 'X' must have shape (n, " +
                              std::to_string(ls.front().in) + "), got " + shape_str(X.shape));
    require_contiguous(X);
    const int64_t n = X.shape[0], d_out = ls.back().out;
    check_forward_norm_rows(ls, n);
    CudaArray out = cuda_array(out_obj, "out");
    require_writable(out);
    require_contiguous(out);
    if (out.shape.size() != 2 || out.shape[0] != n || out.shape[1] != d_out)
        throw py::value_error("mlp_fit_forward: 'out' must have shape (" + std::to_string(n) + ", " +
                              std::to_string(d_out) + "), got " + shape_str(out.shape));
    check_no_overlap(out, X, false);
    for (const CudaArray& p : arrays.all) check_no_overlap(out, p, false);
    const uintptr_t stream = resolve_stream(stream_obj, X);
    if (n == 0) return py::reinterpret_borrow<py::object>(out_obj);
    std::vector<const CudaArray*> all;
    for (const CudaArray& a : arrays.all) all.push_back(&a);
    all.push_back(&X);
    all.push_back(&out);
    const int dev = common_device(all);
    {
        py::gil_scoped_release nogil;
        DeviceGuard guard(dev);
        fastmlp::cuda::mlp_fit_forward(out.data(), ls, X.data(), n,
                                       reinterpret_cast<cudaStream_t>(stream));
    }
    return py::reinterpret_borrow<py::object>(out_obj);
}

}  // namespace

void register_cuda_mlp_fit(py::module_& m) {
    const auto none = py::none();
    m.def("mlp_fit", &mlp_fit_py, py::arg("layers"), py::arg("X"), py::arg("Y"), py::kw_only(),
          py::arg("loss"), py::arg("optim"), py::arg("epochs") = 1, py::arg("batch_size") = 64,
          py::arg("drop_last") = false, py::arg("shuffle") = true, py::arg("seed") = 0,
          py::arg("epoch_offset") = 0, py::arg("perm") = none, py::arg("step0") = 0,
          py::arg("lr_schedule") = none, py::arg("momentum_schedule") = none,
          py::arg("dropout_seed") = 0, py::arg("sample_weight") = none,
          py::arg("class_weight") = none, py::arg("pos_weight") = none,
          py::arg("allow_nonfinite") = false, py::arg("sklearn") = py::dict(),
          py::arg("stream") = none,
          "_C.mlp_fit on the GPU: parameters, optimizer state, X, Y (float32, or int64 class "
          "targets), sample/class/pos weights are GPU arrays (parameters and state updated in "
          "place); perm and the schedules are host arrays. The batch loop runs on the stream "
          "without waiting; returns after one synchronise with {'losses', 'steps', 'nonfinite'}.");
    m.def("mlp_fit_forward", &mlp_fit_forward_py, py::arg("layers"), py::arg("X"), py::arg("out"),
          py::arg("stream") = none,
          "Inference through the same chain (no dropout) on the GPU into 'out' (n, out). Returns out.");
}

}  // namespace fastmlp::bind
