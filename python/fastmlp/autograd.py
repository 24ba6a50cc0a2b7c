"""The tape: grad mode, the ``Node`` every op records, and the backward pass.

micrograd-simple: an op that needs a gradient creates a ``Node`` subclass instance holding its
inputs (Tensors) and whatever it saved from the forward; the node's ``backward(grad)`` returns one
gradient array (or None) per input. ``run_backward`` visits the nodes reachable from the root in
reverse creation order (a valid topological order: inputs always exist before the op that uses
them), sums gradients per node, and accumulates into the leaves' ``.grad``. Hot nodes (Linear)
write their parameters' gradients straight into ``.grad`` inside their backward and return None
for them.

Grad mode is process-global (not per thread, unlike PyTorch).
"""
from __future__ import annotations

import functools
import itertools
import operator
import threading

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "inference_mode",
           "Node", "run_backward", "backward", "grad"]


class _GradModeState(threading.local):
    """Grad mode is per thread, as in PyTorch: ``no_grad()`` in an inference thread must not
    switch off recording in a thread that is training. (Every thread starts enabled.)"""

    enabled = True


GradMode = _GradModeState()


def is_grad_enabled() -> bool:
    return GradMode.enabled


class _GradModeContext:
    """Context manager and decorator that sets grad mode and restores it on exit."""

    _mode = True

    def __enter__(self):
        self._prev = GradMode.enabled
        GradMode.enabled = self._mode

    def __exit__(self, *exc):
        GradMode.enabled = self._prev
        return False

    def __call__(self, fn):
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = GradMode.enabled
            GradMode.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                GradMode.enabled = prev

        return wrapper


class no_grad(_GradModeContext):
    """``with fastmlp.no_grad():`` — ops record nothing and results do not require grad."""

    _mode = False


class enable_grad(_GradModeContext):
    _mode = True


class inference_mode(_GradModeContext):
    def __init__(self, mode=True):
        self._mode = not mode


class set_grad_enabled(_GradModeContext):
    """``set_grad_enabled(False)`` sets the mode now (as a function) or for a ``with`` block."""

    def __init__(self, mode):
        self._mode = bool(mode)
        self._prev = GradMode.enabled
        GradMode.enabled = self._mode

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        GradMode.enabled = self._prev
        return False


_FREED = ("Trying to backward through the graph a second time (or directly access saved tensors "
          "after they have already been freed). Saved intermediate values of the graph are freed "
          "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
          "backward through the graph a second time or if you need to access saved tensors after "
          "calling backward.")

_seq = itertools.count()


class Node:
    """One recorded op. Subclasses set ``inputs`` (tuple of Tensors) and implement ``backward``.

    ``saved`` holds what the backward needs; it is set to None once the graph is freed (after a
    backward without ``retain_graph``), and a second backward then raises RuntimeError.
    """

    __slots__ = ("inputs", "saved", "seq", "gacc")
    name_ = None

    def __init__(self, inputs, saved=()):
        self.inputs = inputs
        self.saved = saved
        self.seq = next(_seq)
        self.gacc = None

    def backward(self, grad):  # pragma: no cover - every op overrides it
        raise NotImplementedError

    def name(self):
        return self.name_ or type(self).__name__

    def __repr__(self):
        return f"<{self.name()} object at {hex(id(self))}>"

    @property
    def next_functions(self):
        out = []
        for t in self.inputs:
            n = t._node
            out.append((n if n is not None else (_AccumulateGrad(t) if t.requires_grad else None), 0))
        return tuple(out)

    def release(self):
        s = self.saved
        if type(s) is not tuple or s:  # nodes that saved nothing can run backward again
            self.saved = None


class _AccumulateGrad:
    __slots__ = ("variable",)

    def __init__(self, t):
        self.variable = t

    def name(self):
        return "torch::autograd::AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {hex(id(self))}>"


# ---- hooks (DistributedDataParallel's gradient buckets use them) -----------------------------
# id(leaf) -> (weakref to it, [hook, ...]): Tensor.register_post_accumulate_grad_hook. Usually
# empty, so the tape pays one dict truth test per accumulated leaf and nothing else. The dict is
# mutated in place, never rebound (nn.functional holds the same object).
_post_acc_hooks = {}
_callbacks = []  # queue_callback: run once when the current backward pass has finished


class _HookHandle:
    __slots__ = ("key", "hook")

    def __init__(self, key, hook):
        self.key = key
        self.hook = hook

    def remove(self):
        entry = _post_acc_hooks.get(self.key)
        if entry is not None:
            hooks = entry[1]
            if self.hook in hooks:
                hooks.remove(self.hook)
            if not hooks:
                del _post_acc_hooks[self.key]


def register_post_accumulate_grad_hook(t, hook):
    """``hook(t)`` after a backward pass has accumulated into the leaf ``t.grad``; returns a handle
    with ``remove()`` (``torch.Tensor.register_post_accumulate_grad_hook``)."""
    import weakref

    if not callable(hook):
        raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got "
                        f"{type(hook).__name__}")
    if not t.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if t._node is not None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
    key = id(t)
    entry = _post_acc_hooks.get(key)
    if entry is None or entry[0]() is not t:
        entry = (weakref.ref(t, lambda _, key=key: _post_acc_hooks.pop(key, None)), [])
        _post_acc_hooks[key] = entry
    entry[1].append(hook)
    return _HookHandle(key, hook)


def _run_post_acc_hooks(t):
    entry = _post_acc_hooks.get(id(t))
    if entry is not None and entry[0]() is t:
        for h in tuple(entry[1]):
            h(t)


def queue_callback(fn):
    """Run ``fn()`` once, when the backward pass now running has finished (as torch's
    ``Variable._execution_engine.queue_callback``); outside a backward pass, at the end of the next."""
    _callbacks.append(fn)


def _run_callbacks():
    while _callbacks:
        _callbacks.pop(0)()


def _accumulate_leaf(t, g):
    """t.grad += g (g is an array; copied on first use, since nodes may share gradient arrays)."""
    cur = t.grad
    if cur is None:
        from .tensor import _wrap

        if g.shape != t._data.shape:
            g = g.reshape(t._data.shape)
        t.grad = _wrap(g.astype(t._data.dtype, order="C", copy=True))
    else:
        cur._data += g
    if _post_acc_hooks:
        _run_post_acc_hooks(t)


_PENDING = object()  # gacc marker of a node that is in this backward's walk but has no grad yet


def run_backward(root, grad, retain_graph=False):
    """Backpropagate ``grad`` (an array shaped like ``root``) through the graph behind ``root``."""
    node0 = root._node
    if node0 is None:  # backward() on a leaf: its gradient is the seed itself
        _accumulate_leaf(root, grad)
        if _callbacks:
            _run_callbacks()
        return
    pending = _PENDING
    node0.gacc = pending
    nodes = [node0]
    try:
        for n in nodes:  # grows while iterating: a breadth-first walk, marking nodes as it goes
            for t in n.inputs:
                p = t._node
                if p is not None and p.gacc is not pending:
                    p.gacc = pending
                    nodes.append(p)
        if len(nodes) > 1:
            nodes.sort(key=_seq_of, reverse=True)  # creation order reversed: topological
        node0.gacc = grad
        for n in nodes:
            g = n.gacc
            n.gacc = None
            if g is pending:  # no gradient reached this node
                continue
            if n.saved is None:
                raise RuntimeError(_FREED)
            for t, gi in zip(n.inputs, n.backward(g)):
                if gi is None:
                    continue
                p = t._node
                if p is None:
                    if t.requires_grad:
                        _accumulate_leaf(t, gi)
                elif p.gacc is pending:
                    p.gacc = gi
                else:
                    p.gacc = p.gacc + gi
            if not retain_graph:
                n.release()
    except BaseException:
        for n in nodes:
            n.gacc = None
        _callbacks.clear()
        raise
    if _callbacks:
        _run_callbacks()


_seq_of = operator.attrgetter("seq")


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """``fastmlp.autograd.backward``: ``t.backward(g)`` for each tensor."""
    from .tensor import Tensor

    if isinstance(tensors, Tensor):
        tensors = (tensors,)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = (grad_tensors,) * len(tensors) if grad_tensors is None else (grad_tensors,)
    for t, g in zip(tensors, grad_tensors):
        t.backward(g, retain_graph=True if retain_graph is None and len(tensors) > 1 else retain_graph,
                   create_graph=create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """``fastmlp.autograd.grad``: gradients of ``outputs`` w.r.t. ``inputs`` (leaves' .grad untouched)."""
    from .tensor import Tensor

    single = isinstance(inputs, Tensor)
    inputs = (inputs,) if single else tuple(inputs)
    saved = [t.grad for t in inputs]
    for t in inputs:
        if t._node is not None:
            raise NotImplementedError("fastmlp.autograd.grad: only leaf inputs are supported")
        t.grad = None
    try:
        backward(outputs, grad_outputs, retain_graph=retain_graph, create_graph=create_graph)
        res = []
        for t in inputs:
            if t.grad is None and not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used "
                                   "in the graph. Set allow_unused=True if this is the desired behavior.")
            res.append(t.grad)
    finally:
        for t, g in zip(inputs, saved):
            t.grad = g
    return tuple(res)
