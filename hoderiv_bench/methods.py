"""The methods a benchmark compares, each computing (value, gradient, second) for an MLP.

Every method returns canonical-ish tensors for a scalar network f: value (N,),
gradient (N, d) and the requested second-order tensor (hoderiv_ext.core.results
shapes for scalar output), so results can be checked against the reference
before anything is timed.

  taylor      hoderiv_ext.derivatives(..., backend="kernel")  (compiled Taylor engine)
  autograd    hoderiv_ext.derivatives(..., backend="autograd") (the autograd engine)
  nested      the seeds' way: grad(f.sum(), x, create_graph=True), then one
              more grad per needed Hessian row, create_graph=True
  func        torch.func: vmap over samples of jacfwd(jacrev) (value, gradient
              and Hessian in one pass), diagonal / trace taken from it; selected
              rows as forward-over-reverse products with the unit vectors only

``Sine`` is the sin activation as a module (torch has none); the Taylor engine
does not serve it, so a sin MLP exercises the fallback paths.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import grad_and_value, jacfwd, jvp, vmap

from hoderiv_ext import derivatives

Result = tuple[Tensor, Tensor, "Tensor | None"]
Method = Callable[[nn.Module, Tensor, object], Result]


def _second_of(result) -> Tensor | None:
    for name in ("hessian", "hessian_rows", "hessian_diagonal", "laplacian"):
        tensor = getattr(result, name)
        if tensor is not None:
            return tensor
    return None


def taylor_method(net: nn.Module, x: Tensor, hessian: object) -> Result:
    r = derivatives(net, x, hessian=hessian, backend="kernel", check_independence=False)
    return r.value, r.gradient, _second_of(r)


def autograd_method(net: nn.Module, x: Tensor, hessian: object) -> Result:
    r = derivatives(net, x, hessian=hessian, backend="autograd", check_independence=False)
    return r.value, r.gradient, _second_of(r)


def nested_method(net: nn.Module, x: Tensor, hessian: object) -> Result:
    """The seeds' nested loops: one extra backward per Hessian row needed."""
    x = x.detach().requires_grad_(True)
    y = net(x).squeeze(-1)
    (gradient,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    d = x.shape[1]
    if hessian is None:
        return y, gradient, None
    rows = list(hessian) if isinstance(hessian, (list, tuple)) else list(range(d))
    hessian_rows = [torch.autograd.grad(gradient[:, r].sum(), x, create_graph=True)[0] for r in rows]
    if hessian == "laplacian":
        return y, gradient, sum(row[:, i] for i, row in enumerate(hessian_rows))
    if hessian == "diagonal":
        return y, gradient, torch.stack([row[:, i] for i, row in enumerate(hessian_rows)], dim=1)
    return y, gradient, torch.stack(hessian_rows, dim=1)


def func_method(net: nn.Module, x: Tensor, hessian: object) -> Result:
    """torch.func: vmap over samples of jacfwd(jacrev) with the value and gradient as aux outputs."""

    def single(point: Tensor) -> Tensor:
        return net(point.unsqueeze(0)).squeeze()

    def gradient_and_aux(point: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        gradient, value = grad_and_value(single)(point)
        return gradient, (gradient, value)

    if hessian is None:
        gradient, value = vmap(grad_and_value(single))(x)
        return value, gradient, None
    if isinstance(hessian, (list, tuple)):  # rows only: one jvp of the gradient per requested row
        basis = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)[list(hessian)]

        def rows_at(point: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            def directional(direction: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
                _, row, aux = jvp(gradient_and_aux, (point,), (direction,), has_aux=True)
                return row, aux

            rows, (gradients, values) = vmap(directional)(basis)  # the aux is the same for every row
            return rows, (gradients[0], values[0])

        rows, (gradient, value) = vmap(rows_at)(x)
        return value, gradient, rows
    full, (gradient, value) = vmap(jacfwd(gradient_and_aux, has_aux=True))(x)
    if hessian == "laplacian":
        return value, gradient, full.diagonal(dim1=1, dim2=2).sum(-1)
    if hessian == "diagonal":
        return value, gradient, full.diagonal(dim1=1, dim2=2)
    return value, gradient, full


METHODS: dict[str, Method] = {
    "taylor": taylor_method,
    "autograd": autograd_method,
    "nested": nested_method,
    "func": func_method,
}


class Sine(nn.Module):
    """sin(w0 x) as an activation module (torch has none; w0 = 1 by default, 30 on a SIREN's first
    layer). The Taylor engine recognises its forward by its trace as the kernel function "sin" or
    "scaled_sin" (hoderiv_ext.engines.taylor.traced_activation), so a Sequential of them and Linear
    layers runs the plan."""

    def __init__(self, w0: float = 1.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x) if self.w0 == 1.0 else torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return "" if self.w0 == 1.0 else f"w0={self.w0:g}"


def tanh_mlp(d: int, width: int, depth: int, activation: type[nn.Module] = nn.Tanh, outputs: int = 1) -> nn.Sequential:
    """d -> width x depth hidden layers -> outputs."""
    layers: list[nn.Module] = [nn.Linear(d, width), activation()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), activation()]
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def training_loss(result: Result) -> Tensor:
    """A PINN-style loss on u, grad u and the second-order term."""
    value, gradient, second = result
    loss = value.pow(2).mean() + gradient.pow(2).mean()
    if second is not None:
        loss = loss + (second + 1.0).pow(2).mean()
    return loss
