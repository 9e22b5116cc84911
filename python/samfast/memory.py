"""CPU allocator tuning for steady-state inference.

The batched decoder writes several [B, 4096, 256] float tensors per call (268 MB at B = 64). glibc
serves allocations that large with mmap and unmaps them on free, so every call pays page faults and
kernel zeroing again: on the 2-vCPU reference machine a fresh 268 MB output cost 62 ms against 8 ms
to fill an existing buffer, about a quarter of the 64-box decoder time (benchmarks/RESULTS.md).

`keep_freed_cpu_memory()` tells glibc (mallopt) to serve such blocks from the heap and keep freed
memory for reuse. The cost: the process's resident memory stays near its high-water mark instead of
shrinking after each call. SamPredictor applies it on first use of a CPU model unless the environment
variable SAMFAST_MALLOC_TUNING=0 is set; it is a no-op off glibc (macOS, Windows, musl).
"""
from __future__ import annotations

import ctypes
import os
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = False


def keep_freed_cpu_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1) -> bool:
    """Raise glibc's mmap and trim thresholds (bytes) so large tensors reuse heap memory.
    Returns True when applied (now or before), False where the C library is not glibc."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    except (OSError, AttributeError):
        return False
    _applied = ok
    return ok


def maybe_tune_for(device) -> bool:
    """keep_freed_cpu_memory() for CPU inference unless SAMFAST_MALLOC_TUNING=0."""
    if os.environ.get("SAMFAST_MALLOC_TUNING", "1") == "0" or getattr(device, "type", str(device)) != "cpu":
        return False
    return keep_freed_cpu_memory()
