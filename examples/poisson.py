"""A physics-informed network for the Poisson equation -Δu = f on the unit square (or cube), on the fast path.

    python examples/poisson.py                                  # 2-D, 2000 steps, the Taylor engine
    python examples/poisson.py --compare-reference              # + the autograd engine, same seed
    python examples/poisson.py --dim 3 --plot poisson3d.png     # the unit cube; a slice as PNG (matplotlib)
    torchrun --standalone --nproc_per_node=2 examples/poisson.py --distributed --check-single

(from the repository root, with hoderiv_ext installed or ``PYTHONPATH=.``).

Exact solution u = Π_i sin(π x_i), so f = d π² u and u = 0 on the boundary.
Each step draws fresh collocation points and takes the Laplacian of the
network at all of them in ONE call,

    out = hoderiv_ext.derivatives(net, x, hessian="laplacian", backend="kernel")

which on CPU with ``backend="kernel"`` (``"auto"`` on CUDA) runs the compiled
Taylor engine (one forward pass carrying value, gradient and one collapsed
Laplacian slot) instead of d nested backward passes. The loss is the mean
squared residual of the equation divided by d π², plus the mean squared value
on the boundary; Adam, learning rate decaying exponentially from --lr to
--lr/100. The run reports the relative L2 error against u (and fails, exit
status 1, above --bound), the median time per step, and with
--compare-reference the same for the autograd engine, the losses of
the two step by step, and a float64 run in which they must agree to roundoff.

With --distributed, under torchrun, each process draws its own points (its own
random stream), the loss module is wrapped in DistributedDataParallel (gloo on
CPU, nccl on CUDA) and the gradients are averaged across processes: the
training is that of one process on the union of the points, which
--check-single verifies by redoing it in one process.
"""

from __future__ import annotations

import argparse
import sys

from pinn_common import Poisson, add_common_arguments, run_from_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=2, choices=[1, 2, 3, 4],
                        help="space dimension (default %(default)s)")
    add_common_arguments(parser, steps=2000, batch=1024, lr=2e-2, bound=5e-2)
    args = parser.parse_args(argv)
    problem = Poisson(args.dim)
    description = f"Poisson -Δu = f on [0, 1]^{args.dim}, exact u = Π_i sin(π x_i), u = 0 on the boundary"
    return run_from_arguments(problem, args, description)


if __name__ == "__main__":
    sys.exit(main())
