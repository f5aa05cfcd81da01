"""Loading the compiled extension ``hoderiv_ext._C`` and reporting what it holds.

If the extension is missing (a pure-Python install) or fails to load (built
against another torch, say), the package still imports: every call falls back
to the autograd engine, and one warning says why.
"""

from __future__ import annotations


import importlib
import warnings
from typing import Any

import torch

# Highest derivative order the compiled kernels serve: hoderiv::math::kMaxOrder
# in csrc/include/hoderiv/derivative_math.h (tests/ops/test_library.py checks they match).
MAX_KERNEL_ORDER = 8

_C: Any = None
_LOAD_ERROR: str | None = None


def _load() -> Any:
    """Import hoderiv_ext._C; on any failure record why (the package then runs on the autograd engine)."""
    global _LOAD_ERROR
    try:
        module = importlib.import_module("hoderiv_ext._C")
    except ModuleNotFoundError as error:
        if error.name != "hoderiv_ext._C":
            _LOAD_ERROR = f"ModuleNotFoundError: {error}"
        else:
            _LOAD_ERROR = ("ModuleNotFoundError: the compiled extension hoderiv_ext._C is not installed "
                           "(a pure-Python install, or the build was skipped)")
        return None
    except Exception as error:  # noqa: BLE001 - any failure to load (ABI, missing library, a bug) falls back
        _LOAD_ERROR = f"{type(error).__name__}: {error}"
        return None
    if not module.build_info().get("ops_registered_here", True):
        _LOAD_ERROR = (
            "the ops of the namespace hoderiv_ext were already registered by another library in this process "
            "(libhoderiv_ext_ops.so loaded with torch.ops.load_library?); use one of the two per process"
        )
        return None
    return module


_C = _load()
# Whether the loaded build has CUDA kernels: fixed for the life of the process (read once, not per call).
_CUDA_KERNELS: bool = _C is not None and bool(_C.build_info().get("cuda_kernels", False))
if _LOAD_ERROR is not None:  # pragma: no cover - exercised by subprocess tests
    warnings.warn(
        "hoderiv_ext: the compiled extension hoderiv_ext._C could not be loaded "
        f"({_LOAD_ERROR}); every call falls back to the autograd engine. "
        "Reinstall with `pip install --no-build-isolation .` against the torch you run.",
        RuntimeWarning,
        stacklevel=2,
    )


def extension_loaded() -> bool:
    """True when the compiled ops are registered under ``torch.ops.hoderiv_ext``."""
    return _C is not None


def has_kernels_for(device: torch.device) -> bool:
    """Whether compiled kernels serve tensors on ``device``."""
    if _C is None:
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return _CUDA_KERNELS
    return False


def function_table() -> list[dict[str, Any]] | None:
    """The compiled kernels' table of elementwise functions (name, num_params, param_names), or None without them."""
    if _C is None or not hasattr(_C, "function_table"):
        return None
    return [dict(entry) for entry in _C.function_table()]


def build_info() -> dict[str, Any]:
    """What was compiled in.

    Returns a dict with keys ``compiled`` (the extension loaded), ``cpu_kernels``,
    ``cuda_kernels``, ``cuda_archs`` (the TORCH_CUDA_ARCH_LIST it was built for),
    ``cuda_version_built``, ``torch_version_built``, ``torch_version`` (running),
    ``max_kernel_order`` (highest derivative order the kernels serve),
    ``debug`` and ``load_error`` (why loading failed, else None).
    """
    info: dict[str, Any] = {
        "compiled": _C is not None,
        "cpu_kernels": False,
        "cuda_kernels": False,
        "cuda_archs": "",
        "cuda_version_built": "",
        "torch_version_built": "",
        "max_kernel_order": 0,
        "debug": False,
    }
    if _C is not None:
        info.update(dict(_C.build_info()))
    info["torch_version"] = torch.__version__
    info["load_error"] = _LOAD_ERROR
    return info
