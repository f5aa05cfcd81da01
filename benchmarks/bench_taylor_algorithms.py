"""Forward Taylor against mixed mode (and forward-over-reverse) on the same requests: the measurement
behind ``hoderiv_ext.engines.select.MIXED_MODE_SLOT_RATIO`` and ``algorithm_for``.

    PYTHONPATH=. python benchmarks/bench_taylor_algorithms.py [--cases 2,128,4096 8,128,4096] [--rounds 7]
        [--device cuda]

For each case (d, width, N; tanh MLP with 3 hidden layers, one output,
float32) and request (full Hessian, diagonal), every algorithm of
``hoderiv_ext.engines.taylor.engine.run`` that serves it is timed on the forward pass and on a training
step (gradient of a loss on value, gradient and second derivatives with
respect to the parameters). Contenders take turns round by round
(hoderiv_bench.pairing); the table gives forward-Taylor time / other time,
paired within a round, median (min-max): above 1 the other algorithm is faster.
The column "auto" names what ``algorithm_for`` picks today. Results are
checked against forward Taylor before timing. On a GPU the timer
(torch.utils.benchmark) synchronises the device around each measurement.
"""

from __future__ import annotations

import argparse
import datetime

import torch

from hoderiv_ext.engines import select
from hoderiv_ext.engines.taylor import engine as taylor_engine
from hoderiv_ext.engines.taylor.plan import build_plan
from hoderiv_bench.environment import device_name
from hoderiv_bench.methods import tanh_mlp
from hoderiv_bench.pairing import interleaved_samples, paired_speedups
from hoderiv_ext.core.requests import parse_hessian_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["2,128,4096", "3,128,4096", "4,128,4096", "8,128,4096",
                                                       "16,128,2048"])
    parser.add_argument("--requests", nargs="+", default=["full", "diagonal"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-round-time", type=float, default=0.2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"# forward Taylor time / other algorithm's time (>1: the other is faster); forward | training step; "
          f"torch {torch.__version__}, {device_name(device)}, {torch.get_num_threads()} threads, {datetime.date.today()}, "
          f"{args.rounds} paired rounds")
    print("| d, width, N | request | auto picks | mixed: forward | mixed: training |")
    print("|---|---|---|---:|---:|")
    for case in args.cases:
        d, width, n = (int(v) for v in case.split(","))
        torch.manual_seed(0)
        net = tanh_mlp(d, width, 3).to(device)
        x = torch.randn(n, d, device=device)
        params = list(net.parameters())
        plan = build_plan(net)
        for hessian in args.requests:
            request = parse_hessian_request(hessian, d)
            algorithms = ["forward", "mixed"]
            reference = taylor_engine.run(plan, x, request, False, algorithm="forward")
            for algorithm in algorithms[1:]:
                other = taylor_engine.run(plan, x, request, False, algorithm=algorithm)
                for a, b in zip(reference, other):
                    if a is not None:
                        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)

            def forward(algorithm: str):
                return lambda: taylor_engine.run(plan, x, request, False, algorithm=algorithm)

            def train(algorithm: str):
                def step():
                    value, jacobian, second = taylor_engine.run(plan, x, request, True, algorithm=algorithm)
                    loss = value.square().mean() + jacobian.square().mean() + second.square().mean()
                    return torch.autograd.grad(loss, params)

                return step

            contenders = {f"{a} forward": forward(a) for a in algorithms}
            contenders.update({f"{a} train": train(a) for a in algorithms})
            samples = interleaved_samples(contenders, args.rounds, args.min_round_time)
            # paired_speedups gives baseline time / contender time; we want taylor / mixed.
            forward_ratio = paired_speedups(samples, "forward forward")["mixed forward"]
            train_ratio = paired_speedups(samples, "forward train")["mixed train"]
            picked = select.taylor_algorithm(plan, request, d)
            cells = [f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})" for r in (forward_ratio, train_ratio)]
            print(f"| {d}, {width}, {n} | {hessian} | {picked} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
