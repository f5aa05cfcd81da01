"""The bench command line (python -m hoderiv_ext bench, hoderiv_bench/cli.py and workloads.py).

Bad options exit 2 with a clear message; --list; workload filters and size overrides over the
quick and full grids; the module entry point in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hoderiv_bench import workloads
from hoderiv_bench.workloads import QUICK, select, suite, with_overrides
from hoderiv_ext.__main__ import main

from conftest import REPO


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
    assert families == set(workloads.MLP_FAMILIES)  # the operator families are in --suite operators and --full
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


@pytest.mark.slow
def test_the_module_entry_point_runs_bench(tmp_path) -> None:
    command = [sys.executable, "-m", "hoderiv_ext", "bench", "--list", "-w", "newton"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "newton/tanh" in done.stdout
