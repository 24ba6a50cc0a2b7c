#!/usr/bin/env bash
# CI: the kernel tests under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Builds fastmlp._C instrumented (FASTMLP_SANITIZE=address,undefined, CUDA off) in its own build
# folder, stages it with the Python sources in a private folder (the developer's in-place module
# and any installed fastmlp are left alone), and runs the kernel-level tests with the ASan runtime
# preloaded into the (uninstrumented) Python. Any ASan or UBSan report fails the step:
# -fno-sanitize-recover=all plus halt_on_error make the first report abort the process, and the
# log is also searched for reports in case a child process printed one.
#
# Usage: .ci/sanitize.sh [pytest args...]   (default: the kernel tests listed below)
# Environment: PYTHON (default python3), FASTMLP_SANITIZE (default address,undefined), JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
SAN=${FASTMLP_SANITIZE:-address,undefined}
BUILD=${FASTMLP_SANITIZE_BUILD:-$ROOT/build/sanitize}
STAGE=$BUILD/stage
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

echo "== sanitizer build ($SAN) in $BUILD"
# Build tools: use what is there, else get them from PyPI (the build needs pybind11 and CMake);
# the interpreter's scripts folder goes on PATH so pip-installed tools are found.
PATH="$($PY -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
$PY -c "import pybind11" 2>/dev/null || $PY -m pip install --quiet --disable-pip-version-check pybind11
command -v cmake >/dev/null 2>&1 || $PY -m pip install --quiet --disable-pip-version-check cmake
GEN=()
if command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi
start=$(date +%s)
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTMLP_CUDA=OFF \
      -DFASTMLP_INPLACE=OFF -DFASTMLP_SANITIZE="$SAN" \
      -Dpybind11_DIR="$($PY -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target _C
echo "build took $(( $(date +%s) - start )) s"

# Stage: the Python package from the source tree plus the instrumented module.
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -r "$ROOT/python/fastmlp" "$STAGE/fastmlp"
find "$STAGE/fastmlp" \( -name '_C*.so' -o -name '_cuda*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp "$BUILD"/_C*.so "$STAGE/fastmlp/"

CXX=${CXX:-$(command -v g++ || command -v c++)}
ASAN_LIB=$($CXX -print-file-name=libasan.so)
if [ ! -e "$ASAN_LIB" ]; then echo "libasan.so not found ($ASAN_LIB)"; exit 1; fi
# The UBSan runtime is linked into the module; ASan must come first in the process.
PRELOAD="$ASAN_LIB"
STDCXX=$($CXX -print-file-name=libstdc++.so)
[ -e "$STDCXX" ] && PRELOAD="$PRELOAD:$STDCXX"

if [ "$#" -eq 0 ]; then
  # Every test that drives the C++ kernels and bindings (each file only if present).
  for t in tests/test_ops.py tests/test_gemm.py tests/test_properties.py tests/test_bad_input.py \
           tests/test_threads.py tests/test_fork.py tests/test_trainer.py tests/test_nn.py; do
    [ -e "$t" ] && set -- "$@" "$t"
  done
fi

LOG=$BUILD/sanitize.log
# Reports go to files as well as the log: pytest captures stderr, and an aborting process takes its
# captured output with it.
REPORTS=$BUILD/reports
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
echo "== tests under $SAN: $*"
set +e
# detect_leaks=0: CPython and numpy keep allocations alive until exit by design.
# The bad-input runner limits its address space; ASan reserves terabytes of shadow, so lift it
# and cap single allocations instead (a too-big request then fails cleanly with MemoryError).
env PYTHONPATH="$STAGE" LD_PRELOAD="$PRELOAD" \
    ASAN_OPTIONS="log_path=$REPORTS/asan:detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1:max_allocation_size_mb=6144:strict_init_order=1:detect_stack_use_after_return=0" \
    UBSAN_OPTIONS="log_path=$REPORTS/ubsan:halt_on_error=1:print_stacktrace=1" \
    FASTMLP_TEST_AS_LIMIT_GB=0 FASTMLP_SANITIZER_RUN=1 PYTHONFAULTHANDLER=1 \
    $PY -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
# (ASan's "failed to allocate" warnings are expected: the MemoryError cases ask for too much.)
PATTERN="ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer"
if grep -qlE "$PATTERN" "$REPORTS"/* "$LOG" 2>/dev/null; then
  for f in $(grep -lE "$PATTERN" "$REPORTS"/* 2>/dev/null); do echo "---- $f"; head -60 "$f"; done
  echo "sanitizer reports found (see $REPORTS and $LOG)"; exit 1
fi
if [ "$rc" -ne 0 ]; then echo "tests failed under the sanitizers (exit $rc)"; exit "$rc"; fi
# Make sure the instrumented module was the one under test.
env PYTHONPATH="$STAGE" LD_PRELOAD="$PRELOAD" ASAN_OPTIONS=detect_leaks=0 $PY -c \
  "import fastmlp, sys; f = fastmlp._C.__file__; print('tested', f); sys.exit(0 if f.startswith('$STAGE') else 1)"
echo "sanitizers: clean"
