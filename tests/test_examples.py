"""The examples/ scripts: public-style PyTorch MLP programs that must run unchanged on fastmlp.

Each script is run in a subprocess twice, under fastmlp (the default of examples/examples_backend.py)
and under PyTorch (EXAMPLES_BACKEND=torch), the two at the same time. Each run must exit 0, print
``first_loss X`` and, as its last line, ``final_loss Y`` with Y < X (it learned), and fastmlp's final
loss must be of the same order as PyTorch's: within a factor of 10, where losses below a small
fraction of the starting loss count as converged (equal to that floor).

An example that needs a fastmlp feature not present in this build is skipped with the feature named;
the probes below look the feature up, so the test switches itself on once the feature exists.
"""
import functools
import importlib.util
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastmlp
import fastmlp.nn
import fastmlp.optim

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
TIMEOUT_S = 300  # generous: the development machine is shared; each script alone takes seconds


# ---- feature probes (name shown in the skip reason -> is it in this fastmlp?) -------------------
def _has(obj, dotted):
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _second_derivative_works():
    """autograd.grad(create_graph=True) through an element-wise op: d2/dx2 of x^3 is 6x."""
    try:
        x = fastmlp.tensor([1.0, 2.0], requires_grad=True)
        (g,) = fastmlp.autograd.grad((x * x * x).sum(), x, create_graph=True)
        (g2,) = fastmlp.autograd.grad(g.sum(), x)
        return [round(v, 4) for v in g2.tolist()] == [6.0, 12.0]
    except Exception:  # noqa: BLE001  (any failure means the feature is not there)
        return False


FEATURES = {
    "optim.Adam": lambda: _has(fastmlp.optim, "Adam"),
    "optim.AdamW": lambda: _has(fastmlp.optim, "AdamW"),
    "optim.LBFGS": lambda: _has(fastmlp.optim, "LBFGS"),
    "optim.lr_scheduler.StepLR": lambda: _has(fastmlp.optim, "lr_scheduler.StepLR"),
    "optim.lr_scheduler.OneCycleLR": lambda: _has(fastmlp.optim, "lr_scheduler.OneCycleLR"),
    "nn.utils.clip_grad_norm_": lambda: _has(fastmlp.nn, "utils.clip_grad_norm_"),
    "distributions.Categorical": lambda: _has(fastmlp, "distributions.Categorical"),
    "distributions.Normal": lambda: _has(fastmlp, "distributions.Normal"),
    "torch.sin": lambda: _has(fastmlp, "sin"),
    "torch.cos": lambda: _has(fastmlp, "cos"),
    "Tensor.std": lambda: _has(fastmlp.Tensor, "std"),
    "autograd.grad(create_graph=True)": _second_derivative_works,
}

# example -> (fastmlp features it needs beyond the basics, converged-loss floor as a fraction of
# the starting loss). The RL losses head for 0 exponentially, so their floor is higher.
EXAMPLE_NEEDS = {
    "seed_program": ([], 1e-3),
    "iris_classifier": ([], 1e-3),
    "xor": ([], 1e-3),
    "mnist_mlp": (["optim.AdamW", "optim.lr_scheduler.OneCycleLR"], 1e-3),
    "house_prices": (["optim.Adam", "optim.lr_scheduler.StepLR"], 1e-3),
    "autoencoder": (["optim.Adam"], 1e-3),
    "timm_mlp_block": (["optim.AdamW"], 1e-3),
    "vae": (["optim.Adam"], 1e-3),
    "tabular_embedding": (["optim.Adam"], 1e-3),
    "nerf_mlp": (["optim.Adam", "torch.sin", "torch.cos"], 1e-3),
    "pinn_poisson": (["optim.Adam", "torch.sin", "autograd.grad(create_graph=True)"], 1e-3),
    "reinforce_policy": (["optim.Adam", "distributions.Categorical", "Tensor.std"], 1e-2),
    "gaussian_policy": (["optim.Adam", "distributions.Normal", "Tensor.std"], 1e-2),
    "binary_classifier": (["optim.Adam", "nn.utils.clip_grad_norm_"], 1e-3),
    "lbfgs_curve_fit": (["optim.LBFGS"], 1e-3),
}

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def test_every_example_is_listed():
    scripts = {p.stem for p in EXAMPLES.glob("*.py")} - {"examples_backend"}
    assert scripts == set(EXAMPLE_NEEDS)


def _missing(name):
    return [f for f in EXAMPLE_NEEDS[name][0] if not FEATURES[f]()]


# ---- running ----------------------------------------------------------------------------------
def _start(name, backend):
    env = dict(os.environ, EXAMPLES_BACKEND=backend)
    env.setdefault("OMP_NUM_THREADS", "1")  # two runs side by side; also keeps torch's pool small
    return subprocess.Popen([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=str(EXAMPLES),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc):
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return {"rc": "timeout", "out": out}
    return {"rc": proc.returncode, "out": out}


_LOSS = r"(-?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf))"


def _losses(result):
    out = result["out"]
    first = re.search(rf"^first_loss {_LOSS}$", out, re.M)
    lines = out.strip().splitlines()
    final = re.fullmatch(rf"final_loss {_LOSS}", lines[-1]) if lines else None
    assert first, f"no 'first_loss' line:\n{out[-2000:]}"
    assert final, f"last line is not 'final_loss <value>':\n{out[-2000:]}"
    return float(first.group(1)), float(final.group(1))


@functools.lru_cache(maxsize=None)
def _run(name):
    """Both backends at once (fastmlp only when it has the features): {backend: result}."""
    procs = {}
    if HAVE_TORCH:
        procs["torch"] = _start(name, "torch")
    if not _missing(name):
        procs["fastmlp"] = _start(name, "fastmlp")
    return {backend: _finish(p) for backend, p in procs.items()}


def _check_learned(name, backend, result):
    assert result["rc"] == 0, f"{name} under {backend}: exit {result['rc']}\n{result['out'][-3000:]}"
    first, final = _losses(result)
    assert math.isfinite(first) and math.isfinite(final), (first, final)
    assert final < first, f"{name} under {backend} did not learn: first {first}, final {final}"
    return first, final


# ---- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXAMPLE_NEEDS))
def test_example_under_torch(name):
    """The script itself is sound: PyTorch runs it and it learns (the reference for fastmlp)."""
    if not HAVE_TORCH:
        pytest.skip("torch is not installed")
    _check_learned(name, "torch", _run(name)["torch"])


@pytest.mark.parametrize("name", sorted(EXAMPLE_NEEDS))
def test_example_under_fastmlp(name):
    missing = _missing(name)
    if missing:
        pytest.skip(f"fastmlp lacks {', '.join(missing)}")
    results = _run(name)
    first, final = _check_learned(name, "fastmlp", results["fastmlp"])
    if "torch" not in results or results["torch"]["rc"] != 0:
        return  # no reference to compare with (test_example_under_torch reports why)
    t_first, t_final = _losses(results["torch"])
    floor = EXAMPLE_NEEDS[name][1] * max(first, t_first)
    a, b = max(final, floor), max(t_final, floor)
    assert 0.1 <= a / b <= 10, (f"{name}: fastmlp final loss {final:.4g} vs torch {t_final:.4g} "
                                f"(first {first:.4g} vs {t_first:.4g}): not the same order")
