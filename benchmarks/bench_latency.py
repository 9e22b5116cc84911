"""End-to-end latency benchmark (thin, reproducible wrapper around samfast.benchmark / `samfast bench`).

Prints the machine (lscpu model, cores, torch / samfast versions, threads), the settings, then the
p50 / p90 / p99 / mean table for the image encoder and the decoder cases (1 point, 1 box, 64 boxes;
postprocessing included) and peak memory. Same options as `samfast bench`:

    PYTHONPATH=python python benchmarks/bench_latency.py --arch vit_b --device cpu --dtype fp32 --runs 10
    PYTHONPATH=python python benchmarks/bench_latency.py --config 64,3,4,256 --runs 5 --compare --json out.json
"""
from __future__ import annotations

import argparse
import sys

import torch

from samfast import benchmark
from samfast.cli import _image_size, _run, add_bench_args

from bench_common import write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_args(p)
    p.add_argument("--seed", type=int, default=0, help="torch seed for the random weights (default 0)")
    args = p.parse_args(argv)

    def run() -> int:
        torch.manual_seed(args.seed)
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.plot:
            benchmark.check_plot_available()
        m = benchmark.machine_info()
        print(f"machine: {m.get('cpu')} | {m.get('physical_cores', '?')} cores / {m.get('logical_cores')} threads"
              f" | simd {m.get('simd', '?')}{' | gpu ' + m['gpu'] if 'gpu' in m else ''}")
        print(f"versions: samfast {m['samfast']} | torch {m['torch']} | numpy {m['numpy']} | python {m['python']}"
              f" | torch threads {torch.get_num_threads()}")
        print("settings: " + " ".join(f"{k}={v}" for k, v in sorted(vars(args).items()) if v not in (None, False)))
        res = benchmark.run_benchmark(
            arch=args.arch, device=args.device, dtype=args.dtype, checkpoint=args.checkpoint, config=args.config,
            runs=args.runs, warmup=args.warmup, image_size=_image_size(args.image_size), compare=args.compare,
            progress=not args.no_progress, log=lambda s: print(s, file=sys.stderr))
        res["settings"]["seed"] = args.seed
        print(benchmark.format_table(res))
        write_json(args.json, res, indent=1, announce=True)
        if args.plot:
            benchmark.plot(res, args.plot)
            print(f"wrote {args.plot}")
        return 0

    return _run(run)


if __name__ == "__main__":
    sys.exit(main())
