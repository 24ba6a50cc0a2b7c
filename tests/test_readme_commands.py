"""Every command the README shows works after the README's install, from any folder.

The commands are read from README.md itself (bash blocks and inline ``python ...`` spans), so a
new command there without a row in SMALLEST below fails this test. Each runs with its smallest
options in a fresh virtual environment (``python -m venv --system-site-packages``) into which a
copy of this checkout is ``pip install``-ed (no build isolation: the build tools already present
are used, so no network is needed). The ``python -m fastmlp`` commands run from an empty folder;
the ``python bench/...`` ones from the checkout copy, whose ``python/`` has no compiled module:
they must import the installed package.

Marked slow: the install compiles the C++ kernels (FASTMLP_CUDA=OFF unless set: a few minutes on
2 cores). Skipped when
FASTMLP_SKIP_INSTALL_TEST=1, or where venv / the build tools are unavailable.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

pytestmark = pytest.mark.slow

CLASSIFY = ("python -m fastmlp train flowers.csv --target species --task classify --hidden 64 "
            "--optimizer adam --activation gelu --dropout 0.1 --val-split 0.2 --out clf.npz "
            "--plot clf.png")

# README command (prefix) -> (the command to run, with its smallest options, or None: not run here,
# with the reason). Placeholders: {py} the venv's python; {plot}, {plot_clf}: a --plot option
# where matplotlib is installed.
SMALLEST = {
    "pip install . && python -m fastmlp demo":
        "{py} -m fastmlp demo --samples 4096 --test-samples 1024 --epochs 1 --torch-steps 5 --no-progress",
    "pip install \".[test]\" && python -m pytest tests":
        None,  # the whole suite: that is CI itself (.ci/run), not something to nest here
    "python -m fastmlp info": "{py} -m fastmlp info",
    # the cache in the scratch folder, not the user's ~/.cache
    "python -m fastmlp calibrate": "FASTMLP_CACHE_DIR=costmodel_cache {py} -m fastmlp calibrate --trainer train",
    "python -m fastmlp demo": "{py} -m fastmlp demo --samples 2048 --test-samples 512 --epochs 1 --no-torch --no-progress",
    "python -m fastmlp train data.csv --target y --hidden 64,64 --epochs 20 --lr 0.01 --standardize --val-split 0.2 --out model.npz --plot loss.png":
        "{py} -m fastmlp train data.csv --target y --hidden 8 --epochs 1 --lr 0.01 --standardize "
        "--val-split 0.2 --out model.npz{plot} --no-progress",
    "python -m fastmlp train data.csv --target y --device cuda":
        "{py} -m fastmlp train data.csv --target y --hidden 8 --epochs 1 --device cuda --no-progress",
    "python -m fastmlp predict model.npz data.csv --out preds.csv":
        "{py} -m fastmlp predict model.npz data.csv --out preds.csv",
    "python -m fastmlp train data.parquet --target y --columns a,b,color --one-hot --out model.npz":
        "{py} -m fastmlp train data.parquet --target y --columns a,b,color --one-hot --hidden 8 "
        "--epochs 1 --out model_pq.npz --no-progress",
    "python -m fastmlp train data.csv --target y --loss huber --optimizer adamw --lr 0.001 --activation tanh --early-stopping --patience 5 --out model_tanh.npz":
        "{py} -m fastmlp train data.csv --target y --loss huber --optimizer adamw --lr 0.001 "
        "--activation tanh --early-stopping --patience 5 --hidden 8 --epochs 2 --out model_tanh.npz "
        "--no-progress",
    CLASSIFY:
        "{py} -m fastmlp train flowers.csv --target species --task classify --hidden 8 --optimizer "
        "adam --activation gelu --dropout 0.1 --val-split 0.2 --epochs 2 --out clf.npz{plot_clf} "
        "--no-progress",
    "python -m fastmlp predict clf.npz flowers.csv --out species.csv":
        "{py} -m fastmlp predict clf.npz flowers.csv --out species.csv",
    "python -m fastmlp export model.npz model.onnx": "{py} -m fastmlp export model.npz model.onnx",
    "python -m fastmlp bench --quick --out results/":
        "{py} -m fastmlp bench --quick --rounds 1 --only seed --no-torch --out results/",
    "python -m fastmlp bench train --quick --only seed --threads 2":
        "{py} -m fastmlp bench train --quick --only seed --threads 2 --rounds 1 --no-torch",
    "python bench/gemm.py --threads 1 2 --out bench/results":
        "{py} bench/gemm.py --quick --only mlp --rounds 1 --threads 1 --no-torch --settle 0 --out bench/results",
    "python bench/train.py --threads 2":
        "{py} bench/train.py --threads 2 --quick --only seed --rounds 1 --no-torch",
    "python bench/mlp.py --profile": "{py} bench/mlp.py --config seed --rounds 1",
    "python bench/grid.py":
        "{py} bench/grid.py --widths 16 --batches 16 --threads 1 --libs fastmlp --rounds 1 "
        "--budget 1e6 --no-plot --out bench-results",
    # the benchmark section's measured runs, shrunk to one point of fastmlp alone
    "python bench/grid.py --widths 8,16,32,64,128,256,512,1024 --batches 16,64,256,1024 --threads 1,2 "
    "--heads 1 --paths avx2 --kinds fit/fastmlp,scan/jax,step/torch --rounds 2":
        "{py} bench/grid.py --widths 8 --batches 16 --threads 1,2 --heads 1 --libs fastmlp "
        "--kinds fit/fastmlp --rounds 1 --budget 1e6 --no-plot --out bench-results",
    "python bench/grid.py --widths 16,64,256,1024 --batches 1,16,64,256,1024 --threads 2 --heads 1 "
    "--paths avx2 --libs fastmlp,ort --kinds infer,predict --rounds 2":
        "{py} bench/grid.py --widths 16 --batches 1,16 --threads 2 --heads 1 --libs fastmlp "
        "--kinds infer,predict --rounds 1 --budget 1e6 --settle 0 --no-plot --out bench-results",
    "python bench/grid.py --widths 8,16,32,64,128,256,512,1024 --batches 16,64,256,1024 --threads 1,2 "
    "--heads 1 --paths avx512 --kinds fit/fastmlp,scan/jax,step/torch --rounds 2":
        "{py} bench/grid.py --widths 8 --batches 16 --threads 1,2 --heads 1 --libs fastmlp "
        "--kinds fit/fastmlp --rounds 1 --budget 1e6 --no-plot --out bench-results",
    "python bench/grid.py --widths 16,64,256,1024 --batches 1,16,64,256,1024 --threads 2 --heads 1 "
    "--paths avx512 --libs fastmlp,ort --kinds infer,predict --rounds 2":
        "{py} bench/grid.py --widths 16 --batches 1,16 --threads 2 --heads 1 --libs fastmlp "
        "--kinds infer,predict --rounds 1 --budget 1e6 --settle 0 --no-plot --out bench-results",
    "python bench/gemm.py --threads 1 2 --no-torch --rounds 3":
        "{py} bench/gemm.py --quick --only mlp --rounds 1 --threads 1 2 --no-torch --settle 0 --out bench/results",
    "python -m fastmlp bench --grid":
        "{py} -m fastmlp bench --grid --widths 16 --batches 16 --threads 1 --libs fastmlp "
        "--rounds 1 --budget 1e6 --no-plot --out bench-results",
    # needs mpiexec from the optional MPI install below; tests/test_distributed.py runs the same
    # training under mpiexec -n 2 and -n 3
    "python bench/distributed.py --rounds 5": None,
    # optional installs from PyPI (CI installs mpi4py and mpich itself, .ci/run)
    "pip install \"fastmlp[mpi]\" mpich": None,
    "pip install mpi4py mpich": None,
    # developer set-up, not commands to run after the install
    "pip install scikit-build-core pybind11 ninja cmake numpy pytest hypothesis": None,
    "pip install --no-build-isolation -e \".[test]\"": None,
    "cmake -S . -B build/dev -G Ninja -DFASTMLP_INPLACE=ON -Dpybind11_DIR=$(python -m pybind11 --cmakedir)": None,
    "cmake --build build/dev && PYTHONPATH=python python -m pytest tests": None,
}

TRAIN = ("python -m fastmlp train data.csv --target y --hidden 64,64 --epochs 20 --lr 0.01 "
         "--standardize --val-split 0.2 --out model.npz --plot loss.png")

# Commands that must fail cleanly (exit 2, one line) where an optional piece is missing.
NEEDS = {"--device cuda": "cuda", "data.parquet": "pyarrow", "export": "onnx"}


def readme_commands():
    text = README.read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    for span in re.findall(r"`((?:python|pip) [^`]+)`", text):
        if "NAME" not in span:  # a placeholder, not a command
            cmds.append(span.strip())
    seen, out = set(), []
    for c in cmds:
        c = re.sub(r"\s+", " ", c)
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def test_every_readme_command_has_a_row():
    missing = [c for c in readme_commands() if c not in SMALLEST and not c.startswith("pip install fastmlp[")
               and not c.startswith("pip install torch") and not c.startswith("pip install jax")
               and not c.startswith("pip install matplotlib")]
    assert missing == [], f"README commands this test does not run (add a SMALLEST row): {missing}"


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    if os.environ.get("FASTMLP_SKIP_INSTALL_TEST") == "1":
        pytest.skip("FASTMLP_SKIP_INSTALL_TEST=1")
    for mod in ("scikit_build_core", "pybind11"):
        if subprocess.run([sys.executable, "-c", f"import {mod}"]).returncode != 0:
            pytest.skip(f"{mod} is not installed: cannot build without network")
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        if rel and (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    env_dir = base / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"python -m venv failed: {r.stderr.strip()[-200:]}")
    py = env_dir / "bin" / "python"
    # An editable fastmlp in the base interpreter's site-packages (a development machine) installs
    # an import hook that would win over the package installed here: mask it in this venv.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if not ('editable' in type(f).__module__ and 'fastmlp' in type(f).__module__)]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTMLP_BENCH_SOURCE")}
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = "2"
    env.setdefault("FASTMLP_CUDA", "OFF")  # the CPU module is what these commands use; CUDA
    # device code would multiply the build time where nvcc exists (FASTMLP_CUDA=AUTO to include it)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                        "--disable-pip-version-check", str(src)], capture_output=True, text=True,
                       env=env, cwd=base, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    where = subprocess.run([str(py), "-c", "import fastmlp; print(fastmlp.__file__)"], cwd=base,
                           capture_output=True, text=True, env=env).stdout.strip()
    assert where.startswith(str(env_dir)), f"the venv imports fastmlp from {where}"
    work = base / "anywhere"
    work.mkdir()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = X @ [1.0, -2.0, 0.5]
    np.savetxt(work / "data.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="")
    species = np.array(["setosa", "versicolor", "virginica"])[np.digitize(X[:, 0], [-0.4, 0.4])]
    with open(work / "flowers.csv", "w") as f:  # a text label column for --task classify
        f.write("a,b,c,species\n")
        f.writelines(f"{r[0]:.17g},{r[1]:.17g},{r[2]:.17g},{s}\n" for r, s in zip(X, species))
    # data.parquet written by the install's python (the one whose pyarrow the parquet command
    # runs with, _available): where it has none, a placeholder the CLI must refuse clearly
    np.save(work / "parquet_src.npy", np.column_stack([X, y]))
    code = ("import numpy as np, pyarrow as pa, pyarrow.parquet as pq; "
            "d = np.load('parquet_src.npy'); "
            "pq.write_table(pa.table({'a': d[:, 0], 'b': d[:, 1], 'color': np.array(['red', "
            "'blue'])[(d[:, 2] > 0).astype(int)], 'y': d[:, 3]}), 'data.parquet')")
    if subprocess.run([str(py), "-c", code], cwd=work, env=env,
                      capture_output=True).returncode != 0:
        (work / "data.parquet").write_bytes(b"PAR1")
    return {"py": str(py), "src": src, "work": work, "env": env}


def _available(what, py, env):
    code = {"cuda": "import fastmlp, sys; sys.exit(0 if fastmlp.cuda.is_available() else 1)",
            "pyarrow": "import pyarrow", "onnx": "import onnx"}[what]
    return subprocess.run([py, "-c", code], capture_output=True, env=env).returncode == 0


RUNNABLE = [c for c in SMALLEST if SMALLEST[c] is not None]


@pytest.mark.parametrize("readme_cmd", RUNNABLE)
def test_readme_command(readme_cmd, venv):
    py, env = venv["py"], venv["env"]
    have_mpl = subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0
    cmd = SMALLEST[readme_cmd].format(py=py, plot=" --plot loss.png" if have_mpl else "",
                                      plot_clf=" --plot clf.png" if have_mpl else "")
    cwd = venv["src"] if " bench/" in cmd else venv["work"]
    # predict/export need the model a train command writes
    for model, train in (("model.npz", TRAIN), ("clf.npz", CLASSIFY)):
        if ("predict" in cmd or "export" in cmd) and f" {model} " in cmd + " " and \
                not (venv["work"] / model).exists():
            subprocess.run(SMALLEST[train].format(py=py, plot="", plot_clf="").split(),
                           cwd=venv["work"], env=env, capture_output=True, timeout=600)
    r = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    need = next((v for k, v in NEEDS.items() if k in cmd), None)
    if need is not None and not _available(need, py, env):
        assert r.returncode == 2, (cmd, r.stdout[-2000:], r.stderr[-2000:])
        assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
        return
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
