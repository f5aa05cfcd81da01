"""The benchmark suite (python -m hoderiv_ext bench): options, JSON schema, check-then-time, OOM, a tiny run.

Everything runs on CPU at tiny sizes with tiny timing budgets; the figures are not looked at,
only that they are there, have the right types, and that the checks catch what they must.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hoderiv_ext.__main__ import main
from hoderiv_bench import runner, workloads
from hoderiv_bench.memory import LiveTensorBytes, measure
from hoderiv_bench.progress import Progress
from hoderiv_bench.report import SCHEMA, write_plot
from hoderiv_bench.runner import MethodResult, Options, WorkloadResult, is_oom, max_error, run_suite, run_workload
from hoderiv_bench.workloads import QUICK, Workload, select, suite, with_overrides

REPO = Path(__file__).resolve().parents[1]
TINY = ["--batch", "8", "16", "--dims", "2", "--widths", "4", "--depths", "1",
        "--min-run-time", "0.002", "--rounds", "1", "--no-plot", "-q"]
STATUSES = {"ok", "wrong", "not served", "skipped", "oom", "failed"}


def tiny_options(**changes) -> Options:
    options = Options(device=torch.device("cpu"), dtype=torch.float32, min_run_time=0.002, rounds=1)
    for key, value in changes.items():
        setattr(options, key, value)
    return options


TANH = Workload("laplacian", "tanh", 8, 2, 4, 1)
SIN = Workload("hessian", "sin", 8, 2, 4, 1)


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "tpu"], "--device"),
        (["--device", "not a device"], "--device"),
        (["--dtype", "float16"], "invalid choice"),
        (["--workloads", "no-such-workload"], "no workload matches 'no-such-workload'"),
        (["--methods", "kernel", "bogus"], "--methods: unknown 'bogus'"),
        (["--batch", "0"], "positive integer"),
        (["--batch", "many"], "positive integer"),
        (["--min-run-time", "-1"], "positive number"),
        (["--compile", "--no-compile"], "not allowed with"),
        (["--device-peaks", "maybe"], "invalid choice"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_cuda_without_cuda_is_a_clear_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_output_that_is_a_directory_is_refused(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--output", str(tmp_path), "-w", "newton"])
    assert exit_info.value.code == 2
    assert "is a directory" in capsys.readouterr().err


def test_output_under_a_file_is_refused(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--output", str(blocker / "results.json"), "-w", "newton"])
    assert exit_info.value.code == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_list_prints_the_selected_workloads(capsys) -> None:
    assert main(["bench", "--list", "-w", "hessian", "--batch", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("hessian/") for line in lines)
    assert {"hessian/tanh d=4 w=32 L=2 N=8", "hessian/sin d=4 w=32 L=2 N=8"} <= set(lines)


def test_workload_filters_match_family_function_and_name() -> None:
    grid = suite(QUICK)
    families = {w.family for w in grid}
    assert families == set(workloads.FAMILIES)
    assert {w.function for w in grid if w.family != "elementwise"} == {"tanh", "silu", "sin"}
    chosen, unmatched = select(grid, ["sin", "newton", "elementwise/cubic*"])
    assert not unmatched
    assert {w.family for w in chosen} >= {"newton", "elementwise"}
    assert all(w.function == "sin" or w.family == "newton" or w.name.startswith("elementwise/cubic") for w in chosen)
    assert select(grid, ["nothing-like-this"])[1] == ["nothing-like-this"]


def test_size_overrides_replace_the_mlp_axes() -> None:
    sizes = with_overrides(QUICK, batches=[8, 16, 8], dims=[3, 5], widths=[4], depths=[1, 2])
    assert sizes.batches == (8, 16) and sizes.base == (3, 4, 1) and sizes.dims == (5,) and sizes.depths == (2,)
    grid = suite(sizes)
    assert {w.batch for w in grid if w.family in ("laplacian", "rows")} == {8, 16}
    assert any(w.d == 5 for w in grid) and any(w.depth == 2 for w in grid)
    assert len(grid) == len(set(grid))


def test_the_full_grid_covers_every_function_family_and_axis() -> None:
    grid = suite(workloads.FULL)
    for family in workloads.INPUT_FAMILIES + ("training",):
        for function in ("tanh", "silu", "sin"):
            assert {w.batch for w in grid if w.family == family and w.function == function} == set(workloads.FULL.batches)
    assert {w.d for w in grid if w.d} >= {2, 8, 32}
    assert {w.width for w in grid if w.width} >= {32, 128, 512}
    assert {w.depth for w in grid if w.depth} >= {2, 4, 8}


def test_the_module_entry_point_runs_bench(tmp_path) -> None:
    command = [sys.executable, "-m", "hoderiv_ext", "bench", "--list", "-w", "newton"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "newton/tanh" in done.stdout


# ----------------------------------------------------------------------------- check, then time


def test_a_wrong_method_is_reported_wrong_and_not_timed(monkeypatch) -> None:
    calls = {"wrong": 0}

    def wrong_factory(case):
        nested = case.methods["nested"]

        def wrong():
            calls["wrong"] += 1
            value, gradient, laplacian = nested()
            return value, gradient, laplacian * 1.01  # a 1% error in the second derivative

        return wrong

    monkeypatch.setitem(runner.EXTRA_METHODS, "wrong", ("baseline", wrong_factory))
    result = run_workload(TANH, tiny_options())
    wrong = result.methods["wrong"]
    assert wrong.status == "wrong" and "tolerance" in wrong.reason
    assert wrong.seconds is None and wrong.runs is None and wrong.peak_memory_bytes is None
    assert wrong.max_error > result.tolerance
    assert calls["wrong"] == 1  # run once for the check, never timed
    for name in ("kernel", "autograd", "nested", "func"):
        assert result.methods[name].status == "ok", result.methods[name].reason
        assert result.methods[name].seconds > 0
    assert result.best_baseline in ("nested", "func")


def test_a_wrong_shape_is_reported_wrong(monkeypatch) -> None:
    monkeypatch.setitem(runner.EXTRA_METHODS, "transposed",
                        ("baseline", lambda case: (lambda: tuple(t.unsqueeze(0) for t in case.methods["nested"]()))))
    result = run_workload(TANH, tiny_options(methods=frozenset({"nested", "transposed"})))
    assert result.methods["transposed"].status == "wrong"
    assert "shape" in result.methods["transposed"].reason
    assert result.methods["kernel"].status == "skipped"


def test_a_wrong_package_method_makes_the_command_fail(monkeypatch, tmp_path, capsys) -> None:
    def negated(case):
        return lambda: tuple(-t for t in case.methods["nested"]())

    monkeypatch.setitem(runner.EXTRA_METHODS, "broken", ("package", negated))
    output = tmp_path / "wrong.json"
    code = main(["bench", "-w", "laplacian/tanh", "--methods", "nested", "broken", "-o", str(output), *TINY])
    assert code == 1
    assert "disagreed with the reference" in capsys.readouterr().err
    data = json.loads(output.read_text())
    assert {w["methods"]["broken"]["status"] for w in data["workloads"]} == {"wrong"}
    assert all(w["methods"]["broken"]["seconds"] is None for w in data["workloads"])


def test_max_error_flags_nan_shape_and_count() -> None:
    a = torch.tensor([1.0, 2.0])
    assert max_error((a,), (a.double(),))[0] == 0.0
    assert max_error((a * 1.5,), (a.double(),))[0] == pytest.approx(0.5)
    assert max_error((torch.tensor([1.0, math.nan]),), (a.double(),))[0] == math.inf
    assert "shape" in max_error((a[:1],), (a,))[1]
    assert "outputs" in max_error((a, a), (a,))[1]
    assert max_error((a, None), (a, None))[0] == 0.0


def test_sin_mlp_kernel_is_not_served_with_the_reason() -> None:
    result = run_workload(SIN, tiny_options())
    kernel = result.methods["kernel"]
    assert kernel.status == "not served" and "Sine" in kernel.reason
    assert result.methods["autograd"].status == "ok" and result.package_best == "autograd"


# ----------------------------------------------------------------------------- out of memory, failures


def test_out_of_memory_in_a_method_is_reported_and_the_run_goes_on(monkeypatch) -> None:
    def exhausted(case):
        def run():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return run

    monkeypatch.setitem(runner.EXTRA_METHODS, "hungry", ("baseline", exhausted))
    results = run_suite([TANH, SIN], tiny_options(methods=frozenset({"autograd", "nested", "hungry"})))
    assert [r.status for r in results] == ["ok", "ok"]
    for result in results:
        assert result.methods["hungry"].status == "oom" and "20.00 GiB" in result.methods["hungry"].reason
        assert result.methods["hungry"].seconds is None
        assert result.methods["nested"].status == "ok" and result.methods["nested"].seconds > 0


def test_out_of_memory_while_timing_is_reported(monkeypatch) -> None:
    def late(case):
        nested, calls = case.methods["nested"], [0]

        def run():
            calls[0] += 1
            if calls[0] > 2:  # the check and the memory run pass; the timing runs out of memory
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
            return nested()
        return run

    monkeypatch.setitem(runner.EXTRA_METHODS, "late", ("baseline", late))
    result = run_workload(TANH, tiny_options(methods=frozenset({"nested", "late"})))
    assert result.methods["late"].status == "oom" and result.methods["late"].seconds is None
    assert result.methods["nested"].status == "ok"
    assert result.best_baseline == "nested"


def test_a_workload_that_does_not_fit_is_reported_and_the_next_one_runs(monkeypatch) -> None:
    def no_room(workload, device, dtype):
        raise torch.OutOfMemoryError("out of memory building the inputs")

    monkeypatch.setitem(workloads.BUILDERS, "hessian", no_room)
    first, second = run_suite([SIN, TANH], tiny_options(methods=frozenset({"nested"})))
    assert first.status == "oom" and "inputs or reference" in first.reason and not first.methods
    assert second.status == "ok" and second.methods["nested"].status == "ok"


def test_a_method_that_raises_is_reported_failed(monkeypatch) -> None:
    def broken(case):
        def run():
            raise ValueError("no such thing")
        return run

    monkeypatch.setitem(runner.EXTRA_METHODS, "broken", ("baseline", broken))
    result = run_workload(TANH, tiny_options(methods=frozenset({"broken", "nested"})))
    assert result.methods["broken"].status == "failed" and "ValueError: no such thing" in result.methods["broken"].reason


def test_compile_failures_are_reported_as_failed(monkeypatch) -> None:
    def fake_compile(fn, *args, **kwargs):
        def compiled():
            raise RuntimeError("backend exploded")
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = run_workload(TANH, tiny_options(compile=True, methods=frozenset({"nested", "func", "compile"})))
    compiled = result.methods["compile"]
    assert compiled.status == "failed"
    assert "nested" in compiled.reason and "func" in compiled.reason and "backend exploded" in compiled.reason


def test_compile_of_the_best_baseline_is_checked_and_timed(monkeypatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: fn)  # an identity "compiler": fast, exact
    result = run_workload(TANH, tiny_options(compile=True, methods=frozenset({"nested", "func", "compile"})))
    compiled = result.methods["compile"]
    assert compiled.status == "ok" and compiled.seconds > 0 and compiled.compile_seconds >= 0
    assert compiled.compiled_from == min(("nested", "func"), key=lambda n: result.methods[n].seconds)
    assert compiled.peak_memory_bytes is None and "compiled" in compiled.memory_note  # not measurable on CPU


def test_is_oom_recognises_cuda_and_cpu_allocation_failures() -> None:
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(RuntimeError("shape mismatch"))


# ----------------------------------------------------------------------------- measuring


def test_live_tensor_bytes_tracks_the_peak_of_live_storage() -> None:
    x = torch.randn(1000)

    def work():
        a = x * 2  # 4000 bytes live
        b = a * 3  # 8000
        del a  # 4000
        view = b.view(10, 100)  # a view: no new storage
        return view.sum()

    measured = measure(work, torch.device("cpu"), count_flops=True)
    assert measured.peak_bytes == 8000 and measured.flops == 0
    with LiveTensorBytes(count_flops=True) as meter:
        torch.ones(4, 8) @ torch.ones(8, 2)
    assert meter.flops == 2 * 4 * 8 * 2


def test_timing_noise_is_the_upper_quartile_of_the_relative_spread() -> None:
    from hoderiv_bench.cli import _timing_noise

    result = WorkloadResult(TANH)
    for index, spread in enumerate([0.0, 0.1, 0.2, 0.5, 0.05]):
        result.methods[f"m{index}"] = MethodResult(f"m{index}", "baseline", seconds=2.0, iqr_seconds=spread * 2.0)
    result.methods["wrong"] = MethodResult("wrong", "baseline", status="wrong")
    assert _timing_noise([result]) == pytest.approx(0.2)
    assert _timing_noise([WorkloadResult(TANH)]) is None


def test_progress_writes_one_line_per_workload_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(2, stream=stream)
    progress.start("a")
    progress.finish("a", "ok")
    progress.finish("b", "oom")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[") and "1/2" in lines[0] and lines[1].endswith("b: oom")


# ----------------------------------------------------------------------------- end to end


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
        assert set(w["methods"]) == {"kernel", "autograd", "nested", "func", "compile"}
        for name, m in w["methods"].items():
            assert m["status"] in STATUSES and m["name"] == name
            assert m["role"] == ("package" if name in ("kernel", "autograd") else "baseline")
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
        assert w["best_baseline"] in ("nested", "func") and w["package_best"] in ("kernel", "autograd")
    by_family = {w["family"]: w for w in data["workloads"]}
    assert by_family["training"]["methods"]["kernel"]["status"] == "not served"
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
