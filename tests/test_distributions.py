"""fastmlp.distributions: Normal and Categorical against their closed forms and
torch.distributions (log_prob, entropy, moments, gradients through the tape), sample moments,
manual_seed reproducibility, a REINFORCE step's gradient against torch, bad input."""
import math
import pickle

import numpy as np
import pytest

import fastmlp
import fastmlp.nn as nn
from fastmlp.distributions import Categorical, Normal

torch = pytest.importorskip("torch")
td = torch.distributions


def _pair(a, requires_grad=True):
    return (fastmlp.tensor(a, requires_grad=requires_grad),
            torch.tensor(a, requires_grad=requires_grad))


def test_normal_log_prob_entropy_and_grads_match_torch(rng):
    loc = rng.standard_normal((3, 4)).astype(np.float32)
    scale = (0.5 + rng.random((3, 4))).astype(np.float32)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    fl, tl = _pair(loc)
    fs, ts = _pair(scale)
    fd, tdd = Normal(fl, fs), td.Normal(tl, ts)
    lp_f, lp_t = fd.log_prob(fastmlp.tensor(x)), tdd.log_prob(torch.tensor(x))
    np.testing.assert_allclose(lp_f.detach().numpy(), lp_t.detach().numpy(), rtol=1e-6, atol=1e-6)
    closed = -(x - loc) ** 2 / (2 * scale.astype(np.float64) ** 2) - np.log(scale) - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(lp_f.detach().numpy(), closed, rtol=1e-5, atol=1e-5)
    (lp_f.sum() + 0.3 * fd.entropy().sum()).backward()
    (lp_t.sum() + 0.3 * tdd.entropy().sum()).backward()
    np.testing.assert_allclose(fl.grad.numpy(), tl.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fs.grad.numpy(), ts.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fd.entropy().detach().numpy(), tdd.entropy().detach().numpy(), rtol=1e-6)
    assert tuple(fd.batch_shape) == (3, 4) and tuple(fd.event_shape) == ()
    np.testing.assert_allclose(fd.variance.detach().numpy(), scale ** 2, rtol=1e-6)
    assert fd.mean is fl and fd.stddev is fs


def test_normal_sample_moments_and_seed():
    fastmlp.manual_seed(3)
    d = Normal(fastmlp.tensor([1.0, -2.0]), fastmlp.tensor([0.5, 3.0]))
    s = d.sample((40000,)).numpy()
    assert s.shape == (40000, 2) and s.dtype == np.float32
    assert abs(s[:, 0].mean() - 1.0) < 4 * 0.5 / 200 and abs(s[:, 1].mean() + 2.0) < 4 * 3.0 / 200
    np.testing.assert_allclose(s.std(0), [0.5, 3.0], rtol=0.02)
    fastmlp.manual_seed(3)
    np.testing.assert_array_equal(d.sample((40000,)).numpy(), s)
    fastmlp.manual_seed(3)
    r = d.rsample((40000,))
    np.testing.assert_array_equal(r.detach().numpy(), s)  # the same draws, on the tape
    assert Normal(0.0, 1.0).sample().shape == ()


def test_normal_rsample_gradient():
    loc = fastmlp.tensor([0.5, 1.0], requires_grad=True)
    scale = fastmlp.tensor([2.0, 0.1], requires_grad=True)
    fastmlp.manual_seed(0)
    x = Normal(loc, scale).rsample((5,))
    x.sum().backward()
    fastmlp.manual_seed(0)
    eps = Normal(fastmlp.zeros(2), fastmlp.ones(2)).sample((5,)).numpy()
    np.testing.assert_allclose(loc.grad.numpy(), [5.0, 5.0])
    np.testing.assert_allclose(scale.grad.numpy(), eps.sum(0), rtol=1e-6)


@pytest.mark.parametrize("use_logits", [True, False])
def test_categorical_matches_torch(use_logits, rng):
    raw = rng.standard_normal((4, 5)).astype(np.float32)
    if not use_logits:
        raw = np.abs(raw) + 0.05
    fp, tp = _pair(raw)
    kw = "logits" if use_logits else "probs"
    fd, tdd = Categorical(**{kw: fp}), td.Categorical(**{kw: tp})
    np.testing.assert_allclose(fd.probs.detach().numpy(), tdd.probs.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fd.logits.detach().numpy(), tdd.logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    v = np.array([[0, 4, 2, 1], [3, 3, 0, 2]], np.int64)
    lf, lt = fd.log_prob(fastmlp.tensor(v)), tdd.log_prob(torch.tensor(v))
    np.testing.assert_allclose(lf.detach().numpy(), lt.detach().numpy(), rtol=1e-5, atol=1e-6)
    ef, et = fd.entropy(), tdd.entropy()
    np.testing.assert_allclose(ef.detach().numpy(), et.detach().numpy(), rtol=1e-5, atol=1e-6)
    (lf.sum() + 0.1 * ef.sum()).backward()
    (lt.sum() + 0.1 * et.sum()).backward()
    np.testing.assert_allclose(fp.grad.numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert tuple(fd.batch_shape) == (4,) and np.isnan(fd.mean.numpy()).all()


def test_categorical_sample_frequencies_and_seed():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]], np.float32)
    d = Categorical(probs=fastmlp.tensor(p * 4))  # unnormalised: divided by the row sums
    fastmlp.manual_seed(11)
    s = d.sample((30000,)).numpy()
    assert s.shape == (30000, 2) and s.dtype == np.int64
    for row in range(2):
        freq = np.bincount(s[:, row], minlength=3) / len(s)
        np.testing.assert_allclose(freq, p[row], atol=0.015)
    assert not np.any(s[:, 1] == 1)  # zero probability is never drawn
    fastmlp.manual_seed(11)
    np.testing.assert_array_equal(d.sample((30000,)).numpy(), s)
    lp = d.log_prob(fastmlp.tensor([1, 2]))
    np.testing.assert_allclose(lp.numpy(), np.log([0.6, 0.5]), rtol=1e-6)
    assert tuple(d.enumerate_support().shape) == (3, 2)


def test_reinforce_step_gradient_matches_torch(rng):
    """A policy net's REINFORCE loss -(log_prob(a) * R).mean() - 0.01 * entropy, same weights, same
    actions and returns: the same gradients as torch, and an Adam step moves both alike."""
    obs = rng.standard_normal((16, 4)).astype(np.float32)
    acts = rng.integers(0, 3, 16)
    rets = rng.standard_normal(16).astype(np.float32)
    fnet = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for f, t in zip(fnet.parameters(), tnet.parameters()):
            t.copy_(torch.tensor(f.detach().numpy()))
    fopt = fastmlp.optim.Adam(fnet.parameters(), lr=0.01)
    topt = torch.optim.Adam(tnet.parameters(), lr=0.01, foreach=False)
    for _ in range(2):
        fd = Categorical(logits=fnet(fastmlp.tensor(obs)))
        tdd = td.Categorical(logits=tnet(torch.tensor(obs)))
        fl = -(fd.log_prob(fastmlp.tensor(acts)) * fastmlp.tensor(rets)).mean() - 0.01 * fd.entropy().mean()
        tl = -(tdd.log_prob(torch.tensor(acts)) * torch.tensor(rets)).mean() - 0.01 * tdd.entropy().mean()
        fopt.zero_grad()
        topt.zero_grad()
        fl.backward()
        tl.backward()
        assert float(fl) == pytest.approx(float(tl.detach()), rel=1e-5)
        for f, t in zip(fnet.parameters(), tnet.parameters()):
            np.testing.assert_allclose(f.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-6)
        fopt.step()
        topt.step()
    # a Gaussian policy's log_prob gradient too
    mu = fastmlp.tensor(obs[:, :2], requires_grad=True)
    tmu = torch.tensor(obs[:, :2], requires_grad=True)
    a = rng.standard_normal((16, 2)).astype(np.float32)
    (Normal(mu, 0.7).log_prob(fastmlp.tensor(a)).sum(-1) * fastmlp.tensor(rets)).mean().backward()
    (td.Normal(tmu, 0.7).log_prob(torch.tensor(a)).sum(-1) * torch.tensor(rets)).mean().backward()
    np.testing.assert_allclose(mu.grad.numpy(), tmu.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_bad_input():
    with pytest.raises(ValueError, match="scale"):
        Normal(fastmlp.zeros(2), fastmlp.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="but not both"):
        Categorical()
    with pytest.raises(ValueError, match="but not both"):
        Categorical(probs=fastmlp.ones(2), logits=fastmlp.ones(2))
    with pytest.raises(ValueError, match="probs"):
        Categorical(probs=fastmlp.tensor([0.5, -0.1]))
    with pytest.raises(ValueError, match="out of range for 3 categories"):
        Categorical(logits=fastmlp.zeros(3)).log_prob(fastmlp.tensor([3]))
    with pytest.raises(NotImplementedError, match="rsample"):
        Categorical(logits=fastmlp.zeros(3)).rsample()
    try:
        Normal(0.0, -1.0)
    except ValueError as e:
        pickle.loads(pickle.dumps(e))
