"""The methods of the operator workloads: partial, weighted and randomized Laplacians, the bi-Laplacian
and directional derivatives, by this package and by the routes users write by hand.

Every method of one workload returns the same tuple, so that it can be checked against the float64
reference before it is timed:

  weighted, partial, hutchinson  (value (N,), gradient (N, d), the Laplacian-type operator (N,))
  bilaplacian                    (value (N,), gradient (N, d), the bi-Laplacian (N,))
  directional                    the order + 1 coefficients d^k/dt^k f(x + t v) at t = 0, k = 0..order,
                                 each (N,) (one output each, so each is checked on its own scale)

Methods (:data:`OPERATOR_METHODS`; each takes (net, x, spec)):

  kernel    derivatives(f, x, hessian=<request>, backend="kernel"), or
            directional_derivatives(f, x, v, order, backend="kernel")
  autograd  the same with backend="autograd"
  nested    nested torch.autograd.grad (create_graph=True), the way users write it by hand:
              weighted     the full Hessian (one backward pass per input), contracted with sigma sigma^T
              partial      one backward pass per chosen input, keeping its diagonal entry
              hutchinson   one Hessian-vector product per random direction, v_k^T H v_k averaged
              bilaplacian  the Laplacian of the Laplacian (2d + 1 backward passes)
              directional  repeated gradients of (gradient . v), one backward pass per order
  func      torch.func, vmapped over the samples:
              weighted, partial, hutchinson  forward-over-reverse products along the operator's
                           directions (the columns of sigma, the chosen unit vectors, the random
                           directions), each dotted with its direction
              bilaplacian  the trace of jacfwd(jacrev) of the trace of jacfwd(jacrev)
              directional  nested jvp along v, one per order

The request of each family (:class:`OperatorSpec`): ``weighted`` is ``Laplacian(weights=sigma)`` with
sigma (d, r), r = max(1, d // 2), fixed random entries; ``partial`` is ``Laplacian(dims=...)`` over every
input but the last (the space coordinates of a heat equation in (x, t)); ``hutchinson`` is
``Laplacian(samples=16, distribution="rademacher", generator=g)``; ``bilaplacian`` is ``Bilaplacian()``;
``directional`` is ``directional_derivatives(f, x, v, order=4)`` along a fixed unit vector v.

The randomized Laplacian is a random estimate: every call seeds a fresh ``torch.Generator`` with the
same seed, and the nested and func baselines draw the same directions from it as the package does
(``hoderiv_ext.core.operators.random_directions``: Rademacher signs from int64 draws, so float32 and
float64 get the same directions). Every method therefore computes the same estimate, and the float64
reference is that estimate by nested autograd.

The networks are tanh MLPs d -> hidden widths -> 1 (:func:`operator_mlp`), from seed 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import grad, grad_and_value, jacfwd, jvp, vmap

from hoderiv_ext import Bilaplacian, Laplacian, derivatives, directional_derivatives
from hoderiv_ext.core.operators import random_directions

OPERATOR_FAMILIES = ("weighted", "partial", "hutchinson", "bilaplacian", "directional")
# The input dimension of each family in the operator suite (--dims replaces it for every family).
OPERATOR_DIMS = {"weighted": 8, "partial": 4, "hutchinson": 16, "bilaplacian": 3, "directional": 4}
HUTCHINSON_SAMPLES = 16
HUTCHINSON_SEED = 0
DIRECTIONAL_ORDER = 4
SIGMA_SEED = 3
DIRECTION_SEED = 4

Outputs = tuple[Tensor, ...]
OperatorMethod = Callable[[nn.Module, Tensor, "OperatorSpec"], Outputs]


@dataclass(frozen=True, eq=False)
class OperatorSpec:
    """What an operator workload computes: its family and the request's fixed inputs.

    ``sigma`` (d, r) for weighted; ``dims`` for partial; ``samples`` and ``seed`` for hutchinson
    (a generator seeded with ``seed`` on every call); ``v`` (d,) and ``order`` for directional.
    """

    family: str
    d: int
    sigma: Tensor | None = None
    dims: tuple[int, ...] | None = None
    samples: int | None = None
    seed: int = HUTCHINSON_SEED
    v: Tensor | None = None
    order: int = DIRECTIONAL_ORDER

    def to(self, device: torch.device, dtype: torch.dtype) -> OperatorSpec:
        """The same spec with its tensors on ``device`` in ``dtype`` (the float64 reference's copy)."""
        return replace(self, sigma=None if self.sigma is None else self.sigma.to(device, dtype),
                       v=None if self.v is None else self.v.to(device, dtype))

    def generator(self, device: torch.device) -> torch.Generator:
        """A fresh generator seeded with ``seed``: the same random directions on every call."""
        return torch.Generator(device=device).manual_seed(self.seed)

    def request(self, x: Tensor) -> Laplacian | Bilaplacian:
        """The ``hessian=`` request of the family (not for directional)."""
        if self.family == "weighted":
            return Laplacian(weights=self.sigma)
        if self.family == "partial":
            return Laplacian(dims=list(self.dims or ()))
        if self.family == "hutchinson":
            return Laplacian(samples=self.samples, distribution="rademacher", generator=self.generator(x.device))
        if self.family == "bilaplacian":
            return Bilaplacian()
        raise ValueError(f"the {self.family} family has no hessian= request")

    def directions(self, x: Tensor) -> Tensor:
        """The hutchinson family's (N, d, samples) Rademacher directions, the package's draw from ``generator``."""
        assert self.samples is not None
        return random_directions(x.shape[0], x.shape[1], self.samples, "rademacher", self.generator(x.device), x)

    def describe(self) -> str:
        """The request in words, for the report's notes."""
        if self.family == "weighted":
            return f"Laplacian(weights=sigma), sigma {tuple(self.sigma.shape)}"
        if self.family == "partial":
            return f"Laplacian(dims={list(self.dims or ())})"
        if self.family == "hutchinson":
            return f"Laplacian(samples={self.samples}, distribution='rademacher', generator seeded {self.seed})"
        if self.family == "bilaplacian":
            return "Bilaplacian()"
        return f"directional_derivatives(f, x, v, order={self.order}), v a fixed unit vector"


def operator_spec(family: str, d: int, device: torch.device, dtype: torch.dtype) -> OperatorSpec:
    """The family's request inputs for d inputs, from fixed seeds."""
    if family == "weighted":
        r = max(1, d // 2)
        sigma = torch.randn(d, r, generator=torch.Generator().manual_seed(SIGMA_SEED)) / math.sqrt(d)
        return OperatorSpec(family, d, sigma=sigma.to(device, dtype))
    if family == "partial":
        return OperatorSpec(family, d, dims=tuple(range(d - 1)) if d > 1 else (0,))
    if family == "hutchinson":
        return OperatorSpec(family, d, samples=HUTCHINSON_SAMPLES)
    if family == "bilaplacian":
        return OperatorSpec(family, d)
    if family == "directional":
        v = torch.randn(d, generator=torch.Generator().manual_seed(DIRECTION_SEED), dtype=torch.float64)
        return OperatorSpec(family, d, v=(v / v.norm()).to(device, dtype))
    raise ValueError(f"unknown operator family {family!r}; choose from {', '.join(OPERATOR_FAMILIES)}")


def operator_mlp(d: int, widths: tuple[int, ...] | list[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """d -> widths[0] -> ... -> widths[-1] -> 1, ``activation`` after every hidden layer (CPU, float32)."""
    sizes = [d, *widths]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(sizes[-1], 1))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- this package


def _package(backend: str) -> OperatorMethod:
    def method(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
        if spec.family == "directional":
            return tuple(directional_derivatives(net, x, spec.v, order=spec.order, backend=backend).unbind(-1))
        r = derivatives(net, x, hessian=spec.request(x), backend=backend, check_independence=False)
        return r.value, r.gradient, r.bilaplacian if spec.family == "bilaplacian" else r.laplacian

    method.__name__ = f"{backend}_method"
    method.__doc__ = f"derivatives / directional_derivatives with backend={backend!r}."
    return method


kernel_method = _package("kernel")
autograd_method = _package("autograd")


# ----------------------------------------------------------------------------- nested autograd


@torch.enable_grad()
def nested_full_hessian(net: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Value (N,), gradient (N, d) and full Hessian (N, d, d): one backward pass per Hessian row."""
    x = x.detach().requires_grad_(True)
    y = net(x).squeeze(-1)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    rows = [torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0] for i in range(x.shape[1])]
    return y, g, torch.stack(rows, dim=1)


def nested_weighted(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """tr(sigma sigma^T H) from the full Hessian by nested autograd."""
    y, g, hessian = nested_full_hessian(net, x)
    return y, g, torch.einsum("nij,ij->n", hessian, spec.sigma @ spec.sigma.T)


@torch.enable_grad()
def nested_laplacian(net: nn.Module, x: Tensor, dims: tuple[int, ...] | None = None) -> Outputs:
    """Value, gradient and sum_{i in dims} H_ii: one backward pass per chosen input (all when None)."""
    x = x.detach().requires_grad_(True)
    y = net(x).squeeze(-1)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    chosen = range(x.shape[1]) if dims is None else dims
    laplacian = sum(torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0][:, i] for i in chosen)
    return y, g, laplacian


def nested_partial(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """The partial Laplacian: a nested loop over the chosen inputs."""
    return nested_laplacian(net, x, spec.dims)


@torch.enable_grad()
def nested_hutchinson(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """(1/r) sum_k v_k^T H v_k: one Hessian-vector product (a backward pass of the gradient) per direction."""
    directions = spec.directions(x)
    x = x.detach().requires_grad_(True)
    y = net(x).squeeze(-1)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    total = torch.zeros_like(y)
    for k in range(directions.shape[-1]):
        v = directions[:, :, k]
        (hv,) = torch.autograd.grad((g * v).sum(), x, create_graph=True)
        total = total + (hv * v).sum(-1)
    return y, g, total / directions.shape[-1]


@torch.enable_grad()
def nested_bilaplacian(net: nn.Module, x: Tensor, spec: OperatorSpec | None = None) -> Outputs:
    """Value, gradient and the Laplacian of the Laplacian, by nested autograd."""
    x = x.detach().requires_grad_(True)
    y = net(x).squeeze(-1)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    d = x.shape[1]
    laplacian = sum(torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(d))
    (g2,) = torch.autograd.grad(laplacian.sum(), x, create_graph=True)
    bilaplacian = sum(torch.autograd.grad(g2[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(d))
    return y, g, bilaplacian


@torch.enable_grad()
def nested_directional(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """d^k/dt^k f(x + t v), k = 0..order: repeated gradients of (gradient . v)."""
    x = x.detach().requires_grad_(True)
    current = net(x).squeeze(-1)
    coefficients = [current]
    for _ in range(spec.order):
        (g,) = torch.autograd.grad(current.sum(), x, create_graph=True)
        current = g @ spec.v
        coefficients.append(current)
    return tuple(coefficients)


NESTED_OPERATORS: dict[str, OperatorMethod] = {
    "weighted": nested_weighted,
    "partial": nested_partial,
    "hutchinson": nested_hutchinson,
    "bilaplacian": nested_bilaplacian,
    "directional": nested_directional,
}


def nested_method(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """The family's nested-autograd route (see the module docstring)."""
    return NESTED_OPERATORS[spec.family](net, x, spec)


# ----------------------------------------------------------------------------- torch.func


def _single(net: nn.Module) -> Callable[[Tensor], Tensor]:
    return lambda point: net(point.unsqueeze(0)).squeeze()


def _gradient_and_aux(net: nn.Module) -> Callable[[Tensor], tuple[Tensor, tuple[Tensor, Tensor]]]:
    single = _single(net)

    def gradient_and_aux(point: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        gradient, value = grad_and_value(single)(point)
        return gradient, (gradient, value)

    return gradient_and_aux


def func_quadratic(net: nn.Module, x: Tensor, directions: Tensor, scale: float = 1.0) -> Outputs:
    """Value, gradient and scale * sum_k v_k^T H v_k by torch.func: vmap over samples, and over the
    directions of forward-over-reverse products. ``directions`` is (d, r) for every sample or (N, d, r)."""
    gradient_and_aux = _gradient_and_aux(net)

    def at(point: Tensor, columns: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        def along(direction: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            _, hv, aux = jvp(gradient_and_aux, (point,), (direction,), has_aux=True)
            return (hv * direction).sum(), aux

        quadratics, (gradients, values) = vmap(along)(columns.T)  # the aux is the same for every direction
        return values[0], gradients[0], quadratics.sum() * scale

    in_dims = (0, None) if directions.dim() == 2 else (0, 0)
    return vmap(at, in_dims=in_dims)(x, directions)


def func_weighted(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """sum_k sigma_k^T H sigma_k by forward-over-reverse products along the columns of sigma."""
    return func_quadratic(net, x, spec.sigma)


def func_partial(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """sum_{i in dims} e_i^T H e_i by forward-over-reverse products along the chosen unit vectors."""
    basis = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)[:, list(spec.dims or ())]
    return func_quadratic(net, x, basis)


def func_hutchinson(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """The Hutchinson estimate by forward-over-reverse products along the same random directions."""
    directions = spec.directions(x)
    return func_quadratic(net, x, directions, 1.0 / directions.shape[-1])


def func_bilaplacian(net: nn.Module, x: Tensor, spec: OperatorSpec | None = None) -> Outputs:
    """The trace of jacfwd(jacrev) of the trace of jacfwd(jacrev), vmapped, value and gradient as aux."""
    gradient_and_aux = _gradient_and_aux(net)

    def laplacian_and_aux(point: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        hessian, aux = jacfwd(gradient_and_aux, has_aux=True)(point)
        return hessian.diagonal().sum(), aux

    def laplacian_gradient_and_aux(point: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        return grad(laplacian_and_aux, has_aux=True)(point)

    def at(point: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hessian, (gradient, value) = jacfwd(laplacian_gradient_and_aux, has_aux=True)(point)
        return value, gradient, hessian.diagonal().sum()

    return vmap(at)(x)


def func_directional(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """d^k/dt^k f(x + t v), k = 0..order: nested jvp along v, each level carrying the lower coefficients."""
    single, v = _single(net), spec.v

    def coefficients_0(point: Tensor) -> Tensor:
        return single(point).reshape(1)

    coefficients = coefficients_0
    for _ in range(spec.order):
        def coefficients(point: Tensor, lower: Callable[[Tensor], Tensor] = coefficients) -> Tensor:
            primal, tangent = jvp(lower, (point,), (v,))
            return torch.cat([primal, tangent[-1:]])

    return tuple(vmap(coefficients)(x).unbind(-1))


FUNC_OPERATORS: dict[str, OperatorMethod] = {
    "weighted": func_weighted,
    "partial": func_partial,
    "hutchinson": func_hutchinson,
    "bilaplacian": func_bilaplacian,
    "directional": func_directional,
}


def func_method(net: nn.Module, x: Tensor, spec: OperatorSpec) -> Outputs:
    """The family's torch.func route (see the module docstring)."""
    return FUNC_OPERATORS[spec.family](net, x, spec)


OPERATOR_METHODS: dict[str, OperatorMethod] = {
    "kernel": kernel_method,
    "autograd": autograd_method,
    "nested": nested_method,
    "func": func_method,
}


@torch.enable_grad()
def value_and_gradient(net: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Value (N,) and gradient (N, d) by one backward pass (create_graph=True): what a torch-jet user adds
    to torch-jet's operator, which returns the operator only."""
    x = x.detach().requires_grad_(True)
    y = net(x).squeeze(-1)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    return y, g


def jet_outputs(net: nn.Module, x: Tensor, operator: Callable[[Tensor], Tensor]) -> Outputs:
    """(value, gradient, operator (N,)) with the operator from a batched torch-jet function (N, 1)."""
    y, g = value_and_gradient(net, x)
    return y, g, operator(x).squeeze(-1)

