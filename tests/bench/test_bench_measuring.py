"""What the bench measures (hoderiv_bench/memory.py, cli.py, progress.py): live bytes, FLOPs, timing noise, progress."""

from __future__ import annotations

import io

import pytest
import torch

from hoderiv_bench.memory import LiveTensorBytes, measure
from hoderiv_bench.progress import Progress
from hoderiv_bench.runner import MethodResult, WorkloadResult

from conftest import BENCH_TANH as TANH


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


def test_a_compiled_method_keeps_its_graph_when_another_compiles() -> None:
    """Regression: each compiled method's first call reset dynamo, throwing away the graphs the workload's
    earlier compiled methods had built, so those recompiled inside their timing (kernel-compile measured
    348 against 173 us whenever jet-compile ran after it)."""
    from hoderiv_bench.compile_once import CompiledOnFirstCall

    compiles: list[int] = []

    def counting(graph: torch.fx.GraphModule, example_inputs: object) -> object:
        compiles.append(1)
        return graph.forward

    def build(fn, args):  # type: ignore[no-untyped-def]
        return torch.compile(fn, backend=counting, fullgraph=True)

    x = torch.randn(8)
    first = CompiledOnFirstCall(lambda t: torch.sin(t) * 2, torch.device("cpu"), build)
    second = CompiledOnFirstCall(lambda t: torch.cos(t) + 1, torch.device("cpu"), build)
    torch._dynamo.reset()
    first(x)
    second(x)
    assert len(compiles) == 2
    torch.testing.assert_close(first(x), torch.sin(x) * 2)
    assert len(compiles) == 2, "the first method recompiled after the second one's first call"


def test_the_blocks_are_sized_after_a_warm_up_call() -> None:
    """Regression: a first call that compiles (seconds) sized the timing blocks at one call each."""
    import time

    from hoderiv_bench.runner import time_interleaved

    calls = []

    def slow_first() -> None:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.2)

    failures: dict = {}
    timings = time_interleaved({"f": slow_first}, 0.02, 2, failures)
    assert not failures
    assert timings["f"].runs > 2
