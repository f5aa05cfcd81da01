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
    name: str = ""  # the layer's name in f, for messages


@dataclass(frozen=True)
class ActivationStep:
    function: KernelFunction
    name: str = ""


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

    def check_operands(self, x: Tensor) -> None:
        """Every parameter on x's device with x's dtype, and the first layer's width matching x's.

        Raises:
            TypeError: a parameter of another dtype (naming the layer and the fix).
            ValueError: a parameter on another device, or x of the wrong width.
        """
        width = x.shape[1]
        for step in self.steps:
            if not isinstance(step, LinearStep):
                continue
            for kind, tensor in (("weight", step.weight), ("bias", step.bias)):
                if tensor is None:
                    continue
                where = f"layer '{step.name}' (Linear): its {kind}"
                if tensor.device != x.device:
                    raise ValueError(
                        f"{where} is on {tensor.device} but x is on {x.device}: move the network and x to one "
                        "device (net.to(x.device))"
                    )
                if tensor.dtype != x.dtype:
                    raise TypeError(
                        f"{where} is {tensor.dtype} but x is {x.dtype}: convert one of them "
                        f"(net.to({x.dtype}) or x.to({tensor.dtype}))"
                    )
            if step.weight.shape[1] != width:
                raise ValueError(
                    f"layer '{step.name}' (Linear) takes {step.weight.shape[1]} inputs but receives {width} "
                    f"(x has {x.shape[1]} columns)"
                )
            width = step.weight.shape[0]


def _is_noop(module: nn.Module) -> bool:
    if type(module) is nn.Identity:
        return True
    if type(module) is nn.Flatten:
        return module.start_dim == 1 and module.end_dim == -1  # a no-op on (N, m)
    if type(module) in (nn.Dropout, nn.AlphaDropout):
        return not module.training or module.p == 0
    return False


_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def global_hooks_registered() -> bool:
    """A hook registered for every module (register_module_forward_hook and the like)."""
    return any(getattr(module_globals, hooks, None) for hooks in _GLOBAL_HOOKS)


def hook_kinds(module: nn.Module) -> tuple[str, ...]:
    """"forward" and/or "backward" when the module has hooks of that kind."""
    state = module.__dict__
    kinds = []
    if state["_forward_hooks"] or state["_forward_pre_hooks"]:
        kinds.append("forward")
    if state["_backward_hooks"] or state.get("_backward_pre_hooks"):
        kinds.append("backward")
    return tuple(kinds)


def _not_as_its_type(name: str, module: nn.Module) -> str | None:
    """Why ``module`` may not compute what its type says (a hook, a forward set on the instance), or None.

    The engine runs its own kernels for each layer type, so anything that
    changes what ``f(x)`` computes (or its gradient) must keep it off.
    """
    state = module.__dict__
    where = f"layer '{name}'" if name else "f"
    kinds = hook_kinds(module)
    if kinds:
        return f"{where} has {kinds[0]} hooks, which the Taylor engine would not run"
    if "forward" in state:
        return f"{where} has its forward replaced on the instance, which the Taylor engine would not run"
    return None


def _layers(f: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The non-Sequential modules of f in order, nested Sequentials flattened; NotServed for any module that
    may not compute what its type says (f and the containers included)."""
    why = _not_as_its_type("", f)
    if why is not None:
        raise NotServed(why)
    stack: list[tuple[str, nn.Module]] = [("", f)]
    while stack:
        prefix, container = stack.pop()
        children = list(container._modules.items())
        for index in range(len(children) - 1, -1, -1):  # reversed onto the stack: popped in order
            name, child = children[index]
            stack.append((f"{prefix}.{name}" if prefix else name, child))
        if container is not f:
            why = _not_as_its_type(prefix, container)
            if why is not None:
                raise NotServed(why)
            if type(container) is not nn.Sequential:
                yield prefix, container


def build_plan(f: object) -> TaylorPlan:
    """``f`` as Taylor steps when it is an ``nn.Sequential`` of layers the engine serves.

    This is structure only (it does not ask whether the kernels are built).

    Raises:
        NotServed: f is not such a network; the reason names the layer.
    """
    if type(f) is not nn.Sequential:
        raise NotServed(f"f is a {type(f).__name__}, not an nn.Sequential of Linear layers and supported activations")
    if global_hooks_registered():
        raise NotServed("a global hook (register_module_forward_hook and the like) runs on every module, and the "
                        "Taylor engine would not run it")
    steps: list[Step] = []
    for name, module in _layers(f):
        if type(module) is nn.Linear:
            steps.append(LinearStep(module.weight, module.bias, name))
            continue
        function = activation_from_module(module)
        if function is not None:
            steps.append(ActivationStep(function, name))
            continue
        if _is_noop(module):
            continue
        raise NotServed(f"unsupported layer '{name}' ({type(module).__name__}) for the Taylor engine")
    return TaylorPlan(tuple(steps))
