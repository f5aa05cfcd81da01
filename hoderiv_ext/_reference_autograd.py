"""The plain-autograd mechanism of the reference engine.

For a batch x (N, d) and y = f(x) (N, o), with samples independent:

* Jacobian: ``J[:, a, :] = d/dx sum_n y[n, a]`` -- one backward pass per output
  a (one in total for a scalar f), not per sample.
* Hessian row r of output a: ``H[:, a, r, :] = d/dx sum_n J[n, a, r]`` -- one
  backward pass of the backward graph per requested (output, row) pair; full,
  diagonal and Laplacian need every row.

The passes over outputs / rows are run as one batched backward
(``torch.autograd.grad(..., is_grads_batched=True)``, a vmap over the
cotangents) when ``batched=True``; if that fails for some operation in ``f``,
they are run one after the other (``batched=False`` always does that). Either
way there is no loop over samples. This mechanism works for every ``f``
autograd can differentiate, including modules torch.func cannot transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hoderiv_ext._validation import BatchFunction, check_output
from hoderiv_ext.requests import HessianRequest

Canonical = tuple[Tensor, Tensor, "Tensor | None"]


def _vector_jacobian_products(
    outputs: Tensor, inputs: Tensor, cotangents: Tensor, *, create_graph: bool, batched: bool
) -> Tensor:
    """``cotangents[b] . d outputs / d inputs`` for every b, shape ``(B, *inputs.shape)``.

    ``cotangents`` has shape ``(B, *outputs.shape)``. Outputs that do not
    depend on ``inputs`` give zeros.
    """
    count = cotangents.shape[0]
    zeros = torch.zeros((count, *inputs.shape), dtype=inputs.dtype, device=inputs.device)
    if not outputs.requires_grad:
        return zeros
    options = dict(retain_graph=True, create_graph=create_graph, allow_unused=True)
    if batched and count > 1:
        try:
            (products,) = torch.autograd.grad(outputs, inputs, cotangents, is_grads_batched=True, **options)
            return zeros if products is None else products  # None: outputs do not depend on inputs
        except RuntimeError:
            pass  # an operation without a batching rule: one pass per cotangent below
    products = [torch.autograd.grad(outputs, inputs, cotangent, **options)[0] for cotangent in cotangents]
    return zeros if products[0] is None else torch.stack(products)


def jacobian_of_batch(y: Tensor, inputs: Tensor, *, create_graph: bool, batched: bool) -> Tensor:
    """Per-sample Jacobian ``(N, o, d)`` of ``y = f(inputs)`` (N, o) by one backward pass per output."""
    n, o = y.shape
    one_hot_outputs = torch.eye(o, dtype=y.dtype, device=y.device).unsqueeze(1).expand(o, n, o)
    products = _vector_jacobian_products(y, inputs, one_hot_outputs, create_graph=create_graph, batched=batched)
    return products.permute(1, 0, 2)  # (o, N, d) -> (N, o, d)


def hessian_rows_of_batch(
    jacobian: Tensor, inputs: Tensor, rows: Sequence[int], *, create_graph: bool, batched: bool
) -> Tensor:
    """Rows ``H[:, a, r, :]`` for every output a and r in ``rows``: shape ``(N, o, k, d)``.

    ``jacobian`` (N, o, d) must carry the graph of its computation
    (``create_graph=True`` when it was made).
    """
    n, o, d = jacobian.shape
    k = len(rows)
    selector = torch.zeros((o, k, o, d), dtype=jacobian.dtype, device=jacobian.device)
    output_index = torch.arange(o, device=jacobian.device)[:, None].expand(o, k)
    row_position = torch.arange(k, device=jacobian.device)[None, :].expand(o, k)
    row_index = torch.as_tensor(list(rows), device=jacobian.device)[None, :].expand(o, k)
    selector[output_index, row_position, output_index, row_index] = 1
    cotangents = selector.reshape(o * k, 1, o, d).expand(o * k, n, o, d)
    products = _vector_jacobian_products(jacobian, inputs, cotangents, create_graph=create_graph, batched=batched)
    return products.reshape(o, k, n, d).permute(2, 0, 1, 3)


def reduce_rows(rows_tensor: Tensor, request: HessianRequest) -> Tensor | None:
    """Turn the needed rows ``(N, o, k, d)`` into the canonical tensor for ``request``."""
    if request.kind == "none":
        return None
    if request.kind in ("full", "rows"):
        return rows_tensor
    diagonal = rows_tensor.diagonal(dim1=2, dim2=3)  # rows are 0..d-1 here
    return diagonal if request.kind == "diagonal" else diagonal.sum(-1)


def autograd_derivatives(
    f: BatchFunction, x: Tensor, request: HessianRequest, *, create_graph: bool, batched: bool = True
) -> Canonical:
    """Canonical ``(value (N, o), jacobian (N, o, d), second)`` by nested ``torch.autograd.grad``."""
    n, d = x.shape
    rows = request.hessian_rows_needed(d)
    with torch.enable_grad():
        inputs = x if x.requires_grad else x.detach().requires_grad_(True)
        value = check_output(f(inputs), n)
        jacobian = jacobian_of_batch(value, inputs, create_graph=create_graph or bool(rows), batched=batched)
        second = None
        if rows:
            rows_tensor = hessian_rows_of_batch(jacobian, inputs, rows, create_graph=create_graph, batched=batched)
            second = reduce_rows(rows_tensor, request)
    if not create_graph:
        value, jacobian = value.detach(), jacobian.detach()
        second = None if second is None else second.detach()
    return value, jacobian, second
