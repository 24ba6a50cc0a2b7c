// What the CPU (_C) and GPU (_cuda) bindings of mlp_train share around the native loop, beyond
// the array checks: frozen parameters (requires_grad=False), Ctrl-C during a long epoch, and the
// interpreter finalizing while a daemon thread is inside the loop. Header-only: the two modules
// share no object files (each gets its own copy of the statics below; both chain correctly).
//
// Ctrl-C: CPython's C-level SIGINT handler only marks the signal as tripped; the KeyboardInterrupt
// is raised when the main thread next runs Python code, i.e. after the native call returns. So,
// for a call made on the main thread while SIGINT's Python handler is the default one (the
// trainer decides and passes interruptible=True), a handler of ours is chained in front of
// CPython's: it counts the signal (an atomic, async-signal-safe) and calls CPython's. The loop
// polls the count at every batch boundary through MlpTrainOptions::should_stop, stops there, and
// the binding re-raises the KeyboardInterrupt with the GIL back (PyErr_CheckSignals).
//
// Finalizing: in a thread other than the main one (the one that finalizes), should_stop also
// reports the interpreter finalizing (read without the GIL). The binding then never re-takes the
// GIL: re-taking it during finalization ends the thread with a forced unwind that aborts through
// C++ frames ("terminate called without an active exception"). The thread parks instead, until
// the process exits. (The main thread may run fit during finalization, e.g. from a __del__: it
// owns the finalization and is never stopped or parked.)
#pragma once
#include <Python.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#ifndef _WIN32
#include <signal.h>
#endif

#include "fastmlp/mlp.h"

namespace fastmlp::bind {

// frozen: None, or one (weight_frozen, bias_frozen) pair per layer.
inline void apply_frozen(std::vector<MlpLayer>& layers, const pybind11::object& frozen) {
    namespace py = pybind11;
    if (frozen.is_none()) return;
    py::sequence seq = frozen.cast<py::sequence>();
    if (size_t(py::len(seq)) != layers.size())
        throw py::value_error("mlp_train: 'frozen' must have one (weight, bias) pair per layer, got " +
                              std::to_string(py::len(seq)) + " for " + std::to_string(layers.size()) +
                              " layers");
    for (size_t l = 0; l < layers.size(); ++l) {
        py::sequence pair = py::reinterpret_borrow<py::object>(seq[l]).cast<py::sequence>();
        if (py::len(pair) != 2)
            throw py::value_error("mlp_train: 'frozen[" + std::to_string(l) +
                                  "]' must be a pair (weight_frozen, bias_frozen)");
        layers[l].frozen_weight = pair[0].cast<bool>();
        layers[l].frozen_bias = pair[1].cast<bool>() && layers[l].bias != nullptr;
    }
}

inline bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing() != 0;
#else
    return _Py_IsFinalizing() != 0;
#endif
}

namespace sigint_detail {
inline std::atomic<uint64_t>& count() {
    static std::atomic<uint64_t> c{0};
    return c;
}
#ifndef _WIN32
inline struct sigaction& previous() {
    static struct sigaction prev {};
    return prev;
}
inline void on_sigint(int sig, siginfo_t* info, void* uctx) {
    count().fetch_add(1, std::memory_order_relaxed);
    const struct sigaction& prev = previous();
    if (prev.sa_flags & SA_SIGINFO) {
        if (prev.sa_sigaction) prev.sa_sigaction(sig, info, uctx);
    } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler) {
        prev.sa_handler(sig);
    }
}
#endif
}  // namespace sigint_detail

// Chains the counting handler in front of the current SIGINT handler (with the GIL held). A later
// signal.signal(SIGINT, ...) replaces it; the next call chains again.
inline void ensure_sigint_hook() {
#ifndef _WIN32
    struct sigaction cur {};
    if (sigaction(SIGINT, nullptr, &cur) != 0) return;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == &sigint_detail::on_sigint) return;
    if (!(cur.sa_flags & SA_SIGINFO) && (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN))
        return;  // nothing to chain: the default kills the process, SIG_IGN ignores it
    sigint_detail::previous() = cur;
    struct sigaction mine = cur;
    mine.sa_sigaction = &sigint_detail::on_sigint;
    mine.sa_flags = cur.sa_flags | SA_SIGINFO;
    sigaction(SIGINT, &mine, nullptr);
#endif
}

// Whether the calling thread (GIL held) is Python's main thread, the one that finalizes. When
// that cannot be told, true: such a thread is never stopped or parked (the behaviour before).
inline bool on_main_thread() {
    PyObject* threading = PyImport_GetModule(pybind11::str("threading").ptr());
    if (!threading) {
        PyErr_Clear();
        return true;
    }
    PyObject* main = PyObject_CallMethod(threading, "main_thread", nullptr);
    Py_DECREF(threading);
    PyObject* ident = main ? PyObject_GetAttrString(main, "ident") : nullptr;
    Py_XDECREF(main);
    const unsigned long id = ident && ident != Py_None ? PyLong_AsUnsignedLong(ident) : 0;
    Py_XDECREF(ident);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return true;
    }
    return id == 0 || id == PyThread_get_thread_ident();
}

// The context of MlpTrainOptions::should_stop for one call (made with the GIL held).
struct StopWatch {
    bool interruptible = false;
    bool watch_finalizing = false;  // not the main thread: stop (and park) when finalizing
    uint64_t start = 0;
    bool interrupted = false;
    bool finalizing = false;
    explicit StopWatch(bool interruptible_)
        : interruptible(interruptible_), watch_finalizing(!on_main_thread()) {
        if (interruptible) {
            ensure_sigint_hook();
            start = sigint_detail::count().load(std::memory_order_relaxed);
        }
    }
    static bool poll(void* ctx) {
        StopWatch& w = *static_cast<StopWatch*>(ctx);
        if (w.interruptible && sigint_detail::count().load(std::memory_order_relaxed) != w.start)
            w.interrupted = true;
        if (w.watch_finalizing && interpreter_finalizing()) w.finalizing = true;
        return w.interrupted || w.finalizing;
    }
    template <class Options>  // MlpTrainOptions or cuda::CudaMlpTrainOptions
    void attach(Options& o) {
        o.should_stop = &StopWatch::poll;
        o.stop_ctx = this;
    }
};

// Runs fn() with the GIL released. If the interpreter is finalizing when fn returns and this is
// not the main thread (park_if_finalizing), the thread parks rather than re-take the GIL (see the
// top of this file). An exception from fn is rethrown with the GIL held.
template <class Fn>
void run_without_gil(Fn&& fn, bool park_if_finalizing) {
    PyThreadState* ts = PyEval_SaveThread();
    try {
        fn();
    } catch (...) {
        PyEval_RestoreThread(ts);
        throw;
    }
    while (park_if_finalizing && interpreter_finalizing())
        std::this_thread::sleep_for(std::chrono::seconds(1));
    PyEval_RestoreThread(ts);
}

// After an interrupted call, with the GIL held: the pending KeyboardInterrupt (or whatever the
// SIGINT handler raises) as a C++ exception pybind11 passes on.
inline void raise_interrupt() {
    if (PyErr_CheckSignals() != 0) throw pybind11::error_already_set();
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw pybind11::error_already_set();
}

}  // namespace fastmlp::bind
