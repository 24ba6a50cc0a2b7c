"""Tensor basics and autograd against float64 numpy references (and finite differences)."""
import numpy as np
import pytest

import fastmlp
from fastmlp import nn


def num_grad(f, x, eps=1e-6):
    """Central-difference gradient of scalar f at float64 array x."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        hi = f(x)
        x[i] = old - eps
        lo = f(x)
        x[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


def check_grad(fn, *shapes, seed=0):
    """Compare autograd of fn(*tensors).sum() (float64) with finite differences."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) + 0.1 for s in shapes]
    ts = [fastmlp.tensor(a, dtype=fastmlp.float64, requires_grad=True) for a in arrays]
    fn(*ts).sum().backward()
    for k, a in enumerate(arrays):
        def f(x, k=k):
            args = [fastmlp.tensor(x if j == k else arrays[j], dtype=fastmlp.float64)
                    for j in range(len(arrays))]
            return fn(*args).sum().item()

        np.testing.assert_allclose(ts[k].grad.numpy(), num_grad(f, a.copy()), rtol=1e-5, atol=1e-6)


def test_creation_dtypes():
    assert fastmlp.tensor([1.0, 2.0]).dtype == fastmlp.float32
    assert fastmlp.tensor([1, 2]).dtype == fastmlp.int64
    assert fastmlp.tensor([True]).dtype == fastmlp.bool
    assert fastmlp.from_numpy(np.zeros(3)).dtype == fastmlp.float64
    assert fastmlp.tensor(np.zeros(3)).dtype == fastmlp.float64
    assert fastmlp.zeros(2, 3).shape == (2, 3)
    assert fastmlp.ones((2, 3)).dtype is fastmlp.float32
    assert fastmlp.randn(4, 5).shape == fastmlp.Size([4, 5])
    r = fastmlp.rand(1000)
    assert 0 <= r.min().item() and r.max().item() < 1
    assert repr(fastmlp.float32) == "fastmlp.float32"
    assert fastmlp.float32 == np.float32
    assert repr(fastmlp.zeros(2, 3).shape) == "fastmlp.Size([2, 3])"


def test_from_numpy_and_numpy_share_memory():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = fastmlp.from_numpy(a)
    assert t.numpy() is a
    t.numpy()[0, 0] = 42
    assert a[0, 0] == 42
    p = nn.Parameter(fastmlp.zeros(3))
    p.numpy()[:] = 7  # other components update parameters in place through numpy()
    assert p.tolist() == [7, 7, 7]
    with pytest.raises(TypeError):
        fastmlp.from_numpy([1, 2])


def test_tensor_copies_data():
    a = np.ones(3, dtype=np.float32)
    t = fastmlp.tensor(a)
    a[0] = 5
    assert t[0].item() == 1


def test_manual_seed_reproducible():
    fastmlp.manual_seed(3)
    a = fastmlp.randn(5).numpy().copy()
    fastmlp.manual_seed(3)
    b = fastmlp.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    g = fastmlp.Generator().manual_seed(3)
    np.testing.assert_array_equal(fastmlp.randn(5, generator=g).numpy(), a)


def test_repr_torch_style():
    t = fastmlp.tensor([[1.0, 2.0], [3.0, 4.5]], requires_grad=True)
    assert repr(t) == "tensor([[1.0000, 2.0000],\n        [3.0000, 4.5000]], requires_grad=True)"
    assert repr(fastmlp.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(fastmlp.tensor(3.5)) == "tensor(3.5000)"
    y = (t * 2).sum()
    assert repr(y) == "tensor(21., grad_fn=<SumBackward1>)"
    assert "dtype=fastmlp.float64" in repr(fastmlp.zeros(2, dtype=fastmlp.float64))
    assert repr(fastmlp.tensor([1, 2])) == "tensor([1, 2])"


def test_basic_accessors():
    t = fastmlp.arange(12.0).reshape(3, 4)
    assert t.size() == (3, 4) and t.size(1) == 4 and t.dim() == 2 and len(t) == 3
    assert t.numel() == 12
    assert t.device == fastmlp.device("cpu") and str(t.device) == "cpu"
    assert t.t().shape == (4, 3) and t.T.shape == (4, 3)
    assert [r.tolist() for r in t] == t.tolist()
    assert t[1, 2].item() == 6.0
    assert t[:, 1:3].shape == (2 + 1, 2)
    assert t.view(-1).shape == (12,)
    assert float(t.sum()) == 66.0
    assert t.mean().item() == pytest.approx(5.5)
    assert t.sum(dim=0).tolist() == [12.0, 15.0, 18.0, 21.0]
    assert (t > 5).dtype == fastmlp.bool and (t > 5).sum().item() == 6
    assert (t == None) is False and (t != None) is True  # noqa: E711
    with pytest.raises(TypeError):
        len(fastmlp.tensor(1.0))
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        t.item()


def test_arithmetic_broadcast_and_scalars():
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((4,)).astype(np.float32)
    ta, tb = fastmlp.from_numpy(a), fastmlp.from_numpy(b)
    np.testing.assert_allclose((ta + tb).numpy(), a + b)
    np.testing.assert_allclose((ta - tb).numpy(), a - b)
    np.testing.assert_allclose((ta * tb).numpy(), a * b)
    np.testing.assert_allclose((ta / (tb + 3)).numpy(), a / (b + 3), rtol=1e-6)
    np.testing.assert_allclose((2 - ta).numpy(), 2 - a)
    np.testing.assert_allclose((1 / (ta + 10)).numpy(), 1 / (a + 10), rtol=1e-6)
    np.testing.assert_allclose((-ta).numpy(), -a)
    np.testing.assert_allclose((ta ** 2).numpy(), a ** 2, rtol=1e-6)
    np.testing.assert_allclose((ta @ ta.T).numpy(), a @ a.T, rtol=1e-5, atol=1e-5)
    assert (ta * 2.5).dtype == fastmlp.float32  # python scalars keep float32


@pytest.mark.parametrize("fn,shapes", [
    (lambda a, b: a + b, [(3, 4), (4,)]),
    (lambda a, b: a - b, [(3, 1), (1, 4)]),
    (lambda a, b: a * b, [(2, 3), (2, 3)]),
    (lambda a, b: a / (b * b + 1), [(2, 3), (3,)]),
    (lambda a: a ** 3, [(5,)]),
    (lambda a, b: a @ b, [(3, 4), (4, 2)]),
    (lambda a: a.mean(dim=1, keepdim=True) * a, [(3, 4)]),
    (lambda a: a.sum(0) * 2, [(3, 4)]),
    (lambda a: a.reshape(2, 6).t() * 1.5, [(3, 4)]),
    (lambda a: a[1:, ::2] * a[0, 0], [(3, 4)]),
    (lambda a: a[[0, 0, 2]], [(3, 4)]),
    (lambda a: fastmlp.relu(a) * a, [(4, 5)]),
    (lambda a: (a.exp() + (a * a + 1).log()).tanh() + a.sigmoid(), [(3, 3)]),
    (lambda a, b: fastmlp.cat([a, b], dim=0) * 2, [(2, 3), (1, 3)]),
    (lambda a: a.max(dim=1)[0] + a.max(), [(3, 4)]),
    (lambda a: (lambda h: h * h + h.sum() * h + fastmlp.relu(h))(a * 2 - 0.3), [(3, 4)]),  # a DAG
])
def test_autograd_matches_finite_differences(fn, shapes):
    check_grad(fn, *shapes)


def test_float32_matmul_grad_against_numpy():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.standard_normal((7, 3)).astype(np.float32)
    ta = fastmlp.tensor(a, requires_grad=True)
    tb = fastmlp.tensor(b, requires_grad=True)
    (ta @ tb).sum().backward()
    ones = np.ones((5, 3))
    np.testing.assert_allclose(ta.grad.numpy(), ones @ b.T.astype(np.float64), rtol=1e-5)
    np.testing.assert_allclose(tb.grad.numpy(), a.T.astype(np.float64) @ ones, rtol=1e-5)


def test_grad_accumulates_and_shared_input():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x + x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 + 2, 4 + 2])
    a = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    b = fastmlp.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad.numpy()[0] = 100  # grads of two leaves must not alias
    assert b.grad.tolist() == [1.0, 1.0]


def test_backward_errors():
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()
    z = (x * x).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 + 4, 4 + 8])
    with pytest.raises(RuntimeError, match="does not require grad"):
        fastmlp.tensor([1.0]).sum().backward()
    (x * 3).backward(fastmlp.tensor([1.0, 0.5]))
    np.testing.assert_allclose(x.grad.numpy(), [6 + 3, 12 + 1.5])


def test_no_grad_and_detach():
    x = fastmlp.tensor([1.0], requires_grad=True)
    with fastmlp.no_grad():
        y = x * 2
        assert not fastmlp.is_grad_enabled()
        with fastmlp.enable_grad():
            assert (x * 2).requires_grad
    assert fastmlp.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    d = x.detach()
    assert not d.requires_grad and d.numpy() is x.numpy()

    @fastmlp.no_grad()
    def f():
        return x * 2

    assert not f().requires_grad


def test_inplace_rules():
    x = fastmlp.tensor([1.0, -2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1)
    with fastmlp.no_grad():
        x.add_(1)
        x -= 1
    assert x.tolist() == [1.0, -2.0]
    t = fastmlp.zeros(3)
    t[1] = 5
    t.zero_()
    assert t.tolist() == [0, 0, 0]


def test_to_and_conversions():
    t = fastmlp.tensor([1.5, 2.5])
    assert t.to("cpu") is t
    assert t.double().dtype == fastmlp.float64
    assert t.to(fastmlp.float64).float().dtype == fastmlp.float32
    assert t.long().tolist() == [1, 2]
    x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    x.double().sum().backward()
    assert x.grad.dtype == fastmlp.float32 and x.grad.tolist() == [1.0, 1.0]


@pytest.mark.skipif(fastmlp.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_unavailable_is_a_clear_error():
    t = fastmlp.zeros(2)
    with pytest.raises(RuntimeError, match="is_available"):
        t.cuda()
    with pytest.raises(RuntimeError, match="CUDA"):
        t.to("cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        nn.Linear(2, 3).to("cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        fastmlp.zeros(2, device="cuda")


def test_device_objects():
    assert fastmlp.device("cuda") == fastmlp.device("cuda:0")
    assert str(fastmlp.device("cuda", 1)) == "cuda:1"
    assert fastmlp.device("cpu") == "cpu"
    with pytest.raises(RuntimeError):
        fastmlp.device("tpu")


def test_type_promotion_like_torch():
    f, i = fastmlp.ones(2, 3), fastmlp.arange(3)
    assert (f * i).dtype == fastmlp.float32
    assert (i / 2).dtype == fastmlp.float32 and (i / i.clone().add_(1)).dtype == fastmlp.float32
    assert (f + fastmlp.tensor(2.0, dtype=fastmlp.float64)).dtype == fastmlp.float32  # 0-d loses
    assert (fastmlp.ones(2, dtype=fastmlp.float64) + fastmlp.ones(2)).dtype == fastmlp.float64
    x = fastmlp.ones(3, requires_grad=True)
    (x * i).sum().backward()
    assert x.grad.dtype == fastmlp.float32 and x.grad.tolist() == [0.0, 1.0, 2.0]


def test_parameter_repr_and_str():
    p = nn.Parameter(fastmlp.ones(2))
    assert str(p) == repr(p) == "Parameter containing:\ntensor([1., 1.], requires_grad=True)"
    assert f"{fastmlp.tensor(0.25):.2f}" == "0.25"


class _FakeGpuArray(np.ndarray):
    """A numpy array that claims to live on a GPU (for the device-mixing checks, no GPU needed)."""

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": "<f4", "data": (0, False), "version": 3}


def test_mixing_devices_is_a_clear_error():
    from fastmlp.tensor import _wrap

    gpu = _wrap(np.zeros((2, 3), np.float32).view(_FakeGpuArray))
    cpu = fastmlp.zeros(2, 3)
    assert gpu.device == fastmlp.device("cuda:0") and gpu.is_cuda
    for op in (lambda: gpu + cpu, lambda: cpu * gpu, lambda: fastmlp.matmul(cpu, gpu.t())):
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            op()
    with pytest.raises(RuntimeError, match="same device"):
        nn.Linear(3, 2)(gpu)
    with pytest.raises(TypeError, match="numpy"):
        gpu.numpy()
