// fastmlp._C inference bindings: infer_plan (checked, once per model) and infer_forward (a
// METH_FASTCALL entry point: the per-call cost is a few pointer checks, no pybind11 dispatch).
//
// A plan is a PyCapsule holding the chain (pointers into the model's own parameter arrays, which
// it keeps alive: nothing is copied, so in-place updates of the parameters are seen by the next
// call) and the workspace the kernel reuses from call to call (mlp_infer.h). A plan whose
// parameter arrays are replaced must be rebuilt; fastmlp.trainer / nn.Sequential do that (their
// caches are keyed by nn.modules.STRUCTURE_VERSION and the parameters' arrays).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "array_checks.h"
#include "numpy_head.h"
#include "fastmlp/cpu_features.h"
#include "fastmlp/mlp_infer.h"

namespace py = pybind11;

namespace fastmlp::bind {

namespace {

// numpy arrays read through numpy_head.h (no numpy C API headers)
using npy::ArrayHead;
using npy::kCContiguous;
using npy::kWriteable;
npy::Types g_np;  // numpy.ndarray, dtype(float32)
constexpr double kReleaseGilFlops = 1.0e5;  // below this, keep the GIL (a few microseconds)
constexpr const char* kCapsule = "fastmlp.InferPlan";


struct Plan {
    std::vector<InferLayer> layers;
    std::vector<PyObject*> keep;     // the parameter arrays (one reference each)
    std::vector<uintptr_t> lo, hi;   // their byte ranges, for the out= aliasing check
    InferWorkspace ws;
    std::mutex mu;                   // one call at a time uses the workspace
    double flops_per_row = 0.0;
    // The automatic path's gemm crossover set by infer_set_gemm_from (fastmlp.costmodel's
    // measured one) for the CPU kernel path gemm_isa; -1 (or another ISA now): the compiled rule.
    int64_t gemm_from = -1;
    int gemm_isa = -1;
    int64_t gemm_from_now() const { return gemm_isa == int(current_isa()) ? gemm_from : -1; }
};

void destroy(PyObject* cap) {
    auto* p = static_cast<Plan*>(PyCapsule_GetPointer(cap, kCapsule));
    if (!p) {
        PyErr_Clear();
        return;
    }
    for (PyObject* o : p->keep) Py_DECREF(o);
    delete p;
}

inline ArrayHead* as_f32(PyObject* o) { return g_np.as_f32(o); }

std::string item(const char* what, size_t i) { return std::string(what) + "[" + std::to_string(i) + "]"; }

// A parameter read in place: an exact float32 numpy array, C-contiguous and aligned.
ArrayHead* param_array(py::handle h, const std::string& name, int nd) {
    ArrayHead* a = as_f32(h.ptr());
    if (!a)
        throw py::type_error("infer_plan: '" + name + "' must be a float32 numpy array (read in "
                             "place, never copied), got " + std::string(Py_TYPE(h.ptr())->tp_name) +
                             (Py_TYPE(h.ptr()) == g_np.ndarray
                                  ? " of dtype " + std::string(py::str(h.attr("dtype")))
                                  : std::string()));
    if (a->nd != nd || !(a->flags & kCContiguous))
        throw py::value_error("infer_plan: '" + name + "' must be a C-contiguous " +
                              std::to_string(nd) + "-D array");
    return a;
}

py::object infer_plan_py(py::list weights, py::list biases, py::list acts) {
    const size_t L = weights.size();
    if (L == 0) throw py::value_error("infer_plan: 'weights' must hold at least one (out, in) matrix");
    if (biases.size() != L || acts.size() != L)
        throw py::value_error("infer_plan: 'biases' and 'acts' need one entry per weight (got " +
                              std::to_string(biases.size()) + " and " + std::to_string(acts.size()) +
                              " for " + std::to_string(L) + " weights)");
    auto plan = std::make_unique<Plan>();
    auto hold = [&](ArrayHead* a) {
        PyObject* o = reinterpret_cast<PyObject*>(a);
        Py_INCREF(o);
        plan->keep.push_back(o);
        const size_t bytes = 4;
        size_t n = 1;
        for (int i = 0; i < a->nd; ++i) n *= size_t(a->dims[i]);
        plan->lo.push_back(uintptr_t(a->data));
        plan->hi.push_back(uintptr_t(a->data) + n * bytes);
    };
    for (size_t l = 0; l < L; ++l) {
        InferLayer ly;
        const std::string wn = item("weights", l);
        ArrayHead* w = param_array(weights[l], wn, 2);
        ly.out = w->dims[0];
        ly.in = w->dims[1];
        if (ly.out < 1 || ly.in < 1)
            throw py::value_error("infer_plan: '" + wn + "' must be a non-empty (out, in) matrix");
        if (l > 0 && ly.in != plan->layers[l - 1].out)
            throw py::value_error("infer_plan: '" + wn + "' takes " + std::to_string(ly.in) +
                                  " inputs but layer " + std::to_string(l - 1) + " gives " +
                                  std::to_string(plan->layers[l - 1].out));
        hold(w);
        ly.weight = reinterpret_cast<const float*>(w->data);
        if (!biases[l].is_none()) {
            const std::string bn = item("biases", l);
            ArrayHead* b = param_array(biases[l], bn, 1);
            if (b->dims[0] != ly.out)
                throw py::value_error("infer_plan: '" + bn + "' must have shape (" +
                                      std::to_string(ly.out) + ",)");
            hold(b);
            ly.bias = reinterpret_cast<const float*>(b->data);
        }
        if (!acts[l].is_none()) {
            py::tuple t = acts[l].cast<py::tuple>();
            if (t.size() != 3)
                throw py::value_error("infer_plan: '" + item("acts", l) + "' must be (kind, p0, p1) or None");
            const int k = t[0].cast<int>();
            if (k < 0 || k >= kActCount)
                throw py::value_error("infer_plan: '" + item("acts", l) + "' has activation kind " +
                                      std::to_string(k) + ", expected 0.." + std::to_string(kActCount - 1));
            ly.act.kind = Act(k);
            ly.act.p0 = t[1].cast<float>();
            ly.act.p1 = t[2].cast<float>();
        }
        plan->flops_per_row += 2.0 * double(ly.in) * double(ly.out);
        plan->layers.push_back(ly);
    }
    PyObject* cap = PyCapsule_New(plan.get(), kCapsule, &destroy);
    if (!cap) throw py::error_already_set();
    plan.release();
    return py::reinterpret_steal<py::object>(cap);
}

Plan* plan_of(py::handle cap) {
    auto* p = static_cast<Plan*>(PyCapsule_GetPointer(cap.ptr(), kCapsule));
    if (!p) {
        PyErr_Clear();
        throw py::type_error("expected a plan made by _C.infer_plan");
    }
    return p;
}

const char* path_name(InferPath p) {
    switch (p) {
    case InferPath::rows: return "rows";
    case InferPath::tiles: return "tiles";
    case InferPath::gemm: return "gemm";
    case InferPath::reference: return "reference";
    default: return "auto";
    }
}

void set_python_error() {
    try {
        throw;
    } catch (const std::bad_alloc& e) {
        PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const std::invalid_argument& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
        PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception in infer_forward");
    }
}

inline bool overlaps(uintptr_t al, uintptr_t ah, uintptr_t bl, uintptr_t bh) { return !(ah <= bl || bh <= al); }

// infer_forward(plan, X, out, path=0): the chain on X into out (or a new array). None when X is
// not an exact aligned C-contiguous float32 (n, in) numpy array: the caller converts it (or says
// what is wrong) and calls again. A bad out is an error here.
PyObject* infer_forward(PyObject*, PyObject* const* args, Py_ssize_t nargsf) {
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "infer_forward(plan, X, out, path=0) takes 3 or 4 arguments");
        return nullptr;
    }
    auto* plan = static_cast<Plan*>(PyCapsule_GetPointer(args[0], kCapsule));
    if (!plan) return nullptr;  // TypeError / ValueError set by PyCapsule_GetPointer
    int path = 0;
    if (nargs == 4) {
        path = int(PyLong_AsLong(args[3]));
        if (path == -1 && PyErr_Occurred()) return nullptr;
        if (path < 0 || path > int(InferPath::reference)) {
            PyErr_SetString(PyExc_ValueError, "infer_forward: path must be 0..4");
            return nullptr;
        }
    }
    const std::vector<InferLayer>& layers = plan->layers;
    const int64_t d_in = layers.front().in, d_out = layers.back().out;
    ArrayHead* x = as_f32(args[1]);
    if (!x || x->nd != 2 || !(x->flags & kCContiguous) || x->dims[1] != d_in) Py_RETURN_NONE;
    const int64_t n = x->dims[0];
    const uintptr_t xl = uintptr_t(x->data), xh = xl + size_t(n * d_in) * 4;
    PyObject* out_obj = args[2];
    PyObject* result;
    float* o;
    if (out_obj != Py_None) {
        ArrayHead* r = as_f32(out_obj);
        if (!r) {
            PyErr_Format(PyExc_TypeError, "predict: out must be a float32 numpy array, got %s",
                         Py_TYPE(out_obj)->tp_name);
            return nullptr;
        }
        if (r->nd != 2 || r->dims[0] != n || r->dims[1] != d_out) {
            PyErr_Format(PyExc_ValueError, "predict: out must have shape (%lld, %lld)",
                         (long long)n, (long long)d_out);
            return nullptr;
        }
        if (!(r->flags & kCContiguous) || !(r->flags & kWriteable)) {
            PyErr_SetString(PyExc_ValueError, "predict: out must be a writable C-contiguous array");
            return nullptr;
        }
        const uintptr_t ol = uintptr_t(r->data), oh = ol + size_t(n * d_out) * 4;
        bool bad = n > 0 && overlaps(ol, oh, xl, xh);
        for (size_t i = 0; i < plan->lo.size() && !bad; ++i)
            bad = n > 0 && overlaps(ol, oh, plan->lo[i], plan->hi[i]);
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "predict: out overlaps X or a parameter of the model");
            return nullptr;
        }
        result = out_obj;
        Py_INCREF(result);
        o = reinterpret_cast<float*>(r->data);
    } else {
        result = g_np.new_f32(Py_ssize_t(n), Py_ssize_t(d_out));
        if (!result) return nullptr;
        o = reinterpret_cast<float*>(reinterpret_cast<ArrayHead*>(result)->data);
    }
    if (n == 0) return result;
    const float* xp = reinterpret_cast<const float*>(x->data);
    const bool release = plan->flops_per_row * double(n) >= kReleaseGilFlops;
    PyThreadState* ts = release ? PyEval_SaveThread() : nullptr;
    try {
        std::unique_lock<std::mutex> lock(plan->mu, std::try_to_lock);
        if (!lock.owns_lock()) {  // another thread runs this plan: wait for it without the GIL
            if (!ts) ts = PyEval_SaveThread();
            lock.lock();
        }
        mlp_infer_forward(o, layers, xp, n, plan->ws, InferPath(path), plan->gemm_from_now());
    } catch (...) {
        if (ts) PyEval_RestoreThread(ts);
        Py_DECREF(result);
        set_python_error();
        return nullptr;
    }
    if (ts) PyEval_RestoreThread(ts);
    return result;
}

PyMethodDef g_forward_def = {
    "infer_forward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&infer_forward)),
    METH_FASTCALL,
    "infer_forward(plan, X, out, path=0): the plan's chain on X (n, in) float32 C-contiguous, "
    "into out (n, out) or a new array; None when X needs converting (or is not (n, in)). "
    "path: 0 auto, 1 rows, 2 tiles, 3 gemm, 4 reference."};

}  // namespace

void register_infer(py::module_& m) {
    g_np.init();
    m.def("infer_plan", &infer_plan_py, py::arg("weights"), py::arg("biases"), py::arg("acts"),
          "A reusable inference plan for a Linear chain: weights (out, in) and biases (out,) or "
          "None as float32 C-contiguous arrays read in place, acts (kind, p0, p1) or None per "
          "layer. Run it with infer_forward.");
    m.def("infer_info", [](py::handle cap) {
        Plan* p = plan_of(cap);
        py::dict d;
        d["layers"] = p->layers.size();
        d["in_features"] = p->layers.front().in;
        d["out_features"] = p->layers.back().out;
        d["workspace_floats"] = p->ws.buf.size();
        d["workspace_grows"] = p->ws.grows;
        const int64_t g = p->gemm_from_now();
        const int64_t eff = g < 0 ? mlp_infer_gemm_from(p->layers) : g;
        d["gemm_from"] =
            eff == kInferNeverGemm ? py::object(py::none()) : py::object(py::int_(eff));
        d["gemm_from_source"] = g < 0 ? "compiled rule" : "set";
        return d;
    }, py::arg("plan"), "The plan's sizes and workspace state (floats held, times it grew).");
    m.def("infer_choose", [](py::handle cap, int64_t n) {
        Plan* p = plan_of(cap);
        return path_name(mlp_infer_choose(p->layers, n, p->gemm_from_now()));
    }, py::arg("plan"), py::arg("n"), "The path infer_forward takes for n rows.");
    m.def("infer_set_gemm_from", [](py::handle cap, py::object rows) {
        Plan* p = plan_of(cap);
        int64_t g = kInferNeverGemm;
        if (!rows.is_none()) {
            g = rows.cast<int64_t>();
            if (g < 1 && g != -1)
                throw py::value_error("infer_set_gemm_from: 'rows' must be None (never), -1 (the "
                                      "compiled rule) or a row count >= 1, got " +
                                      std::to_string(g));
        }
        std::lock_guard<std::mutex> lock(p->mu);
        p->gemm_from = g;
        p->gemm_isa = g == -1 ? -1 : int(current_isa());
    }, py::arg("plan"), py::arg("rows"),
          "From how many rows on the automatic path takes the gemm path, on the current CPU kernel "
          "path (None: never, -1: the compiled rule, mlp_infer_gemm_from).");
    py::object fn = py::reinterpret_steal<py::object>(
        PyCFunction_NewEx(&g_forward_def, nullptr, m.attr("__name__").ptr()));
    if (!fn) throw py::error_already_set();
    m.attr("infer_forward") = fn;
}

}  // namespace fastmlp::bind
