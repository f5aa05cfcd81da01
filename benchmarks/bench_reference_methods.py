"""Which mechanism of the autograd engine is fastest, per case: the data behind method="auto".

    PYTHONPATH=. python benchmarks/bench_reference_methods.py
    PYTHONPATH=. python benchmarks/bench_reference_methods.py --n 64 4096 --dims 2 8 32 --outputs 1 4
    PYTHONPATH=. python benchmarks/bench_reference_methods.py --device cuda   # torch.utils.benchmark syncs

For a tanh MLP (width 128, depth 4) in float32 it times
``hoderiv_ext.engines.autograd.engine.run(..., method=m)`` for m in func / autograd /
autograd_loop over a grid of batch sizes N, input dimensions d, outputs o,
requests (one Hessian row, the Laplacian) and create_graph, and prints each
time relative to the fastest, plus what method="auto" picks.
"""

from __future__ import annotations

import argparse
import datetime
import itertools

import torch
from torch import nn

from hoderiv_bench.environment import device_name
from hoderiv_bench.pairing import interleaved_medians
from hoderiv_ext.engines import select
from hoderiv_ext.engines.autograd.engine import run as autograd_run
from hoderiv_ext.core.requests import HessianRequest

MECHANISMS = ("func", "autograd", "autograd_loop")


def tanh_mlp(d: int, o: int, width: int = 128, depth: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    size = d
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.Tanh()]
        size = width
    layers.append(nn.Linear(size, o))
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", nargs="+", type=int, default=[64, 4096])
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 8, 32])
    parser.add_argument("--outputs", nargs="+", type=int, default=[1])
    parser.add_argument("--requests", nargs="+", default=["row", "laplacian"], choices=["row", "laplacian", "full"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-round-time", type=float, default=0.2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"# reference mechanisms: {device_name(device)}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {datetime.date.today()}; tanh MLP width 128 depth 4, float32")
    print("| N | d | o | request | create_graph | " + " | ".join(MECHANISMS) + " | fastest | auto picks |")
    print("|---:|---:|---:|---|:---:|" + "---:|" * len(MECHANISMS) + "---|---|")
    requests = {"row": HessianRequest("rows", (0,)), "laplacian": HessianRequest("laplacian"),
                "full": HessianRequest("full")}
    for n, d, o in itertools.product(args.n, args.dims, args.outputs):
        f = tanh_mlp(d, o).to(device)
        x = torch.randn(n, d, device=device)
        for name, create_graph in itertools.product(args.requests, (True, False)):
            request = requests[name]
            contenders = {
                m: (lambda m=m: autograd_run(f, x, request, create_graph=create_graph, method=m))
                for m in MECHANISMS
            }
            medians = interleaved_medians(contenders, args.rounds, args.min_round_time)
            fastest = min(medians, key=medians.get)
            cells = " | ".join(f"{medians[m] * 1e3:.2f} ms ({medians[m] / medians[fastest]:.2f})" for m in MECHANISMS)
            passes = max(1, len(request.hessian_rows_needed(d))) * o
            picked = "batched" if select.batch_autograd_passes(x.device, n, passes) else "loop"
            print(f"| {n} | {d} | {o} | {name} | {create_graph} | {cells} | {fastest} | {picked} |", flush=True)

if __name__ == "__main__":
    main()
