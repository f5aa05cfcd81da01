"""Per-call time of the Taylor engine's Laplacian on a small MLP: the eager per-op overhead.

    python benchmarks/bench_call_overhead.py [--json out.json]

One thread. For N in {1, 128, 1024}: ``derivatives(net, x, hessian="laplacian",
backend="kernel")`` with grad enabled (default create_graph: the graph to the
parameters is built) and under ``torch.no_grad()``, the plain forward ``net(x)``
for scale, and at N = 1024 a training step (a loss on the value, gradient and
Laplacian, then ``torch.autograd.grad`` with respect to the parameters). Each
figure is the median of ``torch.utils.benchmark.Timer.blocked_autorange``.
The package is whichever ``hoderiv_ext`` is imported (set PYTHONPATH to
compare two trees).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn
from torch.utils import benchmark

import hoderiv_ext
from hoderiv_ext import derivatives


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))


def _time(fn, min_run_time: float) -> float:
    """Median seconds per call."""
    fn()
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median


def measure(min_run_time: float = 0.5) -> dict[str, float]:
    torch.set_num_threads(1)
    net = _net()
    params = list(net.parameters())
    results: dict[str, float] = {}
    for n in (1, 128, 1024):
        x = torch.randn(n, 2)

        def call(x=x):
            return derivatives(net, x, hessian="laplacian", backend="kernel")

        def call_no_grad(x=x):
            with torch.no_grad():
                return derivatives(net, x, hessian="laplacian", backend="kernel")

        def forward(x=x):
            with torch.no_grad():
                return net(x)

        results[f"laplacian N={n} grad"] = _time(call, min_run_time)
        results[f"laplacian N={n} no_grad"] = _time(call_no_grad, min_run_time)
        results[f"forward N={n} no_grad"] = _time(forward, min_run_time)

    x = torch.randn(1024, 2)

    def training_step():
        r = derivatives(net, x, hessian="laplacian", backend="kernel")
        loss = r.value.pow(2).mean() + r.gradient.pow(2).mean() + (r.laplacian + 1).pow(2).mean()
        return torch.autograd.grad(loss, params)

    results["training step N=1024"] = _time(training_step, min_run_time)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures (seconds) here")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args = parser.parse_args()
    results = measure(args.min_run_time)
    print(f"hoderiv_ext from {hoderiv_ext.__file__}")
    for name, seconds in results.items():
        print(f"{name:28s} {seconds * 1e6:10.1f} us")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"package": hoderiv_ext.__file__, "seconds": results}, handle, indent=1)


if __name__ == "__main__":
    main()
