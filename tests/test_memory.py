"""samfast.memory: glibc allocator tuning applied for CPU predictors, opt-out by environment."""
import platform

import pytest
import torch

from samfast import memory


def test_env_opt_out_and_non_cpu(monkeypatch):
    monkeypatch.setenv("SAMFAST_MALLOC_TUNING", "0")
    assert memory.maybe_tune_for(torch.device("cpu")) is False
    monkeypatch.delenv("SAMFAST_MALLOC_TUNING")
    assert memory.maybe_tune_for(torch.device("cuda", 0)) is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applied_on_glibc_and_large_tensors_still_work():
    assert memory.keep_freed_cpu_memory() is True
    assert memory.maybe_tune_for(torch.device("cpu")) is True
    for _ in range(3):  # large blocks are now served from (and returned to) the heap
        a = torch.ones(8, 1024, 1024)
        assert float(a.sum()) == 8 * 1024 * 1024
        del a
