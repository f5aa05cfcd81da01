"""Run a traced graph on jets: each node's aten op through its jet rule, constants as themselves.

A node whose arguments hold a jet runs its rule (:mod:`.shape_rules`,
:mod:`.linear_rules`, :mod:`.unary_rules`, :mod:`.product_rules`; importing
them registers them in :data:`~.rules.RULES`); a node of constants only runs the op itself
(parameters are read live from the graph module: the traced program holds
the module's own ``nn.Parameter`` objects); a node of values derived from x
without a derivative (masks, comparisons) runs elementwise ops only. Random
ops are not served (the autograd engine draws anew on every call), nor is an
op without a rule; both name the op and the line of f.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.traced import linear_rules, product_rules, shape_rules, unary_rules  # noqa: F401
from hoderiv_ext.engines.taylor.traced.jets import Derived, OrderNotServed, SamplesMix, Slots, is_jet
from hoderiv_ext.engines.taylor.traced.rules import RULES

aten = torch.ops.aten

RANDOM_OPS = frozenset({
    "rand", "randn", "rand_like", "randn_like", "randint", "randint_like", "bernoulli", "bernoulli_",
    "native_dropout", "dropout", "normal", "normal_", "uniform", "uniform_", "exponential", "exponential_",
    "multinomial", "randperm", "poisson", "random_", "geometric_", "log_normal_", "cauchy_",
})
# Ops that may run on values derived from x (no derivative): elementwise, so they cannot mix samples.
DERIVED_OPS = frozenset({
    "_to_copy", "where", "logical_not", "logical_and", "logical_or", "logical_xor", "bitwise_not",
    "bitwise_and", "bitwise_or", "eq", "ne", "gt", "ge", "lt", "le", "mul", "add", "sub", "neg", "masked_fill",
    "clone", "alias", "abs", "sign", "isnan", "isinf",
})


# Ops that may take the batch size N as an argument: it sets a shape, it is not a number in the result.
SHAPE_OPS = frozenset({
    "view", "reshape", "_unsafe_view", "expand", "slice", "zeros", "ones", "full", "empty", "new_zeros",
    "new_ones", "new_full", "new_empty", "empty_strided", "zeros_like", "ones_like", "full_like", "sym_size",
})


class BatchSize(int):
    """N read from a tensor computed from x: a shape, never a number in the result (that mixes samples)."""


def arg_leaves(value: object) -> list[object]:
    """The leaves of a node's arguments (nested tuples, lists and dicts): cheaper than torch's pytree."""
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in arg_leaves(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in arg_leaves(item)]
    return [value]


def _replace_leaves(value: Any, kind: type, replace: Callable[[Any], Any]) -> Any:
    """``value`` with every leaf of type ``kind`` replaced by ``replace(leaf)``, through nested tuples, lists
    and dicts (their types kept: a torch.Size stays one); the one walker of the interpreter's arguments."""
    if isinstance(value, kind):
        return replace(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_replace_leaves(item, kind, replace) for item in value)
    if isinstance(value, dict):
        return {key: _replace_leaves(item, kind, replace) for key, item in value.items()}
    return value


def _unwrap(value: object) -> object:
    """The arguments with every :class:`Derived` replaced by its tensor."""
    return _replace_leaves(value, Derived, _tensor_of)


def _tensor_of(derived: Derived) -> Tensor:
    return derived.tensor


def op_name(target: object) -> str:
    """The aten name of a node's target ("aten.tanh.default"), or its Python name."""
    return str(target) if isinstance(target, torch._ops.OpOverload) else getattr(target, "__name__", repr(target))


def _packet_name(target: object) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return target.overloadpacket.__name__
    return ""


_TORCH_DIR = os.path.dirname(torch.__file__)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def source_line(node: fx.Node) -> str:
    """Where in f a node came from: the innermost frame outside torch ("file.py:12: code")."""
    lines = [line.strip() for line in (node.meta.get("stack_trace") or "").strip().splitlines()]
    frames = [(lines[i], lines[i + 1] if i + 1 < len(lines) else "") for i in range(len(lines))
              if lines[i].startswith("File ")]
    for frame, code in reversed(frames):
        try:
            path, number = frame.split('"')[1], frame.split("line ")[1].split(",")[0]
        except IndexError:
            continue
        if not path.startswith(_TORCH_DIR) and not path.startswith(_PACKAGE_DIR):
            return f"{os.path.basename(path)}:{number}: {code}"
    return "(no source line recorded)"


@dataclass(frozen=True)
class Slot:
    """A reference, in a prepared step's arguments, to the value of the step at ``index``."""

    index: int


@dataclass(frozen=True)
class Step:
    """One node of the graph as plain data: what runs it, its target and its arguments with every node
    replaced by the :class:`Slot` of its step (so a call reads no ``fx.Node``: torch.compile cannot trace
    one, and a traced program runs inside a compiled function)."""

    op: str  # "placeholder", "get_attr", "call_function" or "output"
    target: Any
    args: tuple
    kwargs: dict
    where: str
    fold_bias: bool = False  # a Linear (addmm) whose only consumer is a fused activation
    # A fused activation whose only consumer adds it to an earlier value: that value's step (the kernel adds it)
    residual: Slot | None = None
    # That add: the activation's step, whose value already holds the sum when its kernel added the residual
    sum_of: int | None = None
    # The steps whose values the arguments read, in order (what can be a jet, a Derived or the batch size: every
    # other argument is a constant of the graph), and for arguments that hold them only at the top level (no
    # Slot in a list or in the keyword arguments) their positions, so a call fills them in without a walk.
    refs: tuple[int, ...] = ()
    top_level: tuple[tuple[int, int], ...] | None = None


def _folds_bias(node: fx.Node) -> bool:
    if node.target is not aten.addmm.default or len(node.users) != 1:
        return False
    (user,) = node.users
    return user.target in unary_rules.FUSED_OPS and user.args[0] is node


def _skip_connections(nodes: list[fx.Node], index: dict[fx.Node, int]) -> dict[fx.Node, fx.Node]:
    """The skip connections h + phi(v) to fold into phi's kernel: {phi's node: h's node}.

    phi is a fused activation whose one consumer is ``aten.add.Tensor`` of it
    and h (either order, alpha 1), h computed before phi (its value exists
    when phi's kernel runs) and not phi itself.
    """
    folds: dict[fx.Node, fx.Node] = {}
    for node in nodes:
        if node.target not in unary_rules.FUSED_OPS or len(node.users) != 1:
            continue
        (user,) = node.users
        if user.target is not aten.add.Tensor or user.kwargs.get("alpha", 1) != 1 or len(user.args) != 2:
            continue
        a, b = user.args
        other = b if a is node else a
        if isinstance(other, fx.Node) and other is not node and index[other] < index[node]:
            folds[node] = other
    return folds


def _load(value: Any, env: list[Any]) -> Any:
    """The arguments with every :class:`Slot` replaced by the value it refers to."""
    return _replace_leaves(value, Slot, lambda slot: env[slot.index])


def _references(args: tuple, kwargs: dict) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...] | None]:
    """(every Slot's index in the arguments, in order; the (position, index) of each when they are all
    top-level positional arguments, else None)."""
    refs = [leaf.index for leaf in arg_leaves((args, kwargs)) if isinstance(leaf, Slot)]
    top = tuple((position, arg.index) for position, arg in enumerate(args) if isinstance(arg, Slot))
    return tuple(refs), (top if len(top) == len(refs) else None)


def _step_args(step: "Step", env: list[Any]) -> tuple[tuple, dict]:
    """A step's arguments with the values of the steps they read."""
    if step.top_level is None:
        return _load(step.args, env), _load(step.kwargs, env)
    if not step.top_level:
        return step.args, step.kwargs
    args = list(step.args)
    for position, index in step.top_level:
        args[position] = env[index]
    return tuple(args), step.kwargs


class Interpreter:
    """The traced graph's nodes, prepared once, run per call with the call's slots and the seed jet of x."""

    def __init__(self, graph_module: fx.GraphModule) -> None:
        self.graph_module = graph_module
        nodes = list(graph_module.graph.nodes)
        index = {node: i for i, node in enumerate(nodes)}

        def slot(node: fx.Node) -> Slot:
            return Slot(index[node])

        skips = _skip_connections(nodes, index)
        sums = {next(iter(node.users)): index[node] for node in skips}
        steps = []
        for node in nodes:
            args, kwargs = tuple(fx.node.map_arg(node.args, slot)), dict(fx.node.map_arg(node.kwargs, slot))
            refs, top_level = _references(args, kwargs)
            steps.append(Step(node.op, node.target, args, kwargs, source_line(node), _folds_bias(node),
                              slot(skips[node]) if node in skips else None, sums.get(node), refs, top_level))
        self.steps = tuple(steps)

    def run(self, slots: Slots, seed: object) -> object:
        env: list[Any] = []
        summed: set[int] = set()  # the activations whose kernel added their skip connection's residual
        for position, step in enumerate(self.steps):
            if step.op == "placeholder":
                env.append(seed)
            elif step.op == "get_attr":
                env.append(getattr(self.graph_module, step.target))
            elif step.op == "call_function":
                if step.sum_of is not None and step.sum_of in summed:
                    env.append(env[step.sum_of])  # h + phi(v): phi's kernel computed the sum
                    continue
                slots.fold_bias = step.fold_bias
                slots.residual = None if step.residual is None else env[step.residual.index]
                slots.residual_added = False
                args, kwargs = _step_args(step, env)
                values = [env[i] for i in step.refs]
                if slots.curvatures is not None:  # a mixed-mode sweep records the step's curvature term
                    slots.curvatures.observe(slots, position, step.target, args, kwargs, values, step.where)
                env.append(self._call(slots, step.target, args, kwargs, step, values))
                if slots.residual_added:
                    summed.add(position)
                slots.residual = None
            elif step.op == "output":
                return _load(step.args[0], env)
            else:
                raise NotServed(f"the traced graph has a {step.op} node")
        raise NotServed("the traced graph has no output")

    @staticmethod
    def _call(slots: Slots, target: object, args: tuple, kwargs: dict, step: Step, values: list[Any]) -> object:
        """Run one step; ``values``: the values its arguments read (the only arguments that can be jets,
        Derived or the batch size)."""
        if target is operator.getitem:
            return args[0][args[1]]
        name = _packet_name(target)
        if not isinstance(target, torch._ops.OpOverload):  # Python arithmetic on sizes: keep N's mark
            result = target(*args, **kwargs)  # type: ignore[operator]
            if isinstance(result, int) and any(isinstance(arg, BatchSize) for arg in args):
                return BatchSize(result)
            return result
        leaves = arg_leaves(values) if any(isinstance(value, (tuple, list, dict)) for value in values) else values
        if name not in SHAPE_OPS and any(isinstance(leaf, BatchSize) for leaf in leaves):
            raise SamplesMix(f"f uses the batch size as a number ({op_name(target)} at {step.where}): its results "
                             "change with the number of samples")
        if name in RANDOM_OPS:  # a traced program would replay one draw; the autograd engine draws per call
            raise NotServed(f"f draws random numbers ({op_name(target)} at {step.where})")
        has_jet = any(is_jet(leaf) for leaf in leaves)
        rule = RULES.get(target) if has_jet else None
        if rule is None and has_jet:
            raise NotServed(f"no Taylor rule for {op_name(target)} at {step.where}")
        try:
            if rule is not None:
                return rule(slots, *args, **kwargs)
            if any(isinstance(leaf, Derived) for leaf in leaves):
                if name not in DERIVED_OPS:
                    raise NotServed(f"{op_name(target)} on values computed from x without a derivative")
                return Derived(target(*_unwrap(args), **_unwrap(kwargs)))  # type: ignore[operator]
            return target(*args, **kwargs)  # type: ignore[operator]
        except SamplesMix as error:
            raise SamplesMix(f"{error} ({op_name(target)} at {step.where})") from None
        except OrderNotServed as error:
            raise OrderNotServed(f"{error.reason} ({op_name(target)} at {step.where})", error.served) from None
        except NotServed as error:
            raise NotServed(f"{error.reason} ({op_name(target)} at {step.where})") from None


def _sym_size(slots: Slots, jet: object, dim: int) -> int:
    size = jet.primal_shape[dim]  # type: ignore[attr-defined]
    return BatchSize(size) if dim == 0 else size


RULES[aten.sym_size.int] = _sym_size
RULES[aten.sym_numel.default] = lambda slots, jet: int(torch.Size(jet.primal_shape).numel())
