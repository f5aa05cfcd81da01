"""Issue-4 CPU target: gradient + Laplacian of a tanh MLP 8 -> 128 x 4 -> 1 at N = 4096.

Compares, in one run, the compiled Taylor engine (backend="kernel") with the
seeds' nested autograd, the reference engine and torch.func, for the forward
computation and a training step (forward + gradient of a PINN-style loss with
respect to the parameters). Every method's results are checked against nested
autograd before timing. Prints a Markdown table with ratios.

    python benchmarks/bench_taylor_cpu.py [--hessian laplacian] [--d 8] [--n 4096]
"""

from __future__ import annotations

import argparse
import datetime

import torch
import torch.utils.benchmark as benchmark

from hoderiv_ext.bench.methods import METHODS, tanh_mlp, training_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hessian", default="laplacian", choices=["laplacian", "full", "diagonal", "none"])
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--min-run-time", type=float, default=2.0)
    args = parser.parse_args()
    hessian = None if args.hessian == "none" else args.hessian
    torch.manual_seed(0)
    net = tanh_mlp(args.d, args.width, args.depth)
    x = torch.randn(args.n, args.d)
    params = list(net.parameters())
    reference = METHODS["nested"](net, x, hessian)
    rows = []
    for name, method in METHODS.items():
        result = method(net, x, hessian)
        error = max((a - b).abs().max().item() for a, b in zip(result, reference) if a is not None)
        assert error < 1e-3, f"{name} disagrees with nested autograd: {error}"
        env = dict(method=method, net=net, x=x, hessian=hessian, params=params, loss=training_loss, torch=torch)
        forward = benchmark.Timer("method(net, x, hessian)", globals=env).blocked_autorange(
            min_run_time=args.min_run_time).median
        train = benchmark.Timer("torch.autograd.grad(loss(method(net, x, hessian)), params)", globals=env
                                ).blocked_autorange(min_run_time=args.min_run_time).median
        rows.append((name, forward, train, error))
    nested = next(r for r in rows if r[0] == "nested")
    print(f"# {args.hessian}, tanh MLP {args.d}->{args.width}x{args.depth}->1, N={args.n}, float32, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {datetime.date.today()}")
    print("| method | forward | vs nested | training step | vs nested | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, forward, train, error in rows:
        print(f"| {name} | {forward * 1e3:.1f} ms | {nested[1] / forward:.2f}x | {train * 1e3:.1f} ms | "
              f"{nested[2] / train:.2f}x | {error:.1e} |")


if __name__ == "__main__":
    main()
