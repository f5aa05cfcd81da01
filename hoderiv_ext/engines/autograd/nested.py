"""The nested-autograd mechanism of the autograd engine.

For a batch x (N, d) and y = f(x) (N, o), with samples independent:

* Jacobian: ``J[:, a, :] = d/dx sum_n y[n, a]`` -- one backward pass per output
  a (one in total for a scalar f), not per sample.
* Hessian row r of output a: ``H[:, a, r, :] = d/dx sum_n J[n, a, r]`` -- one
  backward pass of the backward graph per requested (output, row) pair; full,
  diagonal and Laplacian need every row.

The passes over outputs / rows are run as one batched backward
(``torch.autograd.grad(..., is_grads_batched=True)``, a vmap over the
cotangents) when ``batched=True``; if that fails for some operation in ``f``,
they are run one after the other (``batched=False`` always does that;
``batched`` may also be a rule ``passes -> bool`` applied to each group of
passes). Either way there is no loop over samples. This mechanism works for every ``f``
autograd can differentiate, including modules torch.func cannot transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.core.validation import BatchFunction, check_output


BatchRule = Union[bool, Callable[[int], bool]]


def _vector_jacobian_products(
    outputs: Tensor, inputs: Tensor, cotangents: Tensor, *, create_graph: bool, batched: BatchRule
) -> Tensor:
    """``cotangents[b] . d outputs / d inputs`` for every b, shape ``(B, *inputs.shape)``.

    ``cotangents`` has shape ``(B, *outputs.shape)``. ``batched``: run the B
    passes as one batched pass (True), one after the other (False), or ask
    ``batched(B)``. Outputs that do not depend on ``inputs`` give zeros.
    """
    count = cotangents.shape[0]
    if callable(batched):
        batched = batched(count)

    def zeros() -> Tensor:  # outputs that do not depend on inputs
        return torch.zeros((count, *inputs.shape), dtype=inputs.dtype, device=inputs.device)

    if not outputs.requires_grad:
        return zeros()
    options = dict(retain_graph=True, create_graph=create_graph, allow_unused=True)
    if batched and count > 1:
        try:
            (products,) = torch.autograd.grad(outputs, inputs, cotangents, is_grads_batched=True, **options)
            return zeros() if products is None else products
        except RuntimeError:
            pass  # an operation without a batching rule: one pass per cotangent below
    rows = [torch.autograd.grad(outputs, inputs, cotangent, **options)[0] for cotangent in cotangents]
    if rows[0] is None:
        return zeros()
    return rows[0].unsqueeze(0) if count == 1 else torch.stack(rows)


def _selector(o: int, rows: tuple[int, ...], d: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """One-hot cotangents (o * k, 1, o, d): entry (a * k + m) picks output a, input ``rows[m]``.

    Made at every call: a cached tensor would carry the mode it was made in
    (inference, fake) into later calls.
    """
    k = len(rows)
    selector = torch.zeros((o * k, o * d), dtype=dtype)
    flat_positions = [(a * k + m, a * d + r) for a in range(o) for m, r in enumerate(rows)]
    selector[[p for p, _ in flat_positions], [c for _, c in flat_positions]] = 1
    return selector.reshape(o * k, 1, o, d).to(device)


def jacobian_of_batch(y: Tensor, inputs: Tensor, *, create_graph: bool, batched: BatchRule) -> Tensor:
    """Per-sample Jacobian ``(N, o, d)`` of ``y = f(inputs)`` (N, o) by one backward pass per output."""
    n, o = y.shape
    one_hot_outputs = _selector(o, (0,), 1, y.dtype, y.device).reshape(o, 1, o).expand(o, n, o)
    products = _vector_jacobian_products(y, inputs, one_hot_outputs, create_graph=create_graph, batched=batched)
    return products.permute(1, 0, 2)  # (o, N, d) -> (N, o, d)


def hessian_rows_of_batch(
    jacobian: Tensor, inputs: Tensor, rows: Sequence[int], *, create_graph: bool, batched: BatchRule
) -> Tensor:
    """Rows ``H[:, a, r, :]`` for every output a and r in ``rows``: shape ``(N, o, k, d)``.

    ``jacobian`` (N, o, d) must carry the graph of its computation
    (``create_graph=True`` when it was made).
    """
    n, o, d = jacobian.shape
    k = len(rows)
    cotangents = _selector(o, tuple(rows), d, jacobian.dtype, jacobian.device).expand(o * k, n, o, d)
    products = _vector_jacobian_products(jacobian, inputs, cotangents, create_graph=create_graph, batched=batched)
    return products.reshape(o, k, n, d).permute(2, 0, 1, 3)


def reduce_rows(rows_tensor: Tensor, request: HessianRequest) -> Tensor | None:
    """Turn the needed rows ``(N, o, k, d)`` into the canonical tensor for ``request``."""
    if request.kind == "none":
        return None
    if request.kind in ("full", "rows"):
        return rows_tensor
    rows = request.hessian_rows_needed(rows_tensor.shape[3])  # row m of rows_tensor is H[rows[m], :]
    diagonal = torch.stack([rows_tensor[:, :, m, r] for m, r in enumerate(rows)], dim=-1)  # (N, o, k)
    return diagonal if request.kind == "diagonal" else diagonal.sum(-1)


def nested_derivatives(
    f: BatchFunction, x: Tensor, request: HessianRequest, *, create_graph: bool, batched: BatchRule = True
) -> Canonical:
    """Canonical ``(value (N, o), jacobian (N, o, d), second)`` by nested ``torch.autograd.grad``."""
    n, d = x.shape
    rows = request.hessian_rows_needed(d)
    with torch.enable_grad():
        inputs = x if x.requires_grad else x.detach().requires_grad_(True)
        value = check_output(f(inputs), n, like=inputs)
        jacobian = jacobian_of_batch(value, inputs, create_graph=create_graph or bool(rows), batched=batched)
        second = None
        if rows:
            rows_tensor = hessian_rows_of_batch(jacobian, inputs, rows, create_graph=create_graph, batched=batched)
            second = reduce_rows(rows_tensor, request)
    if not create_graph:
        value, jacobian = value.detach(), jacobian.detach()
        second = None if second is None else second.detach()
    return value, jacobian, second
