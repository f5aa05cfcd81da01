"""What the tests share: devices, dtypes and tolerances, the CUDA mark, the networks and comparisons.

The folders mirror the package (ops/, engines/, api/, plus integration/ and
bench/); there is no ``__init__.py`` anywhere under tests/ (an installed
package must not be shadowed by the source tree), so every test file has a
unique basename and imports these helpers as ``from conftest import ...``.

CUDA cases are parametrised like CPU ones (``DEVICES``) or marked
``@needs_cuda``; they skip cleanly unless a CUDA device is present AND the
package was built with its CUDA kernels (a CPU-only build on a GPU machine
skips them too). ``pytest -m cuda`` selects exactly those cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import hoderiv_ext
from hoderiv_bench.workloads import Workload
from hoderiv_ext import derivatives
from hoderiv_ext.engines import select

REPO = Path(__file__).resolve().parent.parent  # README.md, examples/

# ----------------------------------------------------------------------------- devices and dtypes

HAS_CUDA = torch.cuda.is_available()
HAS_CUDA_KERNELS = HAS_CUDA and hoderiv_ext.build_info()["cuda_kernels"]
CUDA_SKIP_REASON = "needs a CUDA device and the CUDA kernels"

needs_cuda = pytest.mark.cuda  # the one CUDA mark: skipped by pytest_collection_modifyitems below

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=needs_cuda)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every case marked ``cuda`` (``@needs_cuda``, the cuda entry of ``DEVICES``) without the CUDA kernels."""
    if HAS_CUDA_KERNELS:
        return
    skip = pytest.mark.skip(reason=CUDA_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def tolerances(dtype: torch.dtype) -> dict[str, float]:
    """rtol/atol for comparing two computations of the same derivative."""
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture(autouse=True)
def fresh_not_served_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which not-served reasons were warned about (once per reason per process): each test starts fresh."""
    monkeypatch.setattr(select, "_WARNED_REASONS", set())


# ----------------------------------------------------------------------------- function domains

# Functions of the table that are finite only on part of the real line (log, sqrt, rsqrt need x > 0, log1p
# x > -1, reciprocal x != 0, tan |x| < pi/2); the others are finite everywhere.
RESTRICTED_DOMAINS = ("log", "log1p", "sqrt", "rsqrt", "reciprocal", "tan")


def into_domain(name: str, x: torch.Tensor) -> torch.Tensor:
    """x mapped into the domain where the table's function ``name`` and its derivatives are finite, at
    least 1 away from its edge (0.4 atan(x) for tan, within 0.63 of 0), so a bias of up to 0.9 keeps it
    inside; the identity for the functions finite everywhere."""
    if name in ("log", "sqrt", "rsqrt"):
        return x.abs() + 1.0
    if name == "log1p":
        return x.abs()
    if name == "reciprocal":
        return torch.where(x >= 0, x + 1.0, x - 1.0)
    if name == "tan":
        return 0.4 * torch.atan(x)
    return x


# ----------------------------------------------------------------------------- autograd passes


def record_grad_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """From now on, record every ``torch.autograd.grad`` call: True for a batched (is_grads_batched) pass."""
    calls: list[bool] = []
    original = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(bool(kwargs.get("is_grads_batched", False)))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    return calls


def refuse_batched_grads(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, make ``torch.autograd.grad(..., is_grads_batched=True)`` fail like an op without a batching rule."""
    original = torch.autograd.grad

    def no_batching(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("pretend an op has no batching rule")
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)


# ----------------------------------------------------------------------------- networks


def mlp(d: int, o: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """d -> 8 -> tanh -> 8 -> softplus -> o: the autograd engine's test network."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, 8), nn.Softplus(), nn.Linear(8, o)).to(dtype)


def make_mlp(d: int, widths: list[int], outputs: int, activation, dtype, device, seed: int = 0) -> nn.Sequential:
    """Linear + ``activation()`` per width in ``widths``, then a Linear to ``outputs``: the Taylor engine's test network."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    previous = d
    for width in widths:
        layers += [nn.Linear(previous, width), activation()]
        previous = width
    layers.append(nn.Linear(previous, outputs))
    return nn.Sequential(*layers).to(dtype=dtype, device=device)


def two_affine_blocks(activation, device: str) -> nn.Sequential:
    """4 -> 12 -> act -> 6 -> 10 (two Linear layers in a row) -> act -> 1, float64."""
    return nn.Sequential(nn.Linear(4, 12), activation(), nn.Linear(12, 6), nn.Linear(6, 10), activation(),
                         nn.Linear(10, 1)).double().to(device)


# Every activation the Taylor engine serves, and every form of hessian= (rows with a negative index, out of order).
ACTIVATIONS = [
    nn.Tanh, nn.Sigmoid, lambda: nn.Softplus(beta=1.5, threshold=8.0), nn.SiLU, nn.GELU,
    lambda: nn.GELU(approximate="tanh"), lambda: nn.ELU(alpha=0.7), lambda: nn.LeakyReLU(0.1), nn.ReLU,
]
REQUESTS = [None, "full", "diagonal", "laplacian", [0], [1, 0], [-1, 0, 1]]
SECOND_FIELDS = ("hessian", "hessian_rows", "hessian_diagonal", "laplacian")


# ----------------------------------------------------------------------------- comparing results


def result_fields(result) -> list[torch.Tensor]:
    """value, gradient and the one second-order field a Derivatives holds."""
    return [result.value, result.gradient] + [getattr(result, f) for f in SECOND_FIELDS if getattr(result, f) is not None]


def assert_engines_agree(net, x, hessian, *, rtol=None, atol=None) -> None:
    """backend="kernel" (the Taylor engine) equals backend="autograd" on every field of the result."""
    kernel = derivatives(net, x, hessian=hessian, backend="kernel")
    reference = derivatives(net, x, hessian=hessian, backend="autograd")
    assert kernel.engine == "taylor" and reference.engine == "autograd"
    if rtol is None:
        rtol, atol = (1e-10, 1e-12) if x.dtype == torch.float64 else (1e-4, 1e-5)
    for name in ("value", "gradient") + SECOND_FIELDS:
        got, expected = getattr(kernel, name), getattr(reference, name)
        assert (got is None) == (expected is None), name
        if got is None:
            continue
        assert got.shape == expected.shape, (name, got.shape, expected.shape)
        scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol * scale, msg=lambda m: f"{name}: {m}")


# ----------------------------------------------------------------------------- the bench suite (tests/bench/)

# Tiny sizes and timing budgets: the figures are not looked at, only that they are there.
BENCH_TINY = ["--batch", "8", "16", "--dims", "2", "--widths", "4", "--depths", "1",
              "--min-run-time", "0.002", "--rounds", "1", "--no-plot", "-q"]


def tiny_options(**changes):
    """hoderiv_bench Options for CPU, float32, tiny timing budgets, with ``changes`` applied."""
    from hoderiv_bench.runner import Options

    options = Options(device=torch.device("cpu"), dtype=torch.float32, min_run_time=0.002, rounds=1)
    for key, value in changes.items():
        setattr(options, key, value)
    return options


BENCH_TANH = Workload("laplacian", "tanh", 8, 2, 4, 1)  # a tanh MLP: the Taylor engine serves it
BENCH_SIN = Workload("hessian", "sin", 8, 2, 4, 1)  # a Sine module: recognised by its trace
