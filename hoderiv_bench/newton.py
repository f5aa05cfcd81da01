"""The seeds' parameter-space Newton solve, three ways, for an MLP regression loss.

Notebook 2 of the seeds fits parameters by one Newton step: the gradient g of
the loss with respect to the parameters, the Hessian H assembled row by row
(one more backward per parameter), then a linear solve. Here the model is a
small MLP fitted to a smooth target by mean squared error, so P (the number of
parameters) is in the tens to thousands, and the step solves
``(H + damping I) step = -g``:

  autograd   hoderiv_ext.newton_step (all Hessian rows from one batched
             backward pass of the gradient graph)
  nested     the seeds' loop: one torch.autograd.grad per Hessian row
  func       torch.func: jacfwd(grad) of the loss as a function of the flat
             parameter vector

Every method returns the flat step (P,). All three solve in float64 for
float32 parameters (as hoderiv_ext.newton_step does), so they differ only in
how they get g and H; hoderiv_ext.newton_step also checks H for singularity.
There is no kernel path for parameter-space derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, jacfwd

from hoderiv_bench.methods import tanh_mlp
from hoderiv_ext import newton_step

# At the random initial parameters H is indefinite (eigenvalues down to about -1.1 for these
# problems, up to about 3.3): a shift of 2 makes H + damping I positive definite and well
# conditioned, a Levenberg-Marquardt step, so the float32 methods can be checked closely.
DAMPING = 2.0


@dataclass
class Regression:
    net: nn.Module
    x: Tensor
    y: Tensor
    damping: float = DAMPING

    @property
    def params(self) -> list[Tensor]:
        return list(self.net.parameters())

    def loss(self) -> Tensor:
        return 0.5 * (self.net(self.x).squeeze(-1) - self.y).pow(2).mean()


def regression(d: int, width: int, depth: int, n: int, device: torch.device | str, dtype: torch.dtype,
               seed: int = 0) -> Regression:
    """A tanh MLP d -> width x depth -> 1 and n samples of the target sin(x_1 + ... + x_d)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = tanh_mlp(d, width, depth).to(device=device, dtype=dtype)
    x = torch.randn(n, d, generator=generator).to(device=device, dtype=dtype)
    return Regression(net, x, torch.sin(x.sum(-1)))


def _solve(hessian: Tensor, gradient: Tensor, damping: float) -> Tensor:
    work = torch.float64 if hessian.dtype in (torch.float16, torch.bfloat16, torch.float32) else hessian.dtype
    system = hessian.to(work) + damping * torch.eye(hessian.shape[0], dtype=work, device=hessian.device)
    return torch.linalg.solve(system, -gradient.to(work)).to(gradient.dtype)


def package_newton(problem: Regression) -> Tensor:
    step = newton_step(problem.loss(), problem.params, damping=problem.damping)
    return torch.cat([s.reshape(-1) for s in step])


def nested_newton(problem: Regression) -> Tensor:
    """The seeds' way: ``gg[i, :] = grad(g[i], params)`` for every parameter i, then solve."""
    params = problem.params
    grads = torch.autograd.grad(problem.loss(), params, create_graph=True)
    gradient = torch.cat([g.reshape(-1) for g in grads])
    rows = []
    for i in range(gradient.shape[0]):
        row = torch.autograd.grad(gradient[i], params, retain_graph=True, allow_unused=True, materialize_grads=True)
        rows.append(torch.cat([r.reshape(-1) for r in row]))
    return _solve(torch.stack(rows), gradient.detach(), problem.damping)


def func_newton(problem: Regression) -> Tensor:
    """torch.func: the Hessian as jacfwd of the gradient of the loss of the flat parameter vector."""
    names = [name for name, _ in problem.net.named_parameters()]
    params = problem.params
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    theta = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(flat: Tensor) -> Tensor:
        pieces = {name: piece.reshape(shape) for name, piece, shape in zip(names, flat.split(sizes), shapes)}
        out = functional_call(problem.net, pieces, (problem.x,))
        return 0.5 * (out.squeeze(-1) - problem.y).pow(2).mean()

    def gradient_with_aux(flat: Tensor) -> tuple[Tensor, Tensor]:
        gradient, _ = grad_and_value(loss_of)(flat)
        return gradient, gradient

    hessian, gradient = jacfwd(gradient_with_aux, has_aux=True)(theta)
    return _solve(hessian, gradient, problem.damping)


NEWTON_METHODS: dict[str, Callable[[Regression], Tensor]] = {
    "autograd": package_newton,
    "nested": nested_newton,
    "func": func_newton,
}
