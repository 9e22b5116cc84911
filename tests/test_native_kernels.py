"""The CPU kernels' C++ outside Python (tests/native/portable_kernels_check.cpp): built natively and run at
each SIMD level, and cross-built for AArch64 (the Jetson CPU architecture: there only the portable
generic-vector code exists) and run under qemu-aarch64 when the cross compiler and qemu are installed
(`.ci/run` installs them from Debian's packages)."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = ["tests/native/portable_kernels_check.cpp", "csrc/cpu/mask_head_kernel.cpp",
           "csrc/cpu/mask_embed_kernel.cpp", "csrc/cpu/cpu_features.cpp"]


def _build(cxx: str, out: pathlib.Path) -> None:
    cmd = [cxx, "-std=c++17", "-O2", "-fopenmp", "-DSAMFAST_WITH_OPENMP=1", f"-I{ROOT / 'csrc'}",
           *[str(ROOT / s) for s in SOURCES], "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


def _run(cmd, env_extra=None) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="2", **(env_extra or {}))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stdout + res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def native_exe(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    exe = tmp_path_factory.mktemp("native") / "check"
    _build("g++", exe)
    return exe


@pytest.mark.parametrize("simd", ["default", "avx2", "baseline"])
def test_native(native_exe, simd):
    out = _run([str(native_exe)], None if simd == "default" else {"SAMFAST_SIMD": simd})
    assert out.count("err") == 4


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64") is None,
                    reason="no aarch64-linux-gnu-g++ / qemu-aarch64 (Debian: g++-aarch64-linux-gnu qemu-user)")
def test_aarch64_under_qemu(tmp_path):
    exe = tmp_path / "check_aarch64"
    _build("aarch64-linux-gnu-g++", exe)
    out = _run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(exe)])
    assert out.count("err") == 4
