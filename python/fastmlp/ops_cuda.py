"""The CUDA versions of :mod:`fastmlp.ops`: CuPy arrays in, CuPy arrays out, one function per op.

Same signatures and semantics as :mod:`fastmlp.ops` (which dispatches here when its first array
argument carries ``__cuda_array_interface__``). Each function launches fastmlp's own kernels
(``fastmlp._cuda``) on CuPy's current stream; nothing waits for the GPU. Outputs are allocated
with CuPy when ``out`` is None; an ``out=`` array must be a writable C-contiguous float32 GPU
array and is filled in place. Inputs in other layouts are copied (``cupy.ascontiguousarray``);
a transposed 2-D view given to :func:`matmul` is read in place as a transpose flag.

:func:`mse_loss` returns a 0-d float32 CuPy array (the loss stays on the device until read).
CuPy is imported lazily, on the first call.
"""
from __future__ import annotations

__all__ = [
    "matmul",
    "linear",
    "relu",
    "relu_backward",
    "bias_add",
    "bias_grad",
    "mse_loss",
    "mse_loss_backward",
    "sgd_step",
    "sgd_step_many",
]

_cp = None
_C = None


def _modules():
    """(cupy, fastmlp._cuda), imported on first use, or an error that says what is missing."""
    global _cp, _C
    if _C is None:
        from . import cuda

        mod = cuda._load()
        if mod is None:
            raise RuntimeError(f"fastmlp CUDA ops need the CUDA module: {cuda.unavailable_reason()}")
        try:
            import cupy
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("fastmlp CUDA ops allocate their outputs with CuPy: pip install "
                              "cupy-cuda12x (or the wheel for your CUDA version)") from e
        _cp, _C = cupy, mod
    return _cp, _C


def unavailable_reason() -> str:
    """Why these ops cannot run in this process ("" when they can): no CUDA module, no CuPy, no GPU."""
    global _ready
    if _ready:
        return ""
    from . import cuda

    reason = cuda.unavailable_reason()
    if reason:
        return reason
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed: pip install cupy-cuda12x (or the wheel for your CUDA version)"
    _ready = True
    return ""


_ready = False


def _stream(cp):
    return cp.cuda.get_current_stream().ptr


def _contiguous(cp, x):
    """A C-contiguous version of a CuPy input (other GPU arrays pass to the bindings' checks)."""
    if isinstance(x, cp.ndarray) and not x.flags.c_contiguous:
        return cp.ascontiguousarray(x)
    return x


def _gemm_operand(cp, x):
    """A CuPy matrix the GEMM reads in place: row-major (rows may be padded) or column-major."""
    if not isinstance(x, cp.ndarray) or x.ndim != 2 or x.size == 0:
        return x
    (r, c), (s0, s1) = x.shape, x.strides
    row_major = (c == 1 or s1 == 4) and (r == 1 or (s0 % 4 == 0 and s0 >= 4 * c))
    col_major = s0 == 4 and s1 % 4 == 0 and s1 >= 4 * r
    return x if (row_major or col_major) else cp.ascontiguousarray(x)


def _empty_like(cp, x, shape=None):
    return cp.empty(x.shape if shape is None else shape, dtype=cp.float32)


def matmul(a, b, *, out=None, alpha=1.0, beta=0.0, bias=None, relu=False):
    """``out = alpha * a @ b + beta * out`` (then ``+ bias`` per column, then ReLU), on the GPU."""
    cp, C = _modules()
    a, b = _gemm_operand(cp, a), _gemm_operand(cp, b)
    if bias is not None:
        bias = _contiguous(cp, bias)
    if out is None:
        if beta != 0.0:
            raise ValueError("gemm: beta != 0 needs an 'out' array to accumulate into")
        sa, sb = getattr(a, "shape", ()), getattr(b, "shape", ())
        shape = (sa[0], sb[1]) if len(sa) == 2 and len(sb) == 2 else (0, 0)
        out = cp.empty(shape, dtype=cp.float32)
    return C.gemm(a, b, out, alpha, beta, bias, relu, False, _stream(cp))


def linear(x, weight, bias=None, *, relu=False, out=None):
    """``x @ weight.T + bias`` (then ReLU if ``relu``), weight [out_features, in_features]."""
    cp, _ = _modules()
    if not hasattr(weight, "__cuda_array_interface__"):
        raise TypeError(f"argument 'weight' must be a GPU float32 array (cupy.ndarray) like the "
                        f"input, got {type(weight).__name__}")
    if weight.ndim != 2:
        raise ValueError(f"argument 'weight' must be 2-D (out_features, in_features), got shape {weight.shape}")
    if getattr(x, "ndim", 0) == 2 and x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear: input has shape {x.shape} but weight has shape {weight.shape}: "
            f"expected input with {weight.shape[1]} features"
        )
    return matmul(x, weight.T, out=out, bias=bias, relu=relu)


def relu(x, *, out=None):
    """``max(x, 0)`` elementwise; nan stays nan. ``out`` may be ``x`` itself (in place)."""
    cp, C = _modules()
    x = _contiguous(cp, x)
    if out is None:
        out = _empty_like(cp, x)
    return C.relu_forward(x, out, _stream(cp))


def relu_backward(grad, y, *, out=None):
    """Gradient of ReLU: ``grad * (y > 0)`` where ``y`` is the ReLU's output (or its input)."""
    cp, C = _modules()
    grad, y = _contiguous(cp, grad), _contiguous(cp, y)
    if out is None:
        out = _empty_like(cp, grad)
    return C.relu_backward(grad, y, out, _stream(cp))


def bias_add(x, bias, *, out=None):
    """``x + bias`` per row: ``x`` (batch, features), ``bias`` (features,)."""
    cp, C = _modules()
    x, bias = _contiguous(cp, x), _contiguous(cp, bias)
    if out is None:
        out = _empty_like(cp, x)
    return C.bias_forward(x, bias, out, _stream(cp))


def bias_grad(grad, *, out=None, accumulate=False):
    """Gradient of a bias: the column sum of ``grad`` (batch, features), in a fixed order."""
    cp, C = _modules()
    grad = _contiguous(cp, grad)
    if out is None:
        if accumulate:
            raise ValueError("bias_grad: accumulate=True needs an 'out' array")
        shape = grad.shape[1:2] if getattr(grad, "ndim", 0) == 2 else (0,)
        out = cp.empty(shape, dtype=cp.float32)
    return C.bias_backward(grad, out, accumulate, _stream(cp))


def mse_loss(input, target):
    """Mean over all elements of ``(input - target) ** 2`` (float64 accumulation), as a 0-d
    float32 CuPy array: the value stays on the GPU until read (``float(loss)`` synchronises)."""
    cp, C = _modules()
    input, target = _contiguous(cp, input), _contiguous(cp, target)
    out = cp.empty((), dtype=cp.float32)
    return C.mse_forward(input, target, out, _stream(cp))


def mse_loss_backward(input, target, *, grad_output=1.0, reduction="mean", out=None):
    """Gradient of :func:`mse_loss` with respect to ``input``: ``2 * (input - target) / n * grad_output``.

    ``grad_output`` may be a number or a GPU scalar (multiplied in on the device, no sync).
    """
    cp, C = _modules()
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    input, target = _contiguous(cp, input), _contiguous(cp, target)
    n = getattr(input, "size", 1) if reduction == "mean" else 1
    on_device = hasattr(grad_output, "__cuda_array_interface__")
    scale = 2.0 * (1.0 if on_device else float(grad_output)) / max(n, 1)
    if out is None:
        out = _empty_like(cp, input)
    C.mse_backward(input, target, scale, out, _stream(cp))
    if on_device:
        cp.multiply(out, cp.asarray(grad_output, dtype=cp.float32), out=out)
    return out


def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
             weight_decay=0.0, nesterov=False, maximize=False, first_step=False):
    """One ``torch.optim.SGD`` update of ``param`` in place (and of ``momentum_buffer``)."""
    cp, C = _modules()
    if lr < 0:
        raise ValueError(f"Invalid learning rate: {lr}")
    grad = _contiguous(cp, grad)
    C.sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov,
               maximize, first_step, _stream(cp))
    return param


def sgd_step_many(params, grads, momentum_buffers=None, *, lr, momentum=0.0, dampening=0.0,
                  weight_decay=0.0, nesterov=False, maximize=False, first_step=False):
    """:func:`sgd_step` for every parameter of a model in ONE kernel launch."""
    cp, C = _modules()
    if lr < 0:
        raise ValueError(f"Invalid learning rate: {lr}")
    grads = [_contiguous(cp, g) for g in grads]
    C.sgd_step_many(list(params), grads, None if momentum_buffers is None else list(momentum_buffers),
                    lr, momentum, dampening, weight_decay, nesterov, maximize, first_step,
                    _stream(cp))
    return params


# ---- activations (element-wise kinds, softmax / log_softmax): fastmlp.ops's signatures --------
def act_forward(x, kind, p0=0.0, p1=0.0, *, out=None):
    """``f(x)`` element-wise for activation kind ``kind`` (an index of ``fastmlp.ops.ACT_KINDS``)."""
    cp, C = _modules()
    x = _contiguous(cp, x)
    if out is None:
        out = _empty_like(cp, x)
    return C.act_forward(x, int(kind), float(p0), float(p1), out, _stream(cp))


def act_backward(grad, input, output, kind, p0=0.0, p1=0.0, *, out=None):
    """``grad * f'(input)`` (reads ``input`` or ``output`` as the kind needs)."""
    cp, C = _modules()
    grad = _contiguous(cp, grad)
    input = None if input is None else _contiguous(cp, input)
    output = None if output is None else _contiguous(cp, output)
    if out is None:
        out = _empty_like(cp, grad)
    return C.act_backward(grad, input, output, int(kind), float(p0), float(p1), out, _stream(cp))


def softmax(x, *, log=False, out=None):
    """softmax (or log_softmax) over the last axis."""
    cp, C = _modules()
    x = _contiguous(cp, x)
    if out is None:
        out = _empty_like(cp, x)
    return C.softmax_forward(x, bool(log), out, _stream(cp))


def softmax_backward(grad, output, *, log=False, out=None):
    cp, C = _modules()
    grad, output = _contiguous(cp, grad), _contiguous(cp, output)
    if out is None:
        out = _empty_like(cp, grad)
    return C.softmax_backward(grad, output, bool(log), out, _stream(cp))


def linear_act(x, weight, bias, kind, p0=0.0, p1=0.0, *, want_input=False):
    """``f(x @ weight.T + bias)`` in one GEMM (activation in the epilogue); ``(y, z)`` with
    ``want_input=True`` (z the pre-activation when the kind's gradient reads it, else None)."""
    cp, C = _modules()
    x, weight = _contiguous(cp, x), _contiguous(cp, weight)
    bias = None if bias is None else _contiguous(cp, bias)
    shape = (x.shape[0], weight.shape[0]) if x.ndim == 2 and weight.ndim == 2 else (0, 0)
    out = cp.empty(shape, dtype=cp.float32)
    from .ops import ACT_NEEDS_INPUT

    pre = cp.empty(shape, dtype=cp.float32) if want_input and int(kind) in ACT_NEEDS_INPUT else None
    C.linear_act_forward(x, weight, bias, out, int(kind), float(p0), float(p1), pre, _stream(cp))
    return (out, pre) if want_input else out


__all__ += ["act_forward", "act_backward", "softmax", "softmax_backward", "linear_act"]


# ---- optim: multi-tensor optimizer steps, ONE launch per call (csrc/cuda/optimizers.cu) -------
def adam_step_many(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1,
                   beta2, eps, weight_decay=0.0, amsgrad=False, maximize=False,
                   decoupled_weight_decay=False):
    """``fastmlp.ops.adam_step_many`` on GPU arrays."""
    cp, C = _modules()
    grads = [_contiguous(cp, g) for g in grads]
    C.adam_step_many(list(params), grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, list(steps), lr,
                     beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay,
                     _stream(cp))
    return params


def rmsprop_step_many(params, grads, square_avgs, momentum_buffers, grad_avgs, steps, *, lr,
                      alpha, eps, weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    """``fastmlp.ops.rmsprop_step_many`` on GPU arrays."""
    cp, C = _modules()
    grads = [_contiguous(cp, g) for g in grads]
    C.rmsprop_step_many(list(params), grads, square_avgs, momentum_buffers, grad_avgs, list(steps),
                        lr, alpha, eps, weight_decay, momentum, centered, maximize, _stream(cp))
    return params


def adagrad_step_many(params, grads, state_sums, steps, *, lr, lr_decay=0.0, eps=1e-10,
                      weight_decay=0.0, maximize=False):
    """``fastmlp.ops.adagrad_step_many`` on GPU arrays."""
    cp, C = _modules()
    grads = [_contiguous(cp, g) for g in grads]
    C.adagrad_step_many(list(params), grads, state_sums, list(steps), lr, lr_decay, eps,
                        weight_decay, maximize, _stream(cp))
    return params


__all__ += ["adam_step_many", "rmsprop_step_many", "adagrad_step_many"]
