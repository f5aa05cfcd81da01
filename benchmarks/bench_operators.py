"""The differential operators beyond the Hessian against the routes users take today (CPU, paired rounds).

Cases (each checked against its baseline before timing; speed-up = baseline time / contender time
in the same round, median (min-max) over rounds; forward pass and training step):

  weighted     tr(sigma sigma^T H) with r = d/2 directions, sigma (d, r), on 50 -> 768, 768, 512, 512 -> 1
               at N = 256: the Taylor engine (one collapsed slot over r tangents) against the full
               Hessian by nested autograd contracted with sigma sigma^T, and the autograd engine
  hutchinson   the randomized Laplacian, 16 Rademacher directions, d = 100 (100 -> 128 x 3 -> 1,
               N = 1024), against the exact Laplacian on the Taylor engine (the estimate's cost
               does not grow with d)
  bilaplacian  the exact bi-Laplacian of tanh 3 -> 64 x 3 -> 1 at N = 1024: the Taylor engine
               (algorithm "bilaplacian") and the autograd engine against nested autograd

With torch-jet (``jet-for-pytorch``) importable, its weighted Laplacian and bi-Laplacian (vmapped over
the batch, eager and under torch.compile) join as baselines; it computes only the operator, not the
value and gradient. On Python 3.11 it installs with ``pip install --no-deps --ignore-requires-python
jet-for-pytorch scipy`` after its one ``type PyTree[Leaf] = ...`` statement in ``jet/utils.py`` is
replaced by an ordinary alias.

    python benchmarks/bench_operators.py [--cases weighted hutchinson bilaplacian] [--rounds 7]

The networks, the nested-autograd baselines and the torch-jet operators are hoderiv_bench's
(hoderiv_bench.operators, hoderiv_bench.jet_methods); ``python -m hoderiv_ext bench --suite operators``
runs these operators, and more, as workloads of the benchmark suite (``--full``: at these sizes).
"""

from __future__ import annotations

import argparse
import datetime

import torch
from torch import nn

from hoderiv_bench.environment import device_name
from hoderiv_bench.jet_methods import compiled_jet, jet_operator, torch_jet
from hoderiv_bench.operators import OperatorSpec, nested_bilaplacian, nested_weighted, operator_mlp
from hoderiv_bench.pairing import interleaved_samples, paired_speedups
from hoderiv_ext import Bilaplacian, Laplacian, derivatives


def _jet_contenders(name: str, net: nn.Module, x: torch.Tensor, sigma: torch.Tensor | None) -> dict:
    """torch-jet's operator, vmapped over the batch, eager and compiled (empty without torch-jet)."""
    if torch_jet() is None:
        return {}
    batched = jet_operator(net, name, x.shape[1], x.dtype, x.device, sigma)
    # torch.compile of the vmapped function captures no graph (dynamo runs torch-jet's interpreter
    # eagerly): trace it into one aten graph first, as torch-jet advises, and compile that.
    compiled = compiled_jet(batched, x.device)
    return {"torch-jet": lambda: (batched(x).squeeze(-1),), "torch-jet compiled": lambda: (compiled(x).squeeze(-1),)}


def _case(name: str) -> tuple[nn.Module, dict, str]:
    torch.manual_seed(0)
    if name == "weighted":
        net, x = operator_mlp(50, (768, 768, 512, 512)), torch.randn(256, 50)
        sigma = torch.randn(50, 25) / 5
        spec = OperatorSpec("weighted", 50, sigma=sigma)
        contenders = {
            "full Hessian + contract (nested)": lambda: nested_weighted(net, x, spec),
            "Taylor engine": lambda: _fields(derivatives(net, x, hessian=Laplacian(weights=sigma), backend="kernel")),
            "autograd engine": lambda: _fields(derivatives(net, x, hessian=Laplacian(weights=sigma),
                                                           backend="autograd")),
            **_jet_contenders(name, net, x, sigma),
        }
        return net, contenders, "full Hessian + contract (nested)"
    if name == "hutchinson":
        net, x = operator_mlp(100, (128, 128, 128)), torch.randn(1024, 100)
        generator = torch.Generator().manual_seed(0)
        contenders = {
            "exact Laplacian (Taylor engine)": lambda: _fields(derivatives(net, x, hessian="laplacian")),
            "16 samples (Taylor engine)": lambda: _fields(derivatives(net, x, hessian=Laplacian(samples=16,
                                                                      generator=generator))),
        }
        return net, contenders, "exact Laplacian (Taylor engine)"
    net, x = operator_mlp(3, (64, 64, 64)), torch.randn(1024, 3)
    contenders = {
        "nested autograd": lambda: (nested_bilaplacian(net, x)[-1],),
        "Taylor engine": lambda: (derivatives(net, x, hessian=Bilaplacian(), backend="kernel").bilaplacian,),
        "autograd engine": lambda: (derivatives(net, x, hessian=Bilaplacian(), backend="autograd").bilaplacian,),
        **_jet_contenders(name, net, x, None),
    }
    return net, contenders, "nested autograd"


def _fields(result) -> tuple[torch.Tensor, ...]:
    return result.value, result.gradient, result.laplacian


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["weighted", "hutchinson", "bilaplacian"],
                        choices=["weighted", "hutchinson", "bilaplacian"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-round-time", type=float, default=0.3)
    args = parser.parse_args()
    print(f"# speed-up over the first contender, median (min-max) of {args.rounds} paired rounds; forward | training "
          f"step; torch {torch.__version__}, {device_name(torch.device('cpu'))}, {torch.get_num_threads()} threads, "
          f"{datetime.date.today()}")
    print("| case | contender | forward | training step |")
    print("|---|---|---:|---:|")
    for case in args.cases:
        net, contenders, baseline = _case(case)
        params = list(net.parameters())
        if case != "hutchinson":  # check the contenders against the baseline (the estimate is random)
            expected = contenders[baseline]()[-1].detach()
            for name, fn in contenders.items():
                got = fn()[-1].detach().reshape(expected.shape)
                scale = max(1.0, float(expected.abs().max()))
                assert float((got - expected).abs().max()) < 1e-3 * scale, (case, name)

        def train(fn):
            return lambda: torch.autograd.grad(sum(t.square().mean() for t in fn()), params, allow_unused=True)

        def forward(fn):
            def call():
                with torch.no_grad():  # no graph kept (the nested baselines build theirs inside)
                    return fn()
            return call

        samples = interleaved_samples({**{f"{n} f": forward(fn) for n, fn in contenders.items()},
                                       **{f"{n} t": train(fn) for n, fn in contenders.items()}},
                                      args.rounds, args.min_round_time)
        ratios_f = paired_speedups({k: v for k, v in samples.items() if k.endswith(" f")}, f"{baseline} f")
        ratios_t = paired_speedups({k: v for k, v in samples.items() if k.endswith(" t")}, f"{baseline} t")
        for name in contenders:
            cells = [f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})" for r in (ratios_f[f"{name} f"], ratios_t[f"{name} t"])]
            print(f"| {case} | {name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
