"""The general trainer's small-matrix path (csrc/cpu/mlp_fit_small*.cpp) against its sgemm path:
the same chains, weights, order and dropout masks give the same losses and weights within float32
rounding of a different summation order, on every CPU path; results do not depend on the thread
count; fit's automatic choice takes it for small chains (the toolkit parity tests against PyTorch
then run through it)."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _C, nn
from fit_helpers import chain_net as _net, eager_epoch


CHAINS = [
    # (sizes, activation, loss, optimizer, hyper, batch, n, dropout)
    ([6, 64, 64, 1], nn.Tanh, "huber", "adam", {}, 64, 300, 0.0),
    ([20, 48, 10], nn.GELU, "cross_entropy", "adamw", {"weight_decay": 0.05}, 32, 200, 0.0),
    ([5, 33, 17, 3], nn.SiLU, "mse", "rmsprop", {"momentum": 0.5, "centered": True}, 16, 101, 0.0),
    ([7, 40, 2], nn.Sigmoid, "bce_with_logits", "sgd", {"momentum": 0.9}, 24, 100, 0.25),
    ([6, 30, 30, 4], nn.ELU, "l1", "adagrad", {}, 50, 173, 0.4),
    # batch > 64: the weight gradients on the dot tiles (<= 64: register tiles across the batch)
    ([6, 40, 24, 1], nn.Tanh, "huber", "adam", {}, 80, 250, 0.0),
    # tanh with dropout after the first layer only: the tanh backward fused into the dA product
    # of the second layer's tiles is skipped there (mask first), taken for the third
    ([9, 32, 32, 2], nn.Tanh, "huber", "adam", {}, 64, 200, 0.3),
]


def _targets(loss, n, out, rng):
    if loss == "cross_entropy":
        return rng.integers(0, out, n).astype(np.int64)
    if loss == "bce_with_logits":
        return (rng.random((n, out)) < 0.4).astype(np.float32)
    return rng.standard_normal((n, out)).astype(np.float32)


def _train(path, force_path, sizes, act, loss, optim, hyper, batch, n, dropout, epochs=2):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y = _targets(loss, n, sizes[-1], rng)
    model = _net(sizes, act, dropout)
    used = force_path(path)
    h = fastmlp.fit(model, X, y, epochs=epochs, batch_size=batch, loss=loss, optimizer=optim,
                    lr=0.01, seed=5, progress=False, **hyper)
    assert used and set(used) == {path}
    return np.array(h["loss"]), [p.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("chain", CHAINS, ids=[f"{c[1].__name__}-{c[2]}-{c[3]}" for c in CHAINS])
def test_small_path_matches_gemm_path(cpu_path, force_path, chain):
    ls, ps = _train("small", force_path, *chain)
    lg, pg = _train("gemm", force_path, *chain)
    assert np.all(np.isfinite(ls))
    np.testing.assert_allclose(ls, lg, rtol=2e-5, atol=1e-6)
    for a, b in zip(ps, pg):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


def test_small_path_thread_independent(cpu_path, force_path, threads):
    # wide enough that the small path's products split their tiles over threads (batch < 64
    # keeps the automatic choice on the small path too)
    chain = ([30, 200, 200, 5], nn.Tanh, "mse", "adam", {}, 48, 150, 0.2)
    threads(1)
    l1, p1 = _train("small", force_path, *chain, epochs=1)
    threads(2)
    l2, p2 = _train("small", force_path, *chain, epochs=1)
    np.testing.assert_array_equal(l1, l2)
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


def test_automatic_choice_is_the_small_path_for_small_chains(cpu_path, force_path):
    # 'auto' gives bitwise what 'small' gives for a small chain, and what 'gemm' gives for a chain
    # with a layer beyond 200 x 200 weights at batch >= 64
    small = ([6, 64, 64, 1], nn.Tanh, "huber", "adam", {}, 64, 200, 0.0)
    big = ([300, 210, 3], nn.GELU, "cross_entropy", "adamw", {}, 64, 130, 0.0)
    for chain, path in ((small, "small"), (big, "gemm")):
        la, pa = _train("auto", force_path, *chain, epochs=1)
        lp, pp = _train(path, force_path, *chain, epochs=1)
        np.testing.assert_array_equal(la, lp)
        for a, b in zip(pa, pp):
            np.testing.assert_array_equal(a, b)


def test_frozen_layer_and_sample_weight_on_small_path(cpu_path, force_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 8)).astype(np.float32)
    y = rng.standard_normal((90, 2)).astype(np.float32)
    sw = rng.random(90).astype(np.float32) + 0.5
    out = {}
    for path in ("small", "gemm"):
        model = _net([8, 24, 2], nn.Tanh)
        model[0].weight.requires_grad_(False)
        w0 = model[0].weight.numpy().copy()
        force_path(path)
        h = fastmlp.fit(model, X, y, epochs=2, batch_size=20, loss="huber", optimizer="adam",
                        lr=0.01, seed=2, sample_weight=sw, progress=False)
        np.testing.assert_array_equal(model[0].weight.numpy(), w0)
        out[path] = (np.array(h["loss"]), [p.numpy().copy() for p in model.parameters()])
    np.testing.assert_allclose(out["small"][0], out["gemm"][0], rtol=2e-5)
    for a, b in zip(out["small"][1], out["gemm"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


def test_bad_path_is_a_clear_error():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 3)).astype(np.float32)
    y = rng.standard_normal((10, 1)).astype(np.float32)
    w = rng.standard_normal((1, 3)).astype(np.float32)
    b = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="path must be 'auto', 'small' or 'gemm', got 'fast'"):
        _C.mlp_fit([{"weight": w, "bias": b}], X, y, loss={"kind": 0}, optim={"kind": 0, "lr": 0.1},
                   path="fast")


def test_no_bias_layers_and_partial_last_batch(cpu_path, force_path):
    # Linear(bias=False) layers, a last batch of 7 rows (pad columns in the small path's tiles)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((71, 9)).astype(np.float32)
    y = rng.integers(0, 4, 71).astype(np.int64)
    out = {}
    for path in ("small", "gemm"):
        fastmlp.manual_seed(1)
        model = nn.Sequential(nn.Linear(9, 19, bias=False), nn.LeakyReLU(0.1), nn.Linear(19, 4))
        force_path(path)
        h = fastmlp.fit(model, X, y, epochs=3, batch_size=16, loss="cross_entropy",
                        optimizer="adam", lr=0.02, seed=7, progress=False)
        out[path] = (np.array(h["loss"]), [p.numpy().copy() for p in model.parameters()])
    np.testing.assert_allclose(out["small"][0], out["gemm"][0], rtol=2e-5)
    for a, b in zip(out["small"][1], out["gemm"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


def test_tanh_chain_small_path_matches_eager_loop(cpu_path, force_path):
    # The seed of the speed case (6-64-64-1 Tanh, Huber, Adam, batch 64) on the small path, whose
    # weight gradients run in register tiles across the batch and whose tanh backward is fused
    # into the input-gradient tiles: one epoch equals the eager loop (same permutation) within
    # float32 rounding of a different summation order.
    from fastmlp import optim
    rng = np.random.default_rng(11)
    n, B = 192, 64
    X = rng.standard_normal((n, 6)).astype(np.float32)
    y = rng.standard_normal((n, 1)).astype(np.float32)
    perm = rng.permutation(n)
    fused = _net([6, 64, 64, 1], nn.Tanh, seed=4)
    eager = _net([6, 64, 64, 1], nn.Tanh, seed=4)
    force_path("small")
    fastmlp.fit(fused, X, y, epochs=1, batch_size=B, loss="huber", optimizer="adam", lr=0.01,
                permutation=perm, progress=False)
    eager_epoch(eager, optim.Adam(eager.parameters(), lr=0.01), nn.HuberLoss(), X, y, perm, B)
    for a, b in zip(fused.parameters(), eager.parameters()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
