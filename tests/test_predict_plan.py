"""The scikit-learn estimators and the CLI predict through the inference plan (ops.InferPlan, as
fastmlp.predict does): the same results as the trainers' forward they used before, every
activation, every CPU path; and the plan is what runs."""
import numpy as np
import pytest

import fastmlp
from fastmlp import cli, trainer
from fastmlp.__main__ import main
from fastmlp.ops import cpu as _kernels

pytest.importorskip("sklearn")
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

ACTS = ["identity", "logistic", "tanh", "relu"]
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _old_forward(est, X):
    """What the estimators' _forward computed before (mlp_forward / mlp_fit_forward)."""
    W = [np.ascontiguousarray(np.asarray(c).T, dtype=np.float32) for c in est.coefs_]
    b = [np.ascontiguousarray(i, dtype=np.float32).reshape(-1) for i in est.intercepts_]
    X = np.ascontiguousarray(X, dtype=np.float32)
    if est.activation in ("relu", "identity"):
        relu = [est.activation == "relu"] * (len(W) - 1) + [False]
        return _kernels.mlp_forward(W, b, relu, X)
    kind = {"logistic": 3, "tanh": 2}[est.activation]
    layers = [{"weight": w, "bias": bb, "act": (kind, 0.0, 0.0) if i < len(W) - 1 else (0, 0.0, 0.0)}
              for i, (w, bb) in enumerate(zip(W, b))]
    return _kernels.mlp_fit_forward(layers, X)


def _no_trainer_forward(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the trainers' forward ran: the inference plan was not used")
    monkeypatch.setattr(trainer, "_forward", refuse)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("n", [1, 5, 300])  # one partial tile .. several chunks
def test_regressor_predict_unchanged(activation, n, rng, cpu_path, monkeypatch):
    X = rng.standard_normal((400, 6))
    y = X[:, :2] @ np.array([[1.0, -0.5], [0.5, 2.0]]) + 0.1 * rng.standard_normal((400, 2))
    est = MLPRegressor(hidden_layer_sizes=(16, 8), activation=activation, max_iter=5,
                       random_state=0).fit(X, y)
    Xt = rng.standard_normal((n, 6))
    ref = _old_forward(est, Xt).astype(np.float64)
    _no_trainer_forward(monkeypatch)
    got = est.predict(Xt)
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)
    # a row's prediction does not depend on the rows it came with (bitwise)
    for k in (1, 3):
        np.testing.assert_array_equal(est.predict(Xt[:k]), got[:k])


@pytest.mark.parametrize("activation", ACTS)
def test_classifier_predict_and_proba_unchanged(activation, rng, cpu_path, monkeypatch):
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)  # 3 classes
    est = MLPClassifier(hidden_layer_sizes=(12,), activation=activation, max_iter=5,
                        random_state=0).fit(X, y)
    Xt = rng.standard_normal((64, 5))
    z = _old_forward(est, Xt).astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    ref_p = e / e.sum(axis=1, keepdims=True)
    _no_trainer_forward(monkeypatch)
    p = est.predict_proba(Xt)
    np.testing.assert_allclose(p, ref_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(est.predict(Xt), est.classes_[np.argmax(p, axis=1)])


@pytest.mark.parametrize("acts", [None, [["tanh", 0.0, 0.0], ["gelu", 0.0, 0.0], None],
                                  [["leaky_relu", 0.1, 0.0], ["sigmoid", 0.0, 0.0], None]])
def test_cli_model_outputs_unchanged(acts, rng, cpu_path, monkeypatch):
    ws = [rng.standard_normal((8, 4)).astype(np.float32),
          rng.standard_normal((8, 8)).astype(np.float32),
          rng.standard_normal((2, 8)).astype(np.float32)]
    bs = [rng.standard_normal(w.shape[0]).astype(np.float32) for w in ws]
    relu = [True, True, False]
    meta = {} if acts is None else {"acts": acts}
    X32 = rng.standard_normal((50, 4)).astype(np.float32)
    ref = trainer._forward(cli.model_chain(ws, bs, relu, meta), X32).astype(np.float64)
    _no_trainer_forward(monkeypatch)
    got = cli.model_outputs(ws, bs, relu, meta, X32)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # a non-contiguous float64 input is converted, same result
    got2 = cli.model_outputs(ws, bs, relu, meta, np.asfortranarray(X32.astype(np.float64)))
    np.testing.assert_allclose(got2, got, rtol=0, atol=0)


def test_cli_predict_end_to_end(tmp_path, rng):
    X = rng.standard_normal((200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=y)
    model = tmp_path / "m.npz"
    assert main(["train", str(data), "--epochs", "2", "--no-progress", "--out", str(model)]) == 0
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(data), "--out", str(out)]) == 0
    ws, bs, relu, meta = cli.load_model(str(model))
    ref = trainer._forward(cli.model_chain(ws, bs, relu, meta), X.astype(np.float32))
    got = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-4, atol=1e-5)


def test_estimator_plan_follows_coefs(rng):
    """The plan reads coefs_ in place: in-place changes show, assigned arrays (another dtype or
    layout too) are used, and predict leaves the estimator's __dict__ as it was."""
    X = rng.standard_normal((100, 4))
    est = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, X[:, 0])
    Xt = rng.standard_normal((20, 4))
    before = dict(est.__dict__)
    p0 = est.predict(Xt)
    assert est.__dict__.keys() == before.keys()
    est.coefs_[1][...] *= 2.0  # in place: the output layer's weights doubled
    est.intercepts_[1][...] = 0.0
    np.testing.assert_allclose(est.predict(Xt), _old_forward(est, Xt).reshape(-1), rtol=1e-5,
                               atol=1e-5)
    assert not np.allclose(est.predict(Xt), p0)
    est.coefs_ = [np.asfortranarray(c.astype(np.float64)) for c in est.coefs_]  # assigned
    np.testing.assert_allclose(est.predict(Xt), _old_forward(est, Xt).reshape(-1), rtol=1e-5,
                               atol=1e-5)
