"""The fused trainers' and the inference plan's path choice, measured on this machine: the
small-matrix path or the GEMM path.

Both CPU trainers (``ops.cpu.mlp_train``, the ReLU/MSE/SGD one, and ``ops.cpu.mlp_fit``, the
general one) have two implementations of a step: register tiles that read the weights in place
(the *small* path: no packing, no per-call cost, but once the weights leave L2 its tiles stream
them again every 64 samples) and cache-blocked SGEMM calls (the *gemm* path: packing and call
costs per step, then close to the FMA peak). Where one overtakes the other depends on the caches,
the SIMD path and the kernels' current speed, so a rule fitted on one machine leaves a cliff on
another: achieved GFLOP/s falls when the width grows at a fixed batch and the rule picks the
slower path.

The model. For each (CPU model, build of ``fastmlp._C``, CPU kernel path, trainer) a short
calibration times one or a few training steps of both paths on probe nets ``20 -> w -> w -> 1``
(w in :data:`WIDTHS`, batch in :data:`BATCHES`) at the library's thread count (``fastmlp.
get_num_threads()`` when it runs: wall time on several threads, process CPU time on one), the
minimum of interleaved repeats, and keeps the table ``log(t_small / t_gemm)`` over (log2 of the
largest layer's weight count, log2 of the batch). A net's choice is the small path where the table,
interpolated bilinearly at its largest layer and batch (clamped to the table's edges), says
``t_small < t_gemm`` by more than :data:`TIE_MARGIN` (5%), the gemm path where it says the
opposite, and the compiled rule's choice in a tie. The table's corner cell (1024 x 1024 weights, batch 1024: ``w * w *
batch`` above :data:`MAX_PROBE_WORK`) is not timed and the big cells are timed fewer times, to keep
a calibration short (about 0.8 s on one Zen 3 core; 0.5 s of wall time and 1.0 s of CPU on
two Zen 5 cores, with an untimed first call of each path and at least MIN_STEPS steps a call);
an untimed
cell runs parallel to the row above (:func:`_fill`). The cells next to it are timed because the
small path's speed falls with the batch much faster at 1024 x 1024 weights than at 512 x 512 (its
tiles stream the weights and the activations from L3), which no extrapolation from narrower rows
or smaller batches predicts.

Which nets are measured at all. Outside the *ambiguous region* the answer does not need a
measurement and none is made: a largest layer under 128 x 128 weights or a batch under 16 is the
small path (the weights and the batch sit in L1/L2 and the gemm path's packing costs more than
the step), a net with LayerNorm/BatchNorm1d layers is the gemm path (the small path does not run
them). Inside it the model is loaded from the cache, or measured on first use and cached.

The choice depends on the shapes and the model only, never on the thread count, so results stay
bitwise equal across thread counts. ``FASTMLP_COSTMODEL=rule`` (or a failed calibration) leaves
the choice to the compiled trainers' fixed rule (``path='auto'``). The cache lives in
``$FASTMLP_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastmlp``, else ``~/.cache/fastmlp``, one JSON file
per CPU model and build, written atomically; a file that does not parse or belongs to another CPU
or build is ignored (and replaced on the next calibration); where the directory is not writable
the model is kept in memory for the process.

Inference (trainer ``"infer"``: :class:`fastmlp.ops.InferPlan`, behind ``trainer.predict`` and the
``no_grad`` forward of ``nn.Sequential``) has the same two kinds of kernel, its tiles (the small
path: register tiles over feature-major chunks, weights read in place) and the packed sgemm with
the bias and activation in its epilogue (the gemm path), and the same probe grid, timed as one
forward call per cell instead of a training step. A plan asks the model once, when it is made
(:func:`infer_gemm_from`): the smallest batch of the grid's powers of two from which the model
says gemm at every larger one becomes the plan's crossover, so a call pays one comparison.

``python -m fastmlp calibrate`` measures explicitly and prints the table; ``python -m fastmlp
info`` says whether a model is cached and where from.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import tempfile
import threading
import time

import numpy as np

from . import ops

FORMAT = "fastmlp-costmodel"
VERSION = 1
ENV_MODE = "FASTMLP_COSTMODEL"  # "rule": the compiled fixed rule; unset / "measured": this model
ENV_DIR = "FASTMLP_CACHE_DIR"
TRAINERS = ("train", "fit", "infer")  # ops.cpu.mlp_train, ops.cpu.mlp_fit, ops.InferPlan

# The probe grid (square hidden layers w x w, inputs 20, one output) and the ambiguous region it
# spans: largest layer >= MIN_PARAMS weights and batch >= MIN_BATCH.
WIDTHS = (128, 256, 512, 1024)
BATCHES = (16, 64, 256, 1024)
MIN_PARAMS = 128 * 128
MIN_BATCH = 16
MAX_PROBE_WORK = 1024 * 1024 * 256  # w*w*batch beyond this: extrapolated, not timed
PROBE_WORK = 4e6                   # weight-samples per timed call: several steps for small probes
# steps per timed call at least: a call's fixed costs (its thread team's start, a cold first step)
# are paid once per call, not per step; with one step a call they weighed 15-20% of the small
# path's 2-thread step at 20-256-256-1 b256 and tipped the table to the gemm path
MIN_STEPS = 4
REPEATS = 3                        # min of this many interleaved runs (2 for the big probes)
# |log(t_small / t_gemm)| up to this is a tie (the spread of repeated calibrations on a shared
# machine): the compiled rule's choice stands, the model overrides it only where it measures a
# clear difference.
TIE_MARGIN = 0.05

_lock = threading.RLock()
_memory = {}     # (cache file path, isa, trainer) -> entry dict (measured or loaded)
_loaded = set()  # cache file paths whose cache file has been read
_notes = {}      # cache file path -> why the cache was not used / not written (for info)
_failed = {}     # (cache file path, isa, trainer) -> why its calibration failed (not retried)


# ---------------------------------------------------------------------------------------------
# where: the cache directory and the file's identity (CPU model, build)

def cache_dir() -> str:
    d = os.environ.get(ENV_DIR)
    if d:
        return d
    x = os.environ.get("XDG_CACHE_HOME")
    if x:
        return os.path.join(x, "fastmlp")
    return os.path.join(os.path.expanduser("~"), ".cache", "fastmlp")


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=None)
def build_id() -> str:
    """The compiled module's identity: a rebuilt _C (faster kernels) is measured again."""
    path = getattr(ops.cpu, "__file__", None) or ""
    try:
        st = os.stat(path)
        return f"{os.path.basename(path)}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return os.path.basename(path) or "unknown"


def _identity():
    return {"cpu": cpu_model(), "build": build_id()}


@functools.lru_cache(maxsize=None)
def _name(cpu, build) -> str:
    return f"costmodel-{hashlib.sha256(f'{cpu}|{build}'.encode()).hexdigest()[:16]}.json"


def cache_file() -> str:
    """The cache file of this CPU model and build in :func:`cache_dir`."""
    return os.path.join(cache_dir(), _name(cpu_model(), build_id()))


def mode() -> str:
    """'rule' (FASTMLP_COSTMODEL=rule) or 'measured' (the default)."""
    m = os.environ.get(ENV_MODE, "").strip().lower()
    return "rule" if m == "rule" else "measured"


# ---------------------------------------------------------------------------------------------
# the cache file

def _valid_entry(e) -> bool:
    try:
        w, b, lr = e["widths"], e["batches"], e["log_ratio"]
        if list(w) != sorted(w) or list(b) != sorted(b) or len(w) < 1 or len(b) < 1:
            return False
        if len(lr) != len(w) or any(len(row) != len(b) for row in lr):
            return False
        return all(isinstance(v, (int, float)) and math.isfinite(v) for row in lr for v in row) \
            and all(isinstance(v, int) and v > 0 for v in list(w) + list(b))
    except (KeyError, TypeError, ValueError):
        return False


def _read_file(path, ident):
    """The file's entries ({'isa/trainer': entry}) when it is this CPU's and build's; else {}."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return {}, f"ignored {path}: {type(exc).__name__}"
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return {}, f"ignored {path}: not a version-{VERSION} cost model"
    if doc.get("cpu") != ident["cpu"] or doc.get("build") != ident["build"]:
        return {}, f"ignored {path}: made for another CPU or build"
    ents = doc.get("entries")
    if not isinstance(ents, dict):
        return {}, f"ignored {path}: no entries"
    good = {k: v for k, v in ents.items() if isinstance(k, str) and _valid_entry(v)}
    note = None if len(good) == len(ents) else f"ignored {len(ents) - len(good)} bad entries in {path}"
    return good, note


def _load(key, ident):
    if key in _loaded:
        return
    _loaded.add(key)
    ents, note = _read_file(key, ident)
    if note:
        _notes[key] = note
    for name, e in ents.items():
        isa, _, trainer = name.partition("/")
        e = dict(e, source=f"cached in {key} ({e.get('measured_at', '?')})")
        _memory.setdefault((key, isa, trainer), e)


def _save(key, ident):
    """Writes every entry of this key (merged with what the file holds now) atomically; False and
    a note where the directory cannot be written."""
    path = key
    d = os.path.dirname(path)
    ents, _ = _read_file(path, ident)
    for (k, isa, trainer), e in _memory.items():
        if k == key and e.get("measured_here"):
            ents[f"{isa}/{trainer}"] = {f: v for f, v in e.items()
                                        if f not in ("source", "measured_here")}
    doc = {"format": FORMAT, "version": VERSION, **ident, "entries": ents}
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".costmodel-", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as exc:
        _notes[key] = f"not saved ({d} not writable: {exc.strerror or exc}); kept in memory"
        return False
    return True


def clear_memory():
    """Forgets the models held in this process (the cache file stays)."""
    with _lock:
        _memory.clear()
        _loaded.clear()
        _notes.clear()
        _failed.clear()


# ---------------------------------------------------------------------------------------------
# measuring

def _probe_net(w, rng):
    sizes = [20, w, w, 1]
    ws = [(rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(b, np.float32) for b in sizes[1:]]
    return ws, bs


def _runner(trainer, w, batch, steps, rng):
    """A callable running `steps` steps of `trainer` on a 20-w-w-1 net at `batch`, on a path."""
    ws, bs = _probe_net(w, rng)
    n = batch * steps
    X = rng.standard_normal((n, 20)).astype(np.float32)
    Y = rng.standard_normal((n, 1)).astype(np.float32)
    perm = np.arange(n, dtype=np.int64)
    if trainer == "infer":  # one forward call per step (a raw plan: ops.InferPlan asks this model)
        cap = ops._C.infer_plan(ws, bs, [(1, 0.0, 0.0), (1, 0.0, 0.0), None])
        X = np.ascontiguousarray(X[:batch])
        out = np.empty((batch, 1), np.float32)
        code = {"small": ops.INFER_PATHS["tiles"], "gemm": ops.INFER_PATHS["gemm"]}

        def run(path):
            c = code[path]
            for _ in range(steps):
                ops.infer_forward(cap, X, out, c)
    elif trainer == "train":
        relu = [True, True, False]

        def run(path):
            ops.cpu.mlp_train(ws, bs, relu, X, Y, epochs=1, batch_size=batch, perm=perm, lr=0.0,
                              path=path)
    else:
        relu_kind = 1  # tracing.ACT_KINDS["relu"]
        layers = [{"weight": a, "bias": b, "act": (relu_kind if i < 2 else 0, 0.0, 0.0)}
                  for i, (a, b) in enumerate(zip(ws, bs))]

        def run(path):
            ops.cpu.mlp_fit(layers, X, Y, loss={"kind": 0}, optim={"kind": 0, "lr": 0.0},
                            epochs=1, batch_size=batch, perm=perm, path=path)
    return run


def measure(trainer, widths=None, batches=None, max_work=None, repeats=None, threads=None):
    """Times both paths of `trainer` on the probe grid (default: WIDTHS x BATCHES, cells up to
    MAX_PROBE_WORK, REPEATS) on `threads` threads (default: the library's current count; wall
    time per step on several, process CPU time on one; min of interleaved repeats) on the current
    CPU kernel path; returns the model entry.

    Why the thread count the fits run with, not one thread: the two paths scale differently. On a
    2-core Zen 5 (ReLU/MSE/SGD, 20-w-w-1, us a step, small / gemm) one thread measured w128 b1024
    972 / 886 and w256 b64 223 / 204 (gemm), two threads 480 / 594 and 114 / 134 (the small
    path's data-parallel halves scale 1.9x, the gemm path's products 1.2-1.5x): a table from one
    thread chose the path 19-24% slower at the default thread count. The choice still depends on
    the shapes and the table only, so results stay bitwise equal across thread counts."""
    if trainer not in TRAINERS:
        raise ValueError(f"costmodel.measure: trainer must be one of {TRAINERS}, got {trainer!r}")
    widths = WIDTHS if widths is None else widths
    batches = BATCHES if batches is None else batches
    max_work = MAX_PROBE_WORK if max_work is None else max_work
    repeats = REPEATS if repeats is None else repeats
    widths, batches = sorted(int(w) for w in widths), sorted(int(b) for b in batches)
    rng = np.random.default_rng(0)
    t_start, c_start = time.perf_counter(), time.process_time()
    before = ops.cpu.get_num_threads()
    threads = before if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"costmodel.measure: threads must be >= 1, got {threads}")
    clock = time.process_time if threads == 1 else time.perf_counter
    ops.cpu.set_num_threads(threads)
    small = [[None] * len(batches) for _ in widths]
    gemm = [[None] * len(batches) for _ in widths]
    try:
        for i, w in enumerate(widths):
            for j, b in enumerate(batches):
                work = w * w * b
                if trainer == "infer":  # a forward is a third of a step: every cell, every repeat
                    steps, reps = int(max(1, min(32, 3 * PROBE_WORK // work))), repeats
                else:
                    if work > max_work and (j > 0 or i > 0):
                        continue
                    steps = int(max(MIN_STEPS, min(16, PROBE_WORK // work)))
                    # fewer repeats for the big cells: their steps are long, and where they are
                    # timed the paths differ by more than the noise of one run
                    reps = min(repeats, 3 if work * steps <= 1 << 24
                               else 2 if work <= 1 << 26 else 1)
                run = _runner(trainer, w, b, steps, rng)
                # an untimed first call of each path: a process's first call at a shape faults
                # its scratch in (kept for the next calls, csrc/cpu/scratch_cache.h; the small
                # path's 2-thread step at 20-256-256-1 b1024 measured 1.99 ms cold, 1.52 warm)
                for p in ("small", "gemm"):
                    run(p)
                best = {"small": math.inf, "gemm": math.inf}
                for r in range(reps):
                    for p in (("small", "gemm") if r % 2 == 0 else ("gemm", "small")):
                        c0 = clock()
                        run(p)
                        best[p] = min(best[p], (clock() - c0) / steps)
                small[i][j], gemm[i][j] = best["small"], best["gemm"]
    finally:
        ops.cpu.set_num_threads(before)
    log_ratio = _fill([[None if s is None else math.log(max(s, 1e-9) / max(g, 1e-9))
                        for s, g in zip(rs, rg)] for rs, rg in zip(small, gemm)], batches)
    return {"trainer": trainer, "isa": ops.cpu.current_isa(), "widths": widths,
            "batches": batches, "log_ratio": log_ratio, "small_s": small, "gemm_s": gemm,
            "threads": threads,
            "clock": ("process CPU time" if threads == 1 else "wall time")
            + ", min of interleaved repeats",
            "seconds": round(time.perf_counter() - t_start, 3),
            "cpu_seconds": round(time.process_time() - c_start, 3),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _fill(lr, batches):
    """Untimed cells (None: the corner of the table) run parallel to the row above: cell
    (i, j) = (i, j-1) + (i-1, j) - (i-1, j-1), i.e. the wider layer's log ratio changes with the
    batch as the narrower one's does beyond its last timed batch (the small batches' trend, set by
    the gemm path's per-call costs, is not extrapolated). Row 0 copies its left neighbour."""
    out = [list(row) for row in lr]
    for i, row in enumerate(out):
        for j, v in enumerate(row):
            if v is not None:
                continue
            if j == 0:
                row[j] = out[i - 1][0] if i else 0.0
            elif i == 0:
                row[j] = row[j - 1]
            else:
                row[j] = row[j - 1] + out[i - 1][j] - out[i - 1][j - 1]
    return [[float(v) for v in row] for row in out]


# ---------------------------------------------------------------------------------------------
# the model: lookup, calibration on first use

def _interp(entry, params, batch):
    """log(t_small / t_gemm) at (largest layer's weights, batch): bilinear in log2 space,
    clamped to the table."""
    xs = [2.0 * math.log2(w) for w in entry["widths"]]
    ys = [math.log2(b) for b in entry["batches"]]
    x = min(max(math.log2(max(params, 1)), xs[0]), xs[-1])
    y = min(max(math.log2(max(batch, 1)), ys[0]), ys[-1])

    def locate(v, grid):
        if len(grid) == 1:
            return 0, 0, 0.0
        k = 0
        while k < len(grid) - 2 and v > grid[k + 1]:
            k += 1
        t = (v - grid[k]) / (grid[k + 1] - grid[k])
        return k, k + 1, min(max(t, 0.0), 1.0)

    i0, i1, tx = locate(x, xs)
    j0, j1, ty = locate(y, ys)
    t = entry["log_ratio"]
    return ((1 - tx) * ((1 - ty) * t[i0][j0] + ty * t[i0][j1])
            + tx * ((1 - ty) * t[i1][j0] + ty * t[i1][j1]))


def in_ambiguous_region(shapes, batch) -> bool:
    """Whether a net (its layers' (in, out) shapes) at `batch` needs the measured model."""
    params = max(int(a) * int(b) for a, b in shapes)
    return params >= MIN_PARAMS and batch >= MIN_BATCH


def get_model(trainer, *, calibrate_if_missing=True):
    """The model entry for `trainer` on this CPU, build and CPU kernel path: from memory, the
    cache file, or (calibrate_if_missing) measured now and cached. None if there is none."""
    ident = _identity()
    key = cache_file()
    isa = ops.cpu.current_isa()
    with _lock:
        _load(key, ident)
        e = _memory.get((key, isa, trainer))
        if e is not None or not calibrate_if_missing:
            return e
        why = _failed.get((key, isa, trainer))
        if why:
            raise RuntimeError(why)
        try:
            return _calibrate_locked(trainer, key, ident, isa)
        except Exception as exc:  # once per process: later fits take the rule at once
            _failed[(key, isa, trainer)] = f"{type(exc).__name__}: {exc}"
            raise


def _calibrate_locked(trainer, key, ident, isa, **probe):
    e = measure(trainer, **probe)
    e["measured_here"] = True
    _memory[(key, isa, trainer)] = e
    saved = _save(key, ident)
    e["source"] = (f"measured {e['measured_at']}, saved to {cache_file()}" if saved
                   else f"measured {e['measured_at']}, in memory only ({_notes.get(key)})")
    return e


def calibrate(trainers=TRAINERS, **probe):
    """Measures (again) the model of each trainer on the current CPU kernel path and caches it;
    returns {trainer: entry}. `probe` (widths, batches, max_work, repeats) narrows the grid."""
    ident = _identity()
    key = cache_file()
    isa = ops.cpu.current_isa()
    out = {}
    with _lock:
        _load(key, ident)
        for t in ([trainers] if isinstance(trainers, str) else trainers):
            if t not in TRAINERS:
                raise ValueError(f"costmodel.calibrate: trainer must be one of {TRAINERS}, got {t!r}")
            out[t] = _calibrate_locked(t, key, ident, isa, **probe)
    return out


def decide(trainer, shapes, batch, *, has_norm=False):
    """(path, reason): the path ('small', 'gemm', or 'auto' = the compiled rule) a fused trainer
    call runs, for a net whose layers have (in_features, out_features) `shapes`, at `batch` rows
    per step (the largest batch that occurs). Depends on the shapes and the cached model only."""
    if has_norm:
        return "gemm", "norm layers run on the gemm path only"
    params = max(int(a) * int(b) for a, b in shapes)
    if params < MIN_PARAMS or batch < MIN_BATCH:  # (the compiled rule's choice there too)
        return "small", "outside the ambiguous region (small weights or batch)"
    if mode() == "rule":
        return "auto", f"{ENV_MODE}=rule: the compiled rule"
    try:
        e = get_model(trainer)
    except Exception as exc:  # a failed measurement never fails a fit: the rule decides
        return "auto", f"calibration failed ({exc}): the compiled rule"
    r = _interp(e, params, batch)
    if abs(r) <= TIE_MARGIN:  # a tie within the calibration's noise: the compiled rule's choice
        p = "small" if rule_small(trainer, params, batch) else "gemm"
        return p, f"model: log(t_small/t_gemm) = {r:+.3f}, a tie: the rule's {p} path"
    return ("small" if r < 0.0 else "gemm"), f"model: log(t_small/t_gemm) = {r:+.3f}"


def rule_small(trainer, params, batch) -> bool:
    """The compiled trainers' fixed rule (path='auto'; csrc/cpu/mlp_train.cpp mlp_small_path_fits,
    csrc/cpu/mlp_fit_small.cpp mlp_fit_small_fits, for nets without norm layers): the small path
    unless the largest layer exceeds 512 x 512 (train) / 200 x 200 (fit) weights at a batch of
    64 or more. Inference (csrc/cpu/mlp_infer.cpp mlp_infer_gemm_from): the tiles on every CPU
    kernel path. The model keeps it where its measurement cannot tell the paths apart."""
    if trainer == "infer":
        return True
    return params <= (512 * 512 if trainer == "train" else 200 * 200) or batch < 64


def choose_path(trainer, shapes, batch, *, has_norm=False) -> str:
    return decide(trainer, shapes, batch, has_norm=has_norm)[0]


# the batches an inference plan's crossover is chosen among (beyond the probe grid the model is
# clamped to its edge: a crossover at the last one holds for every larger batch)
INFER_ROWS = tuple(1 << k for k in range(4, 11))  # 16 .. 1024


def infer_gemm_from(shapes):
    """The rows from which an inference plan over layers of (in, out) `shapes` takes the gemm
    path: -1 (the compiled rule: outside the ambiguous region, FASTMLP_COSTMODEL=rule, or a
    failed calibration), None (the model says tiles at the largest batch) or the smallest batch
    of INFER_ROWS from which the model says gemm at every larger one. Shapes only: the choice
    does not depend on the thread count."""
    params = max(int(a) * int(b) for a, b in shapes)
    if params < MIN_PARAMS or mode() == "rule":
        return -1
    rows = None
    for b in reversed(INFER_ROWS):
        p = decide("infer", shapes, b)[0]
        if p == "auto":  # a failed calibration
            return -1
        if p != "gemm":
            break
        rows = b
    return rows


# ---------------------------------------------------------------------------------------------
# reports (python -m fastmlp info / calibrate)

def status_lines():
    """Lines for `python -m fastmlp info`: mode, cache file, cached entries and their source."""
    lines = [f"  path cost model: {mode()}"
             + (f" ({ENV_MODE}=rule)" if mode() == "rule" else "")]
    ident = _identity()
    key = cache_file()
    with _lock:
        _load(key, ident)
        ents = sorted((isa, t, e) for (k, isa, t), e in _memory.items() if k == key)
        note = _notes.get(key)
    lines.append(f"    cache file:    {cache_file()}")
    if not ents:
        lines.append("    calibrations:  none cached (measured on first use in the ambiguous "
                     "region, or: python -m fastmlp calibrate)")
    for isa, t, e in ents:
        lines.append(f"    {isa}/{t}: {e.get('source', '?')}")
    if note:
        lines.append(f"    note:          {note}")
    return lines


def table_lines(entry):
    """The measured table as text: per width and batch, small / gemm GFLOP/s and the choice."""
    ws, bs = entry["widths"], entry["batches"]
    nt = entry.get("threads", 1)
    lines = [f"  {entry.get('isa', '?')}/{entry.get('trainer', '?')} (20-w-w-1 nets, {nt} "
             f"thread{'s' if nt != 1 else ''}; "
             f"GFLOP/s small / gemm, '~' = extrapolated; S/G = the choice, s/g: a tie, the rule's), "
             f"measured in "
             f"{entry.get('seconds', '?')} s ({entry.get('cpu_seconds', '?')} s CPU)"]
    lines.append("    w \\ batch " + "".join(f"{b:>22}" for b in bs))
    for i, w in enumerate(ws):
        cells = []
        for j, b in enumerate(bs):
            fl = (2.0 if entry.get("trainer") == "infer" else 6.0) * (20 * w + w * w + w) * b
            s, g = entry.get("small_s", [[None]])[i][j], entry.get("gemm_s", [[None]])[i][j]
            v = entry["log_ratio"][i][j]
            pick = ("s" if rule_small(entry.get("trainer"), w * w, b) else "g") \
                if abs(v) <= TIE_MARGIN else ("S" if v < 0 else "G")
            if s is None or g is None:
                cells.append(f"{'~':>18} {pick:>3}")
            else:
                cells.append(f"{fl / s / 1e9:8.1f} /{fl / g / 1e9:6.1f} {pick:>3}")
        lines.append(f"    {w:>9} " + "".join(f"{c:>22}" for c in cells))
    return lines
