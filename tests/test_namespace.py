"""The long tail of the torch namespace (issue 12): each name against PyTorch — values, dtypes
(int64/bool first class), gradients, broadcasting, dim/axis spellings — and bad input raised as
PyTorch raises it."""
import numpy as np
import pytest

import fastmlp

torch = pytest.importorskip("torch")


RNG = np.random.default_rng(7)
A = RNG.standard_normal((3, 4)).astype(np.float32)
B = RNG.standard_normal((3, 4)).astype(np.float32)
P = (np.abs(A) + 0.5).astype(np.float32)
I = RNG.integers(-5, 6, (3, 4)).astype(np.int64)
J = RNG.integers(1, 4, (3, 4)).astype(np.int64)
M = A > 0


def _np(v):
    if isinstance(v, (tuple, list)):
        return [_np(x) for x in v]
    if hasattr(v, "detach"):
        return v.detach().numpy()
    if hasattr(v, "numpy"):
        return v.numpy()
    return np.asarray(v)


def _dtype_name(t):
    return str(t.dtype).split(".")[-1]


def check(fn, *arrays, grad=True, rtol=1e-5, atol=1e-6):
    """fn(lib, *tensors) on torch and fastmlp from the same arrays: values, dtypes, gradients."""
    outs, grads = [], []
    for L in (torch, fastmlp):
        ts = [L.tensor(a, requires_grad=bool(grad and a.dtype.kind == "f")) for a in arrays]
        r = fn(L, *ts)
        outs.append(r)
        if grad and any(t.requires_grad for t in ts):
            rs = r if isinstance(r, (tuple, list)) else (r,)
            tot = None
            for k, x in enumerate(rs):
                if getattr(x, "requires_grad", False):
                    w = L.tensor(np.linspace(-1, 1, x.numel()).reshape(tuple(x.shape)).astype(
                        np.float32 if _dtype_name(x) == "float32" else np.float64))
                    term = (x * w).sum()
                    tot = term if tot is None else tot + term
            if tot is not None:
                tot.backward()
            grads.append([None if t.grad is None else _np(t.grad) for t in ts])
    t_out, f_out = outs
    t_list = t_out if isinstance(t_out, (tuple, list)) else [t_out]
    f_list = f_out if isinstance(f_out, (tuple, list)) else [f_out]
    assert len(t_list) == len(f_list)
    for a, b in zip(t_list, f_list):
        if hasattr(a, "dtype"):
            assert _dtype_name(a) == _dtype_name(b), (a.dtype, b.dtype)
            assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(_np(b), _np(a), rtol=rtol, atol=atol)
    if grads:
        for ga, gb in zip(*grads):
            if ga is None:
                assert gb is None or not np.any(gb)
            else:
                np.testing.assert_allclose(gb, ga, rtol=rtol, atol=atol)
    return f_out


UNARY = ["sin", "cos", "exp", "log1p", "expm1", "tanh", "sigmoid", "abs", "sign", "floor", "ceil",
         "trunc", "reciprocal"]


@pytest.mark.parametrize("name", UNARY)
def test_unary(name):
    check(lambda L, x: getattr(L, name)(x), A)
    check(lambda L, x: getattr(x, name)(), A)


@pytest.mark.parametrize("name", ["log", "sqrt", "rsqrt", "log2", "log10"])
def test_unary_positive(name):
    check(lambda L, x: getattr(L, name)(x), P)


@pytest.mark.parametrize("name", ["sin", "exp", "sqrt", "abs", "sign", "floor"])
def test_unary_on_ints(name):
    check(lambda L, x: getattr(L, name)(x), np.abs(I), grad=False)


def test_round_decimals_and_pow():
    check(lambda L, x: L.round(x * 10), A)
    check(lambda L, x: L.round(x, decimals=2), A)
    check(lambda L, x: x.round(decimals=1), A)
    check(lambda L, x: L.pow(x, 2) + L.pow(x.abs() + 1, x), A)
    check(lambda L, x: L.pow(2.0, x), A)


def test_int_and_bool_dtype_rules():
    check(lambda L, a, b: (a + b, a * b, a - b, a // b, a % b, a / b), I, J, grad=False)
    check(lambda L, a: (a + 1, a * 2, a + 1.5, a / 2, a ** 2, -a), I, grad=False)
    check(lambda L, a, x: (a + x, x * a, a / x), I, A, grad=False)
    check(lambda L, a: (a > 0, a == 2, a != 1, a <= 0, (a > 0) & (a < 3), (a > 0) | (a < -3),
                        (a > 0) ^ (a > 2), ~(a > 0)), I, grad=False)
    check(lambda L, a, b: (a & b, a | b, a ^ b, ~a, a << 1, a >> 1), I, J, grad=False)
    check(lambda L, m: (m + 1, m.sum(), m.long(), m.float().mean(), m * 2), M, grad=False)
    check(lambda L, a: (a.sum(), a.sum(1), a.cumsum(0), a.prod(1), a.max(), a.min(1).values), I,
          grad=False)
    check(lambda L, x: (x % 0.7, L.remainder(x, -0.6), L.fmod(x, 0.6), x.fmod(-0.5)), A)
    check(lambda L, x, y: (L.remainder(x, y), L.fmod(x, y)), A, B + 3)
    check(lambda L, x: (x // 0.3, L.floor_divide(x, -0.4)), A, grad=False)
    t = fastmlp.tensor([3, 1, 2])
    assert t.dtype == fastmlp.int64 and t.sum().item() == 6 and isinstance(t.sum().item(), int)
    assert t.tolist() == [3, 1, 2] and isinstance(t.tolist()[0], int)
    with pytest.raises(RuntimeError, match="not implemented for 'Float'"):
        fastmlp.tensor([1.0]) & fastmlp.tensor([1.0])


@pytest.mark.parametrize("kw", [{}, {"dim": 1}, {"dim": 0, "keepdim": True}, {"axis": 1},
                                {"dim": -1, "keepdims": True}])
def test_max_min_argmax_with_dim_and_axis(kw):
    def f(L, x):
        if not kw:
            return x.max(), x.min(), L.argmax(x), L.argmin(x)
        mx, mn = L.max(x, **kw), x.min(**kw)
        return (mx.values, mx.indices, mn[0], mn[1], L.argmax(x, **kw), x.argmin(**kw))

    check(f, A)
    check(lambda L, a: L.max(a, **kw) if kw else a.max(), I, grad=False)


def test_max_ties_and_binary_forms():
    ties = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], np.float32)
    check(lambda L, x: x.max(), ties)
    check(lambda L, x, y: (L.max(x, y), L.min(x, y), L.maximum(x, y), L.minimum(x, y)), A, B)
    check(lambda L, x, y: L.maximum(x, y), ties, ties[::-1].copy())
    check(lambda L, x: (L.amax(x, 1), L.amin(x, (0, 1)), x.amax(dim=0, keepdim=True)), ties)


def test_topk_sort_argsort():
    for kw in ({"k": 2}, {"k": 3, "dim": 0}, {"k": 2, "largest": False}, {"k": 1, "dim": 1}):
        check(lambda L, x: tuple(L.topk(x, **kw)), A)
        check(lambda L, x: tuple(x.topk(**kw)), A)
    check(lambda L, x: tuple(L.sort(x)) + tuple(x.sort(0, descending=True)), A)
    check(lambda L, x: (L.argsort(x), x.argsort(dim=0, descending=True)), A)
    check(lambda L, a: tuple(L.sort(a, stable=True)) + (L.argsort(a, stable=True),), I, grad=False)
    r = fastmlp.topk(fastmlp.tensor(A), 2)
    assert r.values.shape == (3, 2) and r.indices.dtype == fastmlp.int64
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        fastmlp.topk(fastmlp.tensor(A), 5)


def test_gather_scatter_index_select_masked():
    idx = np.array([[0, 3], [1, 1], [2, 0]], np.int64)
    check(lambda L, x: (L.gather(x, 1, L.tensor(idx)), x.gather(0, L.tensor(idx[:2, :] % 3))), A)
    src = RNG.standard_normal((3, 2)).astype(np.float32)
    uniq = np.array([[0, 3], [1, 2], [2, 0]], np.int64)
    check(lambda L, x, s: (L.scatter(x, 1, L.tensor(uniq), s), x.scatter_add(1, L.tensor(idx), s),
                           L.scatter(x, 1, L.tensor(uniq), 0.5)), A, src)
    check(lambda L, x: L.index_select(x, 1, L.tensor([0, 2, 2])), A)
    check(lambda L, x, m: (L.masked_fill(x, m, 0.0), x.masked_fill(m, -1e9), x[m],
                           L.masked_select(x, m)), A, M)
    check(lambda L, x, m: L.where(m, x, 0.0) + L.where(m, 1.0, x), A, M)
    check(lambda L, x, y, m: L.where(m, x, y), A, B, M)
    check(lambda L, m: L.where(m)[1], M, grad=False)
    check(lambda L, x: x.masked_fill(x > 0, 1), I, grad=False)
    with pytest.raises(RuntimeError, match="index 4 is out of bounds for dimension 1 with size 4"):
        fastmlp.gather(fastmlp.tensor(A), 1, fastmlp.tensor([[4]]))
    with pytest.raises(RuntimeError, match="Expected dtype int64 for index"):
        fastmlp.gather(fastmlp.tensor(A), 1, fastmlp.tensor([[1]], dtype=fastmlp.int32))
    with pytest.raises(RuntimeError, match="where expected condition to be a boolean tensor"):
        fastmlp.where(fastmlp.tensor(A), fastmlp.tensor(A), 0.0)
    x = fastmlp.tensor(A.copy())
    x.scatter_(1, fastmlp.tensor(uniq), 0.0).masked_fill_(x > 1, 1.0)
    t = torch.tensor(A.copy())
    t.scatter_(1, torch.tensor(uniq), 0.0).masked_fill_(t > 1, 1.0)
    np.testing.assert_array_equal(x.numpy(), t.numpy())


def test_cat_stack_split_chunk_unbind():
    check(lambda L, x, y: (L.cat([x, y]), L.cat((x, y), dim=1), L.concat([x, y], -1),
                           L.stack([x, y]), L.stack([x, y], dim=2)), A, B)
    check(lambda L, x: x.split(2) + x.split([1, 3], dim=1) + L.chunk(x, 2, 1) + x.unbind(1), A)
    check(lambda L, a, x: L.cat([a, x]), I, A, grad=False)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match except in dimension 0"):
        fastmlp.cat([fastmlp.tensor(A), fastmlp.tensor(A[:, :2])])
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        fastmlp.stack([fastmlp.tensor(A), fastmlp.tensor(A[:2])])
    with pytest.raises(IndexError, match="Dimension out of range"):
        fastmlp.cat([fastmlp.tensor(A)], dim=2)


def test_clamp_with_numbers_and_tensor_bounds():
    check(lambda L, x: (L.clamp(x, -0.5, 0.5), x.clamp(min=0), L.clip(x, max=0.1)), A)
    lo = np.full((1, 4), -0.3, np.float32)
    check(lambda L, x, lo_: L.clamp(x, min=lo_), A, lo)
    check(lambda L, x, lo_: L.clamp(x, min=lo_, max=lo_ + 0.8), A, lo)
    check(lambda L, a: a.clamp(-1, 2), I, grad=False)
    with pytest.raises(RuntimeError, match="At least one of 'min' or 'max' must not be None"):
        fastmlp.clamp(fastmlp.tensor(A))


def test_any_all_isnan_nan_to_num():
    bad = np.array([[1.0, np.nan, np.inf], [-np.inf, 0.0, 2.0]], np.float32)
    check(lambda L, x: (L.isnan(x), L.isinf(x), L.isfinite(x), x.isnan().any(), L.any(x > 1, 1),
                        L.all(x > -1, dim=0), x.isfinite().all(axis=1)), bad, grad=False)
    check(lambda L, x: (L.nan_to_num(x), x.nan_to_num(nan=1.0, posinf=5.0, neginf=-5.0)), bad)
    check(lambda L, m: (m.any(), m.all(), L.any(m, dim=1, keepdim=True)), M, grad=False)


@pytest.mark.parametrize("kw", [{}, {"dim": 1}, {"dim": 0, "keepdim": True}, {"unbiased": False},
                                {"correction": 0, "dim": 1}, {"dim": (0, 1)}, {"axis": 1}])
def test_std_var(kw):
    check(lambda L, x: (L.std(x, **kw), L.var(x, **kw), x.std(**kw), x.var(**kw)), A)


def test_std_var_legacy_positional_unbiased():
    check(lambda L, x: (L.std(x, False), x.var(1, True), x.var(0, False, True)), A)


def test_norms():
    z = A.copy()
    z[1] = 0
    check(lambda L, x: (L.norm(x), x.norm(dim=1), x.norm(p=1, dim=0), x.norm(p=3, dim=1, keepdim=True),
                        L.norm(x, p=float("inf"), dim=1), L.linalg.norm(x), L.linalg.norm(x, dim=1),
                        L.linalg.vector_norm(x, ord=1), L.linalg.norm(x, "fro")), z)
    check(lambda L, x: L.norm(x, dim=1), np.zeros((2, 3), np.float32))


def test_cumsum_cumprod_prod_logsumexp_mean():
    check(lambda L, x: (L.cumsum(x, 1), x.cumsum(0), L.cumprod(x, 1), x.cumprod(dim=0)), A)
    with_zero = A.copy()
    with_zero[1, 1] = 0
    with_zero[2, 0] = 0
    with_zero[2, 2] = 0
    check(lambda L, x: (L.cumprod(x, 1), x.prod(1), x.prod(), x.prod(0, keepdim=True)), with_zero)
    check(lambda L, x: (L.logsumexp(x, 1), x.logsumexp(0, keepdim=True), L.logsumexp(x, (0, 1))), A)
    check(lambda L, x: (x.mean((0, 1)), L.mean(x, dim=[1], keepdim=True), x.sum(axis=0),
                        L.sum(x, (0,), keepdim=True)), A)


def test_meshgrid_bucketize_searchsorted_one_hot():
    a = np.array([0.0, 1.0, 2.0], np.float32)
    b = np.array([5.0, 6.0], np.float32)
    check(lambda L, x, y: L.meshgrid(x, y, indexing="ij") + L.meshgrid(x, y, indexing="xy"), a, b)
    bounds = np.array([1, 3, 5, 7], np.int64)
    vals = np.array([[0, 1, 3], [6, 7, 9]], np.int64)
    check(lambda L, v, bd: (L.bucketize(v, bd), L.bucketize(v, bd, right=True),
                            L.bucketize(v, bd, out_int32=True), L.searchsorted(bd, v),
                            L.searchsorted(bd, v, side="right")), vals, bounds, grad=False)
    F = fastmlp.nn.functional
    check(lambda L, c: (L.nn.functional.one_hot(c), L.nn.functional.one_hot(c, num_classes=6)),
          np.array([0, 2, 4, 1]), grad=False)
    with pytest.raises(RuntimeError, match="Class values must be smaller than num_classes"):
        F.one_hot(fastmlp.tensor([0, 3]), 3)
    with pytest.raises(RuntimeError, match="Class values must be non-negative"):
        F.one_hot(fastmlp.tensor([-1, 3]))
    with pytest.raises(RuntimeError, match="one_hot is only applicable to index tensor"):
        F.one_hot(fastmlp.tensor([1.0]))


def test_arithmetic_keyword_forms():
    check(lambda L, x, y: (L.add(x, y, alpha=2), L.sub(x, y, alpha=0.5), x.add(y, alpha=3),
                           x.sub(y, alpha=-1), L.mul(x, y), L.div(x, y), L.true_divide(x, 2.0),
                           L.div(x, y, rounding_mode="floor"), L.div(x, y, rounding_mode="trunc")),
          A, B + 2, grad=False)
    check(lambda L, x, y: (L.add(x, y, alpha=2), L.sub(x, y, alpha=0.5)), A, B)
    check(lambda L, a, b: (L.div(a, b), L.div(a, b, rounding_mode="floor"),
                           L.div(a, b, rounding_mode="trunc"), L.floor_divide(a, b)), I, J,
          grad=False)
    for L in (torch, fastmlp):
        out = L.zeros(3, 4)
        r = L.add(L.tensor(A), L.tensor(B), alpha=2, out=out)
        assert r is out
        np.testing.assert_allclose(_np(out), A + 2 * B, rtol=1e-6)
        out2 = L.empty(0)
        L.sin(L.tensor(A), out=out2)
        assert tuple(out2.shape) == (3, 4)


def test_flip_outer_einsum_misc():
    v = np.array([1.0, -2.0, 3.0], np.float32)
    w = np.array([0.5, 4.0], np.float32)
    check(lambda L, x: (L.flip(x, [0]), x.flip(0, 1), x.flip(dims=(1,)), L.fliplr(x), L.roll(x, 1, 1)), A)
    check(lambda L, a, b: (L.outer(a, b), a.outer(b), L.dot(a, a)), v, w)
    check(lambda L, x, y: (L.einsum("ij,kj->ik", x, y), L.einsum("ij->j", x),
                           L.einsum("ij,ij->", x, y), L.einsum("ij,j->i", x, y[0])), A, B)
    check(lambda L, x: (L.numel(x), x.numel(), x.nelement()) if L is fastmlp else
          (L.numel(x), x.numel(), x.nelement()), A, grad=False)


def test_normal_all_forms_and_randperm():
    fastmlp.manual_seed(0)
    m = fastmlp.zeros(2000, 3)
    s = fastmlp.full((2000, 3), 2.0)
    for r in (fastmlp.normal(m, s), fastmlp.normal(1.0, s), fastmlp.normal(m + 3, 0.5),
              fastmlp.normal(2.0, 3.0, size=(2000, 3)), fastmlp.normal(m, std=2.0)):
        assert r.shape == (2000, 3) and r.dtype == fastmlp.float32
    r = fastmlp.normal(fastmlp.tensor([0.0, 10.0]).expand(50000, 2), fastmlp.tensor([1.0, 0.1]))
    np.testing.assert_allclose(r.mean(0).numpy(), [0.0, 10.0], atol=0.03)
    np.testing.assert_allclose(r.std(0).numpy(), [1.0, 0.1], rtol=0.03)
    g = fastmlp.Generator().manual_seed(5)
    a = fastmlp.normal(0.0, 1.0, (4,), generator=g)
    b = fastmlp.normal(0.0, 1.0, (4,), generator=fastmlp.Generator().manual_seed(5))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(RuntimeError, match="std >= 0.0"):
        fastmlp.normal(0.0, -1.0, (2,))
    with pytest.raises(RuntimeError):
        fastmlp.normal(fastmlp.zeros(2), fastmlp.tensor([1.0, -1.0]))
    p = fastmlp.randperm(10)
    assert p.dtype == fastmlp.int64 and sorted(p.tolist()) == list(range(10))


def test_device_backends_and_grad_modes():
    d = fastmlp.device("cuda:0")
    assert d.type == "cuda" and d.index == 0 and str(d) == "cuda:0"
    assert fastmlp.device("cpu").type == "cpu" and fastmlp.device("cpu").index is None
    assert fastmlp.device("cuda", 1) == "cuda:1"
    assert repr(fastmlp.device("cuda:0")) == repr(torch.device("cuda:0"))
    assert fastmlp.backends.mps.is_available() is False
    assert fastmlp.backends.mps.is_built() is False
    fastmlp.backends.cudnn.benchmark = True  # scripts set it; harmless
    assert fastmlp.cuda.is_available() in (True, False)
    x = fastmlp.ones(2, requires_grad=True)
    with fastmlp.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    with fastmlp.inference_mode():
        assert not (x * 2).requires_grad
    with fastmlp.autograd.set_detect_anomaly(True):
        (x * 2).sum().backward()


def test_bad_input_as_torch():
    x = fastmlp.tensor(A)
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        x.sum(2)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.max(dim=5)
    with pytest.raises(RuntimeError, match="mean\\(\\): could not infer output dtype"):
        fastmlp.tensor(I).mean()
    with pytest.raises(RuntimeError, match="std and var only support floating point"):
        fastmlp.tensor(I).std()
    with pytest.raises(TypeError, match="multiple values for argument 'dim'"):
        x.sum(0, axis=1)
    with pytest.raises(RuntimeError, match="masked_fill only supports boolean masks"):
        x.masked_fill(fastmlp.tensor(I), 0.0)
    with pytest.raises(RuntimeError, match="split_with_sizes expects split_sizes to sum exactly to 3"):
        x.split([1, 1])
    with pytest.raises(TypeError):
        fastmlp.sin(A)


def test_inplace_ops_bump_version_and_refuse_leaves():
    w = fastmlp.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        w.add_(1)
    with fastmlp.no_grad():
        w.add_(1)
        w.clamp_(max=1.5)
    assert w._version == 2
    t = fastmlp.tensor([1, 2, 3])
    t += 1
    t[0] = 0
    assert t._version == 2 and t.tolist() == [0, 3, 4]


def test_broadcasting_values_and_grads():
    col = RNG.standard_normal((3, 1)).astype(np.float32)
    row = (np.abs(RNG.standard_normal((1, 4))) + 0.5).astype(np.float32)
    check(lambda L, a, b: (a + b, a - b, a * b, a / b, L.maximum(a, b), L.minimum(a, b),
                           L.where(a > 0, a, b), L.clamp(a, min=-b), L.remainder(a, b),
                           L.pow(b, a), L.add(a, b, alpha=-2)), col, row)
    check(lambda L, a, b: (a + b, a * b, a - b, a // b), I[:, :1].copy(), J[:1].copy(), grad=False)
    check(lambda L, a, m: a.masked_fill(m, 3.0), A, M[:1].copy())
