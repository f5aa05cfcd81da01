"""The one place that decides which engine and algorithm serve a call.

Backends (what the user asks for):

* ``"autograd"``: the autograd engine, always available.
* ``"kernel"``: the compiled kernels -- for ``derivatives`` the Taylor engine
  -- or :class:`~hoderiv_ext.core.errors.NotServed` saying why they cannot.
* ``"auto"``: the Taylor engine on every device wherever it serves the call
  (it measured faster than the autograd engine on every MLP workload it
  serves, docs/benchmarks.md), the autograd engine otherwise; a module the
  Taylor engine does not serve gets one warning per reason. For
  ``elementwise_derivatives``, the kernels on CUDA, and on CPU where they
  measured faster than autograd (:data:`CPU_ELEMENTWISE_KERNEL_BELOW`).

Within the Taylor engine (:func:`taylor_algorithm`): forward Taylor mode
carries 1 + d + s slots through every GEMM (s second-order slots of the
request); mixed mode carries 1 + d forward plus one reverse sweep;
forward-over-reverse carries 1 + k forward and 1 + k reverse columns for k
Hessian rows; the reverse algorithm (value and gradient only) one forward
and one reverse column; collapsed_reverse (partial, weighted and randomized
Laplacians) 2 + r forward columns (r directions, one collapsed slot) and the
gradient by one reverse column, where forward Taylor mode carries 2 + d + r.
The last four serve scalar outputs only. Without a
second-order request a scalar output goes reverse: against the autograd
engine it measured 1.3-4x on forward passes and 0.8-1.2x on training steps
(tanh MLPs d = 2-16, width 16-128, N = 1-2048, 2026-12-02), where forward
Taylor mode was 0.13-1.1x in training. Selected rows (fewer
than d) always go forward-over-reverse: its cost grows with k, the others'
with d, and it measured 1.0-2.0x nested autograd where forward Taylor and
mixed mode were 0.2-0.6x (docs/taylor.md). Mixed mode is chosen when forward
Taylor needs more than ``MIXED_MODE_SLOT_RATIO`` times the GEMM columns mixed
mode needs. Measured on CPU on forward passes AND training steps
(benchmarks/bench_taylor_algorithms.py, table in docs/taylor.md): with 2.0
the full Hessian goes mixed from d = 4, where mixed is 1.45x+ faster in
training; the diagonal and the Laplacian stay on forward Taylor. It leaves
1.05-1.5x on the table for the full Hessian at d = 3 and the diagonal at
d >= 8 on layers of width >= 64, which slot counts cannot separate from the
width-32 cases where mixed mode is 1.4-2x slower.

The choice for a plain network depends on the request, the input width, dtype,
device and backend and the plan alone, so it is kept with the plan
(:func:`remembered_choice`, at most :data:`MAX_PREPARED_PER_PLAN` per plan) and
replayed while the plan is current; the plan cache's snapshot check decides that.

Within the autograd engine (:func:`batch_autograd_passes`): measured with
``benchmarks/bench_reference_methods.py`` (tanh MLP, width 128, depth 4,
float32, one output; 2-core CPU, torch 2.14.1, 2026-11-22; each time relative
to the fastest mechanism of its row; the Laplacian needs all d Hessian rows):

=====  ===  ==========  ==========  ==========  ==========
N      d    func        batched     loop        fastest
=====  ===  ==========  ==========  ==========  ==========
64     2    3.1-3.8     1.06-1.25   1.00        loop
64     8    1.9-2.2     1.00        1.40-1.43   batched
64     32   1.5         1.00        1.38-1.52   batched
256    4    1.6-1.7     1.00-1.07   1.00-1.04   even
256    16   1.3         1.00-1.04   1.00-1.09   even
1024   16   1.7-1.9     1.13-1.36   1.00        loop
4096   2    1.4-1.7     1.06-1.25   1.00        loop
4096   8    1.1         1.00-1.09   1.00-1.02   even
4096   32   1.9-2.7     1.96-2.12   1.00        loop
=====  ===  ==========  ==========  ==========  ==========

(ranges: create_graph True / False.) torch.func is never the fastest on CPU
(vmap over batch-of-one calls costs more than the batched calls autograd
makes). Batching the passes over rows pays while the batch is small and there
are several passes (N < 256 and at least 4 passes: the passes are
overhead-bound) and costs at large N (k copies of every intermediate no
longer fit in cache). On CUDA nothing has been measured yet: the passes are
batched while N times the number of passes stays below 2^20 rows of work, on
the grounds that GPU passes of that size are launch-bound.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.core.independence import check_no_batch_statistics, probe_independence, reachable_modules
from hoderiv_ext.core.validation import check_output
from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Engine
from hoderiv_ext.engines.taylor.forward import PreparedForward
from hoderiv_ext.engines.taylor.plan import TaylorPlan, build_plan
from hoderiv_ext.engines.taylor.slots import layout_for
from hoderiv_ext.engines.taylor.traced.capture import TracedProgram, program_for
from hoderiv_ext.engines.taylor.traced.jets import SamplesMix
from hoderiv_ext.engines.taylor.traced.mixed import dry_run_mixed
from hoderiv_ext.engines.taylor.traced.run import dry_run
from hoderiv_ext.ops.library import build_info, extension_loaded, has_kernels_for

Backend = Literal["auto", "kernel", "autograd"]
BACKENDS: tuple[str, ...] = ("auto", "kernel", "autograd")
KERNEL_DTYPES = (torch.float32, torch.float64)

MIXED_MODE_SLOT_RATIO = 2.0
# A traced program's mixed mode runs the graph a second time on plain values for its adjoints, and a
# training step differentiates that reverse sweep once more: it pays from about twice the plans' ratio.
# Measured (CPU, 1 thread, N = 1024, width 32, residual and hard-BC models, 2026-12-04), time of forward
# Taylor mode over mixed mode, training step / eager call, at forward slots / (2 + d): full Hessian d = 4
# (2.5) 0.65-0.69x / 0.73-1.39x, d = 8 (4.5) 1.74-1.76x / 2.4-3.8x, d = 16 (8.5) 3.2-3.4x / 3.8-5.4x;
# 4 of 8 rows (4.1; k rows carry k d pair slots) 0.79-0.87x / 1.15-1.28x.
TRACED_MIXED_SLOT_RATIO = 4.2
# Elementwise on CPU, backend="auto": the kernels serve a function below this many elements,
# autograd from there on (torch's vectorised exp/erf/... beat the kernels' scalar libm calls on
# large tensors). Functions not listed: the kernels at every size. sin and cos (vectorised
# sin_cos), autograd time / kernel time at 2^12 / 2^14 / 2^16 / 2^18 / 2^20 elements, (y, y',
# y''), float32, 2 threads, load 0.7, 2026-12-03: sin 7.1 / 5.2 / 4.2 / 4.2 / 2.9, cos 10.7 /
# 5.3 / 4.4 / 3.3 / 3.7. The others, measured the same way on 2026-12-02 at
# 2^12 / 2^14 / 2^17 / 2^20 elements:
# exp 2.9 / 1.3 / 0.6 / 0.7, identity 1.5 / 1.4 / 0.6 / 0.3,
# relu 5.0 / 2.4 / 2.4 / 0.9, leaky_relu 4.4 / 3.1 / 1.9 / 0.9, elu 3.7 / 2.7 / 1.2 / 0.3; the
# others 2.0-23x at every size (tanh 4.2-5.9, sigmoid 2.0-4.8, softplus 2.5-7.0, silu 4.6-9.2,
# gelu_tanh 16-23, polynomial 4.0-14). gelu (erf form; its CDF in plain arithmetic) at
# 2^12 / 2^14 / 2^16 / 2^18 / 2^20, the same way, load 0.8-1.2, 2026-12-04: 4.1 / 2.0 / 1.6 / 1.5 / 1.5.
# The elementary functions, the same way (one run, 2 threads,
# load ~0.9, 2026-12-03; x in [0.5, 1.5], pow with exponent 1.5): log 4.6 / 1.9 / 1.2 / 0.8,
# log1p 2.2 / 1.3 / 0.8 / 1.2, expm1 2.3 / 1.3 / 0.7 / 0.8, pow 4.1 / 1.1 / 0.6 / 1.0,
# erf 3.6 / 0.9 / 0.3 / 0.5, atan 3.1 / 1.1 / 0.7 / 0.9, tan 1.9 / 0.5 / 0.3 / 0.6,
# sinh 2.2 / 1.8 / 1.7 / 0.9; at every size: cosh 1.4-2.0, sqrt 1.7-11, rsqrt 1.7-6.3,
# reciprocal 4.5-9.1, square 5.4-13, abs 3.2-10.
CPU_ELEMENTWISE_KERNEL_BELOW: dict[str, int] = {
    "exp": 1 << 14, "identity": 1 << 15,
    "relu": 1 << 18, "leaky_relu": 1 << 18, "elu": 1 << 17,
    "log": 1 << 18, "log1p": 1 << 15, "expm1": 1 << 15, "pow": 1 << 15, "erf": 1 << 13, "atan": 1 << 15,
    "tan": 1 << 13, "sinh": 1 << 18,
}
# The autograd engine batches its passes on CPU below this many samples, from this many passes.
CPU_BATCHED_BELOW_N = 256
CPU_BATCHED_FROM_PASSES = 4
# On CUDA (not measured yet): batch while samples x passes stay below this many rows of work.
CUDA_BATCHED_BELOW_WORK = 1 << 20


@dataclass(frozen=True)
class EngineChoice:
    """What serves a ``derivatives`` call.

    Attributes:
        engine: "taylor" or "autograd".
        algorithm: the Taylor engine's "forward", "mixed",
            "forward_over_reverse", ... on a plan, "traced" on a traced
            program; the autograd engine's "auto" (its passes batched by
            :func:`batch_autograd_passes`).
        plan: f as the Taylor engine's steps when f is a network of the
            layers it serves (whichever engine runs the call), else None.
        program: f as a traced aten graph the Taylor engine runs, when f is
            not such a network but every op it traces has a jet rule.
        not_served: why the Taylor engine does not serve the call, when it does not.
        checked_modules: the modules reachable from f, when the selection
            walked them and found no batch norm on batch statistics (the
            independence checks then need not walk them again).
        prepared: for forward Taylor mode on a plan, the call with its op
            arguments made once (:func:`remembered_choice`).
    """

    engine: Engine
    algorithm: str
    plan: TaylorPlan | None
    not_served: str | None = None
    program: TracedProgram | None = None
    checked_modules: tuple[nn.Module, ...] | None = None
    prepared: PreparedForward | None = None  # forward Taylor mode's op arguments, made once (a remembered choice)

    @property
    def per_sample(self) -> bool:
        """f is per-sample by construction (a plan) or by its trace: the independence checks have nothing to find."""
        return self.plan is not None or self.program is not None


def check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend  # type: ignore[return-value]


def kernel_obstacles(device: torch.device, dtype: torch.dtype) -> list[str]:
    """Reasons the compiled kernels cannot serve tensors of ``device`` and ``dtype`` (empty when they can)."""
    problems: list[str] = []
    if not extension_loaded():
        problems.append(f"the compiled extension is not loaded ({build_info()['load_error']})")
    elif not has_kernels_for(device):
        problems.append(f"this build has no compiled kernels for {device.type} tensors (see hoderiv_ext.build_info())")
    if dtype not in KERNEL_DTYPES:
        problems.append(f"the kernels serve float32 and float64, got {dtype}")
    return problems


_WARNED_REASONS: set[str] = set()


def warn_if_not_served(choice: EngineChoice, f: object) -> None:
    """Under backend="auto", one warning per reason when the Taylor engine does not serve a module."""
    if choice.not_served is not None and isinstance(f, nn.Module):
        _warn_once_not_served(choice.not_served)


def _warn_once_not_served(reason: str) -> None:
    if reason in _WARNED_REASONS:
        return
    _WARNED_REASONS.add(reason)
    warnings.warn(
        f"hoderiv_ext.derivatives: the compiled Taylor engine cannot serve this module ({reason}); "
        "using the slower autograd engine. Pass backend='autograd' to silence this warning.",
        RuntimeWarning,
        stacklevel=4,
    )


def choose_engine(
    f: object, x: Tensor, request: HessianRequest, backend: str, check_independence: bool = True
) -> EngineChoice:
    """The engine and algorithm for ``derivatives(f, x, request)`` under ``backend``, x the canonical (N, d).

    A plain network of the engine's layers runs as a plan; any other f is
    traced (:mod:`hoderiv_ext.engines.taylor.traced`) unless backend="autograd"
    or the request goes to the autograd engine anyway.

    Raises:
        NotServed: backend="kernel" and the Taylor engine cannot serve the call.
        ValueError: the trace of f shows that it mixes samples (and
            ``check_independence``), whichever backend but "autograd".
        TypeError, ValueError: f is a network of the Taylor engine's layers whose
            parameters do not match x (dtype, device, width), whichever engine.
    """
    check_backend(backend)
    program: TracedProgram | None = None
    checked_modules: tuple[nn.Module, ...] | None = None
    kernels = kernel_obstacles(x.device, x.dtype)
    try:
        plan: TaylorPlan | None = build_plan(f)
        obstacles = kernels + taylor_request_obstacles(request)
    except NotServed as error:
        plan, obstacles = None, [error.reason]
    if plan is not None:
        plan.check_operands(x)
    if backend == "autograd" or (backend == "auto" and auto_on_autograd(request)):
        return EngineChoice("autograd", "auto", plan)
    if plan is None and not kernels:
        program, traced_obstacles, checked_modules = _traced(f, x, request, check_independence)
        if program is not None:
            return EngineChoice("taylor", traced_algorithm(program, request, x.shape[1]), None, program=program)
        obstacles = [f"{obstacles[0]}, and {traced_obstacles}"]
    if obstacles:
        reason = "; ".join(obstacles)
        if backend == "kernel":
            raise NotServed(reason)
        return EngineChoice("autograd", "auto", plan, reason, checked_modules=checked_modules)
    assert plan is not None
    choice = EngineChoice("taylor", taylor_algorithm(plan, request, x.shape[1]), plan)
    return _prepare(choice, plan, x, request, backend)


# Remembered choices. For a plain network the choice depends on (request, input width, dtype, device,
# backend) and the plan alone, never on the batch, so it is kept with the plan (TaylorPlan.prepared) and
# replayed while the plan is current: build_plan returns the same plan object exactly while the network's
# snapshot is unchanged. A forward-Taylor choice also carries its op arguments, made once (PreparedForward).
MAX_PREPARED_PER_PLAN = 64


def _prepared_key(x: Tensor, request: HessianRequest, backend: str) -> tuple:
    return request, x.shape[1], x.dtype, x.device, backend


def _prepare(choice: EngineChoice, plan: TaylorPlan, x: Tensor, request: HessianRequest, backend: str) -> EngineChoice:
    """``choice``, kept with its plan for :func:`remembered_choice` when it can be replayed: a request without an
    operator object (weights, samples and random directions are per call), eagerly; with the op arguments
    of forward Taylor mode when it is that."""
    if request.operator is not None or torch.compiler.is_compiling():
        return choice
    if choice.algorithm == "forward" and plan.network_jet_arguments() is not None:
        choice = replace(choice, prepared=PreparedForward(plan, request, x.shape[1]))
    remembered = plan.prepared
    if len(remembered) >= MAX_PREPARED_PER_PLAN:  # many row sets or widths: start again rather than grow
        remembered.clear()
    remembered[_prepared_key(x, request, backend)] = choice
    return choice


def remembered_choice(f: object, x: Tensor, request: HessianRequest, backend: str) -> EngineChoice | None:
    """The choice :func:`choose_engine` made for f with this request, width, dtype, device and backend, if any.

    Found only while f's plan is current (the plan cache's snapshot check, global hooks included) and the
    extension is loaded; f's parameters are checked against x (dtype, device, width) as choose_engine checks
    them, with the same errors. None: call choose_engine. Never under torch.compile (dynamo traces the whole
    selection instead), never for requests with operator objects.
    """
    if backend == "autograd" or request.operator is not None or type(f) is not nn.Sequential:
        return None
    if torch.compiler.is_compiling() or not extension_loaded():
        return None
    try:
        plan = build_plan(f)
    except NotServed:
        return None
    choice = plan.prepared.get(_prepared_key(x, request, backend))
    if choice is not None:
        plan.check_operands(x)
    return choice


def _traced(f: object, x: Tensor, request: HessianRequest | None, check_independence: bool,
            univariate_order: int | None = None) -> tuple[TracedProgram | None, str, tuple[nn.Module, ...] | None]:
    """(f's traced program, "", modules) when it serves the request, else (None, why not, modules).

    ``request`` None: ``directional_derivatives``, univariate jets of ``univariate_order``; a randomized
    bi-Laplacian needs them to order 4. modules: the modules reachable from f when they were walked and
    checked for batch statistics (``check_independence``), else None. Raises the independence error.
    """
    if request is not None and traced_not_served(request):
        return None, f"traced functions do not serve {request.kind} requests", None
    if request is not None and request.kind == "bilaplacian" and request.randomized:
        univariate_order = 4  # (1/3r) sum_k 4! c_4 along the r directions
    modules: tuple[nn.Module, ...] | None = None
    if check_independence:  # a batch norm on batch statistics is refused naming the layer, before any trace
        modules = tuple(reachable_modules(f))
        check_no_batch_statistics(list(modules))
    try:
        program = program_for(f, x, _dry_runs)
    except NotServed as error:
        return None, f"it cannot be traced ({error.reason})", modules
    if isinstance(program.refusal, SamplesMix):
        if check_independence and x.shape[0] > 1 and not _outputs_independent(f, x):  # one sample cannot mix
            raise ValueError(
                f"f mixes samples (found in its trace): {program.refusal}. Per-sample derivatives need each output "
                "row to be computed from its own input row alone. A reduction over the batch breaks that: write "
                "x.pow(3).sum(-1, keepdim=True) instead of torch.sum(x**3); indexing a sample (x[0]), batch "
                "normalisation in training mode and attention across the batch break it too. To differentiate "
                "the batch as one function, pass check_independence=False."
            ) from None
        return None, f"its trace reduces over the batch ({program.refusal})", modules
    if program.refusal is not None:
        reason = getattr(program.refusal, "reason", str(program.refusal))
        return None, f"its trace is not served ({reason})", modules
    if univariate_order is not None:
        try:
            program.check_univariate_order(univariate_order)
        except NotServed as error:
            return None, f"its trace is not served ({error.reason})", modules
    return program, "", modules


def _dry_runs(program: TracedProgram, x: Tensor) -> None:
    """A new program's dry runs: forward Taylor mode's every branch, then mixed mode's."""
    dry_run(program, x)
    dry_run_mixed(program, x)


def traced_algorithm(program: TracedProgram, request: HessianRequest, d: int) -> str:
    """"traced_mixed" (forward tangents and one reverse sweep, :mod:`~hoderiv_ext.engines.taylor.traced.mixed`)
    or "traced" (forward Taylor mode) for a traced program: mixed mode for a full Hessian or Hessian rows
    when its dry run served the program and forward Taylor mode would carry more than
    TRACED_MIXED_SLOT_RATIO times its 2 + d slots, outside inference mode and torch.compile (it runs a
    reverse sweep)."""
    if request.kind not in ("full", "rows") or program.mixed_refusal is not None:
        return "traced"
    if torch.compiler.is_compiling() or torch.is_inference_mode_enabled():  # dynamo cannot trace the second
        return "traced"
    forward_slots = 1 + d + layout_for(request, d).num_second
    return "traced_mixed" if forward_slots > TRACED_MIXED_SLOT_RATIO * (2 + d) else "traced"


def _outputs_independent(f: object, x: Tensor) -> bool:
    """The probe's verdict, asked when a trace reduces over the batch.

    A trace is exact about which ops touch the batch axis, but an op that does
    is not always mixing: f may take the gradient of a sum over the batch
    inside (a score model), which is per-sample. Then the probe passes and the
    autograd engine serves f.
    """
    try:
        value = check_output(f(x), x.shape[0], like=x)  # type: ignore[operator]
        probe_independence(f, x, value.detach())  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def traced_not_served(request: HessianRequest) -> bool:
    """Whether traced programs leave this request to the autograd engine: none is left since traced programs
    carry univariate jets (the randomized bi-Laplacian runs on fourth-order coefficients along its directions;
    a program whose rules stop below order 4 is refused by its dry run, in :func:`_traced`)."""
    return False


def taylor_request_obstacles(request: HessianRequest) -> list[str]:
    """Why the Taylor engine cannot serve this request (empty when it can): it serves every request today."""
    return []


# Under backend="auto" every request the Taylor engine serves goes to it. The randomized bi-Laplacian
# (fourth-order univariate coefficients along the r directions: the plan's "univariate" algorithm, the
# traced engine's univariate jets) went to the autograd engine while its univariate algorithm measured 0.45x
# nested autograd (p^2 = 9 polarisation directions); re-measured with r = 8 Gaussian directions, float32,
# 2 threads, load ~1, 2026-12-02, with the fused jet_univariate op (value, gradient and estimate; nested
# autograd: 4 nested gradients along the directions at the N r points; the autograd engine measured
# 0.86-0.98x of it): hard-BC tanh 3->64x3->1 (traced) at N = 1024: 5.8-6.6x nested forward, 6.2-8.8x in a
# training step (load 2.2 / 0.0; without the fused op, in torch ops: 1.9x / 1.3x); the plain MLP
# 3->64x3->1 as a plan 6.3x / 6.5x, traced 5.8x / 6.9x; d = 32, N = 256: 3.0-3.6x; d = 100, N = 256: 1.1x forward, 1.5-1.6x training;
# d = 3, N = 16: 4.0-9.1x. The exact bi-Laplacian (algorithm "bilaplacian") measured 9.2x nested
# autograd forward and 7.9x in training on the same MLP (2026-12-02).
def auto_on_autograd(request: HessianRequest) -> bool:
    """Whether backend="auto" sends this request to the autograd engine although the Taylor engine serves it:
    none today (the measurements above)."""
    return False


def taylor_algorithm(plan: TaylorPlan, request: HessianRequest, d: int) -> str:
    """"forward", "mixed", "forward_over_reverse" or "reverse" for this request (see the module docstring)."""
    if request.kind == "bilaplacian":
        return "univariate" if request.randomized else "bilaplacian"
    if plan.output_width(d) != 1:
        return "forward"
    if request.kind == "none":
        return "reverse"
    if request.weighted or request.dims is not None:
        return "collapsed_reverse"  # 2 + r slots and a reverse sweep, against 2 + d + r for forward Taylor
    if request.kind == "rows" and len(request.rows) < d:
        return "forward_over_reverse"
    forward_slots = 1 + d + layout_for(request, d).num_second
    mixed_slots = 2 + d
    return "mixed" if forward_slots > MIXED_MODE_SLOT_RATIO * mixed_slots else "forward"


def batch_autograd_passes(device: torch.device, n: int, passes: int) -> bool:
    """Whether ``passes`` backward passes over a batch of ``n`` samples run faster as one batched pass."""
    if device.type == "cuda":
        return n * passes < CUDA_BATCHED_BELOW_WORK
    return n < CPU_BATCHED_BELOW_N and passes >= CPU_BATCHED_FROM_PASSES


def choose_elementwise(backend: str, x: Tensor, function: str | None, unsupported: str | None) -> str:
    """"kernel" or "autograd" for an elementwise call on ``x``.

    ``function``: the kernel function's name ("polynomial" for a Polynomial);
    ``unsupported``: why the kernels cannot serve the function, or None.

    Raises:
        NotServed: backend="kernel" and the kernels cannot serve the call.
    """
    check_backend(backend)
    if backend == "autograd":
        return "autograd"
    problems = kernel_obstacles(x.device, x.dtype) + ([unsupported] if unsupported else [])
    if backend == "kernel":
        if problems:
            raise NotServed("; ".join(problems))
        return "kernel"
    if problems:
        return "autograd"
    if x.device.type == "cpu" and function is not None:
        below = CPU_ELEMENTWISE_KERNEL_BELOW.get(function)
        if below is not None and x.numel() >= below:
            return "autograd"
    return "kernel"
