"""Step-by-step parity with PyTorch: same initial weights, same batches, 50 SGD steps."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastmlp  # noqa: E402


def seed_net(lib):
    nn = lib.nn

    class Net(nn.Module):
        def __init__(self):
            super(Net, self).__init__()
            self.fc1 = nn.Linear(10, 20)
            self.fc2 = nn.Linear(20, 1)

        def forward(self, x):
            x = lib.relu(self.fc1(x))
            x = self.fc2(x)
            return x

    return Net()


def deep_net(lib):
    nn = lib.nn
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


OPTS = [dict(lr=0.01), dict(lr=0.01, momentum=0.9, weight_decay=1e-4, nesterov=True)]


@pytest.mark.parametrize("make,n_in,n_out,batch", [(seed_net, 10, 1, 64), (deep_net, 784, 10, 32)],
                         ids=["seed", "784-256-256-10"])
@pytest.mark.parametrize("opt_kw", OPTS, ids=["plain", "momentum-wd-nesterov"])
def test_training_matches_torch(make, n_in, n_out, batch, opt_kw):
    torch.manual_seed(0)
    tnet = make(torch)
    fnet = make(fastmlp)
    fnet.load_state_dict(tnet.state_dict())
    topt = torch.optim.SGD(tnet.parameters(), **opt_kw)
    fopt = fastmlp.optim.SGD(fnet.parameters(), **opt_kw)
    tcrit, fcrit = torch.nn.MSELoss(), fastmlp.nn.MSELoss()
    rng = np.random.default_rng(0)
    tl, fl = [], []
    for _ in range(50):
        x = rng.standard_normal((batch, n_in), dtype=np.float32)
        y = rng.standard_normal((batch, n_out), dtype=np.float32)
        loss = tcrit(tnet(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        loss.backward()
        topt.step()
        tl.append(loss.item())
        loss = fcrit(fnet(fastmlp.from_numpy(x)), fastmlp.from_numpy(y))
        fopt.zero_grad()
        loss.backward()
        fopt.step()
        fl.append(loss.item())
    np.testing.assert_allclose(fl, tl, rtol=1e-5)
    tsd = tnet.state_dict()
    for k, v in fnet.state_dict().items():
        ref = tsd[k].numpy()
        np.testing.assert_allclose(v.numpy(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_same_graph_grads_as_torch():
    """A graph mixing hot and cold ops: gradients equal torch's."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    res = []
    for lib in (torch, fastmlp):
        xt = lib.tensor(x, requires_grad=True)
        wt = lib.tensor(w, requires_grad=True)
        h = lib.relu(lib.nn.functional.linear(xt, wt))
        out = ((h * 2 - 1) ** 2).mean() + (xt @ wt.t()).sum() / 10 + h[:, 1:3].sum()
        out.backward()
        res.append((out.item(), xt.grad.numpy().copy(), wt.grad.numpy().copy()))
    assert res[1][0] == pytest.approx(res[0][0], rel=1e-5)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res[1][2], res[0][2], rtol=1e-5, atol=1e-6)


def test_linear_init_matches_torch_distribution():
    fastmlp.manual_seed(0)
    torch.manual_seed(0)
    ours = fastmlp.nn.Linear(256, 128).weight.numpy()
    theirs = torch.nn.Linear(256, 128).weight.detach().numpy()
    assert abs(ours.std() - theirs.std()) < 0.03 * theirs.std()
    assert abs(np.abs(ours).max() - np.abs(theirs).max()) < 0.01 * np.abs(theirs).max()
