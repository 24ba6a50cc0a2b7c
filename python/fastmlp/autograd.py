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
           "is_inference_mode_enabled", "Node", "run_backward", "backward", "grad",
           "set_detect_anomaly", "detect_anomaly", "is_anomaly_enabled"]


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
    """``with fastmlp.no_grad():`` — ops record nothing and results do not require grad.
    Also a decorator, with or without parentheses (``@no_grad`` / ``@no_grad()``)."""

    _mode = False

    def __new__(cls, fn=None):
        self = super().__new__(cls)
        if fn is not None and callable(fn):
            return self(fn)
        return self

    def __init__(self, fn=None):
        pass


class enable_grad(no_grad):
    _mode = True


class _InferenceState(threading.local):
    enabled = False


_inference = _InferenceState()


class inference_mode(_GradModeContext):
    """``inference_mode(mode=True)``: as ``no_grad`` (a context manager or decorator)."""

    def __new__(cls, mode=True):
        self = super().__new__(cls)
        if callable(mode) and not isinstance(mode, bool):
            self.__init__(True)
            return self(mode)
        return self

    def __init__(self, mode=True):
        if callable(mode) and not isinstance(mode, bool):
            mode = True
        self._mode = not mode
        self._inf = bool(mode)

    def __call__(self, fn):
        inf = self._inf

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(inf):
                return fn(*args, **kwargs)

        return wrapper

    def __enter__(self):
        self._prev_inf = getattr(_inference, "enabled", False)
        _inference.enabled = self._inf
        super().__enter__()

    def __exit__(self, *exc):
        _inference.enabled = self._prev_inf
        return super().__exit__(*exc)


def is_inference_mode_enabled():
    return getattr(_inference, "enabled", False)


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

    def __call__(self, fn):
        GradMode.enabled = self._prev  # as a decorator it changes nothing until the call
        return super().__call__(fn)


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

    ``backward_graph(g)`` is the same backward written with Tensor ops (``g`` and the results are
    Tensors), so that with ``create_graph=True`` the backward pass is itself recorded and can be
    differentiated again. ``_saved_inputs()`` names the inputs whose values the backward reads
    (checked against their version counters); ``_saves_output`` says the backward reads the output.
    """

    __slots__ = ("inputs", "saved", "seq", "gacc", "outvc")
    name_ = None
    _saves_output = False

    def __init__(self, inputs, saved=()):
        self.inputs = inputs
        self.saved = saved
        self.seq = next(_seq)
        self.gacc = None

    def backward(self, grad):  # pragma: no cover - every op overrides it
        raise NotImplementedError

    def backward_graph(self, grad):
        raise NotImplementedError(
            f"fastmlp: the backward of {self.name()} cannot be recorded (create_graph=True, i.e. "
            f"higher-order gradients, is not supported through this operation)")

    def _saved_inputs(self):
        return self.inputs

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


# ---- version counters ---------------------------------------------------------------------
# Every in-place op on a Tensor bumps its counter (``t._version``). A counter remembers the tape
# positions (``Node.seq`` numbering) of its recent bumps; a node created before a bump of a tensor
# it saved finds that out in backward and raises PyTorch's error. ``_last_mod`` is the position of
# the latest bump anywhere: a node created after it cannot be affected, so the backward's hot loop
# checks nothing but one integer comparison per node.
_last_mod = -1
_KEEP = 64  # bump positions remembered per tensor (enough to word the error exactly)


class _VersionCounter:
    __slots__ = ("version", "seqs")

    def __init__(self):
        self.version = 0
        self.seqs = []

    def version_at(self, seq):
        """The version this counter had when the tape was at position ``seq``."""
        later = 0
        for s in reversed(self.seqs):
            if s < seq:
                break
            later += 1
        return self.version - later


def version_counter(t):
    try:
        return t._vc
    except AttributeError:
        vc = t._vc = _VersionCounter()
        return vc


def bump_version(t):
    """Record an in-place modification of ``t`` (called by every in-place Tensor op)."""
    global _last_mod
    try:
        vc = t._vc
    except AttributeError:
        vc = t._vc = _VersionCounter()
    s = next(_seq)
    vc.version += 1
    seqs = vc.seqs
    seqs.append(s)
    if len(seqs) > _KEEP:
        del seqs[0]
    _last_mod = s
    n = t._node
    if n is not None and n._saves_output:
        n.outvc = vc


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
               "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor",
               "int8": "CharTensor", "uint8": "ByteTensor", "bool": "BoolTensor"}


def _modified_error(arr, vc, seq, which="", shape=None):
    shape = ", ".join(str(s) for s in (arr.shape if shape is None else shape))
    tname = _TYPE_NAMES.get(arr.dtype.name, arr.dtype.name)
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [torch.{tname} [{shape}]]{which} is at version {vc.version}; expected version "
        f"{vc.version_at(seq)} instead. Hint: enable anomaly detection to find the operation that "
        "failed to compute its gradient, with torch.autograd.set_detect_anomaly(True).")


def _check_versions(n):
    """Raise if a tensor that node ``n`` saved was modified in place after ``n`` was recorded."""
    seq = n.seq
    for t in n._saved_inputs():
        shape = None
        if type(t) is tuple:  # (tensor, the shape torch's message shows for what it saved)
            t, shape = t
        vc = getattr(t, "_vc", None)
        if vc is not None and vc.seqs and vc.seqs[-1] > seq:
            raise _modified_error(t._data, vc, seq, shape=shape)
    if n._saves_output:
        vc = getattr(n, "outvc", None)
        if vc is not None and vc.seqs and vc.seqs[-1] > seq:
            arr = n.saved[-1] if isinstance(n.saved, tuple) and n.saved else None
            shape_src = arr if hasattr(arr, "shape") else getattr(n, "y", None)
            if shape_src is None:
                shape_src = n.inputs[0]._data
            raise _modified_error(shape_src, vc, seq, f", which is output 0 of {n.name()},")


# ---- anomaly detection --------------------------------------------------------------------
_anomaly = False
_anomaly_check_nan = True


class set_detect_anomaly:
    """``set_detect_anomaly(True)`` as a call (sets the mode now) or a ``with`` block (restores it).

    With it on, a backward that produces NaN raises RuntimeError naming the node, as in PyTorch.
    """

    def __init__(self, mode, check_nan=True):
        global _anomaly, _anomaly_check_nan
        self._prev = (_anomaly, _anomaly_check_nan)
        _anomaly, _anomaly_check_nan = bool(mode), bool(check_nan)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _anomaly, _anomaly_check_nan
        _anomaly, _anomaly_check_nan = self._prev
        return False


class detect_anomaly(set_detect_anomaly):
    """``with autograd.detect_anomaly():`` — anomaly detection on for the block."""

    def __init__(self, check_nan=True):
        self._check_nan = check_nan
        self._prev = None

    def __enter__(self):
        global _anomaly, _anomaly_check_nan
        self._prev = (_anomaly, _anomaly_check_nan)
        _anomaly, _anomaly_check_nan = True, bool(self._check_nan)
        return self

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self._check_nan):
                return fn(*args, **kwargs)

        return wrapper


def is_anomaly_enabled():
    return _anomaly


def is_anomaly_check_nan_enabled():
    return _anomaly_check_nan


def _check_nan(n, grads):
    for i, gi in enumerate(grads):
        if gi is None:
            continue
        a = getattr(gi, "_data", gi)
        if a.dtype.kind == "f" and bool(a.size) and bool((a != a).any()):
            raise RuntimeError(f"Function '{n.name()}' returned nan values in its {i}th output.")


_PENDING = object()  # gacc marker of a node that is in this backward's walk but has no grad yet


def run_backward(root, grad, retain_graph=False):
    """Backpropagate ``grad`` (an array shaped like ``root``) through the graph behind ``root``."""
    node0 = root._node
    if node0 is None:  # backward() on a leaf: its gradient is the seed itself
        _accumulate_leaf(root, grad)
        if _callbacks:
            _run_callbacks()
        return
    if _anomaly:
        _engine([root], [grad], None, False, retain_graph, True)
        return
    last_mod = _last_mod
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
            if n.seq < last_mod:
                _check_versions(n)
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


def _engine(roots, grads, targets, create_graph, retain_graph, accumulate):
    """The general backward pass.

    ``roots``/``grads``: tensors and their seeds (arrays, or Tensors when ``create_graph``).
    ``targets``: None (every leaf that requires grad gets ``.grad``), or the tensors (leaves or
    not) whose gradients are wanted; no other leaf's ``.grad`` is written, and only the part of the
    graph that leads to a target runs. ``accumulate``: write the targets' ``.grad`` (``backward``)
    or return their gradients as a list (``autograd.grad``). With ``create_graph`` every node runs
    ``backward_graph`` on Tensors, under grad mode, so the gradients carry their own graph.
    """
    from .tensor import Tensor, _wrap

    pending = _PENDING
    last_mod = _last_mod
    nodes = []
    seeds = []
    out = None
    tleaf = tnode = None
    if targets is not None:
        out = [None] * len(targets)
        tleaf, tnode = {}, {}
        for i, t in enumerate(targets):
            (tleaf.setdefault(id(t), []) if t._node is None
             else tnode.setdefault(id(t._node), [])).append(i)

    def add_to(i, gi):
        cur = out[i]
        if cur is None:
            if create_graph:
                out[i] = gi
            else:
                out[i] = gi.astype(targets[i]._data.dtype, copy=True)
        else:
            out[i] = cur + gi

    def leaf(t, gi):
        if tleaf is not None:
            idx = tleaf.get(id(t))
            if idx is None:
                return
            if not accumulate:
                for i in idx:
                    add_to(i, gi)
                return
        if not t.requires_grad:
            return
        if create_graph:
            if gi.shape != t.shape:
                gi = gi.reshape(t.shape)
            cur = t.grad
            if cur is None:
                t.grad = gi if gi._node is not None else _wrap(gi._data.copy())
            else:
                t.grad = cur + gi
        else:
            _accumulate_leaf(t, gi)

    for r, g in zip(roots, grads):
        n = r._node
        if n is None:
            leaf(r, g)
            continue
        if n.gacc is pending:
            seeds.append((n, g))
        else:
            n.gacc = pending
            nodes.append(n)
            seeds.append((n, g))
    flipped = []
    stashed = []
    if targets is not None and not create_graph and not accumulate:
        # Linear's backward writes its leaves' gradients straight into .grad: for the targets of
        # autograd.grad, start .grad from None and move whatever is written there into the result.
        for t in targets:
            if t._node is None and not builtins_any(s[0] is t for s in stashed):
                stashed.append((t, t.grad))
                t.grad = None
    prev_mode = GradMode.enabled
    try:
        for n in nodes:
            for t in n.inputs:
                p = t._node
                if p is not None and p.gacc is not pending:
                    p.gacc = pending
                    nodes.append(p)
        nodes.sort(key=_seq_of, reverse=True)
        reach = None
        if targets is not None:
            reach = set()
            for n in reversed(nodes):  # creation order: a node's inputs come first
                for t in n.inputs:
                    p = t._node
                    if (id(t) in tleaf) if p is None else (id(p) in reach or id(p) in tnode):
                        reach.add(id(n))
                        break
            if not create_graph:
                # Nodes that write their leaves' .grad themselves (Linear) must not touch
                # leaves that are not targets: those stop requiring grad for the walk.
                for n in nodes:
                    if id(n) in reach:
                        for t in n.inputs:
                            if t._node is None and t.requires_grad and id(t) not in tleaf:
                                t.requires_grad = False
                                flipped.append(t)
        for n, g in seeds:
            n.gacc = g if n.gacc is pending else n.gacc + g
        if create_graph:
            GradMode.enabled = True
        for n in nodes:
            g = n.gacc
            n.gacc = None
            if g is pending:
                continue
            if tnode is not None:
                idx = tnode.get(id(n))
                if idx is not None:
                    for i in idx:
                        if accumulate:
                            t = targets[i]
                            if create_graph:
                                t.grad = g if t.grad is None else t.grad + g
                            elif t.grad is None:
                                t.grad = _wrap(g.astype(t._data.dtype, copy=True))
                            else:
                                t.grad._data += g
                        else:
                            add_to(i, g)
                if id(n) not in reach:
                    continue
            if n.saved is None:
                raise RuntimeError(_FREED)
            if n.seq < last_mod:
                _check_versions(n)
            gis = n.backward_graph(g) if create_graph else n.backward(g)
            if _anomaly and _anomaly_check_nan:
                _check_nan(n, gis)
            for t, gi in zip(n.inputs, gis):
                if gi is None:
                    continue
                p = t._node
                if p is None:
                    leaf(t, gi)
                elif reach is not None and id(p) not in reach and id(p) not in tnode:
                    continue
                elif p.gacc is pending:
                    p.gacc = gi
                else:
                    p.gacc = p.gacc + gi
            if not retain_graph:
                n.release()
    finally:
        GradMode.enabled = prev_mode
        for t in flipped:
            t.requires_grad = True
        for n in nodes:
            n.gacc = None
        for t, old in stashed:
            written, t.grad = t.grad, old
            if written is not None:
                for i in tleaf[id(t)]:
                    add_to(i, written._data)
    if out is not None and not create_graph:
        out = [None if o is None else _wrap(o) for o in out]
    return out


_seq_of = operator.attrgetter("seq")
builtins_any = any


def _seed(t, g, create_graph):
    """The seed gradient for ``t``: an array (or a Tensor when ``create_graph``)."""
    from .tensor import Size, Tensor, _wrap
    from .devices import array_module, asarray

    if g is None:
        if t._data.size != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        a = t._data
        g = _wrap(array_module(t.device).ones(a.shape, dtype=a.dtype))
    elif not isinstance(g, Tensor):
        g = _wrap(asarray(g, dtype=t._data.dtype, dev=t.device))
    if tuple(g.shape) != tuple(t.shape):
        raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of {Size(g.shape)} and "
                           f"output[0] has a shape of {Size(t.shape)}.")
    if create_graph:
        return g
    return g._data.astype(t._data.dtype, copy=True)


def _as_tuple(x):
    from .tensor import Tensor

    if x is None:
        return None
    if isinstance(x, Tensor):
        return (x,)
    return tuple(x)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """``fastmlp.autograd.backward``: accumulate the gradients of ``tensors`` into leaves' ``.grad``
    (only into ``inputs``' when given)."""
    tensors = _as_tuple(tensors)
    grads = _as_tuple(grad_tensors) if grad_tensors is not None else (None,) * len(tensors)
    if len(grads) != len(tensors):
        raise RuntimeError(f"grad can be implicitly created only for scalar outputs" if not grads
                           else f"got {len(tensors)} tensors and {len(grads)} gradients")
    for t in tensors:
        if not t.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    if retain_graph is None:
        retain_graph = create_graph
    targets = _as_tuple(inputs)
    if targets is not None and not targets:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    seeds = [_seed(t, g, create_graph) for t, g in zip(tensors, grads)]
    _engine(list(tensors), seeds, targets, create_graph, retain_graph, True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """``fastmlp.autograd.grad``: the gradients of ``outputs`` w.r.t. ``inputs`` (leaves or not),
    returned as a tuple; no tensor's ``.grad`` is written. With ``create_graph=True`` the
    gradients carry a graph of their own (higher-order derivatives)."""
    if is_grads_batched:
        raise NotImplementedError("fastmlp.autograd.grad: is_grads_batched=True is not supported")
    outputs = _as_tuple(outputs)
    targets = _as_tuple(inputs)
    if not targets:
        raise RuntimeError("grad requires non-empty inputs.")
    for t in targets:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    grads = _as_tuple(grad_outputs) if grad_outputs is not None else (None,) * len(outputs)
    if len(grads) != len(outputs):
        raise RuntimeError(f"grad_outputs has {len(grads)} tensors but outputs has {len(outputs)}")
    for t in outputs:
        if not t.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    if retain_graph is None:
        retain_graph = create_graph
    if allow_unused is None:
        allow_unused = materialize_grads
    seeds = [_seed(t, g, create_graph) for t, g in zip(outputs, grads)]
    res = _engine(list(outputs), seeds, targets, create_graph, retain_graph, False)
    for i, r in enumerate(res):
        if r is None:
            if not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used "
                                   "in the graph. Set allow_unused=True if this is the desired behavior.")
            if materialize_grads:
                from .tensor import zeros_like

                res[i] = zeros_like(targets[i])
        elif tuple(r.shape) != tuple(targets[i].shape):
            res[i] = r.reshape(targets[i].shape)
    return tuple(res)
