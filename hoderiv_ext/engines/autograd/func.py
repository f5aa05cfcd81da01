"""The torch.func mechanism of the autograd engine.

Each sample is a batch of one: ``g(x_n) = f(x_n[None])[0]`` maps R^d to R^o,
and ``torch.func.vmap`` runs the per-sample program over the N samples.

* value and Jacobian: ``jacrev(g)`` (reverse mode, o vector-Jacobian products);
* Hessian row r of every output: forward-over-reverse,
  ``jvp(jacrev(g), (x_n,), (e_r,))`` = ``d/de J(x_n + e e_r)`` = ``H[:, r, :]``,
  vmapped over the selected unit vectors ``e_r`` -- k rows cost k
  Hessian-vector products; full, diagonal and Laplacian use all d (the full
  case is ``jacfwd(jacrev(g))``).

Gradients with respect to parameters ``f`` captures flow through the
transforms by ordinary autograd; under ``create_graph=False`` everything runs
in ``torch.no_grad()`` (the transforms still differentiate with respect to x)
and no graph is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jacrev, jvp, vmap

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.core.validation import BatchFunction
from hoderiv_ext.engines.autograd.nested import reduce_rows


def _per_sample(f: BatchFunction) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """``x_n (d,) -> (g(x_n), g(x_n))``: the value twice, once to differentiate and once as aux."""

    def value_twice(sample: Tensor) -> tuple[Tensor, Tensor]:
        y = f(sample.unsqueeze(0))
        if not isinstance(y, Tensor):
            raise TypeError(f"f must return a torch.Tensor, got {type(y).__name__}")
        if not y.is_floating_point():
            raise TypeError(f"f must return a floating-point tensor, got dtype {y.dtype}")
        if y.dtype != sample.dtype or y.device != sample.device:
            raise TypeError(
                f"f must return x's dtype and device ({sample.dtype}, {sample.device}), got ({y.dtype}, {y.device})"
            )
        if y.dim() not in (1, 2) or y.shape[0] != 1 or y.numel() == 0:
            raise ValueError(
                "f must map a batch of shape (N, d) to (N,), (N, 1) or (N, o); "
                f"for one sample (1, d) it returned shape {tuple(y.shape)}"
            )
        y = y.reshape(-1)
        return y, y

    return value_twice


def func_derivatives(f: BatchFunction, x: Tensor, request: HessianRequest, *, create_graph: bool) -> Canonical:
    """Canonical ``(value (N, o), jacobian (N, o, d), second)`` by torch.func transforms."""
    n, d = x.shape
    rows = request.hessian_rows_needed(d)
    jacobian_and_value = jacrev(_per_sample(f), has_aux=True)  # x_n -> (J (o, d), g (o,))

    if not rows:

        def per_sample(sample: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            jacobian, value = jacobian_and_value(sample)
            return value, jacobian, jacobian  # the third output is a placeholder

    else:
        unit_vectors = torch.eye(d, dtype=x.dtype, device=x.device)[list(rows)]  # (k, d)

        def per_sample(sample: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            def along(direction: Tensor) -> tuple[Tensor, Tensor, Tensor]:
                jacobian, row, value = jvp(jacobian_and_value, (sample,), (direction,), has_aux=True)
                return value, jacobian, row  # row (o, d) = H[:, r, :]

            value, jacobian, hessian_rows = vmap(along, randomness="same")(unit_vectors)
            return value[0], jacobian[0], hessian_rows.transpose(0, 1)  # (k, o, d) -> (o, k, d)

    def run() -> tuple[Tensor, Tensor, Tensor]:
        return vmap(per_sample, randomness="different")(x)

    if create_graph:
        value, jacobian, rows_tensor = run()
    else:
        with torch.no_grad():
            value, jacobian, rows_tensor = run()
        value, jacobian, rows_tensor = value.detach(), jacobian.detach(), rows_tensor.detach()
    second = reduce_rows(rows_tensor, request) if rows else None
    return value, jacobian, second
