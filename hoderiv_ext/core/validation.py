"""Checking ``x`` and ``f``'s output, and reading ``x`` into the canonical ``(N, d)`` batch.

Accepted ``x`` (a floating-point tensor):

* ``(N, d)``: N samples of d inputs;
* ``(d,)``: one point of R^d (results drop the N axis);
* ``(N,)``: N scalar inputs of a map with one input, d = 1 (results drop
  the d axes);
* ``()``: one scalar input (results drop both).

A 1-D ``x`` of length L is read as L scalar inputs when ``f`` takes one input
(a 1-1 or 1-o map) and as one point of R^L otherwise. The rule that decides:
``f`` is called on the first (up to) two entries as a column,
``x[:2].reshape(-1, 1)``; if that call succeeds and returns one row per entry
(shape ``(m,)`` or ``(m, o)``), x holds scalar inputs, else it is a point.
Functions that accept any width (``torch.sin``, ``lambda x: x**3``) therefore
read a 1-D x as scalar inputs; pass ``x[None]`` (shape ``(1, L)``) to mean one
point of such a function, or ``x[:, None]`` to force scalar inputs while
keeping the d axes.

Accepted outputs: ``f`` called on ``(N, d)`` returns a floating-point tensor of
shape ``(N,)``, ``(N, 1)`` or ``(N, o)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

BatchFunction = Callable[[Tensor], Tensor]


def inference_mode_enabled() -> bool:
    """``torch.is_inference_mode_enabled()``, False while torch.compile traces (dynamo cannot ask; a
    compiled graph does not run in inference mode)."""
    return not torch.compiler.is_compiling() and torch.is_inference_mode_enabled()


def check_create_graph(create_graph: object) -> bool:
    """``create_graph``: True, False, or None for ``torch.is_grad_enabled()``."""
    if create_graph is None:
        return torch.is_grad_enabled()
    if not isinstance(create_graph, bool):
        raise TypeError(f"create_graph must be True, False or None, got {create_graph!r}")
    if create_graph and inference_mode_enabled():
        raise ValueError(
            "create_graph=True inside torch.inference_mode(): no autograd graph can be built there. "
            "Leave inference mode (use torch.no_grad() for results without a graph) or pass create_graph=False."
        )
    return create_graph


def check_order(order: object) -> int:
    """A derivative order: an int >= 0 (not a bool)."""
    if isinstance(order, bool) or not isinstance(order, int):
        raise TypeError(f"order must be an int, got {type(order).__name__}")
    if order < 0:
        raise ValueError(f"order must be non-negative, got {order}")
    return order


def check_callable(f: object) -> BatchFunction:
    if not callable(f):
        raise TypeError(f"f must be callable (a function or an nn.Module), got {type(f).__name__}")
    return f  # type: ignore[return-value]


def check_x(x: object, *, max_dim: int = 2) -> Tensor:
    """``x`` must be a real floating-point tensor with at most ``max_dim`` axes."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point tensor (derivatives need a real dtype such as float32 or float64), "
            f"got dtype {x.dtype}; convert with x.float() or x.double()"
        )
    if x.dim() > max_dim:
        allowed = "(N, d), (d,), (N,) or a 0-d scalar" if max_dim == 2 else f"at most {max_dim} axes"
        raise ValueError(f"x must have shape {allowed}, got shape {tuple(x.shape)}")
    return x


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a probe call of ``f`` without advancing the random number generators."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def check_output(y: object, n: int, *, like: Tensor | None = None, call: str = "f(x)") -> Tensor:
    """Check ``f``'s output for a batch of ``n`` samples and return it as ``(n, o)``.

    ``like``: the input ``f`` was called on; the output must have its dtype
    and device (derivatives are computed in x's dtype: an f that returns
    another dtype, or another device, would give mixed results).

    Raises:
        TypeError: not a tensor, not floating point, or another dtype than x.
        ValueError: a shape other than ``(n,)``, ``(n, 1)`` or ``(n, o)``, or another device than x.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"f must return a torch.Tensor, but {call} returned {type(y).__name__}")
    if not y.is_floating_point():
        raise TypeError(f"f must return a floating-point tensor, but {call} returned dtype {y.dtype}")
    if like is not None and y.dtype != like.dtype:
        raise TypeError(
            f"f must return x's dtype {like.dtype}, but {call} returned {y.dtype}: derivatives are computed in "
            f"x's dtype. Convert f's parameters (net.to({like.dtype})) or pass x.to({y.dtype})."
        )
    if like is not None and y.device != like.device:
        raise ValueError(
            f"f must return a tensor on x's device {like.device}, but {call} returned one on {y.device}: "
            "move f's parameters and x to one device."
        )
    if y.dim() not in (1, 2) or y.shape[0] != n:
        raise ValueError(
            f"f must map a batch x of shape (N, d) to (N,), (N, 1) or (N, o) with the same N; "
            f"{call} with N = {n} returned shape {tuple(y.shape)}. "
            "If f reduces over the batch (torch.sum(x**3)), reduce over the last axis instead "
            "(x.pow(3).sum(-1, keepdim=True))."
        )
    if y.dim() == 2 and y.shape[1] == 0:
        raise ValueError(f"f must return at least one output per sample, but {call} returned shape {tuple(y.shape)}")
    return y if y.dim() == 2 else y.unsqueeze(1)


def probe_call(f: BatchFunction, x: Tensor) -> object:
    """Call ``f`` on a detached copy of ``x`` without keeping a graph, and without advancing the RNG.

    The call runs under ``torch.no_grad()`` (cheaper); an ``f`` that
    differentiates internally fails there with a RuntimeError and is called
    again with grad mode on, as the engines call it.
    """
    with preserved_rng(x.device):
        try:
            with torch.no_grad():
                y = f(x.detach())
        except RuntimeError:
            with torch.enable_grad():
                y = f(x.detach())
    return y.detach() if isinstance(y, Tensor) else y


def _takes_a_column(f: BatchFunction, column: Tensor) -> bool:
    """Whether ``f`` maps the (m, 1) batch ``column`` to (m,) or (m, o)."""
    try:
        y = probe_call(f, column)
    except Exception:  # noqa: BLE001 - any failure means "f does not take scalar inputs"
        return False
    return isinstance(y, Tensor) and y.dim() in (1, 2) and y.shape[0] == column.shape[0]


def canonical_input(f: BatchFunction, x: Tensor) -> tuple[Tensor, bool, bool]:
    """Read ``x`` as an ``(N, d)`` batch (see the module docstring).

    Returns:
        ``(x2d, has_batch_axis, has_input_axis)``; ``x2d`` is a reshape of
        ``x`` (it keeps x's autograd history).
    """
    if x.dim() == 2:
        if x.shape[1] == 0:
            raise ValueError(f"x must have at least one input coordinate, got shape {tuple(x.shape)}")
        return x, True, True
    if x.dim() == 0:
        return x.reshape(1, 1), False, False
    length = x.shape[0]
    if length == 0:
        return x.reshape(0, 1), True, False
    if _takes_a_column(f, x[:2].reshape(-1, 1)):
        return x.reshape(length, 1), True, False
    return x.reshape(1, length), False, True


def output_width(f: BatchFunction, x: Tensor) -> int:
    """Learn the number of outputs o by calling ``f`` on the first (up to) two samples.

    For an empty batch, ``f`` is called on one all-zero sample ``(1, d)``
    instead (the only way to learn ``o`` without an output to look at).
    """
    sample = x[:2] if x.shape[0] > 0 else torch.zeros((1, x.shape[1]), dtype=x.dtype, device=x.device)
    call = "f(x[:2])" if x.shape[0] > 0 else "f(zeros(1, d)) (called to learn o for an empty batch)"
    return check_output(probe_call(f, sample), sample.shape[0], like=sample, call=call).shape[1]
