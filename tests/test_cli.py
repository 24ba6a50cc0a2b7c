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
