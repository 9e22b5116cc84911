"""Helpers shared by the CPU benchmark scripts in this folder (bench_*.py): median-of-repeats timing
and writing the results JSON. Standard library only, so importing it costs nothing.

The scripts run as `python benchmarks/bench_x.py`, which puts this folder on sys.path, so they
`import bench_common` from any working directory.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Callable, List, Optional, Tuple


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 2) -> Tuple[List[float], List[float]]:
    """Call fn() `warmup` times untimed, then `repeats` times timed.

    Returns (wall, cpu): per timed call, the wall time (time.perf_counter) and the process CPU time of
    all threads (time.process_time, taken just outside the wall interval), both in seconds.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def median_s(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of fn() over `repeats` calls after `warmup` untimed ones, in seconds."""
    return statistics.median(time_calls(fn, repeats, warmup)[0])


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """median_s in milliseconds."""
    return median_s(fn, repeats, warmup) * 1e3


def median_wall_cpu_s(fn: Callable[[], object], repeats: int, warmup: int = 2) -> Tuple[float, float]:
    """(median wall time, median process CPU time of all threads) per call of fn(), in seconds."""
    wall, cpu = time_calls(fn, repeats, warmup)
    return statistics.median(wall), statistics.median(cpu)


def write_json(path: Optional[str], result, indent: int = 1, announce: bool = False) -> None:
    """Write `result` as JSON to `path` (the script's --json; nothing when it is None or empty);
    with `announce`, print "wrote <path>" afterwards."""
    if not path:
        return
    with open(path, "w") as f:
        json.dump(result, f, indent=indent)
    if announce:
        print(f"wrote {path}")
