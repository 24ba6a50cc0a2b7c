"""The CUDA kernels' device code, run on the CPU (no GPU needed).

tests/cuda/*_emulator.cpp compile csrc/cuda/*_kernels.cuh as plain C++ on a small emulation of the
CUDA subset they use (tests/cuda/cuda_emulation.h: one fiber per CUDA thread, __syncthreads as a
barrier phase) with the launch configurations of the .cu host code, and compare with float64:
- gemm: every tiling (128x128, 64x64, split-K), transpose combination, aligned (float4) and
  misaligned/padded (scalar) layout, edges, alpha/beta/bias/ReLU, padding left untouched;
- elementwise: bias, ReLU (NaN, 0), the two-pass MSE reduction, SGD and the multi-tensor SGD step;
- mlp: the GPU fused trainer's host code (csrc/cuda/mlp_train_impl.h, shared with mlp_train.cu) over
  emulated launches of the real kernels (gather, fused gradient pass, guarded SGD, gemm with split-K
  into the trainer's workspace) against a float64 eager loop: momentum/nesterov/dampening/weight
  decay, orders, drop_last, a net ending in ReLU, a non-finite loss stopping (or not) training;
- losses: softmax cross-entropy (class indices with weights, ignore_index, label smoothing, (N,C,D)
  rows, per-row upstream gradients; class probabilities) and the element-wise losses, forward
  partials + fixed-order finish and backward;
- mlp_fit: the GPU general fused trainer's host code (csrc/cuda/mlp_fit_impl.h, shared with
  mlp_fit.cu) over emulated launches of its kernels (mlp_fit_kernels.cuh) against a naive loop of
  csrc/cpu/mlp_fit.cpp's algorithm: every activation x loss x optimizer, dropout masks equal to
  dropout.h's (the CPU's) hash, weights, schedules, frozen parameters, scikit-learn conventions.
What this cannot show: speed, races the real hardware could expose, or compiler/driver issues
(bench/gpu_check.sh covers those on a GPU).
"""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDES = [os.path.join(ROOT, *p) for p in (("tests", "cuda", "emu_include"), ("tests", "cuda"),
                                              ("csrc", "include"), ("csrc", "cuda"))]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses ucontext fibers (Linux)")
@pytest.mark.skipif(not os.path.isdir(os.path.join(ROOT, "csrc", "cuda")), reason="no source tree")
@pytest.mark.parametrize("name", ["gemm_emulator", "elementwise_emulator", "mlp_emulator",
                                  "activations_emulator", "optimizers_emulator", "losses_emulator", "mlp_fit_emulator"])
def test_kernels_emulated_on_cpu(name, tmp_path):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        pytest.skip("no C++ compiler")
    exe = tmp_path / name
    cmd = [cxx, "-std=c++17", "-O1", "-w"]
    for inc in INCLUDES:
        cmd += ["-I", inc]
    subprocess.run(cmd + [os.path.join(ROOT, "tests", "cuda", name + ".cpp"), "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    failed = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 0 and not failed, (failed, r.stdout[-3000:], r.stderr[-2000:])
    assert "cases agree" in r.stdout
