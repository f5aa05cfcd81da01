"""Check, then time: every method of every workload, with out-of-memory and failures contained.

For each workload: build its inputs, compute the float64 reference, then for
each method

1. run it once (the warm-up) and compare every output with the reference:
   the error is max |result - reference| / max |reference| per output tensor
   (the largest over the outputs); above the tolerance of the dtype the method
   is reported ``wrong`` and is not timed;
2. run it once more under the memory meter (:mod:`hoderiv_bench.memory`),
   counting FLOPs too when device peaks are measured;
3. time the methods that agreed with ``torch.utils.benchmark.Timer`` (its
   timer synchronises CUDA; all of torch's intra-op threads), interleaved:
   ``rounds`` rounds, each running every method back to back for about
   ``min_run_time / rounds`` seconds in turn, so that a burst of load from
   other processes hits all methods alike; the reported time is the median
   over rounds of the per-call time, with the interquartile range over rounds.

``torch.compile`` goes last: the fastest correct eager baseline (nested or
func) is compiled (``torch._dynamo.reset()`` first, as at the start of every
workload, so one workload's graphs do not count against the next one's
recompile limit; never between a workload's compiled methods, which would
throw away their graphs before they are timed), checked and timed; if it
fails to compile or run, the next baseline is tried, and failures are reported
as ``failed: reason``. The compile time (first call) is recorded separately.
The optional torch-jet methods (``jet``, ``jet-compile``; workloads.OPTIONAL_METHODS)
are listed only for workloads whose case offers them (torch-jet installed) or
says why it cannot; ``jet-compile`` runs only when the compile baseline is on,
and compiles on its first call (the check), whose time is its compile time.
The package's compiled path ``kernel-compile`` (hoderiv_bench.compiled_kernel) is
optional in the same way: offered by the input-derivative and training cases the
kernel path serves, run only when the compile baseline is on.

Statuses: ok, wrong, not served (the method cannot run this workload, with the
reason), skipped (not selected, or compile off), oom, failed (an exception).
A torch.OutOfMemoryError (or a CPU allocation failure) anywhere marks that
method (or the whole workload, if the inputs or the reference do not fit) and
the run goes on.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.utils.benchmark as benchmark
from torch.utils._pytree import tree_flatten

from hoderiv_ext import NotServed
from hoderiv_bench.memory import measure
from hoderiv_bench.workloads import (COMPILED_METHODS, METHOD_ORDER, OPTIONAL_METHODS, OPTIONAL_PACKAGE_METHODS,
                                     PACKAGE_METHODS, Case, Workload, build_case)

TOLERANCES = {torch.float32: 1e-3, torch.float64: 1e-8}

# Extra methods, name -> (role, factory(case) -> zero-argument callable). Tests register a
# deliberately wrong method here; role is "package" or "baseline".
EXTRA_METHODS: dict[str, tuple[str, Callable[[Case], Callable[[], Any]]]] = {}


def register_method(name: str, factory: Callable[[Case], Callable[[], Any]], role: str = "baseline") -> None:
    if role not in ("package", "baseline"):
        raise ValueError(f"role must be 'package' or 'baseline', got {role!r}")
    EXTRA_METHODS[name] = (role, factory)


@dataclass
class Options:
    device: torch.device
    dtype: torch.dtype = torch.float32
    min_run_time: float = 0.1
    rounds: int = 5
    compile: bool = False
    compile_reason: str = "torch.compile is off (pass --compile)"
    methods: frozenset[str] | None = None  # None: all
    count_flops: bool = False
    peaks: dict[str, Any] | None = None


@dataclass
class MethodResult:
    name: str
    role: str
    status: str = "ok"
    reason: str | None = None
    seconds: float | None = None
    iqr_seconds: float | None = None
    min_seconds: float | None = None
    runs: int | None = None
    max_error: float | None = None
    peak_memory_bytes: int | None = None
    memory_note: str | None = None
    flops: int | None = None
    flop_per_s: float | None = None
    flop_fraction_of_peak: float | None = None
    bandwidth_bytes_per_s: float | None = None
    bandwidth_fraction_of_peak: float | None = None
    speedup_vs_nested: float | None = None
    speedup_vs_best_baseline: float | None = None
    compile_seconds: float | None = None
    compiled_from: str | None = None


@dataclass
class WorkloadResult:
    workload: Workload
    status: str = "ok"
    reason: str | None = None
    tolerance: float | None = None
    methods: dict[str, MethodResult] = field(default_factory=dict)
    best_baseline: str | None = None
    package_best: str | None = None
    useful_bytes: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0


# ----------------------------------------------------------------------------- helpers


def is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, (RuntimeError, MemoryError)) and (
        isinstance(error, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text
    )


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# torch 2.14.1: after a failed compile of the torch.func baseline (the InferenceMode INTERNAL ASSERT of
# forward-mode AD under dynamo, e.g. SiLU), functorch's thread-local dispatch keys can end up changed once the
# workload's objects are freed, Autograd excluded: every later op then silently records no graph, and the
# next workload's reference fails with "element 0 of tensors does not require grad". Each workload snapshots
# those keys when it starts and puts them back when it ends.
_DISPATCH_KEYS = tuple(torch._C.DispatchKey.__members__.values())


def _dispatch_state() -> tuple[tuple[bool, bool], ...]:
    return tuple((torch._C._dispatch_tls_is_dispatch_key_excluded(key),
                  torch._C._dispatch_tls_is_dispatch_key_included(key)) for key in _DISPATCH_KEYS)


def _restore_dispatch_state(state: tuple[tuple[bool, bool], ...]) -> None:
    for key, (excluded, included), now in zip(_DISPATCH_KEYS, state, _dispatch_state()):
        try:  # alias keys (Autograd, CompositeImplicitAutograd, ...) cannot be set and read as they were
            if now[0] != excluded:
                torch._C._dispatch_tls_set_dispatch_key_excluded(key, excluded)
            if now[1] != included:
                torch._C._dispatch_tls_set_dispatch_key_included(key, included)
        except RuntimeError:
            pass


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _short(error: BaseException, limit: int = 240) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def max_error(result: Any, reference: Any) -> tuple[float, str | None]:
    """Largest normwise relative error over the outputs, and why when they cannot be compared."""
    got, _ = tree_flatten(result)
    want, _ = tree_flatten(reference)
    if len(got) != len(want):
        return math.inf, f"{len(got)} outputs, the reference has {len(want)}"
    worst = 0.0
    for index, (a, b) in enumerate(zip(got, want)):
        if a is None and b is None:
            continue
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
            return math.inf, f"output {index} is {type(a).__name__}, the reference's is {type(b).__name__}"
        if a.shape != b.shape:
            return math.inf, f"output {index} has shape {tuple(a.shape)}, the reference's is {tuple(b.shape)}"
        if a.numel() == 0:
            continue
        a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
        if not bool(torch.equal(a64.isfinite(), b64.isfinite())):
            return math.inf, f"output {index} has non-finite entries where the reference does not (or vice versa)"
        finite = b64.isfinite()
        scale = float(b64[finite].abs().max()) if bool(finite.any()) else 0.0
        difference = float((a64 - b64)[finite].abs().max()) if bool(finite.any()) else 0.0
        worst = max(worst, difference / max(scale, 1e-30) if scale > 0 else difference)
    return worst, None


def _timer(fn: Callable[[], Any]) -> benchmark.Timer:
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())


def _time(fn: Callable[[], Any], min_run_time: float) -> benchmark.Measurement:
    return _timer(fn).blocked_autorange(min_run_time=min_run_time)


def _block(timer: benchmark.Timer, number: int) -> float:
    """Seconds per call over ``number`` back-to-back calls (the Timer's inner loop, no extra warm-up)."""
    inner = getattr(timer, "_timeit", None)
    if inner is None:  # a torch without the inner loop: the public API (it adds a short warm-up)
        return timer.timeit(number).median
    return inner(number) / number


@dataclass
class Timing:
    seconds: float  # median over rounds of the per-call time
    iqr_seconds: float
    min_seconds: float  # fastest round: the least disturbed by other processes
    runs: int


def time_interleaved(fns: dict[str, Callable[[], Any]], min_run_time: float, rounds: int,
                     failures: dict[str, BaseException]) -> dict[str, Timing]:
    """Median per-call seconds of each callable over interleaved rounds; a callable that raises
    is dropped and its exception stored in ``failures``."""
    timers = {name: _timer(fn) for name, fn in fns.items()}
    rounds = max(rounds, 1)
    per_round = min_run_time / rounds
    numbers: dict[str, int] = {}
    for name, timer in timers.items():
        try:
            _block(timer, 1)  # untimed: a first call that compiles or warms up must not size the blocks
            once = _block(timer, 1)
        except Exception as error:  # noqa: BLE001
            failures[name] = error.with_traceback(None)  # the traceback's frames would keep tensors alive
            continue
        numbers[name] = int(min(10_000, max(1, round(per_round / max(once, 1e-9)))))
    samples: dict[str, list[float]] = {name: [] for name in numbers}
    for _ in range(rounds):
        for name in list(numbers):
            try:
                samples[name].append(_block(timers[name], numbers[name]))
            except Exception as error:  # noqa: BLE001
                failures[name] = error.with_traceback(None)
                numbers.pop(name)
                samples.pop(name)
    out = {}
    for name, values in samples.items():
        ordered = torch.tensor(values, dtype=torch.float64)
        iqr = float(ordered.quantile(0.75) - ordered.quantile(0.25)) if len(values) > 1 else 0.0
        out[name] = Timing(float(ordered.median()), iqr, float(ordered.min()), numbers[name] * len(values))
    return out


# ----------------------------------------------------------------------------- one method


def _fail(out: MethodResult, error: BaseException, device: torch.device) -> MethodResult:
    out.seconds = out.iqr_seconds = out.min_seconds = out.runs = None
    if is_oom(error):
        out.status, out.reason = "oom", _short(error)
    elif isinstance(error, NotServed):
        out.status, out.reason = "not served", _short(error)
    else:
        out.status, out.reason = "failed", _short(error)
    _free(device)
    return out


COMPILED_CPU_MEMORY = ("not measured: the CPU meter is a dispatch mode, under which compiled code "
                       "does not run as compiled")


def check_method(name: str, role: str, fn: Callable[[], Any], reference: Any, options: Options,
                 tolerance: float, compiled: bool = False) -> MethodResult:
    """Run ``fn`` once, compare with ``reference``; if it agrees, measure its peak memory (and FLOPs).

    For compiled callables FLOPs are not counted (a dispatch mode would change what runs) and,
    on CPU, neither is memory.
    """
    out = MethodResult(name, role)
    try:
        result = fn()
        _sync(options.device)
        error, why = max_error(result, reference)
        del result
        out.max_error = error if math.isfinite(error) else None
        if why is not None or error > tolerance:
            out.status = "wrong"
            out.reason = why or f"max relative error {error:.3g} > tolerance {tolerance:g}"
            return out
        if compiled and options.device.type != "cuda":
            out.memory_note = COMPILED_CPU_MEMORY
            return out
        measurement = measure(fn, options.device, count_flops=options.count_flops and not compiled)
        out.peak_memory_bytes, out.flops, out.memory_note = measurement.peak_bytes, measurement.flops, measurement.note
    except Exception as error:  # noqa: BLE001 - every failure is reported, the run goes on
        return _fail(out, error, options.device)
    return out


def time_methods(fns: dict[str, Callable[[], Any]], results: dict[str, MethodResult], options: Options,
                 useful_bytes: int | None) -> None:
    """Time the callables (all already checked) and fill in their results."""
    failures: dict[str, BaseException] = {}
    timings = time_interleaved(fns, options.min_run_time, options.rounds, failures)
    for name, error in failures.items():
        _fail(results[name], error, options.device)
    for name, timing in timings.items():
        out = results[name]
        out.seconds, out.iqr_seconds, out.runs = timing.seconds, timing.iqr_seconds, timing.runs
        out.min_seconds = timing.min_seconds
        _derived(out, options.peaks, useful_bytes)


def _derived(out: MethodResult, peaks: dict[str, Any] | None, useful_bytes: int | None) -> None:
    if not out.seconds:
        return
    if out.flops:
        out.flop_per_s = out.flops / out.seconds
        if peaks and peaks.get("gemm_flop_per_s"):
            out.flop_fraction_of_peak = out.flop_per_s / peaks["gemm_flop_per_s"]
    if useful_bytes:
        out.bandwidth_bytes_per_s = useful_bytes / out.seconds
        peak = (peaks or {}).get("theoretical_bytes_per_s") or (peaks or {}).get("copy_bytes_per_s")
        if peak:
            out.bandwidth_fraction_of_peak = out.bandwidth_bytes_per_s / peak


# ----------------------------------------------------------------------------- compile


def _compile_best(case: Case, results: dict[str, MethodResult], reference: Any, options: Options,
                  tolerance: float, useful_bytes: int | None) -> MethodResult:
    candidates = sorted((r for r in results.values() if r.name in ("nested", "func") and r.status == "ok"),
                        key=lambda r: r.seconds)
    if not candidates:
        return MethodResult("compile", "baseline", "skipped", "no eager baseline (nested, func) ran correctly")
    failures = []
    for candidate in candidates:
        torch._dynamo.reset()
        compiled = torch.compile(case.methods[candidate.name])
        start = time.perf_counter()
        try:
            compiled()
            _sync(options.device)
        except Exception as error:  # noqa: BLE001
            if is_oom(error):
                return _fail(MethodResult("compile", "baseline", compiled_from=candidate.name), error, options.device)
            failures.append(f"{candidate.name}: {_short(error, 160)}")
            _free(options.device)
            continue
        seconds = time.perf_counter() - start
        out = check_method("compile", "baseline", compiled, reference, options, tolerance, compiled=True)
        out.compile_seconds, out.compiled_from = seconds, candidate.name
        if out.status == "ok":
            out.flops = candidate.flops  # the same computation as the eager baseline it was compiled from
            time_methods({"compile": compiled}, {"compile": out}, options, useful_bytes)
        if out.status in ("ok", "wrong", "oom"):
            if failures and out.reason is None:
                out.reason = f"compiled {candidate.name}; not compiled: " + "; ".join(failures)
            return out
        failures.append(f"{candidate.name}: {out.reason}")
    return MethodResult("compile", "baseline", "failed", "; ".join(failures))


# ----------------------------------------------------------------------------- one workload


def _method_list(case: Case) -> list[tuple[str, str, Callable[[], Any] | None]]:
    listed: list[tuple[str, str, Callable[[], Any] | None]] = []
    for name in METHOD_ORDER:
        if name == "compile":
            continue
        role = "package" if name in PACKAGE_METHODS else "baseline"
        listed.append((name, role, case.methods.get(name)))
    for name in OPTIONAL_METHODS:  # kernel-compile, torch-jet: only where the case offers it or says why it cannot
        if name in case.methods or name in case.not_served:
            role = "package" if name in OPTIONAL_PACKAGE_METHODS else "baseline"
            listed.append((name, role, case.methods.get(name)))
    for name, (role, factory) in EXTRA_METHODS.items():
        listed.append((name, role, factory(case)))
    return listed


def run_workload(workload: Workload, options: Options) -> WorkloadResult:
    """Build, reference, check every method, time those that agree (interleaved), compile last."""
    started = time.perf_counter()
    dispatch_state = _dispatch_state()
    try:
        return _run_workload(workload, options, started)
    finally:
        _restore_dispatch_state(dispatch_state)


def _run_workload(workload: Workload, options: Options, started: float) -> WorkloadResult:
    out = WorkloadResult(workload, tolerance=TOLERANCES.get(options.dtype, 1e-3))
    if options.compile:  # the earlier workloads' graphs: not against this one's recompile limit
        torch._dynamo.reset()
    try:
        case = build_case(workload, options.device, options.dtype)
        reference = case.reference()
        _sync(options.device)
    except Exception as error:  # noqa: BLE001
        out.status = "oom" if is_oom(error) else "failed"
        out.reason = "inputs or reference: " + _short(error)
        _free(options.device)
        out.wall_seconds = time.perf_counter() - started
        return out
    out.useful_bytes, out.notes = case.useful_bytes, dict(case.notes)
    selected = options.methods
    checked: dict[str, Callable[[], Any]] = {}
    for name, role, fn in _method_list(case):
        if selected is not None and name not in selected:
            out.methods[name] = MethodResult(name, role, "skipped", "not selected (--methods)")
        elif fn is None:
            reason = case.not_served.get(name, "this method does not apply to this workload")
            out.methods[name] = MethodResult(name, role, "not served", reason)
        elif name in COMPILED_METHODS and not options.compile:
            out.methods[name] = MethodResult(name, role, "skipped", options.compile_reason)
        else:
            compiled = name in COMPILED_METHODS
            out.methods[name] = check_method(name, role, fn, reference, options, out.tolerance, compiled=compiled)
            if name in case.compiled:
                out.methods[name].compile_seconds = getattr(case.compiled[name], "compile_seconds", None)
            if out.methods[name].status == "ok":
                checked[name] = fn
    time_methods(checked, out.methods, options, case.useful_bytes)
    if selected is not None and "compile" not in selected:
        out.methods["compile"] = MethodResult("compile", "baseline", "skipped", "not selected (--methods)")
    elif not options.compile:
        out.methods["compile"] = MethodResult("compile", "baseline", "skipped", options.compile_reason)
    else:
        out.methods["compile"] = _compile_best(case, out.methods, reference, options, out.tolerance,
                                               case.useful_bytes)
    _speedups(out)
    del case, reference, checked
    _free(options.device)
    out.wall_seconds = time.perf_counter() - started
    return out


def _speedups(out: WorkloadResult) -> None:
    timed = {name: r for name, r in out.methods.items() if r.status == "ok" and r.seconds}
    baselines = [r for r in timed.values() if r.role == "baseline"]
    package = [r for r in timed.values() if r.role == "package"]
    best = min(baselines, key=lambda r: r.seconds) if baselines else None
    out.best_baseline = best.name if best else None
    out.package_best = min(package, key=lambda r: r.seconds).name if package else None
    nested = timed.get("nested")
    for r in timed.values():
        r.speedup_vs_nested = nested.seconds / r.seconds if nested else None
        r.speedup_vs_best_baseline = best.seconds / r.seconds if best else None


def run_suite(workloads: list[Workload], options: Options,
              on_done: Callable[[int, WorkloadResult], None] | None = None,
              on_start: Callable[[int, Workload], None] | None = None) -> list[WorkloadResult]:
    results = []
    for index, workload in enumerate(workloads):
        if on_start is not None:
            on_start(index, workload)
        result = run_workload(workload, options)
        results.append(result)
        if on_done is not None:
            on_done(index, result)
    return results


# ----------------------------------------------------------------------------- device peaks


def measure_peaks(device: torch.device, dtype: torch.dtype, min_run_time: float = 0.2) -> dict[str, Any]:
    """The device's GEMM FLOP/s and copy bandwidth, measured now, plus its theoretical bandwidth.

    Fractions of peak in the report are against these: FLOP/s against the
    measured GEMM rate in the run's dtype (TF32 as torch is configured), and
    bandwidth against the theoretical DRAM bandwidth from the device properties
    when known (CUDA), else against the measured copy rate.
    """
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    gemm = _time(lambda: a @ b, min_run_time).median
    del a, b
    numel = (1 << 28 if device.type == "cuda" else 1 << 24) // torch.tensor([], dtype=dtype).element_size()
    source = torch.empty(numel, device=device, dtype=dtype).fill_(1.0)
    target = torch.empty_like(source)
    copy = _time(lambda: target.copy_(source), min_run_time).median
    peaks: dict[str, Any] = {
        "gemm_size": n,
        "gemm_flop_per_s": 2 * n**3 / gemm,
        "copy_bytes": 2 * source.numel() * source.element_size(),
        "copy_bytes_per_s": 2 * source.numel() * source.element_size() / copy,
        "theoretical_bytes_per_s": None,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None,
    }
    del source, target
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
        if clock_khz and bus_bits:
            peaks["theoretical_bytes_per_s"] = clock_khz * 1e3 * 2 * bus_bits / 8
    _free(device)
    return peaks
