"""Where a benchmark ran: device, software versions, build, date."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Any

import torch


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    import hoderiv_ext

    info: dict[str, Any] = {
        "device": str(device),
        "device_name": device_name(device),
        "dtype": str(dtype).replace("torch.", ""),
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "hoderiv_ext_version": hoderiv_ext.__version__,
        "build_info": hoderiv_ext.build_info(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["cuda_capability"] = f"{props.major}.{props.minor}"
        info["cuda_total_memory_bytes"] = int(props.total_memory)
    return info
