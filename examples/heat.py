"""A physics-informed network for a correlated heat equation: the diffusion term as one weighted Laplacian.

    python examples/heat.py                                     # d = 2 space dimensions + time, rho = 0.5
    python examples/heat.py --compare-reference                 # + the autograd engine, same seed
    python examples/heat.py --dim 3 --plot heat3d.png           # a slice at t = T as PNG (matplotlib)
    python examples/heat.py --operator rows                     # the same from d Hessian rows (slower)
    torchrun --standalone --nproc_per_node=2 examples/heat.py --distributed --check-single

(from the repository root, with hoderiv_ext installed or ``PYTHONPATH=.``).

    u_t = Σ_ij A_ij ∂²u/∂x_i∂x_j   on x ∈ [0, 1]^d, t ∈ [0, T],   A = C / (2π²),  C_ii = 1, C_ij = ρ,

the Kolmogorov equation of a Brownian motion with correlated components (the
diffusion part of the multi-asset Black–Scholes operator in log-prices). The
exact solution

    u = e^{-λ₁ t} sin(k₁·x) + e^{-λ₂ t} sin(k₂·x),   λ_m = k_mᵀ A k_m,
    k₁ = π(1, ..., 1),  k₂ = π(1, -1, 1, ...),

gives the data on the faces of the cube and at t = 0. The network takes
z = (x, t); with ρ ≠ 0 the residual needs the mixed derivatives. With
σ = [L; 0] ((d+1) x d: L the Cholesky factor of A, a zero row for t),
Σ_ij A_ij ∂²u/∂x_i∂x_j = tr(σσᵀ ∇²u), one weighted Laplacian:

    out = hoderiv_ext.derivatives(net, z, hessian=hoderiv_ext.Laplacian(weights=sigma))

gives u_t (out.gradient[:, d]) and the diffusion term (out.laplacian) from
1 + (d+1) + d + 1 jet slots. --operator rows asks for the d Hessian rows of
the space coordinates instead (1 + (d+1) + d(d+1) slots) and contracts them
with A; with --rho 0 it asks for hessian="diagonal". Reports as
examples/poisson.py does (error against the exact solution and --bound, time
per step, --compare-reference, --distributed, --plot).
"""

from __future__ import annotations

import argparse
import sys

from pinn_common import CorrelatedHeat, add_common_arguments, run_from_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=2,
                        help="space dimensions; the network has dim + 1 inputs (default %(default)s)")
    parser.add_argument("--rho", type=float, default=0.5,
                        help="correlation between the space coordinates (default %(default)s)")
    parser.add_argument("--horizon", type=float, default=1.0, help="final time T (default %(default)s)")
    parser.add_argument("--operator", default="weighted", choices=["weighted", "rows"],
                        help="the diffusion term as a weighted Laplacian, or from Hessian rows (default %(default)s)")
    add_common_arguments(parser, steps=2000, batch=1024, lr=2e-2, bound=5e-2)
    args = parser.parse_args(argv)
    problem = CorrelatedHeat(args.dim, args.rho, args.horizon, args.operator)
    if problem.operator == "weighted":
        request = "hessian=Laplacian(weights=sigma)"
    else:
        request = "hessian='diagonal'" if problem.hessian == "diagonal" else f"hessian={problem.hessian}"
    description = (f"correlated heat equation u_t = Σ A_ij u_x_i x_j on [0, 1]^{args.dim} x [0, {args.horizon:g}], "
                   f"rho = {args.rho:g}, rates λ = {[round(float(r), 4) for r in problem.rates]}, "
                   f"derivatives(..., {request})")
    return run_from_arguments(problem, args, description)


if __name__ == "__main__":
    sys.exit(main())
