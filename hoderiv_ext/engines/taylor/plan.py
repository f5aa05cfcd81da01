"""What the Taylor engine runs: ``f`` as a list of Linear and activation steps.

Serves ``nn.Sequential`` networks of ``nn.Linear`` layers and the activations the
kernels know (see :mod:`hoderiv_ext.core.functions`), with ``nn.Identity``,
``nn.Flatten`` on (N, m) and inactive ``nn.Dropout`` as no-ops; nested
Sequentials are flattened. Anything else raises :class:`NotServed` naming the
layer. Such a network computes each output row from its own input row, so a
plan also tells :func:`hoderiv_ext.derivatives` that the sample-independence
checks have nothing to find.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Union

from torch import Tensor, nn
from torch.nn.modules import module as module_globals

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.core.functions import KernelFunction, activation_from_module


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


def _flatten(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
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
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return ""
    for name, module in f.named_modules():
        if module._forward_hooks or module._forward_pre_hooks:
            return name
    return None


def build_plan(f: object) -> TaylorPlan:
    """``f`` as Taylor steps when it is an ``nn.Sequential`` of layers the engine serves.

    This is structure only (it does not ask whether the kernels are built).

    Raises:
        NotServed: f is not such a network; the reason names the layer.
    """
    if type(f) is not nn.Sequential:
        raise NotServed(f"f is a {type(f).__name__}, not an nn.Sequential of Linear layers and supported activations")
    hooked = _hooked_layer(f)
    if hooked is not None:
        where = f"layer '{hooked}'" if hooked else "f (or every module, through a global hook)"
        raise NotServed(f"{where} has forward hooks, which the Taylor engine would not run")
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
        raise NotServed(f"unsupported layer '{name}' ({type(module).__name__}) for the Taylor engine")
    return TaylorPlan(tuple(steps))
