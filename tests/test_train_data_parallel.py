"""The ReLU trainer's data-parallel partitions (csrc/cpu/mlp_train.cpp, relu_parts / part_grad /
part_update, small_part_rows in mlp_train_small.h): on the small path, in torch mode, in one
process, a batch of 32 or more rows of a step of 250 kFLOP or more whose layers hold at most 8192
weights each is computed as two partitions (rows [0, cut) and [cut, B), cut = ceil(B / 2) rounded
up to 16), each with its own forward, loss over the whole batch's rows and backward into its own
gradient buffer, summed partition 0 + partition 1 before the update. Chosen by shape only: 1, 2
and 3 threads give the same bits; the result equals the gemm path's whole-batch step and
PyTorch's eager loop within float32 rounding; frozen parameters stay as they are; a non-finite
loss stops every thread count at the same batch before its update; scikit-learn mode and
fit(distributed=True) keep their whole-batch steps."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _C
from test_small_path import data as _data, init as _init

# 20-64-64-1: 6 * 5440 * B flops a step, >= 250 kFLOP from B = 8; the partitions from B = 32.
# (batch, n): below, at and above the batch threshold, odd batches, and partial last batches with
# an empty partition 1 (<= 16 rows: 3 * 33 + 5, 4 * 64 + 16) or a short one (3 * 32 + 20,
# 2 * 100 + 31)
EDGES = [(31, 31 * 3 + 7), (32, 32 * 3 + 20), (33, 33 * 3 + 5), (47, 47 * 2 + 17),
         (64, 64 * 4 + 16), (64, 64 * 4 + 33), (100, 100 * 2 + 31), (129, 129 * 2 + 40),
         # the 1-thread one-pass step (small_parts_step_impl): cuts at 16 (B 32, last 17), 48
         # (B 96, last 65: partition 1 of 17 rows), both partitions past 64 rows (the dot-tile
         # weight gradient: B 200, cut 112) and 256 (a skewed row stride)
         (32, 32 * 3 + 17), (96, 96 * 2 + 65), (200, 200 * 2 + 150), (256, 256 + 1)]
SIZES = (20, 64, 64, 1)


def _train(t, sizes, B, n, kw=None, frozen=None, epochs=2, lr=0.01, path="small"):
    fastmlp.set_num_threads(t)
    ws, bs = _init(sizes, 7)
    X, Y = _data(n, sizes[0], sizes[-1], 8)
    relu = [True] * (len(sizes) - 2) + [False]
    r = _C.mlp_train(ws, bs, relu, X, Y, epochs=epochs, seed=3, lr=lr, batch_size=B, path=path,
                     weight_bufs=[np.zeros_like(x) for x in ws],
                     bias_bufs=[np.zeros_like(x) for x in bs], frozen=frozen, **(kw or {}))
    return ws + bs, r


def _same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _bitwise_1_2_3(*args, **kw):
    p1, r1 = _train(1, *args, **kw)
    for t in (2, 3):
        pt, rt = _train(t, *args, **kw)
        _same(p1, pt)
        np.testing.assert_array_equal(r1["losses"], rt["losses"])  # (NaN == NaN here)
        assert r1["steps"] == rt["steps"]
    return p1, r1


@pytest.mark.parametrize("B,n", EDGES, ids=[f"b{b}-n{n}" for b, n in EDGES])
def test_partition_edges_bitwise_across_threads(cpu_path, threads, B, n):
    _bitwise_1_2_3(SIZES, B, n, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3})


@pytest.mark.parametrize("sizes,B,n", [((20, 16, 16, 1), 256, 600), ((20, 32, 32, 3), 64, 300),
                                       ((9, 90, 91, 2), 48, 200),   # 8190 weights: partitions
                                       ((20, 96, 96, 1), 64, 200)])  # 9216: the tile team
def test_other_shapes_bitwise_across_threads(cpu_path, threads, sizes, B, n):
    _bitwise_1_2_3(sizes, B, n, {"momentum": 0.5, "dampening": 0.1})


@pytest.mark.parametrize("B,n", [(32, 100), (64, 200), (33, 120), (100, 231)])
def test_partitions_match_gemm_path(cpu_path, threads, B, n):
    # the gemm path runs one whole-batch backward: equal within float32 rounding
    ps, rs = _train(2, SIZES, B, n, {"momentum": 0.9})
    pg, rg = _train(2, SIZES, B, n, {"momentum": 0.9}, path="gemm")
    assert rs["small_path"] and not rg["small_path"]
    np.testing.assert_allclose(rs["losses"], rg["losses"], rtol=1e-5, atol=1e-6)
    for a, b in zip(ps, pg):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("t", [1, 2, 3])
@pytest.mark.parametrize("B,n", [(64, 192), (40, 150), (33, 100)])
def test_fit_matches_torch_eager(cpu_path, threads, t, B, n):
    torch = pytest.importorskip("torch")
    fastmlp.set_num_threads(t)
    rng = np.random.default_rng(11)
    X = rng.standard_normal((n, 20)).astype(np.float32)
    y = rng.standard_normal((n, 1)).astype(np.float32)
    perm = rng.permutation(n)
    fastmlp.manual_seed(4)
    fused = fastmlp.nn.Sequential(fastmlp.nn.Linear(20, 64), fastmlp.nn.ReLU(),
                                  fastmlp.nn.Linear(64, 64), fastmlp.nn.ReLU(),
                                  fastmlp.nn.Linear(64, 1))
    ref = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, 1))
    with torch.no_grad():
        for p, q in zip(ref.parameters(), fused.parameters()):
            p.copy_(torch.from_numpy(q.numpy().copy()))
    h = fastmlp.fit(fused, X, y, epochs=1, batch_size=B, lr=0.01, momentum=0.9, permutation=perm,
                    progress=False)
    opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9)
    lossf = torch.nn.MSELoss()
    tot = 0.0
    for s in range(0, n, B):
        idx = perm[s:s + B]
        opt.zero_grad()
        loss = lossf(ref(torch.from_numpy(X[idx])), torch.from_numpy(y[idx]))
        loss.backward()
        opt.step()
        tot += float(loss.item()) * len(idx)
    np.testing.assert_allclose(h["loss"][0], tot / n, rtol=1e-5)
    for a, b in zip(fused.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_frozen_parameters(cpu_path, threads):
    frozen = [(False, True), (True, False), (False, False)]
    ws, bs = _init(SIZES, 7)
    p1, _ = _bitwise_1_2_3(SIZES, 64, 200, {"momentum": 0.9}, frozen=frozen)
    np.testing.assert_array_equal(p1[3], bs[0])   # layer 0's bias
    np.testing.assert_array_equal(p1[1], ws[1])   # layer 1's weight
    assert not np.array_equal(p1[0], ws[0]) and not np.array_equal(p1[4], bs[1])


def test_nonfinite_stop_every_thread_count(threads):
    out = [_train(t, SIZES, 64, 400, epochs=3, lr=1e3) for t in (1, 2, 3)]
    p1, r1 = out[0]
    assert r1["nonfinite"] is not None
    for p, r in out[1:]:
        _same(p1, p)
        assert r["nonfinite"][:2] == r1["nonfinite"][:2] and r["steps"] == r1["steps"]
        np.testing.assert_array_equal(r["losses"], r1["losses"])
    # the stopping batch's update was not applied: the parameters are finite
    assert all(np.isfinite(x).all() for x in p1)


def test_allow_nonfinite_bitwise(threads):
    _bitwise_1_2_3(SIZES, 64, 256, epochs=2, lr=1e3, kw={"allow_nonfinite": True})


# (Ctrl-C inside a partitioned epoch: tests/test_reliability2.py's 4-64-64-1 b64 case, whose step
# takes the partitions on the default 2 threads.)


def test_sklearn_mode_bitwise(cpu_path, threads):
    # scikit-learn mode (L2 in the loss) keeps the whole-batch step: still thread-independent
    _bitwise_1_2_3(SIZES, 64, 200, {"mode": "sklearn", "momentum": 0.9, "alpha": 1e-3})
