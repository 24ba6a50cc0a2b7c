#!/usr/bin/env bash
# One command for a GPU machine (nvcc, PyTorch, CuPy, pybind11, scikit-build-core installed; no
# internet needed): build fastmlp with CUDA, run the GPU tests, compare every CUDA kernel with the
# CPU path, benchmark sgemm against cuBLAS (cupy.matmul, CUPY_TF32=0), and (when fastmlp.nn can
# move a model to the GPU) train small nets on both devices and against PyTorch CUDA, and time the
# fused GPU trainer (fastmlp.fit, also with LayerNorm / BatchNorm1d layers) against PyTorch CUDA eager.
#
#   bench/gpu_check.sh [OUT_DIR]        (default: $FASTMLP_GPU_OUT or bench/results/gpu)
#
# Every section runs even when an earlier one failed; the exit status is non-zero when any
# section failed. JSON results go to OUT_DIR; the log is OUT_DIR/gpu_check.log. The whole run is
# capped at FASTMLP_GPU_BUDGET_S seconds (default 345): each section gets at most what is left.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${FASTMLP_GPU_OUT:-bench/results/gpu}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
export OUT PY
export CUPY_TF32=0            # cuBLAS in true FP32 (no TF32 tensor cores): the fair baseline
export NVIDIA_TF32_OVERRIDE=0
exec > >(tee "$OUT/gpu_check.log") 2>&1

failed=()
t_all=$(date +%s)
BUDGET=${FASTMLP_GPU_BUDGET_S:-345}   # whole script, seconds: every section is cut to what is left
section() { echo; echo "======== $* ($(date +%H:%M:%S), $(( $(date +%s) - t_all )) s elapsed) ========"; }
# run NAME TIMEOUT_S CMD...: one section, bounded in time, recorded as failed on non-zero exit.
run() {
  local name=$1 limit=$2; shift 2
  section "$name"
  local t0=$(date +%s) rc=0
  local left=$(( BUDGET - (t0 - t_all) ))
  if [ "$left" -lt 10 ]; then
    echo "[FAILED] $name: not started, the ${BUDGET} s budget is spent"; failed+=("$name (no time left)"); return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  # bash -c so that shell functions (exported below) run under timeout too
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "[ok] $name ($(( $(date +%s) - t0 )) s)"
  else
    [ "$rc" -eq 124 ] && echo "[timeout after ${limit} s] $name"
    echo "[FAILED rc=$rc] $name ($(( $(date +%s) - t0 )) s)"
    failed+=("$name")
  fi
}

section "environment"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -5 || true
nvcc --version 2>&1 | tail -2 || true
cmake --version 2>&1 | head -1 || true
ninja --version 2>&1 | head -1 || true
$PY - <<'PYEOF' || true
import importlib, sys
print("python", sys.version.split()[0])
for m in ("numpy", "cupy", "torch", "pybind11", "scikit_build_core"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "missing:", e)
PYEOF

# 1. Build and install (sm_90 machine code only, to be quick). --no-deps: nothing to download.
build() {
  FASTMLP_CUDA=ON FASTMLP_CUDA_ARCHS=90-real CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    $PY -m pip install --no-build-isolation --no-deps --disable-pip-version-check -q . &&
  (cd "$OUT" && $PY -c "import fastmlp, fastmlp.cuda as c; print('fastmlp', fastmlp.__file__); \
print('cuda built', c.is_built(), 'available', c.is_available(), c.unavailable_reason()); \
print('device', c.get_device_name(0) if c.is_available() else None); \
assert c.is_available(), 'CUDA not available after the build'")
}
export -f build
run "build+install (FASTMLP_CUDA=ON, 90-real)" 200 build

# 2. The test suite's GPU tests (and the binding checks), from outside the source tree so the
#    installed package is what runs.
tests() {
  local src=$PWD
  # On the GPU machine a skipped GPU test is a failure: make sure nothing will skip for lack of
  # CuPy or a device.
  (cd "$OUT" && $PY -c "import cupy, fastmlp.cuda as c; assert c.is_available(), c.unavailable_reason()") || return 1
  (cd "$OUT" && $PY -m pytest "$src/tests/cuda" "$src/tests/test_cuda_bindings.py" -q -rs \
      -p no:cacheprovider --junitxml="$OUT/pytest_cuda.xml" --maxfail=25 --rootdir="$src" -c "$src/pyproject.toml")
}
export -f tests
run "pytest (GPU tests + binding checks)" 120 tests

# 3. Every CUDA kernel vs the CPU path over many shapes.
run "kernel comparison vs CPU" 90 $PY bench/gpu_check.py compare --out "$OUT"

# 4. The fused GPU trainer (fastmlp.fit on a GPU model) vs PyTorch CUDA eager (before the longer
#    benchmarks, so the 345 s budget never starves it).
run "fit (fused GPU trainer vs torch CUDA eager)" 60 $PY bench/gpu_check.py fit --out "$OUT"

# 4b. The fused GPU trainer with LayerNorm / BatchNorm1d layers (running statistics, momentum=None,
#     eval mode) vs the CPU fused trainer, and its step time vs PyTorch CUDA eager.
run "fit with norm layers (GPU vs CPU fused trainer, vs torch CUDA eager)" 45 $PY bench/gpu_check.py fit_norm --out "$OUT"

# 5. sgemm vs cuBLAS FP32 (cupy.matmul), square 1024-8192 and MLP shapes, NN/NT/TN.
run "sgemm benchmark vs cuBLAS" 120 $PY bench/gpu_check.py gemm --out "$OUT"

# 6. Training on both devices and vs PyTorch CUDA (skipped when fastmlp.nn cannot .to('cuda')).
run "training (fastmlp CPU vs CUDA vs torch CUDA)" 60 $PY bench/gpu_check.py train --out "$OUT"

section "summary"
echo "results in $OUT:"; ls -1 "$OUT"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED sections (${#failed[@]}):"; printf '  - %s\n' "${failed[@]}"
  echo "total $(( $(date +%s) - t_all )) s"
  exit 1
fi
echo "all sections passed; total $(( $(date +%s) - t_all )) s"
