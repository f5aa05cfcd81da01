"""The weighted / randomized Laplacian, the bi-Laplacian and directional derivatives by nested autograd.

For a batch x (N, d), y = f(x) (N, o) and its Jacobian J (N, o, d) (with a graph):

* weighted Laplacian tr(sigma sigma^T H_a) = sum_k sigma_k^T H_a sigma_k: the
  Hessian-vector products H_a sigma_k are vector-Jacobian products of J with
  the cotangent sigma_k in output a's slot -- o r backward passes;
* bi-Laplacian, exact: Delta(Delta f) -- the Laplacian L (N, o) with a graph,
  then the Laplacian of L (each L row depends on its own x row);
* directional derivatives d^k/dt^k f(x + t v) at t = 0: with t a (N, 1) leaf
  (one per sample) and y(t) = f(x + t v), k nested backward passes of the
  batch sum with respect to t;
* randomized bi-Laplacian (1/(3r)) sum_k D^4 f[v_k]: the fourth directional
  derivative along each of the r directions v_k (N, d), all r in one call of f
  on the (N r, d) batch of points x + t v_k.

Differentiable with respect to f's parameters, x, and the weights sigma.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.core.validation import BatchFunction, check_output
from hoderiv_ext.engines.autograd.nested import (
    BatchRule,
    _vector_jacobian_products,
    hessian_rows_of_batch,
    jacobian_of_batch,
    reduce_rows,
)


def weighted_laplacian_of_batch(
    jacobian: Tensor, inputs: Tensor, directions: Tensor, *, create_graph: bool, batched: BatchRule
) -> Tensor:
    """sum_k sigma_k^T H_a sigma_k for every output a: (N, o). ``directions`` sigma (d, r) or (N, d, r)."""
    n, o, d = jacobian.shape
    sigma = directions if directions.dim() == 3 else directions.unsqueeze(0).expand(n, -1, -1)  # (N, d, r)
    r = sigma.shape[2]
    per_direction = sigma.permute(2, 0, 1)  # (r, N, d)
    select = torch.eye(o, dtype=jacobian.dtype, device=jacobian.device)  # output a's slot
    cotangents = select[:, None, None, :, None] * per_direction[None, :, :, None, :]  # (o, r, N, o, d)
    products = _vector_jacobian_products(
        jacobian, inputs, cotangents.reshape(o * r, n, o, d), create_graph=create_graph, batched=batched
    )  # (o r, N, d): H_a sigma_k
    quadratic = (products.reshape(o, r, n, d) * per_direction.unsqueeze(0)).sum(-1)  # (o, r, N)
    return quadratic.sum(1).t()


def _laplacian_of(
    outputs: Tensor, inputs: Tensor, request: HessianRequest, *, create_graph: bool, batched: BatchRule
) -> Tensor:
    """The (partial) Laplacian (N, o) of ``outputs`` (N, o) with respect to ``inputs``, keeping a graph if asked."""
    d = inputs.shape[1]
    jacobian = jacobian_of_batch(outputs, inputs, create_graph=True, batched=batched)
    rows = request.dims if request.dims is not None else tuple(range(d))
    rows_tensor = hessian_rows_of_batch(jacobian, inputs, rows, create_graph=create_graph, batched=batched)
    return reduce_rows(rows_tensor, HessianRequest("laplacian", dims=request.dims))


def directional_coefficients(f: BatchFunction, x: Tensor, v: Tensor, order: int, *, create_graph: bool) -> Tensor:
    """d^k/dt^k f(x + t v) at t = 0 for k = 0..order: (N, o, order + 1). ``v`` (d,) or (N, d)."""
    n = x.shape[0]
    with torch.enable_grad():
        t = torch.zeros((n, 1), dtype=x.dtype, device=x.device, requires_grad=True)
        current = check_output(f(x + t * v), n, like=x)  # (N, o)
        o = current.shape[1]
        orders = [current]
        for k in range(order):
            keep = create_graph or k + 1 < order
            columns = []
            for a in range(o):
                if not current.requires_grad:
                    columns.append(torch.zeros_like(t))
                    continue
                (column,) = torch.autograd.grad(current[:, a].sum(), t, create_graph=keep, retain_graph=True,
                                                allow_unused=True, materialize_grads=True)
                columns.append(column)
            current = torch.cat(columns, dim=1)
            orders.append(current)
    return torch.stack(orders, dim=-1)


def operator_derivatives(
    f: BatchFunction, x: Tensor, request: HessianRequest, directions: Tensor | None, *, create_graph: bool,
    batched: BatchRule,
) -> Canonical:
    """Canonical (value (N, o), jacobian (N, o, d), second (N, o)) for a weighted Laplacian or a bi-Laplacian."""
    n, d = x.shape
    with torch.enable_grad():
        inputs = x if x.requires_grad else x.detach().requires_grad_(True)
        value = check_output(f(inputs), n, like=inputs)
        jacobian = jacobian_of_batch(value, inputs, create_graph=True, batched=batched)
        if request.kind == "laplacian":
            assert directions is not None
            second = weighted_laplacian_of_batch(jacobian, inputs, directions, create_graph=create_graph,
                                                 batched=batched)
        elif request.randomized:
            assert directions is not None
            second = _randomized_bilaplacian(f, inputs, directions, create_graph=create_graph)
        else:
            laplacian = _laplacian_of(value, inputs, request, create_graph=True, batched=batched)
            second = _laplacian_of(laplacian, inputs, request, create_graph=create_graph, batched=batched)
    if not create_graph:
        value, jacobian, second = value.detach(), jacobian.detach(), second.detach()
    return value, jacobian, second


def _randomized_bilaplacian(f: BatchFunction, x: Tensor, directions: Tensor, *, create_graph: bool) -> Tensor:
    """(1/(3r)) sum_k D^4 f[v_k] (N, o) for the directions v (N, d, r), in one call of f on N r points."""
    n, d, r = directions.shape
    points = x.unsqueeze(1).expand(n, r, d).reshape(n * r, d)
    along = directions.permute(0, 2, 1).reshape(n * r, d)
    fourth = directional_coefficients(f, points, along, 4, create_graph=create_graph)[..., 4]  # (N r, o)
    return fourth.reshape(n, r, -1).sum(1) / (3 * r)
