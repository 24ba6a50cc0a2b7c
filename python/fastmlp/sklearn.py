"""A scikit-learn estimator on the fused trainer: :class:`MLPRegressor`, a drop-in for
``sklearn.neural_network.MLPRegressor(solver="sgd")`` (ReLU hidden layers, identity output).

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
- ``solver`` is ``"sgd"`` only and ``activation`` ``"relu"`` only (others raise ValueError).
- no ``sample_weight`` and no sparse input.

scikit-learn is an optional dependency (``pip install fastmlp[sklearn]``).
"""
from __future__ import annotations

import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, RegressorMixin
except ImportError as e:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("fastmlp.sklearn needs scikit-learn: pip install fastmlp[sklearn]") from e

from . import _C

__all__ = ["MLPRegressor"]


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


class MLPRegressor(RegressorMixin, BaseEstimator):
    """Multi-layer perceptron regressor trained by fastmlp's fused SGD trainer.

    Parameters and fitted attributes are those of ``sklearn.neural_network.MLPRegressor`` with
    ``solver="sgd"`` (see the module docstring for the differences). ``coefs_[i]`` has shape
    ``(fan_in, fan_out)`` as in scikit-learn.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="sgd", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4,
                 verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10):
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
        self.n_iter_no_change = n_iter_no_change

    # ---- validation ----------------------------------------------------------------------------

    def _check_params(self):
        def number(name, lo, lo_open=False, hi=None, integral=False):
            v = getattr(self, name)
            ok_type = (int, np.integer) if integral else (int, float, np.integer, np.floating)
            if isinstance(v, bool) or not isinstance(v, ok_type):
                raise ValueError(f"The '{name}' parameter of MLPRegressor must be "
                                 f"{'an int' if integral else 'a float'}, got {v!r}")
            if (v <= lo if lo_open else v < lo) or (hi is not None and v > hi) or v != v:
                rng = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
                raise ValueError(f"The '{name}' parameter of MLPRegressor must be {rng}, got {v!r}")

        if self.solver != "sgd":
            raise ValueError(f"fastmlp's MLPRegressor supports solver='sgd' only, got {self.solver!r}")
        if self.activation != "relu":
            raise ValueError(f"fastmlp's MLPRegressor supports activation='relu' only, got "
                             f"{self.activation!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError("The 'learning_rate' parameter of MLPRegressor must be one of "
                             f"'constant', 'invscaling', 'adaptive', got {self.learning_rate!r}")
        number("alpha", 0.0)
        number("learning_rate_init", 0.0, lo_open=True)
        number("power_t", 0.0)
        number("max_iter", 1, integral=True)
        number("tol", 0.0)
        number("momentum", 0.0, hi=1.0)
        number("validation_fraction", 0.0, hi=1.0)
        if self.validation_fraction >= 1.0:
            raise ValueError("The 'validation_fraction' parameter of MLPRegressor must be < 1, "
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

    # ---- training ------------------------------------------------------------------------------

    def _initialize(self, y2, layer_units):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y2.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = "identity"
        self._W, self._b = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform (factor 2 is for logistic)
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            self._W.append(np.ascontiguousarray(coef.T, dtype=np.float32))
            self._b.append(intercept.astype(np.float32))
        self._publish()
        self._best_W = [w.copy() for w in self._W]
        self._best_b = [b.copy() for b in self._b]
        self.loss_curve_ = []
        self._no_improvement_count = 0
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

    def _fit(self, X, y, incremental):
        from sklearn.model_selection import train_test_split
        from sklearn.utils import check_random_state
        from sklearn.utils import shuffle as sk_shuffle

        sizes = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, reset=first_pass)
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
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
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _SGDSchedule(self._W, self._b, self.learning_rate_init,
                                           self.learning_rate, self.momentum,
                                           self.nesterovs_momentum, self.power_t)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            X_train, X_val, y_train, y_val = train_test_split(
                X, y2, random_state=self._random_state, test_size=self.validation_fraction)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            if y.ndim == 1:
                y_val = y_val.ravel()
        else:
            X_train, y_train, X_val, y_val = X, y2, None, None
        X_train = np.ascontiguousarray(X_train, dtype=np.float32)
        y_train = np.ascontiguousarray(y_train, dtype=np.float32)
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
        for _ in range(self.max_iter):
            if self.shuffle:
                sample_idx = sk_shuffle(sample_idx, random_state=self._random_state)
            r = _C.mlp_train(self._W, self._b, relu, X_train, y_train, epochs=1,
                             batch_size=batch_size, shuffle=False,
                             perm=sample_idx if self.shuffle else None, mode="sklearn",
                             lr=opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov,
                             alpha=float(self.alpha), weight_bufs=opt.vel_w, bias_bufs=opt.vel_b,
                             allow_nonfinite=False)
            if r["nonfinite"] is not None:
                e, batch, bad = r["nonfinite"]
                raise ValueError("Solver produced non-finite parameter weights. The input data may "
                                 "contain large values and need to be preprocessed. (The loss "
                                 f"became {bad} at iteration {self.n_iter_ + 1}, batch {batch + 1}.)")
            self.n_iter_ += 1
            self.loss_ = float(r["losses"][0])
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            self._update_no_improvement_count(early_stopping, X_val, y_val)
            opt.iteration_ends(self.t_)
            if self._no_improvement_count > self.n_iter_no_change:
                if early_stopping:
                    msg = ("Validation score did not improve more than tol=%f for %d consecutive "
                           "epochs." % (self.tol, self.n_iter_no_change))
                else:
                    msg = ("Training loss did not improve more than tol=%f for %d consecutive "
                           "epochs." % (self.tol, self.n_iter_no_change))
                if opt.trigger_stopping(msg, self.verbose):
                    break
                self._no_improvement_count = 0
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                              "optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning)
        if early_stopping:
            self._W = [w.copy() for w in self._best_W]
            self._b = [b.copy() for b in self._best_b]
        self._publish()
        if not all(np.isfinite(a).all() for a in self._W + self._b):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

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

    def fit(self, X, y):
        """Fit the model to X (n_samples, n_features) and y (n_samples,) or (n_samples, n_outputs)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        return self._fit(X, y, incremental=True)

    # ---- prediction ----------------------------------------------------------------------------

    def _forward(self, X):
        W = [np.ascontiguousarray(np.asarray(c).T, dtype=np.float32) for c in self.coefs_]
        b = [np.ascontiguousarray(i, dtype=np.float32).reshape(-1) for i in self.intercepts_]
        return _C.mlp_forward(W, b, [True] * (len(W) - 1) + [False],
                              np.ascontiguousarray(X, dtype=np.float32))

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
