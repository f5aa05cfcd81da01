"""Fused elementwise (y, y', y'') against the autograd approach, in one run.

    python benchmarks/bench_elementwise.py --device cpu --sizes 12 16 20 22
    python benchmarks/bench_elementwise.py --device cuda --sizes 12 16 20 24 26

Sizes are powers of two. Prints a Markdown table (for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime
import platform

import torch

import hoderiv_ext
from hoderiv_bench.elementwise import run_elementwise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--functions", nargs="+", default=["tanh", "softplus", "gelu"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[12, 16, 20, 22])
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"# elementwise (y, y', y''): {device_name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {datetime.date.today()}, build {hoderiv_ext.build_info()['cuda_archs'] or 'cpu'}")
    print("| function | elements | kernel | autograd | speed-up | kernel GB/s | traffic bound |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for function in args.functions:
        for exponent in args.sizes:
            r = run_elementwise(function, 1 << exponent, dtype, args.device, min_run_time=args.min_run_time)
            print(f"| {function} | 2^{exponent} | {r.kernel_seconds * 1e6:.1f} us | {r.autograd_seconds * 1e6:.1f} us | "
                  f"{r.speedup:.1f}x | {r.kernel_bandwidth_gbs:.1f} | {r.traffic_bound:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
