"""Taylor-mode engine: value, input derivatives and second derivatives of an MLP in one forward pass.

Serves ``nn.Sequential`` networks of ``nn.Linear`` layers and the activations the
kernels know (see hoderiv_ext.functions), with ``nn.Identity``, ``nn.Flatten``
on (N, m) and inactive ``nn.Dropout`` as no-ops; nested Sequentials are
flattened. Anything else gets a reason string from :func:`plan`, and
:func:`hoderiv_ext.derivatives` sends it to the reference engine.

The jet (N, S, m) carries, per sample and unit, the value, the d tangents and
the second-order slots the request needs (hoderiv/jet_math.h):

  request      second-order slots                        S
  none         none                                      1 + d
  laplacian    one collapsed slot  sum_i d2/dx_i^2       2 + d
  diagonal     pairs (i, i)                              1 + 2d
  rows R       pairs {(min(r, j), max(r, j))}, deduped   1 + d + |pairs|
  full         pairs i <= j                              1 + d + d(d+1)/2

A Linear layer is ONE GEMM on the jet viewed as (N*S, m) (its bias is added to
slot 0 inside the next activation kernel); an activation is ONE fused kernel
(jet_activation). Layers before the first activation stay affine: their
tangents are the same for every sample (the product of the weights), so the
first activation reads them from that (m, d) matrix (jet_activation_first)
and no per-sample tangents or zero second-order slots are ever materialised.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hoderiv_ext._jet_ops import jet_ops_available
from hoderiv_ext.functions import KernelFunction, activation_from_module
from hoderiv_ext.requests import HessianRequest


@dataclass(frozen=True)
class LinearStep:
    weight: Tensor  # (out, in)
    bias: Tensor | None


@dataclass(frozen=True)
class ActivationStep:
    function: KernelFunction


Step = Union[LinearStep, ActivationStep]


@dataclass(frozen=True)
class TaylorPlan:
    """The network as a list of steps the Taylor engine runs."""

    steps: tuple[Step, ...]

    def output_width(self, d: int) -> int:
        """Number of outputs of the planned network for d inputs."""
        width = d
        for step in self.steps:
            if isinstance(step, LinearStep):
                width = step.weight.shape[0]
        return width


def _flatten(module: nn.Module, prefix: str):
    for name, child in module.named_children():
        qualified = f"{prefix}.{name}" if prefix else name
        if type(child) is nn.Sequential:
            yield from _flatten(child, qualified)
        else:
            yield qualified, child


def _is_noop(module: nn.Module) -> bool:
    if type(module) is nn.Identity:
        return True
    if type(module) is nn.Flatten:
        return module.start_dim == 1 and module.end_dim == -1  # a no-op on (N, m)
    if type(module) in (nn.Dropout, nn.AlphaDropout):
        return not module.training or module.p == 0
    return False


def _hooked_layer(f: nn.Module) -> str | None:
    """The name of a layer with forward (pre-)hooks, which the engine would not run ("" for f itself)."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return ""
    for name, module in f.named_modules():
        if module._forward_hooks or module._forward_pre_hooks:
            return name
    return None


def layer_steps(f: object) -> "tuple[Step, ...] | str":
    """``f`` as Taylor steps when it is an ``nn.Sequential`` of layers the engine serves, else the reason.

    This is structure only (it does not ask whether the kernels are built):
    every such network computes each output row from its own input row, so
    it also tells :func:`hoderiv_ext.derivatives` that the independence probe
    has nothing to find.
    """
    if type(f) is not nn.Sequential:
        return f"f is a {type(f).__name__}, not an nn.Sequential of Linear layers and supported activations"
    hooked = _hooked_layer(f)
    if hooked is not None:
        where = f"layer '{hooked}'" if hooked else "f (or every module, through a global hook)"
        return f"{where} has forward hooks, which the Taylor engine would not run"
    steps: list[Step] = []
    for name, module in _flatten(f, ""):
        if type(module) is nn.Linear:
            steps.append(LinearStep(module.weight, module.bias))
            continue
        function = activation_from_module(module)
        if function is not None:
            steps.append(ActivationStep(function))
            continue
        if _is_noop(module):
            continue
        return f"unsupported layer '{name}' ({type(module).__name__}) for the Taylor engine"
    return tuple(steps)


def plan(f: object, steps: "tuple[Step, ...] | str | None" = None) -> "TaylorPlan | str":
    """A plan when the Taylor engine serves ``f``, else the reason it cannot (naming the layer).

    ``steps``: ``layer_steps(f)`` when the caller has it already.
    """
    if not jet_ops_available():
        return "the compiled Taylor kernels are not available (see hoderiv_ext.build_info())"
    if steps is None:
        steps = layer_steps(f)
    return steps if isinstance(steps, str) else TaylorPlan(steps)


# ----------------------------------------------------------------------------- slots


@dataclass(frozen=True)
class SlotLayout:
    """Second-order slots of a request: pairs (i <= j), or one collapsed Laplacian slot."""

    num_inputs: int
    pairs: tuple[tuple[int, int], ...]
    collapsed: bool

    @property
    def num_second(self) -> int:
        return 1 if self.collapsed else len(self.pairs)


@functools.lru_cache(maxsize=256)
def slot_layout(request: HessianRequest, d: int) -> SlotLayout:
    if request.kind == "laplacian":
        return SlotLayout(d, (), True)
    if request.kind == "none":
        return SlotLayout(d, (), False)
    if request.kind == "diagonal":
        return SlotLayout(d, tuple((i, i) for i in range(d)), False)
    if request.kind == "full":
        return SlotLayout(d, tuple((i, j) for i in range(d) for j in range(i, d)), False)
    pairs = sorted({(min(r, j), max(r, j)) for r in request.rows for j in range(d)})
    return SlotLayout(d, tuple(pairs), False)


@functools.lru_cache(maxsize=256)
def _pair_tensors(layout: SlotLayout, device: torch.device) -> tuple[Tensor, Tensor]:
    pair_i = torch.tensor([p[0] for p in layout.pairs], dtype=torch.int64)
    pair_j = torch.tensor([p[1] for p in layout.pairs], dtype=torch.int64)
    return pair_i.to(device), pair_j.to(device)


@functools.lru_cache(maxsize=256)
def _gather_index(request: HessianRequest, d: int, device: torch.device) -> Tensor | None:
    """Slot index of each entry of the canonical second-order tensor (full / rows)."""
    layout = slot_layout(request, d)
    position = {pair: s for s, pair in enumerate(layout.pairs)}
    rows = range(d) if request.kind == "full" else request.rows
    index = [position[(min(r, j), max(r, j))] for r in rows for j in range(d)]
    return torch.tensor(index, dtype=torch.int64).to(device)


def _second_from_slots(second: Tensor, request: HessianRequest, d: int) -> Tensor | None:
    """Canonical second-order tensor from the slots (N, s, o)."""
    n, _, o = second.shape
    if request.kind == "none":
        return None
    if request.kind == "laplacian":
        return second[:, 0]
    if request.kind == "diagonal":
        return second.transpose(1, 2)
    index = _gather_index(request, d, second.device)
    rows = d if request.kind == "full" else len(request.rows)
    return second.index_select(1, index).reshape(n, rows, d, o).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- run


ALGORITHMS = ("auto", "taylor", "mixed", "forward_over_reverse")
# Mixed mode is chosen when forward Taylor needs more than this many times the
# GEMM columns mixed mode needs. Measured on CPU on forward passes AND training
# steps, and re-measured after the CPU kernels were vectorised (2026-11-22,
# benchmarks/bench_taylor_algorithms.py, table in docs/taylor.md): with 2.0
# the full Hessian goes mixed from d = 4, where mixed is 1.45x+ faster in
# training; the diagonal and the Laplacian stay on forward Taylor. It leaves
# 1.05-1.5x on the table for the full Hessian at d = 3 and the diagonal at
# d >= 8 on layers of width >= 64, which slot counts cannot separate from the
# width-32 cases where mixed mode is 1.4-2x slower.
MIXED_MODE_SLOT_RATIO = 2.0


def algorithm_for(plan: TaylorPlan, request: HessianRequest, d: int) -> str:
    """"taylor", "mixed" or "forward_over_reverse" for this request: the one place that picks the algorithm.

    Forward Taylor carries 1 + d + s slots through every GEMM (s second-order
    slots of the request); mixed mode carries 1 + d forward plus one reverse
    sweep; forward-over-reverse carries 1 + k forward and 1 + k reverse
    columns for k Hessian rows. The last two serve scalar outputs only.
    Selected rows (fewer than d) always go forward-over-reverse: its cost
    grows with k, the others' with d, and it measured 1.0-2.0x nested
    autograd where forward Taylor and mixed mode were 0.2-0.6x
    (docs/taylor.md).
    """
    if request.kind == "none" or plan.output_width(d) != 1:
        return "taylor"
    if request.kind == "rows" and len(request.rows) < d:
        return "forward_over_reverse"
    taylor_slots = 1 + d + slot_layout(request, d).num_second
    mixed_slots = 2 + d
    return "mixed" if taylor_slots > MIXED_MODE_SLOT_RATIO * mixed_slots else "taylor"


def run(plan: TaylorPlan, x: Tensor, request: HessianRequest, create_graph: bool, algorithm: str = "auto") -> tuple:
    """Canonical (value (N, o), jacobian (N, o, d), second) for x (N, d); see hoderiv_ext.results.

    ``algorithm``: "auto" (see :func:`algorithm_for`), "taylor" (forward Taylor
    mode, the fused jet kernels), "mixed" (forward tangents + reverse sweep,
    scalar outputs only) or "forward_over_reverse" (k directional tangents +
    reverse sweep, Hessian-rows requests of scalar-output networks only).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "auto":
        algorithm = algorithm_for(plan, request, x.shape[1])
    if algorithm in ("mixed", "forward_over_reverse"):  # both need a single reverse sweep: scalar outputs
        if plan.output_width(x.shape[1]) != 1:
            raise ValueError(f"algorithm={algorithm!r} serves scalar-output networks only")
        from hoderiv_ext.forward_over_reverse import run_forward_over_reverse  # they import this module
        from hoderiv_ext.mixed import run_mixed

        return (run_mixed if algorithm == "mixed" else run_forward_over_reverse)(plan, x, request, create_graph)
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        return _run(plan, x, request)


def _run(plan: TaylorPlan, x: Tensor, request: HessianRequest) -> tuple:
    ops = torch.ops.hoderiv_ext
    n, d = x.shape
    layout = slot_layout(request, d)
    pair_i, pair_j = _pair_tensors(layout, x.device)

    preactivation = x  # affine prefix: value (N, m) ...
    affine_jacobian: Tensor | None = None  # ... and its tangents (m, d), None = identity
    jet: Tensor | None = None  # (N, S, m) once the first activation has run
    pending_bias: Tensor | None = None  # a Linear's bias not yet added to slot 0

    for step in plan.steps:
        if isinstance(step, LinearStep):
            if jet is None:
                preactivation = F.linear(preactivation, step.weight, step.bias)
                affine_jacobian = step.weight if affine_jacobian is None else step.weight @ affine_jacobian
            else:
                if pending_bias is not None:  # two Linear layers in a row
                    jet = torch.cat([(jet[:, 0] + pending_bias).unsqueeze(1), jet[:, 1:]], dim=1)
                jet = F.linear(jet, step.weight)
                pending_bias = step.bias
            continue
        name, params = step.function.name, list(step.function.params)
        if jet is None:
            weight = affine_jacobian if affine_jacobian is not None else torch.eye(d, dtype=x.dtype, device=x.device)
            jet = ops.jet_activation_first(preactivation, weight, name, params, pair_i, pair_j, layout.collapsed)
        else:
            jet = ops.jet_activation(jet, pending_bias, name, params, pair_i, pair_j, d, layout.collapsed)
            pending_bias = None

    if jet is None:  # an affine network: constant Jacobian, zero second derivatives
        o = preactivation.shape[1]
        weight = affine_jacobian if affine_jacobian is not None else torch.eye(d, dtype=x.dtype, device=x.device)
        value = preactivation
        jacobian = weight.unsqueeze(0).expand(n, o, d)
        second = x.new_zeros((n, layout.num_second, o))
        return value, jacobian, _second_from_slots(second, request, d)

    value = jet[:, 0] if pending_bias is None else jet[:, 0] + pending_bias
    jacobian = jet[:, 1 : 1 + d].transpose(1, 2)
    second = _second_from_slots(jet[:, 1 + d :], request, d)
    return value, jacobian, second
