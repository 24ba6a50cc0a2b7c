"""`python -m fastmlp bench`: NAME [args...] forwards to bench/NAME.py, --grid to bench/grid.py,
plain `bench` passes the shared options to train.py and gemm.py (--only where the script has it)."""
import json
import sys

import pytest

from fastmlp import cli
from fastmlp.__main__ import main

ECHO = """import json, sys
ONLY_CHOICES = {only!r}
with open({log!r}, "a") as f:
    f.write(json.dumps([{name!r}] + sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def fake_bench(tmp_path, monkeypatch):
    d = tmp_path / "bench"
    d.mkdir()
    log = tmp_path / "calls.jsonl"
    for name, only in (("train", ("seed", "wide")), ("gemm", ("squares", "mlp")), ("grid", ())):
        (d / f"{name}.py").write_text(ECHO.format(only=only, log=str(log), name=name))
    monkeypatch.setattr(cli, "bench_dir", lambda: d)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return d, calls


def test_named_script_gets_args_unchanged(fake_bench, capsys):
    d, calls = fake_bench
    assert main(["bench", "train", "--threads", "2", "--only", "seed", "--weird", "x"]) == 0
    assert calls() == [["train", "--threads", "2", "--only", "seed", "--weird", "x"]]


def test_grid(fake_bench, capsys):
    d, calls = fake_bench
    assert main(["bench", "--grid", "--widths", "64", "128"]) == 0
    assert calls() == [["grid", "--widths", "64", "128"]]
    (d / "grid.py").unlink()
    assert main(["bench", "--grid"]) == 2
    assert "no benchmark 'grid'" in capsys.readouterr().err


def test_suite_options(fake_bench, tmp_path, capsys):
    d, calls = fake_bench
    out = str(tmp_path / "res")
    assert main(["bench", "--quick", "--out", out, "--threads", "2", "--only", "seed"]) == 0
    assert calls() == [["train", "--out", out, "--quick", "--only", "seed", "--threads", "2"]]
    assert "skipping gemm.py: it has no --only seed" in capsys.readouterr().out
    assert main(["bench", "--out", out, "--threads", "1", "2", "--no-torch"]) == 0
    assert calls()[1:] == [["train", "--out", f"{out}/threads-1", "--no-torch", "--threads", "1"],
                           ["train", "--out", f"{out}/threads-2", "--no-torch", "--threads", "2"],
                           ["gemm", "--out", out, "--no-torch", "--threads", "1", "2"]]
    assert main(["bench", "--only", "zzz"]) == 2
    assert "no benchmark has that case" in capsys.readouterr().err
    assert main(["bench", "nope"]) == 2
    assert "available: gemm, grid, train" in capsys.readouterr().err


def test_real_scripts_declare_only_choices():
    d = cli.bench_dir()
    assert cli._only_choices(d / "train.py") == ("seed", "wide", "toolkit")
    assert cli._only_choices(d / "gemm.py") == ("squares", "mlp")


def test_sklearn_alias(fake_bench):
    """`bench sklearn` runs bench/sklearn_bench.py (a bench/sklearn.py would shadow scikit-learn)."""
    d, calls = fake_bench
    (d / "sklearn_bench.py").write_text(ECHO.format(only=(), log=str(d.parent / "calls.jsonl"),
                                                    name="sklearn_bench"))
    assert main(["bench", "sklearn", "--quick", "--only", "digits"]) == 0
    assert calls() == [["sklearn_bench", "--quick", "--only", "digits"]]
    assert cli._bench_scripts(cli.bench_dir()).count("sklearn_bench") == 1
