"""Array-level kernels: numpy arrays in, numpy arrays out, one function per op.

This is the layer under :mod:`fastmlp.tensor`. Each function calls one compiled kernel of
``fastmlp._C``; the bindings check dtypes, shapes, layouts and aliasing and raise ``TypeError`` /
``ValueError`` with the argument's name. Nothing here copies an output: an ``out=`` argument must be
a writable C-contiguous float32 array, and it is filled in place and returned.

Conventions follow PyTorch: ``linear`` takes ``weight`` as ``[out_features, in_features]``;
``mse_loss`` is the mean over all elements; ``relu(nan)`` is nan; the ReLU gradient at 0 is 0.
"""
from __future__ import annotations

import numpy as np

from . import _C

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
]


def _gpu(name, x):
    """fastmlp.ops_cuda, imported on the first GPU array (keeps CuPy out of CPU-only use).

    Where the CUDA ops cannot run (no CUDA module, no CuPy, no device) a GPU array is a
    TypeError naming the argument and the reason, checked before anything is launched.
    """
    from . import ops_cuda

    reason = ops_cuda.unavailable_reason()
    if reason:
        raise TypeError(f"argument '{name}' is a GPU array ({type(x).__name__}), but fastmlp's CUDA "
                        f"ops cannot run here ({reason}): pass a NumPy array (e.g. cupy.asnumpy(x))")
    return ops_cuda


# Each op starts with `type(x) is not np.ndarray and hasattr(x, "__cuda_array_interface__")`:
# one type check on the numpy path; GPU arrays (CuPy, ...) go to the CUDA kernels.


def matmul(a, b, *, out=None, alpha=1.0, beta=0.0, bias=None, relu=False):
    """``out = alpha * a @ b + beta * out`` (then ``+ bias`` per column, then ReLU).

    ``a`` (M, K) and ``b`` (K, N) are 2-D float32 arrays; a transposed view such as ``w.T`` is
    read in place (as a transpose flag), never copied. With ``beta == 0`` ``out`` is overwritten
    without being read.
    """
    if type(a) is not np.ndarray and hasattr(a, "__cuda_array_interface__"):
        return _gpu('a', a).matmul(a, b, out=out, alpha=alpha, beta=beta, bias=bias, relu=relu)
    return _C.gemm(a, b, out, alpha, beta, bias, relu)


def linear(x, weight, bias=None, *, relu=False, out=None):
    """``x @ weight.T + bias`` (then ReLU if ``relu``), with PyTorch's weight layout [out, in].

    ``x`` is (batch, in_features), ``weight`` (out_features, in_features), ``bias`` (out_features,).
    """
    # The common case (float32 arrays _C.gemm reads in place) runs in C with no Python checks;
    # None means "not taken": the checks below and _C.gemm's decide (and word any error).
    y = _C.linear_fast(x, weight, bias, relu, out)
    if y is not None:
        return y
    if type(x) is not np.ndarray and hasattr(x, "__cuda_array_interface__"):
        return _gpu('x', x).linear(x, weight, bias, relu=relu, out=out)
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"argument 'weight' must be a numpy.ndarray of float32, got {type(weight).__name__}")
    if weight.ndim != 2:
        raise ValueError(f"argument 'weight' must be 2-D (out_features, in_features), got shape {weight.shape}")
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear: input has shape {x.shape} but weight has shape {weight.shape}: "
            f"expected input with {weight.shape[1]} features"
        )
    return _C.gemm(x, weight.T, out, 1.0, 0.0, bias, relu, a_name="x", b_name="weight")


def relu(x, *, out=None):
    """``max(x, 0)`` elementwise; nan stays nan. ``out`` may be ``x`` itself (in place)."""
    if type(x) is not np.ndarray and hasattr(x, "__cuda_array_interface__"):
        return _gpu('x', x).relu(x, out=out)
    return _C.relu_forward(x, out)


def relu_backward(grad, y, *, out=None):
    """Gradient of ReLU: ``grad * (y > 0)`` where ``y`` is the ReLU's output (or its input)."""
    if type(grad) is not np.ndarray and hasattr(grad, "__cuda_array_interface__"):
        return _gpu('grad', grad).relu_backward(grad, y, out=out)
    return _C.relu_backward(grad, y, out)


def bias_add(x, bias, *, out=None):
    """``x + bias`` per row: ``x`` (batch, features), ``bias`` (features,)."""
    if type(x) is not np.ndarray and hasattr(x, "__cuda_array_interface__"):
        return _gpu('x', x).bias_add(x, bias, out=out)
    return _C.bias_forward(x, bias, out)


def bias_grad(grad, *, out=None, accumulate=False):
    """Gradient of a bias: the column sum of ``grad`` (batch, features), in a fixed order."""
    if type(grad) is not np.ndarray and hasattr(grad, "__cuda_array_interface__"):
        return _gpu('grad', grad).bias_grad(grad, out=out, accumulate=accumulate)
    return _C.bias_backward(grad, out, accumulate)


def mse_loss(input, target):
    """Mean over all elements of ``(input - target) ** 2``, accumulated in float64. Returns a float."""
    if type(input) is not np.ndarray and hasattr(input, "__cuda_array_interface__"):
        return _gpu('input', input).mse_loss(input, target)
    return _C.mse_forward(input, target)


def mse_loss_backward(input, target, *, grad_output=1.0, reduction="mean", out=None):
    """Gradient of :func:`mse_loss` with respect to ``input``: ``2 * (input - target) / n * grad_output``.

    ``reduction="sum"`` drops the ``1 / n``.
    """
    if type(input) is not np.ndarray and hasattr(input, "__cuda_array_interface__"):
        return _gpu('input', input).mse_loss_backward(input, target, grad_output=grad_output, reduction=reduction, out=out)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    n = np.size(input) if reduction == "mean" else 1
    scale = 2.0 * float(grad_output) / max(n, 1)
    return _C.mse_backward(input, target, scale, out)


def linear_backward(grad, x, weight, *, relu_out=None, need_input_grad=True, need_weight_grad=True,
                    need_bias_grad=True, dweight=None, dbias=None, accumulate=False):
    """Backward of :func:`linear` (and of its ReLU when ``relu_out`` is given), in one kernel call.

    ``grad`` (batch, out) is the gradient of the output; ``relu_out`` the ReLU's output, whose
    mask ``relu_out > 0`` is applied to ``grad`` first. Returns ``(dinput, dweight, dbias)``, with
    None for what is not needed. ``dweight``/``dbias`` arrays, when given, are filled (or added to
    with ``accumulate=True``) in place. ``grad`` is never written.
    """
    if type(grad) is not np.ndarray and hasattr(grad, "__cuda_array_interface__"):
        g = grad if relu_out is None else relu_backward(grad, relu_out)
        db = dw = dx = None
        if need_bias_grad or dbias is not None:
            db = bias_grad(g, out=dbias, accumulate=accumulate and dbias is not None)
        if need_weight_grad or dweight is not None:
            if dweight is None:
                dw = matmul(g.T, x)
            else:
                dw = matmul(g.T, x, out=dweight, beta=1.0 if accumulate else 0.0)
        if need_input_grad:
            dx = matmul(g, weight)
        return dx, dw, db
    acc_w = accumulate and dweight is not None
    acc_b = accumulate and dbias is not None
    return _C.linear_backward(grad, x, weight, relu_out, None, dweight, dbias, need_input_grad,
                              need_weight_grad, need_bias_grad, acc_w, acc_b)


def mse_loss_and_grad(input, target, *, reduction="mean"):
    """``(loss, dinput)``: :func:`mse_loss` (a float) and its gradient, in one kernel call."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if type(input) is not np.ndarray and hasattr(input, "__cuda_array_interface__"):
        loss = mse_loss(input, target)
        d = mse_loss_backward(input, target, reduction=reduction)
    else:
        n = np.size(input)
        loss, d = _C.mse_forward_backward(input, target, 2.0 / max(n, 1) if reduction == "mean" else 2.0)
    return (loss * np.size(input) if reduction == "sum" else loss), d


__all__ += ["linear_backward", "mse_loss_and_grad"]


def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
             weight_decay=0.0, nesterov=False, maximize=False, first_step=False):
    """One ``torch.optim.SGD`` update of ``param`` in place (and of ``momentum_buffer``).

    ``first_step=True`` initialises the momentum buffer with the gradient, as PyTorch does on a
    parameter's first step.
    """
    if type(param) is not np.ndarray and hasattr(param, "__cuda_array_interface__"):
        return _gpu('param', param).sgd_step(param, grad, momentum_buffer, lr=lr, momentum=momentum,
                               dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                               maximize=maximize, first_step=first_step)
    if lr < 0:
        raise ValueError(f"Invalid learning rate: {lr}")
    _C.sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov,
                maximize, first_step)
    return param


def sgd_step_many(params, grads, momentum_buffers=None, *, lr, momentum=0.0, dampening=0.0,
                  weight_decay=0.0, nesterov=False, maximize=False, first_step=False):
    """:func:`sgd_step` for a list of parameters (one kernel launch on the GPU).

    ``momentum_buffers`` is a list like ``params`` (or None when ``momentum == 0``).
    """
    opts = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov, maximize=maximize, first_step=first_step)
    params = list(params)
    if params and type(params[0]) is not np.ndarray and hasattr(params[0], "__cuda_array_interface__"):
        return _gpu('params[0]', params[0]).sgd_step_many(params, grads, momentum_buffers, **opts)
    grads = list(grads)
    if len(grads) != len(params):
        raise ValueError(f"sgd_step_many: got {len(params)} params but {len(grads)} grads")
    bufs = [None] * len(params) if momentum_buffers is None else list(momentum_buffers)
    if len(bufs) != len(params):
        raise ValueError(f"sgd_step_many: got {len(params)} params but {len(bufs)} momentum_buffers")
    for p, g, b in zip(params, grads, bufs):
        sgd_step(p, g, b, **opts)
    return params


__all__ += ["sgd_step_many"]


# ---- optim: multi-tensor optimizer steps (csrc/cpu/optimizers.cpp; rules in optimizer.h) -----
# Each steps every parameter of a list in ONE kernel call. ``steps`` holds each parameter's step
# count after this step (1 on its first). State lists a configuration does not use may be None.
# Hyper-parameters are validated in fastmlp.optim (once); the bindings check the arrays.

_adam_many = _C.adam_step_many
# optim.SGD's CPU fast path: _C's multi-tensor SGD step re-exported as is (its positional
# signature: params, grads, momentum_buffers, first_step, lr, momentum, dampening, weight_decay,
# nesterov, maximize), so optim needs no _C of its own.
sgd_step_many_cpu = _C.sgd_step_many
_rmsprop_many = _C.rmsprop_step_many
_adagrad_many = _C.adagrad_step_many


def _on_gpu(params):
    return (bool(params) and type(params[0]) is not np.ndarray
            and hasattr(params[0], "__cuda_array_interface__"))


def adam_step_many(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1,
                   beta2, eps, weight_decay=0.0, amsgrad=False, maximize=False,
                   decoupled_weight_decay=False):
    """``torch.optim.Adam`` (``AdamW`` when ``decoupled_weight_decay``) over lists, in place."""
    if _on_gpu(params):
        return _gpu('params[0]', params[0]).adam_step_many(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr=lr, beta1=beta1,
            beta2=beta2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay)
    _adam_many(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr, beta1, beta2, eps,
               weight_decay, amsgrad, maximize, decoupled_weight_decay)
    return params


def rmsprop_step_many(params, grads, square_avgs, momentum_buffers, grad_avgs, steps, *, lr,
                      alpha, eps, weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    """``torch.optim.RMSprop`` over lists, in place."""
    if _on_gpu(params):
        return _gpu('params[0]', params[0]).rmsprop_step_many(
            params, grads, square_avgs, momentum_buffers, grad_avgs, steps, lr=lr, alpha=alpha,
            eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
            maximize=maximize)
    _rmsprop_many(params, grads, square_avgs, momentum_buffers, grad_avgs, steps, lr, alpha, eps,
                  weight_decay, momentum, centered, maximize)
    return params


def adagrad_step_many(params, grads, state_sums, steps, *, lr, lr_decay=0.0, eps=1e-10,
                      weight_decay=0.0, maximize=False):
    """``torch.optim.Adagrad`` over lists, in place (``state_sums`` start at
    ``initial_accumulator_value``: the caller fills them)."""
    if _on_gpu(params):
        return _gpu('params[0]', params[0]).adagrad_step_many(
            params, grads, state_sums, steps, lr=lr, lr_decay=lr_decay, eps=eps,
            weight_decay=weight_decay, maximize=maximize)
    _adagrad_many(params, grads, state_sums, steps, lr, lr_decay, eps, weight_decay, maximize)
    return params


def optim_step_many(kind, params, grads, state0=None, state1=None, state2=None, steps=None, *,
                    reference=False, **options):
    """Any optimizer kind through one kernel door (state slots as csrc/include/fastmlp/optimizer.h
    lists them); ``reference=True`` runs the serial scalar reference (CPU; for tests)."""
    _C.optim_step_many(kind, params, grads, state0, state1, state2, steps, reference=reference,
                       **options)
    return params


__all__ += ["adam_step_many", "rmsprop_step_many", "adagrad_step_many", "optim_step_many"]
