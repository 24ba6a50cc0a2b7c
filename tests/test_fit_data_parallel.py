"""The small path's data-parallel partitions (csrc/cpu/mlp_fit.cpp, data_parallel_parts /
part_rows / rows_step): a batch of 32 or more rows of a step of 250 kFLOP or more is computed as
two partitions (rows [0, cut) and [cut, B), cut = ceil(B / 2) rounded up to 16), each with its own
forward, loss over the whole batch's denominator and backward into its own gradients, summed
partition 0 + partition 1 before the update. The partitions are chosen by shape only: 1, 2 and 3
threads give the same bits; the result equals the eager loop within float32 rounding; dropout
draws the masks of the gemm path (the counter-based stream by global row); a non-finite loss stops
every thread at the same batch."""
import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim
from fastmlp import trainer
from fit_helpers import chain_net as _net, eager_epoch


def _data(n, d_in, d_out, loss, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in)).astype(np.float32)
    if loss == "cross_entropy" or isinstance(loss, nn.CrossEntropyLoss):
        y = rng.integers(0, d_out, n).astype(np.int64)
    elif loss == "bce_with_logits":
        y = (rng.random((n, d_out)) < 0.5).astype(np.float32)
    else:
        y = rng.standard_normal((n, d_out)).astype(np.float32)
    return X, y


def _fit(t, sizes, B, n, loss="huber", optimizer="adam", act=nn.Tanh, dropout=0.0, epochs=2,
         **kw):
    fastmlp.set_num_threads(t)
    X, y = _data(n, sizes[0], sizes[-1], loss)
    model = _net(sizes, act, dropout)
    h = fastmlp.fit(model, X, y, epochs=epochs, batch_size=B, loss=loss, optimizer=optimizer,
                    lr=0.01, seed=5, progress=False, **kw)
    return np.array(h["loss"]), [p.numpy().copy() for p in model.parameters()]


def _same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _bitwise_1_2_3(*args, **kw):
    l1, p1 = _fit(1, *args, **kw)
    for t in (2, 3):
        lt, pt = _fit(t, *args, **kw)
        np.testing.assert_array_equal(l1, lt)
        _same(p1, pt)
    return l1, p1


# 6-64-64-1 steps: 6 * 4544 * B flops, >= 250 kFLOP from B = 10; the partitions from B = 32.
# (batch, n): batches below, at and above the threshold, odd ones, and partial last batches with
# an empty partition 1 (<= 16 rows: 3 * 33 + 5, 4 * 64 + 16) or a short one (3 * 32 + 20, 2 * 100
# + 31)
EDGES = [(31, 31 * 3 + 7), (32, 32 * 3 + 20), (33, 33 * 3 + 5), (47, 47 * 2 + 17), (64, 64 * 4 + 16),
         (64, 64 * 4 + 33), (100, 100 * 2 + 31), (129, 129 * 2 + 40)]


@pytest.mark.parametrize("B,n", EDGES, ids=[f"b{b}-n{n}" for b, n in EDGES])
def test_partition_edges_bitwise_across_threads(cpu_path, threads, B, n):
    _bitwise_1_2_3([6, 64, 64, 1], B, n)


@pytest.mark.parametrize("B,n", [(32, 100), (64, 200), (33, 120)])
def test_partitions_match_gemm_path(cpu_path, threads, force_path, B, n):
    # the same chain on the gemm path (one whole-batch backward): equal within float32 rounding
    out = {}
    for p in ("small", "gemm"):
        force_path(p)
        out[p] = _fit(2, [6, 64, 64, 1], B, n, dropout=0.25)
    np.testing.assert_allclose(out["small"][0], out["gemm"][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(out["small"][1], out["gemm"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("t", [1, 2])
@pytest.mark.parametrize("B,n", [(64, 192), (40, 150)])
def test_partitions_match_eager_loop(cpu_path, threads, t, B, n):
    fastmlp.set_num_threads(t)
    rng = np.random.default_rng(11)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    y = rng.standard_normal((n, 1)).astype(np.float32)
    perm = rng.permutation(n)
    fused = _net([6, 64, 64, 1], nn.Tanh, seed=4)
    eager = _net([6, 64, 64, 1], nn.Tanh, seed=4)
    h = fastmlp.fit(fused, X, y, epochs=1, batch_size=B, loss="huber", optimizer="adam", lr=0.01,
                    permutation=perm, progress=False)
    mean_loss = eager_epoch(eager, optim.Adam(eager.parameters(), lr=0.01), nn.HuberLoss(), X, y,
                            perm, B)
    np.testing.assert_allclose(h["loss"][0], mean_loss, rtol=1e-5)
    for a, b in zip(fused.parameters(), eager.parameters()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


LOSSES = [("mse", 2), ("huber", 2), ("l1", 1), ("smooth_l1", 2), ("bce_with_logits", 3),
          ("cross_entropy", 5)]
OPTIMS = [("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}), ("adam", {}),
          ("adamw", {"weight_decay": 0.05, "amsgrad": True}),
          ("rmsprop", {"momentum": 0.5, "centered": True}), ("adagrad", {"lr_decay": 1e-3})]


@pytest.mark.parametrize("loss,d_out", LOSSES, ids=[x[0] for x in LOSSES])
@pytest.mark.parametrize("optimizer,hyper", OPTIMS, ids=[x[0] for x in OPTIMS])
def test_every_loss_and_optimizer(threads, force_path, loss, d_out, optimizer, hyper):
    sizes = [8, 48, 48, d_out]
    # bitwise over thread counts, and within rounding of the gemm path
    l1, p1 = _bitwise_1_2_3(sizes, 64, 150, loss=loss, optimizer=optimizer, act=nn.GELU,
                            dropout=0.1, **hyper)
    force_path("gemm")
    lg, pg = _fit(1, sizes, 64, 150, loss=loss, optimizer=optimizer, act=nn.GELU, dropout=0.1,
                  **hyper)
    np.testing.assert_allclose(l1, lg, rtol=1e-4, atol=1e-6)
    # (two epochs of rate-normalising updates - centered RMSprop's g / sqrt(v - m^2) above all -
    # magnify the rounding of a different summation order where a gradient is near zero)
    for a, b in zip(p1, pg):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4)


def test_sample_weight_class_weight_and_l2(threads):
    # the whole batch's denominator (weighted) in each partition's share; sklearn's L2 term once
    fastmlp.set_num_threads(1)
    rng = np.random.default_rng(0)
    sw = rng.random(170).astype(np.float32)
    cw = rng.random(4).astype(np.float32) + 0.5
    _bitwise_1_2_3([10, 64, 32, 4], 64, 170, loss=nn.CrossEntropyLoss(weight=fastmlp.tensor(cw)),
                   optimizer="adam", sample_weight=sw)
    _bitwise_1_2_3([10, 64, 32, 2], 50, 170, loss="mse", optimizer="sgd", sample_weight=sw)


def test_nonfinite_stop_every_thread_count(threads):
    out = []
    for t in (1, 2, 3):
        fastmlp.set_num_threads(t)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((640, 6)).astype(np.float32)
        y = rng.standard_normal((640, 1)).astype(np.float32) * 1e3
        model = _net([6, 64, 64, 1], nn.Tanh)
        with pytest.raises(trainer.NonFiniteLossError) as ei:
            fastmlp.fit(model, X, y, epochs=3, batch_size=64, loss="mse", optimizer="sgd",
                        lr=1e6, seed=1, progress=False)
        out.append(([p.numpy().copy() for p in model.parameters()],
                    (ei.value.epoch, ei.value.batch)))
    for p, where in out[1:]:
        _same(out[0][0], p)
        assert where == out[0][1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_l2_term_once(threads):
    # scikit-learn's L2 term (alpha) in the loss once, in partition 0's share; tanh / adam
    from fastmlp.sklearn import MLPRegressor
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    y = rng.standard_normal(300).astype(np.float32)
    out = []
    for t in (1, 2, 3):
        fastmlp.set_num_threads(t)
        m = MLPRegressor(hidden_layer_sizes=(64, 64), activation="tanh", alpha=1e-2,
                         batch_size=64, max_iter=3, random_state=0, tol=0.0).fit(X, y)
        out.append((m.loss_curve_, [w.copy() for w in m.coefs_]))
    for lc, ws in out[1:]:
        assert lc == out[0][0]
        _same(ws, out[0][1])


def test_frozen_parameters_bitwise(threads):
    # frozen weights / biases have no gradient slot: the partitions' sums and the one-pass
    # backward skip them alike
    def run(t):
        fastmlp.set_num_threads(t)
        X, y = _data(200, 6, 1, "huber")
        model = _net([6, 64, 64, 1], nn.Tanh)
        model[2].weight.requires_grad_(False)
        model[4].bias.requires_grad_(False)
        h = fastmlp.fit(model, X, y, epochs=2, batch_size=64, loss="huber", optimizer="adam",
                        lr=0.01, seed=5, progress=False)
        return h["loss"], [p.numpy().copy() for p in model.parameters()]
    l1, p1 = run(1)
    for t in (2, 3):
        lt, pt = run(t)
        assert lt == l1
        _same(p1, pt)


@pytest.mark.parametrize("optimizer,hyper", OPTIMS, ids=[x[0] for x in OPTIMS])
def test_team_update_shares_cut_inside_tensors(threads, optimizer, hyper):
    # TeamUpdate cuts all the tensors' elements as one run at 16-element lines and walks each
    # share in 256-element chunks: odd widths put the cuts inside a weight (1488 elements: 2
    # threads cut at 752 inside layer 1's 1073-element weight, 3 at 496 and 992), the partition
    # reduce and the optimizer's rule meet elements at every chunk position; the bits stay those
    # of one thread (the serial update_params) and close to the eager loop.
    sizes = [7, 37, 29, 3]
    l1, p1 = _bitwise_1_2_3(sizes, 64, 64 * 3 + 40, loss="mse", optimizer=optimizer, **hyper)
    assert np.isfinite(l1).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_team_update_sklearn_l2_shares(threads):
    # scikit-learn's L2 fold (g0 + g1, then + alpha / B * w on the weights only) on shares cut
    # inside the weights: 1, 2 and 3 threads bitwise
    from fastmlp.sklearn import MLPRegressor
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 7)).astype(np.float32)
    y = rng.standard_normal(300).astype(np.float32)
    out = []
    for t in (1, 2, 3):
        fastmlp.set_num_threads(t)
        m = MLPRegressor(hidden_layer_sizes=(37, 29), activation="tanh", alpha=1e-2,
                         batch_size=64, max_iter=3, random_state=0, shuffle=True, tol=0.0)
        m.fit(X, y)
        out.append((np.array(m.loss_curve_), [c.copy() for c in m.coefs_ + m.intercepts_]))
    for lt, pt in out[1:]:
        np.testing.assert_array_equal(out[0][0], lt)
        _same(out[0][1], pt)
