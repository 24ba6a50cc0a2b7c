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

# The CPU kernel table: the compiled entry points the layers above call directly where a Python
# wrapper would cost more than the kernel (the eager hot path in nn.functional, the fused
# trainers in fastmlp.trainer / fastmlp.sklearn / the CLI, configuration). fastmlp.ops_cuda is
# the CUDA table, with the same signatures (plus a stream). Nothing above this module imports
# fastmlp._C or fastmlp._cuda: they reach the kernels through fastmlp.ops.
cpu = _C

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


# ---- losses (helper "loss"): softmax cross-entropy and the element-wise losses ----------------
# The kernels (csrc/cpu/losses.cpp, csrc/cuda/losses.cu) follow the numeric rules of
# csrc/include/fastmlp/loss.h. Class-index targets are int64 arrays shaped like the input without
# its class dimension (dim 1); rows whose target is ``ignore_index`` count for nothing.

LOSS_KINDS = dict(_C.LOSS_KINDS)  # kind codes of the element-wise kernels (mse, l1, huber, ...)

# The eager training step's call (CPU float32 only, positional, no dispatch):
# (input, target, weight, ignore_index, label_smoothing, reduction, want_rows).
cross_entropy_forward_backward_cpu = _C.cross_entropy_forward_backward


def _is_gpu(x):
    return type(x) is not np.ndarray and hasattr(x, "__cuda_array_interface__")


def cross_entropy_forward(input, target, weight=None, *, ignore_index=-100, label_smoothing=0.0,
                          want_rows=False):
    """``(loss_sum, weight_sum, row_losses or None)`` of softmax cross-entropy (class indices).

    ``input`` (N, C, d1, ...) float32 logits, ``target`` (N, d1, ...) int64. The 'mean' loss is
    ``loss_sum / weight_sum`` (PyTorch's: the sum of ``weight[target]`` over non-ignored rows).
    """
    if _is_gpu(input):
        return _gpu('input', input).cross_entropy_forward(
            input, target, weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
            want_rows=want_rows)
    return _C.cross_entropy_forward(input, target, weight, ignore_index, label_smoothing, want_rows)


def cross_entropy_backward(input, target, weight=None, grad_rows=None, *, scale=1.0,
                           ignore_index=-100, label_smoothing=0.0):
    """Gradient of the row losses: ``scale * grad_rows[r] * (softmax - coefficients)`` per row."""
    if _is_gpu(input):
        return _gpu('input', input).cross_entropy_backward(
            input, target, weight, grad_rows, scale=scale, ignore_index=ignore_index,
            label_smoothing=label_smoothing)
    return _C.cross_entropy_backward(input, target, weight, grad_rows, scale, ignore_index,
                                     label_smoothing)


def cross_entropy_forward_backward(input, target, weight=None, *, ignore_index=-100,
                                   label_smoothing=0.0, reduction="mean", want_rows=False):
    """``(loss_sum, weight_sum, dinput, row_losses or None)``: the forward and the gradient of the
    ``reduction`` ('mean' or 'sum') loss with respect to ``input``, in one sweep over the logits."""
    if _is_gpu(input):
        return _gpu('input', input).cross_entropy_forward_backward(
            input, target, weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
            reduction=reduction, want_rows=want_rows)
    return _C.cross_entropy_forward_backward(input, target, weight, ignore_index, label_smoothing,
                                             reduction, want_rows)


def cross_entropy_prob_forward(input, target, weight=None, *, label_smoothing=0.0, want_rows=False):
    """``(loss_sum, row_losses or None)`` for class-probability targets shaped like ``input``."""
    if _is_gpu(input):
        return _gpu('input', input).cross_entropy_prob_forward(
            input, target, weight, label_smoothing=label_smoothing, want_rows=want_rows)
    return _C.cross_entropy_prob_forward(input, target, weight, label_smoothing, want_rows)


def cross_entropy_prob_backward(input, target, weight=None, grad_rows=None, *, scale=1.0,
                                label_smoothing=0.0):
    if _is_gpu(input):
        return _gpu('input', input).cross_entropy_prob_backward(
            input, target, weight, grad_rows, scale=scale, label_smoothing=label_smoothing)
    return _C.cross_entropy_prob_backward(input, target, weight, grad_rows, scale, label_smoothing)


def loss_elementwise_forward(kind, input, target, weight=None, pos_weight=None, *, p0=1.0,
                             want_out=False):
    """``(sum, losses or None)`` of an element-wise loss (``LOSS_KINDS``: mse, l1, smooth_l1 with
    beta=p0, huber with delta=p0, bce_with_logits with ``pos_weight`` along the last dimension);
    ``weight`` (shaped like input) multiplies each element's loss."""
    if _is_gpu(input):
        return _gpu('input', input).loss_elementwise_forward(
            kind, input, target, weight, pos_weight, p0=p0, want_out=want_out)
    return _C.loss_elementwise_forward(kind, input, target, weight, pos_weight, p0, want_out)


def loss_elementwise_backward(kind, input, target, weight=None, pos_weight=None, grad_output=None,
                              *, p0=1.0, scale=1.0):
    """``scale * grad_output * weight * dl/dinput`` (grad_output None: ones)."""
    if _is_gpu(input):
        return _gpu('input', input).loss_elementwise_backward(
            kind, input, target, weight, pos_weight, grad_output, p0=p0, scale=scale)
    return _C.loss_elementwise_backward(kind, input, target, weight, pos_weight, grad_output, p0,
                                        scale)


def loss_elementwise_forward_backward(kind, input, target, weight=None, pos_weight=None, *, p0=1.0,
                                      scale=1.0):
    """``(sum, scale * weight * dl/dinput)`` in one pass."""
    if _is_gpu(input):
        return _gpu('input', input).loss_elementwise_forward_backward(
            kind, input, target, weight, pos_weight, p0=p0, scale=scale)
    return _C.loss_elementwise_forward_backward(kind, input, target, weight, pos_weight, p0, scale)


__all__ += ["LOSS_KINDS", "cross_entropy_forward", "cross_entropy_forward_backward_cpu", "cross_entropy_backward",
            "cross_entropy_forward_backward", "cross_entropy_prob_forward",
            "cross_entropy_prob_backward", "loss_elementwise_forward", "loss_elementwise_backward",
            "loss_elementwise_forward_backward"]


# ---- activations (element-wise kinds, softmax / log_softmax) --------------------------------
# An activation is named by its kind (an index into ACT_KINDS, the order of fastmlp::Act in
# csrc/include/fastmlp/activation.h, which _C reports) and two float parameters p0, p1:
# leaky_relu (negative_slope), elu (alpha), softplus (beta, threshold), hardtanh (min, max).
ACT_KINDS = tuple(_C.ACT_KINDS)
_ACT_INDEX = {name: i for i, name in enumerate(ACT_KINDS)}
# kinds whose gradient reads the pre-activation z (the others read the output y)
ACT_NEEDS_INPUT = frozenset(i for i, n in enumerate(ACT_KINDS)
                            if n not in ("identity", "relu", "tanh", "sigmoid"))


def act_kind(kind):
    """The kind index of an activation given by name (``"gelu"``) or index."""
    if isinstance(kind, str):
        try:
            return _ACT_INDEX[kind]
        except KeyError:
            raise ValueError(f"unknown activation {kind!r}; expected one of {ACT_KINDS}") from None
    return int(kind)


def act_forward(x, kind, p0=0.0, p1=0.0, *, out=None):
    """``f(x)`` element-wise for activation ``kind`` (name or index) with parameters p0, p1.

    ``out`` may be ``x`` itself (in place).
    """
    k = kind if type(kind) is int else act_kind(kind)
    if type(x) is not np.ndarray and hasattr(x, "__cuda_array_interface__"):
        return _gpu('x', x).act_forward(x, k, p0, p1, out=out)
    return _C.act_forward(x, k, p0, p1, out)


def act_backward(grad, input, output, kind, p0=0.0, p1=0.0, *, out=None):
    """``grad * f'(input)``; reads ``input`` (the pre-activation) for the kinds in
    ``ACT_NEEDS_INPUT`` and ``output`` (``f(input)``) for the others; the unread one may be None."""
    k = kind if type(kind) is int else act_kind(kind)
    if type(grad) is not np.ndarray and hasattr(grad, "__cuda_array_interface__"):
        return _gpu('grad', grad).act_backward(grad, input, output, k, p0, p1, out=out)
    return _C.act_backward(grad, input, output, k, p0, p1, out)


def softmax(x, *, log=False, out=None):
    """softmax (or log_softmax with ``log=True``) over the last axis, max-subtracted."""
    if type(x) is not np.ndarray and hasattr(x, "__cuda_array_interface__"):
        return _gpu('x', x).softmax(x, log=log, out=out)
    return _C.softmax_forward(x, log, out)


def softmax_backward(grad, output, *, log=False, out=None):
    """Gradient of :func:`softmax` over the last axis from its ``output``."""
    if type(grad) is not np.ndarray and hasattr(grad, "__cuda_array_interface__"):
        return _gpu('grad', grad).softmax_backward(grad, output, log=log, out=out)
    return _C.softmax_backward(grad, output, log, out)


def linear_act(x, weight, bias, kind, p0=0.0, p1=0.0, *, want_input=False):
    """``f(x @ weight.T + bias)`` with the activation in the GEMM epilogue (one pass).

    With ``want_input=True`` returns ``(y, z)``, ``z`` the pre-activation from the same pass when
    the kind's gradient needs it (else None).
    """
    k = kind if type(kind) is int else act_kind(kind)
    if type(x) is not np.ndarray and hasattr(x, "__cuda_array_interface__"):
        return _gpu('x', x).linear_act(x, weight, bias, k, p0, p1, want_input=want_input)
    return _C.linear_forward(x, weight, bias, False, None, k, p0, p1, want_input)


def linear_act_backward(grad, x, weight, kind, p0=0.0, p1=0.0, *, act_input=None, act_output=None,
                        need_input_grad=True, need_weight_grad=True, need_bias_grad=True,
                        dweight=None, dbias=None, accumulate=False):
    """Backward of :func:`linear_act` in one call: ``(dinput, dweight, dbias)`` as
    :func:`linear_backward`; the activation's gradient reads ``act_input`` (z) or ``act_output`` (y)."""
    k = kind if type(kind) is int else act_kind(kind)
    if type(grad) is not np.ndarray and hasattr(grad, "__cuda_array_interface__"):
        g = act_backward(grad, act_input, act_output, k, p0, p1)
        return linear_backward(g, x, weight, need_input_grad=need_input_grad,
                               need_weight_grad=need_weight_grad, need_bias_grad=need_bias_grad,
                               dweight=dweight, dbias=dbias, accumulate=accumulate)
    acc_w = accumulate and dweight is not None
    acc_b = accumulate and dbias is not None
    return _C.linear_backward(grad, x, weight, act_output, None, dweight, dbias, need_input_grad,
                              need_weight_grad, need_bias_grad, acc_w, acc_b, k, p0, p1, act_input)


__all__ += ["ACT_KINDS", "ACT_NEEDS_INPUT", "act_kind", "act_forward", "act_backward", "softmax",
            "softmax_backward", "linear_act", "linear_act_backward"]


# ---- inference (issue 14): a reusable native forward plan per model -------------------------

INFER_PATHS = {"auto": 0, "rows": 1, "tiles": 2, "gemm": 3, "reference": 4}


class InferPlan:
    """A compiled forward of a Linear(+activation) chain (csrc/include/fastmlp/mlp_infer.h): the
    layers' parameter arrays read in place (kept alive, never copied, so in-place updates show in
    the next call) and a workspace reused from call to call. It is a cache: a copy or an
    unpickled copy is ``None``, and its owner rebuilds it."""

    __slots__ = ("capsule", "in_features", "out_features")

    def __init__(self, weights, biases, acts):
        self.capsule = _C.infer_plan(list(weights), list(biases), list(acts))
        self.in_features = int(weights[0].shape[1])
        self.out_features = int(weights[-1].shape[0])
        # the automatic path's tiles -> gemm crossover, from the measured cost model where the
        # net is in its ambiguous region (calibrated on first use and cached; the compiled rule
        # otherwise, and under FASTMLP_COSTMODEL=rule)
        try:
            from . import costmodel
        except ImportError:  # the interpreter is finalizing (no imports): the compiled rule
            return
        g = costmodel.infer_gemm_from([(int(w.shape[1]), int(w.shape[0])) for w in weights])
        if g != -1:
            _C.infer_set_gemm_from(self.capsule, g)

    def __reduce__(self):
        return (type(None), ())

    def __copy__(self):
        return None

    def __deepcopy__(self, memo):
        return None

    def info(self):
        """{'layers', 'in_features', 'out_features', 'workspace_floats', 'workspace_grows',
        'gemm_from' (rows from which the automatic path is gemm; None: never),
        'gemm_from_source' ('compiled rule' or 'set')}."""
        return _C.infer_info(self.capsule)

    def choose(self, n):
        """The kernel path a call with ``n`` rows takes ('rows', 'tiles' or 'gemm')."""
        return _C.infer_choose(self.capsule, int(n))


# infer_forward(plan.capsule, X, out[, path]): the plan on X (n, in) (an exact C-contiguous float32
# numpy array) into ``out`` or a new (n, out) array; None when X needs converting first.
infer_forward = _C.infer_forward


def infer(plan, x, *, out=None, path="auto"):
    """The plan's chain on ``x`` (n, in) float32: a new (n, out) array, or ``out`` filled."""
    r = _C.infer_forward(plan.capsule, x, out, INFER_PATHS[path])
    if r is None:
        raise ValueError(f"infer: x must be a C-contiguous float32 array of shape (n, "
                         f"{plan.in_features}), got {getattr(x, 'dtype', type(x).__name__)} "
                         f"{getattr(x, 'shape', '')}")
    return r


__all__ += ["InferPlan", "infer", "infer_forward", "INFER_PATHS"]
