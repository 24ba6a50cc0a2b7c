"""fastmlp.onnx: every exported model run in ONNX Runtime against fastmlp's own forward; loading
graphs written by fastmlp, torch.onnx.export and skl2onnx; the estimators; the errors.

Layers that other parts of fastmlp add (GELU, LeakyReLU, LayerNorm, ...) are used from fastmlp.nn
when present; otherwise small stand-in modules of the same class names and attributes (defined
here, computing in numpy) exercise the exporter's class-name table and the loader.
"""
import math
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fastmlp  # noqa: E402
from fastmlp import nn  # noqa: E402
from fastmlp import onnx as fonnx  # noqa: E402
from fastmlp.autograd import Node  # noqa: E402
from fastmlp.nn.parameter import Parameter  # noqa: E402
from fastmlp.tensor import _wrap  # noqa: E402

TOL = 1e-5

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:Stochastic Optimizer")]


# ---- stand-ins for layers this branch may not have --------------------------------------------

class _StandinNode(Node):  # records the stand-in on the tape (no gradient: export only)
    __slots__ = ()
    name_ = "StandinBackward0"

    def backward(self, g):
        return (None,)


class _NumpyAct(nn.Module):
    def forward(self, x):
        y = self.fn(np.asarray(x._data, dtype=np.float64)).astype(np.float32)
        if x.requires_grad and fastmlp.is_grad_enabled():
            return _wrap(y, _StandinNode((x,)), True)
        return _wrap(y)


_erf = np.vectorize(math.erf)


def _sig(x):
    return 1 / (1 + np.exp(-x))


class GELU(_NumpyAct):
    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def fn(self, x):
        if self.approximate == "tanh":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


class SiLU(_NumpyAct):
    def fn(self, x):
        return x * _sig(x)


class LeakyReLU(_NumpyAct):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope

    def fn(self, x):
        return np.where(x > 0, x, x * self.negative_slope)


class ELU(_NumpyAct):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha

    def fn(self, x):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))


class Softplus(_NumpyAct):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def fn(self, x):
        return np.where(x * self.beta > self.threshold, x, np.logaddexp(0, self.beta * x) / self.beta)


class Hardtanh(_NumpyAct):
    def __init__(self, min_val=-1.0, max_val=1.0):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def fn(self, x):
        return np.clip(x, self.min_val, self.max_val)


class ReLU6(_NumpyAct):
    def fn(self, x):
        return np.clip(x, 0, 6)


class Softmax(_NumpyAct):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def fn(self, x):
        e = np.exp(x - x.max(self.dim, keepdims=True))
        return e / e.sum(self.dim, keepdims=True)


class LogSoftmax(Softmax):
    def fn(self, x):
        return np.log(super().fn(x))


class Dropout(nn.Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        keep = np.random.default_rng(0).random(x.shape) >= self.p
        return x * fastmlp.tensor((keep / (1 - self.p)).astype(np.float32))


class LayerNorm(_NumpyAct):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = tuple(normalized_shape) if hasattr(normalized_shape, "__iter__") \
            else (normalized_shape,)
        self.eps = eps
        rng = np.random.default_rng(3)
        self.weight = Parameter(rng.uniform(0.5, 1.5, self.normalized_shape).astype(np.float32))
        self.bias = Parameter(rng.uniform(-0.5, 0.5, self.normalized_shape).astype(np.float32))

    def fn(self, x):
        axes = tuple(range(x.ndim - len(self.normalized_shape), x.ndim))
        mu = x.mean(axes, keepdims=True)
        var = ((x - mu) ** 2).mean(axes, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.weight._data + self.bias._data


class BatchNorm1d(_NumpyAct):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        rng = np.random.default_rng(4)
        self.eps = eps
        self.weight = Parameter(rng.uniform(0.5, 1.5, num_features).astype(np.float32))
        self.bias = Parameter(rng.uniform(-0.5, 0.5, num_features).astype(np.float32))
        self.register_buffer("running_mean", fastmlp.tensor(rng.standard_normal(num_features)
                                                            .astype(np.float32)))
        self.register_buffer("running_var", fastmlp.tensor(rng.uniform(0.5, 2, num_features)
                                                           .astype(np.float32)))

    def fn(self, x):
        return ((x - self.running_mean._data) / np.sqrt(self.running_var._data + self.eps)
                * self.weight._data + self.bias._data)


STANDINS = {c.__name__: c for c in (GELU, SiLU, LeakyReLU, ELU, Softplus, Hardtanh, ReLU6, Softmax,
                                     LogSoftmax, Dropout, LayerNorm, BatchNorm1d)}


def layer(name, *args, **kwargs):
    """fastmlp.nn's layer when this build has it, else the stand-in."""
    return getattr(nn, name, STANDINS.get(name))(*args, **kwargs)


@pytest.fixture
def standin_nn(monkeypatch):
    """fastmlp.nn with the stand-ins for whatever it lacks (so load() can build them)."""
    for k, c in STANDINS.items():
        if not hasattr(nn, k):
            monkeypatch.setattr(nn, k, c, raising=False)


# ---- helpers ---------------------------------------------------------------------------------

def fwd(model, x):
    with fastmlp.no_grad():
        return model(fastmlp.tensor(x)).numpy()


def run_ort(proto_or_path, x, names=None):
    src = proto_or_path.SerializeToString() if hasattr(proto_or_path, "SerializeToString") \
        else str(proto_or_path)
    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return s.run(names, {"input": x})


def data(n=11, d=6, seed=0, scale=2.0):
    return (np.random.default_rng(seed).standard_normal((n, d)) * scale).astype(np.float32)


def check_export(model, tmp_path, x, opset=None, sample=None):
    path = tmp_path / "m.onnx"
    proto = fonnx.export(model, path, sample_input=sample, opset=opset)
    assert path.exists()
    got = run_ort(path, x)[0]
    want = fwd(model.eval(), x)  # the graph is the eval-mode model
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
    return proto


# ---- export: every layer kind ----------------------------------------------------------------

ACTS = [
    ("ReLU", (), {}), ("Tanh", (), {}), ("Sigmoid", (), {}),
    ("GELU", (), {}), ("GELU", (), {"approximate": "tanh"}), ("SiLU", (), {}),
    ("LeakyReLU", (0.2,), {}), ("ELU", (), {"alpha": 0.7}), ("Softplus", (), {}),
    ("Softplus", (), {"beta": 2.0}), ("Hardtanh", (-0.5, 0.8), {}), ("ReLU6", (), {}),
    ("Dropout", (0.3,), {}), ("Identity", (), {}),
]


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("name,args,kw", ACTS,
                         ids=[f"{a[0]}{'-' + str(a[2]) if a[2] else ''}{a[1] or ''}" for a in ACTS])
def test_activation_in_ort(name, args, kw, opset, tmp_path):
    fastmlp.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), layer(name, *args, **kw), nn.Linear(16, 5),
                          layer(name, *args, **kw), nn.Linear(5, 3))
    x = data(scale=3.0)
    proto = check_export(model, tmp_path, x, opset=opset)
    ops = [n.op_type for n in proto.graph.node]
    if name == "GELU":
        assert ("Gelu" in ops) == (opset >= 20)
        assert ("Erf" in ops) == (opset < 20 and not kw)
    if name in ("Dropout", "Identity"):
        assert ops == ["Gemm", "Gemm", "Gemm"]


@pytest.mark.parametrize("head", ["Softmax", "LogSoftmax"])
def test_softmax_heads(head, tmp_path):
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4), layer(head, dim=1))
    proto = check_export(model, tmp_path, data())
    assert proto.graph.node[-1].op_type == head


def test_layer_norm_batch_norm(tmp_path):
    model = nn.Sequential(nn.Linear(6, 12), layer("LayerNorm", 12), nn.ReLU(), nn.Linear(12, 8),
                          layer("BatchNorm1d", 8), nn.Tanh(), nn.Linear(8, 2))
    proto = check_export(model, tmp_path, data())
    ops = [n.op_type for n in proto.graph.node]
    assert "LayerNormalization" in ops and "BatchNormalization" in ops
    with pytest.raises(ValueError, match="LayerNorm needs opset >= 17"):
        fonnx.export(model, None, opset=16)


def test_export_keeps_training_mode(tmp_path):
    model = nn.Sequential(nn.Linear(6, 4), layer("Dropout", 0.5), nn.Linear(4, 1))
    model.train()
    fonnx.export(model, tmp_path / "m.onnx")
    assert all(m.training for m in model.modules())
    np.testing.assert_allclose(run_ort(tmp_path / "m.onnx", data())[0], fwd(model.eval(), data()),
                               rtol=TOL, atol=TOL)


def test_nested_sequential_and_flatten(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(12, 9), nn.ReLU()),
                          nn.Sequential(nn.Sequential(nn.Linear(9, 7), nn.Sigmoid())), nn.Linear(7, 2))
    x = np.random.default_rng(1).standard_normal((5, 3, 4)).astype(np.float32)
    proto = check_export(model, tmp_path, x, sample=x[:2])
    assert proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3
    assert proto.graph.node[0].op_type == "Flatten"


def test_linear_on_3d_input(tmp_path):
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    x = np.random.default_rng(2).standard_normal((5, 3, 4)).astype(np.float32)
    proto = check_export(model, tmp_path, x, sample=x)
    assert "MatMul" in [n.op_type for n in proto.graph.node]


def test_hand_written_forward(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 20)
            self.fc2 = nn.Linear(20, 10)
            self.act = layer("LeakyReLU", 0.1)
            self.fc3 = nn.Linear(10, 3)

        def forward(self, x):
            h = fastmlp.relu(self.fc1(x))
            h = self.act(self.fc2(h)).tanh()
            return self.fc3(h).sigmoid()

    proto = check_export(Net(), tmp_path, data())
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Relu", "Gemm", "LeakyRelu", "Tanh",
                                                     "Gemm", "Sigmoid"]


def test_seed_net_and_linear_without_bias(tmp_path):
    from fastmlp.cli import seed_net

    check_export(seed_net(0), tmp_path, data(d=10))
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 1, bias=False))
    proto = check_export(model, tmp_path, data())
    assert [len(n.input) for n in proto.graph.node if n.op_type == "Gemm"] == [2, 2]


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_dynamic_batch_names_metadata(batch, tmp_path):
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    proto = fonnx.export(model, tmp_path / "m.onnx")
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    props = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert props["fastmlp_version"] == fastmlp.__version__
    assert proto.producer_name == "fastmlp"
    x = data(n=batch)
    np.testing.assert_allclose(run_ort(tmp_path / "m.onnx", x)[0], fwd(model, x), rtol=TOL, atol=TOL)


def test_fixed_batch(tmp_path):
    model = nn.Sequential(nn.Linear(6, 2))
    proto = fonnx.export(model, None, sample_input=data(n=3), dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    np.testing.assert_allclose(run_ort(proto, data(n=3))[0], fwd(model, data(n=3)), rtol=TOL, atol=TOL)


# ---- errors ----------------------------------------------------------------------------------

def test_unsupported_op_is_named():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    model = nn.Sequential(nn.Linear(6, 4), Square(), nn.Linear(4, 1))
    with pytest.raises(ValueError, match=r"unsupported operation MulBackward0 in module '1' \(Square\)"):
        fonnx.export(model, None)


def test_untraceable_computation_is_refused():
    class Sneaky(nn.Module):  # a Linear module whose output is changed outside the tape
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            y = self.fc(x)
            y._data *= 2.0
            return y

    with pytest.raises(ValueError, match="do not reproduce its forward"):
        fonnx.export(Sneaky(), None)


def test_bad_arguments(tmp_path):
    model = nn.Sequential(nn.Linear(6, 2))
    with pytest.raises(ValueError, match="opset must be between"):
        fonnx.export(model, None, opset=7)
    with pytest.raises(TypeError, match="model must be a fastmlp nn.Module"):
        fonnx.export(object(), None)
    with pytest.raises(ValueError, match="no Linear layer"):
        fonnx.export(nn.Sequential(nn.ReLU()), None)
    with pytest.raises(FileNotFoundError):
        fonnx.load(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        fonnx.load(tmp_path / "junk.onnx")


def test_load_unsupported_operator_names_op_and_node():
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "W")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
                           helper.make_node("Cos", ["h"], ["y"], name="weird_cos")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match=r"unsupported operator Cos \(node 'weird_cos'\)"):
        fonnx.load(m)


# ---- load and round trips --------------------------------------------------------------------

def test_round_trip_fastmlp(tmp_path, standin_nn):
    fastmlp.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.LeakyReLU(0.05),
                          nn.Linear(12, 8), nn.GELU(), nn.Linear(8, 8), nn.SiLU(), nn.LayerNorm(8),
                          nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ELU(), nn.Linear(6, 5), nn.Softplus(),
                          nn.Linear(5, 5), nn.ReLU6(), nn.Linear(5, 4), nn.Hardtanh(-2, 2),
                          nn.Linear(4, 3), nn.LogSoftmax(dim=1)).eval()  # ONNX holds eval semantics
    x = data()
    for opset in (17, 20):
        fonnx.export(model, tmp_path / "a.onnx", opset=opset)
        back = fonnx.load(tmp_path / "a.onnx").eval()
        assert [type(m).__name__ for m in back] == [type(m).__name__ for m in model]
        np.testing.assert_allclose(fwd(back, x), fwd(model, x), rtol=TOL, atol=TOL)


def test_round_trip_torch(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
                             torch.nn.Tanh(), torch.nn.Linear(8, 4), torch.nn.Sigmoid(),
                             torch.nn.Linear(4, 2)).eval()
    x = data()
    torch.onnx.export(tm, (torch.from_numpy(x),), str(tmp_path / "t.onnx"), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
    model = fonnx.load(tmp_path / "t.onnx")  # torch -> ONNX -> fastmlp
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fwd(model, x), want, rtol=TOL, atol=TOL)
    fonnx.export(model, tmp_path / "f.onnx")  # -> ONNX again
    np.testing.assert_allclose(run_ort(tmp_path / "f.onnx", x)[0], want, rtol=TOL, atol=TOL)


def test_round_trip_torch_more_layers(tmp_path, standin_nn):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    T = torch.nn
    tm = T.Sequential(T.Flatten(), T.Linear(6, 16), T.GELU(), T.Linear(16, 12), T.LeakyReLU(0.1),
                      T.Dropout(0.2), T.Linear(12, 10), T.SiLU(), T.LayerNorm(10), T.Linear(10, 8),
                      T.BatchNorm1d(8), T.ELU(), T.Linear(8, 6), T.ReLU6(), T.Linear(6, 4),
                      T.Hardtanh(-1, 1.5), T.Linear(4, 3), T.Softmax(dim=1)).eval()
    with torch.no_grad():
        tm[10].running_mean.uniform_(-1, 1)
        tm[10].running_var.uniform_(0.5, 2)
    x = data()
    torch.onnx.export(tm, (torch.from_numpy(x),), str(tmp_path / "t.onnx"), dynamo=False,
                      opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    model = fonnx.load(tmp_path / "t.onnx")
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fwd(model, x), want, rtol=TOL, atol=TOL)
    names = [type(m).__name__ for m in model]
    assert "GELU" in names and "SiLU" in names and "LayerNorm" in names and "Softmax" in names
    fonnx.export(model, tmp_path / "f.onnx")
    np.testing.assert_allclose(run_ort(tmp_path / "f.onnx", x)[0], want, rtol=TOL, atol=TOL)


def test_load_skl2onnx(standin_nn):
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    X = data(n=80)
    r = MLPRegressor(hidden_layer_sizes=(8, 5), activation="tanh", max_iter=30,
                     random_state=0).fit(X, X[:, 0] - X[:, 1])
    m = fonnx.load(skl2onnx.to_onnx(r, X[:1]))
    np.testing.assert_allclose(fwd(m, X).ravel(), r.predict(X), rtol=TOL, atol=TOL)
    for y in ((X[:, 0] > 0).astype(int), (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)):
        c = MLPClassifier(hidden_layer_sizes=(7,), max_iter=30, random_state=0).fit(X, y)
        for opts in (None, {"zipmap": False}):
            m = fonnx.load(skl2onnx.to_onnx(c, X[:1], options=opts))
            np.testing.assert_allclose(fwd(m, X), c.predict_proba(X), rtol=TOL, atol=TOL)


# ---- estimators ------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fastmlp_regressor(tmp_path):
    pytest.importorskip("sklearn")
    from fastmlp.sklearn import MLPRegressor

    X = data(n=120)
    Y = np.stack([X[:, 0] * X[:, 1], X[:, 2]], 1)
    for y in (Y[:, 0], Y):
        est = MLPRegressor(hidden_layer_sizes=(16, 8), max_iter=5, random_state=0).fit(X, y)
        proto = fonnx.export(est, tmp_path / "r.onnx")
        assert [o.name for o in proto.graph.output] == ["predictions"]
        got = run_ort(tmp_path / "r.onnx", X)[0]
        np.testing.assert_allclose(got, est.predict(X).reshape(len(X), -1), rtol=TOL, atol=TOL)
        back = fonnx.load(tmp_path / "r.onnx")
        np.testing.assert_allclose(fwd(back, X), got, rtol=TOL, atol=TOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings", "multilabel"])
def test_classifier(kind, tmp_path):
    sk = pytest.importorskip("sklearn.neural_network")
    import fastmlp.sklearn as fsk

    X = data(n=150)
    y = {"binary": (X[:, 0] > 0).astype(int) * 3 - 1,
         "multiclass": (X[:, 0] > 0).astype(int) + (X[:, 1] > 0) * 2,
         "strings": np.array(["cat", "dog", "emu"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1)],
         "multilabel": np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0], 1).astype(int)}[kind]
    classes = [sk.MLPClassifier] + ([fsk.MLPClassifier] if hasattr(fsk, "MLPClassifier") else [])
    for cls in classes:
        kw = dict(solver="sgd") if cls is sk.MLPClassifier else {}
        try:
            est = cls(hidden_layer_sizes=(12,), activation="tanh" if kw else "relu", max_iter=20,
                      random_state=0, **kw).fit(X, y)
        except ValueError as e:  # fastmlp's classifier may not do every target kind
            if cls is sk.MLPClassifier:
                raise
            pytest.skip(f"fastmlp MLPClassifier: {e}")
        proto = fonnx.export(est, tmp_path / "c.onnx")
        assert [o.name for o in proto.graph.output] == ["label", "probabilities"]
        label, proba = run_ort(tmp_path / "c.onnx", X)
        np.testing.assert_allclose(proba, est.predict_proba(X), rtol=TOL, atol=TOL)
        np.testing.assert_array_equal(label.astype(np.asarray(est.predict(X)).dtype), est.predict(X))


def test_unfitted_estimator():
    pytest.importorskip("sklearn")
    from fastmlp.sklearn import MLPRegressor

    with pytest.raises(ValueError, match="not fitted"):
        fonnx.export(MLPRegressor(), None)


# ---- CLI -------------------------------------------------------------------------------------

def test_cli_export(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3)) * [1, 10, 100] + [0, 5, -50]
    y = X[:, 0] - 0.1 * X[:, 1] + 0.01 * X[:, 2]
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header="a,b,c,t", comments="")
    run = [sys.executable, "-m", "fastmlp"]
    subprocess.run(run + ["train", str(csv), "--target", "t", "--hidden", "8", "--epochs", "2",
                          "--standardize", "--out", str(tmp_path / "m.npz"), "--no-progress"],
                   check=True, capture_output=True)
    r = subprocess.run(run + ["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    subprocess.run(run + ["predict", str(tmp_path / "m.npz"), str(csv), "--out",
                          str(tmp_path / "p.csv")], check=True, capture_output=True)
    want = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    got = run_ort(tmp_path / "m.onnx", X.astype(np.float32))[0].ravel()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    props = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert props["features"] == '["a", "b", "c"]'
    r = subprocess.run(run + ["export", str(tmp_path / "nope.npz"), str(tmp_path / "x.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such model file" in r.stderr


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_fastmlp_classifier_exports_label_and_probabilities(tmp_path, activation):
    import warnings

    from sklearn.datasets import load_iris

    from fastmlp.sklearn import MLPClassifier

    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = MLPClassifier(hidden_layer_sizes=(16,), activation=activation, max_iter=30,
                          random_state=0).fit(X, y)
    fonnx.export(c, tmp_path / "c.onnx")
    label, proba = run_ort(tmp_path / "c.onnx", X.astype(np.float32), ["label", "probabilities"])
    np.testing.assert_allclose(proba, c.predict_proba(X), rtol=1e-5, atol=1e-6)
    assert (label == c.predict(X)).all()
