"""``python -m hoderiv_ext bench``: the benchmark suite, every method against every baseline, in one run.

The quick default suite takes about 20 s on a 2-core CPU; ``--full`` is the grid for a GPU
(with torch.compile baselines, expect tens of minutes); ``--suite architectures`` runs the
Laplacian and the training step on residual, Fourier-feature, SIREN and hard-boundary-condition
models next to the plain MLP (widths 64 and 128, d = 2 and 8, N = 4096; about 4 minutes on a
2-core CPU, about half an hour with --compile); ``--suite operators`` runs the differential
operators beyond the Hessian (weighted, partial and randomized Laplacians, the bi-Laplacian,
directional derivatives of order 4) on small tanh MLPs (10 workloads, about 25 s on a 2-core
CPU; ``--full`` has them at larger sizes). Every method is checked against a float64
reference before it is timed; one that disagrees is reported WRONG and not timed. Outputs: a table
on stdout, a JSON file with every figure and the environment (--output), and a PNG plot of speed-up
against batch size next to it when matplotlib is installed. Exit status: 0, or 1 when one of this
package's own methods disagreed with the reference (2 for bad options).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from hoderiv_bench.memory import CPU_MEMORY_METHOD, CUDA_MEMORY_METHOD
from hoderiv_bench.progress import Progress
from hoderiv_bench.report import payload, text_report, write_json, write_plot
from hoderiv_bench.runner import EXTRA_METHODS, Options, measure_peaks, run_suite
from hoderiv_bench.architectures import ARCHITECTURES
from hoderiv_bench.operators import OPERATOR_DIMS, OPERATOR_FAMILIES
from hoderiv_bench.workloads import (FAMILIES, METHOD_ORDER, MLP_FAMILIES, OPTIONAL_METHODS, SUITES, ArchitectureSizes,
                                     OperatorSizes, select, suite, with_overrides)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_OUTPUT = "bench-results.json"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="(default: float32)")
    parser.add_argument("--workloads", "-w", nargs="+", metavar="PATTERN",
                        help=f"run only workloads matching a family ({', '.join(MLP_FAMILIES)}; "
                             f"{', '.join(OPERATOR_FAMILIES)} with --suite operators or --full), a "
                             f"function (tanh, silu, sin, cubic), an architecture ({', '.join(ARCHITECTURES)}; "
                             "with --suite architectures), or a name glob/substring (see --list)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help=f"run only these methods ({', '.join(METHOD_ORDER + OPTIONAL_METHODS)}; the jet ones "
                             "only with torch-jet installed); the others are reported skipped")
    suite_group = parser.add_mutually_exclusive_group()
    suite_group.add_argument("--suite", choices=tuple(SUITES), default=None,
                             help="quick (default), full (the grid for a GPU, as --full), architectures: "
                                  "the laplacian, training and hessian families on residual, fourier, siren and hardbc "
                                  "models next to the plain MLP, widths 64 and 128, d = 2 and 8, depth 4, "
                                  "N = 4096, or operators: the weighted, partial and randomized (hutchinson) "
                                  "Laplacians, the bi-Laplacian and order-4 directional derivatives on tanh "
                                  "MLPs d -> 32 x 2 -> 1, N = 128 and 512, d = "
                                  + ", ".join(f"{d} ({family})" for family, d in OPERATOR_DIMS.items())
                                  + " (--batch/--dims/--widths/--depths replace those axes)")
    suite_group.add_argument("--full", action="store_true", help="the full grid (for a GPU) instead of the quick suite")
    parser.add_argument("--batch", nargs="+", type=_positive_int, metavar="N",
                        help="batch sizes of the MLP workloads (replaces the grid's)")
    parser.add_argument("--dims", nargs="+", type=_positive_int, metavar="D",
                        help="input dimensions: the first is the base network's, the others are swept")
    parser.add_argument("--widths", nargs="+", type=_positive_int, metavar="W", help="hidden widths, as --dims")
    parser.add_argument("--depths", nargs="+", type=_positive_int, metavar="L", help="hidden layers, as --dims")
    compile_group = parser.add_mutually_exclusive_group()
    compile_group.add_argument("--compile", dest="compile", action="store_true", default=None,
                               help="add the torch.compile baseline (default with --full; slow on CPU)")
    compile_group.add_argument("--no-compile", dest="compile", action="store_false", help="leave it out")
    parser.add_argument("--min-run-time", type=_positive_float, metavar="SECONDS",
                        help="timing budget per method, split over the rounds (default 0.1 quick, 1.0 full)")
    parser.add_argument("--rounds", type=_positive_int, metavar="R",
                        help="interleaved timing rounds; the median over rounds is reported (default 5 quick, 7 full)")
    parser.add_argument("--threads", type=_positive_int, metavar="T",
                        help="torch intra-op threads for the CPU (default: torch's, usually the core count); "
                             "--threads 1 is steadier when other processes share the cores")
    parser.add_argument("--device-peaks", choices=("auto", "on", "off"), default="auto",
                        help="measure the device's GEMM/copy peaks and report achieved FLOP/s and bandwidth "
                             "against them (auto: on CUDA only)")
    parser.add_argument("--output", "-o", default=DEFAULT_OUTPUT, metavar="PATH",
                        help=f"JSON results file; the PNG plot goes next to it (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    parser.add_argument("--list", action="store_true", help="list the selected workloads and exit")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def resolve_device(text: str, parser: argparse.ArgumentParser) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        parser.error(f"--device: unknown device {text!r}; use auto, cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device: {text!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device {text}: CUDA is not available on this machine "
                         "(torch.cuda.is_available() is False); use --device cpu")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            parser.error(f"--device {text}: there are only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", index)
    return device


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    device = resolve_device(args.device, parser)
    dtype = DTYPES[args.dtype]
    known_methods = list(METHOD_ORDER + OPTIONAL_METHODS)
    known_methods += [m for m in EXTRA_METHODS if m not in known_methods]
    if args.methods:
        unknown = [m for m in args.methods if m not in known_methods]
        if unknown:
            parser.error(f"--methods: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(known_methods)}")
    suite_name = "full" if args.full else (args.suite or "quick")
    full = suite_name == "full"
    sizes = with_overrides(SUITES[suite_name], args.batch, args.dims, args.widths, args.depths)
    workloads, unmatched = select(suite(sizes), args.workloads)
    if unmatched:
        hint = "" if suite_name == "architectures" else "; architectures are in --suite architectures"
        if suite_name not in ("operators", "full"):
            hint += f"; the operator families ({', '.join(OPERATOR_FAMILIES)}) are in --suite operators and --full"
        parser.error(f"--workloads: no workload matches {', '.join(map(repr, unmatched))} in the {suite_name} "
                     f"suite; families are {', '.join(FAMILIES)}, functions tanh, silu, sin, cubic, architectures "
                     f"{', '.join(ARCHITECTURES)}{hint} (see --list)")
    output = Path(args.output)
    if output.is_dir():
        parser.error(f"--output: {str(output)!r} is a directory; give a file name such as {DEFAULT_OUTPUT}")
    existing = next((p for p in [output.absolute(), *output.absolute().parents] if p.exists()), None)
    if existing is not None and not (existing.is_dir() or existing == output.absolute()):
        parser.error(f"--output: {str(existing)!r} is a file, not a directory")
    if existing is not None and not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        parser.error(f"--output: cannot write in {str(existing)!r}")
    if args.list:
        for workload in workloads:
            print(workload.name)
        return 0

    if args.threads:
        torch.set_num_threads(args.threads)
    compile_on = full if args.compile is None else args.compile
    if args.compile is None and not full:
        compile_reason = (f"torch.compile is off in the {suite_name} suite (pass --compile; "
                          "inductor takes 5-20 s a workload on CPU)")
    else:
        compile_reason = "torch.compile is off (--no-compile)"
    peaks_on = args.device_peaks == "on" or (args.device_peaks == "auto" and device.type == "cuda")
    options = Options(device=device, dtype=dtype, min_run_time=args.min_run_time or (1.0 if full else 0.1),
                      rounds=args.rounds or (7 if full else 5),
                      compile=compile_on, compile_reason=compile_reason,
                      methods=frozenset(args.methods) if args.methods else None, count_flops=peaks_on)
    from hoderiv_bench.environment import environment

    env = environment(device, dtype)
    env["load_average_start"] = _load_average()
    started = time.perf_counter()
    if peaks_on:
        options.peaks = measure_peaks(device, dtype, min_run_time=max(0.02, options.min_run_time))
    progress = Progress(len(workloads), enabled=not args.quiet)
    results = run_suite(
        workloads, options,
        on_start=lambda i, w: progress.start(w.name),
        on_done=lambda i, r: progress.finish(r.workload.name, _summary(r)),
    )
    total = time.perf_counter() - started
    settings = {
        "suite": suite_name, "device": str(device), "dtype": args.dtype,
        "workloads": args.workloads, "methods": args.methods, "compile": compile_on,
        "min_run_time": options.min_run_time, "rounds": options.rounds, "device_peaks": peaks_on,
        "batches": list(sizes.batches), "base_network": list(sizes.base),
    }
    if isinstance(sizes, ArchitectureSizes):
        settings.update(dims=list(sizes.dims), widths=list(sizes.widths), depths=list(sizes.depths),
                        architectures=list(sizes.architectures))
    if isinstance(sizes, OperatorSizes):
        settings.update(dims={family: list(sizes.dims_of(family)) for family in sizes.families},
                        widths=list(sizes.widths), depths=list(sizes.depths), families=list(sizes.families))
    memory_method = CUDA_MEMORY_METHOD if device.type == "cuda" else CPU_MEMORY_METHOD
    env["load_average_end"] = _load_average()
    noise = _timing_noise(results)
    settings["timing_noise"] = noise
    data = payload(results, env, settings, memory_method, options.peaks, total)
    write_json(data, output)
    print(text_report(results, data))
    busy = env.get("load_average_start")
    if device.type == "cpu" and busy is not None and busy >= max(1.0, 0.5 * (env.get("cpu_count") or 1)):
        print(f"\nWARNING: the 1-minute load average was {busy:.2f} on {env.get('cpu_count')} CPUs before the run: "
              "other processes compete for the cores, and multi-threaded torch ops slow down far more than "
              "single-threaded ones when they do. Re-run on a quiet machine"
              + (", or with --threads 1." if torch.get_num_threads() > 1 else "."))
    if noise is not None and noise > NOISY:
        print(f"\nWARNING: timings are noisy: the interquartile range over rounds is {100 * noise:.0f}% of the median "
              "or more for a quarter of the timed methods. Compare ratios with care, or re-run "
              "(a quieter machine, more --rounds" + (", --threads 1)." if torch.get_num_threads() > 1 else ")."))
    print(f"\nwrote {output} ({len(results)} workloads, {total:.1f} s)")
    if not args.no_plot:
        plot_path = output.with_suffix(".png")
        why_not = write_plot(results, plot_path, f"hoderiv_ext bench: {env['device_name']}, {args.dtype}, "
                                                 f"torch {env['torch_version']}, {env['date'][:10]}")
        print(f"wrote {plot_path}" if why_not is None else f"no plot: {why_not}")
    wrong = [f"{r.workload.name}: {m.name}" for r in results for m in r.methods.values()
             if m.role == "package" and m.status == "wrong"]
    if wrong:
        print(f"\nERROR: this package's result disagreed with the reference in {len(wrong)} case(s): "
              + "; ".join(wrong[:5]), file=sys.stderr)
        return 1
    return 0


NOISY = 0.3


def _timing_noise(results) -> float | None:
    """The 75th percentile over timed methods of IQR / median across rounds (None if nothing was timed)."""
    spreads = sorted(m.iqr_seconds / m.seconds for r in results for m in r.methods.values()
                     if m.status == "ok" and m.seconds and m.iqr_seconds is not None)
    if not spreads:
        return None
    return spreads[min(len(spreads) - 1, (3 * len(spreads)) // 4)]


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _summary(result) -> str:
    if result.status != "ok":
        return result.status
    best = result.methods.get(result.package_best) if result.package_best else None
    if best is not None and best.speedup_vs_nested is not None:
        return f"{best.speedup_vs_nested:.2f}x vs nested ({result.package_best})"
    return "done"


def build_parser(prog: str = "python -m hoderiv_ext bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run(parser.parse_args(argv), parser)
