"""Issue-4 CPU target: gradient + Laplacian of a tanh MLP 8 -> 128 x 4 -> 1 at N = 4096.

Compares, in one run, the compiled Taylor engine (backend="kernel") with the
seeds' nested autograd, the autograd engine and torch.func, for the forward
computation and a training step (forward + gradient of a PINN-style loss with
respect to the parameters). Every method's results are checked against nested
autograd before timing.

The machine this runs on is often shared and noisy, so the contenders take
turns round by round (hoderiv_bench.pairing) and the speed-up is paired
within each round: nested time / contender time in the same round, given as
median (min-max) over the rounds. Prints a Markdown table.

    PYTHONPATH=. python benchmarks/bench_taylor_cpu.py [--hessian laplacian] [--d 8] [--n 4096] [--rounds 9]
"""

from __future__ import annotations

import argparse
import datetime
import statistics

import torch

from hoderiv_bench.methods import METHODS, tanh_mlp, training_loss
from hoderiv_bench.pairing import interleaved_samples, paired_speedups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hessian", default="laplacian", choices=["laplacian", "full", "diagonal", "none"])
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--min-round-time", type=float, default=0.3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    hessian = None if args.hessian == "none" else args.hessian
    torch.manual_seed(0)
    net = tanh_mlp(args.d, args.width, args.depth)
    x = torch.randn(args.n, args.d)
    params = list(net.parameters())
    names = ["nested"] + [name for name in args.methods if name != "nested"]
    reference = METHODS["nested"](net, x, hessian)
    errors = {}
    for name in names:
        result = METHODS[name](net, x, hessian)
        errors[name] = max((a - b).abs().max().item() for a, b in zip(result, reference) if a is not None)
        assert errors[name] < 1e-3, f"{name} disagrees with nested autograd: {errors[name]}"

    def forward(name: str):
        return lambda: METHODS[name](net, x, hessian)

    def train(name: str):
        return lambda: torch.autograd.grad(training_loss(METHODS[name](net, x, hessian)), params)

    samples = interleaved_samples(
        {**{f"{name} forward": forward(name) for name in names}, **{f"{name} train": train(name) for name in names}},
        args.rounds,
        args.min_round_time,
    )
    forward_speedups = paired_speedups({n: samples[f"{n} forward"] for n in names}, "nested")
    train_speedups = paired_speedups({n: samples[f"{n} train"] for n in names}, "nested")
    print(f"# {args.hessian}, tanh MLP {args.d}->{args.width}x{args.depth}->1, N={args.n}, float32, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {datetime.date.today()}, "
          f"{args.rounds} paired rounds")
    print("| method | forward | vs nested: median (min-max) | training step | vs nested: median (min-max) "
          "| max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")

    def ratio(r: tuple[float, float, float]) -> str:
        return f"{r[0]:.2f}x ({r[1]:.2f}-{r[2]:.2f})"

    for name in names:
        fwd = statistics.median(samples[f"{name} forward"])
        trn = statistics.median(samples[f"{name} train"])
        print(f"| {name} | {fwd * 1e3:.1f} ms | {ratio(forward_speedups[name])} | {trn * 1e3:.1f} ms | "
              f"{ratio(train_speedups[name])} | {errors[name]:.1e} |")


if __name__ == "__main__":
    main()
