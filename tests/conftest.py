"""Shared test configuration: one central list of devices and dtypes.

CUDA cases are parametrised like CPU ones and skip cleanly without a GPU.
"""

from __future__ import annotations

import pytest
import torch

import hoderiv_ext

HAS_CUDA = torch.cuda.is_available()
HAS_CUDA_KERNELS = HAS_CUDA and hoderiv_ext.build_info()["cuda_kernels"]

needs_cuda = pytest.mark.skipif(not HAS_CUDA_KERNELS, reason="needs a CUDA device and the CUDA kernels")

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=needs_cuda)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]


def tolerances(dtype: torch.dtype) -> dict[str, float]:
    """rtol/atol for comparing two computations of the same derivative."""
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}


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
