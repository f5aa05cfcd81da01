"""torch-jet (``pip install jet-for-pytorch``, imported as ``jet``) as an optional baseline.

torch-jet traces a function with make_fx and propagates Taylor jets through
the traced graph. The bench uses its collapsed 2-jet (the route behind
``jet.laplacian``) on the per-sample function point (d,) -> net(point[None])[0]
along the d unit directions: one pass gives the value (coefficient 0), the
gradient (coefficient 1, one entry per direction) and the Laplacian (the
collapsed coefficient 2), vmapped over the batch, the way
benchmarks/bench_operators.py runs it:

  jet          the vmapped jet function, eager
  jet-compile  the same function traced into one aten graph at the workload's
               input shape (``jet.capture_graph``, as torch-jet's docs advise
               for torch.compile), then torch.compile'd; run only when the
               compile baseline is on (--compile, or --full). The training step
               differentiates its output with respect to the parameters
               (constants of the graph that are the model's own Parameters)
               through the compiled graph's backward.

(torch.compile of the vmapped jet function itself captures no graph: dynamo
skips torch-jet's interpreter and runs it eagerly.)

For the operator workloads (hoderiv_bench.operators) the two methods run
torch-jet's own operators instead, vmapped over the batch as above:
``jet.laplacian(f, mock, weighting=(apply_sigma, r))`` for the weighted
Laplacian and ``jet.bilaplacian(f, mock)`` (:func:`jet_operator`). They return
the operator only; the value and the gradient the package returns with it are
added by one torch autograd pass (hoderiv_bench.operators.jet_outputs), as a
torch-jet user who needs them would.

Both are offered for the laplacian, training, weighted and bilaplacian
families only, and only when ``import jet`` succeeds; without torch-jet they
are absent from the report (not an error). torch-jet has rules for tanh, sin,
cos, exp, linear layers, cat and a few more, but not for SiLU/softplus/GELU or
slicing (the hardbc model's x[:, :1]); where tracing or a first call on one
sample fails, both methods are reported "not served" with torch-jet's message.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from hoderiv_bench.compile_once import CompiledOnFirstCall

JET_METHODS = ("jet", "jet-compile")
COMPILED_JET = "jet-compile"
JET_FAMILIES = ("laplacian", "training")
JET_OPERATOR_FAMILIES = ("weighted", "bilaplacian")  # torch-jet's own operators

_UNSET = object()
_MODULE: Any = _UNSET


def torch_jet() -> Any | None:
    """The ``jet`` module, or None when torch-jet is not installed or does not import (cached)."""
    global _MODULE
    if _MODULE is _UNSET:
        try:
            import jet  # noqa: PLC0415 - an optional baseline

            _MODULE = jet if callable(getattr(jet, "jet", None)) else None
        except Exception:  # noqa: BLE001 - absent, or not importable on this Python/torch
            _MODULE = None
    return _MODULE


def jet_value_gradient_laplacian(net: nn.Module, d: int, dtype: torch.dtype,
                                 device: torch.device) -> Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]:
    """A vmapped x (N, d) -> (value (N, 1), gradient (N, d, 1), Laplacian (N, 1)) by torch-jet's collapsed 2-jet.

    Raises whatever torch-jet raises when it cannot trace ``net``.
    """
    jet = torch_jet()
    if jet is None:
        raise RuntimeError("torch-jet is not installed")

    def single(point: Tensor) -> Tensor:
        return net(point.unsqueeze(0)).squeeze(0)

    jet_f = jet.jet(single, (torch.zeros(d, dtype=dtype, device=device),), collapsed=True)
    directions = torch.eye(d, dtype=dtype, device=device)

    def per_sample(point: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        value, gradient, laplacian = jet_f((point, directions, torch.zeros_like(point)))
        return value, gradient, laplacian

    return torch.func.vmap(per_sample)


def as_result(batched: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The bench's (value (N,), gradient (N, d), Laplacian (N,)) from the vmapped jet function."""
    value, gradient, laplacian = batched(x)
    return value.squeeze(-1), gradient.squeeze(-1), laplacian.squeeze(-1)


def compiled_jet(fn: Callable[..., Any], device: torch.device) -> CompiledOnFirstCall:
    """torch.compile of ``fn`` traced by ``jet.capture_graph`` at the first call's arguments, built on that
    call (the compile time reported includes the tracing)."""
    return CompiledOnFirstCall(fn, device, lambda f, args: torch.compile(torch_jet().capture_graph(f, args)[0]))


def jet_operator(net: nn.Module, family: str, d: int, dtype: torch.dtype, device: torch.device,
                 sigma: Tensor | None = None) -> Callable[[Tensor], Tensor]:
    """torch-jet's weighted Laplacian tr(sigma sigma^T H) (``family == "weighted"``, sigma (d, r)) or
    bi-Laplacian (``"bilaplacian"``) of the per-sample ``net``, vmapped: x (N, d) -> (N, 1).

    Raises whatever torch-jet raises when it cannot trace ``net``.
    """
    jet = torch_jet()
    if jet is None:
        raise RuntimeError("torch-jet is not installed")
    mock = (torch.zeros(d, dtype=dtype, device=device),)
    if family == "weighted":
        if sigma is None:
            raise ValueError("the weighted Laplacian needs sigma")

        def apply_sigma(point: Tensor, v: Tensor) -> Tensor:
            return (v @ sigma.T).reshape(v.shape[0], *point.shape)

        per_sample = jet.laplacian(net, mock, weighting=(apply_sigma, sigma.shape[1]))
    elif family == "bilaplacian":
        per_sample = jet.bilaplacian(net, mock)
    else:
        raise ValueError(f"torch-jet has no operator for the {family} family; it has {JET_OPERATOR_FAMILIES}")
    return torch.func.vmap(per_sample)


def jet_methods(net: nn.Module, x: Tensor, run: Callable[[Callable[[Tensor], Any]], Any],
                build: Callable[[], Callable[[Tensor], Any]] | None = None,
                finish: Callable[[Callable[[Tensor], Any], Tensor], Any] = as_result
                ) -> tuple[dict[str, Callable[[], Any]], dict[str, str], dict[str, CompiledOnFirstCall]]:
    """The jet methods for one workload, or their not-served reasons; {} and {} without torch-jet.

    ``build()`` makes the batched jet function (default: x -> (value, gradient, Laplacian) by the
    collapsed 2-jet, :func:`jet_value_gradient_laplacian`), ``finish(batched, points)`` turns its
    output into the bench's tensors (default :func:`as_result`), and ``run(jet_of)`` turns
    ``jet_of = lambda points: finish(batched, points)`` into the workload's computation (the
    derivatives themselves, or the training step on them). Returns (methods, not_served,
    {"jet-compile": its compiled wrapper}, whose compile_seconds the runner reports).
    """
    if torch_jet() is None:
        return {}, {}, {}
    if build is None:
        def build() -> Callable[[Tensor], Any]:
            return jet_value_gradient_laplacian(net, x.shape[1], x.dtype, x.device)
    try:
        batched = build()
        with torch.no_grad():
            finish(batched, x[:1])  # a first call on one sample: torch-jet fails here on missing rules
    except Exception as error:  # noqa: BLE001 - any failure to trace or run means torch-jet cannot serve it
        text = " ".join(str(error).split("\n\n")[0].split()) or type(error).__name__
        reason = f"torch-jet cannot run this model: {type(error).__name__}: {text[:200]}"
        return {}, {name: reason for name in JET_METHODS}, {}
    compiled = compiled_jet(batched, x.device)
    methods = {
        "jet": lambda: run(lambda points: finish(batched, points)),
        COMPILED_JET: lambda: run(lambda points: finish(compiled, points)),
    }
    return methods, {}, {COMPILED_JET: compiled}
