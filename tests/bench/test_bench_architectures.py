"""The architecture axis of the bench (hoderiv_bench/architectures.py, workloads.py, jet_methods.py).

Each model kind builds deterministically and is a per-sample (N, d) -> (N, 1) function; every
method of its laplacian, training and hessian workloads agrees with the float64 reference (checked by the
runner); the kernel path is either served (and agrees) or reported "not served" with the engine's
reason, never a crash; the --suite architectures grid and the filters select the new workloads
without renaming the old ones; torch-jet is an optional baseline that is absent without it.
"""

from __future__ import annotations

import json

import pytest
import torch

import hoderiv_bench.methods as bench_methods
import hoderiv_bench.workloads as bench_workloads
from hoderiv_bench import jet_methods
from hoderiv_bench.architectures import ARCHITECTURE_FUNCTIONS, ARCHITECTURES, NEW_ARCHITECTURES, build_model
from hoderiv_bench.runner import run_workload
from hoderiv_bench.workloads import (ARCHITECTURE_SUITE, QUICK, ArchitectureSizes, Workload, architecture_function,
                                     select, suite, with_overrides)
from hoderiv_ext import NotServed
from hoderiv_ext.__main__ import main

from conftest import BENCH_TINY as TINY, tiny_options

ARCH_TINY = ["--batch", "8", "--dims", "2", "--widths", "4", "--depths", "1",
             "--min-run-time", "0.002", "--rounds", "1", "--no-plot", "-q"]


def tiny(family: str, architecture: str, d: int = 2, width: int = 4, depth: int = 2, n: int = 8) -> Workload:
    return Workload(family, architecture_function(architecture), n, d, width, depth, architecture)


def refuse_kernel(monkeypatch: pytest.MonkeyPatch, reason: str, probe: bool = True) -> None:
    """Make derivatives(..., backend="kernel") raise NotServed(reason), as the engine does for a model it
    cannot serve: in the bench's probe (``probe``) and in the kernel method itself."""
    def refusing(original):
        def call(*args, **kwargs):
            if kwargs.get("backend") == "kernel":
                raise NotServed(reason)
            return original(*args, **kwargs)
        return call

    if probe:
        monkeypatch.setattr(bench_workloads, "derivatives", refusing(bench_workloads.derivatives))
    monkeypatch.setattr(bench_methods, "derivatives", refusing(bench_methods.derivatives))


# ----------------------------------------------------------------------------- the models


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("d", [1, 3])
def test_each_architecture_is_a_deterministic_per_sample_function(architecture, d) -> None:
    net, again = build_model(architecture, d, 6, 2), build_model(architecture, d, 6, 2)
    x = torch.randn(5, d, generator=torch.Generator().manual_seed(3))
    y = net(x)
    assert y.shape == (5, 1) and torch.isfinite(y).all()
    assert torch.equal(y, again(x))  # the same seed builds the same network
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    torch.testing.assert_close(net(x[2:3]), y[2:3])  # no op mixes samples
    changed = x.clone()
    changed[0] += 1.0
    torch.testing.assert_close(net(changed)[1:], y[1:])


def test_the_models_are_what_the_brief_says() -> None:
    residual = build_model("residual", 3, 8, 2)
    x = torch.randn(4, 3)
    h = residual.inp(x)
    for block in residual.blocks:
        h = h + torch.tanh(block(h))
    torch.testing.assert_close(residual(x), residual.out(h))
    assert len(residual.blocks) == 2

    fourier = build_model("fourier", 3, 8, 2)
    assert fourier.features.B.shape == (3, 4) and "features.B" in dict(fourier.named_buffers())
    assert all(p is not fourier.features.B for p in fourier.parameters())  # fixed, not trained
    z = x @ fourier.features.B
    torch.testing.assert_close(fourier(x), fourier.mlp(torch.cat([torch.sin(z), torch.cos(z)], dim=-1)))

    siren = build_model("siren", 3, 8, 2)
    assert isinstance(siren, torch.nn.Sequential)
    sines = [m for m in siren if isinstance(m, bench_methods.Sine)]
    assert [s.w0 for s in sines] == [30.0, 1.0]
    assert siren[0].weight.abs().max() <= 1 / 3 and siren[2].weight.abs().max() <= (6 / 8) ** 0.5
    torch.testing.assert_close(sines[0](x), torch.sin(30 * x))

    hardbc = build_model("hardbc", 3, 8, 2)
    torch.testing.assert_close(hardbc(x), x[:, :1] * (1 - x[:, :1]) * hardbc.mlp(x))
    on_boundary = torch.randn(4, 3)
    on_boundary[:, 0] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert torch.equal(hardbc(on_boundary), torch.zeros(4, 1))


# ----------------------------------------------------------------------------- every method against the reference


@pytest.mark.parametrize("architecture", NEW_ARCHITECTURES)
@pytest.mark.parametrize("family, d", [("laplacian", 3), ("training", 3), ("hessian", 3),
                                       ("hessian", 8)])  # d = 8: the traced full Hessian in mixed mode
def test_every_method_agrees_with_the_reference(architecture, family, d) -> None:
    result = run_workload(tiny(family, architecture, d=d), tiny_options())
    assert result.status == "ok", result.reason
    for name in ("autograd", "nested", "func"):
        method = result.methods[name]
        assert method.status == "ok", (name, method.reason)
        assert method.max_error <= result.tolerance and method.seconds > 0
    kernel = result.methods["kernel"]
    assert kernel.status in ("ok", "not served"), kernel.reason  # never wrong, never failed
    if kernel.status == "ok":
        assert kernel.max_error <= result.tolerance
    else:
        assert kernel.reason
    assert result.methods["compile"].status == "skipped"
    for name in jet_methods.JET_METHODS:  # present only with torch-jet installed
        if name in result.methods:
            assert result.methods[name].status in ("ok", "not served", "skipped"), result.methods[name].reason


@pytest.mark.parametrize("architecture", NEW_ARCHITECTURES)
def test_a_kernel_that_raises_not_served_is_reported_not_served(monkeypatch, architecture) -> None:
    reason = f"f is a {architecture}, not an nn.Sequential of Linear layers and supported activations"
    refuse_kernel(monkeypatch, reason)
    result = run_workload(tiny("laplacian", architecture), tiny_options())
    assert result.status == "ok"
    assert result.methods["kernel"].status == "not served" and result.methods["kernel"].reason == reason
    assert result.methods["autograd"].status == "ok" and result.package_best == "autograd"


def test_not_served_at_call_time_is_reported_not_served(monkeypatch) -> None:
    refuse_kernel(monkeypatch, "no Taylor rule for aten.slice", probe=False)  # the probe passes, the call refuses
    result = run_workload(tiny("training", "hardbc"), tiny_options())
    kernel = result.methods["kernel"]
    assert kernel.status == "not served" and "aten.slice" in kernel.reason and kernel.seconds is None


def test_the_float64_reference_also_holds_in_float64() -> None:
    result = run_workload(tiny("laplacian", "siren"), tiny_options(dtype=torch.float64,
                                                                   methods=frozenset({"nested", "func"})))
    assert result.methods["nested"].max_error == 0.0 and result.methods["func"].status == "ok"


# ----------------------------------------------------------------------------- the grid and the filters


def test_the_architecture_suite_is_every_architecture_at_the_requested_sizes() -> None:
    grid = suite(ARCHITECTURE_SUITE)
    assert len(grid) == len(ARCHITECTURES) * 3 * 2 * 2 and len(grid) == len(set(grid))
    assert {w.family for w in grid} == {"laplacian", "training", "hessian"}
    assert {w.architecture for w in grid} == set(ARCHITECTURES)
    assert {w.width for w in grid} == {64, 128} and {w.d for w in grid} == {2, 8} and {w.batch for w in grid} == {4096}
    assert {w.function for w in grid if w.architecture != "mlp"} == set(ARCHITECTURE_FUNCTIONS.values())
    names = {w.name for w in grid}
    assert {"laplacian/residual/tanh d=8 w=64 L=4 N=4096", "training/siren/sin d=2 w=128 L=4 N=4096",
            "laplacian/tanh d=2 w=64 L=4 N=4096", "training/hardbc/tanh d=8 w=128 L=4 N=4096",
            "hessian/fourier/tanh d=8 w=64 L=4 N=4096"} <= names
    assert {w.params()["architecture"] for w in grid} == set(ARCHITECTURES)


def test_the_default_suites_keep_their_workloads_and_names() -> None:
    grid = suite(QUICK)
    assert len(grid) == 25 and {w.architecture for w in grid} == {"mlp"}
    assert "laplacian/tanh d=4 w=32 L=2 N=1024" in {w.name for w in grid}
    assert Workload("laplacian", "tanh", 8, 2, 4, 1).name == "laplacian/tanh d=2 w=4 L=1 N=8"
    assert {w.architecture for w in suite(bench_workloads.FULL)} == {"mlp"}


def test_filters_select_architectures_by_name_family_and_glob() -> None:
    grid = suite(ARCHITECTURE_SUITE)
    for architecture in NEW_ARCHITECTURES:
        chosen, unmatched = select(grid, [architecture])
        assert not unmatched and chosen and {w.architecture for w in chosen} == {architecture}
    chosen, _ = select(grid, ["laplacian/siren*"])
    assert chosen and all(w.family == "laplacian" and w.architecture == "siren" for w in chosen)
    chosen, _ = select(grid, ["laplacian/tanh"])  # the plain MLP's names, as before
    assert chosen and {w.architecture for w in chosen} == {"mlp"} and {w.family for w in chosen} == {"laplacian"}
    chosen, _ = select(grid, ["mlp"])
    assert chosen and {w.architecture for w in chosen} == {"mlp"}
    chosen, _ = select(grid, ["training", "w=64"])
    assert {w.family for w in chosen} == {"laplacian", "training", "hessian"}
    assert all(w.family == "training" or w.width == 64 for w in chosen)
    assert select(suite(QUICK), ["residual"])[1] == ["residual"]


def test_size_overrides_replace_the_architecture_axes() -> None:
    sizes = with_overrides(ARCHITECTURE_SUITE, batches=[8, 16], dims=[3], widths=[4, 4], depths=None)
    assert isinstance(sizes, ArchitectureSizes)
    assert sizes.batches == (8, 16) and sizes.dims == (3,) and sizes.widths == (4,) and sizes.depths == (4,)
    grid = suite(sizes)
    assert len(grid) == len(ARCHITECTURES) * 3 * 2  # families x batches
    assert {(w.batch, w.d, w.width, w.depth) for w in grid} == {(8, 3, 4, 4), (16, 3, 4, 4)}


def test_list_and_option_errors_of_the_architecture_suite(capsys) -> None:
    assert main(["bench", "--suite", "architectures", "--list", "-w", "residual", "--batch", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all("/residual/tanh " in line and line.endswith("N=8") for line in lines)
    assert len(lines) == 3 * 2 * 2  # families x dims x widths
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--suite", "architectures", "--full"])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "-w", "siren", "--list"])
    assert exit_info.value.code == 2 and "--suite architectures" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--suite", "nope"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_tiny_architecture_run_writes_them_to_the_json(tmp_path) -> None:
    output = tmp_path / "arch.json"
    code = main(["bench", "--suite", "architectures", "-w", "laplacian/residual*", "training/hardbc*",
                 "--methods", "kernel", "autograd", "nested", "-o", str(output), *ARCH_TINY])
    assert code == 0
    data = json.loads(output.read_text())
    assert data["options"]["suite"] == "architectures" and data["options"]["architectures"] == list(ARCHITECTURES)
    assert [(w["family"], w["architecture"]) for w in data["workloads"]] == [("laplacian", "residual"),
                                                                             ("training", "hardbc")]
    for w in data["workloads"]:
        assert w["status"] == "ok" and w["methods"]["nested"]["status"] == "ok"
        assert w["methods"]["kernel"]["status"] in ("ok", "not served")
        assert w["methods"]["func"]["status"] == "skipped"


def test_the_quick_suite_defaults_are_unchanged_by_the_new_switch(tmp_path) -> None:
    output = tmp_path / "quick.json"
    assert main(["bench", "-w", "laplacian/tanh", "--methods", "nested", "-o", str(output), *TINY]) == 0
    data = json.loads(output.read_text())
    assert data["options"]["suite"] == "quick" and data["options"]["rounds"] == 1
    assert {w["architecture"] for w in data["workloads"]} == {"mlp"}


# ----------------------------------------------------------------------------- torch-jet, optional


def test_without_torch_jet_the_jet_methods_are_absent(monkeypatch) -> None:
    monkeypatch.setattr(jet_methods, "_MODULE", None)
    result = run_workload(tiny("laplacian", "residual"), tiny_options(methods=frozenset({"nested"})))
    assert not set(jet_methods.JET_METHODS) & set(result.methods)
    assert set(result.methods) == {"kernel", "kernel-compile", "autograd", "nested", "func", "compile"}


def test_torch_jet_that_cannot_trace_a_model_is_reported_not_served(monkeypatch) -> None:
    class NoRules:  # a stand-in torch-jet whose tracer has no rule for anything
        @staticmethod
        def jet(f, mock_args, collapsed=False):
            raise NotImplementedError("No jet rule for aten.slice.Tensor. Please file an issue.")

    monkeypatch.setattr(jet_methods, "_MODULE", NoRules)
    result = run_workload(tiny("training", "hardbc"), tiny_options(methods=frozenset({"nested", "jet"})))
    jet = result.methods["jet"]
    assert jet.status == "not served" and "aten.slice" in jet.reason and result.methods["nested"].status == "ok"
    assert result.methods["jet-compile"].status == "skipped"  # not selected


@pytest.mark.parametrize("family", ["laplacian", "training"])
def test_torch_jet_when_installed(monkeypatch, family) -> None:
    if jet_methods.torch_jet() is None:
        pytest.skip("torch-jet (jet-for-pytorch) is not installed")
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: fn)  # keep it fast: the traced graph, eager
    for architecture in ("mlp", "residual", "fourier", "siren"):
        result = run_workload(tiny(family, architecture, d=3),
                              tiny_options(compile=True, methods=frozenset({"nested", "jet", "jet-compile"})))
        for name in jet_methods.JET_METHODS:
            method = result.methods[name]
            assert method.status == "ok", (architecture, name, method.reason)
            assert method.max_error <= result.tolerance
        assert result.methods["jet-compile"].compile_seconds >= 0
    hardbc = run_workload(tiny(family, "hardbc"), tiny_options(methods=frozenset({"nested", "jet"})))
    assert hardbc.methods["jet"].status == "not served" and "slice" in hardbc.methods["jet"].reason


@pytest.mark.slow
@pytest.mark.parametrize("family", ["laplacian", "training"])
def test_the_compiled_kernel_path_is_checked_and_timed_with_compile_on(family) -> None:
    result = run_workload(tiny(family, "mlp"), tiny_options(compile=True, methods=frozenset({"kernel-compile", "nested"})))
    method = result.methods["kernel-compile"]
    assert method.status == "ok", method.reason
    assert method.role == "package" and method.seconds > 0 and method.compile_seconds > 0


def test_the_compiled_kernel_path_is_skipped_with_compile_off_and_timed_for_traced_models() -> None:
    plain = run_workload(tiny("laplacian", "mlp"), tiny_options(methods=frozenset({"kernel-compile", "nested"})))
    assert plain.methods["kernel-compile"].status == "skipped"
    # A traced function runs its traced program inside the compiled function (traced by an eager call first).
    traced = run_workload(tiny("laplacian", "residual"), tiny_options(compile=True,
                                                                      methods=frozenset({"kernel-compile", "nested"})))
    assert traced.methods["kernel-compile"].status == "ok", traced.methods["kernel-compile"].reason
    assert traced.methods["kernel-compile"].compile_seconds > 0
