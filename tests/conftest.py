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
