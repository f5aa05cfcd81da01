"""The suite's outputs: a table for the terminal (valid Markdown), a JSON file, a PNG plot.

JSON layout (``SCHEMA``)::

    {"schema": "hoderiv_bench/1",
     "environment": {device, device_name, dtype, torch_version, build_info, date, ...},
     "options": {suite, device, dtype, workloads, methods, compile, min_run_time, ...},
     "memory_method": how peak memory was measured,
     "peaks": {gemm_flop_per_s, copy_bytes_per_s, theoretical_bytes_per_s, ...} or null,
     "total_seconds": float,
     "workloads": [{"name", "family", "function", "architecture", "batch", "d", "width", "depth",
                    "widths", "status", "reason", "tolerance", "best_baseline", "package_best",
                    "useful_bytes", "notes", "wall_seconds",
                    "methods": {name: {status, reason, role, seconds, iqr_seconds, runs,
                                       min_seconds, max_error, peak_memory_bytes, memory_note, flops,
                                       flop_per_s, flop_fraction_of_peak,
                                       bandwidth_bytes_per_s, bandwidth_fraction_of_peak,
                                       speedup_vs_nested, speedup_vs_best_baseline,
                                       compile_seconds, compiled_from}}}]}

``options.suite`` is quick, full, architectures (which also records dims, widths, depths and
architectures) or operators (dims per family, widths, depths and families); ``architecture`` is
"mlp" for the plain Sequential MLP (hoderiv_bench.architectures); ``widths`` lists the hidden
widths of a network whose layers differ (null otherwise: ``width`` and ``depth`` say it all);
``notes.operator`` names the request of an operator workload (hoderiv_bench.operators).
The optional torch-jet methods ("jet", "jet-compile") appear only in the workloads that offer them.
Times are seconds (medians), memory bytes, speed-ups ratios baseline time / method time.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hoderiv_bench.runner import MethodResult, WorkloadResult
from hoderiv_bench.workloads import METHOD_ORDER

SCHEMA = "hoderiv_bench/1"
STATUS_CELLS = {"wrong": "WRONG", "not served": "n/s", "skipped": "-", "oom": "OOM", "failed": "failed"}


def format_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def format_bytes(count: int | None) -> str:
    if count is None:
        return "?"
    return f"{count / 2**20:.1f}"


def _method_names(results: list[WorkloadResult]) -> list[str]:
    names = list(METHOD_ORDER)
    for result in results:
        names += [name for name in result.methods if name not in names]
    return [name for name in names if any(name in r.methods for r in results)]


def _cell(result: WorkloadResult, name: str, memory: bool = False) -> str:
    method = result.methods.get(name)
    if method is None:
        return ""
    if method.status != "ok":
        return STATUS_CELLS.get(method.status, method.status)
    if memory:
        return format_bytes(method.peak_memory_bytes)
    return format_seconds(method.seconds) if method.seconds is not None else "?"


def _speedup_cell(result: WorkloadResult, key: str) -> str:
    if result.package_best is None:
        return STATUS_CELLS.get(result.status, "-") if result.status != "ok" else "-"
    value = getattr(result.methods[result.package_best], key)
    return "-" if value is None else f"{value:.2f}x ({result.package_best})"


def _render(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i])
              for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def time_table(results: list[WorkloadResult]) -> str:
    """Median time per method, and the package's fastest path against nested autograd and the best baseline."""
    names = _method_names(results)
    header = ["workload", "N", *names, "best baseline", "hoderiv_ext vs nested", "vs best baseline"]
    rows = []
    for r in results:
        rows.append([r.workload.series, str(r.workload.batch), *(_cell(r, n) for n in names),
                     r.best_baseline or "-", _speedup_cell(r, "speedup_vs_nested"),
                     _speedup_cell(r, "speedup_vs_best_baseline")])
    return _render(header, rows, right=set(range(1, 2 + len(names))) | {len(header) - 2, len(header) - 1})


def memory_table(results: list[WorkloadResult]) -> str:
    names = _method_names(results)
    header = ["workload", "N", *(f"{n} MiB" for n in names)]
    rows = [[r.workload.series, str(r.workload.batch), *(_cell(r, n, memory=True) for n in names)] for r in results]
    return _render(header, rows, right=set(range(1, 2 + len(names))))


def efficiency_table(results: list[WorkloadResult]) -> str | None:
    """Achieved bandwidth (elementwise) or matrix-product FLOP/s against the device's peak, if measured."""
    rows = []
    for r in results:
        for name in ("kernel", "autograd", r.best_baseline):
            method = r.methods.get(name) if name else None
            if method is None or method.status != "ok":
                continue
            if method.bandwidth_bytes_per_s is not None:
                achieved = f"{method.bandwidth_bytes_per_s / 1e9:.1f} GB/s"
                fraction = method.bandwidth_fraction_of_peak
            elif method.flop_per_s is not None:
                achieved = f"{method.flop_per_s / 1e12:.3f} TFLOP/s"
                fraction = method.flop_fraction_of_peak
            else:
                continue
            rows.append([r.workload.series, str(r.workload.batch), name, achieved,
                         "-" if fraction is None else f"{100 * fraction:.1f}%"])
    if not rows:
        return None
    return _render(["workload", "N", "method", "achieved", "of peak"], rows, right={1, 3, 4})


def notes(results: list[WorkloadResult]) -> list[str]:
    """One line per distinct (method, status, reason) that is not ok, with how many workloads it hit."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    for r in results:
        if r.status != "ok":
            seen.setdefault(("workload", r.status, r.reason or ""), []).append(r.workload.name)
        for m in r.methods.values():
            if (m.status == "ok" and not m.reason) or (m.status == "skipped" and (m.reason or "").startswith("not selected")):
                continue
            seen.setdefault((m.name, m.status, m.reason or ""), []).append(r.workload.name)
    lines = []
    for (name, status, reason), where in seen.items():
        scope = where[0] if len(where) == 1 else f"{len(where)} workloads, e.g. {where[0]}"
        lines.append(f"{name} {status}: {reason} [{scope}]")
    return lines


def text_report(results: list[WorkloadResult], payload: dict[str, Any]) -> str:
    env = payload["environment"]
    parts = [
        f"hoderiv_ext bench ({payload['options']['suite']} suite): {env['device']} ({env['device_name']}), "
        f"{env['dtype']}, torch {env['torch_version']}, {env['torch_threads']} threads, {env['date']}",
        "",
        "Median time per call (check-then-time; n/s = not served, - = skipped):",
        time_table(results),
        "",
        f"Peak memory per call, MiB ({payload['memory_method']}):",
        memory_table(results),
    ]
    unmeasured = sorted({m.memory_note for r in results for m in r.methods.values()
                         if m.status == "ok" and m.peak_memory_bytes is None and m.memory_note})
    parts += [f"? {note}" for note in unmeasured]
    efficiency = efficiency_table(results)
    if efficiency:
        peaks = "measured in this run" if payload.get("peaks") else "not measured: --device-peaks on"
        parts += ["", f"Achieved bandwidth (elementwise: one read of x, three writes) or matrix-product FLOP/s, "
                      f"against the device's peak ({peaks}):", efficiency]
    lines = notes(results)
    if lines:
        parts += ["", "Notes:", *(f"- {line}" for line in lines)]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- JSON


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def method_json(method: MethodResult) -> dict[str, Any]:
    return _clean(asdict(method))


def workload_json(result: WorkloadResult) -> dict[str, Any]:
    w = result.workload
    return _clean({
        "name": w.name, "series": w.series, **w.params(),
        "status": result.status, "reason": result.reason, "tolerance": result.tolerance,
        "best_baseline": result.best_baseline, "package_best": result.package_best,
        "useful_bytes": result.useful_bytes, "notes": result.notes, "wall_seconds": result.wall_seconds,
        "methods": {name: method_json(m) for name, m in result.methods.items()},
    })


def payload(results: list[WorkloadResult], environment: dict[str, Any], options: dict[str, Any],
            memory_method: str, peaks: dict[str, Any] | None, total_seconds: float) -> dict[str, Any]:
    return _clean({
        "schema": SCHEMA,
        "environment": environment,
        "options": options,
        "memory_method": memory_method,
        "peaks": peaks,
        "total_seconds": total_seconds,
        "workloads": [workload_json(r) for r in results],
    })


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- PNG


def write_plot(results: list[WorkloadResult], path: Path, title: str) -> str | None:
    """Speed-up of the package's fastest path against batch size, one panel per family.

    Returns None when written, else why not (matplotlib missing, nothing to plot).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib for the plot)"
    series: dict[str, dict[str, list[tuple[int, float, float | None]]]] = {}
    for r in results:
        best = r.methods.get(r.package_best) if r.package_best else None
        if best is None or best.speedup_vs_nested is None:
            continue
        points = series.setdefault(r.workload.family, {}).setdefault(r.workload.series, [])
        points.append((r.workload.batch, best.speedup_vs_nested, best.speedup_vs_best_baseline))
    series = {f: {s: sorted(p) for s, p in by.items() if len(p) > 1} for f, by in series.items()}
    series = {f: by for f, by in series.items() if by}
    if not series:
        return "no workload has two or more batch sizes to plot"
    columns = min(3, len(series))
    rows = math.ceil(len(series) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False)
    for axis, (family, by_series) in zip(axes.flat, series.items()):
        for index, (name, points) in enumerate(by_series.items()):
            color = f"C{index % 10}"
            batches = [p[0] for p in points]
            axis.plot(batches, [p[1] for p in points], "o-", color=color, label=f"{name.split('/', 1)[1]} vs nested")
            if all(p[2] is not None for p in points):
                axis.plot(batches, [p[2] for p in points], "s--", color=color, alpha=0.6, label="  vs best baseline")
        axis.axhline(1.0, color="grey", linewidth=0.8)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_title(family)
        axis.set_xlabel("batch size N" if family != "elementwise" else "entries")
        axis.set_ylabel("speed-up of hoderiv_ext (x)")
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(series):]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
