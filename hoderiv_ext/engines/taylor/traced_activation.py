"""User-defined activation modules that a plan can serve: those whose forward is ONE op of the function table.

A SIREN-style ``Sine`` (``torch.sin(x)``), a module returning ``F.softplus(x, 2.0)``, ``x ** 3`` or
``torch.tanh(x)``: such a module computes exactly a function the kernels know, so a Sequential of
them and Linear layers runs the plan's fused sweep instead of the traced interpreter. The module's
forward is traced once with fake tensors (``make_fx``, so a branch on the values fails the trace
instead of being baked in) on a (2, 3) input; it is recognised when the graph is its input, one op of
:data:`hoderiv_ext.core.functions.ATEN_FUNCTIONS` applied to it (any other arguments constants) and
that op's result as the output. One two-op form is recognised too, SIREN's ``torch.sin(w0 * x)`` for a
number ``w0``: the table's ``scaled_sin`` with frequency w0 (its kernel rounds w0 * x as torch does, then
takes the sine). Anything else -- other two-op forms (``x * sigmoid(x)``, ``2 * torch.tanh(x)``),
parameters, buffers, children, a trace failure -- is not recognised and the module goes to the traced
path as before.

What the recognition read is part of the plan cache's snapshot (:func:`recognition_state`): the
class's forward and the module's scalar attributes (``self.w0``, ``self.training``), so changing any
of them builds the plan again. Under ``torch.compile`` nothing is traced: the recognition of an eager call is looked up (as a
constant of the compiled graph, while the attributes dynamo guards on are unchanged); a network never
called eagerly takes the traced path, which says how to compile it.
"""

from __future__ import annotations

import weakref

import torch
from torch import fx, nn
from torch.fx.experimental.proxy_tensor import make_fx

from hoderiv_ext.core.functions import KernelFunction, by_name, function_of_aten_op
from hoderiv_ext.engines.taylor.module_scalars import SCALARS, module_scalars

# module -> (recognition_state, (name, params) or None), for the eager calls and the compiled lookup
_RECOGNISED: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, tuple[str, tuple[float, ...]] | None]]" = (
    weakref.WeakKeyDictionary())


def is_user_defined(kind: type) -> bool:
    """Whether ``kind`` is a module class of neither torch nor this package (only those are traced)."""
    return not kind.__module__.startswith(("torch.", "hoderiv_ext."))


def recognition_state(module: nn.Module) -> tuple:
    """What recognising ``module`` read: its class's forward and its scalar attributes."""
    return getattr(type(module), "forward", None), module_scalars(module)


def activation_by_trace(module: nn.Module) -> KernelFunction | None:
    """The kernel function a user-defined activation module computes, or None (module docstring)."""
    if not is_user_defined(type(module)) or module._parameters or module._buffers or module._modules:
        return None
    state = recognition_state(module)
    if torch.compiler.is_compiling():
        found = _recognised_eagerly(module, state)
    else:
        cached = _cached(module)
        if cached is not None and cached[0] == state:
            found = cached[1]
        else:
            found = _recognise(module)
            try:
                _RECOGNISED[module] = (state, found)
            except TypeError:  # a module class with __eq__ but no __hash__: recognised again next time
                pass
    if found is None:
        return None
    return KernelFunction(found[0], found[1], module)


@torch._dynamo.assume_constant_result
def _recognised_eagerly(module: nn.Module, state: tuple) -> tuple[str, tuple[float, ...]] | None:
    """Under torch.compile: an eager call's recognition of ``module`` while its state is unchanged, else None."""
    cached = _cached(module)
    return cached[1] if cached is not None and cached[0] == state else None


def _cached(module: nn.Module) -> tuple[tuple, tuple[str, tuple[float, ...]] | None] | None:
    try:
        return _RECOGNISED.get(module)
    except TypeError:  # unhashable (a class defining __eq__ without __hash__)
        return None


def _recognise(module: nn.Module) -> tuple[str, tuple[float, ...]] | None:
    try:
        with torch.inference_mode(False):
            graph = make_fx(module, tracing_mode="fake")(torch.rand(2, 3) + 0.5).graph
    except Exception:  # noqa: BLE001 - any failure: not recognised, the traced path says what it finds
        return None
    graph.eliminate_dead_code()
    nodes = list(graph.nodes)
    if [node.op for node in nodes] == ["placeholder", "call_function", "call_function", "output"]:
        return _scaled_sine(*nodes)
    if len(nodes) != 3 or [node.op for node in nodes] != ["placeholder", "call_function", "output"]:
        return None
    placeholder, call, output = nodes
    if not call.args or call.args[0] is not placeholder or output.args[0] is not call:
        return None
    if not all(isinstance(value, SCALARS) for value in (*call.args[1:], *call.kwargs.values())):
        return None  # a node (another value computed in forward) or a tensor constant
    return function_of_aten_op(call.target, call.args[1:], dict(call.kwargs))


def _scaled_sine(placeholder: fx.Node, scale: fx.Node, sine: fx.Node,
                 output: fx.Node) -> tuple[str, tuple[float, ...]] | None:
    """("scaled_sin", (w0,)) for the graph of ``torch.sin(w0 * x)`` with a number w0, else None."""
    if scale.target is not torch.ops.aten.mul.Tensor or len(scale.args) != 2 or scale.kwargs:
        return None
    factor = scale.args[1]
    if scale.args[0] is not placeholder or isinstance(factor, bool) or not isinstance(factor, (int, float)):
        return None
    if sine.target is not torch.ops.aten.sin.default or sine.args != (scale,) or output.args[0] is not sine:
        return None
    try:
        found = by_name("scaled_sin", frequency=float(factor))
    except ValueError:  # an infinite or NaN w0: not a function of the table
        return None
    return found.name, found.params
