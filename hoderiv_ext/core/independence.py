"""The sample-independence rule, and the checks that enforce it.

The rule
--------
Per-sample derivatives are only defined when ``f`` computes output row ``n``
from input row ``n`` alone: ``f(x)[n] == f(x[n:n+1])[0]`` for every batch.
Both engines rely on it (the autograd engine differentiates ``sum_n f(x)[n]``
and reads sample n's derivatives off its gradient), so an ``f`` that mixes
samples would get derivatives of the wrong function, without any error. Typical
culprits:

* a reduction over the batch: ``torch.sum(x**3)`` instead of
  ``x.pow(3).sum(-1, keepdim=True)``, ``x - x.mean(0)``;
* ``nn.BatchNorm*`` in training mode (or with ``track_running_stats=False``),
  which normalises with batch statistics;
* attention or message passing across the batch axis.

The checks
----------
1. Static: every ``nn.Module`` reachable from ``f`` (``f`` itself, a bound
   method's owner, closure variables, globals the function body names, the
   arguments of a ``functools.partial``, a few levels deep) is searched for
   batch-norm layers that use batch statistics: a ``ValueError`` names the layer.
2. Probe, for ``N >= 2``, after the engine has evaluated ``f(x)`` on the whole
   batch: ``f`` is called on two other batches, the even samples and the odd
   samples of ``x``, each in reverse order, and every row is compared with
   the same sample's row of ``f(x)``; a difference beyond a dtype-aware
   tolerance (``sqrt(eps)`` relative to ``max(1, |f|)``) raises a
   ``ValueError`` naming the sample. Every sample is thus evaluated once more
   in a batch of half the size with other neighbours, so a statistic of the
   batch (a mean, a norm), attention across samples or a dependence on a
   neighbouring row changes its row and shows. The probe costs one forward
   pass over the N samples in two calls, without a graph (grad mode is turned
   on only for an ``f`` that fails without it) and without advancing the RNG. It
   is skipped when a reachable module is random in training mode (dropout,
   RReLU), since two calls would differ anyway, and for an ``nn.Sequential``
   of exactly the layers the Taylor engine serves (Linear, supported
   activations, no-ops; no hooks: :func:`hoderiv_ext.engines.taylor.plan.build_plan`), which act
   on each sample alone -- whichever engine serves the call.

Limits: the probe sees only mixing that changes some row by more than the
tolerance when the batch is regrouped; a dependence on the batch that the
two half-batches reproduce exactly (a statistic invariant to that
regrouping) escapes it. Modules hidden where the search does
not look (deep inside other objects) escape the static check;
``F.dropout(..., training=True)`` inside a plain function makes the probe
fail spuriously -- pass ``check_independence=False`` in that case.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from hoderiv_ext.core.validation import BatchFunction, check_output, probe_call

_SEARCH_DEPTH = 3


def _referenced_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _referenced_names(constant)


def _children(obj: object) -> list[object]:
    """Objects reachable from ``obj`` that may hold modules (``obj`` not a module)."""
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, types.MethodType):
        return [obj.__self__, obj.__func__]
    if isinstance(obj, types.FunctionType):
        found: list[object] = [cell.cell_contents for cell in (obj.__closure__ or ()) if _cell_is_set(cell)]
        found.extend(obj.__defaults__ or ())
        found.extend(obj.__globals__[name] for name in set(_referenced_names(obj.__code__)) if name in obj.__globals__)
        return found
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, (types.ModuleType, type, str, bytes, int, float, complex, Tensor)):
        return []
    attributes = getattr(obj, "__dict__", None)  # an object holding modules as attributes
    return list(attributes.values()) if isinstance(attributes, dict) else []


def _cell_is_set(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell (variable not yet assigned)
        return False
    return True


def reachable_modules(f: object, depth: int = _SEARCH_DEPTH) -> list[nn.Module]:
    """The ``nn.Module`` objects ``f`` can reach (see the module docstring), outermost first."""
    modules: list[nn.Module] = []
    seen: set[int] = set()
    frontier: list[object] = [f]
    for _ in range(depth + 1):
        next_frontier: list[object] = []
        for obj in frontier:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, nn.Module):
                modules.append(obj)
            else:
                next_frontier.extend(_children(obj))
        frontier = next_frontier
    return modules


def uses_batch_statistics(module: nn.Module) -> bool:
    """True for a batch-norm layer that normalises with the statistics of the current batch."""
    if not isinstance(module, _BatchNorm):
        return False
    return module.training or (module.running_mean is None and module.running_var is None)


def is_random_in_training(module: nn.Module) -> bool:
    """True for dropout-like layers that draw random numbers in training mode."""
    if isinstance(module, _DropoutNd):
        return module.training and module.p > 0
    return isinstance(module, nn.RReLU) and module.training


def check_no_batch_statistics(modules: list[nn.Module]) -> None:
    """Raise ``ValueError`` naming the first batch-norm layer that uses batch statistics."""
    for root in modules:
        for name, module in root.named_modules():
            if uses_batch_statistics(module):
                kind = type(module).__name__
                where = f"the layer {name!r} ({kind}) of {type(root).__name__}" if name else kind
                raise ValueError(
                    f"f contains {where}, which normalises with batch statistics "
                    "(training mode or track_running_stats=False): every output then depends on every sample, "
                    "so per-sample derivatives would be wrong. Call .eval() on the module first (it then uses "
                    "its running statistics), or pass check_independence=False to differentiate the batch "
                    "function as it is."
                )


def mixing_tolerance(dtype: torch.dtype, device: torch.device) -> float:
    """Relative tolerance for "the same number computed in a batch of 1 and of 2"."""
    tolerance = torch.finfo(dtype).eps ** 0.5
    if device.type == "cuda" and dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        tolerance = max(tolerance, 5e-3)  # TF32 matmuls keep ~10 mantissa bits
    return tolerance


def _max_difference(a: Tensor, b: Tensor) -> float:
    same = (a == b) | (a.isnan() & b.isnan())
    difference = torch.where(same, torch.zeros_like(a), (a - b).abs())
    return float("inf") if bool(difference.isnan().any()) else float(difference.max())


def _regrouped(n: int, device: torch.device) -> list[Tensor]:
    """The two half-batches of the probe: the even and the odd sample indices, each in reverse order."""
    return [torch.arange(parity, n, 2, device=device).flip(0) for parity in (0, 1)]


def probe_independence(f: BatchFunction, x: Tensor, batch_value: Tensor) -> None:
    """Compare every row of ``f(x)`` with ``f`` on two other batches; raise ``ValueError`` on a mismatch.

    The other batches are the even and the odd samples of ``x``, each in
    reverse order: every sample is evaluated once more, next to other
    neighbours, in a batch of half the size (see the module docstring).

    Args:
        f: the batched function.
        x: the canonical batch (N, d), N >= 2 (smaller batches are not probed).
        batch_value: ``f(x)`` as the engine computed it, canonical (N, o).
    """
    n = x.shape[0]
    if n < 2:
        return
    batch = batch_value.detach()
    scale = max(1.0, float(batch.abs().nan_to_num(0.0, 0.0, 0.0).max()))  # largest finite |f|
    limit = mixing_tolerance(x.dtype, x.device) * scale
    for index in _regrouped(n, x.device):
        call = "f(x[even or odd rows, reversed])"
        alone = check_output(probe_call(f, x.index_select(0, index)), index.shape[0], like=x, call=call)
        if alone.shape[1] != batch.shape[1]:
            raise ValueError(
                "f mixes samples: its number of outputs per sample changes with the batch size "
                f"({batch.shape[1]} for {n} samples, {alone.shape[1]} for {index.shape[0]})."
            )
        expected = batch.index_select(0, index)
        if bool(torch.isclose(expected, alone, rtol=0.0, atol=limit, equal_nan=True).all()):
            continue
        differences = torch.stack([torch.tensor(_max_difference(a, b)) for a, b in zip(expected, alone)])
        worst = int(differences.argmax())
        sample = int(index[worst])
        raise ValueError(
            f"f mixes samples: its output for sample {sample} changes when the other samples in the batch change "
            f"(it differs by {float(differences[worst]):.3g} between f(x) and f on half of the batch; tolerance "
            f"{limit:.3g}). Per-sample derivatives need each output row to be computed from its own input row "
            "alone. A reduction over the batch breaks that: write x.pow(3).sum(-1, keepdim=True) instead of "
            "torch.sum(x**3); batch normalisation in training mode and attention across the batch break it too. "
            "If f is random (dropout inside a plain function), make it deterministic or pass "
            "check_independence=False."
        )


def static_independence_check(f: BatchFunction, checked_modules: Sequence[nn.Module] | None = None) -> bool:
    """Check 1 of the module docstring; returns whether the probe (check 2) is meaningful for ``f``.

    Raises ``ValueError`` for a batch-norm layer using batch statistics; returns
    False when a reachable module is random in training mode. ``checked_modules``:
    the modules reachable from f, already walked and checked for batch statistics
    (by the engine selection), so neither is done again.
    """
    modules = list(checked_modules) if checked_modules is not None else reachable_modules(f)
    if checked_modules is None:
        check_no_batch_statistics(modules)
    return not any(is_random_in_training(m) for root in modules for m in root.modules())
