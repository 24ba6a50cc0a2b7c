"""The register-tiled small path of the fused trainer on every CPU path: tile remainders in every
direction (rows not a multiple of the tile, batches not a multiple of 16, one-output heads), the
thread split (bitwise equal on 1 and 2 threads), agreement with the gemm path, and the cost model's
choice."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _C


def reference(ws, bs, relu, X, Y, order, B, lr, momentum=0.0):
    """Plain float64 minibatch SGD (torch semantics), MSE loss; returns params and epoch loss."""
    ws = [w.astype(np.float64) for w in ws]
    bs = [b.astype(np.float64) for b in bs]
    bw = [None] * len(ws)
    bb = [None] * len(bs)
    tot, n = 0.0, len(order)
    for s in range(0, n, B):
        idx = order[s:s + B]
        acts = [X[idx].astype(np.float64)]
        for w, b, r in zip(ws, bs, relu):
            z = acts[-1] @ w.T + b
            acts.append(np.maximum(z, 0) if r else z)
        d = acts[-1] - Y[idx]
        tot += float(np.mean(d * d)) * len(idx)
        g = 2.0 * d / d.size
        for l in range(len(ws) - 1, -1, -1):
            if relu[l]:
                g = g * (acts[l + 1] > 0)
            gw, gb = g.T @ acts[l], g.sum(0)
            g = g @ ws[l]
            if momentum:
                bw[l] = gw if bw[l] is None else momentum * bw[l] + gw
                bb[l] = gb if bb[l] is None else momentum * bb[l] + gb
                gw, gb = bw[l], bb[l]
            ws[l] = ws[l] - lr * gw
            bs[l] = bs[l] - lr * gb
    return ws, bs, tot / n


def init(sizes, seed):
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [(0.1 * rng.standard_normal(b)).astype(np.float32) for b in sizes[1:]]
    return ws, bs


def data(n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d_in)).astype(np.float32),
            rng.standard_normal((n, d_out)).astype(np.float32))


SHAPES = [
    ((20, 64, 64, 1), 64, 200),      # the common tabular net; a partial batch of 8
    ((7, 13, 29, 10), 37, 111),      # odd rows in every layer, batch not a multiple of 16
    ((3, 1), 5, 23),                 # one Linear, one output
    ((10, 20, 1), 1, 9),             # batch 1
    ((5, 6, 12, 18, 2), 48, 96),     # row counts at the AVX2 / AVX-512 tile sizes (6, 12)
    ((40, 131, 3), 130, 260),        # wider than several tiles, batch 130 (a 64-group and a rest)
    # batches <= 32: the weight gradient accumulated in registers across the batch, the update in
    # the tile's epilogue; odd rows and columns (partial vectors) in every layer
    ((7, 13, 29, 10), 20, 70),
    ((40, 131, 3), 32, 100),
    ((5, 6, 12, 18, 2), 16, 40),
    ((13, 70, 9), 64, 150),          # the register tiles' largest batch on AVX2 / generic
    # AVX-512 takes the register tiles up to 256 samples for layers of 32 inputs or more
    # (reg_gw_fits): 256 in one step (a layer over 256 x 256 weights: no halves), a partial last
    # batch of 48; halves of 128 and 122, with the 9-input layer on the dot tiles
    ((20, 300, 240, 2), 256, 560),
    ((9, 48, 33, 2), 250, 500),
]


@pytest.mark.parametrize("sizes,B,n", SHAPES, ids=lambda v: "x".join(map(str, v))
                         if isinstance(v, tuple) else str(v))
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_small_path_matches_float64_reference(cpu_path, sizes, B, n, momentum):
    ws, bs = init(sizes, 1)
    relu = [True] * (len(ws) - 1) + [False]
    X, Y = data(n, sizes[0], sizes[-1], 2)
    order = np.random.default_rng(3).permutation(n)
    rws, rbs, rloss = reference(ws, bs, relu, X, Y, order, B, 0.05, momentum)
    w2, b2 = [w.copy() for w in ws], [b.copy() for b in bs]
    kw = {}
    if momentum:
        kw = dict(momentum=momentum, weight_bufs=[np.zeros_like(w) for w in w2],
                  bias_bufs=[np.zeros_like(b) for b in b2])
    r = _C.mlp_train(w2, b2, relu, X, Y, batch_size=B, perm=order, lr=0.05, path="small", **kw)
    assert r["small_path"]
    for a, ref in zip(w2 + b2, rws + rbs):
        np.testing.assert_allclose(a, ref, rtol=0, atol=2e-5 * (np.abs(ref).max() + 1e-12))
    np.testing.assert_allclose(r["losses"][0], rloss, rtol=1e-5)


def test_relu_output_layer_masks_on_every_path(cpu_path):
    ws, bs = init((9, 14, 4), 5)
    relu = [True, True]
    X, Y = data(70, 9, 4, 6)
    order = np.arange(70)
    rws, rbs, _ = reference(ws, bs, relu, X, Y, order, 16, 0.05)
    r = _C.mlp_train(ws, bs, relu, X, Y, batch_size=16, perm=order, lr=0.05, path="small")
    assert r["small_path"]
    for a, ref in zip(ws + bs, rws + rbs):
        np.testing.assert_allclose(a, ref, rtol=0, atol=2e-5 * (np.abs(ref).max() + 1e-12))


@pytest.mark.parametrize("B", [256, 32])
def test_small_path_threads_bitwise_equal(cpu_path, B):
    """Products big enough to be split over threads give the same bits on 1 and 2 threads (both
    weight-gradient kernels: lane-parallel dot tiles at 256, register tiles at 32)."""
    sizes = (20, 256, 256, 3)
    ws, bs = init(sizes, 7)
    X, Y = data(512, 20, 3, 8)
    out = []
    old = fastmlp.get_num_threads()
    try:
        for t in (1, 2):
            fastmlp.set_num_threads(t)
            w, b = [x.copy() for x in ws], [x.copy() for x in bs]
            r = _C.mlp_train(w, b, [True, True, False], X, Y, epochs=2, seed=3,
                             lr=0.01, momentum=0.9, weight_bufs=[np.zeros_like(x) for x in w],
                             bias_bufs=[np.zeros_like(x) for x in b], path="small", batch_size=B)
            assert r["small_path"]
            out.append((w + b, r["losses"]))
    finally:
        fastmlp.set_num_threads(old)
    for a, b in zip(out[0][0], out[1][0]):
        np.testing.assert_array_equal(a, b)
    assert out[0][1] == out[1][1]


def test_small_and_gemm_paths_agree(cpu_path):
    sizes = (20, 96, 96, 2)
    ws, bs = init(sizes, 9)
    X, Y = data(256, 20, 2, 10)
    res = []
    for path in ("small", "gemm"):
        w, b = [x.copy() for x in ws], [x.copy() for x in bs]
        r = _C.mlp_train(w, b, [True, True, False], X, Y, epochs=2, batch_size=64, seed=1,
                         lr=0.02, path=path)
        res.append((w + b, r["losses"]))
    for a, b in zip(res[0][0], res[1][0]):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * (np.abs(b).max() + 1e-12))
    np.testing.assert_allclose(res[0][1], res[1][1], rtol=1e-5)


@pytest.mark.parametrize("sizes,B,small", [
    ((10, 20, 1), 64, True),
    ((20, 64, 64, 1), 1024, True),
    ((20, 192, 192, 1), 256, True),
    ((20, 256, 256, 1), 16, True),     # a small batch: no packing beats the gemm path
    ((20, 512, 512, 1), 1024, True),   # weights in L2: the in-place tiles at least match gemm
    ((20, 600, 600, 1), 64, False),    # past the model's 512 x 512 weights at batch >= 64
    ((20, 600, 600, 1), 32, True),
    ((784, 1024, 10), 256, False),
])
def test_cost_model_choice_is_shape_only(sizes, B, small):
    ws, bs = init(sizes, 11)
    relu = [True] * (len(ws) - 1) + [False]
    X, Y = data(B, sizes[0], sizes[-1], 12)
    old = fastmlp.get_num_threads()
    try:
        for t in (1, 2):
            fastmlp.set_num_threads(t)
            r = _C.mlp_train([w.copy() for w in ws], [b.copy() for b in bs], relu, X, Y,
                             batch_size=B, lr=0.0)
            assert r["small_path"] == small
    finally:
        fastmlp.set_num_threads(old)


@pytest.mark.parametrize("sizes", [(10, 20, 1), (3, 100, 1), (7, 13, 29, 10), (20, 300, 4), (5, 1)])
def test_forward_rows_do_not_depend_on_their_neighbours(cpu_path, sizes):
    """mlp_forward: a row's output is bitwise the same alone, in any subset, or in a batch of
    many chunks; and it matches the float64 chain."""
    ws, bs = init(sizes, 13)
    relu = [True] * (len(ws) - 1) + [False]
    X, _ = data(600, sizes[0], sizes[-1], 14)
    full = _C.mlp_forward(ws, bs, relu, X)
    one = np.concatenate([_C.mlp_forward(ws, bs, relu, X[i:i + 1]) for i in range(0, 600, 37)])
    np.testing.assert_array_equal(one, full[::37])
    sub = _C.mlp_forward(ws, bs, relu, X[3:300:2])
    np.testing.assert_array_equal(sub, full[3:300:2])
    a = X.astype(np.float64)
    for w, b, r in zip(ws, bs, relu):
        a = a @ w.T.astype(np.float64) + b
        if r:
            a = np.maximum(a, 0)
    np.testing.assert_allclose(full, a, rtol=0, atol=1e-5 * np.abs(a).max())
