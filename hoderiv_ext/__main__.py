"""Command line: ``python -m hoderiv_ext {bench,demo,info}`` (also the ``hoderiv-ext`` script).

  bench  the benchmark suite (the hoderiv_bench package): every path of this
         package against nested autograd, torch.func and torch.compile,
         checked then timed (``python -m hoderiv_ext bench --help``)
  demo   elementwise derivatives of the seeds' x**3 + 2x and of tanh, on the
         kernel and autograd paths side by side, with their agreement
  info   what the compiled extension contains (build_info) as JSON
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

import hoderiv_ext
from hoderiv_ext import Polynomial, elementwise_derivatives


def _demo(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    print("hoderiv_ext", hoderiv_ext.__version__, "on", device)
    print("build:", json.dumps(hoderiv_ext.build_info()))
    x = 2 * torch.rand(5, 3, dtype=torch.float64, device=device)
    cubic = Polynomial([0.0, 2.0, 0.0, 1.0])  # x**3 + 2x, the seed's example
    y, dy, d2y = elementwise_derivatives(cubic, x, 2, backend="kernel")
    print("\nx**3 + 2x on a (5, 3) batch, kernel path")
    print("max |y' - (3x^2 + 2)| =", (dy - (3 * x**2 + 2)).abs().max().item())
    print("max |y'' - 6x|        =", (d2y - 6 * x).abs().max().item())
    print("\ntanh, orders 0..4, kernel vs autograd (float64), max abs difference per order:")
    grid = torch.linspace(-6, 6, 1001, dtype=torch.float64, device=device)
    kernel = elementwise_derivatives("tanh", grid, 4, backend="kernel")
    reference = elementwise_derivatives("tanh", grid, 4, backend="autograd")
    for k, (a, b) in enumerate(zip(kernel, reference)):
        print(f"  order {k}: {(a - b).abs().max().item():.2e}")
    worst = max((a - b).abs().max().item() for a, b in zip(kernel, reference))
    return 0 if worst < 1e-12 else 1


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(hoderiv_ext.build_info(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hoderiv_ext", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    # Imported here, not at the top: the benchmark suite (torch.utils.benchmark and friends) loads only
    # for the command line, never for `import hoderiv_ext`.
    from hoderiv_bench import cli as bench_cli

    bench = commands.add_parser("bench", help="benchmark suite: every path against every baseline",
                                description=bench_cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_cli.add_arguments(bench)
    bench.set_defaults(run=lambda args: bench_cli.run(args, bench))
    demo = commands.add_parser("demo", help="elementwise derivatives demo")
    demo.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    demo.set_defaults(run=_demo)
    info = commands.add_parser("info", help="print build_info() as JSON")
    info.set_defaults(run=_info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
