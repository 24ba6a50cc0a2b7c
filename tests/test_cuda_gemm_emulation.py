"""The CUDA SGEMM's device code, run on the CPU (no GPU needed).

tests/cuda/gemm_emulator.cpp compiles csrc/cuda/gemm_kernels.cuh as plain C++ with one fiber per
CUDA thread, and checks every tiling (128x128, 64x64, split-K), transpose combination, aligned
(float4) and misaligned/padded (scalar) layout, edge and epilogue against a float64 reference.
"""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests", "cuda", "gemm_emulator.cpp")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses ucontext fibers (Linux)")
@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "csrc", "cuda", "gemm_kernels.cuh")),
                    reason="source tree not available")
def test_sgemm_kernels_emulated_on_cpu(tmp_path):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "gemm_emulator"
    subprocess.run([cxx, "-std=c++17", "-O1", "-w", "-I", os.path.join(ROOT, "csrc", "include"),
                    "-I", os.path.join(ROOT, "csrc", "cuda"), "-I", os.path.join(ROOT, "tests", "cuda"), SRC, "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    failed = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 0 and not failed, (r.stdout[-3000:], r.stderr[-2000:])
    assert "cases agree" in r.stdout
