"""The one place that decides which engine serves a call.

backend="autograd": the pure-autograd reference engine, always available.
backend="kernel":   the compiled kernels (CPU or CUDA); an error names why
                    they cannot serve the call.
backend="auto":     the compiled CUDA kernels for CUDA tensors when they can
                    serve the call; pure autograd otherwise (on CPU too).
"""

from __future__ import annotations

from typing import Literal

import torch

from hoderiv_ext._extension import build_info, extension_loaded, has_kernels_for

Backend = Literal["auto", "kernel", "autograd"]
BACKENDS: tuple[str, ...] = ("auto", "kernel", "autograd")
KERNEL_DTYPES = (torch.float32, torch.float64)


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def kernel_obstacles(device: torch.device, dtype: torch.dtype, unsupported: str | None = None) -> list[str]:
    """Reasons the compiled kernels cannot serve a call (empty when they can)."""
    problems: list[str] = []
    if not extension_loaded():
        problems.append(f"the compiled extension is not loaded ({build_info()['load_error']})")
    elif not has_kernels_for(device):
        problems.append(f"this build has no compiled kernels for {device.type} tensors (see hoderiv_ext.build_info())")
    if dtype not in KERNEL_DTYPES:
        problems.append(f"the kernels serve float32 and float64, got {dtype}")
    if unsupported:
        problems.append(unsupported)
    return problems


def select_engine(
    backend: str, device: torch.device, dtype: torch.dtype, unsupported: str | None = None
) -> Literal["kernel", "autograd"]:
    """Pick "kernel" or "autograd" for a call on ``device``/``dtype``.

    ``unsupported`` is the caller's reason the kernels cannot serve this
    particular request (an unknown function, too high an order), or None.
    """
    check_backend(backend)
    if backend == "autograd":
        return "autograd"
    problems = kernel_obstacles(device, dtype, unsupported)
    if backend == "kernel":
        if problems:
            raise RuntimeError("backend='kernel' cannot serve this call: " + "; ".join(problems))
        return "kernel"
    return "kernel" if device.type == "cuda" and not problems else "autograd"
