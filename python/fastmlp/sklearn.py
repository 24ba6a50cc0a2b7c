"""scikit-learn estimators on the fused trainer: :class:`MLPRegressor` and :class:`MLPClassifier`,
drop-ins for ``sklearn.neural_network.MLPRegressor`` / ``MLPClassifier`` with ``activation`` in
{identity, logistic, tanh, relu} and ``solver`` in {sgd, adam}.

With ``solver="sgd"`` and ``activation="relu"`` the regressor runs the ReLU/SGD trainer
(``ops.cpu.mlp_train`` in scikit-learn mode) and follows scikit-learn step for step, as described
below. Every other configuration, and the classifier, runs the general trainer (``ops.cpu.mlp_fit``)
with scikit-learn's conventions: losses summed over outputs and averaged over the batch (half
squared error for regression, log-loss with a softmax output for multiclass and a logistic output
for binary and multilabel targets), the L2 penalty on the weights only, scikit-learn's Adam
(``beta_1``, ``beta_2``, ``epsilon``). Its SGD there is PyTorch's momentum form, equal to
scikit-learn's velocity form at a constant learning rate.

It follows scikit-learn's semantics step for step: half squared-error loss; L2 penalty ``alpha``
on the weights only (not the intercepts), scaled by 1 / batch size; Glorot-uniform init with bound
``sqrt(6 / (fan_in + fan_out))`` drawn from the same ``random_state`` calls in the same order; the
same early-stopping split and per-epoch shuffles; its SGD update (``v = momentum * v - lr * g;
param += v``, Nesterov ``param += momentum * v - lr * g``) with gradients ``(pred - y) / batch``;
the ``constant`` / ``invscaling`` / ``adaptive`` learning-rate schedules; the ``tol`` /
``n_iter_no_change`` stopping rules. With the same hyperparameters and ``random_state`` it trains
the same way as scikit-learn, in float32 instead of float64.

Differences, by design:
- computation is float32: float64 input is converted to float32 (a documented conversion, not an
  error); ``coefs_`` / ``intercepts_`` are float32; ``predict`` returns float64 like scikit-learn.
- ``solver="lbfgs"`` is not offered (a ValueError); no sparse input.
- ``sample_weight``: a weighted mean of the per-sample losses (the general trainer).

scikit-learn is an optional dependency (``pip install fastmlp[sklearn]``).
"""
from __future__ import annotations

import warnings
import weakref

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
except ImportError as e:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("fastmlp.sklearn needs scikit-learn: pip install fastmlp[sklearn]") from e

from . import costmodel as _costmodel
from .ops import cpu as _kernels
from .hyperparams import f32_problem

_KERNEL_FLOATS = ("alpha", "learning_rate_init", "momentum")

__all__ = ["MLPRegressor", "MLPClassifier"]

# scikit-learn's hidden activations -> the kinds of csrc/include/fastmlp/activation.h
_ACTS = {"identity": (0, 0.0, 0.0), "logistic": (3, 0.0, 0.0), "tanh": (2, 0.0, 0.0),
         "relu": (1, 0.0, 0.0)}
_ACT_NAMES = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
# per fitted estimator: (activation and ids of coefs_/intercepts_, the trainer Chain reading them)
_INFER_CHAINS = weakref.WeakKeyDictionary()


def _dlpack_only(a):
    """An object with only the DLPack protocol (no ``__array__``) as a numpy view, for
    scikit-learn's validation; pandas / polars frames and arrays pass through unchanged."""
    if a is not None and hasattr(a, "__dlpack__") and not hasattr(a, "__array__"):
        from .trainer import as_host_array

        return as_host_array(a)
    return a


class _SGDSchedule:
    """scikit-learn's SGDOptimizer state: velocities and the learning-rate schedule."""

    def __init__(self, W, b, lr_init, schedule, momentum, nesterov, power_t):
        self.learning_rate_init = float(lr_init)
        self.learning_rate = float(lr_init)
        self.lr_schedule = schedule
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.power_t = float(power_t)
        self.vel_w = [np.zeros_like(w) for w in W]
        self.vel_b = [np.zeros_like(x) for x in b]

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class _BaseMLP(BaseEstimator):
    """What MLPRegressor and MLPClassifier share: parameters, initialisation, the epoch loop."""

    _is_classifier = False

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4,
                 verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change

    # ---- validation ----------------------------------------------------------------------------

    def _check_params(self):
        def number(name, lo, lo_open=False, hi=None, integral=False):
            v = getattr(self, name)
            ok_type = (int, np.integer) if integral else (int, float, np.integer, np.floating)
            if isinstance(v, bool) or not isinstance(v, ok_type):
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be "
                                 f"{'an int' if integral else 'a float'}, got {v!r}")
            if (v <= lo if lo_open else v < lo) or (hi is not None and v > hi) or v != v:
                rng = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be {rng}, "
                                 f"got {v!r}")
            if name in _KERNEL_FLOATS:  # the kernels compute in float32
                try:
                    why = f32_problem(float(v))
                except OverflowError:
                    why = "overflows float32, the precision the kernels use"
                if why:
                    raise ValueError(f"The '{name}' parameter of {type(self).__name__} {why}, "
                                     f"got {v!r}")

        who = type(self).__name__
        if self.solver not in ("sgd", "adam"):
            raise ValueError(f"fastmlp's {who} supports solver 'sgd' and 'adam', got "
                             f"{self.solver!r}")
        if self.activation not in _ACTS:
            raise ValueError(f"The 'activation' parameter of {who} must be one of 'identity', "
                             f"'logistic', 'tanh', 'relu', got {self.activation!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"The 'learning_rate' parameter of {who} must be one of "
                             f"'constant', 'invscaling', 'adaptive', got {self.learning_rate!r}")
        number("beta_1", 0.0, hi=1.0)
        number("beta_2", 0.0, hi=1.0)
        number("epsilon", 0.0, lo_open=True)
        if self.beta_1 >= 1.0 or self.beta_2 >= 1.0:
            raise ValueError(f"The 'beta_1' and 'beta_2' parameters of {who} must be < 1")
        number("alpha", 0.0)
        number("learning_rate_init", 0.0, lo_open=True)
        number("power_t", 0.0)
        number("max_iter", 1, integral=True)
        number("tol", 0.0)
        number("momentum", 0.0, hi=1.0)
        number("validation_fraction", 0.0, hi=1.0)
        if self.validation_fraction >= 1.0:
            raise ValueError(f"The 'validation_fraction' parameter of {who} must be < 1, "
                             f"got {self.validation_fraction!r}")
        if self.n_iter_no_change != np.inf:
            number("n_iter_no_change", 1, integral=True)
        if self.batch_size != "auto":
            number("batch_size", 1, integral=True)
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}.")
        return [int(s) for s in sizes]

    def _validate_input(self, X, y, reset):
        from sklearn.utils import column_or_1d
        from sklearn.utils.validation import validate_data

        X, y = validate_data(self, _dlpack_only(X), _dlpack_only(y), multi_output=True,
                             y_numeric=True, dtype=np.float32, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, np.asarray(y, dtype=np.float32)

    def _out_activation(self, y2):
        return "identity"

    def _encode(self, y):
        """(targets for the trainer, y as (n, outputs) for the layer sizes)."""
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        return y2, y2

    # ---- training ------------------------------------------------------------------------------

    def _initialize(self, y2, layer_units):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y2.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation(y2)
        self._W, self._b = [], []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))  # Glorot uniform, as scikit-learn
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            self._W.append(np.ascontiguousarray(coef.T, dtype=np.float32))
            self._b.append(intercept.astype(np.float32))
        self._publish()
        self._best_W = [w.copy() for w in self._W]
        self._best_b = [b.copy() for b in self._b]
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._general = None
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _publish(self):
        """coefs_ (fan_in, fan_out) and intercepts_ as views of the trainer's arrays."""
        self.coefs_ = [w.T for w in self._W]
        self.intercepts_ = list(self._b)

    def _pull(self):
        """The trainer's (out, in) float32 arrays from coefs_ / intercepts_ (which users may set)."""
        W, b = [], []
        for i, (c, it) in enumerate(zip(self.coefs_, self.intercepts_)):
            c = np.asarray(c)
            it = np.asarray(it)
            if i < len(self._W) and c.base is self._W[i] and c.shape == self._W[i].T.shape:
                W.append(self._W[i])
            else:
                W.append(np.ascontiguousarray(c.T, dtype=np.float32))
            b.append(np.array(it, dtype=np.float32, copy=True).reshape(-1))
        self._W, self._b = W, b
        self._publish()

    def _relu(self):
        return [True] * (len(self._W) - 1) + [False]

    def _exact_path(self, sample_weight):
        """The ReLU/SGD regressor runs the trainer that follows scikit-learn step for step."""
        return (not self._is_classifier and self.solver == "sgd" and self.activation == "relu"
                and sample_weight is None)

    def _fit(self, X, y, incremental, sample_weight=None, classes=None):
        from sklearn.model_selection import train_test_split
        from sklearn.utils import check_random_state

        sizes = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, reset=first_pass)
        if sample_weight is not None:
            from sklearn.utils.validation import _check_sample_weight

            sample_weight = np.ascontiguousarray(
                _check_sample_weight(sample_weight, X, dtype=np.float32), dtype=np.float32)
        if self._is_classifier:
            self._set_classes(y, first_pass or not hasattr(self, "classes_"), classes)
        ytrain, y2 = self._encode(y)
        n_samples, n_features = X.shape
        layer_units = [n_features] + sizes + [y2.shape[1]]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y2, layer_units)
        else:
            want = list(zip(layer_units[:-1], layer_units[1:]))
            have = [tuple(np.shape(c)) for c in self.coefs_]
            if have != want:
                raise ValueError(f"warm start / partial_fit: the data needs layers {want} but the "
                                 f"fitted coefs_ have shapes {have}")
            self._pull()
        exact = self._exact_path(sample_weight)
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _SGDSchedule(self._W, self._b, self.learning_rate_init,
                                           self.learning_rate, self.momentum,
                                           self.nesterovs_momentum, self.power_t)
            self._general = None
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = ytrain if (self._is_classifier and ytrain.ndim == 1) else None
            parts = [X, ytrain] + ([sample_weight] if sample_weight is not None else [])
            split = train_test_split(*parts, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X_train, X_val, y_train, y_val = split[:4]
            if sample_weight is not None:
                sample_weight = np.ascontiguousarray(split[4])
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            y_val = self._decode_val(y_val, y)
        else:
            X_train, y_train, X_val, y_val = X, ytrain, None, None
        X_train = np.ascontiguousarray(X_train, dtype=np.float32)
        y_train = np.ascontiguousarray(y_train)
        n = X_train.shape[0]
        sample_idx = np.arange(n, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))

        from sklearn.exceptions import ConvergenceWarning

        opt = self._optimizer
        relu = self._relu()
        self.n_iter_ = 0
        max_iter = 1 if incremental else self.max_iter
        while self.n_iter_ < max_iter:
            k = self._chunk_epochs(max_iter - self.n_iter_, early_stopping, exact, n)
            perm = None
            if self.shuffle:  # scikit-learn's sklearn.utils.shuffle(sample_idx), epoch by epoch
                perm = np.empty((k, n), dtype=np.int64)
                for j in range(k):
                    p = np.arange(n)
                    self._random_state.shuffle(p)
                    sample_idx = sample_idx[p]
                    perm[j] = sample_idx
                if k == 1:
                    perm = perm[0]
            if exact:
                r = _kernels.mlp_train(self._W, self._b, relu, X_train, y_train, epochs=k,
                                 batch_size=batch_size, shuffle=False, perm=perm, mode="sklearn",
                                 lr=opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov,
                                 alpha=float(self.alpha), weight_bufs=opt.vel_w, bias_bufs=opt.vel_b,
                                 allow_nonfinite=False,
                                 path=_costmodel.choose_path(
                                     "train", [(w.shape[1], w.shape[0]) for w in self._W],
                                     min(batch_size, n)))
            else:
                r = self._general_epochs(X_train, y_train, sample_weight, batch_size, perm, k, n)
            if r["nonfinite"] is not None:
                e, batch, bad = r["nonfinite"]
                raise ValueError("Solver produced non-finite parameter weights. The input data may "
                                 "contain large values and need to be preprocessed. (The loss "
                                 f"became {bad} at iteration {self.n_iter_ + e + 1}, batch "
                                 f"{batch + 1}.)")
            # scikit-learn's per-epoch bookkeeping, on the losses the native call returns; the
            # chunk is short enough that no stopping decision falls before its last epoch
            stop = False
            for loss in r["losses"]:
                stop = self._epoch_end(float(loss), n, early_stopping, X_val, y_val, opt)
                if stop:
                    break
            if stop or incremental:
                break
            if self.n_iter_ == max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                              "optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning)
        if early_stopping:
            self._W = [w.copy() for w in self._best_W]
            self._b = [b.copy() for b in self._best_b]
            self._general = None  # the state belongs to other arrays now
        self._publish()
        if not all(np.isfinite(a).all() for a in self._W + self._b):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    # ---- the general trainer (any activation, adam, classification, sample weights) -------------

    def _loss_dict(self):
        return {"kind": 0}  # half squared error (scaled below)

    def _general_layers(self):
        """mlp_spec.h layer dicts over self._W / self._b, with the optimizer state kept across
        epochs (and partial_fit calls) in self._general."""
        g = self._general
        if g is None or len(g["state"]) != len(self._W) or any(
                st[0][0] is not None and st[0][0].shape != w.shape
                for st, w in zip(g["state"], self._W)):
            adam = self.solver == "adam"
            mom = self.solver == "sgd" and self.momentum != 0
            def mk(a):
                return [np.zeros_like(a) if (adam or mom) else None,
                        np.zeros_like(a) if adam else None, None]
            g = self._general = {"state": [(mk(w), mk(b)) for w, b in zip(self._W, self._b)],
                                 "step": 0}
        hidden = _ACTS[self.activation]
        L = len(self._W)
        return [{"weight": w, "bias": b, "act": hidden if i < L - 1 else (0, 0.0, 0.0),
                 "wstate": g["state"][i][0], "bstate": g["state"][i][1]}
                for i, (w, b) in enumerate(zip(self._W, self._b))]

    def _general_epochs(self, X, y, sample_weight, batch_size, perm, epochs, n):
        layers = self._general_layers()
        if self.solver == "adam":
            optim = {"kind": 1, "lr": float(self.learning_rate_init), "beta1": float(self.beta_1),
                     "beta2": float(self.beta_2), "eps": float(self.epsilon)}
        else:
            lr = float(self._optimizer.learning_rate)
            optim = {"kind": 0, "lr": lr, "momentum": float(self.momentum),
                     "nesterov": bool(self.nesterovs_momentum and self.momentum > 0)}
            # The trainer's momentum buffer is PyTorch's (b = m b + g; p -= lr b); scikit-learn
            # keeps the velocity v = -lr b. When the rate changes (invscaling, adaptive), v is
            # what carries over: rescale b by old / new rate.
            last = self._general.get("lr")
            if last is not None and last != lr and self.momentum != 0:
                for st in self._general["state"]:
                    for buf in (st[0][0], st[1][0]):
                        if buf is not None:
                            buf *= np.float32(last / lr)
            self._general["lr"] = lr
        loss = self._loss_dict()
        sk = {"loss_sum_outputs": True, "loss_scale": 0.5 if loss["kind"] == 0 else 1.0,
              "l2_weights": float(self.alpha), "adam_eps_before_correction": True}
        r = _kernels.mlp_fit(layers, X, y, loss=loss, optim=optim, epochs=epochs,
                             batch_size=batch_size, shuffle=False, perm=perm,
                             step0=self._general["step"],
                             sample_weight=sample_weight, sklearn=sk,
                             path=_costmodel.choose_path(
                                 "fit", [(d["weight"].shape[1], d["weight"].shape[0])
                                         for d in layers], min(batch_size, max(len(X), 1))))
        self._general["step"] += r["steps"]
        return r

    # the most sample indices one native call gets (epochs x n int64: 32 MiB)
    _MAX_PERM = 1 << 22

    def _chunk_epochs(self, remaining, early_stopping, exact, n):
        """How many epochs the next native call runs. scikit-learn decides after every epoch
        whether to stop (or, adaptive SGD, to cut the rate), and only once the no-improvement
        count exceeds n_iter_no_change; the count grows by at most one per epoch, so the next
        n_iter_no_change + 1 - count epochs run with no decision and go in one call. Early
        stopping scores (and may keep) the weights after every epoch: one epoch per call."""
        if early_stopping:
            return 1
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            return 1  # a new rate after every epoch (the trainers take one rate per call)
        k = remaining
        if np.isfinite(self.n_iter_no_change):
            k = min(k, int(self.n_iter_no_change) + 1 - self._no_improvement_count)
        if self.shuffle:
            k = min(k, self._MAX_PERM // max(n, 1))
        return max(1, k)

    def _epoch_end(self, loss, n, early_stopping, X_val, y_val, opt):
        """scikit-learn's end-of-epoch bookkeeping and stopping rule; True: stop."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n
        self.loss_curve_.append(loss)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        self._update_no_improvement_count(early_stopping, X_val, y_val)
        if self.solver == "sgd":
            opt.iteration_ends(self.t_)
        if self._no_improvement_count > self.n_iter_no_change:
            if early_stopping:
                msg = ("Validation score did not improve more than tol=%f for %d consecutive "
                       "epochs." % (self.tol, self.n_iter_no_change))
            else:
                msg = ("Training loss did not improve more than tol=%f for %d consecutive "
                       "epochs." % (self.tol, self.n_iter_no_change))
            if self.solver == "adam":  # scikit-learn's Adam stops at once
                if self.verbose:
                    print(msg + " Stopping.")
                return True
            if opt.trigger_stopping(msg, self.verbose):
                return True
            self._no_improvement_count = 0
        return False

    def _update_no_improvement_count(self, early_stopping, X_val, y_val):
        if early_stopping:
            val_score = self._score(X_val, y_val)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last = self.validation_scores_[-1]
            if last < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last > self.best_validation_score_:
                self.best_validation_score_ = last
                self._best_W = [w.copy() for w in self._W]
                self._best_b = [b.copy() for b in self._b]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and y; ``sample_weight`` (n_samples,)
        weights each sample's loss."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    # ---- prediction ----------------------------------------------------------------------------

    def _forward(self, X):
        X = np.ascontiguousarray(X, dtype=np.float32)
        from .trainer import _chain_outputs

        # The inference plan fastmlp.predict runs (the trainers' forward where it cannot), on its
        # tiles path for any row count: predictions of a subset equal those of the whole
        # (scikit-learn's check_methods_subset_invariance; the rows path sums in another order).
        return _chain_outputs(self._infer_chain(), X, path="tiles")

    def _infer_chain(self):
        """A trainer Chain of the fitted layers. coefs_ are views of the trainer's (out, in)
        float32 arrays, so the chain (and its plan) reads them in place, kept per estimator while
        coefs_ / intercepts_ hold the same arrays (in-place changes show; assigned arrays make a
        new chain); arrays set by the user in another layout or dtype are copied on every call."""
        from .trainer import Chain

        key = (self.activation,) + tuple(map(id, self.coefs_)) + tuple(map(id, self.intercepts_))
        hit = _INFER_CHAINS.get(self)  # (not in __dict__: predict must leave the estimator as is)
        if hit is not None and hit[0] == key:
            return hit[1]
        W = [np.asarray(c).T for c in self.coefs_]
        b = [np.asarray(i).reshape(-1) for i in self.intercepts_]
        in_place = all(a.dtype == np.float32 and a.flags.c_contiguous for a in W + b)
        if not in_place:
            W = [np.ascontiguousarray(w, dtype=np.float32) for w in W]
            b = [np.ascontiguousarray(v, dtype=np.float32) for v in b]
        name = _ACT_NAMES[self.activation]
        acts = [None if name is None else (name, 0.0, 0.0)] * (len(W) - 1) + [None]
        chain = Chain(weights=W, biases=b, relu=[a is not None and a[0] == "relu" for a in acts],
                      acts=acts, dropout=[0.0] * len(W))
        if in_place:  # (the views keep the arrays, hence their ids, alive)
            _INFER_CHAINS[self] = (key, chain)
        return chain


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor on fastmlp's fused trainers.

    Parameters and fitted attributes are those of ``sklearn.neural_network.MLPRegressor`` (see
    the module docstring for the differences). ``coefs_[i]`` has shape ``(fan_in, fan_out)``.
    """

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _decode_val(self, y_val, y):
        return y_val.ravel() if y.ndim == 1 else y_val

    def _predict(self, X):
        out = self._forward(X).astype(np.float64)
        return out.ravel() if out.shape[1] == 1 else out

    def predict(self, X):
        """Predictions (n_samples,) or (n_samples, n_outputs), float64."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, _dlpack_only(X), dtype=np.float32, reset=False)
        return self._predict(X)

    def _score(self, X, y):
        from sklearn.metrics import r2_score

        pred = self._predict(X)
        if not np.isfinite(pred).all():
            return np.nan
        return r2_score(y, pred)


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier on fastmlp's general fused trainer: a drop-in for
    ``sklearn.neural_network.MLPClassifier`` (binary, multiclass and multilabel targets;
    ``predict_proba``, ``predict_log_proba``, ``classes_``, ``partial_fit(classes=)``).

    The output is a softmax over the classes (multiclass) or a logistic unit per label (binary,
    multilabel), trained with scikit-learn's log-loss; see the module docstring.
    """

    _is_classifier = True

    def _validate_input(self, X, y, reset):
        from sklearn.utils.validation import validate_data

        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float32, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            from sklearn.utils import column_or_1d

            y = column_or_1d(y, warn=True)
        return X, y

    def _set_classes(self, y, reset, classes):
        from sklearn.preprocessing import LabelBinarizer
        from sklearn.utils.multiclass import type_of_target

        if reset:
            self._label_binarizer = LabelBinarizer()
            if classes is not None:
                self._label_binarizer.fit(classes)
            else:
                self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
            kind = type_of_target(y)
            if kind not in ("binary", "multiclass", "multilabel-indicator"):
                raise ValueError(f"Unknown label type: {kind!r}")
        else:
            if classes is not None and not np.array_equal(np.asarray(classes), self.classes_) \
                    and not np.array_equal(np.sort(np.asarray(classes)), self.classes_):
                raise ValueError(f"`classes={list(classes)}` is not the same as on the first call "
                                 f"to partial_fit, was: {list(self.classes_)}")
            seen = np.unique(y) if y.ndim == 1 else None
            if seen is not None and not np.isin(seen, self.classes_).all():
                raise ValueError(f"y has classes not in `self.classes_`: "
                                 f"{sorted(set(seen) - set(self.classes_))}")

    def _multiclass(self):
        return self._label_binarizer.y_type_ == "multiclass"

    def _encode(self, y):
        Y = self._label_binarizer.transform(y).astype(np.float32)
        if self._multiclass():
            idx = np.searchsorted(self.classes_, y).astype(np.int64)
            return idx, Y
        return np.ascontiguousarray(Y), Y

    def _decode_val(self, y_val, y):
        if self._multiclass():
            return self.classes_[y_val]
        if self._label_binarizer.y_type_ == "binary":
            return self.classes_[y_val.ravel().astype(int)]
        return y_val

    def _out_activation(self, y2):
        return "softmax" if self._multiclass() else "logistic"

    def _loss_dict(self):
        return {"kind": 1} if self._multiclass() else {"kind": 2}

    def fit(self, X, y, sample_weight=None):
        """Fit to X (n_samples, n_features) and class labels y (or a label indicator matrix)."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y); ``classes`` (all labels) is required on the first call."""
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, incremental=True, sample_weight=sample_weight, classes=classes)

    def _proba(self, X):
        z = self._forward(X).astype(np.float64)
        if self._multiclass():
            return _softmax(z)
        p = _sigmoid(z)
        if self._label_binarizer.y_type_ == "binary":
            return np.hstack([1.0 - p, p])
        return p

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes)."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return self._proba(X)

    def predict_log_proba(self, X):
        """log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def _predict(self, X):
        p = self._proba(X)
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return (p > 0.5).astype(int)
        return self.classes_[np.argmax(p, axis=1)]

    def predict(self, X):
        """Class labels (n_samples,) (a label indicator matrix for multilabel targets)."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return self._predict(X)

    def _score(self, X, y):
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self._predict(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
