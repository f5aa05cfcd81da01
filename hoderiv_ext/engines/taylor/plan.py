"""What the Taylor engine runs: ``f`` as a list of Linear and activation steps.

Serves ``nn.Sequential`` networks of ``nn.Linear`` layers and the activations the
kernels know (see :mod:`hoderiv_ext.core.functions`; a user-defined module whose
forward is one such function, ``torch.sin(x)`` say, is recognised by its trace:
:mod:`hoderiv_ext.engines.taylor.traced_activation`), with ``nn.Identity``,
``nn.Flatten`` on (N, m) and inactive ``nn.Dropout`` as no-ops; nested
Sequentials are flattened. Anything else raises :class:`NotServed` naming the
layer. Such a network computes each output row from its own input row, so a
plan also tells :func:`hoderiv_ext.derivatives` that the sample-independence
checks have nothing to find.

Plans are cached per network, weakly (a deleted network leaves the cache),
with a snapshot of what the plan depends on, for every module reachable from
the network: its type, train/eval flag, whether it has hooks or a forward set
on the instance, its children, the identities of its parameters and the
attributes the plan reads (an activation's ``beta``, a dropout's ``p``; a user-defined
activation's class forward and scalar attributes). A call that finds any of these changed --
a layer replaced, added or removed, ``train()``/``eval()``, a hook
registered, ``net[0].weight = nn.Parameter(...)``, ``softplus.beta = 2.0`` --
builds the plan again. In-place parameter updates (optimisers,
``load_state_dict``, ``net.to(dtype)``) keep the parameter objects, which the
plan reads live. A cached plan holds the network's own parameters and
modules, never a tensor derived from them, so nothing made in one mode
(inference, fake, another device) reaches a later call. Under
``torch.compile`` the plan is built afresh: the cache is Python bookkeeping
that dynamo need not trace. :func:`clear_plan_cache` empties the cache.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_globals

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.core.functions import KernelFunction, activation_from_module
from hoderiv_ext.engines.taylor.traced_activation import activation_by_trace, is_user_defined, recognition_state


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
class NetworkJetArguments:
    """A plan as the arguments of the one-call sweep ``network_jet`` (:func:`hoderiv_ext.ops.jet.network_jet`).

    ``steps``: the step names, space-separated ("linear" or a function of the table); ``weights`` and
    ``biases``: the Linear layers' own parameters, in order (never a tensor derived from them);
    ``params``: every activation's parameters, concatenated, ``param_counts`` of them per activation.
    """

    steps: str
    weights: list[Tensor]
    biases: list[Tensor | None]
    params: list[float]
    param_counts: list[int]


@dataclass(frozen=True)
class TaylorPlan:
    """The network as a list of steps the Taylor engine runs."""

    steps: tuple[Step, ...]

    def network_jet_arguments(self) -> NetworkJetArguments | None:
        """The plan for the one-call sweep, or None when it has no activation (the Python sweep serves it).

        Made on first use and kept with the plan: it holds the same parameter objects as the steps.
        """
        cached = self.__dict__.get("_network_jet_arguments", False)
        if cached is not False:
            return cached
        names: list[str] = []
        weights: list[Tensor] = []
        biases: list[Tensor | None] = []
        params: list[float] = []
        counts: list[int] = []
        for step in self.steps:
            if isinstance(step, LinearStep):
                names.append("linear")
                weights.append(step.weight)
                biases.append(step.bias)
            else:
                names.append(step.function.name)
                params.extend(step.function.params)
                counts.append(len(step.function.params))
        arguments = NetworkJetArguments(" ".join(names), weights, biases, params, counts) if counts else None
        object.__setattr__(self, "_network_jet_arguments", arguments)
        return arguments

    @property
    def prepared(self) -> dict:
        """The selection step's choices for this plan (:func:`hoderiv_ext.engines.select.remembered_choice`), by
        request, width, dtype, device and backend: they live and die with the plan (a changed network gets a new
        plan, :func:`clear_plan_cache` drops them all)."""
        prepared = self.__dict__.get("_prepared")
        if prepared is None:
            prepared = {}
            object.__setattr__(self, "_prepared", prepared)
        return prepared

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
        width, device, dtype = x.shape[1], x.device, x.dtype
        for step in self.steps:
            if not isinstance(step, LinearStep):
                continue
            for kind, tensor in (("weight", step.weight), ("bias", step.bias)):
                if tensor is None or (tensor.device == device and tensor.dtype == dtype):
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


def _descendants(f: nn.Module) -> Iterator[tuple[str, nn.Module | None]]:
    """Every module below f (f itself not included) with its qualified name, in pre-order (the order a nested
    Sequential runs them); a child registered as None (``register_module(name, None)``) comes as None."""
    stack: list[tuple[str, nn.Module | None]] = [(name, child) for name, child in reversed(f._modules.items())]
    while stack:
        name, module = stack.pop()
        yield name, module
        if module is not None:  # reversed onto the stack: popped in order
            stack.extend((f"{name}.{child_name}", child) for child_name, child in reversed(module._modules.items()))


def _layers(f: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The non-Sequential modules of f in order, nested Sequentials flattened; NotServed for any module that
    may not compute what its type says (f and the containers included)."""
    why = _not_as_its_type("", f)
    if why is not None:
        raise NotServed(why)
    for name, module in _descendants(f):
        if module is None:  # register_module(name, None): nn.Sequential's forward would call None
            raise NotServed(f"layer '{name}' is None")
        why = _not_as_its_type(name, module)
        if why is not None:
            raise NotServed(why)
        if type(module) is not nn.Sequential:
            yield name, module


# The attributes the plan reads from each layer type it serves (activation_from_module, _is_noop): the
# cache compares them by value. Every other type contributes no attributes (it is refused whatever they are).
_PLAN_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    nn.Softplus: ("beta", "threshold"), nn.GELU: ("approximate",), nn.LeakyReLU: ("negative_slope",),
    nn.ELU: ("alpha",), nn.Flatten: ("start_dim", "end_dim"), nn.Dropout: ("p",), nn.AlphaDropout: ("p",),
}


def _module_state(module: nn.Module) -> tuple:
    """What a plan reads from ``module``: type, train flag, hooks, instance forward, children, parameters, attributes.

    Children and parameters by identity (the cache holds them, so no other object can take their identity).
    """
    state = module.__dict__
    kind = type(module)
    hooked = bool(state["_forward_hooks"] or state["_forward_pre_hooks"] or state["_backward_hooks"]
                  or state.get("_backward_pre_hooks"))
    attributes = _PLAN_ATTRIBUTES.get(kind)
    if attributes is not None:
        read = tuple(map(state.get, attributes))
    else:  # a user-defined activation module is recognised by its trace (traced_activation)
        read = recognition_state(module) if is_user_defined(kind) else None
    return (kind, state["training"], hooked, "forward" in state, tuple(state["_modules"].values()),
            tuple(map(id, state["_parameters"].values())), read)


@dataclass(frozen=True)
class _Snapshot:
    """The modules reachable from a network (the network itself not included: the cache holds it weakly) and the
    state of each, the network's first, that its plan was built from."""

    modules: tuple[nn.Module, ...]
    states: tuple[tuple, ...]

    @classmethod
    def of(cls, f: nn.Module) -> "_Snapshot":
        modules = [module for _, module in _descendants(f) if module is not None]  # None: a placeholder
        return cls(tuple(modules), (_module_state(f), *map(_module_state, modules)))

    def unchanged(self, f: nn.Module) -> bool:
        """Whether f and every module below it still have the state the plan was built from."""
        return (_module_state(f), *map(_module_state, self.modules)) == self.states


_PLAN_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[_Snapshot, TaylorPlan | str]]" = weakref.WeakKeyDictionary()


def clear_plan_cache() -> None:
    """Forget every cached plan: the next call of each network builds its plan again."""
    _PLAN_CACHE.clear()


def build_plan(f: object) -> TaylorPlan:
    """``f`` as Taylor steps when it is an ``nn.Sequential`` of layers the engine serves (cached: module docstring).

    This is structure only (it does not ask whether the kernels are built).

    Raises:
        NotServed: f is not such a network; the reason names the layer.
    """
    if type(f) is not nn.Sequential:
        raise NotServed(f"f is a {type(f).__name__}, not an nn.Sequential of Linear layers and supported activations")
    if global_hooks_registered():
        raise NotServed("a global hook (register_module_forward_hook and the like) runs on every module, and the "
                        "Taylor engine would not run it")
    if torch.compiler.is_compiling():
        return _plan_of(f)
    cached = _PLAN_CACHE.get(f)
    if cached is not None and cached[0].unchanged(f):
        plan_or_reason = cached[1]
    else:
        snapshot = _Snapshot.of(f)
        try:
            plan_or_reason: TaylorPlan | str = _plan_of(f)
        except NotServed as error:
            plan_or_reason = error.reason
        _PLAN_CACHE[f] = (snapshot, plan_or_reason)
    if isinstance(plan_or_reason, str):
        raise NotServed(plan_or_reason)
    return plan_or_reason


def _plan_of(f: nn.Sequential) -> TaylorPlan:
    """The plan of a Sequential, built now; NotServed naming the first layer it cannot serve."""
    steps: list[Step] = []
    for name, module in _layers(f):
        if type(module) is nn.Linear:
            steps.append(LinearStep(module.weight, module.bias, name))
            continue
        function = activation_from_module(module) or activation_by_trace(module)
        if function is not None:
            steps.append(ActivationStep(function, name))
            continue
        if _is_noop(module):
            continue
        raise NotServed(f"unsupported layer '{name}' ({type(module).__name__}) for the Taylor engine")
    return TaylorPlan(tuple(steps))
