"""The subcommands of ``python -m fastmlp``: ``demo``, ``train``, ``predict``, ``export``, ``bench``.

``train`` fits a regressor (numeric targets) or, with ``--task classify``, a classifier of one
label column (text or whole numbers), with the loss, optimizer, activation, dropout and early
stopping of ``fastmlp.fit``; the model file (format version 2) keeps what ``predict`` needs: the
layers, each layer's activation, the task and the class list. ``predict`` writes a classifier's
label and ``prob_<class>`` columns.

Errors a user can cause (a bad file, a missing column, non-numeric data, an unavailable device or
optional package) print one line on stderr and exit with status 2, without a traceback. Input
values must fit in float32 (the kernels' precision): a value that overflows it is refused with
its column and row, as are complex data, duplicate column names and predictions that overflow.
A CSV may start with a UTF-8 byte-order mark. ``predict ... | head`` stops quietly when the reader
goes away (exit status 141, as a process ended by SIGPIPE).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODEL_FORMAT = "fastmlp-mlp"
# 2: meta gains task, classes, loss, activation and acts (each layer's activation); a version-1
# file (ReLU flags only, a regressor) loads as before.
MODEL_VERSION = 2


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


_F32_MAX = float(np.finfo(np.float32).max)


def _check_f32_range(data, columns, path, rows=None):
    """CLIError naming the first value (column, row) whose magnitude overflows float32; NaN/inf
    are left to the callers' own checks. rows: the file line of each data row (CSV), or None
    (0-based indices, NPZ)."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(data) > _F32_MAX
    if not bad.any():
        return
    r, c = (int(v[0]) for v in np.nonzero(bad))
    where = f"row {rows[r]}" if rows is not None else f"row index {r}"
    raise CLIError(f"{path}: {where}, column '{columns[c]}': {data[r, c]!r} overflows float32 "
                   f"(largest finite value {_F32_MAX:.6g}); rescale the data")


def _check_unique(header, path):
    seen, dup = set(), []
    for h in header:
        if h in seen and h not in dup:
            dup.append(h)
        seen.add(h)
    if dup:
        raise CLIError(f"{path}: duplicate column names {', '.join(repr(d) for d in dup)}; every "
                       "column needs its own name")


# ---- data files ------------------------------------------------------------------------------

def read_table(path, columns=None, one_hot=False, categories=None, raw=()):
    """A CSV (header row), Parquet, Feather or NPZ file as {"columns": [...], "data": (n, k)
    float64} or {"X": array, "y": array}; see :mod:`fastmlp.datafiles` (vectorised parsing,
    ``columns`` to select, text columns one-hot encoded or refused, ``raw`` columns returned
    unencoded in ``table["raw"]``)."""
    from .datafiles import DataFileError
    from .datafiles import read_table as _read

    try:
        return _read(path, columns=columns, one_hot=one_hot, categories=categories, raw=raw)
    except DataFileError as e:
        raise CLIError(str(e)) from None


def _parse_columns(text):
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise CLIError(f"--columns: expected comma-separated column names, got {text!r}")
    return cols


def split_xy(table, target, path):
    """(X, y, feature names, target names) from a table and the --target option."""
    if "X" in table:
        X, y = table["X"], table["y"]
        feats = [f"x{i}" for i in range(X.shape[1])]
        targets = ["y"] if y.ndim == 1 else [f"y{i}" for i in range(y.shape[1])]
        return X, y.reshape(len(y), -1), feats, targets
    cols = table["columns"]
    if not target:
        raise CLIError(f"{path}: --target COLUMN is required (columns: {', '.join(cols)})")
    targets = [t.strip() for t in target.split(",") if t.strip()]
    missing = [t for t in targets if t not in cols]
    if missing:
        raise CLIError(f"{path}: no column {missing[0]!r} (columns: {', '.join(cols)})")
    feats = [c for c in cols if c not in targets]
    if not feats:
        raise CLIError(f"{path}: no feature columns left besides the target")
    data = table["data"]
    X = data[:, [cols.index(c) for c in feats]]
    y = data[:, [cols.index(t) for t in targets]]
    return X, y, feats, targets


def features_for(table, feats, path):
    if "X" in table:
        X = table["X"]
        if X.shape[1] != len(feats):
            raise CLIError(f"{path}: X has {X.shape[1]} features, the model takes {len(feats)}")
        return X
    cols = table["columns"]
    missing = [f for f in feats if f not in cols]
    if missing:
        raise CLIError(f"{path}: no column {missing[0]!r} that the model needs "
                       f"(model features: {', '.join(feats)})")
    return table["data"][:, [cols.index(f) for f in feats]]


# ---- models on disk --------------------------------------------------------------------------

def save_model(path, weights, biases, relu, meta):
    obj = {"format": MODEL_FORMAT, "version": MODEL_VERSION,
           "layers": [{"weight": np.asarray(w), "bias": np.asarray(b)} for w, b in zip(weights, biases)],
           "relu": list(relu), "meta": json.dumps(meta)}
    try:
        import fastmlp

        fastmlp.save(obj, path)
    except OSError as e:
        raise CLIError(f"{path}: cannot write the model ({e.strerror or e})") from None


def load_model(path):
    """(weights, biases, relu, meta) from a file save_model wrote, checked for consistency."""
    try:
        ws, bs, relu, meta = _load_model_parts(path)
        feats, targets = meta["features"], meta["targets"]
        ok = (len(ws) == len(bs) == len(relu) >= 1 and isinstance(feats, list) and isinstance(targets, list)
              and all(w.ndim == 2 for w in ws) and ws[0].shape[1] == len(feats)
              and all(ws[i].shape[1] == ws[i - 1].shape[0] for i in range(1, len(ws)))
              and all(b.shape == (w.shape[0],) for w, b in zip(ws, bs)))
        ok = ok and ws[-1].shape[0] == _model_outputs_expected(meta, path)
        acts = meta.get("acts")
        if ok and acts is not None:
            from .tracing import ACT_KINDS

            ok = isinstance(acts, list) and len(acts) == len(ws) and all(
                a is None or (isinstance(a, list) and len(a) == 3 and a[0] in ACT_KINDS
                              and all(isinstance(v, (int, float)) for v in a[1:])) for a in acts)
    except CLIError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CLIError(f"{path}: not a valid fastmlp model file ({type(e).__name__}: {e})") from None
    if not ok:
        raise CLIError(f"{path}: not a valid fastmlp model file (inconsistent layer shapes)")
    return ws, bs, relu, meta


def _model_outputs_expected(meta, path):
    """The output width a model's metadata implies: one per target (regression), one per class
    (cross-entropy), or one logit (a binary bce_with_logits classifier)."""
    task = meta.get("task", "regress")  # files written before --task are regressors
    if task == "regress":
        return len(meta["targets"])
    if task != "classify":
        raise CLIError(f"{path}: not a valid fastmlp model file (unknown task {task!r})")
    classes = meta["classes"]
    if not (isinstance(classes, list) and len(classes) >= 2 and len(meta["targets"]) == 1
            and all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes)):
        raise CLIError(f"{path}: not a valid fastmlp model file (bad class list)")
    loss = meta.get("loss", "cross_entropy")
    if loss not in CLASSIFICATION_LOSSES:
        raise CLIError(f"{path}: not a valid fastmlp model file (loss {loss!r} for a classifier)")
    return 1 if loss == "bce_with_logits" else len(classes)


def _load_model_parts(path):
    """The parts of a model file, read only through fastmlp.load (no other loader: a crafted or
    foreign file is refused by load's checks before anything is inflated)."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such model file")
    if p.is_dir():
        raise CLIError(f"{path}: is a directory, expected a model file")
    import fastmlp

    try:
        obj = fastmlp.load(str(p))
    except (ValueError, OSError) as e:
        msg = str(e).replace("fastmlp.load: ", "")
        if "without fastmlp metadata" in msg:  # e.g. a data .npz passed as the model
            raise CLIError(f"{path}: not a fastmlp model file (train one with `python -m fastmlp "
                           "train ... --out model.npz`)") from None
        raise CLIError(f"not a readable fastmlp model file ({msg})") from None
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise CLIError(f"{path}: not a fastmlp model file (train one with `python -m fastmlp "
                       "train ... --out model.npz`)")
    version = obj.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > MODEL_VERSION:
        raise CLIError(f"{path}: model file version {version!r} is newer than this fastmlp reads "
                       f"(up to {MODEL_VERSION}); upgrade fastmlp")

    def arr(t):
        return np.ascontiguousarray(t.numpy() if hasattr(t, "numpy") else t, dtype=np.float32)

    ws = [arr(layer["weight"]) for layer in obj["layers"]]
    bs = [arr(layer["bias"]) for layer in obj["layers"]]
    return ws, bs, [bool(r) for r in obj["relu"]], json.loads(obj["meta"])


# ---- demo ------------------------------------------------------------------------------------

def teacher_data(n, seed, d_in=10, noise=0.1):
    """A fixed random teacher network 10 -> 32 -> 1 (ReLU) plus Gaussian noise; deterministic."""
    t = np.random.default_rng(1000 + seed)
    W1 = t.standard_normal((32, d_in)) / np.sqrt(d_in)
    b1 = t.standard_normal(32) * 0.1
    W2 = t.standard_normal((1, 32)) / np.sqrt(32)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in))
    y = np.maximum(X @ W1.T + b1, 0) @ W2.T + noise * rng.standard_normal((n, 1))
    return X.astype(np.float32), y.astype(np.float32)


def seed_net(seed):
    """The seed's network, 10 -> 20 -> 1 with ReLU, as fastmlp.nn modules."""
    import fastmlp
    from fastmlp import nn

    fastmlp.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(10, 20)
            self.fc2 = nn.Linear(20, 1)

        def forward(self, x):
            return self.fc2(fastmlp.relu(self.fc1(x)))

    return Net()


def torch_eager_rate(X, y, batch, lr, threads, steps):
    """Samples/s of PyTorch's eager loop (seed net, SGD) over `steps` batches, or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    perm = torch.randperm(len(Xt))
    t0 = None
    for i in range(steps + 20):
        if i == 20:
            t0 = time.perf_counter()
        idx = perm[(i * batch) % (len(Xt) - batch):][:batch]
        loss = loss_fn(model(Xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def cmd_demo(args):
    import fastmlp
    from .trainer import fit, predict

    if args.threads:
        _set_threads(args.threads)
    threads = fastmlp.get_num_threads()
    X, y = teacher_data(args.samples + args.test_samples, args.seed)
    Xtr, ytr = X[:args.samples], y[:args.samples]
    Xte, yte = X[args.samples:], y[args.samples:]
    model = seed_net(args.seed)
    print(f"fastmlp demo: the seed network 10 -> 20 (ReLU) -> 1, SGD lr {args.lr}, batch "
          f"{args.batch_size}, {args.epochs} epochs of {args.samples:,} samples "
          f"(synthetic teacher-network regression, seed {args.seed}), {threads} threads")
    h = fit(model, Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            seed=args.seed, progress=args.progress)
    for e, loss in enumerate(h["loss"]):
        print(f"  epoch {e + 1}: train loss {loss:.5f}  ({h['epoch_samples_per_sec'][e] / 1e6:.2f} M samples/s)")
    t0 = time.perf_counter()
    pred = predict(model, Xte)
    t_inf = time.perf_counter() - t0
    train_mse = float(np.mean((predict(model, Xtr).astype(np.float64) - ytr) ** 2))
    test_mse = float(np.mean((pred.astype(np.float64) - yte) ** 2))
    base = float(np.mean((yte - ytr.mean()) ** 2))
    print(f"train MSE {train_mse:.5f}   test MSE {test_mse:.5f}   (predicting the mean: {base:.5f})")
    rate = float(np.median(h["epoch_samples_per_sec"]))
    print(f"fused training: {rate / 1e6:.2f} M samples/s (median epoch; "
          f"{h['seconds']:.3f} s in all for {args.epochs * args.samples:,} samples); "
          f"inference {len(Xte) / t_inf / 1e6:.1f} M samples/s")
    if not args.no_torch:
        trate = torch_eager_rate(Xtr, ytr, args.batch_size, args.lr, threads, steps=args.torch_steps)
        if trate is None:
            print("PyTorch is not installed: no eager comparison")
        else:
            print(f"PyTorch eager (same net, batch, {threads} threads, {args.torch_steps} timed steps): "
                  f"{trate / 1e6:.3f} M samples/s -> fused is {rate / trate:.0f}x faster")
    return 0


# ---- train / predict -------------------------------------------------------------------------

def _parse_hidden(text):
    if text is None or text.strip() == "":
        return []
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CLIError(f"--hidden: expected comma-separated layer widths like 64,64, got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise CLIError(f"--hidden: layer widths must be positive, got {text!r}")
    return sizes


def _set_threads(n):
    import fastmlp

    try:
        fastmlp.set_num_threads(n)
    except ValueError as e:
        raise CLIError(f"--threads: {e}") from None


TASKS = ("regress", "classify")
REGRESSION_LOSSES = ("mse", "l1", "huber")
CLASSIFICATION_LOSSES = ("cross_entropy", "bce_with_logits")
# --optimizer -> the learning rate used when --lr is not given (PyTorch's defaults; SGD has none
# in PyTorch, 0.01 is this command's)
OPTIMIZERS = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-2}
# --activation -> the fastmlp.nn module between the Linear layers (None: nothing)
ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "GELU", "silu": "SiLU",
               "leaky_relu": "LeakyReLU", "elu": "ELU", "softplus": "Softplus", "identity": None}


def _choice(value, choices, option):
    v = value.strip().lower().replace("-", "_")
    if v not in choices:
        raise CLIError(f"{option}: unknown value {value!r}; expected one of {', '.join(choices)}")
    return v


def _check_hyper(value, option, lo=0.0, below=None):
    """A float option that is finite, >= lo (and < below), and representable in float32."""
    from .hyperparams import f32_problem

    why = f32_problem(value)
    if why is None and not value >= lo:
        why = f"must be >= {lo:g}"
    if why is None and below is not None and not value < below:
        why = f"must be < {below:g}"
    if why:
        raise CLIError(f"{option} {value!r} {why}")
    return value


def _parse_betas(text):
    try:
        b = tuple(float(v) for v in text.split(","))
    except ValueError:
        b = ()
    if len(b) != 2:
        raise CLIError(f"--betas: expected two numbers like 0.9,0.999, got {text!r}")
    for i, v in enumerate(b):
        if not 0.0 <= v < 1.0:
            raise CLIError(f"--betas: beta{i + 1} must be in [0, 1), got {v!r}")
    return b


def _optimizer_options(args):
    """(name, lr, hyper-parameters for fit) from --optimizer, --lr, --momentum, --betas, ..."""
    name = _choice(args.optimizer, tuple(OPTIMIZERS), "--optimizer")
    lr = OPTIMIZERS[name] if args.lr is None else args.lr
    if not (lr > 0 and lr != float("inf")):
        raise CLIError(f"--lr must be a finite number > 0, got {lr}")
    _check_hyper(lr, "--lr")
    hyper = {}
    if args.momentum is not None:
        if name not in ("sgd", "rmsprop"):
            raise CLIError(f"--momentum is an option of --optimizer sgd and rmsprop, not {name} "
                           "(Adam's momentum terms are --betas)")
        hyper["momentum"] = _check_hyper(args.momentum, "--momentum")
    if args.nesterov:
        if name != "sgd":
            raise CLIError(f"--nesterov is an option of --optimizer sgd, not {name}")
        if not hyper.get("momentum"):
            raise CLIError("--nesterov needs a --momentum > 0")
        hyper["nesterov"] = True
    if args.weight_decay is not None:
        hyper["weight_decay"] = _check_hyper(args.weight_decay, "--weight-decay")
    if args.betas is not None:
        if name not in ("adam", "adamw"):
            raise CLIError(f"--betas is an option of --optimizer adam and adamw, not {name}")
        hyper["betas"] = _parse_betas(args.betas)
    if args.eps is not None:
        if name == "sgd":
            raise CLIError("--eps is an option of --optimizer adam, adamw and rmsprop, not sgd")
        if not args.eps > 0:
            raise CLIError(f"--eps must be > 0, got {args.eps!r}")
        hyper["eps"] = _check_hyper(args.eps, "--eps")
    if args.alpha is not None:
        if name != "rmsprop":
            raise CLIError(f"--alpha is an option of --optimizer rmsprop, not {name}")
        hyper["alpha"] = _check_hyper(args.alpha, "--alpha")
    return name, lr, hyper


def _class_labels(raw, path, column):
    """(classes, class index per row) of a categorical target: text labels, or numbers that are
    all whole (e.g. 0/1/2 or 3.0); classes sorted, as scikit-learn's classes_."""
    raw = np.asarray(raw)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw.reshape(-1)
    if raw.ndim != 1:
        raise CLIError(f"{path}: --task classify needs one target column, got y of shape {raw.shape}")
    if raw.dtype.kind in "US":
        lab = np.char.strip(raw.astype(str))
        empty = np.nonzero(lab == "")[0]
        if len(empty):
            raise CLIError(f"{path}: the target column {column!r} is empty in data row index "
                           f"{int(empty[0])}; every row needs a class label")
        classes, idx = np.unique(lab, return_inverse=True)
        return [str(c) for c in classes], idx.astype(np.int64)
    if raw.dtype.kind == "b":
        raw = raw.astype(np.int64)
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            r = int(np.nonzero(bad)[0][0])
            raise CLIError(f"{path}: the target column {column!r} holds {float(raw[r])!r} (data row "
                           f"index {r}); --task classify needs class labels (text or whole numbers), "
                           f"for a numeric target use --task regress")
        if np.abs(raw).max() >= 2 ** 53:
            raise CLIError(f"{path}: the target column {column!r} holds labels too large to be "
                           "exact; use text labels")
        raw = raw.astype(np.int64)
    if raw.dtype.kind not in "iu":
        raise CLIError(f"{path}: the target column {column!r} has dtype {raw.dtype}, not class labels")
    classes, idx = np.unique(raw, return_inverse=True)
    return [int(c) for c in classes], idx.astype(np.int64)


def classification_metrics(y_true, y_pred, n_classes):
    """(accuracy, macro F1, confusion matrix (true, predicted)) of class indices; a class absent
    from both the truth and the predictions is left out of the macro mean, as scikit-learn's
    f1_score(average='macro', labels=None) does for the labels it sees."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    denom = support + predicted
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0)
    acc = float(tp.sum() / max(cm.sum(), 1))
    return acc, float(f1[present].mean()) if present.any() else 0.0, cm


def _probabilities(logits, loss):
    """Class probabilities (n, classes) from the network's outputs."""
    z = logits.astype(np.float64)
    if loss == "bce_with_logits":  # one logit: P(second class)
        e = np.exp(-np.abs(z[:, 0]))  # no overflow for large |logit|
        p1 = np.where(z[:, 0] >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return np.column_stack([1.0 - p1, p1])
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _npz_names(path):
    """The array names of an .npz file (read lazily: no array is loaded), or None for another
    or an unreadable file (read_table then names what is wrong)."""
    if not str(path).lower().endswith(".npz") or not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return list(z.files)
    except Exception:  # noqa: BLE001 - any unreadable file: read_table reports it
        return None


def _read_training_data(args):
    """(X, y, feature names, target names, categories, class list or None, table) for train."""
    classify = args.task == "classify"
    columns = _parse_columns(args.columns)
    if columns and args.target:
        columns = columns + [t.strip() for t in args.target.split(",")
                             if t.strip() and t.strip() not in columns]
    if not classify:
        try:
            table = read_table(args.data, columns=columns, one_hot=args.one_hot)
        except CLIError as e:  # a text target: say what to do with class labels
            for t in (args.target or "").split(","):
                t = t.strip()
                if t and (f"column {t!r} holds text" in str(e) or f"array {t!r} is not numeric" in str(e)):
                    raise CLIError(f"{args.data}: the target column {t!r} holds text; for class "
                                   f"labels use --task classify") from None
            raise
        X, y, feats, targets = split_xy(table, args.target, args.data)
        categories = table.get("categories") or {}
        bad_t = [t for t in targets if any(t.startswith(c + "=") for c in categories)]
        if bad_t:
            raise CLIError(f"{args.data}: the target column {bad_t[0].split('=')[0]!r} holds text; "
                           f"for class labels use --task classify, else give a numeric target")
        return X, y, feats, targets, categories, None
    targets = [t.strip() for t in (args.target or "").split(",") if t.strip()]
    if len(targets) > 1:
        raise CLIError(f"--task classify takes one target column, got {', '.join(targets)}")
    if not targets:  # only an NPZ of arrays X and y needs no --target
        if Path(args.data).suffix.lower() == ".npz" and Path(args.data).is_file():
            names = _npz_names(args.data) or []
            if names and not {"X", "y"} <= set(names):
                raise CLIError(f"{args.data}: --target COLUMN is required (columns: {', '.join(names)})")
        else:
            split_xy(read_table(args.data, columns=columns, one_hot=args.one_hot), None, args.data)
    table = read_table(args.data, columns=columns, one_hot=args.one_hot, raw=targets or ["y"])
    if "X" in table:
        X, labels, feats, targets = table["X"], table["raw"]["y"], \
            [f"x{i}" for i in range(table["X"].shape[1])], ["y"]
    else:
        X, labels, feats = table["data"], table["raw"][targets[0]], table["columns"]
    classes, yi = _class_labels(labels, args.data, targets[0])
    if len(classes) < 2:
        raise CLIError(f"{args.data}: the target column {targets[0]!r} holds one class "
                       f"({classes[0]!r}); a classifier needs at least two")
    return X, yi, feats, targets, table.get("categories") or {}, classes


def cmd_train(args):
    import fastmlp
    from .trainer import NonFiniteLossError, fit

    hidden = _parse_hidden(args.hidden)
    task = _choice(args.task, TASKS, "--task")
    args.task = task
    classify = task == "classify"
    allowed = CLASSIFICATION_LOSSES if classify else REGRESSION_LOSSES
    loss = allowed[0] if args.loss is None else \
        _choice(args.loss, REGRESSION_LOSSES + CLASSIFICATION_LOSSES, "--loss")
    if loss not in allowed:
        raise CLIError(f"--loss {loss} is a {'regression' if classify else 'classification'} loss; "
                       f"--task {task} takes {', '.join(allowed)}"
                       + ("" if classify else " (for class labels use --task classify)"))
    if args.huber_delta is not None:
        if loss != "huber":
            raise CLIError("--huber-delta is an option of --loss huber")
        if not args.huber_delta > 0:
            raise CLIError(f"--huber-delta must be > 0, got {args.huber_delta!r}")
        _check_hyper(args.huber_delta, "--huber-delta")
    activation = _choice(args.activation, tuple(ACTIVATIONS), "--activation")
    if not (0.0 <= args.dropout < 1.0):
        raise CLIError(f"--dropout must be a probability in [0, 1), got {args.dropout!r}")
    opt_name, lr, hyper = _optimizer_options(args)
    if args.patience is not None and not args.early_stopping:
        raise CLIError("--patience is the patience of --early-stopping; pass --early-stopping too")
    patience = 10 if args.patience is None else args.patience
    if args.early_stopping and patience < 1:
        raise CLIError(f"--patience must be >= 1, got {patience}")
    _check_hyper(args.min_delta, "--min-delta")
    if args.device == "cuda":
        from . import ops_cuda

        if not fastmlp.cuda.is_available():
            raise CLIError(f"--device cuda: CUDA is not available ({fastmlp.cuda.unavailable_reason()})")
        reason = ops_cuda.unavailable_reason()  # e.g. CuPy missing
        if reason:
            raise CLIError(f"--device cuda: cannot train on the GPU ({reason})")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    val_split = args.val_split
    if val_split is None:  # --early-stopping holds out 10% as scikit-learn's early_stopping does
        val_split = 0.1 if args.early_stopping else 0.0
    if not 0.0 <= val_split < 1.0:
        raise CLIError(f"--val-split must be in [0, 1), got {val_split}")
    if args.early_stopping and val_split == 0:
        raise CLIError("--early-stopping needs validation rows: give --val-split > 0 (default 0.1)")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if getattr(args, name) > (1 << 63) - 1:
            raise CLIError(f"--{name.replace('_', '-')} {getattr(args, name)} is too large (at most "
                           f"{(1 << 63) - 1})")
    if args.threads:
        _set_threads(args.threads)
    X, y, feats, targets, categories, classes = _read_training_data(args)
    if not (np.isfinite(X).all() and (classify or np.isfinite(y).all())):
        raise CLIError(f"{args.data}: the data holds NaN or infinite values")
    if loss == "bce_with_logits" and len(classes) != 2:
        raise CLIError(f"--loss bce_with_logits is binary classification; the target column "
                       f"{targets[0]!r} holds {len(classes)} classes (use --loss cross_entropy)")
    n = len(X)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    n_val = int(round(n * val_split))
    if val_split > 0 and (n_val < 1 or n - n_val < 1):
        raise CLIError(f"--val-split {val_split} leaves no validation or no training rows of {n}")
    tr, va = order[n_val:], order[:n_val]
    stats = None
    if args.standardize:
        xm, xs = X[tr].mean(0), X[tr].std(0)
        xs[xs == 0] = 1.0
        stats = {"x_mean": xm.tolist(), "x_std": xs.tolist()}
        Xs = (X - xm) / xs
        if classify:
            ys_ = y
        else:
            ym, ys = y[tr].mean(0), y[tr].std(0)
            ys[ys == 0] = 1.0
            stats.update(y_mean=ym.tolist(), y_std=ys.tolist())
            ys_ = (y - ym) / ys
    else:
        Xs, ys_ = X, y
    Xs = Xs.astype(np.float32)
    if classify:
        ys_ = ys_.astype(np.float32).reshape(-1, 1) if loss == "bce_with_logits" else ys_
        n_out = 1 if loss == "bce_with_logits" else len(classes)
    else:
        ys_ = ys_.astype(np.float32)
        n_out = y.shape[1]
    from fastmlp import nn

    fastmlp.manual_seed(args.seed)
    widths = [X.shape[1]] + hidden + [n_out]
    mods = []
    for i in range(len(widths) - 1):
        mods.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            if ACTIVATIONS[activation]:
                mods.append(getattr(nn, ACTIVATIONS[activation])())
            if args.dropout > 0:
                mods.append(nn.Dropout(args.dropout))
    model = nn.Sequential(*mods)
    if args.device == "cuda":
        model = model.to("cuda")  # fit trains a GPU model on the GPU
    what = f"{len(classes)}-class classifier, " if classify else ""
    print(f"training {what}{' -> '.join(map(str, widths))} ({activation}"
          + (f", dropout {args.dropout:g}" if args.dropout else "") + f") on {len(tr):,} rows"
          + (f", validating on {len(va):,}" if n_val else "")
          + f"; {args.epochs} epochs, batch {args.batch_size}, {loss} loss, {opt_name} lr {lr:g}"
          + "".join(f", {k} {v}" for k, v in hyper.items())
          + (f", early stopping (patience {patience})" if args.early_stopping else "")
          + (", standardized" if stats else "")
          + (f", on {fastmlp.cuda.get_device_name(fastmlp.cuda.current_device())}"
             if args.device == "cuda" else ""))
    loss_arg = loss
    if loss == "huber" and args.huber_delta is not None:
        loss_arg = nn.HuberLoss(delta=args.huber_delta)
    try:
        h = fit(model, Xs[tr], ys_[tr], epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                loss=loss_arg, optimizer=opt_name, seed=args.seed,
                validation_data=(Xs[va], ys_[va]) if n_val else None, progress=args.progress,
                patience=patience if args.early_stopping else None,
                min_delta=args.min_delta, restore_best_weights=True, **hyper)
    except NonFiniteLossError as e:
        raise CLIError(str(e).replace("fit: ", "training failed: ")) from None
    except (ValueError, TypeError) as e:  # an option combination fit refuses (checked first)
        raise CLIError(str(e).replace("fit: ", "")) from None
    from .trainer import _host, extract_chain, predict

    chain = extract_chain(model)
    if args.early_stopping:
        best = h.get("best_epoch")
        ran = len(h["loss"])
        print(("early stopping: stopped after " if ran < args.epochs else
               "early stopping: did not stop, ") + f"{ran} of {args.epochs} epochs; best validation "
              f"loss at epoch {best + 1}" + (" (its weights kept)" if best + 1 < ran else ""))
    cm = None
    if classify:
        def metrics(idx):
            pr = _probabilities(_host(predict(model, Xs[idx])), loss)
            return classification_metrics(y[idx], pr.argmax(1), len(classes))

        tr_acc, tr_f1, cm = metrics(tr)
        print(f"final train loss {h['loss'][-1]:.6g}; train accuracy {tr_acc:.4f}, macro F1 {tr_f1:.4f}")
        result = {"train_accuracy": tr_acc, "train_f1_macro": tr_f1,
                  "samples_per_sec": h["samples_per_sec"]}
        if n_val:
            va_acc, va_f1, cm = metrics(va)
            print(f"validation accuracy {va_acc:.4f}, macro F1 {va_f1:.4f}")
            result.update(val_accuracy=va_acc, val_f1_macro=va_f1)
    else:
        def metrics(idx):
            p = _host(predict(model, Xs[idx])).astype(np.float64)
            if stats:
                p = p * np.asarray(stats["y_std"]) + np.asarray(stats["y_mean"])
            t = y[idx]
            mse = float(np.mean((p - t) ** 2))
            var = float(np.mean((t - t.mean(0)) ** 2))
            return mse, (1.0 - mse / var) if var > 0 else float("nan")

        tr_mse, tr_r2 = metrics(tr)
        print(f"final train loss {h['loss'][-1]:.6g}; train MSE {tr_mse:.6g}, R2 {tr_r2:.4f}")
        result = {"train_mse": tr_mse, "train_r2": tr_r2, "samples_per_sec": h["samples_per_sec"]}
        if n_val:
            va_mse, va_r2 = metrics(va)
            print(f"validation MSE {va_mse:.6g}, R2 {va_r2:.4f}")
            result.update(val_mse=va_mse, val_r2=va_r2)
    result["epochs_run"] = len(h["loss"])
    if "best_epoch" in h:
        result["best_epoch"] = int(h["best_epoch"]) + 1  # 1-based, as printed
    print(f"{h['samples_per_sec'] / 1e6:.2f} M samples/s, {h['seconds']:.3f} s")
    if args.out:
        acts = [list(a) if a is not None else None for a in
                (chain.acts or [("relu", 0.0, 0.0) if r else None for r in chain.relu])]
        meta = {"features": feats, "targets": targets, "hidden": hidden, "standardize": stats,
                "categories": categories or None,
                "metrics": result, "epochs": args.epochs, "lr": lr, "batch_size": args.batch_size,
                "task": task, "loss": loss, "optimizer": opt_name, "activation": activation,
                "dropout": args.dropout, "acts": acts,
                "history": {"loss": list(h["loss"]), "val_loss": list(h["val_loss"])}}
        if classify:
            meta["classes"] = classes
        save_model(args.out, [_host(w) for w in chain.weights], [_host(b) for b in chain.biases],
                   [bool(a is not None and a[0] == "relu") for a in acts], meta)
        print(f"model saved to {args.out}")
    if args.plot:
        _plot(args.plot, h, stats, loss, classes, cm, bool(n_val))
    return 0


def _plot(path, h, stats, loss, classes, cm, validated):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if cm is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        k = len(classes)
        fig, (ax, cax) = plt.subplots(1, 2, figsize=(6 + max(4.0, 0.45 * k), 4.5),
                                      gridspec_kw={"width_ratios": [1.4, 1]})
    ep = np.arange(1, len(h["loss"]) + 1)
    ax.plot(ep, h["loss"], label="train loss")
    if h["val_loss"]:
        ax.plot(ep, h["val_loss"], label="validation loss")
    if "best_epoch" in h:
        ax.axvline(h["best_epoch"] + 1, color="grey", linestyle=":", label="best epoch")
    ax.set_xlabel("epoch")
    names = {"mse": "MSE", "l1": "L1", "huber": "Huber", "cross_entropy": "cross-entropy",
             "bce_with_logits": "binary cross-entropy"}
    ax.set_ylabel(names.get(loss, loss) + (" (standardized)" if stats and cm is None else ""))
    ax.legend()
    if cm is not None:
        im = cax.imshow(cm, cmap="Blues")
        labels = [str(c) for c in classes]
        cax.set_xticks(range(k), labels, rotation=45 if max(map(len, labels)) > 3 else 0,
                       ha="right" if max(map(len, labels)) > 3 else "center")
        cax.set_yticks(range(k), labels)
        cax.set_xlabel("predicted")
        cax.set_ylabel("true")
        cax.set_title(f"confusion matrix ({'validation' if validated else 'training'} rows)")
        if k <= 20:
            top = cm.max() if cm.size else 0
            for i in range(k):
                for j in range(k):
                    cax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                             color="white" if cm[i, j] > top / 2 else "black", fontsize=8)
        fig.colorbar(im, ax=cax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise CLIError(f"{path}: cannot write the plot ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    print(("loss plot and confusion matrix" if cm is not None else "loss plot") + f" saved to {path}")



def model_chain(ws, bs, relu, meta):
    """The saved layers as a trainer Chain (the activation of every layer: ``meta["acts"]``, or
    ReLU flags in a file written before activations were saved)."""
    from .trainer import Chain

    acts = meta.get("acts")
    if acts is None:
        acts = [["relu", 0.0, 0.0] if r else None for r in relu]
    acts = [None if a is None or a[0] == "identity" else (str(a[0]), float(a[1]), float(a[2]))
            for a in acts]
    return Chain(weights=ws, biases=bs, relu=[a is not None and a[0] == "relu" for a in acts],
                 acts=acts, dropout=[0.0] * len(ws))


def model_outputs(ws, bs, relu, meta, X32):
    """The network's raw outputs (n, out) as float64 on float32 inputs, on the CPU (the
    inference plan where the layers allow it, as ``fastmlp.predict``)."""
    from .trainer import _chain_outputs

    X32 = np.ascontiguousarray(X32, dtype=np.float32)
    return _chain_outputs(model_chain(ws, bs, relu, meta), X32).astype(np.float64)


def cmd_predict(args):
    ws, bs, relu, meta = load_model(args.model)
    cats = meta.get("categories") or {}
    needed = []
    for f in meta["features"]:
        src = next((c for c in cats if f.startswith(c + "=")), f)
        if src not in needed:
            needed.append(src)
    if _npz_names(args.data) is not None and {"X", "y"} <= set(_npz_names(args.data)):
        # arrays X and y: X is what is predicted from; y (maybe text labels) is left alone
        table = read_table(args.data, categories=cats, raw=("y",))
    else:
        table = read_table(args.data, columns=needed, categories=cats)
    X = features_for(table, meta["features"], args.data)
    if not np.isfinite(X).all():
        raise CLIError(f"{args.data}: the data holds NaN or infinite values")
    stats = meta.get("standardize")
    if stats:
        X = (X - np.asarray(stats["x_mean"])) / np.asarray(stats["x_std"])
    X32 = X.astype(np.float32)
    if not np.isfinite(X32).all():  # standardizing pushed a value past float32
        r = int(np.nonzero(~np.isfinite(X32).all(1))[0][0])
        raise CLIError(f"{args.data}: data row index {r} overflows float32 after standardizing "
                       "with the model's statistics")
    pred = model_outputs(ws, bs, relu, meta, X32)
    classify = meta.get("task") == "classify"
    if stats and not classify:
        pred = pred * np.asarray(stats["y_std"]) + np.asarray(stats["y_mean"])
    if not np.isfinite(pred).all():
        r = int(np.nonzero(~np.isfinite(pred).all(1))[0][0])
        raise CLIError(f"{args.data}: the prediction for data row index {r} is not finite (the "
                       "network's output overflows float32); nothing written")
    if classify:
        classes = meta["classes"]
        prob = _probabilities(pred, meta.get("loss", "cross_entropy"))
        labels = [str(c) for c in classes]
        names = [meta["targets"][0]] + [f"prob_{c}" for c in labels]
        rows = ([labels[k]] + [repr(float(v)) for v in p] for k, p in zip(prob.argmax(1), prob))
    else:
        names = meta["targets"]
        rows = ([repr(float(v)) for v in row] for row in pred)
    try:
        f = open(args.out, "w", newline="") if args.out else sys.stdout
    except OSError as e:
        raise CLIError(f"{args.out}: cannot write ({e.strerror or e})") from None
    try:
        w = csv.writer(f)
        w.writerow(names)
        w.writerows(rows)
    finally:
        if args.out:
            f.close()
    if args.out:
        what = "class predictions (label and probabilities)" if classify else "predictions"
        print(f"{len(pred):,} {what} written to {args.out}")
    return 0


# ---- export ----------------------------------------------------------------------------------

def cmd_export(args):
    """model.npz -> model.onnx: the standardization of a --standardize model is folded into the
    first and last Linear layers, so the graph takes raw features and returns raw targets; a
    classifier's graph returns 'label' and 'probabilities' (as ``predict`` writes them)."""
    try:
        from . import onnx as fonnx

        fonnx._onnx()
    except ImportError as e:
        raise CLIError(str(e)) from None
    ws, bs, relu, meta = load_model(args.model)
    ws = [w.astype(np.float64) for w in ws]
    bs = [b.astype(np.float64) for b in bs]
    stats = meta.get("standardize")
    classes = meta.get("classes") if meta.get("task") == "classify" else None
    if stats:  # x' = (x - m) / s  ->  W x' + b = (W / s) x + (b - (W / s) m)
        xm, xs = np.asarray(stats["x_mean"]), np.asarray(stats["x_std"])
        ws[0] = ws[0] / xs
        bs[0] = bs[0] - ws[0] @ xm
        if classes is None:  # a classifier's targets are labels: nothing to undo
            ym, ys = np.asarray(stats["y_mean"]), np.asarray(stats["y_std"])
            ws[-1] = ws[-1] * ys[:, None]
            bs[-1] = bs[-1] * ys + ym
    info = {"features": json.dumps(meta["features"]), "targets": json.dumps(meta["targets"])}
    if classes is not None:
        info["classes"] = json.dumps(classes)
    try:
        fonnx.export_chain(args.out, [w.astype(np.float32) for w in ws],
                           [b.astype(np.float32) for b in bs], relu, meta=info, opset=args.opset,
                           dynamic_batch=True, acts=model_chain(ws, bs, relu, meta).acts,
                           classes=classes)
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"{args.out}: cannot write ({e})") from None
    outputs = (f"outputs 'label' ({meta['targets'][0]}: {', '.join(map(str, classes))}) and "
               f"'probabilities'" if classes is not None else
               f"output 'output': {', '.join(meta['targets'])}")
    print(f"ONNX model written to {args.out} (input 'input': {len(meta['features'])} features "
          f"{', '.join(meta['features'])}; {outputs})")
    return 0


# ---- bench -----------------------------------------------------------------------------------

def bench_dir():
    here = Path(__file__).resolve().parent
    # a source checkout's bench/, the copy installed with the package, then ./bench
    for cand in (here.parent.parent / "bench", here / "bench", Path.cwd() / "bench"):
        if (cand / "train.py").exists():
            return cand
    raise CLIError("the benchmark scripts (bench/train.py) were not found: reinstall fastmlp "
                   "(pip install .) or run `python -m fastmlp bench` from a fastmlp source checkout")


# `bench sklearn` runs bench/sklearn_bench.py: a script named sklearn.py would shadow the
# scikit-learn package it imports (a script's folder comes first on sys.path)
_BENCH_ALIASES = {"sklearn": "sklearn_bench"}


def _bench_scripts(d):
    return sorted(p.stem for p in d.glob("*.py") if not p.name.startswith("_"))


def _only_choices(path):
    """A bench script's ONLY_CHOICES constant (read without importing the script)."""
    import ast

    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ONLY_CHOICES"
                                                for t in node.targets):
            try:
                return tuple(ast.literal_eval(node.value))
            except ValueError:
                return ()
    return ()


def _run_script(path, argv):
    cmd = [sys.executable, str(path)] + list(argv)
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=dict(os.environ)).returncode


def cmd_bench(args):
    """``bench NAME [args...]`` runs bench/NAME.py with the args as given; ``bench --grid [args]``
    runs bench/grid.py; plain ``bench [options]`` runs the training and GEMM benchmarks with the
    options they share (--quick, --out, --threads, --rounds, --only, --no-torch, --source)."""
    d = bench_dir()
    if args.grid is not None or args.name:
        name = "grid" if args.grid is not None else args.name
        name = name[:-3] if name.endswith(".py") else name
        name = _BENCH_ALIASES.get(name, name)
        forwarded = list(args.grid if args.grid is not None else args.rest)
        shared = _shared_bench_options(args)
        path = d / f"{name}.py"
        if not path.exists():
            raise CLIError(f"no benchmark {name!r} in {d} (available: {', '.join(_bench_scripts(d))})")
        rc = _run_script(path, shared + forwarded)
        return 0 if rc == 0 else 1
    out = Path(args.out or "bench-results")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    status = 0
    ran = 0
    for script in ("train", "gemm"):
        path = d / f"{script}.py"
        if not path.exists():
            print(f"(skipping {script}.py: not present)")
            continue
        if args.only and args.only not in _only_choices(path):
            print(f"(skipping {script}.py: it has no --only {args.only})")
            continue
        argv = ["--out", str(out)] + (["--quick"] if args.quick else [])
        argv += ["--only", args.only] if args.only else []
        argv += ["--rounds", str(args.rounds)] if args.rounds else []
        argv += ["--no-torch"] if args.no_torch else []
        argv += ["--source"] if args.source else []
        runs = [argv]
        if args.threads:
            if script == "gemm":
                runs = [argv + ["--threads"] + [str(t) for t in args.threads]]
            elif len(args.threads) == 1:
                runs = [argv + ["--threads", str(args.threads[0])]]
            else:  # train.py takes one thread count per run: one run (and folder) each
                runs = [["--out", str(out / f"threads-{t}")] + argv[2:] + ["--threads", str(t)]
                        for t in args.threads]
        for argv_i in runs:
            ran += 1
            rc = _run_script(path, argv_i)
            if rc != 0:
                print(f"{script}.py failed with status {rc}", file=sys.stderr)
                status = 1
    if not ran:
        raise CLIError(f"--only {args.only}: no benchmark has that case (train.py: "
                       f"{', '.join(_only_choices(d / 'train.py'))}; gemm.py: "
                       f"{', '.join(_only_choices(d / 'gemm.py'))})")
    print(f"results in {out}/")
    return status


def _shared_bench_options(args):
    """The suite options given before NAME, passed on to that script as they are."""
    argv = []
    if args.quick:
        argv.append("--quick")
    if args.out:
        argv += ["--out", args.out]
    if args.threads:
        argv += ["--threads"] + [str(t) for t in args.threads]
    if args.rounds:
        argv += ["--rounds", str(args.rounds)]
    if args.only:
        argv += ["--only", args.only]
    if args.no_torch:
        argv.append("--no-torch")
    if args.source:
        argv.append("--source")
    return argv


# ---- parser ----------------------------------------------------------------------------------

def _progress_flag(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false")


def add_subcommands(sub):
    s = sub.add_parser("demo", help="train the seed network 10->20->1 on synthetic data (seconds)")
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--samples", type=int, default=65536)
    s.add_argument("--test-samples", type=int, default=16384)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=0.01)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=0, help="fastmlp (and torch) threads; 0: default")
    s.add_argument("--torch-steps", type=int, default=300, help="timed PyTorch eager steps")
    s.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager comparison")
    _progress_flag(s)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("train", help="train an MLP on a CSV/NPZ file")
    s.add_argument("data", help="CSV with a header row, Parquet, Feather, or NPZ with arrays X and y "
                                "or named columns")
    s.add_argument("--target", help="target column(s), comma-separated (not needed for NPZ X/y)")
    s.add_argument("--columns", help="feature columns to use, comma-separated (default: all but the target)")
    s.add_argument("--one-hot", action="store_true",
                   help="one-hot encode text (categorical) columns instead of refusing them")
    s.add_argument("--task", default="regress",
                   help="regress (default: numeric targets) or classify (one column of class "
                        "labels, text or whole numbers; prints accuracy and macro F1)")
    s.add_argument("--hidden", default="64,64", help="hidden layer widths, e.g. 64,64 ('' for none)")
    s.add_argument("--activation", default="relu",
                   help="between the Linear layers: " + ", ".join(ACTIVATIONS) + " (default relu)")
    s.add_argument("--dropout", type=float, default=0.0, metavar="P",
                   help="dropout probability after each hidden activation (training only)")
    s.add_argument("--loss", default=None,
                   help="regress: " + ", ".join(REGRESSION_LOSSES) + " (default mse); classify: "
                        + ", ".join(CLASSIFICATION_LOSSES) + " (default cross_entropy; "
                        "bce_with_logits for two classes)")
    s.add_argument("--huber-delta", type=float, default=None, help="--loss huber's delta (default 1)")
    s.add_argument("--epochs", type=int, default=20)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--optimizer", default="sgd", help=", ".join(OPTIMIZERS) + " (default sgd)")
    s.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: sgd 0.01, adam/adamw 0.001, rmsprop 0.01)")
    s.add_argument("--momentum", type=float, default=None, help="sgd, rmsprop (default 0)")
    s.add_argument("--nesterov", action="store_true", help="sgd: Nesterov momentum")
    s.add_argument("--betas", default=None, metavar="B1,B2", help="adam, adamw (default 0.9,0.999)")
    s.add_argument("--eps", type=float, default=None, help="adam, adamw, rmsprop (default 1e-8)")
    s.add_argument("--alpha", type=float, default=None, help="rmsprop's smoothing (default 0.99)")
    s.add_argument("--weight-decay", type=float, default=None,
                   help="L2 penalty (adamw: decoupled; default 0, adamw 0.01)")
    s.add_argument("--val-split", type=float, default=None,
                   help="fraction held out for validation (default 0; 0.1 with --early-stopping)")
    s.add_argument("--early-stopping", action="store_true",
                   help="score the validation rows every epoch, stop when the validation loss has "
                        "not improved for --patience epochs, keep the best epoch's weights")
    s.add_argument("--patience", type=int, default=None, help="--early-stopping's patience (default 10)")
    s.add_argument("--min-delta", type=float, default=0.0,
                   help="--early-stopping: the smallest decrease that counts as an improvement")
    s.add_argument("--standardize", action="store_true",
                   help="standardize features (and numeric targets)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=0)
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="train on the CPU (default) or on the GPU (a CUDA build of fastmlp and CuPy)")
    s.add_argument("--out", help="save the model here (.npz)")
    s.add_argument("--plot", help="save a loss curve PNG here, with a confusion matrix for --task "
                                  "classify (needs matplotlib)")
    _progress_flag(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("predict", help="predict with a saved model")
    s.add_argument("model")
    s.add_argument("data")
    s.add_argument("--out", help="CSV to write (default: stdout)")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("export", help="write a saved model (.npz) as ONNX (needs the onnx package)")
    s.add_argument("model", help="a model saved by `train --out model.npz`")
    s.add_argument("out", help="the .onnx file to write")
    s.add_argument("--opset", type=int, default=None, help="ONNX opset (default: fastmlp.onnx.DEFAULT_OPSET)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser(
        "bench", help="run the benchmarks: `bench` (training + GEMM), `bench NAME [args...]` "
        "(bench/NAME.py with those args), `bench --grid [args...]` (bench/grid.py)",
        description="Runs the scripts in bench/ (the installed copy, or a checkout's). `bench NAME "
        "[args...]` passes the args to bench/NAME.py unchanged; plain `bench` runs train.py and "
        "gemm.py with the options below.")
    s.add_argument("name", nargs="?", help="a script in bench/ (train, gemm, mlp, grid, ...)")
    s.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for that script")
    s.add_argument("--quick", action="store_true", help="short runs")
    s.add_argument("--out", default=None, help="output folder (default: bench-results)")
    s.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts")
    s.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case")
    s.add_argument("--only", default=None, help="one case family (train.py: seed, wide, toolkit; gemm.py: "
                   "squares, mlp)")
    s.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    s.add_argument("--source", action="store_true",
                   help="the scripts import a checkout's python/ (an in-place build)")
    s.add_argument("--grid", nargs=argparse.REMAINDER, default=None,
                   help="run bench/grid.py with the arguments that follow")
    s.set_defaults(func=cmd_bench)


def run(args):
    """Run a parsed subcommand; user errors become one stderr line and status 2."""
    try:
        return args.func(args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `predict ... | head`: the reader left; stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush raises nothing
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        return 141
