"""python -m fastmlp demo / train / predict: runs, round trips, and one-line errors (exit 2)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmlp.__main__ import main
from fastmlp.cli import load_model

import fastmlp

# The folder the fastmlp under test was imported from (site-packages after `pip install .`, the
# source tree's python/ for an in-place build), so the subprocess runs that same package.
PYDIR = str(Path(fastmlp.__file__).resolve().parents[1])


def run_cli(*args, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def regression_csv(path, n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 1.0]
    y = 2.0 * X[:, 0] - 0.3 * X[:, 1] + 20.0 * X[:, 2] + np.maximum(X[:, 0], 0) + 0.05 * rng.standard_normal(n)
    write_csv(path, ["a", "b", "c", "target"], np.column_stack([X, y]).tolist())
    return X, y


def test_demo_runs():
    r = run_cli("demo", "--samples", "8192", "--test-samples", "2048", "--epochs", "2",
                "--torch-steps", "20", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "test MSE" in r.stdout and "M samples/s" in r.stdout
    assert ("PyTorch eager" in r.stdout) or ("PyTorch is not installed" in r.stdout)


def test_info_still_works(capsys):
    assert main(["info"]) == 0
    assert "fastmlp" in capsys.readouterr().out


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_matplotlib(), reason="--plot needs matplotlib, which is not installed "
                    "(it is not in the test extra)")
def test_train_plot(tmp_path, capsys):
    data = tmp_path / "train.csv"
    regression_csv(data, n=200)
    plot = tmp_path / "loss.png"
    rc = main(["train", str(data), "--target", "target", "--hidden", "8", "--epochs", "3",
               "--val-split", "0.2", "--plot", str(plot), "--no-progress"])
    assert rc == 0 and plot.stat().st_size > 0
    assert "loss plot saved" in capsys.readouterr().out


def test_train_predict_roundtrip(tmp_path, capsys):
    data = tmp_path / "train.csv"
    X, y = regression_csv(data)
    model = tmp_path / "model.npz"
    rc = main(["train", str(data), "--target", "target", "--hidden", "32", "--epochs", "40",
               "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9", "--val-split", "0.2",
               "--standardize", "--seed", "1", "--out", str(model), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "validation MSE" in out and model.exists()
    ws, bs, relu, meta = load_model(model)
    assert [w.shape for w in ws] == [(32, 3), (1, 32)] and relu == [True, False]
    assert meta["features"] == ["a", "b", "c"] and meta["targets"] == ["target"]
    assert meta["metrics"]["val_r2"] > 0.95
    # predict on a file holding the features only, in another column order
    pred_in = tmp_path / "new.csv"
    write_csv(pred_in, ["c", "a", "b"], np.column_stack([X[:, 2], X[:, 0], X[:, 1]]).tolist())
    preds = tmp_path / "preds.csv"
    assert main(["predict", str(model), str(pred_in), "--out", str(preds)]) == 0
    with open(preds) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["target"] and len(rows) == len(X) + 1
    p = np.array([float(r[0]) for r in rows[1:]])
    # independent float64 forward from the saved arrays and standardization stats
    st = meta["standardize"]
    h = (X - st["x_mean"]) / st["x_std"]
    h = np.maximum(h @ ws[0].T.astype(np.float64) + bs[0], 0) @ ws[1].T.astype(np.float64) + bs[1]
    ref = h[:, 0] * st["y_std"][0] + st["y_mean"][0]
    np.testing.assert_allclose(p, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert 1 - np.mean((p - y) ** 2) / np.var(y) > 0.95


def test_train_npz_inputs(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((200, 4)).astype(np.float32)
    y = X @ np.array([1.0, -1.0, 0.5, 2.0], np.float32)
    np.savez(tmp_path / "xy.npz", X=X, y=y)
    assert main(["train", str(tmp_path / "xy.npz"), "--hidden", "", "--epochs", "5",
                 "--out", str(tmp_path / "m.npz"), "--no-progress"]) == 0
    ws, _, relu, meta = load_model(tmp_path / "m.npz")
    assert [w.shape for w in ws] == [(1, 4)] and relu == [False]
    np.savez(tmp_path / "cols.npz", u=X[:, 0], v=X[:, 1], out=y)
    assert main(["train", str(tmp_path / "cols.npz"), "--target", "out", "--hidden", "8",
                 "--epochs", "2", "--no-progress"]) == 0
    capsys.readouterr()


def one_line_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    good = tmp_path / "good.csv"
    regression_csv(good, n=50)
    assert "no such file" in one_line_error(capsys, ["train", str(tmp_path / "nope.csv"), "--target", "t"])
    assert "no column 'zzz'" in one_line_error(capsys, ["train", str(good), "--target", "zzz"])
    assert "--target" in one_line_error(capsys, ["train", str(good)])
    bad = tmp_path / "bad.csv"
    write_csv(bad, ["a", "t"], [["1.0", "2.0"], ["oops", "3.0"]])
    assert "row 3, column 'a'" in one_line_error(capsys, ["train", str(bad), "--target", "t"])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,t\n1,2\n3\n")
    assert "fields" in one_line_error(capsys, ["train", str(ragged), "--target", "t"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty" in one_line_error(capsys, ["train", str(empty), "--target", "t"])
    binary = tmp_path / "junk.npz"
    binary.write_bytes(b"\x00\x01not a zip")
    assert "npz" in one_line_error(capsys, ["train", str(binary), "--target", "t"])
    np.savez(tmp_path / "text.npz", a=np.array(["x", "y"]), t=np.array([1.0, 2.0]))
    assert "not numeric" in one_line_error(capsys, ["train", str(tmp_path / "text.npz"), "--target", "t"])
    assert "--hidden" in one_line_error(capsys, ["train", str(good), "--target", "target", "--hidden", "a,b"])
    assert "not a" in one_line_error(capsys, ["predict", str(good), str(good)])
    assert "no such model" in one_line_error(capsys, ["predict", str(tmp_path / "m.npz"), str(good)])
    model = tmp_path / "m.npz"
    assert main(["train", str(good), "--target", "target", "--hidden", "4", "--epochs", "1",
                 "--out", str(model), "--no-progress"]) == 0
    capsys.readouterr()
    other = tmp_path / "other.csv"
    write_csv(other, ["a", "b"], [[1, 2]])
    assert "no column 'c'" in one_line_error(capsys, ["predict", str(model), str(other)])
    import fastmlp

    if not fastmlp.cuda.is_available():
        assert "CUDA is not available" in one_line_error(
            capsys, ["train", str(good), "--target", "target", "--device", "cuda"])


def test_exit_code_2_from_the_shell(tmp_path):
    r = run_cli("train", str(tmp_path / "missing.csv"), "--target", "y")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    good = tmp_path / "good.csv"
    regression_csv(good, n=30)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    line = one_line_error(capsys, ["train", str(good), "--target", "target", "--plot", str(tmp_path / "p.png")])
    assert "matplotlib" in line


def test_bench_scripts_are_found_from_any_folder(tmp_path, monkeypatch):
    # `python -m fastmlp bench` must work from an installed package (the scripts are installed
    # into fastmlp/bench) as well as from a checkout, whatever the working directory.
    from fastmlp.cli import bench_dir

    monkeypatch.chdir(tmp_path)
    d = bench_dir()
    assert (d / "train.py").is_file() and (d / "gemm.py").is_file()


# ---- train --task classify, --loss, --optimizer, --activation, --dropout, --early-stopping ----

def blobs(n=600, seed=0, labels=("red", "green", "blue")):
    """An easy 3-class problem: three well-separated Gaussian blobs in 2-D plus a noise feature."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, len(labels), n)
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0], [0.0, -5.0]])[:len(labels)]
    X = np.column_stack([centres[k] + 0.6 * rng.standard_normal((n, 2)), rng.standard_normal(n)])
    return X, np.asarray(labels, dtype=object)[k], k


def read_preds(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def np_act(kind, p0, p1, z):
    """float64 references of the activations (PyTorch's definitions)."""
    from math import erf

    if kind == "relu":
        return np.maximum(z, 0)
    if kind == "tanh":
        return np.tanh(z)
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if kind == "gelu":
        return 0.5 * z * (1 + np.vectorize(erf)(z / np.sqrt(2)))
    if kind == "silu":
        return z / (1 + np.exp(-z))
    if kind == "leaky_relu":
        return np.where(z > 0, z, p0 * z)
    if kind == "elu":
        return np.where(z > 0, z, p0 * (np.exp(np.minimum(z, 0)) - 1))
    if kind == "softplus":
        return np.where(p0 * z > p1, z, np.log1p(np.exp(np.minimum(p0 * z, p1))) / p0)
    assert kind == "identity"
    return z


def np_forward(ws, bs, acts, X):
    h = np.asarray(X, np.float64)
    for w, b, a in zip(ws, bs, acts):
        h = h @ w.T.astype(np.float64) + b
        if a is not None:
            h = np_act(a[0], a[1], a[2], h)
    return h


def test_classify_text_labels_roundtrip(tmp_path, capsys):
    X, lab, _ = blobs()
    data = tmp_path / "train.csv"
    write_csv(data, ["u", "v", "noise", "colour"], [list(x) + [c] for x, c in zip(X, lab)])
    model = tmp_path / "clf.npz"
    rc = main(["train", str(data), "--target", "colour", "--task", "classify", "--hidden", "16",
               "--epochs", "30", "--optimizer", "adam", "--lr", "0.01", "--val-split", "0.25",
               "--standardize", "--seed", "3", "--out", str(model), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "3-class classifier" in out and "validation accuracy" in out and "macro F1" in out
    ws, bs, relu, meta = load_model(model)
    assert meta["task"] == "classify" and meta["classes"] == ["blue", "green", "red"]
    assert meta["loss"] == "cross_entropy" and meta["optimizer"] == "adam"
    assert [w.shape for w in ws] == [(16, 3), (3, 16)] and relu == [True, False]
    assert meta["metrics"]["val_accuracy"] > 0.97 and meta["metrics"]["val_f1_macro"] > 0.97
    # predict from a file of the features only, columns in another order
    new = tmp_path / "new.csv"
    write_csv(new, ["noise", "v", "u"], np.column_stack([X[:, 2], X[:, 1], X[:, 0]]).tolist())
    preds = tmp_path / "preds.csv"
    assert main(["predict", str(model), str(new), "--out", str(preds)]) == 0
    assert "class predictions" in capsys.readouterr().out
    header, rows = read_preds(preds)
    assert header == ["colour", "prob_blue", "prob_green", "prob_red"] and len(rows) == len(X)
    got = np.array([r[0] for r in rows], dtype=object)
    prob = np.array([[float(v) for v in r[1:]] for r in rows])
    assert set(got) <= {"blue", "green", "red"}
    assert np.mean(got == lab) > 0.97
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-12)
    assert (np.asarray(meta["classes"], dtype=object)[prob.argmax(1)] == got).all()
    # independent float64 forward (standardized inputs, softmax) from the saved arrays
    st = meta["standardize"]
    z = np_forward(ws, bs, [("relu", 0, 0), None], (X - st["x_mean"]) / st["x_std"])
    ref = np.exp(z - z.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(prob, ref, atol=2e-5)
    # the training file itself (text target column present) predicts too: the target is not read
    assert main(["predict", str(model), str(data), "--out", str(preds)]) == 0
    capsys.readouterr()
    assert read_preds(preds)[0][0] == "colour"


def test_classify_int_labels_bce_keeps_label_values(tmp_path, capsys):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((500, 2))
    y = np.where(X[:, 0] - 0.5 * X[:, 1] > 0, 7, 3)  # whole numbers, not 0/1
    data = tmp_path / "bin.csv"
    write_csv(data, ["a", "b", "k"], np.column_stack([X, y]).tolist())  # written as 7.0 / 3.0
    model = tmp_path / "bin.npz"
    assert main(["train", str(data), "--target", "k", "--task", "classify", "--loss",
                 "bce_with_logits", "--hidden", "8", "--activation", "tanh", "--optimizer",
                 "rmsprop", "--lr", "0.01", "--epochs", "25", "--val-split", "0.2", "--out",
                 str(model), "--no-progress"]) == 0
    capsys.readouterr()
    ws, bs, relu, meta = load_model(model)
    assert meta["classes"] == [3, 7] and ws[-1].shape == (1, 8) and meta["activation"] == "tanh"
    assert meta["metrics"]["val_accuracy"] > 0.95
    preds = tmp_path / "p.csv"
    assert main(["predict", str(model), str(data), "--out", str(preds)]) == 0
    capsys.readouterr()
    header, rows = read_preds(preds)
    assert header == ["k", "prob_3", "prob_7"]
    assert {r[0] for r in rows} <= {"3", "7"}
    assert np.mean(np.array([int(r[0]) for r in rows]) == y) > 0.95
    p = np.array([[float(v) for v in r[1:]] for r in rows])
    z = np_forward(ws, bs, [("tanh", 0, 0), None], X)[:, 0]
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-z)), atol=2e-5)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)


def test_classify_npz_text_labels(tmp_path, capsys):
    X, lab, _ = blobs(n=300, seed=1, labels=("a", "b"))
    np.savez(tmp_path / "xy.npz", X=X, y=np.asarray(lab, dtype=str))
    model = tmp_path / "m.npz"
    assert main(["train", str(tmp_path / "xy.npz"), "--task", "classify", "--hidden", "8",
                 "--epochs", "10", "--optimizer", "adam", "--lr", "0.02", "--out", str(model),
                 "--no-progress"]) == 0
    capsys.readouterr()
    preds = tmp_path / "p.csv"
    assert main(["predict", str(model), str(tmp_path / "xy.npz"), "--out", str(preds)]) == 0
    capsys.readouterr()
    header, rows = read_preds(preds)
    assert header == ["y", "prob_a", "prob_b"]
    assert np.mean(np.array([r[0] for r in rows], dtype=object) == lab) > 0.95


def test_classification_metrics_match_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    from fastmlp.cli import classification_metrics

    rng = np.random.default_rng(0)
    for k in (2, 3, 5):
        t = rng.integers(0, k, 200)
        p = np.where(rng.random(200) < 0.7, t, rng.integers(0, k, 200))
        if k == 5:
            p[p == 4] = 0  # a class never predicted: its F1 is 0 and counts in the mean
        acc, f1, cm = classification_metrics(t, p, k)
        assert acc == pytest.approx(sk.accuracy_score(t, p))
        assert f1 == pytest.approx(sk.f1_score(t, p, average="macro"))
        np.testing.assert_array_equal(cm, sk.confusion_matrix(t, p, labels=range(k)))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "silu", "leaky_relu",
                                        "elu", "softplus", "identity"])
def test_every_activation_is_saved_and_predicted(tmp_path, capsys, activation):
    data = tmp_path / "train.csv"
    X, _ = regression_csv(data, n=120)
    model = tmp_path / "m.npz"
    assert main(["train", str(data), "--target", "target", "--hidden", "6,5", "--activation",
                 activation, "--epochs", "2", "--lr", "0.001", "--standardize", "--out", str(model),
                 "--no-progress"]) == 0
    assert f"({activation})" in capsys.readouterr().out
    ws, bs, relu, meta = load_model(model)
    assert meta["activation"] == activation
    acts = [None if a is None else tuple(a) for a in meta["acts"]]
    assert acts[-1] is None
    assert all((a is None) == (activation == "identity") for a in acts[:-1])
    assert all(a[0] == activation for a in acts[:-1] if a is not None)
    preds = tmp_path / "p.csv"
    assert main(["predict", str(model), str(data), "--out", str(preds)]) == 0
    capsys.readouterr()
    p = np.array([float(r[0]) for r in read_preds(preds)[1]])
    st = meta["standardize"]
    ref = np_forward(ws, bs, acts, (X - st["x_mean"]) / st["x_std"])[:, 0] * st["y_std"][0] + st["y_mean"][0]
    np.testing.assert_allclose(p, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("argv, fit_kw", [
    (["--optimizer", "adam", "--lr", "0.003", "--betas", "0.8,0.99", "--eps", "1e-6",
      "--weight-decay", "0.01"],
     dict(optimizer="adam", lr=0.003, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)),
    (["--optimizer", "adamw"], dict(optimizer="adamw", lr=1e-3)),
    (["--optimizer", "rmsprop", "--alpha", "0.9", "--momentum", "0.5"],
     dict(optimizer="rmsprop", lr=0.01, alpha=0.9, momentum=0.5)),
    (["--momentum", "0.9", "--nesterov", "--loss", "huber", "--huber-delta", "0.5"],
     dict(optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True, loss="huber_0.5")),
    (["--loss", "l1", "--activation", "silu", "--dropout", "0.2"],
     dict(optimizer="sgd", lr=0.01, loss="l1", act="SiLU", dropout=0.2)),
])
def test_train_options_reach_fit(tmp_path, capsys, argv, fit_kw):
    """The CLI's model equals fastmlp.fit's on the same net, data order and options."""
    from fastmlp import nn

    data = tmp_path / "train.csv"
    X, y = regression_csv(data, n=200)
    model = tmp_path / "m.npz"
    assert main(["train", str(data), "--target", "target", "--hidden", "8", "--epochs", "3",
                 "--batch-size", "16", "--standardize", "--seed", "4", "--out", str(model),
                 "--no-progress", *argv]) == 0
    capsys.readouterr()
    ws, bs, _, meta = load_model(model)
    kw = dict(fit_kw)
    act, drop = kw.pop("act", "ReLU"), kw.pop("dropout", 0.0)
    loss = kw.pop("loss", "mse")
    if loss.startswith("huber_"):
        loss = nn.HuberLoss(delta=float(loss.split("_")[1]))
    st = meta["standardize"]
    Xs = ((X - st["x_mean"]) / st["x_std"]).astype(np.float32)
    ys = ((y[:, None] - st["y_mean"]) / st["y_std"]).astype(np.float32)
    fastmlp.manual_seed(4)
    mods = [nn.Linear(3, 8), getattr(nn, act)()] + ([nn.Dropout(drop)] if drop else []) + [nn.Linear(8, 1)]
    net = nn.Sequential(*mods)
    order = np.random.default_rng(4).permutation(len(X))  # train's row order (--seed 4)
    fastmlp.fit(net, Xs[order], ys[order], epochs=3, batch_size=16, loss=loss, seed=4, **kw)
    lin = [m for m in mods if isinstance(m, nn.Linear)]
    for w, b, m in zip(ws, bs, lin):
        np.testing.assert_allclose(w, m.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, m.bias.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert meta["optimizer"] == kw["optimizer"]


def test_early_stopping_restores_the_best_epoch(tmp_path, capsys):
    X, lab, _ = blobs(n=200, seed=2)
    data = tmp_path / "train.csv"
    write_csv(data, ["u", "v", "noise", "c"], [list(x) + [c] for x, c in zip(X, lab)])
    model = tmp_path / "m.npz"
    # a large learning rate on little data: the validation loss stops improving early
    assert main(["train", str(data), "--target", "c", "--task", "classify", "--hidden", "64",
                 "--optimizer", "adam", "--lr", "0.05", "--epochs", "300", "--early-stopping",
                 "--patience", "3", "--val-split", "0.3", "--seed", "1", "--out", str(model),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "early stopping:" in out
    ws, bs, _, meta = load_model(model)
    m = meta["metrics"]
    vl = meta["history"]["val_loss"]
    assert m["epochs_run"] < 300 and len(vl) == m["epochs_run"]
    assert m["best_epoch"] == int(np.argmin(vl)) + 1 and m["epochs_run"] - m["best_epoch"] == 3
    # the saved weights are the best epoch's: their validation loss is the minimum
    n = len(X)
    va = np.random.default_rng(1).permutation(n)[:int(round(n * 0.3))]
    z = np_forward(ws, bs, [("relu", 0, 0), None], X[va])
    z -= z.max(1, keepdims=True)
    k = np.searchsorted(meta["classes"], lab[va].astype(str))
    ce = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(va)), k]))
    assert ce == pytest.approx(min(vl), rel=1e-4)
    # --early-stopping alone holds out 10% (scikit-learn's validation_fraction)
    assert main(["train", str(data), "--target", "c", "--task", "classify", "--hidden", "8",
                 "--epochs", "2", "--early-stopping", "--no-progress"]) == 0
    assert "validating on 20" in capsys.readouterr().out


def test_version_1_model_files_still_predict(tmp_path, capsys):
    """A model file written before --task/--activation (version 1: ReLU flags, no task) loads."""
    data = tmp_path / "train.csv"
    X, _ = regression_csv(data, n=50)
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((1, 4)).astype(np.float32)]
    bs = [rng.standard_normal(4).astype(np.float32), rng.standard_normal(1).astype(np.float32)]
    meta = {"features": ["a", "b", "c"], "targets": ["target"], "hidden": [4], "standardize": None,
            "categories": None, "metrics": {}, "epochs": 1, "lr": 0.01, "batch_size": 64}
    import json

    fastmlp.save({"format": "fastmlp-mlp", "version": 1,
                  "layers": [{"weight": w, "bias": b} for w, b in zip(ws, bs)],
                  "relu": [True, False], "meta": json.dumps(meta)}, str(tmp_path / "old.npz"))
    preds = tmp_path / "p.csv"
    assert main(["predict", str(tmp_path / "old.npz"), str(data), "--out", str(preds)]) == 0
    capsys.readouterr()
    header, rows = read_preds(preds)
    assert header == ["target"]
    ref = np_forward(ws, bs, [("relu", 0, 0), None], X)[:, 0]
    np.testing.assert_allclose([float(r[0]) for r in rows], ref, rtol=1e-5, atol=1e-5)


def test_classify_and_option_errors_exit_2_with_one_line(tmp_path, capsys):
    X, lab, _ = blobs(n=60)
    data = tmp_path / "c.csv"
    write_csv(data, ["u", "v", "noise", "c"], [list(x) + [c] for x, c in zip(X, lab)])
    reg = tmp_path / "r.csv"
    regression_csv(reg, n=40)
    base = ["train", str(data), "--target", "c", "--task", "classify", "--epochs", "1"]
    rbase = ["train", str(reg), "--target", "target", "--epochs", "1"]
    assert "unknown value 'hinge'" in one_line_error(capsys, base + ["--loss", "hinge"])
    line = one_line_error(capsys, base + ["--loss", "mse"])
    assert "--loss mse is a regression loss" in line and "cross_entropy" in line
    assert "classification loss" in one_line_error(capsys, rbase + ["--loss", "cross_entropy"])
    assert "holds 3 classes" in one_line_error(capsys, base + ["--loss", "bce_with_logits"])
    assert "--dropout" in one_line_error(capsys, base + ["--dropout", "1.5"])
    assert "--dropout" in one_line_error(capsys, base + ["--dropout", "-0.1"])
    assert "unknown value 'lbfgs'" in one_line_error(capsys, base + ["--optimizer", "lbfgs"])
    assert "unknown value 'swish'" in one_line_error(capsys, base + ["--activation", "swish"])
    assert "unknown value 'cluster'" in one_line_error(capsys, base[:4] + ["--task", "cluster"])
    assert "--momentum" in one_line_error(capsys, base + ["--optimizer", "adam", "--momentum", "0.9"])
    assert "--betas" in one_line_error(capsys, base + ["--optimizer", "adam", "--betas", "0.9"])
    assert "--betas" in one_line_error(capsys, base + ["--betas", "0.9,0.99"])  # sgd has none
    assert "--nesterov" in one_line_error(capsys, base + ["--nesterov"])
    assert "--lr" in one_line_error(capsys, base + ["--lr", "0"])
    assert "--val-split" in one_line_error(capsys, base + ["--early-stopping", "--val-split", "0"])
    assert "--early-stopping" in one_line_error(capsys, base + ["--patience", "3"])
    assert "--patience" in one_line_error(capsys, base + ["--early-stopping", "--patience", "0"])
    assert "one target column" in one_line_error(capsys, base[:3] + ["c,u"] + base[4:])
    one = tmp_path / "one.csv"
    write_csv(one, ["a", "t"], [[1.0, "x"], [2.0, "x"], [3.0, "x"]])
    line = one_line_error(capsys, ["train", str(one), "--target", "t", "--task", "classify"])
    assert "one class" in line and "'x'" in line
    line = one_line_error(capsys, ["train", str(reg), "--target", "target", "--task", "classify"])
    assert "--task classify needs class labels" in line
    gap = tmp_path / "gap.csv"
    gap.write_text("a,t\n1,x\n2,\n3,y\n")
    assert "empty" in one_line_error(capsys, ["train", str(gap), "--target", "t", "--task", "classify"])
    line = one_line_error(capsys, ["train", str(data), "--target", "c"])
    assert "holds text" in line and "--task classify" in line


def test_classify_error_exit_code_from_the_shell(tmp_path):
    one = tmp_path / "one.csv"
    write_csv(one, ["a", "t"], [[1.0, "x"], [2.0, "x"]])
    r = run_cli("train", str(one), "--target", "t", "--task", "classify")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "one class" in r.stderr


@pytest.mark.skipif(not _has_matplotlib(), reason="--plot needs matplotlib")
def test_classify_plot_has_a_confusion_matrix(tmp_path, capsys):
    X, lab, _ = blobs(n=150)
    data = tmp_path / "c.csv"
    write_csv(data, ["u", "v", "noise", "c"], [list(x) + [c] for x, c in zip(X, lab)])
    plot = tmp_path / "p.png"
    assert main(["train", str(data), "--target", "c", "--task", "classify", "--hidden", "8",
                 "--epochs", "3", "--val-split", "0.2", "--plot", str(plot), "--no-progress"]) == 0
    assert "confusion matrix saved" in capsys.readouterr().out
    import matplotlib.image

    img = matplotlib.image.imread(str(plot))
    assert img.shape[1] > img.shape[0] * 1.5  # two panels side by side: curve and matrix


def test_export_classifier_matches_predict(tmp_path, capsys):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    X, lab, _ = blobs(n=200)
    data = tmp_path / "c.csv"
    write_csv(data, ["u", "v", "noise", "c"], [list(x) + [c] for x, c in zip(X, lab)])
    model = tmp_path / "m.npz"
    assert main(["train", str(data), "--target", "c", "--task", "classify", "--hidden", "8",
                 "--activation", "gelu", "--epochs", "5", "--standardize", "--out", str(model),
                 "--no-progress"]) == 0
    assert main(["export", str(model), str(tmp_path / "m.onnx")]) == 0
    assert main(["predict", str(model), str(data), "--out", str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()
    _, rows = read_preds(tmp_path / "p.csv")
    label, prob = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        None, {"input": X.astype(np.float32)})
    assert list(label) == [r[0] for r in rows]
    np.testing.assert_allclose(prob, [[float(v) for v in r[1:]] for r in rows], atol=1e-5)
