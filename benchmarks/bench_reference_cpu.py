"""The autograd engine against the seeds' nested autograd loops, on CPU.

    PYTHONPATH=. python benchmarks/bench_reference_cpu.py          # the table in docs/benchmarks.md
    PYTHONPATH=. python benchmarks/bench_reference_cpu.py --dims 2 --quick

Network: a tanh MLP, d inputs, 4 hidden layers of width 128, 1 output, float32,
N = 4096 samples. Two requests: gradient + Laplacian, and the full Hessian.

Baselines (both keep their results differentiable, create_graph=True, as the
seeds do):
  * seeds, batched -- y = f(x); g = grad(y.sum(), x); then one
    grad(g[:, i].sum(), x) per input dimension i (notebook 2's column loop,
    applied to the whole batch);
  * seeds, per sample -- notebook 1's ``for x in x_arr`` loop: the same
    nested grads, one sample at a time (timed once: it is slow).

Engine rows: the public ``derivatives(..., backend="autograd")`` (method
"auto", probes and checks included) with create_graph=True (training) and
False (inference), and each mechanism of ``hoderiv_ext.engines.autograd.engine.run`` with
create_graph=True. Results are checked against the batched seed before
anything is timed. Timings interleave the contenders round by round
(torch.utils.benchmark); the table gives the median time over rounds and the
speed-up paired within each round (baseline time / contender time in the same
round): its median, min and max over the rounds. The per-sample loop is timed
once.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.utils.benchmark as benchmark
from torch import nn

import hoderiv_ext
from hoderiv_bench.pairing import interleaved_samples, paired_speedups
from hoderiv_ext.engines.autograd.engine import run as autograd_run
from hoderiv_ext.core.requests import HessianRequest


BASELINE = "seeds, batched (baseline)"


def tanh_mlp(d: int, width: int = 128, depth: int = 4, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    size = d
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.Tanh()]
        size = width
    layers.append(nn.Linear(size, 1))
    return nn.Sequential(*layers)


def seeds_batched(f: nn.Module, x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The seeds' way on the whole batch: grad of the sum, then one grad per input dimension."""
    x = x.detach().requires_grad_(True)
    y = f(x)
    g = torch.autograd.grad(y.sum(), x, create_graph=True)[0]
    rows = [torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0] for i in range(x.shape[1])]
    if kind == "laplacian":
        return y[:, 0], g, sum(row[:, i] for i, row in enumerate(rows))
    return y[:, 0], g, torch.stack(rows, 1)


def seeds_per_sample(f: nn.Module, x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Notebook 1's way: the same nested grads, looping over the samples."""
    values, gradients, seconds = [], [], []
    for sample in x:
        sample = sample.detach().requires_grad_(True)
        y = f(sample)
        g = torch.autograd.grad(y, sample, create_graph=True)[0]
        rows = [torch.autograd.grad(g[i], sample, create_graph=True)[0] for i in range(x.shape[1])]
        values.append(y[0])
        gradients.append(g)
        seconds.append(sum(row[i] for i, row in enumerate(rows)) if kind == "laplacian" else torch.stack(rows))
    return torch.stack(values), torch.stack(gradients), torch.stack(seconds)


@dataclass
class Row:
    case: str
    d: int
    contender: str
    create_graph: bool
    seconds: float
    speedup: tuple[float, float, float] | None  # paired with the baseline: median, min, max over rounds


def check_agreement(name: str, mine: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> None:
    for label, a, b in zip(("value", "gradient", "second"), mine, reference):
        scale = float(b.detach().abs().max()) + 1e-6
        torch.testing.assert_close(
            a.detach(), b.detach(), rtol=1e-3, atol=1e-4 * scale, msg=lambda m: f"{name} {label}: {m}"
        )


def run_case(kind: str, d: int, n: int, rounds: int, min_round_time: float, per_sample: bool) -> list[Row]:
    f = tanh_mlp(d)
    x = torch.randn(n, d)
    hessian = "laplacian" if kind == "laplacian" else "full"
    request = HessianRequest(hessian)

    def public(create_graph: bool) -> Callable[[], tuple[torch.Tensor, ...]]:
        def call() -> tuple[torch.Tensor, ...]:
            out = hoderiv_ext.derivatives(f, x, hessian, backend="autograd", create_graph=create_graph)
            return out.value, out.gradient, out.laplacian if kind == "laplacian" else out.hessian

        return call

    def mechanism(method: str) -> Callable[[], tuple[torch.Tensor, ...]]:
        def call() -> tuple[torch.Tensor, ...]:
            value, jacobian, second = autograd_run(f, x, request, create_graph=True, method=method)
            return value[:, 0], jacobian[:, 0], second[:, 0]

        return call

    contenders: dict[str, tuple[Callable[[], tuple[torch.Tensor, ...]], bool]] = {
        BASELINE: (lambda: seeds_batched(f, x, kind), True),
        "derivatives() auto": (public(True), True),
        "derivatives() auto, inference": (public(False), False),
        "method=func": (mechanism("func"), True),
        "method=autograd": (mechanism("autograd"), True),
        "method=autograd_loop": (mechanism("autograd_loop"), True),
    }
    reference = seeds_batched(f, x, kind)
    for name, (fn, _) in contenders.items():
        check_agreement(name, fn(), reference)
    samples = interleaved_samples({name: fn for name, (fn, _) in contenders.items()}, rounds, min_round_time)
    speedups = paired_speedups(samples, BASELINE)
    rows = [
        Row(kind, d, name, graph, statistics.median(samples[name]), speedups[name])
        for name, (_, graph) in contenders.items()
    ]
    if per_sample:
        check_agreement("seeds, per sample", seeds_per_sample(f, x[:64], kind), seeds_batched(f, x[:64], kind))
        once = benchmark.Timer("fn()", globals={"fn": lambda: seeds_per_sample(f, x, kind)}).timeit(1).median
        rows.append(Row(kind, d, "seeds, per sample (notebook 1 loop, timed once)", True, once, None))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 8])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--min-round-time", type=float, default=0.3)
    parser.add_argument("--quick", action="store_true", help="3 rounds and no per-sample baseline")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    print(f"# autograd engine (CPU): {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {datetime.date.today()}; tanh MLP width 128 depth 4, N = {args.n}, float32")
    print("| request | d | contender | create_graph | time (median) | speed-up vs seeds, batched: median (min-max) |")
    print("|---|---:|---|:---:|---:|---:|")
    for kind in ("laplacian", "full"):
        for d in args.dims:
            rows = run_case(kind, d, args.n, rounds, args.min_round_time, per_sample=not args.quick)
            baseline = rows[0].seconds
            label = "gradient + Laplacian" if kind == "laplacian" else "full Hessian"
            for row in rows:
                if row.speedup is None:
                    ratio = f"{baseline / row.seconds:.3f}x"
                else:
                    ratio = f"{row.speedup[0]:.2f}x ({row.speedup[1]:.2f}-{row.speedup[2]:.2f})"
                time = f"{row.seconds * 1e3:.1f} ms"
                print(f"| {label} | {d} | {row.contender} | {row.create_graph} | {time} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
