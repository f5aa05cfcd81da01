"""The benchmark suite's workloads: what is computed, at which sizes, by which methods.

Families (the names ``--workloads`` filters on):

  elementwise  (y, y', y'') of tanh and of the seeds' polynomial x**3 + 2x at
               every entry of a 1-D tensor; "batch" is the number of entries
  laplacian    value, gradient and Laplacian of a scalar MLP at N points
  hessian      value, gradient and full Hessian
  diagonal     value, gradient and Hessian diagonal
  rows         value, gradient and Hessian rows {0, 1}
  training     a PINN-style training step: value, gradient and Laplacian of the
               MLP, a loss on them, and its gradient with respect to every
               parameter of the network
  newton       the seeds' parameter-space Newton solve (H + damping I) step = -g
               for an MLP regression loss (see hoderiv_bench.newton)

Operator families (hoderiv_bench.operators; ``--suite operators``, and in ``--full`` at
larger sizes): the differential operators beyond the Hessian, on tanh MLPs, each value,
gradient and operator (the coefficients for directional) in one call:

  weighted     the weighted Laplacian tr(sigma sigma^T H), sigma (d, r) fixed, r = d/2:
               derivatives(f, x, hessian=Laplacian(weights=sigma))
  partial      the Laplacian over every input but the last (space only, as for a heat
               equation in (x, t)): Laplacian(dims=[0, ..., d - 2])
  hutchinson   the randomized Laplacian, 16 Rademacher directions per sample from a
               generator seeded afresh on every call: Laplacian(samples=16, generator=g)
  bilaplacian  the exact bi-Laplacian: Bilaplacian()
  directional  directional_derivatives(f, x, v, order=4) along a fixed unit vector v

MLPs are d -> width x depth hidden layers -> 1 with tanh, SiLU or sin (the
:class:`~hoderiv_bench.methods.Sine` module, which the Taylor engine does
not serve) activations, float32 or float64, PyTorch's default initialisation
from a fixed seed.

Architectures (the ``architecture`` field; see hoderiv_bench.architectures):
every workload above is the plain Sequential MLP, architecture ``mlp``, and
keeps its name. The architecture suite (``--suite architectures``) runs the
laplacian, training and hessian (full Hessian) families on MLP-like models that
are not a plain Sequential, each a per-sample function (N, d) -> (N, 1):

  residual     h = Linear(d, w)(x); depth blocks h = h + tanh(Linear(w, w)(h)); Linear(w, 1)
  fourier      fixed random Fourier features cat([sin(x B), cos(x B)]), B (d, w/2) a buffer,
               then a tanh MLP of the given width and depth
  siren        a Sequential of Linear and Sine modules, sin(30 z) first and sin(z) after,
               SIREN-initialised from the seed
  hardbc       x_0 (1 - x_0) mlp(x) for a tanh MLP (a hard boundary condition; slices x)

next to the plain tanh MLP (``mlp``) at the same sizes: widths 64 and 128,
d = 2 and 8, depth 4, N = 4096 (``--batch``/``--dims``/``--widths``/``--depths``
replace these axes; the grid is their product). Their names carry the
architecture: ``laplacian/residual/tanh d=8 w=64 L=4 N=4096``; ``-w residual``
(an architecture), ``-w siren`` or any name glob selects them. The Taylor
engine traces these models (docs/traced.md); a model it cannot serve is
reported "not served" for the kernel method, with the engine's reason.

The operator suite (``--suite operators``, 10 workloads, about 25 s on a 2-core CPU) runs
each operator family on a tanh MLP d -> 32 x 2 -> 1 at N = 128 and 512, with d = 8 for
weighted (r = 4), 4 for partial, 16 for hutchinson, 3 for bilaplacian and 4 for directional
(``--dims`` sets one d for every family; ``--batch``/``--widths``/``--depths`` replace
their axes; the grid is their product). ``--full`` adds them at larger sizes: weighted on
50 -> 768, 768, 512, 512 -> 1 (r = 25) at N = 256, hutchinson at d = 100 (100 -> 128 x 3
-> 1, N = 1024), bilaplacian on 3 -> 64 x 3 -> 1 at N = 1024, partial and directional on
8 -> 128 x 4 -> 1 at N = 4096 (fixed sizes, as newton's). A network whose hidden widths
differ names them all: ``weighted/tanh d=50 w=768,768,512,512 L=4 N=256``.

Methods (columns of the report), each a zero-argument callable built by
:func:`build_case`:

  kernel    this package's compiled kernel path: derivatives(..., backend="kernel")
            (the Taylor engine; on CUDA backend="auto" picks the same path), or
            elementwise_derivatives(..., backend="kernel")
  autograd  this package's autograd engine: backend="autograd" /
            hoderiv_ext.newton_step
  nested    the seeds' nested torch.autograd.grad loops (create_graph=True)
  func      torch.func (vmap of jacfwd(jacrev) / jvp rows / grad(grad))
  compile   torch.compile of the fastest eager baseline (added by the runner)
  jet, jet-compile
            torch-jet's collapsed Taylor mode, vmapped, eager and under
            torch.compile (hoderiv_bench.jet_methods): optional, offered for the
            laplacian and training families, and torch-jet's own weighted
            Laplacian and bi-Laplacian for the weighted and bilaplacian families,
            only when ``import jet`` works

For the operator families, nested and func are each family's own hand-written and
torch.func routes (hoderiv_bench.operators).

The reference every method is checked against is the nested-autograd
computation in float64 on the same device (plain torch autograd, the simplest
code there is). For hutchinson it is the same random estimate: every method
draws the same directions from a generator seeded the same way.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from hoderiv_ext import NotServed, Polynomial, derivatives, directional_derivatives
from hoderiv_bench.architectures import ARCHITECTURE_FUNCTIONS, ARCHITECTURES, build_model
from hoderiv_bench.compile_once import CompiledOnFirstCall
from hoderiv_bench.compiled_kernel import KERNEL_COMPILE, compiled_kernel
from hoderiv_bench.elementwise import elementwise_methods, nested_elementwise
from hoderiv_bench.jet_methods import (COMPILED_JET, JET_FAMILIES, JET_METHODS, JET_OPERATOR_FAMILIES, jet_methods,
                                        jet_operator)
from hoderiv_bench.methods import METHODS, Sine, training_loss
from hoderiv_bench.newton import NEWTON_METHODS, Regression, regression
from hoderiv_bench.operators import (OPERATOR_DIMS, OPERATOR_FAMILIES, OPERATOR_METHODS, OperatorSpec, jet_outputs,
                                     operator_mlp, operator_spec)

MLP_FAMILIES = ("elementwise", "laplacian", "hessian", "diagonal", "rows", "training", "newton")
FAMILIES = MLP_FAMILIES + OPERATOR_FAMILIES
INPUT_FAMILIES = ("laplacian", "hessian", "diagonal", "rows")
MLP_FUNCTIONS = ("tanh", "silu", "sin")
ELEMENTWISE_FUNCTIONS = ("tanh", "cubic")
PACKAGE_METHODS = ("kernel", "autograd")
BASELINE_METHODS = ("nested", "func", "compile")
METHOD_ORDER = PACKAGE_METHODS + BASELINE_METHODS
# Listed for a workload only when its case offers them (or says why it cannot): the package's compiled path
# (input-derivative and training workloads) and torch-jet, when installed.
OPTIONAL_PACKAGE_METHODS = (KERNEL_COMPILE,)
OPTIONAL_METHODS = OPTIONAL_PACKAGE_METHODS + JET_METHODS
# Methods that are torch.compile'd: run only when the compile baseline is on; memory is not metered on CPU.
COMPILED_METHODS = frozenset({COMPILED_JET, KERNEL_COMPILE})
ARCHITECTURE_FAMILIES = ("laplacian", "training", "hessian")

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "silu": nn.SiLU, "sin": Sine}
REQUESTS: dict[str, Callable[[int], object]] = {
    "laplacian": lambda d: "laplacian",
    "hessian": lambda d: "full",
    "diagonal": lambda d: "diagonal",
    "rows": lambda d: [0, 1] if d > 1 else [0],
}
NO_KERNEL_FOR_PARAMETERS = "parameter-space derivatives (hoderiv_ext.newton_step) have no kernel path"


@dataclass(frozen=True)
class Workload:
    """One row of the report. ``batch``: samples N (entries for elementwise, data points for newton)."""

    family: str
    function: str
    batch: int
    d: int | None = None
    width: int | None = None
    depth: int | None = None
    architecture: str = "mlp"  # hoderiv_bench.architectures; "mlp" keeps the name without it
    widths: tuple[int, ...] = ()  # hidden widths when they differ (width is then the first, depth their count)

    @property
    def _kind(self) -> str:
        """family/function, with the architecture between them when it is not the plain MLP."""
        if self.architecture == "mlp" or self.family == "elementwise":
            return f"{self.family}/{self.function}"
        return f"{self.family}/{self.architecture}/{self.function}"

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden layers' widths, first to last."""
        return self.widths or (self.width,) * (self.depth or 0)

    @property
    def _width(self) -> str:
        return ",".join(map(str, self.widths)) if self.widths else str(self.width)

    @property
    def name(self) -> str:
        if self.family == "elementwise":
            return f"elementwise/{self.function} n={self.batch}"
        return f"{self._kind} d={self.d} w={self._width} L={self.depth} N={self.batch}"

    @property
    def series(self) -> str:
        """The workload without its batch size: one line of the speed-up plot."""
        if self.family == "elementwise":
            return f"elementwise/{self.function}"
        return f"{self._kind} d={self.d} w={self._width} L={self.depth}"

    def params(self) -> dict[str, Any]:
        return {"family": self.family, "function": self.function, "architecture": self.architecture,
                "batch": self.batch, "d": self.d, "width": self.width, "depth": self.depth,
                "widths": list(self.hidden) if self.widths else None}


def operator_workload(family: str, d: int, hidden: tuple[int, ...], batch: int) -> Workload:
    """An operator workload on a tanh MLP d -> hidden -> 1 (``widths`` kept only when they differ)."""
    uniform = len(set(hidden)) == 1
    return Workload(family, "tanh", batch, d, hidden[0], len(hidden), widths=() if uniform else tuple(hidden))


@dataclass
class Case:
    """A workload's inputs, built on a device: its methods, its reference, what cannot serve it."""

    methods: dict[str, Callable[[], Any]]
    reference: Callable[[], Any]
    not_served: dict[str, str] = field(default_factory=dict)
    useful_bytes: int | None = None  # bytes an ideal memory-bound implementation moves (elementwise)
    notes: dict[str, Any] = field(default_factory=dict)
    # method -> an object whose ``compile_seconds`` is set by the method's first call (jet-compile)
    compiled: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class Sizes:
    """Which sizes a suite runs; the CLI's --batch/--dims/--widths/--depths replace the MLP axes.

    The batch sweep runs for every family with the ``sweep_functions``; the other
    MLP functions run at the largest batch only, for ``other_families``. The d,
    width and depth sweeps use tanh at the largest batch.
    """

    elementwise_numel: tuple[int, ...]
    batches: tuple[int, ...]
    base: tuple[int, int, int]  # d, width, depth of the batch sweep
    sweep_functions: tuple[str, ...] = MLP_FUNCTIONS
    other_families: tuple[str, ...] = INPUT_FAMILIES + ("training",)
    dims: tuple[int, ...] = ()  # extra d values (laplacian, hessian, diagonal, rows)
    widths: tuple[int, ...] = ()  # extra widths (laplacian, hessian)
    depths: tuple[int, ...] = ()  # extra depths (laplacian, hessian)
    newton: tuple[tuple[int, int, int, int], ...] = ()  # (d, width, depth, N)
    operators: tuple[tuple[str, int, tuple[int, ...], int], ...] = ()  # (family, d, hidden widths, N)


QUICK = Sizes(
    elementwise_numel=(1 << 16, 1 << 20),
    batches=(128, 1024),
    base=(4, 32, 2),
    sweep_functions=("tanh",),
    other_families=("laplacian", "hessian", "training"),
    dims=(16,),
    newton=((2, 8, 1, 256),),
)

FULL = Sizes(
    elementwise_numel=(1 << 16, 1 << 20, 1 << 24),
    batches=(256, 4096, 65536),
    base=(8, 128, 4),
    dims=(2, 32),
    widths=(32, 512),
    depths=(2, 8),
    newton=((2, 16, 1, 512), (2, 32, 2, 4096)),
    operators=(("weighted", 50, (768, 768, 512, 512), 256),
               ("partial", 8, (128,) * 4, 4096),
               ("hutchinson", 100, (128,) * 3, 1024),
               ("bilaplacian", 3, (64,) * 3, 1024),
               ("directional", 8, (128,) * 4, 4096)),
)


@dataclass(frozen=True)
class ArchitectureSizes:
    """The architecture suite: every architecture x family x d x width x depth x batch (a product)."""

    batches: tuple[int, ...] = (4096,)
    dims: tuple[int, ...] = (2, 8)
    widths: tuple[int, ...] = (64, 128)
    depths: tuple[int, ...] = (4,)
    architectures: tuple[str, ...] = ARCHITECTURES  # the plain tanh MLP ("mlp") first, for comparison
    families: tuple[str, ...] = ARCHITECTURE_FAMILIES

    @property
    def base(self) -> tuple[int, int, int]:
        return self.dims[0], self.widths[0], self.depths[0]


ARCHITECTURE_SUITE = ArchitectureSizes()


@dataclass(frozen=True)
class OperatorSizes:
    """The operator suite: every operator family x d x width x depth x batch (a product), where an
    empty ``dims`` means each family's own d (hoderiv_bench.operators.OPERATOR_DIMS)."""

    batches: tuple[int, ...] = (128, 512)
    dims: tuple[int, ...] = ()
    widths: tuple[int, ...] = (32,)
    depths: tuple[int, ...] = (2,)
    families: tuple[str, ...] = OPERATOR_FAMILIES

    @property
    def base(self) -> tuple[int | None, int, int]:
        return (self.dims[0] if self.dims else None), self.widths[0], self.depths[0]

    def dims_of(self, family: str) -> tuple[int, ...]:
        return self.dims or (OPERATOR_DIMS[family],)


OPERATOR_SUITE = OperatorSizes()
Grid = Sizes | ArchitectureSizes | OperatorSizes
SUITES: dict[str, Grid] = {"quick": QUICK, "full": FULL, "architectures": ARCHITECTURE_SUITE,
                           "operators": OPERATOR_SUITE}


def architecture_function(architecture: str) -> str:
    """The activation (the workload's ``function``) of an architecture: tanh, or sin for siren."""
    return ARCHITECTURE_FUNCTIONS.get(architecture, "tanh")


def with_overrides(sizes: Grid, batches: list[int] | None = None, dims: list[int] | None = None,
                   widths: list[int] | None = None, depths: list[int] | None = None) -> Grid:
    """Replace the MLP axes: --batch sets the batch sweep; --dims/--widths/--depths set the values
    swept around the base network (the first of each becomes the base). For the architecture
    and operator suites, each replaces its axis of the product. The fixed sizes of the newton
    and operator workloads of the quick and full grids stay as they are."""
    if isinstance(sizes, (ArchitectureSizes, OperatorSizes)):
        axes = {"batches": batches, "dims": dims, "widths": widths, "depths": depths}
        return replace(sizes, **{key: tuple(dict.fromkeys(values)) for key, values in axes.items() if values})
    d, width, depth = sizes.base
    changes: dict[str, Any] = {}
    if batches:
        changes["batches"] = tuple(dict.fromkeys(batches))
    if dims:
        d, changes["dims"] = dims[0], tuple(dims[1:])
    if widths:
        width, changes["widths"] = widths[0], tuple(widths[1:])
    if depths:
        depth, changes["depths"] = depths[0], tuple(depths[1:])
    changes["base"] = (d, width, depth)
    return replace(sizes, **changes)


def architecture_suite(sizes: ArchitectureSizes) -> list[Workload]:
    """The architecture workloads: for each family, d, width, depth and batch, every architecture in turn."""
    out = [Workload(family, architecture_function(architecture), n, d, width, depth, architecture)
           for family in sizes.families for d in sizes.dims for width in sizes.widths for depth in sizes.depths
           for n in sizes.batches for architecture in sizes.architectures]
    seen: set[Workload] = set()
    return [w for w in out if not (w in seen or seen.add(w))]


def operator_suite(sizes: OperatorSizes) -> list[Workload]:
    """The operator workloads: for each family, d, width, depth, every batch in turn."""
    out = [operator_workload(family, d, (width,) * depth, n) for family in sizes.families
           for d in sizes.dims_of(family) for width in sizes.widths for depth in sizes.depths for n in sizes.batches]
    seen: set[Workload] = set()
    return [w for w in out if not (w in seen or seen.add(w))]


def suite(sizes: Grid) -> list[Workload]:
    """Every workload of a grid, without duplicates, in report order."""
    if isinstance(sizes, ArchitectureSizes):
        return architecture_suite(sizes)
    if isinstance(sizes, OperatorSizes):
        return operator_suite(sizes)
    d, width, depth = sizes.base
    largest = max(sizes.batches)
    out: list[Workload] = []
    for function in ELEMENTWISE_FUNCTIONS:
        out += [Workload("elementwise", function, n) for n in sizes.elementwise_numel]
    for family in INPUT_FAMILIES + ("training",):
        for function in MLP_FUNCTIONS:
            if function in sizes.sweep_functions:
                out += [Workload(family, function, n, d, width, depth) for n in sizes.batches]
            elif family in sizes.other_families:
                out.append(Workload(family, function, largest, d, width, depth))
        if family == "training":
            continue
        out += [Workload(family, "tanh", largest, other, width, depth) for other in sizes.dims]
        if family in ("laplacian", "hessian"):
            out += [Workload(family, "tanh", largest, d, other, depth) for other in sizes.widths]
            out += [Workload(family, "tanh", largest, d, width, other) for other in sizes.depths]
    out += [Workload("newton", "tanh", n, nd, nw, nl) for nd, nw, nl, n in sizes.newton]
    out += [operator_workload(family, od, hidden, n) for family, od, hidden, n in sizes.operators]
    seen: set[Workload] = set()
    return [w for w in out if not (w in seen or seen.add(w))]


def matches(workload: Workload, pattern: str) -> bool:
    """A filter pattern matches a family ("hessian"), a function ("sin"), an architecture ("residual";
    "mlp" is every plain MLP), or the name (glob or substring)."""
    pattern = pattern.strip()
    if pattern in (workload.family, workload.function):
        return True
    if workload.family != "elementwise" and pattern == workload.architecture:
        return True
    return fnmatch.fnmatch(workload.name, pattern) or pattern in workload.name


def select(workloads: list[Workload], patterns: list[str] | None) -> tuple[list[Workload], list[str]]:
    """The workloads matching any pattern (all when none given), and the patterns that matched nothing."""
    if not patterns:
        return list(workloads), []
    unmatched = [p for p in patterns if not any(matches(w, p) for w in workloads)]
    return [w for w in workloads if any(matches(w, p) for p in patterns)], unmatched


# ----------------------------------------------------------------------------- cases


def _mlp(workload: Workload, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The workload's network from seed 0: the plain MLP of its activation, or its architecture's model."""
    activation = ACTIVATIONS[workload.function] if workload.architecture == "mlp" else nn.Tanh
    net = build_model(workload.architecture, workload.d, workload.width, workload.depth, activation, seed=0)
    return net.to(device, dtype)


def _points(n: int, d: int, device: torch.device, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator).to(device, dtype)


def training_step(method: Callable, net: nn.Module, x: torch.Tensor, hessian: object = "laplacian") -> tuple:
    """Derivatives by ``method``, the PINN-style loss on them, and the loss's gradient w.r.t. all parameters."""
    return _loss_and_gradient(training_loss(method(net, x, hessian)), net)


def _loss_and_gradient(loss: torch.Tensor, net: nn.Module) -> tuple:
    params = list(net.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    return loss.detach(), torch.cat([g.reshape(-1) for g in grads])


def _elementwise_case(workload: Workload, device: torch.device, dtype: torch.dtype) -> Case:
    spec: object = "tanh" if workload.function == "tanh" else Polynomial([0.0, 2.0, 0.0, 1.0])
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(workload.batch, generator=generator).to(device, dtype).requires_grad_(True)
    methods = elementwise_methods(spec, x, 2)
    x64 = x.detach().to(torch.float64).requires_grad_(True)
    reference_spec = torch.tanh if workload.function == "tanh" else Polynomial([0.0, 2.0, 0.0, 1.0])
    useful = (1 + 3) * x.numel() * x.element_size()  # read x once, write y, y', y''
    return Case(methods, lambda: nested_elementwise(reference_spec, x64, 2), useful_bytes=useful)


def _input_case(workload: Workload, device: torch.device, dtype: torch.dtype) -> Case:
    net, x = _mlp(workload, device, dtype), _points(workload.batch, workload.d, device, dtype)
    hessian = REQUESTS[workload.family](workload.d)
    net64, x64 = copy.deepcopy(net).to(torch.float64), x.to(torch.float64)
    names = {"kernel": "taylor", "autograd": "autograd", "nested": "nested", "func": "func"}
    methods = {name: (lambda m=METHODS[key]: m(net, x, hessian)) for name, key in names.items()}
    case = Case(methods, lambda: METHODS["nested"](net64, x64, hessian))
    _kernel_notes(case, net, workload.d, hessian)
    _add_kernel_compile(case, net, lambda points: METHODS["taylor"](net, points, hessian), x,
                        lambda compiled: compiled(x))
    if workload.family in JET_FAMILIES:
        _add_jet(case, net, x, lambda derivatives_of: derivatives_of(x))
    return case


def _training_case(workload: Workload, device: torch.device, dtype: torch.dtype) -> Case:
    net, x = _mlp(workload, device, dtype), _points(workload.batch, workload.d, device, dtype)
    net64, x64 = copy.deepcopy(net).to(torch.float64), x.to(torch.float64)
    names = {"kernel": "taylor", "autograd": "autograd", "nested": "nested", "func": "func"}
    methods = {name: (lambda m=METHODS[key]: training_step(m, net, x)) for name, key in names.items()}
    case = Case(methods, lambda: training_step(METHODS["nested"], net64, x64))
    _kernel_notes(case, net, workload.d, "laplacian")
    _add_kernel_compile(case, net, lambda points: training_loss(METHODS["taylor"](net, points, "laplacian")),
                        x, lambda compiled: _loss_and_gradient(compiled(x), net))
    _add_jet(case, net, x, lambda derivatives_of: training_step(lambda n, p, h: derivatives_of(p), net, x))
    return case


def _add_kernel_compile(case: Case, net: nn.Module, fn: Callable[[torch.Tensor], Any], x: torch.Tensor,
                        run: Callable[[CompiledOnFirstCall], Any]) -> None:
    """The package's compiled path (hoderiv_bench.compiled_kernel), where the kernel path serves the case: a
    plan, or a traced function (traced by an eager call before it is compiled)."""
    if "kernel" not in case.methods:
        case.not_served[KERNEL_COMPILE] = case.not_served.get("kernel", "the kernel path does not serve this case")
        return
    compiled = compiled_kernel(fn, x.device)
    case.methods[KERNEL_COMPILE] = lambda: run(compiled)
    case.compiled[KERNEL_COMPILE] = compiled


def _add_jet(case: Case, net: nn.Module, x: torch.Tensor, run: Callable[[Callable], Any], **how: Any) -> None:
    """The optional torch-jet methods (nothing when torch-jet is not installed); ``how``: jet_methods' build, finish."""
    methods, not_served, compiled = jet_methods(net, x, run, **how)
    case.methods.update(methods)
    case.not_served.update(not_served)
    case.compiled.update(compiled)


def _kernel_notes(case: Case, net: nn.Module, d: int, hessian: object) -> None:
    """Mark the kernel path not served (with the engine's reason), or note which algorithm it runs."""
    weight = next(net.parameters())
    sample = torch.zeros((1, d), dtype=weight.dtype, device=weight.device)
    _probe_kernel(case, lambda: derivatives(net, sample, hessian=hessian, backend="kernel", create_graph=False))


def _probe_kernel(case: Case, probe: Callable[[], object]) -> None:
    """Run ``probe`` (the kernel path on one sample): on NotServed drop the kernel method with the engine's
    reason, else note the algorithm it ran. Any other exception is left to the method's own check, which
    reports it failed."""
    try:
        result = probe()
    except NotServed as error:
        case.methods.pop("kernel")
        case.not_served["kernel"] = error.reason
        return
    except Exception:  # noqa: BLE001 - reported by the check (status failed, with the error)
        return
    if hasattr(result, "algorithm"):  # a Derivatives (directional derivatives are a plain tensor)
        case.notes["kernel_algorithm"] = result.algorithm


def _operator_case(workload: Workload, device: torch.device, dtype: torch.dtype) -> Case:
    torch.manual_seed(0)
    net = operator_mlp(workload.d, workload.hidden).to(device, dtype)
    x = _points(workload.batch, workload.d, device, dtype)
    spec = operator_spec(workload.family, workload.d, device, dtype)
    net64, x64, spec64 = copy.deepcopy(net).to(torch.float64), x.to(torch.float64), spec.to(device, torch.float64)
    methods = {name: (lambda m=method: m(net, x, spec)) for name, method in OPERATOR_METHODS.items()}
    case = Case(methods, lambda: OPERATOR_METHODS["nested"](net64, x64, spec64), notes={"operator": spec.describe()})
    _operator_kernel_notes(case, net, x, spec)
    if workload.family in JET_OPERATOR_FAMILIES:
        def build() -> Callable[[torch.Tensor], torch.Tensor]:
            return jet_operator(net, workload.family, workload.d, dtype, device, spec.sigma)

        _add_jet(case, net, x, lambda operator_of: jet_outputs(net, x, operator_of), build=build,
                 finish=lambda batched, points: batched(points))
    return case


def _operator_kernel_notes(case: Case, net: nn.Module, x: torch.Tensor, spec: OperatorSpec) -> None:
    """As :func:`_kernel_notes`, for an operator request, probed on the first sample."""
    if spec.family == "directional":
        _probe_kernel(case, lambda: directional_derivatives(net, x[:1], spec.v, order=spec.order, backend="kernel",
                                                            create_graph=False))
        return
    _probe_kernel(case, lambda: derivatives(net, x[:1], hessian=spec.request(x), backend="kernel",
                                            create_graph=False, check_independence=False))


def _newton_case(workload: Workload, device: torch.device, dtype: torch.dtype) -> Case:
    problem = regression(workload.d, workload.width, workload.depth, workload.batch, device, dtype)
    problem64 = Regression(copy.deepcopy(problem.net).to(torch.float64), problem.x.to(torch.float64),
                           problem.y.to(torch.float64), problem.damping)
    methods = {name: (lambda m=method: m(problem)) for name, method in NEWTON_METHODS.items()}
    parameters = sum(p.numel() for p in problem.params)
    return Case(methods, lambda: NEWTON_METHODS["nested"](problem64), not_served={"kernel": NO_KERNEL_FOR_PARAMETERS},
                notes={"parameters": parameters, "damping": problem.damping})


BUILDERS: dict[str, Callable[[Workload, torch.device, torch.dtype], Case]] = {
    "elementwise": _elementwise_case,
    "laplacian": _input_case,
    "hessian": _input_case,
    "diagonal": _input_case,
    "rows": _input_case,
    "training": _training_case,
    "newton": _newton_case,
    **{family: _operator_case for family in OPERATOR_FAMILIES},
}


def build_case(workload: Workload, device: torch.device, dtype: torch.dtype) -> Case:
    return BUILDERS[workload.family](workload, device, dtype)
