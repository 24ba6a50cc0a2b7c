"""_C.gemm's CPython fast path (csrc/bindings/cpu_gemm_fast.cpp) against the pybind11 binding it
stands in front of (_C._gemm_checked): for every kind of argument, both give bitwise the same
result and the same writes, or raise the same exception type with the same message. Likewise
_C.linear_fast against ops.linear's checked path (x @ weight.T through _gemm_checked).
"""
import numpy as np
import pytest

from fastmlp import _C, ops

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix cases


def f32(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)


def readonly(x):
    x = x.copy()
    x.flags.writeable = False
    return x


def misaligned(shape):
    n = int(np.prod(shape))
    buf = np.zeros(n * 4 + 1, np.uint8)[1:].view(np.float32).reshape(shape)
    buf[...] = f32(*shape)
    return buf


def padded(rows, cols, pad=3):
    return f32(rows, cols + pad)[:, 1:cols + 1]


A_VARIANTS = {
    "row": lambda: f32(6, 5),
    "padded": lambda: padded(6, 5),
    "transposed": lambda: f32(5, 6).T,
    "padded-transposed": lambda: padded(5, 6).T,
    "one-row": lambda: f32(1, 5)[:, :].reshape(1, 5),
    "one-row-strided": lambda: f32(3, 5)[::2][:1],
    "neg-stride": lambda: f32(6, 5)[::-1],
    "col-stride": lambda: f32(6, 10)[:, ::2],
    "broadcast": lambda: np.broadcast_to(f32(1, 5), (6, 5)),
    "misaligned": lambda: misaligned((6, 5)),
    "big-endian": lambda: f32(6, 5).astype(">f4"),
    "float64": lambda: np.ones((6, 5)),
    "int": lambda: np.ones((6, 5), np.int32),
    "matrix": lambda: np.asmatrix(f32(6, 5)),
    "list": lambda: [[1.0] * 5] * 6,
    "1d": lambda: f32(5),
    "3d": lambda: f32(6, 5, 1),
    "0d": lambda: np.float32(1.0),
    "wrong-k": lambda: f32(6, 4),
    "empty-m": lambda: f32(0, 5),
    "readonly": lambda: readonly(f32(6, 5)),
    "none": lambda: None,
}
B_VARIANTS = {
    "row": lambda: f32(5, 7),
    "transposed": lambda: f32(7, 5).T,
    "one-col": lambda: f32(5, 1),
    "one-col-transposed": lambda: f32(1, 5).T,
    "padded": lambda: padded(5, 7),
    "neg-stride": lambda: f32(5, 7)[:, ::-1],
    "empty-n": lambda: f32(5, 0),
    "float64": lambda: np.ones((5, 7)),
}


def outcome(fn, *args, **kwargs):
    """('ok', result bits, [the out array's bits]) or ('raise', type name, message)."""
    try:
        r = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the point is to compare whatever is raised
        return ("raise", type(e).__name__, str(e))
    out = kwargs.get("out", args[2] if len(args) > 2 else None)
    same_obj = out is not None and r is out
    return ("ok", r.dtype.str, r.shape, r.tobytes(), same_obj,
            None if not isinstance(out, np.ndarray) else out.tobytes())


def both(make_args, kwargs_fn=lambda: {}):
    """Runs gemm and _gemm_checked on fresh copies of the same arguments."""
    fast = outcome(_C.gemm, *make_args(), **kwargs_fn())
    slow = outcome(_C._gemm_checked, *make_args(), **kwargs_fn())
    assert fast == slow


@pytest.mark.parametrize("av", list(A_VARIANTS))
@pytest.mark.parametrize("bv", list(B_VARIANTS))
def test_operand_layouts(av, bv):
    both(lambda: (A_VARIANTS[av](), B_VARIANTS[bv]()))


OUT_VARIANTS = {
    "none": lambda: None,
    "fresh": lambda: np.full((6, 7), np.nan, np.float32),
    "padded": lambda: np.zeros((6, 10), np.float32)[:, 1:8],
    "transposed": lambda: np.zeros((7, 6), np.float32).T,
    "neg-stride": lambda: np.zeros((6, 7), np.float32)[::-1],
    "readonly": lambda: readonly(np.zeros((6, 7), np.float32)),
    "wrong-shape": lambda: np.zeros((7, 6), np.float32),
    "1d": lambda: np.zeros(42, np.float32),
    "float64": lambda: np.zeros((6, 7)),
    "misaligned": lambda: misaligned((6, 7)),
    "list": lambda: [[0.0] * 7] * 6,
}


@pytest.mark.parametrize("ov", list(OUT_VARIANTS))
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_out_variants(ov, beta):
    both(lambda: (f32(6, 5), f32(5, 7), OUT_VARIANTS[ov]()), lambda: {"beta": beta})


BIAS_VARIANTS = {
    "ok": lambda: f32(7),
    "strided": lambda: f32(14)[::2],
    "wrong-len": lambda: f32(6),
    "2d": lambda: f32(1, 7),
    "float64": lambda: np.ones(7),
    "list": lambda: [1.0] * 7,
    "misaligned": lambda: misaligned((7,)),
}


@pytest.mark.parametrize("bias", list(BIAS_VARIANTS))
@pytest.mark.parametrize("relu", [False, True])
def test_bias_variants(bias, relu):
    both(lambda: (f32(6, 5), f32(5, 7)), lambda: {"bias": BIAS_VARIANTS[bias](), "relu": relu})
    both(lambda: (f32(6, 5), f32(5, 7), np.zeros((6, 7), np.float32), 1.0, 0.0,
                  BIAS_VARIANTS[bias](), relu))


SCALARS = [1.0, 2, -0.5, 0, np.float32(0.5), np.float64(2.0), 10**400, True, "2", None, 1e300]


@pytest.mark.parametrize("alpha", SCALARS, ids=repr)
def test_alpha_values(alpha):
    both(lambda: (f32(6, 5), f32(5, 7)), lambda: {"alpha": alpha})


@pytest.mark.parametrize("beta", SCALARS, ids=repr)
def test_beta_values(beta):
    both(lambda: (f32(6, 5), f32(5, 7), f32(6, 7)), lambda: {"beta": beta})


@pytest.mark.parametrize("flag", [True, False, None, 1, 0, np.bool_(True), "yes"], ids=repr)
def test_bool_flags(flag):
    both(lambda: (f32(6, 5), f32(5, 7)), lambda: {"relu": flag})
    both(lambda: (f32(6, 5), f32(5, 7)), lambda: {"reference": flag})


@pytest.mark.parametrize("call", [
    lambda f, a, b: f(a, b, a_name="x", b_name="weight"),
    lambda f, a, b: f(a, b, None, 1.0, 0.0, None, False, False, "x", "w"),
    lambda f, a, b: f(a, b, None, 1.0, 0.0, None, False, False, "x", "w", 1),
    lambda f, a, b: f(a, b, a_name=3),
    lambda f, a, b: f(a, b, a_name="\udc80"),
    lambda f, a, b: f(a, b, b_name=b"w"),
    lambda f, a, b: f(a, b, nope=1),
    lambda f, a, b: f(a, b, 0, a=a),
    lambda f, a, b: f(a),
    lambda f, a, b: f(),
    lambda f, a, b: f(b=b, a=a),
    lambda f, a, b: f(a, b, out=None, alpha=2.0, beta=0.0, bias=None, relu=True),
])
def test_argument_passing(call):
    a, b = f32(6, 5), f32(5, 7)

    def run(f):
        try:
            r = call(f, a, b)
        except Exception as e:  # noqa: BLE001
            return ("raise", type(e).__name__, str(e))
        return ("ok", r.tobytes())

    assert run(_C.gemm) == run(_C._gemm_checked)


@pytest.mark.parametrize("case", ["out-is-a", "out-is-b-transposed", "out-overlaps-bias",
                                  "out-inside-a", "bias-is-a-row"])
def test_aliasing(case):
    def make():
        if case == "out-is-a":
            a = f32(4, 4)
            return (a, f32(4, 4), a), {}
        if case == "out-is-b-transposed":
            b = f32(4, 4)
            return (f32(4, 4), b.T, b), {}
        if case == "out-overlaps-bias":
            o = np.zeros((4, 5), np.float32)
            return (f32(4, 3), f32(3, 5), o), {"bias": o[1]}
        if case == "out-inside-a":
            big = f32(8, 8)
            return (big[:4, :4], f32(4, 4), big[4:, 4:]), {}
        a = f32(4, 5)
        return (f32(4, 3), f32(3, 5)), {"bias": a[1]}

    fast = outcome(_C.gemm, *make()[0], **make()[1])
    slow = outcome(_C._gemm_checked, *make()[0], **make()[1])
    assert fast == slow


@pytest.mark.parametrize("shape", [(64, 10, 20), (64, 20, 1), (1, 300, 70), (256, 300, 200)])
@pytest.mark.parametrize("mode", ["NN", "NT", "TN", "TT"])
def test_results_bitwise_and_out_returned(shape, mode):
    M, K, N = shape
    a = f32(K, M).T if mode[0] == "T" else f32(M, K)
    b = f32(N, K).T if mode[1] == "T" else f32(K, N)
    bias = f32(N)
    o1, o2 = f32(M, N), f32(M, N)
    r1 = _C.gemm(a, b, o1, 0.5, 0.25, bias, True)
    r2 = _C._gemm_checked(a, b, o2, 0.5, 0.25, bias, True)
    assert r1 is o1 and r2 is o2
    assert o1.tobytes() == o2.tobytes()
    n1 = _C.gemm(a, b)
    assert n1.flags.c_contiguous and n1.flags.writeable and n1.flags.owndata and n1.dtype == np.float32
    assert n1.tobytes() == _C._gemm_checked(a, b).tobytes()


X_VARIANTS = {"row": lambda: f32(6, 5), "transposed": lambda: f32(5, 6).T, "1d": lambda: f32(5),
              "float64": lambda: np.ones((6, 5)), "wrong-features": lambda: f32(6, 4),
              "list": lambda: [[1.0] * 5] * 6, "neg-stride": lambda: f32(6, 5)[::-1]}
W_VARIANTS = {"row": lambda: f32(7, 5), "transposed": lambda: f32(5, 7).T, "1d": lambda: f32(5),
              "one-out": lambda: f32(1, 5), "float64": lambda: np.ones((7, 5)),
              "list": lambda: [[1.0] * 5] * 7, "readonly": lambda: readonly(f32(7, 5))}


def linear_checked(x, w, bias=None, relu=False, out=None):
    """ops.linear's path when _C.linear_fast declines (its own checks, then _gemm_checked)."""
    if not isinstance(w, np.ndarray):
        raise TypeError(f"argument 'weight' must be a numpy.ndarray of float32, got {type(w).__name__}")
    if w.ndim != 2:
        raise ValueError(f"argument 'weight' must be 2-D (out_features, in_features), got shape {w.shape}")
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] != w.shape[1]:
        raise ValueError(
            f"linear: input has shape {x.shape} but weight has shape {w.shape}: "
            f"expected input with {w.shape[1]} features"
        )
    return _C._gemm_checked(x, w.T, out, 1.0, 0.0, bias, relu, a_name="x", b_name="weight")


@pytest.mark.parametrize("xv", list(X_VARIANTS))
@pytest.mark.parametrize("wv", list(W_VARIANTS))
@pytest.mark.parametrize("extra", ["plain", "bias-relu", "out", "relu-int"])
def test_linear_matches_checked_path(xv, wv, extra):
    def kw():
        if extra == "bias-relu":
            return {"bias": f32(7), "relu": True}
        if extra == "out":
            return {"out": np.full((6, 7), np.nan, np.float32)}
        if extra == "relu-int":
            return {"relu": 1}
        return {}

    fast = outcome(ops.linear, X_VARIANTS[xv](), W_VARIANTS[wv](), **kw())
    slow = outcome(linear_checked, X_VARIANTS[xv](), W_VARIANTS[wv](), **kw())
    assert fast == slow


def test_linear_fast_declines_with_none():
    x, w = f32(6, 5), f32(7, 5)
    assert _C.linear_fast(x.astype(np.float64), w, None, False, None) is None
    assert _C.linear_fast(x, w, None, 1, None) is None
    assert _C.linear_fast(x, f32(7, 4), None, False, None) is None
    y = _C.linear_fast(x, w, None, False, None)
    assert y.tobytes() == _C._gemm_checked(x, w.T).tobytes()
