"""The operator families of the bench (hoderiv_bench/operators.py, workloads.py, jet_methods.py, cli.py).

Weighted, partial and randomized Laplacians, the bi-Laplacian and directional derivatives: the
--suite operators grid and the issue's sizes in --full; the filters; every method of every family
agrees with the float64 reference on a tiny network; the hand-written baselines give the closed
forms of polynomials; a wrong method is reported WRONG (and a Hutchinson estimate from another seed
is wrong too: the check compares the same estimate); torch-jet's operators are wired in when it is
importable (a stand-in checks the wiring without it); the CLI runs end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from dataclasses import replace

import pytest
import torch

from hoderiv_bench import jet_methods, runner
from hoderiv_bench.operators import (FUNC_OPERATORS, NESTED_OPERATORS, OPERATOR_DIMS, OPERATOR_FAMILIES,
                                     OPERATOR_METHODS, OperatorSpec, autograd_method, kernel_method, operator_mlp,
                                     operator_spec)
from hoderiv_bench.runner import max_error, run_workload
from hoderiv_bench.workloads import (FULL, OPERATOR_SUITE, QUICK, OperatorSizes, Workload, operator_workload, select,
                                     suite, with_overrides)
from hoderiv_ext.__main__ import main

from conftest import REPO, tiny_options

OPS_TINY = ["--batch", "8", "--widths", "4", "--depths", "1",
            "--min-run-time", "0.002", "--rounds", "1", "--no-plot", "-q"]
PACKAGE_AND_BASELINES = ("kernel", "autograd", "nested", "func")
CPU = torch.device("cpu")


def tiny(family: str, d: int | None = None, n: int = 8, width: int = 4, depth: int = 1) -> Workload:
    return operator_workload(family, d or OPERATOR_DIMS[family], (width,) * depth, n)


def scaled_last(factor: float):
    """A method factory: the nested baseline with its last output scaled by ``factor``."""
    def factory(case):
        def wrong():
            *head, last = case.methods["nested"]()
            return (*head, last * factor)
        return wrong
    return factory


# ----------------------------------------------------------------------------- the grids and the filters


def test_the_operator_suite_has_every_family_at_small_sizes() -> None:
    grid = suite(OPERATOR_SUITE)
    assert [w.family for w in grid] == [f for f in OPERATOR_FAMILIES for _ in (128, 512)]
    assert len(grid) == len(set(grid)) == 10
    assert {w.width for w in grid} == {32} and {w.depth for w in grid} == {2} and {w.batch for w in grid} == {128, 512}
    assert {(w.family, w.d) for w in grid} == set(OPERATOR_DIMS.items())
    assert "weighted/tanh d=8 w=32 L=2 N=128" in {w.name for w in grid}


def test_the_full_grid_has_the_issue_sizes_and_the_quick_suite_is_unchanged() -> None:
    full = {w.name: w for w in suite(FULL) if w.family in OPERATOR_FAMILIES}
    assert {w.family for w in full.values()} == set(OPERATOR_FAMILIES)
    weighted = full["weighted/tanh d=50 w=768,768,512,512 L=4 N=256"]
    assert weighted.hidden == (768, 768, 512, 512) and weighted.params()["widths"] == [768, 768, 512, 512]
    assert operator_spec("weighted", 50, CPU, torch.float32).sigma.shape == (50, 25)  # r = d/2
    assert "hutchinson/tanh d=100 w=128 L=3 N=1024" in full
    assert operator_spec("hutchinson", 100, CPU, torch.float32).samples == 16
    assert "bilaplacian/tanh d=3 w=64 L=3 N=1024" in full
    assert not {w.family for w in suite(QUICK)} & set(OPERATOR_FAMILIES)
    assert len(suite(QUICK)) == 25
    assert operator_workload("partial", 4, (32, 32), 8).params()["widths"] is None  # uniform widths: the old fields


def test_the_networks_have_the_requested_widths() -> None:
    net = operator_mlp(5, (7, 6, 3))
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 6), (6, 3), (3, 1)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in net) == 3


def test_filters_and_overrides_select_operator_workloads() -> None:
    grid = suite(OPERATOR_SUITE)
    for family in OPERATOR_FAMILIES:
        chosen, unmatched = select(grid, [family])
        assert not unmatched and {w.family for w in chosen} == {family}
    chosen, _ = select(grid, ["hutchinson*N=512"])
    assert [w.name for w in chosen] == ["hutchinson/tanh d=16 w=32 L=2 N=512"]
    sizes = with_overrides(OPERATOR_SUITE, batches=[8, 16], dims=[3], widths=[4], depths=[1, 2])
    assert isinstance(sizes, OperatorSizes)
    assert {(w.batch, w.d, w.width, w.depth) for w in suite(sizes)} == {(n, 3, 4, depth) for n in (8, 16)
                                                                         for depth in (1, 2)}
    assert len(suite(sizes)) == len(OPERATOR_FAMILIES) * 4


def test_list_and_option_errors_of_the_operator_suite(capsys) -> None:
    assert main(["bench", "--suite", "operators", "--list", "-w", "weighted", "--batch", "8"]) == 0
    assert capsys.readouterr().out.splitlines() == ["weighted/tanh d=8 w=32 L=2 N=8"]
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "-w", "bilaplacian", "--list"])  # the quick suite has no operator workloads
    assert exit_info.value.code == 2 and "--suite operators" in capsys.readouterr().err
    assert main(["bench", "--full", "--list", "-w", "directional"]) == 0
    assert capsys.readouterr().out.splitlines() == ["directional/tanh d=8 w=128 L=4 N=4096"]


# ----------------------------------------------------------------------------- every method against the reference


@pytest.mark.parametrize("family", OPERATOR_FAMILIES)
def test_every_method_agrees_with_the_reference_and_a_wrong_one_is_reported(monkeypatch, family) -> None:
    monkeypatch.setitem(runner.EXTRA_METHODS, "wrong", ("baseline", scaled_last(1.01)))  # 1% off in the operator
    result = run_workload(tiny(family, depth=2), tiny_options())
    assert result.status == "ok", result.reason
    for name in PACKAGE_AND_BASELINES:
        method = result.methods[name]
        assert method.status == "ok", (name, method.reason)
        assert method.max_error <= result.tolerance and method.seconds > 0
    wrong = result.methods["wrong"]
    assert wrong.status == "wrong" and "tolerance" in wrong.reason and wrong.seconds is None
    assert result.methods["compile"].status == "skipped"
    assert result.notes["operator"]
    assert result.package_best in ("kernel", "autograd") and result.best_baseline in ("nested", "func")


@pytest.mark.parametrize("family", OPERATOR_FAMILIES)
def test_in_float64_every_method_matches_the_reference_to_rounding(family) -> None:
    result = run_workload(tiny(family), tiny_options(dtype=torch.float64))
    for name in PACKAGE_AND_BASELINES:
        method = result.methods[name]
        assert method.status == "ok" and method.max_error <= 1e-10, (name, method.max_error, method.reason)
    assert result.methods["nested"].max_error == 0.0  # the reference itself


def test_the_hutchinson_check_compares_the_same_estimate() -> None:
    d, n = 6, 32
    torch.manual_seed(0)
    net = operator_mlp(d, (8, 8)).double()
    x = torch.randn(n, d, dtype=torch.float64)
    spec = operator_spec("hutchinson", d, CPU, torch.float64)
    kernel, autograd = kernel_method(net, x, spec), autograd_method(net, x, spec)
    assert max_error(kernel, autograd)[0] <= 1e-12  # the two engines: the same estimate for the same seed
    assert max_error(kernel_method(net, x, spec), kernel)[0] == 0.0  # every call reseeds its generator
    other = kernel_method(net, x, OperatorSpec("hutchinson", d, samples=spec.samples, seed=spec.seed + 1))
    assert max_error(other[2:], kernel[2:])[0] > 1e-3  # another draw is another estimate


def test_a_hutchinson_estimate_from_another_seed_is_reported_wrong(monkeypatch) -> None:
    def reseeded(net, x, spec):  # the same estimator on another draw of directions
        return FUNC_OPERATORS["hutchinson"](net, x, replace(spec, seed=spec.seed + 1))

    monkeypatch.setitem(OPERATOR_METHODS, "func", reseeded)
    result = run_workload(tiny("hutchinson", n=16), tiny_options(methods=frozenset({"nested", "func"})))
    assert result.methods["nested"].status == "ok"
    assert result.methods["func"].status == "wrong" and result.methods["func"].seconds is None


# ----------------------------------------------------------------------------- the baselines against closed forms


def cube(x: torch.Tensor) -> torch.Tensor:
    return x.pow(3).sum(-1, keepdim=True)  # H = diag(6 x)


def quartic_radius(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).sum(-1, keepdim=True).pow(2)  # |x|^4: bi-Laplacian 8 d (d + 2)


@pytest.mark.parametrize("route", ["nested", "func"])
def test_the_baselines_give_the_closed_forms(route) -> None:
    table = NESTED_OPERATORS if route == "nested" else FUNC_OPERATORS
    d, n = 4, 5
    x = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    close = lambda got, expected: torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)  # noqa: E731

    weighted = operator_spec("weighted", d, CPU, torch.float64)
    value, gradient, operator = table["weighted"](cube, x, weighted)
    close(value, x.pow(3).sum(-1))
    close(gradient, 3 * x.pow(2))
    close(operator, (6 * x * (weighted.sigma @ weighted.sigma.T).diagonal()).sum(-1))

    partial = operator_spec("partial", d, CPU, torch.float64)
    assert partial.dims == (0, 1, 2)
    close(table["partial"](cube, x, partial)[2], 6 * x[:, :-1].sum(-1))

    # Rademacher directions square to one: for a diagonal Hessian the estimate is the exact Laplacian
    hutchinson = operator_spec("hutchinson", d, CPU, torch.float64)
    close(table["hutchinson"](cube, x, hutchinson)[2], 6 * x.sum(-1))

    value, gradient, operator = table["bilaplacian"](quartic_radius, x, operator_spec("bilaplacian", d, CPU,
                                                                                          torch.float64))
    close(operator, torch.full((n,), 8.0 * d * (d + 2), dtype=torch.float64))
    close(gradient, 4 * x.pow(2).sum(-1, keepdim=True) * x)

    directional = operator_spec("directional", d, CPU, torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    s, t = x @ w, directional.v @ w
    coefficients = table["directional"](lambda p: (p @ w).pow(4).unsqueeze(-1), x, directional)
    for k, got in enumerate(coefficients):
        close(got, 24.0 / [24, 6, 2, 1, 1][k] * s.pow(4 - k) * t.pow(k))


# ----------------------------------------------------------------------------- torch-jet


class StandInJet(types.SimpleNamespace):
    """A torch-jet stand-in with its operators' interface, computed by torch.func (checks the wiring)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(scale=scale)

    def laplacian(self, f, mock_args, weighting=None):
        apply_sigma, r = weighting

        def per_sample(point):
            hessian = torch.func.hessian(lambda p: f(p).squeeze())(point)
            sigma = apply_sigma(point, torch.eye(r, dtype=point.dtype)).T  # (d, r): sigma applied to e_k
            return (self.scale * (sigma.T @ hessian @ sigma).diagonal().sum()).reshape(1)

        return per_sample

    def bilaplacian(self, f, mock_args):
        def laplacian(p):
            return torch.func.hessian(lambda q: f(q).squeeze())(p).diagonal().sum()

        return lambda point: (self.scale * torch.func.hessian(laplacian)(point).diagonal().sum()).reshape(1)

    def capture_graph(self, fn, args):
        return fn, None


@pytest.mark.parametrize("family", ["weighted", "bilaplacian"])
def test_torch_jet_operators_are_wired_in(monkeypatch, family) -> None:
    monkeypatch.setattr(jet_methods, "_MODULE", StandInJet())
    monkeypatch.setattr(torch, "compile", lambda fn, *args, **kwargs: fn)
    result = run_workload(tiny(family), tiny_options(compile=True, methods=frozenset({"nested", "jet", "jet-compile"})))
    for name in jet_methods.JET_METHODS:
        assert result.methods[name].status == "ok", (name, result.methods[name].reason)
    monkeypatch.setattr(jet_methods, "_MODULE", StandInJet(scale=1.01))  # a wrong operator is caught
    result = run_workload(tiny(family), tiny_options(methods=frozenset({"nested", "jet"})))
    assert result.methods["jet"].status == "wrong"


def test_torch_jet_is_absent_where_it_has_no_operator_or_is_not_installed(monkeypatch) -> None:
    monkeypatch.setattr(jet_methods, "_MODULE", StandInJet())
    for family in ("partial", "hutchinson", "directional"):
        result = run_workload(tiny(family), tiny_options(methods=frozenset({"nested"})))
        assert not set(jet_methods.JET_METHODS) & set(result.methods)
    monkeypatch.setattr(jet_methods, "_MODULE", None)
    result = run_workload(tiny("weighted"), tiny_options(methods=frozenset({"nested"})))
    assert set(result.methods) == {"kernel", "autograd", "nested", "func", "compile"}


def test_torch_jet_that_cannot_trace_is_reported_not_served(monkeypatch) -> None:
    class NoRules:
        @staticmethod
        def bilaplacian(f, mock_args):
            raise NotImplementedError("No jet rule for aten.silu.default. Please file an issue.")

    monkeypatch.setattr(jet_methods, "_MODULE", NoRules)
    result = run_workload(tiny("bilaplacian"), tiny_options(methods=frozenset({"nested", "jet"})))
    assert result.methods["jet"].status == "not served" and "aten.silu" in result.methods["jet"].reason


@pytest.mark.parametrize("family", ["weighted", "bilaplacian"])
def test_torch_jet_when_installed(family) -> None:
    if jet_methods.torch_jet() is None:
        pytest.skip("torch-jet (jet-for-pytorch) is not installed")
    result = run_workload(tiny(family, depth=2), tiny_options(methods=frozenset({"nested", "jet"})))
    assert result.methods["jet"].status == "ok", result.methods["jet"].reason


# ----------------------------------------------------------------------------- end to end


def test_a_tiny_operator_run_writes_them_to_the_json(tmp_path, capsys) -> None:
    output = tmp_path / "ops.json"
    assert main(["bench", "--suite", "operators", "-o", str(output), *OPS_TINY]) == 0
    printed = capsys.readouterr().out
    assert "(operators suite)" in printed and "hutchinson/tanh d=16 w=4 L=1" in printed
    data = json.loads(output.read_text())
    assert data["options"]["suite"] == "operators" and data["options"]["families"] == list(OPERATOR_FAMILIES)
    assert data["options"]["dims"] == {family: [d] for family, d in OPERATOR_DIMS.items()}
    assert [w["family"] for w in data["workloads"]] == list(OPERATOR_FAMILIES)
    for w in data["workloads"]:
        assert w["status"] == "ok", (w["name"], w["reason"])
        assert w["notes"]["operator"] and w["batch"] == 8 and w["width"] == 4
        for name in PACKAGE_AND_BASELINES:
            assert w["methods"][name]["status"] == "ok", (w["name"], name, w["methods"][name]["reason"])
            assert 0 <= w["methods"][name]["max_error"] <= w["tolerance"]
    algorithms = {w["family"]: w["notes"].get("kernel_algorithm") for w in data["workloads"]}
    assert algorithms["bilaplacian"] == "bilaplacian"


def test_a_wrong_package_method_on_an_operator_makes_the_command_fail(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(runner.EXTRA_METHODS, "broken", ("package", scaled_last(-1.0)))
    output = tmp_path / "wrong.json"
    code = main(["bench", "--suite", "operators", "-w", "directional", "--methods", "nested", "broken",
                 "-o", str(output), *OPS_TINY])
    assert code == 1 and "disagreed with the reference" in capsys.readouterr().err
    assert json.loads(output.read_text())["workloads"][0]["methods"]["broken"]["status"] == "wrong"


@pytest.mark.slow
def test_the_operators_script_still_parses_its_command_line() -> None:
    done = subprocess.run([sys.executable, "benchmarks/bench_operators.py", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--cases" in done.stdout and "bilaplacian" in done.stdout
