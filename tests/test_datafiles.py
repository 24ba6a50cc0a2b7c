"""The CLI's data files: CSV (pyarrow's reader and numpy's), Parquet, Feather, NPZ; --columns;
text columns one-hot encoded or refused by name."""
import csv

import numpy as np
import pytest

from fastmlp import datafiles
from fastmlp.__main__ import main
from fastmlp.datafiles import DataFileError, read_table


@pytest.fixture(params=["pyarrow", "numpy"])
def csv_engine(request, monkeypatch):
    if request.param == "pyarrow":
        pytest.importorskip("pyarrow")
    else:
        monkeypatch.setattr(datafiles, "_pyarrow", lambda: None)
    return request.param


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    color = np.array(["red", "green", "blue"])[rng.integers(0, 3, n)]
    y = X[:, 0] - X[:, 1] + (color == "red") * 2.0
    return X, color, y


def test_csv_numbers(tmp_path, csv_engine):
    X, _, y = frame()
    write(tmp_path / "d.csv", ["a", "b", "c", "y"], np.column_stack([X, y]).tolist())
    t = read_table(tmp_path / "d.csv")
    assert t["columns"] == ["a", "b", "c", "y"]
    np.testing.assert_array_equal(t["data"], np.column_stack([X, y]))
    t = read_table(tmp_path / "d.csv", columns=["c", "a"])
    assert t["columns"] == ["c", "a"]
    np.testing.assert_array_equal(t["data"], X[:, [2, 0]])


def test_csv_text_columns(tmp_path, csv_engine):
    X, color, y = frame()
    rows = [[*x, c, t] for x, c, t in zip(X.tolist(), color, y)]
    write(tmp_path / "d.csv", ["a", "b", "c", "color", "y"], rows)
    with pytest.raises(DataFileError, match=r"column 'color' holds text .*--one-hot"):
        read_table(tmp_path / "d.csv")
    t = read_table(tmp_path / "d.csv", one_hot=True)
    assert t["columns"] == ["a", "b", "c", "color=blue", "color=green", "color=red", "y"]
    np.testing.assert_array_equal(t["data"][:, 5], color == "red")
    assert t["categories"] == {"color": ["blue", "green", "red"]}
    t2 = read_table(tmp_path / "d.csv", columns=["a", "b"])  # leaving the text column out
    assert t2["columns"] == ["a", "b"]
    with pytest.raises(DataFileError, match="'purple', a category the model was not trained on"):
        write(tmp_path / "e.csv", ["color"], [["purple"]])
        read_table(tmp_path / "e.csv", categories={"color": ["blue", "red"]})


def test_csv_errors(tmp_path, csv_engine):
    write(tmp_path / "bad.csv", ["a", "t"], [["1.0", "2.0"], ["2.5", "3.0"], ["oops", "3.0"]])
    with pytest.raises(DataFileError, match=r"row 4, column 'a': cannot read 'oops'"):
        read_table(tmp_path / "bad.csv")
    (tmp_path / "ragged.csv").write_text("a,t\n1,2\n3\n")
    with pytest.raises(DataFileError, match="row 3 has 1 fields, the header has 2"):
        read_table(tmp_path / "ragged.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataFileError, match="empty file"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(DataFileError, match="no data rows"):
        read_table(tmp_path / "h.csv")
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(DataFileError, match="names column 'a' twice"):
        read_table(tmp_path / "dup.csv")
    write(tmp_path / "d.csv", ["a", "b"], [[1, 2]])
    with pytest.raises(DataFileError, match="no column 'zz'"):
        read_table(tmp_path / "d.csv", columns=["zz"])


@pytest.mark.parametrize("fmt", ["parquet", "feather"])
def test_arrow_files(tmp_path, fmt):
    pa = pytest.importorskip("pyarrow")
    X, color, y = frame()
    table = pa.table({"a": X[:, 0], "b": X[:, 1].astype(np.float32), "n": np.arange(len(y)),
                      "color": pa.array(color).dictionary_encode() if fmt == "parquet" else color,
                      "y": y})
    path = tmp_path / f"d.{fmt}"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.feather as feather

        feather.write_feather(table, path)
    with pytest.raises(DataFileError, match="column 'color' holds text"):
        read_table(path)
    t = read_table(path, one_hot=True)
    assert t["columns"] == ["a", "b", "n", "color=blue", "color=green", "color=red", "y"]
    np.testing.assert_allclose(t["data"][:, 1], X[:, 1].astype(np.float32))
    t = read_table(path, columns=["y", "a"])
    np.testing.assert_array_equal(t["data"], np.column_stack([y, X[:, 0]]))
    with pytest.raises(DataFileError, match="no column 'zz'"):
        read_table(path, columns=["zz"])
    (tmp_path / f"junk.{fmt}").write_bytes(b"nope")
    with pytest.raises(DataFileError, match="not a readable"):
        read_table(tmp_path / f"junk.{fmt}")


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setattr(datafiles, "_pyarrow", lambda: None)
    with pytest.raises(DataFileError, match=r"needs pyarrow: pip install fastmlp\[arrow\]"):
        read_table(tmp_path / "d.parquet")


def test_cli_train_predict_one_hot_columns(tmp_path, capsys):
    X, color, y = frame(n=200)
    ids = [f"id{i}" for i in range(len(y))]
    rows = [[i, *x, c, t] for i, x, c, t in zip(ids, X.tolist(), color, y)]
    write(tmp_path / "d.csv", ["id", "a", "b", "c", "color", "y"], rows)
    rc = main(["train", str(tmp_path / "d.csv"), "--target", "y", "--hidden", "8", "--epochs", "2",
               "--no-progress"])
    assert rc == 2 and "column 'id' holds text" in capsys.readouterr().err
    rc = main(["train", str(tmp_path / "d.csv"), "--target", "y", "--columns", "a,b,color",
               "--one-hot", "--hidden", "8", "--epochs", "2", "--out", str(tmp_path / "m.npz"),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "training 5 -> 8 -> 1" in capsys.readouterr().out
    rc = main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "d.csv"), "--out",
               str(tmp_path / "p.csv")])
    assert rc == 0, capsys.readouterr().err
    assert np.loadtxt(tmp_path / "p.csv", skiprows=1).shape == (200,)
    write(tmp_path / "new.csv", ["a", "b", "color"], [[0.0, 1.0, "purple"]])
    rc = main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "new.csv")])
    assert rc == 2 and "'purple'" in capsys.readouterr().err
