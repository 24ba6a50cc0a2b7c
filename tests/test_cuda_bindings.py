"""fastmlp._cuda argument checks, runnable without a GPU.

The bindings read ``__cuda_array_interface__`` from any object, so fake objects carrying a
hand-written interface exercise every check. The metadata checks (type, dtype, shape, strides,
read-only, aliasing, stream) run before the CUDA driver is touched, so they raise the right Python
exception here even with no GPU and no driver. Only a fully valid call reaches the driver: it then
fails cleanly (RuntimeError without a driver, TypeError "host memory" for a fake pointer on a GPU
machine), never a crash.
"""
import numpy as np
import pytest

import fastmlp
import fastmlp.cuda

C = pytest.importorskip("fastmlp._cuda", reason="fastmlp was built without CUDA")

BASE = 1 << 24  # fake device addresses: never dereferenced


class FakeCudaArray:
    """An object exposing a hand-written __cuda_array_interface__ (float32 by default)."""

    _next = BASE

    def __init__(self, shape, *, typestr="<f4", strides=None, readonly=False, ptr=None,
                 stream=None, mask=None, drop=()):
        if ptr is None:
            ptr = FakeCudaArray._next
            FakeCudaArray._next += 1 << 20  # 1 MiB apart: distinct arrays never overlap
        cai = {"shape": tuple(shape), "typestr": typestr, "data": (ptr, readonly),
               "strides": strides, "version": 3, "stream": stream}
        if mask is not None:
            cai["mask"] = mask
        for k in drop:
            cai.pop(k)
        self.__cuda_array_interface__ = cai
        self.shape = tuple(shape)
        self.ndim = len(shape)
        self.size = int(np.prod(shape)) if shape else 1

    @property
    def ptr(self):
        return self.__cuda_array_interface__["data"][0]

    @property
    def T(self):
        r, c = self.shape
        s = self.__cuda_array_interface__["strides"] or (4 * c, 4)
        return FakeCudaArray((c, r), strides=(s[1], s[0]), ptr=self.ptr)


def F(*shape, **kw):
    return FakeCudaArray(shape, **kw)


# What a call that passed every metadata check raises at the driver stage on this machine.
DRIVER_STAGE = (RuntimeError, TypeError)


def reaches_driver(fn, *args, **kw):
    """The call got past all metadata checks: it failed only at the device query."""
    with pytest.raises(DRIVER_STAGE) as info:
        fn(*args, **kw)
    msg = str(info.value)
    if isinstance(info.value, TypeError):
        assert "host memory" in msg, msg
    return msg


# ---- the package without a GPU ----------------------------------------------------------------

def test_import_and_status():
    assert fastmlp.cuda.is_built()
    n = fastmlp.cuda.device_count()
    assert fastmlp.cuda.is_available() == (n > 0)
    if n == 0:
        assert fastmlp.cuda.unavailable_reason() != ""
        for fn in (fastmlp.cuda.current_device, fastmlp.cuda.synchronize,
                   lambda: fastmlp.cuda.get_device_name(0)):
            with pytest.raises(RuntimeError, match="CUDA is not available"):
                fn()
    else:
        assert fastmlp.cuda.unavailable_reason() == ""


@pytest.mark.skipif(fastmlp.cuda.is_available(), reason="a GPU is present")
def test_not_available_without_gpu():
    assert fastmlp.cuda.is_available() is False
    assert fastmlp.cuda.device_count() == 0


def test_get_device_name_argument_type():
    with pytest.raises(TypeError):
        fastmlp.cuda.get_device_name("0")


# ---- argument checks before any launch --------------------------------------------------------

def test_gemm_wrong_dtype_is_type_error():
    with pytest.raises(TypeError, match="float32"):
        C.gemm(F(3, 4, typestr="<f8"), F(4, 5), F(3, 5))
    with pytest.raises(TypeError, match="float32"):
        C.gemm(F(3, 4), F(4, 5, typestr="<f2"), F(3, 5))
    with pytest.raises(TypeError, match="float32"):
        C.gemm(F(3, 4), F(4, 5), F(3, 5, typestr=">f4"))


def test_numpy_array_is_type_error_saying_cupy():
    with pytest.raises(TypeError, match="cupy"):
        C.gemm(np.zeros((3, 4), np.float32), F(4, 5), F(3, 5))
    with pytest.raises(TypeError, match="cupy"):
        C.relu_forward(F(3), np.zeros(3, np.float32))


def test_missing_interface_is_type_error():
    with pytest.raises(TypeError, match="__cuda_array_interface__"):
        C.relu_forward(object(), F(3))
    with pytest.raises(TypeError):
        C.relu_forward([1.0, 2.0], F(2))
    with pytest.raises(TypeError):
        C.relu_forward(None, F(2))


def test_malformed_interface():
    bad = F(3)
    bad.__cuda_array_interface__ = "not a dict"
    with pytest.raises(TypeError, match="dict"):
        C.relu_forward(bad, F(3))
    with pytest.raises(TypeError, match="lacks 'data'"):
        C.relu_forward(F(3, drop=("data",)), F(3))
    with pytest.raises(ValueError, match="masked"):
        C.relu_forward(F(3, mask=F(3)), F(3))
    with pytest.raises(ValueError, match="strides"):
        C.relu_forward(F(3, 4, strides=(16,)), F(3, 4))


def test_strides_not_multiple_of_itemsize():
    with pytest.raises(ValueError, match="multiple"):
        C.relu_forward(F(3, 4, strides=(16, 2)), F(3, 4))


def test_misaligned_pointer():
    with pytest.raises(ValueError, match="aligned"):
        C.relu_forward(F(3, ptr=BASE * 64 + 2), F(3))


def test_read_only_output():
    with pytest.raises(ValueError, match="read-only"):
        C.gemm(F(3, 4), F(4, 5), F(3, 5, readonly=True))
    with pytest.raises(ValueError, match="read-only"):
        C.relu_forward(F(3), F(3, readonly=True))
    with pytest.raises(ValueError, match="read-only"):
        C.sgd_step(F(3, readonly=True), F(3), None, 0.1)
    with pytest.raises(ValueError, match="read-only"):
        C.mse_forward(F(3), F(3), F(readonly=True))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="not aligned"):
        C.gemm(F(3, 4), F(5, 6), F(3, 6))
    with pytest.raises(ValueError, match="expected"):
        C.gemm(F(3, 4), F(4, 5), F(3, 6))
    with pytest.raises(ValueError, match="2-D"):
        C.gemm(F(3, 4, 1), F(4, 5), F(3, 5))
    with pytest.raises(ValueError, match="bias"):
        C.gemm(F(3, 4), F(4, 5), F(3, 5), bias=F(4))
    with pytest.raises(ValueError, match="same shape"):
        C.relu_forward(F(3, 4), F(4, 3))
    with pytest.raises(ValueError, match="same shape"):
        C.relu_backward(F(3, 4), F(3, 5), F(3, 4))
    with pytest.raises(ValueError, match="bias"):
        C.bias_forward(F(3, 4), F(5), F(3, 4))
    with pytest.raises(ValueError, match="shape"):
        C.bias_backward(F(3, 4), F(3))
    with pytest.raises(ValueError, match="same shape"):
        C.mse_forward(F(3, 4), F(4, 3), F())
    with pytest.raises(ValueError, match="scalar"):
        C.mse_forward(F(3, 4), F(3, 4), F(2))
    with pytest.raises(ValueError, match="same shape"):
        C.sgd_step(F(3), F(4), None, 0.1)
    with pytest.raises(ValueError, match="grads"):
        C.sgd_step_many([F(3), F(4)], [F(3)], None, 0.1)


def test_non_contiguous_where_contiguous_is_needed():
    with pytest.raises(ValueError, match="C-contiguous"):
        C.relu_forward(F(3, 4, strides=(32, 4)), F(3, 4))
    with pytest.raises(ValueError, match="C-contiguous"):
        C.relu_forward(F(3, 4), F(3, 4, strides=(4, 12)))
    with pytest.raises(ValueError, match="row-major"):  # gemm out: column-major is refused
        C.gemm(F(3, 4), F(4, 5), F(3, 5, strides=(4, 12)))
    with pytest.raises(ValueError, match="neither"):  # gemm input: not row- nor column-major
        C.gemm(F(3, 4, strides=(32, 8)), F(4, 5), F(3, 5))


def test_aliasing_outputs():
    a = F(4, 4)
    with pytest.raises(ValueError, match="overlaps"):
        C.gemm(a, F(4, 4), a)
    with pytest.raises(ValueError, match="overlaps"):  # a view into the same buffer
        C.gemm(F(4, 4, ptr=a.ptr + 16), F(4, 4), a)
    x = F(8)
    with pytest.raises(ValueError, match="in-place alias"):  # partial overlap, not an alias
        C.relu_forward(x, F(8, ptr=x.ptr + 4))
    p = F(5)
    with pytest.raises(ValueError, match="overlaps"):
        C.sgd_step(p, p, None, 0.1)
    with pytest.raises(ValueError, match="overlaps"):
        C.sgd_step_many([p, F(5, ptr=p.ptr + 8)], [F(5), F(5)], None, 0.1)


def test_momentum_needs_buffer_and_nesterov_rules():
    with pytest.raises(ValueError, match="momentum_buffer"):
        C.sgd_step(F(3), F(3), None, 0.1, 0.9)
    with pytest.raises(ValueError, match="nesterov"):
        C.sgd_step(F(3), F(3), F(3), 0.1, 0.9, 0.5, 0.0, True)


def test_bad_stream_argument():
    with pytest.raises(TypeError, match="stream"):
        C.relu_forward(F(3), F(3), stream="default")
    with pytest.raises(ValueError, match="stream"):
        C.relu_forward(F(3), F(3), stream=-1)


def test_valid_calls_reach_the_driver_stage():
    # Everything below passes the metadata checks; only the device query can fail here.
    w = F(5, 4)
    reaches_driver(C.gemm, F(3, 4), w.T, F(3, 5))                   # transposed view: NT
    reaches_driver(C.gemm, F(4, 3).T, F(4, 5), F(3, 5), bias=F(5), relu=True)  # TN
    reaches_driver(C.gemm, F(3, 4, strides=(32, 4)), F(4, 5), F(3, 5))  # padded rows
    reaches_driver(C.gemm, F(3, 4), F(4, 5), F(3, 5, strides=(64, 4)), beta=1.0)
    x = F(3, 4)
    reaches_driver(C.relu_forward, x, x)                               # exact in-place alias
    reaches_driver(C.relu_backward, F(3, 4), F(3, 4), F(3, 4), stream=0)
    reaches_driver(C.bias_forward, F(3, 4), F(4), F(3, 4))
    reaches_driver(C.bias_backward, F(3, 4), F(4), accumulate=True)
    reaches_driver(C.mse_forward, F(3, 4), F(3, 4), F())
    reaches_driver(C.mse_backward, F(3, 4), F(3, 4), 0.5, F(3, 4))
    reaches_driver(C.sgd_step, F(3), F(3), F(3), 0.1, 0.9)
    reaches_driver(C.sgd_step_many, [F(3), F(2, 2)], [F(3), F(2, 2)], [F(3), F(2, 2)], 0.1, 0.9)


def test_empty_arrays_launch_nothing():
    # All arrays empty: nothing to query or launch, so this succeeds even without a GPU.
    out = F(0, 5)
    assert C.gemm(F(0, 4), F(4, 5), out) is out
    assert C.relu_forward(F(0), F(0)) is not None
    C.sgd_step_many([], [], None, 0.1)


def test_ops_dispatch_sends_gpu_arrays_to_cuda_path():
    # A GPU-array-like object goes to fastmlp.ops_cuda: without CuPy (or without a GPU) that is a
    # clear ImportError/RuntimeError, never the numpy path's TypeError about numpy.
    with pytest.raises((ImportError, RuntimeError, TypeError)) as info:
        fastmlp.ops.relu(F(3))
    assert "numpy.ndarray" not in str(info.value)
    # numpy arrays still take the CPU path.
    np.testing.assert_array_equal(fastmlp.ops.relu(np.array([-1.0, 2.0], np.float32)), [0.0, 2.0])


def test_sgd_step_many_cpu_path_matches_sgd_step():
    rng = np.random.default_rng(0)
    ps = [rng.standard_normal(n).astype(np.float32) for n in (3, 7)]
    gs = [rng.standard_normal(n).astype(np.float32) for n in (3, 7)]
    bs = [np.zeros(n, np.float32) for n in (3, 7)]
    ref = [p.copy() for p in ps]
    rb = [b.copy() for b in bs]
    fastmlp.ops.sgd_step_many(ps, gs, bs, lr=0.1, momentum=0.9, first_step=True)
    for p, g, b in zip(ref, gs, rb):
        fastmlp.ops.sgd_step(p, g, b, lr=0.1, momentum=0.9, first_step=True)
    for a, b in zip(ps, ref):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="grads"):
        fastmlp.ops.sgd_step_many(ps, gs[:1], lr=0.1)


# ---- the GPU fused trainer: every argument checked before a launch -----------------------------

def chain_args(widths=(4, 6, 2), bias=True):
    """(weights, biases, relu) of fake GPU arrays for a Linear(+ReLU) chain."""
    ws = [F(o, i) for i, o in zip(widths[:-1], widths[1:])]
    bs = [F(o) if bias else None for o in widths[1:]]
    return ws, bs, [True] * (len(ws) - 1) + [False]


def test_mlp_train_valid_call_reaches_the_driver():
    ws, bs, relu = chain_args()
    reaches_driver(C.mlp_train, ws, bs, relu, F(10, 4), F(10, 2), batch_size=3)
    perm = np.arange(10)[::-1].copy()
    reaches_driver(C.mlp_train, ws, bs, relu, F(10, 4), F(10, 2), epochs=2, perm=perm,
                   momentum=0.9, nesterov=True, weight_bufs=[F(6, 4), F(2, 6)],
                   bias_bufs=[F(6), F(2)], stream=0)
    reaches_driver(C.mlp_train, ws, [None, None], relu, F(10, 4), F(10, 2), epochs=2,
                   perm=np.stack([perm, perm]), momentum=0.5, weight_bufs=[F(6, 4), F(2, 6)],
                   bias_bufs=[None, None])
    reaches_driver(C.mlp_forward, ws, bs, relu, F(10, 4), F(10, 2))


def test_mlp_train_rejects_bad_arrays_by_name():
    ws, bs, relu = chain_args()
    X, Y = F(10, 4), F(10, 2)
    with pytest.raises(TypeError, match=r"weights\[1\].*float32"):
        C.mlp_train([ws[0], F(2, 6, typestr="<f8")], bs, relu, X, Y)
    with pytest.raises(TypeError, match=r"weights\[0\].*cupy"):
        C.mlp_train([np.zeros((6, 4), np.float32), ws[1]], bs, relu, X, Y)
    with pytest.raises(TypeError, match="'X'"):
        C.mlp_train(ws, bs, relu, np.zeros((10, 4), np.float32), Y)
    with pytest.raises(TypeError, match="'Y'"):
        C.mlp_train(ws, bs, relu, X, None)
    with pytest.raises(ValueError, match=r"weights\[1\].*layer 0 outputs 6"):
        C.mlp_train([ws[0], F(2, 5)], bs, relu, X, Y)
    with pytest.raises(ValueError, match=r"biases\[0\]"):
        C.mlp_train(ws, [F(5), bs[1]], relu, X, Y)
    with pytest.raises(ValueError, match="one flag per layer"):
        C.mlp_train(ws, bs, [True], X, Y)
    with pytest.raises(ValueError, match="one entry"):
        C.mlp_train(ws, bs[:1], relu, X, Y)
    with pytest.raises(ValueError, match=r"'X' must have shape \(n, 4\)"):
        C.mlp_train(ws, bs, relu, F(10, 3), Y)
    with pytest.raises(ValueError, match=r"'Y' must have shape \(n, 2\)"):
        C.mlp_train(ws, bs, relu, X, F(10))
    with pytest.raises(ValueError, match="10 rows but 'Y' has 9"):
        C.mlp_train(ws, bs, relu, X, F(9, 2))
    with pytest.raises(ValueError, match="no samples"):
        C.mlp_train(ws, bs, relu, F(0, 4), F(0, 2))
    with pytest.raises(ValueError, match="C-contiguous"):
        C.mlp_train(ws, bs, relu, F(10, 4, strides=(32, 4)), Y)
    with pytest.raises(ValueError, match="C-contiguous"):
        C.mlp_train([F(6, 4, strides=(4, 24)), ws[1]], bs, relu, X, Y)
    with pytest.raises(ValueError, match=r"weights\[0\]' is read-only"):
        C.mlp_train([F(6, 4, readonly=True), ws[1]], bs, relu, X, Y)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        C.mlp_train([F(24), ws[1]], bs, relu, X, Y)


def test_mlp_train_rejects_aliasing():
    ws, bs, relu = chain_args()
    X, Y = F(10, 4), F(10, 2)
    with pytest.raises(ValueError, match="overlaps"):  # a bias inside a weight
        C.mlp_train(ws, [F(6, ptr=ws[0].ptr + 16), bs[1]], relu, X, Y)
    with pytest.raises(ValueError, match="overlaps argument 'X'"):  # training data inside a weight
        C.mlp_train(ws, bs, relu, F(10, 4, ptr=ws[1].ptr), Y)
    with pytest.raises(ValueError, match="overlaps"):  # a momentum buffer that is the weight
        C.mlp_train(ws, bs, relu, X, Y, momentum=0.9, weight_bufs=[ws[0], F(2, 6)],
                    bias_bufs=[F(6), F(2)])


def test_mlp_train_rejects_bad_buffers_order_and_options():
    ws, bs, relu = chain_args()
    X, Y = F(10, 4), F(10, 2)
    with pytest.raises(ValueError, match="momentum != 0 needs"):
        C.mlp_train(ws, bs, relu, X, Y, momentum=0.9)
    with pytest.raises(ValueError, match=r"weight_bufs\[1\]"):
        C.mlp_train(ws, bs, relu, X, Y, momentum=0.9, weight_bufs=[F(6, 4), F(6, 2)],
                    bias_bufs=[F(6), F(2)])
    with pytest.raises(ValueError, match=r"bias_bufs\[0\]' is None"):
        C.mlp_train(ws, bs, relu, X, Y, momentum=0.9, weight_bufs=[F(6, 4), F(2, 6)],
                    bias_bufs=[None, F(2)])
    with pytest.raises(TypeError, match="'perm' must be a numpy array of integers"):
        C.mlp_train(ws, bs, relu, X, Y, perm=np.arange(10.0))
    with pytest.raises(TypeError, match="host memory"):
        C.mlp_train(ws, bs, relu, X, Y, perm=FakeCudaArray((10,), typestr="<i8"))
    with pytest.raises(ValueError, match="outside"):
        C.mlp_train(ws, bs, relu, X, Y, perm=np.arange(10) + 1)
    with pytest.raises(ValueError, match=r"\(epochs, n\)"):
        C.mlp_train(ws, bs, relu, X, Y, epochs=3, perm=np.zeros((2, 10), np.int64))
    with pytest.raises(ValueError, match="batch_size"):
        C.mlp_train(ws, bs, relu, X, Y, batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        C.mlp_train(ws, bs, relu, X, Y, epochs=-1)
    with pytest.raises(ValueError, match="lr"):
        C.mlp_train(ws, bs, relu, X, Y, lr=-0.1)
    with pytest.raises(ValueError, match="lr"):
        C.mlp_train(ws, bs, relu, X, Y, lr=float("nan"))
    with pytest.raises(ValueError, match="nesterov"):
        C.mlp_train(ws, bs, relu, X, Y, nesterov=True)
    with pytest.raises(ValueError, match="weight_decay"):
        C.mlp_train(ws, bs, relu, X, Y, weight_decay=-1.0)
    with pytest.raises(TypeError, match="stream"):
        C.mlp_train(ws, bs, relu, X, Y, stream="s")


def test_mlp_forward_rejects_bad_out():
    ws, bs, relu = chain_args()
    X = F(10, 4)
    with pytest.raises(ValueError, match=r"'out' must have shape \(10, 2\)"):
        C.mlp_forward(ws, bs, relu, X, F(10, 3))
    with pytest.raises(ValueError, match="overlaps argument 'X'"):
        C.mlp_forward(ws, bs, relu, X, F(10, 2, ptr=X.ptr))
    with pytest.raises(ValueError, match="read-only"):
        C.mlp_forward(ws, bs, relu, X, F(10, 2, readonly=True))
    # Parameters are only read by the forward pass: read-only weights are fine.
    reaches_driver(C.mlp_forward, [F(6, 4, readonly=True), ws[1]], bs, relu, X, F(10, 2))
    out = F(0, 2)
    assert C.mlp_forward(ws, bs, relu, F(0, 4), out) is out  # nothing to run
