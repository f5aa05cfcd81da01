"""Check, then time (hoderiv_bench/runner.py): a wrong result or shape is reported and never timed.

A wrong package method fails the command; max_error flags NaN, shape and count mismatches; a
network the Taylor engine does not serve is reported "not served" with the reason.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from hoderiv_bench import runner, workloads
from hoderiv_bench.runner import max_error, run_workload
from hoderiv_ext import NotServed
from hoderiv_ext.__main__ import main

from conftest import BENCH_SIN as SIN, BENCH_TANH as TANH, BENCH_TINY as TINY, tiny_options


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


def test_sin_mlp_kernel_is_not_served_with_the_reason(monkeypatch) -> None:
    # The Taylor engine serves the Sine module (its forward traces to one op); a refusal is simulated
    # below. Either way the bench must not crash: served, it agrees; refused, it says why.
    result = run_workload(SIN, tiny_options())
    kernel = result.methods["kernel"]
    if kernel.status == "ok":
        assert kernel.max_error <= result.tolerance
    else:
        assert kernel.status == "not served" and "Sine" in kernel.reason
        assert result.methods["autograd"].status == "ok" and result.package_best == "autograd"

    reason = "unsupported layer '1' (Sine) for the Taylor engine"

    def refusing(*args, **kwargs):
        raise NotServed(reason)

    monkeypatch.setattr(workloads, "derivatives", refusing)  # the bench's probe of the kernel path
    result = run_workload(SIN, tiny_options())
    assert result.methods["kernel"].status == "not served" and result.methods["kernel"].reason == reason
    assert result.methods["autograd"].status == "ok" and result.package_best == "autograd"
