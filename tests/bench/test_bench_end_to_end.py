"""A tiny bench run end to end: the JSON schema it writes (hoderiv_bench/report.py), and the plot.

Everything runs on CPU at tiny sizes with tiny timing budgets; the figures are not looked at,
only that they are there and have the right types.
"""

from __future__ import annotations

import json

import pytest
import torch

from hoderiv_bench.jet_methods import JET_METHODS
from hoderiv_bench.report import SCHEMA, write_plot
from hoderiv_bench.runner import run_suite, run_workload
from hoderiv_bench.workloads import Workload
from hoderiv_ext.__main__ import main

from conftest import BENCH_TANH as TANH, BENCH_TINY as TINY, tiny_options


STATUSES = {"ok", "wrong", "not served", "skipped", "oom", "failed"}


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_the_json_schema(tmp_path, capsys) -> None:
    output = tmp_path / "results.json"
    code = main(["bench", "-w", "laplacian/tanh", "training/sin", "newton", "elementwise/tanh n=65536",
                 "--device", "cpu", "--device-peaks", "on", "-o", str(output), *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| workload" in printed and "hoderiv_ext vs nested" in printed and str(output) in printed

    data = json.loads(output.read_text())
    assert data["schema"] == SCHEMA
    assert set(data) >= {"environment", "options", "memory_method", "peaks", "total_seconds", "workloads"}
    env = data["environment"]
    for key in ("device", "device_name", "dtype", "torch_version", "hoderiv_ext_version", "build_info", "date",
                "python_version", "cpu_count", "torch_threads"):
        assert key in env, key
    assert env["device"] == "cpu" and env["torch_version"] == torch.__version__
    assert isinstance(env["build_info"], dict) and "cpu_kernels" in env["build_info"]
    assert data["options"]["suite"] == "quick" and data["options"]["compile"] is False
    assert data["peaks"]["gemm_flop_per_s"] > 0 and data["peaks"]["copy_bytes_per_s"] > 0

    names = [w["name"] for w in data["workloads"]]
    assert {w["family"] for w in data["workloads"]} == {"laplacian", "training", "newton", "elementwise"}
    assert len(names) == len(set(names))
    for w in data["workloads"]:
        assert w["status"] == "ok", (w["name"], w["reason"])
        assert isinstance(w["batch"], int) and isinstance(w["tolerance"], float)
        # torch-jet's methods join the laplacian and training workloads only when it is installed; the
        # package's compiled path joins them always
        expected = {"kernel", "autograd", "nested", "func", "compile"}
        if w["family"] in ("laplacian", "training"):
            expected.add("kernel-compile")
            assert w["methods"]["kernel-compile"]["status"] == "skipped"  # compile is off
        assert set(w["methods"]) - set(JET_METHODS) == expected
        for name, m in w["methods"].items():
            assert m["status"] in STATUSES and m["name"] == name
            assert m["role"] == ("package" if name in ("kernel", "autograd", "kernel-compile") else "baseline")
            if m["status"] == "ok":
                assert isinstance(m["seconds"], float) and m["seconds"] > 0
                assert isinstance(m["runs"], int) and m["runs"] >= 1
                assert isinstance(m["peak_memory_bytes"], int) and m["peak_memory_bytes"] >= 0
                assert 0 <= m["max_error"] <= w["tolerance"]
                assert isinstance(m["speedup_vs_nested"], float) and isinstance(m["speedup_vs_best_baseline"], float)
            else:
                assert m["seconds"] is None and isinstance(m["reason"], str)
        assert w["methods"]["nested"]["speedup_vs_nested"] == pytest.approx(1.0)
        assert w["methods"]["compile"]["status"] == "skipped"
        assert w["best_baseline"] in ("nested", "func", "jet") and w["package_best"] in ("kernel", "autograd")
    by_family = {w["family"]: w for w in data["workloads"]}
    # training/sin: the Sequential Taylor engine refuses the Sine module, an engine that traces any function serves it
    assert by_family["training"]["methods"]["kernel"]["status"] in ("ok", "not served")
    assert by_family["newton"]["methods"]["kernel"]["status"] == "not served"
    assert by_family["newton"]["notes"]["parameters"] == 33
    elementwise = by_family["elementwise"]["methods"]["kernel"]
    assert elementwise["bandwidth_bytes_per_s"] > 0 and elementwise["bandwidth_fraction_of_peak"] > 0
    assert by_family["laplacian"]["methods"]["nested"]["flops"] > 0


def test_the_plot_is_written_when_matplotlib_is_installed(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    results = run_suite([Workload("laplacian", "tanh", n, 2, 4, 1) for n in (8, 16)],
                        tiny_options(methods=frozenset({"kernel", "nested"})))
    path = tmp_path / "plot.png"
    assert write_plot(results, path, "test") is None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_plot_without_two_batch_sizes(tmp_path) -> None:
    result = run_workload(TANH, tiny_options(methods=frozenset({"nested"})))
    why = write_plot([result], tmp_path / "plot.png", "test")
    assert why is not None and not (tmp_path / "plot.png").exists()
