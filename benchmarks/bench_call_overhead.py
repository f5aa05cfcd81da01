"""Per-call time of a small-batch Laplacian: this package's kernel path against ``net(x)`` and nested autograd.

    python benchmarks/bench_call_overhead.py [--rounds 5] [--json out.json]

One thread; tanh MLP 2->16x2->1 (the latency-bound workload of docs/benchmarks.md, "Per-call
overhead"). For N in {1, 128, 1024}, each round times, one after the other in the same process:

* ``net(x)`` with grad enabled (the scale: one plain forward pass),
* ``derivatives(net, x, hessian="laplacian", backend="kernel")`` with grad enabled (the graph to
  the parameters is built, as in training),
* nested autograd: ``torch.autograd.grad`` of the output, then of each gradient column, all with
  ``create_graph=True`` (the seeds' way),

and a training step through each of the last two (a loss on value, gradient and Laplacian, then
``torch.autograd.grad`` with respect to the parameters). Each figure is the median of
``torch.utils.benchmark.Timer.blocked_autorange``; a ratio is the median over rounds of that
round's ratio, so machine drift between rounds cancels. The package is whichever ``hoderiv_ext``
is imported (set PYTHONPATH to compare two trees).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch import nn
from torch.utils import benchmark

import hoderiv_ext
from hoderiv_ext import derivatives

SIZES = (1, 128, 1024)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))


def _time(fn, min_run_time: float) -> float:
    """Median seconds per call."""
    fn()
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median


def nested_laplacian(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Value, gradient and Laplacian by nested torch.autograd.grad calls (one per input dimension)."""
    x = x.detach().requires_grad_(True)
    value = net(x)[:, 0]
    (gradient,) = torch.autograd.grad(value.sum(), x, create_graph=True)
    laplacian = torch.zeros_like(value)
    for i in range(x.shape[1]):
        (row,) = torch.autograd.grad(gradient[:, i].sum(), x, create_graph=True)
        laplacian = laplacian + row[:, i]
    return value, gradient, laplacian


def measure(rounds: int = 5, min_run_time: float = 0.3) -> dict[str, object]:
    torch.set_num_threads(1)
    net = _net()
    params = list(net.parameters())
    times: dict[str, list[float]] = {}
    cases = {}

    def kernel_laplacian(x: torch.Tensor):
        r = derivatives(net, x, hessian="laplacian", backend="kernel")
        return r.value, r.gradient, r.laplacian

    def training_step(x: torch.Tensor, method) -> tuple[torch.Tensor, ...]:
        value, gradient, laplacian = method(x)
        loss = value.pow(2).mean() + gradient.pow(2).mean() + (laplacian + 1).pow(2).mean()
        return torch.autograd.grad(loss, params)

    for n in SIZES:
        x = torch.randn(n, 2)
        cases[f"forward N={n}"] = lambda x=x: net(x)
        cases[f"kernel N={n}"] = lambda x=x: kernel_laplacian(x)
        cases[f"nested N={n}"] = lambda x=x: nested_laplacian(net, x)
        cases[f"kernel training N={n}"] = lambda x=x: training_step(x, kernel_laplacian)
        cases[f"nested training N={n}"] = lambda x=x: training_step(x, lambda x: nested_laplacian(net, x))
    for _ in range(rounds):
        for name, fn in cases.items():
            times.setdefault(name, []).append(_time(fn, min_run_time))
    ratios = {}
    for n in SIZES:
        kernel, forward, nested = times[f"kernel N={n}"], times[f"forward N={n}"], times[f"nested N={n}"]
        ratios[f"kernel / net(x) N={n}"] = statistics.median(k / f for k, f in zip(kernel, forward))
        ratios[f"nested / kernel N={n}"] = statistics.median(s / k for k, s in zip(kernel, nested))
        kernel, nested = times[f"kernel training N={n}"], times[f"nested training N={n}"]
        ratios[f"training nested / kernel N={n}"] = statistics.median(s / k for k, s in zip(kernel, nested))
    return {"seconds": {name: statistics.median(values) for name, values in times.items()}, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--json", help="write the figures (seconds and ratios) here")
    args = parser.parse_args()
    results = measure(args.rounds, args.min_run_time)
    print(f"hoderiv_ext from {hoderiv_ext.__file__}, torch {torch.__version__}, 1 thread, {args.rounds} rounds")
    for name, seconds in results["seconds"].items():  # type: ignore[union-attr]
        print(f"{name:30s} {seconds * 1e6:10.1f} us")
    for name, ratio in results["ratios"].items():  # type: ignore[union-attr]
        print(f"{name:30s} {ratio:10.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"package": hoderiv_ext.__file__, **results}, handle, indent=1)


if __name__ == "__main__":
    main()
