"""Failures during a bench run (hoderiv_bench/runner.py): out of memory, exceptions, torch.compile.

Each is reported with its status and reason, and the run goes on to the next method or workload.
"""

from __future__ import annotations

import pytest
import torch

from hoderiv_bench import runner, workloads
from hoderiv_bench.runner import is_oom, run_suite, run_workload

from conftest import BENCH_SIN as SIN, BENCH_TANH as TANH, tiny_options


@pytest.mark.slow
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


def test_dispatch_keys_a_workload_leaves_changed_are_put_back(monkeypatch) -> None:
    """A method that leaves Autograd excluded in the thread-local dispatch keys (as a failed compile of the
    torch.func baseline can in torch 2.14.1) must not make the next workload's ops record no graph."""
    calls = [0]

    def leaky(case):
        def run():
            calls[0] += 1
            if calls[0] == 1:  # the first workload only
                torch._C._dispatch_tls_set_dispatch_key_excluded(torch._C.DispatchKey.AutogradCPU, True)
            raise RuntimeError("INTERNAL ASSERT FAILED (a stand-in)")
        return run

    monkeypatch.setitem(runner.EXTRA_METHODS, "leaky", ("baseline", leaky))
    first, second = run_suite([TANH, SIN], tiny_options(methods=frozenset({"nested", "leaky"})))
    assert first.methods["leaky"].status == "failed"
    assert not torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.AutogradCPU)
    assert second.status == "ok" and second.methods["nested"].status == "ok"
    leaf = torch.ones(2, requires_grad=True)
    assert torch.tanh(leaf).requires_grad
