"""Trace a function once into an aten graph, cache the program, and say when it must be traced again.

f is traced with ``make_fx`` in symbolic mode on a batch of fake samples:
the graph holds aten ops, the batch size stays a symbol (one program serves
every N), and f's parameters, buffers and captured tensors enter it as the
live objects themselves (training updates are seen). Data-dependent control
flow fails the trace. softmax, log_softmax, logsumexp and vector norms are
decomposed into ops with jet rules; layer norm, variances and eval-mode batch
norm have rules of their own.

Cache policy: one program per (function, input width, dtype, device), at most
:data:`CACHE_SIZE` (least recently used first out). A function is identified
by its code and its closure's contents (a lambda made anew at every training
step finds its program), a bound method by its instance and function, any
other callable by itself; the entry is dropped when one of these is garbage
collected (the program holds the parameters). It is traced again when f's
signature changes: for a module, every submodule's type, its Python scalar
attributes (train/eval mode, SIREN's w0: a trace bakes them in), a
``forward`` set on the instance, and the identity of each parameter and
buffer (a replaced layer or parameter); for any other callable, the same for
the modules, the identity of the tensors, and the values of the Python
scalars it reaches through its closure, defaults and the globals it names
(one level deep). A refusal is cached like a program, so ``backend="auto"``
traces a function it cannot serve once. :func:`clear_trace_cache` empties
the cache; :func:`trace_cache_info` lists it with each trace's cost.

Inside torch.compile the cache is looked up (dynamo traces the lookup and
guards on what it reads) but never filled: make_fx cannot run under dynamo,
so f's program must have been traced by an eager call first.
"""

from __future__ import annotations

import inspect
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch._decomp import get_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.module_scalars import SCALARS, module_scalars
from hoderiv_ext.engines.taylor.plan import global_hooks_registered, hook_kinds
from hoderiv_ext.engines.taylor.traced.interpreter import Interpreter, op_name, source_line
from hoderiv_ext.engines.taylor.traced.jets import BadOutput, SamplesMix
from hoderiv_ext.ops.library import MAX_KERNEL_ORDER

aten = torch.ops.aten
CACHE_SIZE = 64
UNIVARIATE_MAX_ORDER = MAX_KERNEL_ORDER  # univariate jets: the elementwise op serves phi^(0..8)
_DECOMPOSITIONS = get_decompositions([
    aten._softmax, aten._log_softmax, aten.logsumexp, aten.linalg_vector_norm, aten.mish, aten.hardswish,
    aten.hardsigmoid,
])


@dataclass
class TracedProgram:
    """f as a traced aten graph, ready to run on jets; or why it cannot be (``refusal``).

    ``univariate_order``: the highest order K of univariate jets the program serves (found by the dry
    run; 0: none), ``univariate_refusal``: why not higher (None when it serves every order up to 8).
    ``mixed_refusal``: why mixed mode (:mod:`~hoderiv_ext.engines.taylor.traced.mixed`) does not serve
    the program's Hessians, None when it does (found by its dry run); ``adjoint_graphs``: mixed mode's
    graphs, built once.
    """

    name: str
    interpreter: Interpreter | None
    trace_seconds: float
    refusal: Exception | None = None
    nodes: int = 0
    signature: tuple = field(default=(), repr=False)
    univariate_order: int = 0
    univariate_refusal: Exception | None = None
    mixed_refusal: Exception | None = field(default_factory=lambda: NotServed("no mixed-mode dry run"), repr=False)
    adjoint_graphs: dict = field(default_factory=dict, repr=False)

    def check_univariate_order(self, order: int) -> None:
        """Raise NotServed unless the program serves univariate jets of ``order`` (found by its dry run)."""
        if order > UNIVARIATE_MAX_ORDER:
            raise NotServed(f"order {order} exceeds the kernels' highest order {UNIVARIATE_MAX_ORDER}")
        if order > self.univariate_order:
            refusal = self.univariate_refusal
            reason = "no univariate dry run" if refusal is None else getattr(refusal, "reason", str(refusal))
            raise NotServed(f"Taylor coefficients of order {order} are not served: {reason}")


def _scalars(obj: object) -> tuple:
    """The Python scalars an object holds as attributes: a trace bakes them in as constants."""
    state = getattr(obj, "__dict__", None)
    if not isinstance(state, dict):
        return ()
    return tuple((key, value) for key, value in state.items() if isinstance(value, SCALARS))


def _module_signature(module: nn.Module) -> tuple:
    parts = []
    for name, sub in module.named_modules():
        if hook_kinds(sub):
            where = f"layer '{name}'" if name else "f"
            raise NotServed(f"{where} has hooks, which a traced program would not run on every call")
        parts.append((name, type(sub), id(sub.__dict__.get("forward")), module_scalars(sub),
                      tuple((key, id(p)) for key, p in sub._parameters.items()),
                      tuple((key, id(b)) for key, b in sub._buffers.items())))
    return tuple(parts)


def _closure(function: object) -> list[object]:
    return [cell.cell_contents for cell in (getattr(function, "__closure__", None) or ()) if _cell_filled(cell)]


def _reached(f: object) -> list[object]:
    """What a plain callable reaches: its closure, the globals it names, its defaults, its instance (one level)."""
    function = getattr(f, "__func__", f)
    code = getattr(function, "__code__", None)
    if code is None:
        return [f]  # a callable object: its attributes
    found = _closure(function)
    names = getattr(function, "__globals__", {})
    found += [names[name] for name in code.co_names if name in names]
    found += list(getattr(function, "__defaults__", None) or ())
    found += list((getattr(function, "__kwdefaults__", None) or {}).values())
    if inspect.ismethod(f):
        found.append(f.__self__)
    return found


def _cell_filled(cell: object) -> bool:
    try:
        cell.cell_contents  # type: ignore[attr-defined]
    except ValueError:
        return False
    return True


def _item_signature(item: object) -> object:
    if isinstance(item, nn.Module):
        return _module_signature(item)
    if isinstance(item, Tensor):
        return ("tensor", id(item))
    if isinstance(item, SCALARS):
        return ("value", type(item), item)
    if inspect.isfunction(item):
        return ("function", id(item.__code__), tuple(id(c) for c in _closure(item)))
    if inspect.ismodule(item) or inspect.isclass(item) or inspect.isbuiltin(item):
        return ("object", id(item))
    return ("object", id(item), _scalars(item))


def signature(f: object) -> tuple:
    """What must stay the same for a traced program of f to stay valid (see the module docstring)."""
    if global_hooks_registered():
        raise NotServed("a global module hook is registered; a traced program would not run it on every call")
    if isinstance(f, nn.Module):
        return ("module", _module_signature(f))
    code = getattr(getattr(f, "__func__", f), "__code__", None)
    return (id(code), tuple(_item_signature(item) for item in _reached(f)))


def _key_objects(f: object) -> tuple[object, ...]:
    """The objects that identify f in the cache.

    A function is identified by its code and its closure's contents, not by the
    function object: ``derivatives(lambda x: u(x, net), ...)`` written inside a
    training loop makes a new lambda every step, and it must not be traced
    every step.
    """
    if inspect.ismethod(f):
        return (f.__self__, f.__func__)
    if inspect.isfunction(f):
        return (f.__code__, *_closure(f))
    return (f,)


def _cache_key(f: object, x: Tensor) -> tuple:
    return (tuple(id(obj) for obj in _key_objects(f)), x.shape[1], x.dtype, x.device)


_CACHE: "OrderedDict[tuple, tuple[tuple[object, ...], TracedProgram]]" = OrderedDict()


def _references(objects: tuple[object, ...], key: tuple) -> tuple[object, ...]:
    """Weak references to the key's objects where they allow one; the entry goes when one of them does
    (the program holds the module's parameters: a deleted model must not stay alive in the cache)."""

    def forget(_: object) -> None:
        _CACHE.pop(key, None)

    references: list[object] = []
    for obj in objects:
        try:
            references.append(weakref.ref(obj, forget))
        except TypeError:  # ints, strings, tuples: compared by identity through a strong reference
            references.append(lambda obj=obj: obj)
    return tuple(references)


def _alive(references: tuple[object, ...], objects: tuple[object, ...]) -> bool:
    return len(references) == len(objects) and all(ref() is obj for ref, obj in zip(references, objects))  # type: ignore[operator]


def clear_trace_cache() -> None:
    """Forget every traced program (the next call of each function traces it again)."""
    _CACHE.clear()


def trace_cache_info() -> list[dict[str, object]]:
    """One entry per cached program: the function's name, input width, dtype, device, nodes, trace seconds,
    the reason it is refused (None when served) and the reason its Hessians are not served by mixed mode
    (``mixed_refused``; None when they are, for requests where mixed mode is the faster algorithm)."""
    return [{"function": program.name, "width": key[1], "dtype": key[2], "device": key[3], "nodes": program.nodes,
             "trace_seconds": program.trace_seconds,
             "refused": None if program.refusal is None else str(program.refusal),
             "mixed_refused": None if program.mixed_refusal is None else str(program.mixed_refusal)}
            for key, (_, program) in list(_CACHE.items())]


def program_for(f: object, x: Tensor, dry_run: "object") -> TracedProgram:
    """The traced program of f for inputs like x (N, d), from the cache or traced now.

    ``dry_run(program, x)`` runs a new program once on two samples so that a
    refusal is found (and cached) when f is traced, not on a later call.
    """
    sig = signature(f)
    key, objects = _cache_key(f, x), _key_objects(f)
    hit = _CACHE.get(key)
    valid = hit is not None and _alive(hit[0], objects) and hit[1].signature == sig
    if torch.compiler.is_compiling():  # dynamo traces the lookup and the program's run, never make_fx
        if not valid:
            raise NotServed("f has no traced program yet, and tracing cannot run inside torch.compile: call "
                            "derivatives (or directional_derivatives) with f once outside torch.compile first, "
                            "on inputs of the same width, dtype and device")
        return hit[1]  # type: ignore[index]
    if valid:
        _CACHE.move_to_end(key)
        return hit[1]  # type: ignore[index]
    program = _trace(f, x)
    program.signature = sig
    if program.refusal is None:
        try:
            dry_run(program, x)
        except BadOutput as error:  # f's output is wrong: said as the autograd engine says it (not cached)
            raise error.error from None
        except (SamplesMix, NotServed) as error:
            program.refusal = error
        except Exception as error:  # noqa: BLE001 - a rule's failure is a refusal, said with its cause
            program.refusal = NotServed(f"the traced program failed: {type(error).__name__}: {first_line(error)}")
    _CACHE[key] = (_references(objects, key), program)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return program


def first_line(error: BaseException) -> str:
    """The first line of an error's message ("" when it has none): what a refusal quotes."""
    text = str(error).strip().splitlines()
    return text[0] if text else ""


def _trace(f: object, x: Tensor) -> TracedProgram:
    name = getattr(f, "__qualname__", None) or type(f).__name__
    d = x.shape[1]
    example_n = 3 if d == 2 else 2  # neither 0 nor 1 (specialised sizes), and not d (duck sizing)
    start = time.perf_counter()
    try:
        _anchor_source_lines(f)
        with torch.inference_mode(False):
            example = torch.zeros(example_n, d, dtype=x.dtype, device=x.device)
            graph_module = make_fx(_Calling(f), tracing_mode="symbolic", _allow_non_fake_inputs=True,
                                   decomposition_table=_DECOMPOSITIONS, record_stack_traces=True)(example)
        _check_batch_statistics(graph_module)
        _check_mutations(graph_module)
        graph_module.graph.eliminate_dead_code()  # autograd's saved-tensor detaches and aliases, unused outputs
        _scale_linear_layers(graph_module)
        interpreter = Interpreter(graph_module)
    except (SamplesMix, NotServed) as error:
        return TracedProgram(name, None, time.perf_counter() - start, error)
    except Exception as error:  # noqa: BLE001 - any trace failure: not served, with the failure named
        reason = f"tracing f failed ({type(error).__name__}: {first_line(error)})"
        return TracedProgram(name, None, time.perf_counter() - start, NotServed(reason))
    return TracedProgram(name, interpreter, time.perf_counter() - start, None, len(graph_module.graph.nodes))


_BATCH_NORMS = frozenset({"_native_batch_norm_legit", "native_batch_norm", "_native_batch_norm_legit_functional",
                          "batch_norm"})
_TRAINING_ARGUMENT = 5  # their argument `training` (momentum for the no_stats overload, always batch statistics)


class _Calling(nn.Module):
    """f called from a module's forward: make_fx records source lines for modules only."""

    def __init__(self, f: object) -> None:
        super().__init__()
        object.__setattr__(self, "function", f)  # not registered: f's own structure is what the trace sees

    def forward(self, x: Tensor) -> object:
        return self.function(x)  # type: ignore[operator]


def _anchor_source_lines(f: object) -> None:
    """Let make_fx record f's own lines (it records frames named "forward" only, and registered anchors)."""
    anchor = getattr(torch.fx.proxy, "_register_stack_trace_anchor", None)  # private; absent in older torch
    function = getattr(f, "__func__", f)
    if anchor is not None and getattr(function, "__code__", None) is not None:
        anchor(function)


def _check_batch_statistics(graph_module: torch.fx.GraphModule) -> None:
    """Refuse batch norms that normalise with batch statistics (their running-statistics updates come first)."""
    for node in graph_module.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        if target.overloadpacket.__name__ not in _BATCH_NORMS:
            continue
        position = _TRAINING_ARGUMENT
        training = node.args[position] if len(node.args) > position else node.kwargs.get("training", True)
        if training or target._overloadname == "no_stats":
            raise SamplesMix(f"a batch norm in training mode normalises with batch statistics ({op_name(target)} "
                             f"at {source_line(node)}); call .eval() on it")


def _scale_linear_layers(graph_module: torch.fx.GraphModule) -> None:
    """c * (x W^T + b) -> addmm(b, x, W^T, beta=c, alpha=c): the scale goes to the weights, not the jet (SIREN)."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten.mul.Tensor, aten.mul.Scalar) or len(node.args) != 2:
            continue
        first, second = node.args
        linear, scale = (first, second) if isinstance(first, torch.fx.Node) else (second, first)
        if (not isinstance(linear, torch.fx.Node) or linear.target is not aten.addmm.default
                or len(linear.users) != 1 or isinstance(scale, (torch.fx.Node, bool))
                or not isinstance(scale, (int, float))):
            continue
        kwargs = dict(linear.kwargs)
        kwargs["beta"] = kwargs.get("beta", 1) * scale
        kwargs["alpha"] = kwargs.get("alpha", 1) * scale
        linear.kwargs = kwargs
        node.replace_all_uses_with(linear)
        graph.erase_node(node)
    graph.lint()


def _check_mutations(graph_module: torch.fx.GraphModule) -> None:
    """Refuse in-place ops; the rules are functional (an in-place op on an intermediate is rewritten)."""
    order = {node: index for index, node in enumerate(graph_module.graph.nodes)}
    for node in graph_module.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        if not target._schema.is_mutable:
            continue
        base = target.overloadpacket.__name__
        functional_packet = getattr(aten, base[:-1], None) if base.endswith("_") else None
        functional = getattr(functional_packet, target._overloadname, None) if functional_packet else None
        mutated = node.args[0] if node.args else None
        if (functional is None or not isinstance(mutated, torch.fx.Node) or mutated.op != "call_function"
                or any(order[user] > order[node] for user in mutated.users if user is not node)):
            raise NotServed(f"f mutates a tensor in place ({op_name(target)})")
        node.target = functional
