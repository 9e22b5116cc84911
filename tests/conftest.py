import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    """`cuda` tests skip (visibly) when no GPU is present; they never pass vacuously."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU visible")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["default", "avx2", "baseline"])
def simd(request, monkeypatch):
    """Runs a CPU-kernel test on each SIMD path this machine has: the best one (AVX-512 where present),
    AVX2+FMA, and the portable baseline (SAMFAST_SIMD caps the level the kernels pick at run time)."""
    if request.param == "default":
        monkeypatch.delenv("SAMFAST_SIMD", raising=False)
    else:
        monkeypatch.setenv("SAMFAST_SIMD", request.param)
    return request.param
